//! [`ImageRegistry`]: where an app's Docker images live (ECR in production).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{AppName, Digest, DockerTag, ImageRef};
use crate::error::Result;

/// One image in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Repository and digest (the tag field holds the tag it was asked by, or its first tag).
    pub image: ImageRef,
    /// Every tag pointing at this digest.
    pub tags: Vec<DockerTag>,
    /// Compressed size in bytes, if known.
    pub size_bytes: Option<u64>,
    /// When it was pushed, if known.
    pub pushed_at: Option<SystemTime>,
}

impl ImageInfo {
    /// The image's digest, when the registry reported one.
    pub fn digest(&self) -> Option<&Digest> {
        self.image.digest.as_ref()
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
