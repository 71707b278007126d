//! [`DockerBackend`]: the engine client, the apps' configuration, and the engine reads every
//! operation is built from.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use tapitalee_core::{
    AppName, Error, Fleet, FleetId, ImageRef, RegistryCredentials, Resource, Result, Revision,
    Target,
};

use crate::config::{AppConfig, ProcessConfig};
use crate::error::{is_not_found, map};
use crate::host::DockerHost;
use crate::labels;

/// The Docker Engine API version spoken: Debian's `docker.io` 20.10 speaks at most 1.41, and
/// newer engines still accept it.
const API_VERSION: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// A local Docker engine as a platform: [`Deployer`](tapitalee_core::Deployer),
/// [`ImageRegistry`](tapitalee_core::ImageRegistry), and (as
/// [`Deployer::target_health`](tapitalee_core::Deployer::target_health)) a [`HealthProbe`](tapitalee_core::HealthProbe),
/// [`DockerHealth`](crate::DockerHealth).
///
/// It holds the engine client and the apps' configuration, nothing else: every call reads
/// what it needs from the engine (container labels, inspect), so a fresh backend after a
/// crash behaves exactly as the old one would have.
#[derive(Clone)]
pub struct DockerBackend {
    pub(crate) docker: Docker,
    pub(crate) apps: Arc<BTreeMap<AppName, AppConfig>>,
    pub(crate) proxy_image: String,
    pub(crate) stop_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) registry: Option<RegistryCredentials>,
    /// Serialises creating app networks within this process (the engine allows duplicate
    /// names); holds no data.
    pub(crate) network_lock: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerBackend")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .field("proxy_image", &self.proxy_image)
            .field("stop_timeout", &self.stop_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

/// Configures a [`DockerBackend`].
#[derive(Debug, Default)]
#[must_use]
pub struct DockerBackendBuilder {
    host: Option<String>,
    apps: BTreeMap<AppName, AppConfig>,
    proxy_image: Option<String>,
    stop_timeout: Option<Duration>,
    drain_timeout: Option<Duration>,
    registry: Option<RegistryCredentials>,
}

impl DockerBackendBuilder {
    /// The engine's address, as `DOCKER_HOST` writes it (`unix:///var/run/docker.sock`,
    /// `tcp://127.0.0.1:2375`; see [`DockerHost`]). Default: `DOCKER_HOST`, else the default
    /// socket.
    pub fn docker_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Adds an app.
    pub fn app(mut self, name: AppName, config: AppConfig) -> Self {
        self.apps.insert(name, config);
        self
    }

    /// The proxy's image (built from [`KIT_DOCKERFILE_PROXY`](crate::KIT_DOCKERFILE_PROXY)).
    /// Default `tapitalee/proxy:latest`.
    pub fn proxy_image(mut self, image: impl Into<String>) -> Self {
        self.proxy_image = Some(image.into());
        self
    }

    /// How long a stopped instance gets between SIGTERM and SIGKILL. Default 10 s.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = Some(timeout);
        self
    }

    /// How long a retired instance's in-flight requests may take to finish. Default 10 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// A registry the apps' images are pushed to, and its credentials (what `login` returns).
    /// Without one, images live only in the engine's store and `login` says so.
    pub fn registry(mut self, credentials: RegistryCredentials) -> Self {
        self.registry = Some(credentials);
        self
    }

    /// Connects (lazily: nothing is sent until the first call).
    ///
    /// # Errors
    /// An invalid app configuration, or a `DOCKER_HOST` that is neither `unix://` nor
    /// `tcp://` (the error says why and what to write).
    pub fn build(self) -> Result<DockerBackend> {
        for (name, app) in &self.apps {
            app.validate(name.as_str())?;
        }
        let host = match self.host {
            Some(h) => DockerHost::parse(&h),
            None => DockerHost::from_env(),
        }
        .map_err(Error::from)?;
        let docker = match &host {
            DockerHost::Unix(path) => Docker::connect_with_unix(path, 120, &API_VERSION),
            DockerHost::Tcp(addr) => Docker::connect_with_http(addr, 120, &API_VERSION),
        }
        .map_err(|e| {
            Error::invalid(
                "DOCKER_HOST",
                host.to_string(),
                format!("cannot use this address ({e}); is the Docker engine running?"),
            )
        })?;
        Ok(DockerBackend {
            docker,
            apps: Arc::new(self.apps),
            proxy_image: self
                .proxy_image
                .unwrap_or_else(|| "tapitalee/proxy:latest".to_owned()),
            stop_timeout: self.stop_timeout.unwrap_or(Duration::from_secs(10)),
            drain_timeout: self.drain_timeout.unwrap_or(Duration::from_secs(10)),
            registry: self.registry,
            network_lock: Arc::default(),
        })
    }
}

