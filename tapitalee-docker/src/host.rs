//! `DOCKER_HOST` as the docker CLI reads it: `unix://PATH` and `tcp://HOST[:PORT]` (plain
//! HTTP; `http://` is accepted as the same). Other schemes are refused with the reason.

use std::fmt;

/// Where the Docker engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// A unix socket (`unix:///var/run/docker.sock`).
    Unix(String),
    /// Plain HTTP over TCP (`tcp://127.0.0.1:2375`): `host:port`.
    Tcp(String),
}

/// A `DOCKER_HOST` value that cannot be used, and why (with what to write instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DOCKER_HOST {}: {reason}", cut(value))]
pub struct InvalidHost {
    /// The value as given.
    pub value: String,
    /// Why it is refused and what to write instead.
    pub reason: String,
}

impl From<InvalidHost> for tapitalee_core::Error {
    fn from(e: InvalidHost) -> Self {
        tapitalee_core::Error::invalid("DOCKER_HOST", &e.value, e.reason)
    }
}

/// The engine the docker CLI talks to without `DOCKER_HOST`.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

impl DockerHost {
    /// Reads a `DOCKER_HOST` value. A `tcp://` address without a port gets the engine's
    /// plain-HTTP port, 2375, as with the docker CLI.
    ///
    /// # Errors
    /// A message naming the value and what to write instead: TLS (`https://`, or
    /// `DOCKER_TLS_VERIFY`, checked by [`DockerHost::from_env`]), `ssh://` and `npipe://` are
    /// not supported.
    pub fn parse(value: &str) -> Result<DockerHost, InvalidHost> {
        let bad = |reason: String| InvalidHost {
            value: value.to_owned(),
            reason,
        };
        let (scheme, rest) = value.split_once("://").ok_or_else(|| {
            bad("has no scheme; write unix:///path/to/docker.sock or tcp://HOST:PORT".to_owned())
        })?;
        match scheme {
            "unix" => {
                if rest.starts_with('/') {
                    Ok(DockerHost::Unix(rest.to_owned()))
                } else {
                    Err(bad("needs an absolute socket path, e.g. \
                         unix:///var/run/docker.sock"
                        .to_owned()))
                }
            }
            "tcp" | "http" => {
                let authority = rest.trim_end_matches('/');
                if authority.is_empty() || authority.contains('/') || authority.contains('@') {
                    return Err(bad(format!(
                        "is not HOST:PORT after {scheme}://, e.g. \
                         tcp://127.0.0.1:2375"
                    )));
                }
                let has_port = match authority.rsplit_once(':') {
                    // `[::1]` alone has colons but no port.
                    Some((host, port)) if !host.is_empty() && !port.contains(']') => {
                        if port.parse::<u16>().is_err() {
                            return Err(bad(format!("{port:?} is not a port number")));
                        }
                        true
                    }
                    _ => false,
                };
                Ok(DockerHost::Tcp(if has_port {
                    authority.to_owned()
                } else {
                    format!("{authority}:2375")
                }))
            }
            "https" => Err(bad("TLS connections to the engine are not supported; use \
                 the engine's unix socket (unix:///var/run/docker.sock) or plain tcp:// on a \
                 trusted network"
                .to_owned())),
            "ssh" => Err(bad("ssh:// is not supported; forward the remote socket \
                 (ssh -L /tmp/docker.sock:/var/run/docker.sock HOST) and use \
                 unix:///tmp/docker.sock"
                .to_owned())),
            "npipe" => Err(bad(
                "Windows named pipes are not supported; use unix:// or \
                 tcp://"
                    .to_owned(),
            )),
            other => Err(bad(format!(
                "unknown scheme {other:?}; use unix:///path/to/docker.sock \
                 or tcp://HOST:PORT"
            ))),
        }
    }

    /// `DOCKER_HOST` from the environment (the default socket when unset or empty), refusing
    /// `DOCKER_TLS_VERIFY` on `tcp://`, which asks for TLS.
    ///
    /// # Errors
    /// As [`DockerHost::parse`].
    pub fn from_env() -> Result<DockerHost, InvalidHost> {
        let value = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
        let host = DockerHost::parse(&value)?;
        let tls = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
        if tls && matches!(host, DockerHost::Tcp(_)) {
            return Err(InvalidHost {
                value,
                reason: "DOCKER_TLS_VERIFY is set, which asks for TLS, and TLS is not \
                         supported; unset DOCKER_TLS_VERIFY for a plain-HTTP engine, or use its \
                         unix socket"
                    .to_owned(),
            });
        }
        Ok(host)
    }
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerHost::Unix(path) => write!(f, "unix://{path}"),
            DockerHost::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// A value quoted for a message, cut to 80 characters.
fn cut(value: &str) -> String {
    let n = value.chars().count();
    if n > 80 {
        let head: String = value.chars().take(80).collect();
        format!("{head:?} ({} more characters)", n - 80)
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::DockerHost;

    #[test]
    fn schemes_the_docker_cli_reads() {
        assert_eq!(
            DockerHost::parse("unix:///var/run/docker.sock"),
            Ok(DockerHost::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            DockerHost::parse("tcp://127.0.0.1:2375"),
            Ok(DockerHost::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            DockerHost::parse("tcp://docker.internal"),
            Ok(DockerHost::Tcp("docker.internal:2375".into()))
        );
        assert_eq!(
            DockerHost::parse("http://[::1]:2375/"),
            Ok(DockerHost::Tcp("[::1]:2375".into()))
        );
        assert_eq!(
            DockerHost::parse("tcp://[::1]"),
            Ok(DockerHost::Tcp("[::1]:2375".into()))
        );
        assert_eq!(
            DockerHost::parse("tcp://127.0.0.1:2375")
                .unwrap()
                .to_string(),
            "tcp://127.0.0.1:2375"
        );
    }

    #[test]
    fn the_rest_is_refused_naming_the_value_and_the_fix() {
        for (value, says) in [
            ("ssh://me@build-box", "ssh -L"),
            ("https://docker.example:2376", "TLS"),
            ("npipe:////./pipe/docker_engine", "named pipes"),
            ("fd://", "unknown scheme \"fd\""),
            ("/var/run/docker.sock", "has no scheme"),
            ("unix://run/docker.sock", "absolute socket path"),
            ("tcp://127.0.0.1:http", "not a port number"),
            ("tcp://", "is not HOST:PORT"),
        ] {
            let e = DockerHost::parse(value).unwrap_err().to_string();
            assert!(e.contains(&format!("{value:?}")), "{value}: {e}");
            assert!(e.contains(says), "{value}: {e}");
        }
    }
}
