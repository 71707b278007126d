//! [`ImageRegistry`]: where an app's Docker images live (ECR in production).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{AppName, Digest, DockerTag, ImageRef};
use crate::error::Result;

/// One image in a registry: its repository, digest and tags. An image can have no tag (ECR
/// keeps an image whose tags were all moved or removed; `docker images` shows it as
/// `<none>`): `tags` is then empty, and nothing here makes one up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The repository it is in, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/myapp`.
    pub repository: String,
    /// Its digest, when the registry reported one.
    pub digest: Option<Digest>,
    /// Every tag pointing at it; empty for an untagged image.
    pub tags: Vec<DockerTag>,
    /// Compressed size in bytes, if known.
    pub size_bytes: Option<u64>,
    /// When it was pushed, if known.
    pub pushed_at: Option<SystemTime>,
}

impl ImageInfo {
    /// The image's digest, when the registry reported one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether no tag points at the image.
    pub fn is_untagged(&self) -> bool {
        self.tags.is_empty()
    }

    /// The image as a deployment names it: by one of its tags, pinned to its digest.
    /// Deployments name images by tag, so an untagged image (or a tag it lacks) is refused,
    /// naming the fix.
    pub fn reference(&self, tag: &DockerTag) -> Result<ImageRef> {
        if !self.tags.contains(tag) {
            let digest = self.digest.as_ref().map_or("", Digest::as_str);
            return Err(crate::Error::invalid(
                "docker tag",
                tag.as_str(),
                if self.is_untagged() {
                    format!(
                        "image {}@{digest} has no tag, and deployments name images by tag; tag \
                         it first (e.g. `docker tag` and push, or ECR's PutImage with an \
                         imageTag), then deploy that tag",
                        self.repository
                    )
                } else {
                    format!(
                        "is not a tag of image {}@{digest}; its tags: {}",
                        self.repository,
                        self.tags
                            .iter()
                            .map(DockerTag::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            ));
        }
        let image = ImageRef::new(self.repository.clone(), tag.clone())?;
        Ok(match &self.digest {
            Some(d) => image.with_digest(d.clone()),
            None => image,
        })
    }
}

/// A secret string: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only where it must leave the process (e.g. `docker login`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for `docker login` against an app's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// The registry endpoint, e.g. `https://123456789012.dkr.ecr.us-east-1.amazonaws.com`.
    pub endpoint: String,
    /// The user name (ECR: `AWS`).
    pub username: String,
    /// The password; never logged.
    pub password: Secret,
    /// When the credentials stop working, if known.
    pub expires_at: Option<SystemTime>,
}

/// Where an app's images live.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ImageRegistry: Send + Sync + fmt::Debug + 'static {
    /// Resolves a tag to its digest. A missing tag is [`Error::NotFound`](crate::Error::NotFound)
    /// with [`Resource::Image`](crate::Resource::Image), and a deployment asks this before it
    /// changes anything.
    async fn resolve(&self, app: &AppName, tag: &DockerTag) -> Result<ImageRef>;

    /// Every image of the app's repository, newest first.
    async fn list(&self, app: &AppName) -> Result<Vec<ImageInfo>>;

    /// One image by tag.
    async fn describe(&self, app: &AppName, tag: &DockerTag) -> Result<ImageInfo>;

    /// Credentials for `docker login`.
    async fn login(&self, app: &AppName) -> Result<RegistryCredentials>;
}

/// A shared registry, as the engine holds it.
pub type DynImageRegistry = Arc<dyn ImageRegistry>;

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tags: &[&str]) -> ImageInfo {
        ImageInfo {
            repository: "registry.local/myapp".into(),
            digest: Some(Digest::new(format!("sha256:{}", "b".repeat(64))).unwrap()),
            tags: tags.iter().map(|t| DockerTag::new(*t).unwrap()).collect(),
            size_bytes: None,
            pushed_at: None,
        }
    }

    #[test]
    fn an_untagged_image_says_so_and_is_not_deployable_by_a_made_up_tag() {
        let untagged = image(&[]);
        assert!(untagged.is_untagged());
        let e = untagged
            .reference(&DockerTag::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no tag") && e.contains("tag it first"),
            "{e}"
        );
        let tagged = image(&["v1", "stable"]);
        assert!(!tagged.is_untagged());
        let r = tagged
            .reference(&DockerTag::new("stable").unwrap())
            .unwrap();
        assert_eq!(r.tag.as_str(), "stable");
        assert_eq!(r.digest, tagged.digest);
        let e = tagged
            .reference(&DockerTag::new("v2").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("v1, stable"), "{e}");
    }
}
