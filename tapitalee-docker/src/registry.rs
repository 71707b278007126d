//! [`ImageRegistry`] for [`DockerBackend`]: the engine's own image store, fed from a registry
//! when the app's repository names one (`127.0.0.1:5000/demo`): then the registry is the
//! source of truth, and resolving a tag pulls it first.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::query_parameters::ListImagesOptionsBuilder;
use tapitalee_core::{
    AppName, Digest, DockerTag, Error, ImageInfo, ImageRef, ImageRegistry, RegistryCredentials,
    Resource, Result,
};

use crate::backend::{DockerBackend, parse_time};
use crate::error::{is_not_found, map};
use crate::registry_api::{self, RegistryApi};

/// The tags of `repository` among an image's `repo:tag` names.
fn tags_of(repository: &str, names: &[String]) -> Vec<DockerTag> {
    names
        .iter()
        .filter_map(|n| n.rsplit_once(':'))
        .filter(|(repo, _)| *repo == repository)
        .filter_map(|(_, tag)| DockerTag::new(tag).ok())
        .collect()
}

impl DockerBackend {
    /// Pulls `repository:tag` from the registry the repository names, with the configured
    /// credentials if any. A tag the registry lacks is `NotFound`.
    async fn pull(&self, registry: &str, repository: &str, tag: &DockerTag) -> Result<()> {
        use futures::StreamExt;
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::new()
            .from_image(repository)
            .tag(tag.as_str())
            .build();
        let credentials = self
            .registry
            .as_ref()
            .map(|c| bollard::auth::DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(c.password.expose().to_owned()),
                serveraddress: Some(registry.to_owned()),
                ..Default::default()
            });
        let mut progress = self.docker.create_image(Some(opts), None, credentials);
        while let Some(step) = progress.next().await {
            match step {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        return Err(self.pull_error(registry, repository, tag, e));
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(self.pull_error(registry, repository, tag, error));
                }
                Err(e) if is_not_found(&e) || crate::builder::is_auth_refusal(&e.to_string()) => {
                    return Err(self.pull_error(registry, repository, tag, e.to_string()));
                }
                Err(e) => return Err(map("pull image", e)),
            }
        }
        tracing::debug!(%repository, %tag, registry, "pulled");
        Ok(())
    }
}

impl DockerBackend {
    /// A pull the registry refused: for want of (valid) credentials, the error says how to
    /// configure them; a tag it lacks is `NotFound`; anything else a platform error. The
    /// engine's message never holds the password.
    fn pull_error(
        &self,
        registry: &str,
        repository: &str,
        tag: &DockerTag,
        message: String,
    ) -> Error {
        if crate::builder::is_auth_refusal(&message) {
            let fix = crate::registry_api::login_fix(registry, self.registry.as_ref());
            return Error::platform(
                "pull image",
                format!("pulling {repository}:{tag} failed: {message}; {fix}"),
            );
        }
        pull_error(registry, repository, tag, message)
    }
}

/// A pull the registry refused: a tag it lacks is `NotFound`, anything else a platform error.
fn pull_error(registry: &str, repository: &str, tag: &DockerTag, message: String) -> Error {
    let missing = ["not found", "manifest unknown", "does not exist"]
        .iter()
        .any(|m| message.to_ascii_lowercase().contains(m));
    if missing {
        Error::not_found(
            Resource::Image,
            format!("{repository}:{tag}"),
            format!("the registry {registry} has no such tag ({message}); push it first"),
        )
    } else {
        Error::platform(
            "pull image",
            format!("pulling {repository}:{tag} from {registry} failed: {message}"),
        )
    }
}