/// One container as listed: its id, name and labels.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
}

impl Listed {
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    pub(crate) fn index(&self) -> u32 {
        self.label(labels::INDEX)
            .and_then(|i| i.parse().ok())
            .unwrap_or(0)
    }
}

impl DockerBackend {
    /// A builder.
    pub fn builder() -> DockerBackendBuilder {
        DockerBackendBuilder::default()
    }

    /// Whether the engine answers (a ping).
    ///
    /// # Errors
    /// The engine is unreachable.
    pub async fn ping(&self) -> Result<()> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| map("ping", e))
    }

    pub(crate) fn app(&self, app: &AppName) -> Result<&AppConfig> {
        self.apps.get(app).ok_or_else(|| {
            let known: Vec<&str> = self.apps.keys().map(AppName::as_str).collect();
            Error::not_found(
                Resource::App,
                app.to_string(),
                format!("configured apps: {}", known.join(", ")),
            )
        })
    }

    pub(crate) fn process(&self, target: &Target) -> Result<&ProcessConfig> {
        let app = self.app(&target.app)?;
        app.find(&target.process).ok_or_else(|| {
            let known: Vec<&str> = app.processes.iter().map(|p| p.name.as_str()).collect();
            Error::not_found(
                Resource::Process,
                target.process.to_string(),
                format!("app {} has: {}", target.app, known.join(", ")),
            )
        })
    }

    /// Containers (running or not) with all these labels.
    pub(crate) async fn containers(&self, filters: &[(&str, &str)]) -> Result<Vec<Listed>> {
        let labels: Vec<String> = filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut f = HashMap::new();
        f.insert("label", labels);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&f)
            .build();
        let found: Vec<ContainerSummary> = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| map("list containers", e))?;
        Ok(found
            .into_iter()
            .map(|c| Listed {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                labels: c.labels.unwrap_or_default(),
            })
            .collect())
    }

    /// A container's details, `None` if it is gone.
    pub(crate) async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        match self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map("inspect container", e)),
        }
    }

    /// Stops (SIGTERM, then SIGKILL after the stop timeout) and removes containers, together.
    pub(crate) async fn stop_and_remove(&self, ids: &[String]) -> Result<()> {
        let t = i32::try_from(self.stop_timeout.as_secs()).unwrap_or(i32::MAX);
        let jobs = ids.iter().map(|id| async move {
            let stop = StopContainerOptionsBuilder::new().t(t).build();
            match self.docker.stop_container(id, Some(stop)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) || crate::error::is_conflict(&e) => {}
                Err(e) => return Err(map("stop container", e)),
            }
            self.remove(id).await
        });
        futures::future::try_join_all(jobs).await.map(|_| ())
    }

    /// Removes a container (forcibly); one already gone is fine.
    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || crate::error::is_conflict(&e) => Ok(()),
            Err(e) => Err(map("remove container", e)),
        }
    }

    /// The fleet a fleet-marker container describes.
    pub(crate) fn fleet_from(&self, target: &Target, marker: &Listed) -> Result<Fleet> {
        let get = |k: &str| {
            marker.label(k).ok_or_else(|| {
                Error::platform(
                    "read fleet",
                    format!("container {} lacks label {k}", marker.name),
                )
            })
        };
        let image = ImageRef::new(get(labels::REPOSITORY)?, get(labels::TAG)?.parse()?)?
            .with_digest(get(labels::DIGEST)?.parse()?);
        Ok(Fleet {
            id: FleetId(get(labels::FLEET)?.to_owned()),
            target: target.clone(),
            revision: Revision {
                id: get(labels::REVISION)?.to_owned(),
                image,
            },
        })
    }

    /// A fleet's marker container, if the fleet exists.
    pub(crate) async fn fleet_marker(
        &self,
        app: &AppName,
        fleet: &FleetId,
    ) -> Result<Option<Listed>> {
        Ok(self
            .containers(&[
                (labels::APP, app.as_str()),
                (labels::FLEET, fleet.0.as_str()),
                (labels::ROLE, labels::role::FLEET),
            ])
            .await?
            .into_iter()
            .next())
    }

    /// A fleet's instance containers, by index.
    pub(crate) async fn instances(&self, app: &AppName, fleet: &FleetId) -> Result<Vec<Listed>> {
        let mut found = self
            .containers(&[
                (labels::APP, app.as_str()),
                (labels::FLEET, fleet.0.as_str()),
                (labels::ROLE, labels::role::INSTANCE),
            ])
            .await?;
        found.sort_by_key(Listed::index);
        Ok(found)
    }

    /// An instance's address on the app's network, when it has one.
    pub(crate) fn address(
        &self,
        app: &AppName,
        inspect: &ContainerInspectResponse,
        port: u16,
    ) -> Option<SocketAddr> {
        let ip = inspect
            .network_settings
            .as_ref()?
            .networks
            .as_ref()?
            .get(&labels::network(app))?
            .ip_address
            .as_deref()?
            .parse::<IpAddr>()
            .ok()?;
        Some(SocketAddr::new(ip, port))
    }

    /// Removes everything the backend created for an app: its containers (fleets, releases,
    /// proxy), the proxy's state volume and the app's network. For tests and for deleting an app; images are left alone.
    ///
    /// # Errors
    /// The engine refused.
    pub async fn remove_app(&self, app: &AppName) -> Result<()> {
        let all = self.containers(&[(labels::APP, app.as_str())]).await?;
        let jobs = all.iter().map(|c| self.remove(&c.id));
        futures::future::try_join_all(jobs).await?;
        match self
            .docker
            .remove_volume(
                &labels::proxy(app),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(map("remove volume", e)),
        }
        let name = labels::network(app);
        let filters = HashMap::from([("name", vec![name.clone()])]);
        let opts = bollard::query_parameters::ListNetworksOptionsBuilder::new()
            .filters(&filters)
            .build();
        let networks = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(|e| map("list networks", e))?;
        for id in networks
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name.as_str()))
            .filter_map(|n| n.id)
        {
            match self.docker.remove_network(&id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(map("remove network", e)),
            }
        }
        Ok(())
    }
}

/// A time the engine wrote (RFC 3339); `None` for its "never" (year 1).
pub(crate) fn parse_time(s: Option<&str>) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s?).ok()
}

#[cfg(test)]
mod tests {
    use super::DockerBackend;
    use tapitalee_core::{RegistryCredentials, Secret};

    #[test]
    fn debug_never_shows_the_registry_password() {
        let builder = DockerBackend::builder()
            .docker_host("tcp://127.0.0.1:1")
            .registry(RegistryCredentials {
                endpoint: "127.0.0.1:5000".into(),
                username: "ci".into(),
                password: Secret::new("pw-7731-never-shown"),
                expires_at: None,
            });
        assert!(!format!("{builder:?}").contains("pw-7731"), "{builder:?}");
        let backend = builder.build().expect("connects lazily");
        assert!(!format!("{backend:?}").contains("pw-7731"), "{backend:?}");
    }
}
