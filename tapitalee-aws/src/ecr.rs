//! [`EcrRegistry`]: ECR as Tapitalee's [`ImageRegistry`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_ecr::types::{ImageDetail, ImageIdentifier};
use base64::Engine as _;
use tapitalee_core::{
    AppName, Digest, DockerTag, Error, ImageInfo, ImageRef, ImageRegistry, RegistryCredentials,
    Resource, Result, Secret,
};

use crate::backend::Shared;
use crate::error::unexpected;
use crate::model::system_time;

/// ECR as an [`ImageRegistry`]: each app's images live in the repository named by its
/// [`AppConfig`](crate::AppConfig).
#[derive(Clone)]
pub struct EcrRegistry {
    shared: Arc<Shared>,
    uris: Arc<Mutex<HashMap<String, String>>>,
}

impl fmt::Debug for EcrRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrRegistry").finish_non_exhaustive()
    }
}

impl EcrRegistry {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        EcrRegistry {
            shared,
            uris: Arc::default(),
        }
    }

    fn repository(&self, app: &AppName) -> Result<String> {
        Ok(self.shared.config.app(app)?.repository.clone())
    }

    /// The account whose registry holds the app's repository, when it is not the caller's.
    fn registry_id(&self, app: &AppName) -> Result<Option<String>> {
        Ok(self.shared.config.app(app)?.registry_id.clone())
    }

    /// The repository URI (`<registry>/<name>`), asked once per repository.
    async fn uri(&self, app: &AppName, repo: &str, registry: Option<&str>) -> Result<String> {
        // Per app: apps on different roles can reach different accounts' registries.
        let key = format!("{app}/{}/{repo}", registry.unwrap_or_default());
        if let Some(uri) = self
            .uris
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(uri.clone());
        }
        let ecr = &self.shared.clients(app).ecr;
        let out = self
            .shared
            .layer
            .call("DescribeRepositories", None, || {
                ecr.describe_repositories()
                    .set_registry_id(registry.map(str::to_owned))
                    .repository_names(repo)
                    .send()
            })
            .await
            .map_err(|e| {
                e.not_found_as(
                    Resource::Image,
                    repo,
                    format!(
                        "ECR repository {repo:?} does not exist; create it or fix the app's \
                         repository name"
                    ),
                )
            })?;
        let uri = out
            .repositories()
            .first()
            .and_then(|r| r.repository_uri())
            .ok_or_else(|| {
                unexpected(
                    "DescribeRepositories",
                    format!("no URI for repository {repo}"),
                )
            })?
            .to_owned();
        self.uris
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, uri.clone());
        Ok(uri)
    }

    /// The image `tag` names: its repository, the registry holding it, and ECR's details.
    async fn describe_tag(
        &self,
        app: &AppName,
        tag: &DockerTag,
    ) -> Result<(String, Option<String>, ImageDetail)> {
        let repo = self.repository(app)?;
        let registry = self.registry_id(app)?;
        let ecr = &self.shared.clients(app).ecr;
        let out = self
            .shared
            .layer
            .call("DescribeImages", None, || {
                ecr.describe_images()
                    .set_registry_id(registry.clone())
                    .repository_name(&repo)
                    .image_ids(ImageIdentifier::builder().image_tag(tag.as_str()).build())
                    .send()
            })
            .await
            .map_err(|e| {
                let hint = if e.code.as_deref() == Some("RepositoryNotFoundException") {
                    format!("ECR repository {repo:?} does not exist; create it or fix the app's repository name")
                } else {
                    format!(
                        "no image tagged {tag:?} in ECR repository {repo:?}; push it first, or \
                         pick one of the repository's tags"
                    )
                };
                e.not_found_as(Resource::Image, format!("{repo}:{tag}"), hint)
            })?;
        let detail = out.image_details().first().cloned().ok_or_else(|| {
            Error::not_found(
                Resource::Image,
                format!("{repo}:{tag}"),
                format!("no image tagged {tag:?} in ECR repository {repo:?}; push it first"),
            )
        })?;
        Ok((repo, registry, detail))
    }

    /// An image as ECR describes it; an untagged one has no tags (never a made-up one).
    async fn info(
        &self,
        app: &AppName,
        repo: &str,
        registry: Option<&str>,
        detail: &ImageDetail,
    ) -> Result<ImageInfo> {
        let tags: Vec<DockerTag> = detail
            .image_tags()
            .iter()
            .filter_map(|t| DockerTag::new(t).ok())
            .collect();
        Ok(ImageInfo {
            repository: self.uri(app, repo, registry).await?,
            digest: detail.image_digest().map(Digest::new).transpose()?,
            tags,
            size_bytes: detail
                .image_size_in_bytes()
                .and_then(|s| u64::try_from(s).ok()),
            pushed_at: system_time(detail.image_pushed_at()),
        })
    }
}

