//! The app's proxy: started on demand as a container, and driven through its admin interface.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, NetworkCreateRequest, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use tapitalee_core::{AppName, Error, FleetId, Result, TrafficWeight};

use crate::backend::DockerBackend;
use crate::error::{self, is_conflict, is_not_found, map};
use crate::http;
use crate::labels;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the app's proxy listens on the host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyAddrs {
    pub(crate) traffic: SocketAddr,
    pub(crate) admin: SocketAddr,
}

/// One backend as the proxy reports it.
#[derive(Debug, Clone)]
pub(crate) struct ProxyBackend {
    pub(crate) fleet: String,
    pub(crate) addr: SocketAddr,
    pub(crate) healthy: bool,
}

/// The proxy's state.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxyState {
    pub(crate) weights: Vec<(String, u8)>,
    pub(crate) backends: Vec<ProxyBackend>,
}

fn published(
    inspect: &bollard::models::ContainerInspectResponse,
    port: &str,
) -> Option<SocketAddr> {
    let binding = inspect
        .network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(port)?
        .as_ref()?
        .first()?;
    let port: u16 = binding.host_port.as_deref()?.parse().ok()?;
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

impl DockerBackend {
    /// The app's network, created if missing; returns its id.
    ///
    /// The engine does not refuse two networks of one name, so processes launching at once
    /// can each create one: within a process creation is serialised; across processes every
    /// caller agrees on the oldest (ties: the smallest id), removes the others, and uses the
    /// chosen one by id (and a start that meets the duplicate before it is gone is retried).
    pub(crate) async fn ensure_network(&self, app: &AppName) -> Result<String> {
        let _one_at_a_time = self.network_lock.lock().await;
        let name = labels::network(app);
        for attempt in 0..2 {
            let filters = HashMap::from([("name", vec![name.clone()])]);
            let opts = bollard::query_parameters::ListNetworksOptionsBuilder::new()
                .filters(&filters)
                .build();
            let mut found: Vec<(String, String)> = self
                .docker
                .list_networks(Some(opts))
                .await
                .map_err(|e| map("list networks", e))?
                .into_iter()
                .filter(|n| n.name.as_deref() == Some(name.as_str()))
                .filter_map(|n| Some((n.created.unwrap_or_default(), n.id?)))
                .collect();
            found.sort();
            if let Some((_, chosen)) = found.first() {
                for (_, extra) in &found[1..] {
                    if let Err(e) = self.docker.remove_network(extra).await {
                        tracing::debug!(network = %extra, error = %e, "duplicate network not removed");
                    }
                }
                return Ok(chosen.clone());
            }
            if attempt == 0 {
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(HashMap::from([(labels::APP.to_owned(), app.to_string())])),
                    ..Default::default()
                };
                match self.docker.create_network(request).await {
                    Ok(_) => {}
                    Err(e) if is_conflict(&e) => {}
                    Err(e) => return Err(map("create network", e)),
                }
            }
        }
        Err(Error::platform(
            "create network",
            format!("network {name} was not created"),
        ))
    }

    /// The app's proxy addresses, if it runs.
    pub(crate) async fn proxy_addrs(&self, app: &AppName) -> Result<Option<ProxyAddrs>> {
        let Some(c) = self.inspect(&labels::proxy(app)).await? else {
            return Ok(None);
        };
        if !c.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Ok(None);
        }
        Ok(published(&c, "80/tcp")
            .zip(published(&c, "81/tcp"))
            .map(|(traffic, admin)| ProxyAddrs { traffic, admin }))
    }

    /// Where the app's proxy takes traffic on this machine (127.0.0.1), if it runs.
    ///
    /// # Errors
    /// The engine is unreachable.
    pub async fn proxy_address(&self, app: &AppName) -> Result<Option<SocketAddr>> {
        Ok(self.proxy_addrs(app).await?.map(|a| a.traffic))
    }

    /// The app's proxy, started if it is not running.
    pub(crate) async fn ensure_proxy(&self, app: &AppName) -> Result<ProxyAddrs> {
        if let Some(addrs) = self.proxy_addrs(app).await? {
            return Ok(addrs);
        }
        let network = self.ensure_network(app).await?;
        self.ensure_proxy_on(app, &network).await
    }

    /// The app's proxy, started on the app's network (its id) if it is not running.
    pub(crate) async fn ensure_proxy_on(&self, app: &AppName, network: &str) -> Result<ProxyAddrs> {
        if let Some(addrs) = self.proxy_addrs(app).await? {
            return Ok(addrs);
        }
        let config = self.app(app)?;
        let health = config
            .web()
            .and_then(|p| p.web.as_ref())
            .map_or("/health".to_owned(), |w| w.health_path.clone());
        let network = network.to_owned();
        let name = labels::proxy(app);
        let bind = |port: u16| {
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(if port == 0 {
                    String::new()
                } else {
                    port.to_string()
                }),
            }])
        };
        let body = ContainerCreateBody {
            image: Some(self.proxy_image.clone()),
            cmd: Some(vec!["proxy".into()]),
            // Its weights and backends survive a restart of the container on this volume.
            env: Some(vec![
                format!("PROXY_HEALTH_PATH={health}"),
                "PROXY_STATE=/state/proxy.state".to_owned(),
            ]),
            labels: Some(HashMap::from([
                (labels::APP.to_owned(), app.to_string()),
                (labels::ROLE.to_owned(), labels::role::PROXY.to_owned()),
            ])),
            exposed_ports: Some(HashMap::from([
                ("80/tcp".to_owned(), HashMap::new()),
                ("81/tcp".to_owned(), HashMap::new()),
            ])),
            host_config: Some(HostConfig {
                init: Some(true),
                network_mode: Some(network),
                binds: Some(vec![format!("{}:/state", labels::proxy(app))]),
                port_bindings: Some(HashMap::from([
                    ("80/tcp".to_owned(), bind(config.proxy_port)),
                    ("81/tcp".to_owned(), bind(0)),
                ])),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {}
            Err(e) if is_not_found(&e) => {
                return Err(Error::not_found(
                    tapitalee_core::Resource::Image,
                    self.proxy_image.clone(),
                    "build the proxy image first (tapitalee_docker::KIT_DOCKERFILE_PROXY)",
                ));
            }
            Err(e) => return Err(map("create proxy", e)),
        }
        match self
            .docker
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(map("start proxy", e)),
        }
        for _ in 0..100 {
            if let Some(addrs) = self.proxy_addrs(app).await?
                && http::request(addrs.admin, "GET", "/state", "", ADMIN_TIMEOUT)
                    .await
                    .is_ok()
            {
                tracing::info!(app = %app, traffic = %addrs.traffic, "proxy started");
                return Ok(addrs);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(error::proxy(
            "start proxy",
            format!("the proxy of app {app} did not come up"),
        ))
    }

    /// One admin call; anything but 200 is an error.
    pub(crate) async fn admin(
        &self,
        addrs: ProxyAddrs,
        method: &str,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<String> {
        let op = format!("proxy {method} {path}");
        match http::request(addrs.admin, method, path, body, timeout).await {
            Ok((200, text)) => Ok(text),
            Ok((status, text)) => Err(Error::platform(
                op,
                format!("the proxy answered {status}: {}", text.trim()),
            )),
            Err(e) => Err(error::proxy(&op, e.to_string())),
        }
    }

    /// The proxy's weights and backends.
    pub(crate) async fn proxy_state(&self, addrs: ProxyAddrs) -> Result<ProxyState> {
        let text = self
            .admin(addrs, "GET", "/state", "", ADMIN_TIMEOUT)
            .await?;
        let mut state = ProxyState::default();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["weight", fleet, w] => {
                    state
                        .weights
                        .push(((*fleet).to_owned(), w.parse().unwrap_or(0)));
                }
                ["backend", fleet, addr, healthy, _] => {
                    if let Ok(addr) = addr.parse() {
                        state.backends.push(ProxyBackend {
                            fleet: (*fleet).to_owned(),
                            addr,
                            healthy: *healthy == "true",
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(state)
    }

    pub(crate) async fn set_weights(
        &self,
        addrs: ProxyAddrs,
        weights: &[TrafficWeight],
    ) -> Result<()> {
        let body: String = weights
            .iter()
            .map(|w| format!("{} {}\n", w.fleet, w.percent))
            .collect();
        self.admin(addrs, "PUT", "/weights", &body, ADMIN_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// Tells the proxy a fleet's instances: every running instance of the fleet, read from
    /// the engine now.
    pub(crate) async fn sync_backends(
        &self,
        addrs: ProxyAddrs,
        app: &AppName,
        fleet: &FleetId,
        port: u16,
    ) -> Result<()> {
        let instances = self.instances(app, fleet).await?;
        let inspected =
            futures::future::try_join_all(instances.iter().map(|c| self.inspect(&c.id))).await?;
        self.push_backends(addrs, app, fleet, port, &inspected)
            .await
    }

    /// Tells the proxy a fleet's instances from the fleet's instances as just inspected.
    pub(crate) async fn push_backends(
        &self,
        addrs: ProxyAddrs,
        app: &AppName,
        fleet: &FleetId,
        port: u16,
        inspected: &[Option<ContainerInspectResponse>],
    ) -> Result<()> {
        let body: String = inspected
            .iter()
            .flatten()
            .filter(|c| c.state.as_ref().and_then(|s| s.running).unwrap_or(false))
            .filter_map(|c| self.address(app, c, port))
            .map(|a| format!("{a}\n"))
            .collect();
        self.admin(
            addrs,
            "PUT",
            &format!("/backends/{fleet}"),
            &body,
            ADMIN_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    /// Takes addresses out of rotation and waits (bounded) for their in-flight requests.
    pub(crate) async fn drain(&self, addrs: ProxyAddrs, backends: &[SocketAddr]) -> Result<()> {
        if backends.is_empty() {
            return Ok(());
        }
        let body: String = backends.iter().map(|a| format!("{a}\n")).collect();
        let ms = self.drain_timeout.as_millis();
        let outcome = self
            .admin(
                addrs,
                "POST",
                &format!("/drain?timeout_ms={ms}"),
                &body,
                self.drain_timeout + ADMIN_TIMEOUT,
            )
            .await?;
        if outcome.trim() != "drained" {
            tracing::warn!(backends = ?backends, "drain timed out; stopping with requests in flight");
        }
        Ok(())
    }

    pub(crate) async fn forget_fleet(&self, addrs: ProxyAddrs, fleet: &FleetId) -> Result<()> {
        self.admin(
            addrs,
            "DELETE",
            &format!("/fleets/{fleet}"),
            "",
            ADMIN_TIMEOUT,
        )
        .await
        .map(|_| ())
    }
}
