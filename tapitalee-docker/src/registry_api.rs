//! The Registry HTTP API v2, read-only, for the images of a repository that names a registry
//! (`127.0.0.1:5000/shop`): its tags (`tags/list`), each tag's manifest (its size) and the
//! image's config blob (its created time and image id), with HTTP basic authentication when
//! credentials are configured (`htpasswd` registries).
//!
//! Plain HTTP only, as the engine itself speaks to loopback registries; a registry elsewhere
//! (HTTPS, token authentication) is not read here: see [`readable`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use tapitalee_core::{Digest, DockerTag, Error, ImageInfo, RegistryCredentials, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The manifest media types asked for, single-image first.
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.index.v1+json";

/// Whether this registry host is read through its HTTP API: a loopback host (`127.x.x.x`,
/// `localhost`, `[::1]`, with a port), which the engine also reaches over plain HTTP.
pub(crate) fn readable(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host,
    };
    name == "localhost" || name == "[::1]" || name.starts_with("127.")
}

/// What to do about a registry that refused a request for want of (valid) credentials.
pub(crate) fn login_fix(host: &str, credentials: Option<&RegistryCredentials>) -> String {
    match credentials {
        Some(c) => format!(
            "the registry {host} refused the configured user {}: check the password",
            c.username
        ),
        None => format!(
            "the registry {host} requires a login: configure its credentials (tapit.toml: \
             registry_username and registry_password_env in [apps.NAME.docker], or `docker \
             login {host}`; library: DockerBackend::builder().registry(..))"
        ),
    }
}

/// One response: status and body.
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// A reader of one repository in one registry.
pub(crate) struct RegistryApi<'a> {
    host: &'a str,
    /// The repository's name in the registry (without the host).
    name: &'a str,
    repository: &'a str,
    credentials: Option<&'a RegistryCredentials>,
}

impl<'a> RegistryApi<'a> {
    /// `repository` is `host/name`.
    pub(crate) fn new(
        host: &'a str,
        repository: &'a str,
        credentials: Option<&'a RegistryCredentials>,
    ) -> Self {
        let name = repository
            .strip_prefix(host)
            .map_or(repository, |n| n.trim_start_matches('/'));
        RegistryApi {
            host,
            name,
            repository,
            credentials,
        }
    }

