//! [`DockerHealth`]: the web process's HTTP health, as the instance answers it and as the
//! app's proxy sees it.

use std::time::Duration;

use async_trait::async_trait;
use tapitalee_core::{Fleet, FleetStatus, HealthProbe, HealthReport, Result};

use crate::backend::DockerBackend;
use crate::http;

/// The backend's target-health probe (what [`Deployer::target_health`] returns): an instance
/// of the web process passes when its health path answers 200 and the app's proxy counts it
/// healthy (so traffic sent to the fleet reaches it). Other processes have no health path:
/// every running instance passes, and crash loops are caught by their restarts, which the
/// fleet's status reports as failed instances with their exit codes.
///
/// The image's own Docker health check, where it has one, is in the fleet's status
/// ([`InstanceStatus::Running`](tapitalee_core::InstanceStatus)'s `healthy`), which the
/// engine's container-health probe judges.
///
/// [`Deployer::target_health`]: tapitalee_core::Deployer::target_health
#[derive(Debug, Clone)]
pub struct DockerHealth {
    backend: DockerBackend,
}

impl DockerHealth {
    /// The probe over a backend.
    pub fn new(backend: DockerBackend) -> Self {
        DockerHealth { backend }
    }
}

#[async_trait]
impl HealthProbe for DockerHealth {
    fn name(&self) -> &str {
        "http"
    }

    async fn check(&self, fleet: &Fleet, status: &FleetStatus) -> Result<HealthReport> {
        let b = &self.backend;
        let spec = b.process(&fleet.target)?;
        let Some(web) = &spec.web else {
            return Ok(HealthReport {
                healthy: status.running(),
                problems: Vec::new(),
            });
        };
        let app = &fleet.target.app;
        // The proxy's view and the instances are read together, and every instance is
        // probed at once: a poll costs one round of engine calls, not one per instance.
        let proxy = async {
            match b.proxy_addrs(app).await? {
                Some(addrs) => b.proxy_state(addrs).await.map(Some),
                None => Ok(None),
            }
        };
        let instances = async {
            let listed = b.instances(app, &fleet.id).await?;
            let inspected =
                futures::future::try_join_all(listed.iter().map(|c| b.inspect(&c.id))).await?;
            Ok::<_, tapitalee_core::Error>((listed, inspected))
        };
        let (proxy, instances) = futures::join!(proxy, instances);
        let (proxy, (listed, inspected)) = (proxy?, instances?);
        let probes = inspected.iter().zip(&listed).filter_map(|(c, listed)| {
            let c = c.as_ref()?;
            if !c.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
                return None;
            }
            let addr = b.address(app, c, web.port)?;
            Some(async move {
                let direct =
                    http::request(addr, "GET", &web.health_path, "", Duration::from_secs(2))
                        .await
                        .map(|(status, _)| status);
                (listed, addr, direct)
            })
        });
        let mut report = HealthReport::default();
        for (listed, addr, direct) in futures::future::join_all(probes).await {
            let in_proxy = proxy.as_ref().is_none_or(|p| {
                p.backends
                    .iter()
                    .any(|pb| pb.addr == addr && pb.healthy && pb.fleet == fleet.id.0)
            });
            match direct {
                Ok(200) if in_proxy => report.healthy += 1,
                Ok(200) => report.problems.push(format!(
                    "instance {} is not yet healthy in the app's proxy",
                    listed.name
                )),
                Ok(code) => report.problems.push(format!(
                    "instance {} answers {code} on {}",
                    listed.name, web.health_path
                )),
                Err(e) => report.problems.push(format!(
                    "instance {} does not answer on {}: {e}",
                    listed.name, web.health_path
                )),
            }
        }
        Ok(report)
    }
}