#[async_trait]
impl ImageRegistry for DockerBackend {
    async fn resolve(&self, app: &AppName, tag: &DockerTag) -> Result<ImageRef> {
        let repository = self.app(app)?.repository.clone();
        let name = format!("{repository}:{tag}");
        if let Some(registry) = crate::builder::repository_registry(&repository) {
            self.pull(registry, &repository, tag).await?;
        }
        match self.docker.inspect_image(&name).await {
            Ok(image) => {
                let id = image.id.unwrap_or_default();
                Ok(ImageRef::new(repository, tag.clone())?.with_digest(Digest::new(&id)?))
            }
            Err(e) if is_not_found(&e) => {
                let mut recent: Vec<String> = ImageRegistry::list(self, app)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|i| i.tags)
                    .take(5)
                    .map(|t| t.to_string())
                    .collect();
                recent.sort();
                let hint = if recent.is_empty() {
                    format!("the engine has no image of {repository}; build one first")
                } else {
                    format!("recent tags: {}", recent.join(", "))
                };
                Err(Error::not_found(Resource::Image, name, hint))
            }
            Err(e) => Err(map("inspect image", e)),
        }
    }

    async fn list(&self, app: &AppName) -> Result<Vec<ImageInfo>> {
        let repository = self.app(app)?.repository.clone();
        if let Some(host) = crate::builder::repository_registry(&repository)
            && registry_api::readable(host)
        {
            return RegistryApi::new(host, &repository, self.registry.as_ref())
                .list()
                .await;
        }
        let filters = HashMap::from([("reference", vec![repository.clone()])]);
        let opts = ListImagesOptionsBuilder::new().filters(&filters).build();
        let images = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(|e| map("list images", e))?;
        let mut out = Vec::new();
        for i in images {
            out.push(ImageInfo {
                repository: repository.clone(),
                digest: Some(Digest::new(&i.id)?),
                // Empty for an image whose tags moved on (`docker images` shows `<none>`).
                tags: tags_of(&repository, &i.repo_tags),
                size_bytes: u64::try_from(i.size).ok(),
                pushed_at: u64::try_from(i.created)
                    .ok()
                    .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            });
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.pushed_at));
        Ok(out)
    }

    async fn describe(&self, app: &AppName, tag: &DockerTag) -> Result<ImageInfo> {
        let repository = self.app(app)?.repository.clone();
        if let Some(host) = crate::builder::repository_registry(&repository)
            && registry_api::readable(host)
        {
            let api = RegistryApi::new(host, &repository, self.registry.as_ref());
            return match api.describe(tag).await? {
                Some(info) => Ok(info),
                None => {
                    let mut known: Vec<String> =
                        api.tags().await?.iter().map(ToString::to_string).collect();
                    known.sort();
                    Err(Error::not_found(
                        Resource::Image,
                        format!("{repository}:{tag}"),
                        if known.is_empty() {
                            format!("the registry {host} has no tags of it; push one first")
                        } else {
                            format!("the registry {host} has: {}", known.join(", "))
                        },
                    ))
                }
            };
        }
        let image = self.resolve(app, tag).await?;
        let digest = image
            .digest
            .clone()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let inspect = self
            .docker
            .inspect_image(&digest)
            .await
            .map_err(|e| map("inspect image", e))?;
        Ok(ImageInfo {
            tags: tags_of(&image.repository, &inspect.repo_tags.unwrap_or_default()),
            size_bytes: inspect.size.and_then(|s| u64::try_from(s).ok()),
            pushed_at: parse_time(inspect.created.as_deref()),
            repository: image.repository,
            digest: image.digest,
        })
    }

    async fn login(&self, app: &AppName) -> Result<RegistryCredentials> {
        let repository = &self.app(app)?.repository;
        if let Some(c) = &self.registry {
            return Ok(c.clone());
        }
        Err(match crate::builder::repository_registry(repository) {
            Some(host) => Error::platform(
                "login",
                format!(
                    "no credentials are configured for the registry {host} of app {app}: a \
                     registry without authentication needs no login; configure them with \
                     DockerBackend::builder().registry(..)"
                ),
            ),
            None => Error::platform(
                "login",
                format!(
                    "no registry is configured for app {app}: its images live in the Docker \
                     engine's own store, which needs no login; name a registry in its \
                     repository (e.g. 127.0.0.1:5000/{repository}) to push images there"
                ),
            ),
        })
    }
}