#[async_trait]
impl ImageRegistry for EcrRegistry {
    async fn resolve(&self, app: &AppName, tag: &DockerTag) -> Result<ImageRef> {
        let (repo, registry, detail) = self.describe_tag(app, tag).await?;
        let info = self.info(app, &repo, registry.as_deref(), &detail).await?;
        let Some(digest) = info.digest else {
            return Err(unexpected(
                "DescribeImages",
                format!("ECR reported no digest for {repo}:{tag}"),
            ));
        };
        let image = ImageRef::new(info.repository, tag.clone())?.with_digest(digest);
        tracing::debug!(app = %app, tag = %tag, image = %image, "resolved tag");
        Ok(image)
    }

    async fn list(&self, app: &AppName) -> Result<Vec<ImageInfo>> {
        let repo = self.repository(app)?;
        let registry = self.registry_id(app)?;
        let ecr = &self.shared.clients(app).ecr;
        let mut details = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .shared
                .layer
                .call("DescribeImages", None, || {
                    ecr.describe_images()
                        .set_registry_id(registry.clone())
                        .repository_name(&repo)
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|e| {
                    e.not_found_as(
                        Resource::Image,
                        &repo,
                        format!("ECR repository {repo:?} does not exist; create it or fix the app's repository name"),
                    )
                })?;
            details.extend(out.image_details().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() && Some(t) != token.as_deref() => {
                    token = Some(t.to_owned())
                }
                _ => break,
            }
        }
        let mut infos = Vec::with_capacity(details.len());
        for d in &details {
            infos.push(self.info(app, &repo, registry.as_deref(), d).await?);
        }
        infos.sort_by_key(|i| std::cmp::Reverse(i.pushed_at));
        Ok(infos)
    }

    async fn describe(&self, app: &AppName, tag: &DockerTag) -> Result<ImageInfo> {
        let (repo, registry, detail) = self.describe_tag(app, tag).await?;
        self.info(app, &repo, registry.as_deref(), &detail).await
    }

    async fn login(&self, app: &AppName) -> Result<RegistryCredentials> {
        let repo = self.repository(app)?;
        let registry = self.registry_id(app)?;
        let ecr = &self.shared.clients(app).ecr;
        let out = self
            .shared
            .layer
            .call("GetAuthorizationToken", None, || {
                ecr.get_authorization_token().send()
            })
            .await?;
        let data = out.authorization_data().first().ok_or_else(|| {
            unexpected(
                "GetAuthorizationToken",
                "ECR returned no authorization data",
            )
        })?;
        let decoded = data
            .authorization_token()
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                unexpected(
                    "GetAuthorizationToken",
                    "the authorization token is not base64 of \"user:password\"",
                )
            })?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| {
            unexpected(
                "GetAuthorizationToken",
                "the decoded authorization token has no ':' between user and password",
            )
        })?;
        // The token opens every registry the caller may use; its proxy endpoint is the
        // caller's own, so another account's registry is reached at its repository's host.
        let endpoint = match (data.proxy_endpoint(), &registry) {
            (Some(e), None) => e.to_owned(),
            _ => format!(
                "https://{}",
                self.uri(app, &repo, registry.as_deref())
                    .await?
                    .split('/')
                    .next()
                    .unwrap_or_default()
            ),
        };
        Ok(RegistryCredentials {
            endpoint,
            username: username.to_owned(),
            password: Secret::new(password),
            expires_at: system_time(data.expires_at()),
        })
    }
}
