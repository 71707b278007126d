//! [`Deployer`] for [`DockerBackend`]: fleets as labelled containers.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum,
    HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions};
use tapitalee_core::{
    AppName, DeployContext, Deployer, DynHealthProbe, Error, Fleet, FleetId, FleetStatus, ImageRef,
    Instance, InstanceStatus, ProcessSpec, Release, Resource, Result, Revision, TrafficWeight,
};

use crate::backend::{DockerBackend, Listed, parse_time};
use crate::config::ProcessConfig;
use crate::error::{is_not_found, map};
use crate::health::DockerHealth;
use crate::labels::{self, role};

fn fleet_labels(fleet: &Fleet) -> HashMap<String, String> {
    let image = &fleet.revision.image;
    HashMap::from([
        (labels::APP.to_owned(), fleet.target.app.to_string()),
        (labels::PROCESS.to_owned(), fleet.target.process.to_string()),
        (labels::FLEET.to_owned(), fleet.id.to_string()),
        (labels::REVISION.to_owned(), fleet.revision.id.clone()),
        (labels::REPOSITORY.to_owned(), image.repository.clone()),
        (labels::TAG.to_owned(), image.tag.to_string()),
        (
            labels::DIGEST.to_owned(),
            image
                .digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
    ])
}

fn digest_of(image: &ImageRef) -> Result<String> {
    image
        .digest
        .as_ref()
        .map(ToString::to_string)
        .ok_or_else(|| {
            Error::invalid(
                "image",
                image.to_string(),
                "must be pinned by digest; resolve it first",
            )
        })
}

fn gone(fleet: &FleetId) -> Error {
    Error::not_found(Resource::Fleet, fleet.to_string(), "it was retired")
}

/// Whether a container has failed at least once: restarted, or stopped.
fn has_failed(c: &ContainerInspectResponse) -> bool {
    c.restart_count.unwrap_or(0) > 0
        || matches!(
            c.state.as_ref().and_then(|s| s.status),
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
        )
}

/// How many of a failed instance's last log lines its stop reason carries.
const FAILED_LOG_LINES: usize = 3;

/// An instance's incarnations as the engine reports them: every restart is a failed run.
/// `last_lines` (what a failed instance logged last) is added to the stop reasons, so the
/// deployment's failure reason keeps them after a rollback removed the container.
fn instances_of(c: &ContainerInspectResponse, last_lines: &[String]) -> Vec<Instance> {
    let said = if last_lines.is_empty() {
        String::new()
    } else {
        format!("; it logged last: {}", last_lines.join(" | "))
    };
    let name = c
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let state = c.state.clone().unwrap_or_default();
    let exit_code = state.exit_code.and_then(|e| i32::try_from(e).ok());
    let restarts = u32::try_from(c.restart_count.unwrap_or(0)).unwrap_or(0);
    let mut out: Vec<Instance> = (0..restarts)
        .map(|k| Instance {
            id: format!("{name}#{k}"),
            status: InstanceStatus::Stopped {
                reason: format!("exited; restarted by the engine{said}"),
                exit_code,
            },
            started_at: None,
        })
        .collect();
    let status = match state.status {
        Some(ContainerStateStatusEnum::RUNNING) => {
            match state.health.as_ref().and_then(|h| h.status) {
                Some(HealthStatusEnum::HEALTHY) => InstanceStatus::Running {
                    healthy: Some(true),
                },
                Some(HealthStatusEnum::UNHEALTHY) => InstanceStatus::Running {
                    healthy: Some(false),
                },
                Some(HealthStatusEnum::STARTING) => InstanceStatus::Pending,
                _ => InstanceStatus::Running { healthy: None },
            }
        }
        Some(ContainerStateStatusEnum::PAUSED) => InstanceStatus::Running {
            healthy: Some(false),
        },
        Some(ContainerStateStatusEnum::CREATED) | None | Some(ContainerStateStatusEnum::EMPTY) => {
            InstanceStatus::Pending
        }
        Some(other) => InstanceStatus::Stopped {
            reason: format!("container {other}{said}"),
            exit_code,
        },
    };
    out.push(Instance {
        id: format!("{name}#{restarts}"),
        status,
        started_at: parse_time(state.started_at.as_deref()),
    });
    out
}

impl DockerBackend {
    fn instance_body(
        &self,
        network: Option<&str>,
        ctx: &DeployContext,
        fleet: &Fleet,
        spec: &ProcessConfig,
        role: &str,
    ) -> Result<ContainerCreateBody> {
        let mut labels = fleet_labels(fleet);
        labels.insert(labels::ROLE.to_owned(), role.to_owned());
        labels.insert(labels::DEPLOYMENT.to_owned(), ctx.deployment.to_string());
        labels.insert(labels::INITIATOR.to_owned(), ctx.initiator.to_string());
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(format!("TAPIT_APP={}", fleet.target.app));
        env.push(format!("TAPIT_PROCESS={}", fleet.target.process));
        env.push(format!("TAPIT_FLEET={}", fleet.id));
        env.push(format!("TAPIT_VERSION={}", fleet.revision.image.tag));
        if let Some(web) = &spec.web {
            env.push(format!("PORT={}", web.port));
        }
        let started = role == role::INSTANCE;
        Ok(ContainerCreateBody {
            image: Some(digest_of(&fleet.revision.image)?),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(env),
            labels: Some(labels),
            stop_timeout: i64::try_from(self.stop_timeout.as_secs()).ok(),
            host_config: Some(HostConfig {
                init: Some(true),
                network_mode: network.map(str::to_owned),
                restart_policy: started.then_some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ON_FAILURE),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn create(&self, name: &str, body: ContainerCreateBody, start: bool) -> Result<()> {
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| map("create container", e))?;
        if start {
            for attempt in 0.. {
                match self
                    .docker
                    .start_container(name, None::<StartContainerOptions>)
                    .await
                {
                    Ok(()) => break,
                    // Another process created a duplicate of the app's network a moment ago
                    // (see `ensure_network`); it is being removed.
                    Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                        if message.contains("ambiguous") && attempt < 5 =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(map("start container", e)),
                }
            }
        }
        Ok(())
    }

    /// Starts instances `from..to` of a fleet, on the app's network (its id).
    async fn add_instances(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        spec: &ProcessConfig,
        network: &str,
        from: u32,
        to: u32,
    ) -> Result<()> {
        let jobs = (from..to).map(|i| async move {
            let mut body = self.instance_body(Some(network), ctx, fleet, spec, role::INSTANCE)?;
            if let Some(l) = body.labels.as_mut() {
                l.insert(labels::INDEX.to_owned(), i.to_string());
            }
            self.create(
                &labels::instance(&fleet.target.app, &fleet.id, i),
                body,
                true,
            )
            .await
        });
        futures::future::try_join_all(jobs).await.map(|_| ())
    }

    /// Takes instances out of the proxy (draining them), then stops and removes them.
    async fn remove_instances(
        &self,
        app: &AppName,
        spec: &ProcessConfig,
        victims: &[Listed],
    ) -> Result<()> {
        if let Some(web) = &spec.web
            && let Some(proxy) = self.proxy_addrs(app).await?
        {
            let inspected =
                futures::future::try_join_all(victims.iter().map(|c| self.inspect(&c.id))).await?;
            let addrs: Vec<_> = inspected
                .iter()
                .flatten()
                .filter_map(|c| self.address(app, c, web.port))
                .collect();
            self.drain(proxy, &addrs).await?;
        }
        let ids: Vec<String> = victims.iter().map(|c| c.id.clone()).collect();
        self.stop_and_remove(&ids).await
    }

    async fn existing(&self, fleet: &Fleet) -> Result<Listed> {
        self.fleet_marker(&fleet.target.app, &fleet.id)
            .await?
            .ok_or_else(|| gone(&fleet.id))
    }

    async fn sync_if_web(&self, fleet: &Fleet, spec: &ProcessConfig) -> Result<()> {
        if let Some(web) = &spec.web
            && let Some(proxy) = self.proxy_addrs(&fleet.target.app).await?
        {
            self.sync_backends(proxy, &fleet.target.app, &fleet.id, web.port)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Deployer for DockerBackend {
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>> {
        let config = self.app(app)?;
        let mut specs: Vec<ProcessSpec> = config
            .processes
            .iter()
            .map(|p| ProcessSpec::new(p.name.clone(), p.instances, p.web.is_some()))
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(specs)
    }

    async fn current(&self, ctx: &DeployContext) -> Result<Release> {
        let spec = self.process(&ctx.target)?;
        let t = &ctx.target;
        let mut releases = self
            .containers(&[
                (labels::APP, t.app.as_str()),
                (labels::PROCESS, t.process.as_str()),
                (labels::ROLE, role::RELEASE),
            ])
            .await?;
        releases.sort_by(|a, b| b.label(labels::SEQ).cmp(&a.label(labels::SEQ)));
        for release in releases {
            let Some(id) = release.label(labels::FLEET) else {
                continue;
            };
            let id = FleetId(id.to_owned());
            if let Some(marker) = self.fleet_marker(&t.app, &id).await? {
                let fleet = self.fleet_from(t, &marker)?;
                let running = self.instances(&t.app, &id).await?.len();
                let running = u32::try_from(running).unwrap_or(u32::MAX);
                return Ok(Release {
                    fleet: Some(fleet),
                    desired: running.max(spec.instances),
                });
            }
        }
        Ok(Release {
            fleet: None,
            desired: spec.instances,
        })
    }

    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision> {
        self.process(&ctx.target)?;
        let digest = digest_of(image)?;
        match self.docker.inspect_image(&digest).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                return Err(Error::not_found(
                    Resource::Image,
                    image.to_string(),
                    "it is not in the engine's image store; build or pull it first",
                ));
            }
            Err(e) => return Err(map("inspect image", e)),
        }
        Ok(Revision {
            id: format!("{}@{digest}", ctx.target),
            image: image.clone(),
        })
    }

    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet> {
        let spec = self.process(&ctx.target)?;
        let app = &ctx.target.app;
        let network = self.ensure_network(app).await?;
        let fleet = Fleet {
            id: FleetId(format!(
                "{}-{}",
                ctx.target.process,
                ulid::Ulid::new().to_string().to_lowercase()
            )),
            target: ctx.target.clone(),
            revision: revision.clone(),
        };
        let marker = self.instance_body(None, ctx, &fleet, spec, role::FLEET)?;
        let launched = async {
            self.create(&labels::fleet_marker(app, &fleet.id), marker, false)
                .await?;
            self.add_instances(ctx, &fleet, spec, &network, 0, count)
                .await?;
            // The app's proxy (started on its first web launch) comes up after the instances
            // were started, while they become healthy (their first health check is a second
            // or more away). Started alongside them, it delayed their own start, on the
            // critical path of every first deploy.
            if spec.web.is_some() {
                self.ensure_proxy_on(app, &network).await?;
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = launched.await {
            // A fleet that failed to launch leaves nothing running: the caller never got it.
            let left = self
                .containers(&[
                    (labels::APP, app.as_str()),
                    (labels::FLEET, fleet.id.0.as_str()),
                ])
                .await
                .unwrap_or_default();
            for c in left {
                if let Err(cleanup) = self.remove(&c.id).await {
                    tracing::warn!(container = %c.name, error = %cleanup, "cannot remove after a failed launch");
                }
            }
            return Err(e);
        }
        self.sync_if_web(&fleet, spec).await?;
        tracing::info!(fleet = %fleet.id, count, "fleet launched");
        Ok(fleet)
    }

    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()> {
        let spec = self.process(&fleet.target)?;
        self.existing(fleet).await?;
        let app = &fleet.target.app;
        let instances = self.instances(app, &fleet.id).await?;
        let have = u32::try_from(instances.len()).unwrap_or(u32::MAX);
        if count > have {
            let next = instances.last().map_or(0, |c| c.index() + 1);
            let network = self.ensure_network(app).await?;
            self.add_instances(ctx, fleet, spec, &network, next, next + (count - have))
                .await?;
            self.sync_if_web(fleet, spec).await?;
        } else if count < have {
            let keep = usize::try_from(count).unwrap_or(usize::MAX);
            self.remove_instances(app, spec, &instances[keep..]).await?;
        }
        tracing::info!(fleet = %fleet.id, from = have, to = count, "fleet scaled");
        Ok(())
    }

    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()> {
        let spec = self.process(&ctx.target)?;
        let Some(web) = &spec.web else {
            return Err(Error::invalid(
                "traffic weights",
                ctx.target.to_string(),
                "the process has no proxy (only the web process takes traffic)",
            ));
        };
        let total: u32 = weights.iter().map(|w| u32::from(w.percent)).sum();
        if total != 100 {
            return Err(Error::invalid(
                "traffic weights",
                format!("{weights:?}"),
                format!("must sum to 100, not {total}"),
            ));
        }
        let app = &ctx.target.app;
        for w in weights {
            if self.fleet_marker(app, &w.fleet).await?.is_none() {
                return Err(Error::not_found(
                    Resource::Fleet,
                    w.fleet.to_string(),
                    "launch it first",
                ));
            }
        }
        let proxy = self.ensure_proxy(app).await?;
        for w in weights {
            self.sync_backends(proxy, app, &w.fleet, web.port).await?;
        }
        self.set_weights(proxy, weights).await?;
        tracing::info!(weights = ?weights, "traffic routed");
        Ok(())
    }

    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        let spec = self.process(&fleet.target)?;
        self.existing(fleet).await?;
        let t = &fleet.target;
        let seq = ulid::Ulid::new().to_string().to_lowercase();
        let mut body = self.instance_body(None, ctx, fleet, spec, role::RELEASE)?;
        if let Some(l) = body.labels.as_mut() {
            l.insert(labels::SEQ.to_owned(), seq.clone());
        }
        let name = format!("tapit-{}-{}-release-{seq}", t.app, t.process);
        self.create(&name, body, false).await?;
        let older = self
            .containers(&[
                (labels::APP, t.app.as_str()),
                (labels::PROCESS, t.process.as_str()),
                (labels::ROLE, role::RELEASE),
            ])
            .await?;
        for c in older.iter().filter(|c| c.label(labels::SEQ) != Some(&seq)) {
            self.remove(&c.id).await?;
        }
        tracing::info!(fleet = %fleet.id, "fleet made primary");
        Ok(())
    }

    async fn retire(&self, _ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        let spec = self.process(&fleet.target)?;
        let app = &fleet.target.app;
        let instances = self.instances(app, &fleet.id).await?;
        self.remove_instances(app, spec, &instances).await?;
        if spec.web.is_some()
            && let Some(proxy) = self.proxy_addrs(app).await?
        {
            self.forget_fleet(proxy, &fleet.id).await?;
        }
        let rest = self
            .containers(&[
                (labels::APP, app.as_str()),
                (labels::FLEET, fleet.id.0.as_str()),
            ])
            .await?;
        // Release markers of this fleet, then the fleet's own marker last: until it is gone
        // the fleet still exists, so a retire interrupted here is simply retried.
        let (markers, others): (Vec<Listed>, Vec<Listed>) = rest
            .into_iter()
            .partition(|c| c.label(labels::ROLE) == Some(role::FLEET));
        for c in others.iter().chain(&markers) {
            self.remove(&c.id).await?;
        }
        tracing::info!(fleet = %fleet.id, "fleet retired");
        Ok(())
    }

    /// The fleet marker this deployment created for the revision, found by its labels (a
    /// revision names an image, which several deployments may run: the deployment's label
    /// tells them apart).
    async fn discover(&self, ctx: &DeployContext, revision: &Revision) -> Result<Option<Fleet>> {
        self.process(&ctx.target)?;
        let t = &ctx.target;
        let deployment = ctx.deployment.to_string();
        let markers = self
            .containers(&[
                (labels::APP, t.app.as_str()),
                (labels::PROCESS, t.process.as_str()),
                (labels::ROLE, role::FLEET),
                (labels::DEPLOYMENT, deployment.as_str()),
                (labels::REVISION, revision.id.as_str()),
            ])
            .await?;
        let stable = ctx.stable.as_ref().map(|f| f.id.0.as_str());
        for marker in markers {
            if marker
                .label(labels::FLEET)
                .is_some_and(|id| Some(id) != stable)
            {
                return self.fleet_from(t, &marker).map(Some);
            }
        }
        Ok(None)
    }

    async fn status(&self, _ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus> {
        let spec = self.process(&fleet.target)?;
        let app = &fleet.target.app;
        // The fleet's marker, its instances and (for the web process) the proxy's address
        // are read together: one round of engine calls per poll.
        let proxy = async {
            match spec.web {
                Some(_) => self.proxy_addrs(app).await,
                None => Ok(None),
            }
        };
        let instances = async {
            let listed = self.instances(app, &fleet.id).await?;
            let inspected =
                futures::future::try_join_all(listed.iter().map(|c| self.inspect(&c.id))).await?;
            Ok::<_, Error>((listed, inspected))
        };
        let (exists, proxy, instances) = futures::join!(self.existing(fleet), proxy, instances);
        exists?;
        let (listed, inspected) = instances?;
        let tails = futures::future::join_all(inspected.iter().map(|c| async move {
            match c {
                Some(c) if has_failed(c) => {
                    self.last_lines(c.id.as_deref().unwrap_or_default(), FAILED_LOG_LINES)
                        .await
                }
                _ => Vec::new(),
            }
        }))
        .await;
        let instances = inspected
            .iter()
            .zip(&tails)
            .filter_map(|(c, tail)| c.as_ref().map(|c| instances_of(c, tail)))
            .flatten()
            .collect();
        // The proxy learns of instances restarted (new addresses) from these same reads.
        if let Some(web) = &spec.web {
            let pushed = match proxy {
                Ok(Some(proxy)) => {
                    self.push_backends(proxy, app, &fleet.id, web.port, &inspected)
                        .await
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = pushed {
                tracing::warn!(fleet = %fleet.id, error = %e, "could not update the proxy's backends");
            }
        }
        Ok(FleetStatus {
            fleet: fleet.id.clone(),
            desired: u32::try_from(listed.len()).unwrap_or(u32::MAX),
            instances,
        })
    }

    fn target_health(&self) -> Option<DynHealthProbe> {
        Some(Arc::new(DockerHealth::new(self.clone())))
    }
}