    /// One GET (HTTP/1.0: the registry answers with a length or closes; no chunking).
    async fn get(&self, path: &str, accept: &str) -> Result<Response> {
        let op = format!("registry GET {path}");
        let mut head = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: {accept}\r\nUser-Agent: tapitalee\r\n",
            self.host
        );
        if let Some(c) = self.credentials {
            let token = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c.username,
                c.password.expose()
            ));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        let exchange = async {
            let mut stream = TcpStream::connect(self.host).await?;
            stream.write_all(head.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| Error::platform(&op, format!("the registry {} timed out", self.host)))?
            .map_err(|e| {
                Error::platform(&op, format!("cannot reach the registry {}: {e}", self.host))
            })?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| Error::platform(&op, "not an HTTP response"))?;
        let text = String::from_utf8_lossy(&raw[..split]);
        let status = text
            .split("\r\n")
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::platform(&op, "not an HTTP response"))?;
        let response = Response {
            status,
            body: raw[split + 4..].to_vec(),
        };
        if response.status == 401 {
            return Err(Error::platform(op, login_fix(self.host, self.credentials)));
        }
        Ok(response)
    }

    fn json(&self, path: &str, r: &Response) -> Result<serde_json::Value> {
        serde_json::from_slice(&r.body).map_err(|e| {
            Error::platform(
                format!("registry GET {path}"),
                format!("the registry {} answered no JSON: {e}", self.host),
            )
        })
    }

    /// The repository's tags; none when the registry has no such repository.
    pub(crate) async fn tags(&self) -> Result<Vec<DockerTag>> {
        let path = format!("/v2/{}/tags/list", self.name);
        let r = self.get(&path, "application/json").await?;
        if r.status == 404 {
            return Ok(Vec::new());
        }
        if r.status != 200 {
            return Err(self.unexpected(&path, &r));
        }
        let v = self.json(&path, &r)?;
        Ok(v["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.as_str())
                    .filter_map(|t| DockerTag::new(t).ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    fn unexpected(&self, path: &str, r: &Response) -> Error {
        Error::platform(
            format!("registry GET {path}"),
            format!(
                "the registry {} answered {}: {}",
                self.host,
                r.status,
                String::from_utf8_lossy(&r.body).trim()
            ),
        )
    }

    /// One tag's image: `None` when the registry lacks the tag.
    pub(crate) async fn describe(&self, tag: &DockerTag) -> Result<Option<ImageInfo>> {
        let Some(manifest) = self.manifest(tag.as_str()).await? else {
            return Ok(None);
        };
        let config = &manifest["config"];
        let config_digest = config["digest"].as_str().unwrap_or_default().to_owned();
        let layers: u64 = manifest["layers"]
            .as_array()
            .map(|l| l.iter().filter_map(|l| l["size"].as_u64()).sum())
            .unwrap_or(0);
        let size = layers + config["size"].as_u64().unwrap_or(0);
        let path = format!("/v2/{}/blobs/{config_digest}", self.name);
        let r = self.get(&path, "application/json").await?;
        if r.status != 200 {
            return Err(self.unexpected(&path, &r));
        }
        let created = self.json(&path, &r)?["created"]
            .as_str()
            .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok());
        // The image id the engine gives the pulled image (its config's digest): what resolve
        // pins, so `show image` and a deployment name the same digest.
        Ok(Some(ImageInfo {
            repository: self.repository.to_owned(),
            digest: Some(Digest::new(&config_digest)?),
            tags: vec![tag.clone()],
            size_bytes: Some(size),
            pushed_at: created,
        }))
    }

    /// A tag's single-image manifest (an index's linux/amd64 entry, else its first).
    async fn manifest(&self, reference: &str) -> Result<Option<serde_json::Value>> {
        let path = format!("/v2/{}/manifests/{reference}", self.name);
        let r = self.get(&path, ACCEPT).await?;
        if r.status == 404 {
            return Ok(None);
        }
        if r.status != 200 {
            return Err(self.unexpected(&path, &r));
        }
        let v = self.json(&path, &r)?;
        let Some(entries) = v["manifests"].as_array() else {
            return Ok(Some(v));
        };
        let chosen = entries
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64")
            .or_else(|| entries.first())
            .and_then(|m| m["digest"].as_str())
            .map(str::to_owned);
        let Some(digest) = chosen else {
            return Ok(None);
        };
        let path = format!("/v2/{}/manifests/{digest}", self.name);
        let r = self.get(&path, ACCEPT).await?;
        if r.status != 200 {
            return Err(self.unexpected(&path, &r));
        }
        self.json(&path, &r).map(Some)
    }

    /// Every tag's image, tags of one image merged, newest first.
    pub(crate) async fn list(&self) -> Result<Vec<ImageInfo>> {
        let tags = self.tags().await?;
        let described =
            futures::future::try_join_all(tags.iter().map(|t| self.describe(t))).await?;
        let mut by_digest: BTreeMap<String, ImageInfo> = BTreeMap::new();
        for info in described.into_iter().flatten() {
            let key = info
                .digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            match by_digest.get_mut(&key) {
                Some(known) => known.tags.extend(info.tags),
                None => {
                    by_digest.insert(key, info);
                }
            }
        }
        let mut out: Vec<ImageInfo> = by_digest.into_values().collect();
        for i in &mut out {
            i.tags.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.pushed_at.unwrap_or(SystemTime::UNIX_EPOCH)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn only_loopback_registries_are_read_over_http() {
        assert!(readable("127.0.0.1:5000"));
        assert!(readable("localhost:5000"));
        assert!(readable("[::1]:5000"));
        assert!(!readable("registry.example.com"));
        assert!(!readable("123456789012.dkr.ecr.us-east-1.amazonaws.com"));
    }
}
