//! [`EcsDeployer`]: ECS services as Tapitalee's [`Deployer`].
//!
//! One deployer serves every process of every configured app, and picks the path per service
//! from its deployment controller (the engine holds a single deployer, and an app commonly
//! mixes a load-balanced web service on `EXTERNAL` with workers on the default `ECS`
//! controller):
//!
//! - `EXTERNAL` (this module): full strategy control. A fleet is a task set; `launch`,
//!   `scale`, `make_primary` and `retire` are `CreateTaskSet`, `UpdateTaskSet`,
//!   `UpdateServicePrimaryTaskSet` and `DeleteTaskSet`; `route` weights the listener's
//!   forward action between the process's two target groups.
//! - `ECS` ([`ecs_native`](crate::ecs_native)): ECS runs the rollout (rolling, or the
//!   blue-green / linear / canary [`EcsStrategy`](crate::EcsStrategy) the process is
//!   configured with); a fleet is the service's tasks of one task definition, and success is
//!   judged by that deployment's own rollout state.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ecs::types::{LaunchType, LoadBalancer, Scale, ScaleUnit};
use tapitalee_core::{
    AppName, DeployContext, Deployer, DynHealthProbe, Error, Fleet, FleetId, FleetStatus, ImageRef,
    Instance, InstanceStatus, ProcessSpec, Release, Resource, Result, Revision, RolloutControl,
    RolloutKind, Target, TrafficWeight,
};

use crate::backend::Shared;
use crate::config::ProcessConfig;
use crate::elb::TargetHealth;
use crate::error::unexpected;
use crate::model::{Controller, ServiceInfo, TaskInfo, TaskSetInfo};
use crate::poller::ServiceKey;
use crate::taskdef::Containers;

/// ECS as a [`Deployer`]. Get one from [`AwsBackend::deployer`](crate::AwsBackend::deployer).
#[derive(Clone)]
pub struct EcsDeployer {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for EcsDeployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsDeployer").finish_non_exhaustive()
    }
}

/// The percent of a service's desired count that makes ECS run `count` tasks: ECS computes
/// `ceil(desired * percent / 100)` in floating point, so the percent is rounded down to two
/// decimals, and further while that arithmetic would round up past the count.
pub(crate) fn scale_percent(count: u32, desired: u32) -> f64 {
    if desired == 0 || count >= desired {
        return if count == 0 { 0.0 } else { 100.0 };
    }
    let mut hundredths = u64::from(count) * 10_000 / u64::from(desired);
    // Floating point can land just above the count (64.4% of 250 = 161.00000000000003, which
    // ECS rounds up to 162): step down until ECS's own arithmetic gives the count.
    let ecs_count = |h: u64| (f64::from(desired) * (h as f64 / 100.0) / 100.0).ceil();
    while hundredths > 0 && ecs_count(hundredths) > f64::from(count) {
        hundredths -= 1;
    }
    hundredths as f64 / 100.0
}

impl EcsDeployer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        EcsDeployer { shared }
    }

    pub(crate) fn process(&self, target: &Target) -> Result<ProcessConfig> {
        Ok(self
            .shared
            .config
            .app(&target.app)?
            .get(&target.process)?
            .clone())
    }

    pub(crate) async fn service(&self, target: &Target) -> Result<(ProcessConfig, ServiceInfo)> {
        let p = self.process(target)?;
        let info = self
            .shared
            .poller(&target.app)
            .service(ServiceKey::new(&p.cluster, &p.service))
            .await?;
        if info.controller == Controller::CodeDeploy {
            return Err(Error::invalid(
                "deployment controller",
                "CODE_DEPLOY",
                format!(
                    "service {} of {target} uses CodeDeploy, which Tapitalee does not drive; \
                     switch it to the EXTERNAL or ECS controller",
                    p.service
                ),
            ));
        }
        Ok((p, info))
    }

    pub(crate) async fn revision_of(
        &self,
        ctx: &DeployContext,
        td: &str,
        p: &ProcessConfig,
    ) -> Result<Revision> {
        let def = self
            .shared
            .task_def(&ctx.target.app, td, Some(ctx.deployment))
            .await?;
        Ok(Revision {
            id: td.to_owned(),
            image: def.image(p.container.as_deref())?,
        })
    }

    /// Converts tasks to instances: running (with container health), pending, or stopped by a
    /// failure. Tasks stopped on purpose (scale-in, deployment, Spot interruption) are left
    /// out: they are gone, not failed.
    pub(crate) fn instances(tasks: &[TaskInfo], containers: &Containers) -> Vec<Instance> {
        tasks
            .iter()
            .filter_map(|t| {
                let status = if t.desired_status == "STOPPED" || t.last_status == "STOPPED" {
                    if !is_failure(t, containers) {
                        return None;
                    }
                    InstanceStatus::Stopped {
                        reason: t
                            .stopped_reason
                            .clone()
                            .or_else(|| t.stop_code.clone())
                            .unwrap_or_else(|| "stopped".into()),
                        exit_code: t.exit_code(&containers.essential),
                    }
                } else if t.last_status == "RUNNING" {
                    match t.health.as_deref() {
                        Some("HEALTHY") => InstanceStatus::Running {
                            healthy: Some(true),
                        },
                        Some("UNHEALTHY") => InstanceStatus::Running {
                            healthy: Some(false),
                        },
                        _ if containers.health_check => InstanceStatus::Pending,
                        _ => InstanceStatus::Running { healthy: None },
                    }
                } else {
                    InstanceStatus::Pending
                };
                Some(Instance {
                    id: t.arn.clone(),
                    status,
                    started_at: t.started_at,
                })
            })
            .collect()
    }

    // ---- EXTERNAL controller: task sets -------------------------------------------------

    fn release_task_set(info: &ServiceInfo) -> Option<&TaskSetInfo> {
        info.task_sets.iter().find(|t| t.status == "PRIMARY")
    }

    async fn ts_current(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
    ) -> Result<Release> {
        let target = &ctx.target;
        let fleet = match Self::release_task_set(info) {
            Some(ts) => Some(Fleet {
                id: FleetId(ts.arn.clone()),
                target: target.clone(),
                revision: self.revision_of(ctx, &ts.task_definition, p).await?,
            }),
            None => None,
        };
        Ok(Release {
            fleet,
            desired: u32::try_from(info.desired).unwrap_or(0),
        })
    }

    async fn ts_launch(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
        revision: &Revision,
        count: u32,
    ) -> Result<Fleet> {
        let target = &ctx.target;
        let desired = u32::try_from(info.desired).unwrap_or(0);
        check_count(target, &p.service, count, desired)?;
        let primary = Self::release_task_set(info);
        let network = match primary
            .and_then(|t| t.network.clone())
            .or_else(|| info.network.clone())
        {
            Some(n) => n,
            None => match &p.network {
                Some(n) => network_from_config(n)?,
                None => {
                    return Err(Error::invalid(
                        "network",
                        &p.service,
                        format!(
                            "{target} has no live task set to copy the network from; set \
                             ProcessConfig::network (subnets and security groups)"
                        ),
                    ));
                }
            },
        };
        let load_balancers = self
            .task_set_load_balancers(ctx, p, info, primary, revision)
            .await?;
        let deployment = Some(ctx.deployment);
        if let Some(lb) = &p.load_balancer {
            // Targets in a group that no listener forwards to are never health-checked.
            crate::elb::ensure_target_groups(&self.shared, &ctx.target.app, deployment, lb).await?;
        }
        let token = client_token(ctx);
        let ecs = &self.shared.clients(&ctx.target.app).ecs;
        let percent = scale_percent(count, desired);
        // Like the live task set: its capacity providers (FARGATE_SPOT stays Spot), else its
        // launch type, else the service's, else Fargate.
        let capacity = primary
            .map(|t| t.capacity_provider_strategy.clone())
            .filter(|c| !c.is_empty());
        let launch_type = match capacity {
            Some(_) => None,
            None => Some(
                primary
                    .and_then(|t| t.launch_type.clone())
                    .or_else(|| info.launch_type.clone())
                    .unwrap_or(LaunchType::Fargate),
            ),
        };
        let registries = primary
            .map(|t| t.service_registries.clone())
            .filter(|r| !r.is_empty());
        let platform_version = primary
            .and_then(|t| t.platform_version.clone())
            .or_else(|| info.platform_version.clone());
        let out = self
            .shared
            .layer
            .call("CreateTaskSet", deployment, || {
                ecs.create_task_set()
                    .cluster(&p.cluster)
                    .service(&p.service)
                    .task_definition(&revision.id)
                    .network_configuration(network.clone())
                    .set_load_balancers(Some(load_balancers.clone()))
                    .set_launch_type(launch_type.clone())
                    .set_capacity_provider_strategy(capacity.clone())
                    .set_service_registries(registries.clone())
                    .set_platform_version(platform_version.clone())
                    .scale(
                        Scale::builder()
                            .value(percent)
                            .unit(ScaleUnit::Percent)
                            .build(),
                    )
                    .set_external_id(deployment.map(|d| d.to_string()))
                    .client_token(&token)
                    .send()
            })
            .await
            .map_err(|e| {
                e.not_found_as(
                    Resource::Process,
                    &p.service,
                    "fix ProcessConfig's cluster and service",
                )
            })?;
        let arn = out
            .task_set()
            .and_then(|t| t.task_set_arn())
            .ok_or_else(|| unexpected("CreateTaskSet", "no task set ARN in the answer"))?;
        tracing::info!(%target, task_set = arn, count, percent, "created task set");
        Ok(Fleet {
            id: FleetId(arn.to_owned()),
            target: target.clone(),
            revision: revision.clone(),
        })
    }

    /// The load balancers of a new task set: the live task set's, with the process's
    /// weighted pair switched to its idle target group (every other load balancer kept as it
    /// is); on a first deploy, the configured pair's first free group.
    async fn task_set_load_balancers(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
        primary: Option<&TaskSetInfo>,
        revision: &Revision,
    ) -> Result<Vec<LoadBalancer>> {
        let Some(lb) = &p.load_balancer else {
            return Ok(primary
                .map(|t| t.load_balancers.clone())
                .unwrap_or_default());
        };
        let target = &ctx.target;
        let used: Vec<&str> = info
            .task_sets
            .iter()
            .filter(|t| t.status != "DRAINING")
            .filter_map(|t| t.target_group_of(&lb.target_groups))
            .collect();
        let idle = lb
            .target_groups
            .iter()
            .find(|tg| !used.contains(&tg.as_str()))
            .ok_or_else(|| {
                Error::platform(
                    "CreateTaskSet",
                    format!(
                        "both target groups of {target} are in use by task sets; retire the \
                         old new fleet first (a previous deployment may have left one)"
                    ),
                )
            })?;
        if let Some(live) = primary.filter(|t| t.target_group_of(&lb.target_groups).is_some()) {
            return Ok(live
                .load_balancers
                .iter()
                .map(|l| {
                    let ours = l
                        .target_group_arn()
                        .is_some_and(|tg| lb.target_groups.iter().any(|g| g == tg));
                    let mut l = l.clone();
                    if ours {
                        l.target_group_arn = Some(idle.clone());
                    }
                    l
                })
                .collect());
        }
        let container = match &lb.container_name {
            Some(c) => c.clone(),
            None => {
                let def = self
                    .shared
                    .task_def(&ctx.target.app, &revision.id, Some(ctx.deployment))
                    .await?;
                def.main_container(p.container.as_deref())?
                    .name()
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        Ok(vec![
            LoadBalancer::builder()
                .target_group_arn(idle)
                .container_name(container)
                .container_port(lb.container_port)
                .build(),
        ])
    }

    async fn ts_scale(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
        count: u32,
    ) -> Result<()> {
        let desired = u32::try_from(info.desired).unwrap_or(0);
        check_count(&fleet.target, &p.service, count, desired)?;
        let percent = scale_percent(count, desired);
        let ecs = &self.shared.clients(&fleet.target.app).ecs;
        self.shared
            .layer
            .call("UpdateTaskSet", Some(ctx.deployment), || {
                ecs.update_task_set()
                    .cluster(&p.cluster)
                    .service(&p.service)
                    .task_set(&fleet.id.0)
                    .scale(
                        Scale::builder()
                            .value(percent)
                            .unit(ScaleUnit::Percent)
                            .build(),
                    )
                    .send()
            })
            .await
            .map_err(|e| fleet_gone(e, fleet))?;
        Ok(())
    }

    async fn ts_make_primary(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
    ) -> Result<()> {
        let ecs = &self.shared.clients(&fleet.target.app).ecs;
        self.shared
            .layer
            .call("UpdateServicePrimaryTaskSet", Some(ctx.deployment), || {
                ecs.update_service_primary_task_set()
                    .cluster(&p.cluster)
                    .service(&p.service)
                    .primary_task_set(&fleet.id.0)
                    .send()
            })
            .await
            .map_err(|e| fleet_gone(e, fleet))?;
        Ok(())
    }

    async fn ts_retire(&self, ctx: &DeployContext, fleet: &Fleet, p: &ProcessConfig) -> Result<()> {
        let ecs = &self.shared.clients(&fleet.target.app).ecs;
        let result = self
            .shared
            .layer
            .call("DeleteTaskSet", Some(ctx.deployment), || {
                ecs.delete_task_set()
                    .cluster(&p.cluster)
                    .service(&p.service)
                    .task_set(&fleet.id.0)
                    .force(true)
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if task_set_gone(&e) => {
                tracing::debug!(fleet = %fleet.id, "task set already gone");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn ts_status(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
    ) -> Result<FleetStatus> {
        let ts = info
            .task_sets
            .iter()
            .find(|t| t.arn == fleet.id.0 || t.id == fleet.id.0)
            .ok_or_else(|| {
                Error::not_found(
                    Resource::Fleet,
                    fleet.id.0.clone(),
                    format!("service {} has no such task set (retired?)", p.service),
                )
            })?;
        let def = self
            .shared
            .task_def(&ctx.target.app, &ts.task_definition, Some(ctx.deployment))
            .await?;
        let containers = def.containers();
        let key = ServiceKey::new(&p.cluster, &p.service);
        // A task set ECS calls STEADY_STATE (its tasks all running and passing their checks)
        // that the last listing already shows so needs no ListTasks / DescribeTasks this
        // round (a few rounds at most: see `tasks_unless`).
        let poller = self.shared.poller(&fleet.target.app);
        let tasks = if ts.steady() {
            let (ts, health_check) = (ts.clone(), containers.health_check);
            poller
                .tasks_unless(
                    key,
                    crate::poller::StillTrue(Box::new(move |tasks| {
                        shows_whole_and_healthy(tasks, &ts, health_check)
                    })),
                )
                .await?
        } else {
            poller.tasks(key).await?
        };
        let mine: Vec<TaskInfo> = tasks
            .into_iter()
            .filter(|t| t.started_by.as_deref() == Some(ts.id.as_str()))
            .collect();
        Ok(FleetStatus {
            fleet: fleet.id.clone(),
            desired: u32::try_from(ts.computed_desired).unwrap_or(0),
            instances: Self::instances(&mine, &containers),
        })
    }

    async fn ts_route(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
        weights: &[TrafficWeight],
    ) -> Result<()> {
        let target = &ctx.target;
        let lb = p.load_balancer.as_ref().ok_or_else(|| {
            Error::invalid(
                "traffic weight",
                format!("{weights:?}"),
                format!("process {target} has no load balancer configured (ProcessConfig::load_balancer)"),
            )
        })?;
        let mut split = [0u8; 2];
        for w in weights {
            let ts = info
                .task_sets
                .iter()
                .find(|t| t.arn == w.fleet.0 || t.id == w.fleet.0)
                .ok_or_else(|| {
                    Error::not_found(
                        Resource::Fleet,
                        w.fleet.0.clone(),
                        format!("service {} has no such task set", p.service),
                    )
                })?;
            let tg = ts.target_group_of(&lb.target_groups).unwrap_or_default();
            let i = lb.target_groups.iter().position(|g| g == tg).ok_or_else(|| {
                Error::platform(
                    "route traffic",
                    format!(
                        "task set {} is attached to target group {tg:?}, which is not one of the \
                         configured pair {:?}",
                        w.fleet, lb.target_groups
                    ),
                )
            })?;
            split[i] = split[i].saturating_add(w.percent);
        }
        crate::elb::set_weights(
            &self.shared,
            &ctx.target.app,
            Some(ctx.deployment),
            lb,
            split,
        )
        .await
    }
}

impl EcsDeployer {
    /// After a retire: deregisters the fleet's revision when the retire was a rollback (the
    /// fleet is not the stable one and runs another revision than it), the revision was
    /// registered by this deployment, and no other task set of the service runs it. Its
    /// failure does not fail the retire (the caller logs it).
    async fn deregister_rolled_back(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        info: &ServiceInfo,
    ) -> Result<()> {
        let revision = &fleet.revision.id;
        let stable = ctx.stable.as_ref();
        if stable.is_some_and(|s| s.id == fleet.id || &s.revision.id == revision) {
            return Ok(()); // the old fleet retired after a success
        }
        let elsewhere = info
            .task_sets
            .iter()
            .any(|t| &t.task_definition == revision && t.arn != fleet.id.0 && t.id != fleet.id.0);
        if elsewhere {
            return Ok(());
        }
        let def = self
            .shared
            .task_def(&ctx.target.app, revision, Some(ctx.deployment))
            .await?;
        let ours = ctx.deployment.to_string();
        let registered_here = def.tags.iter().any(|t| {
            t.key() == Some(crate::taskdef::TAG_DEPLOYMENT) && t.value() == Some(ours.as_str())
        });
        if !registered_here {
            return Ok(());
        }
        let ecs = &self.shared.clients(&fleet.target.app).ecs;
        self.shared
            .layer
            .call("DeregisterTaskDefinition", Some(ctx.deployment), || {
                ecs.deregister_task_definition()
                    .task_definition(revision)
                    .send()
            })
            .await?;
        tracing::info!(target = %ctx.target, %revision, "deregistered the rolled-back revision");
        Ok(())
    }
}

fn network_from_config(
    n: &crate::config::NetworkConfig,
) -> Result<aws_sdk_ecs::types::NetworkConfiguration> {
    use aws_sdk_ecs::types::{AssignPublicIp, AwsVpcConfiguration, NetworkConfiguration};
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(n.subnets.clone()))
        .set_security_groups(Some(n.security_groups.clone()))
        .assign_public_ip(if n.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| Error::invalid("network", format!("{n:?}"), e.to_string()))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

/// The idempotency token of a deployment's new task set for one process: a `CreateTaskSet`
/// retried after a lost answer (timeout, 5xx) gets the task set the first request created,
/// not a second, orphaned one. The deployment id's 26 characters, a dash, and an FNV-1a hash
/// of the process name: 35 of the 36 characters ECS allows, the same in every retry and in
/// every process that sends it.
pub(crate) fn client_token(ctx: &DeployContext) -> String {
    let hash = ctx
        .target
        .process
        .as_str()
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    let id = ctx.deployment.to_string();
    let ulid = id.strip_prefix("dep-").unwrap_or(&id);
    format!("{ulid}-{hash:08x}")
}

/// Whether a listing shows the task set as ECS's `STEADY_STATE` says it is: its computed
/// count of tasks desired RUNNING, all RUNNING, and HEALTHY where the task definition has a
/// container health check.
fn shows_whole_and_healthy(tasks: &[TaskInfo], ts: &TaskSetInfo, health_check: bool) -> bool {
    let live: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.started_by.as_deref() == Some(ts.id.as_str()))
        .filter(|t| t.desired_status == "RUNNING")
        .collect();
    i32::try_from(live.len()).is_ok_and(|n| n == ts.computed_desired)
        && live.iter().all(|t| {
            t.last_status == "RUNNING" && (!health_check || t.health.as_deref() == Some("HEALTHY"))
        })
}

fn check_count(target: &Target, service: &str, count: u32, desired: u32) -> Result<()> {
    if count > desired {
        return Err(Error::invalid(
            "instance count",
            count.to_string(),
            format!(
                "task sets of {target} scale as a percent of service {service}'s desired count \
                 ({desired}); ask for at most {desired}, or raise the service's desired count"
            ),
        ));
    }
    Ok(())
}

/// `TaskSetNotFoundException` (moto: a `ClientException` saying so).
fn task_set_gone(e: &crate::error::AwsError) -> bool {
    match e.code.as_deref() {
        Some("TaskSetNotFoundException") => true,
        Some("ClientException") => e.message.contains("task set does not exist"),
        _ => false,
    }
}

fn fleet_gone(e: crate::error::AwsError, fleet: &Fleet) -> Error {
    let hint = "the task set no longer exists (retired?)".to_owned();
    if task_set_gone(&e) {
        Error::not_found(Resource::Fleet, fleet.id.0.clone(), hint)
    } else {
        e.into()
    }
}

/// Whether a stopped task failed (as opposed to being stopped on purpose), by ECS's
/// `stopCode` first:
/// - `TaskFailedToStart`, `EssentialContainerExited`: failed;
/// - `ServiceSchedulerInitiated`: failed only when the scheduler replaced it for failing its
///   container or load balancer health checks (scale-in and deployments stop tasks too);
/// - `UserInitiated`, `SpotInterruption`, `TerminationNotice`: not a failure (a person, Spot
///   reclaiming capacity, Fargate maintenance), whatever the exit code (137/143 from SIGKILL /
///   SIGTERM);
/// - no code: an essential container's non-zero exit code, or a stop reason naming a failure.
pub(crate) fn is_failure(t: &TaskInfo, containers: &Containers) -> bool {
    let health_failed = || {
        t.stopped_reason
            .as_deref()
            .is_some_and(|r| r.to_ascii_lowercase().contains("health check"))
    };
    match t.stop_code.as_deref() {
        Some("TaskFailedToStart" | "EssentialContainerExited") => true,
        Some("ServiceSchedulerInitiated") => health_failed(),
        Some("UserInitiated" | "SpotInterruption" | "TerminationNotice") => false,
        _ => {
            t.exit_code(&containers.essential).is_some_and(|c| c != 0)
                || health_failed()
                || t.stopped_reason
                    .as_deref()
                    .is_some_and(|r| r.contains("failed"))
        }
    }
}

/// The strategy ECS runs for an ECS-controller process: its [`EcsStrategy`], else the one
/// the service's deployment configuration sets.
fn native_strategy(p: &ProcessConfig, info: &ServiceInfo) -> Option<crate::EcsStrategy> {
    p.ecs_strategy.or_else(|| {
        info.deployment_configuration
            .as_ref()
            .map(crate::EcsStrategy::of_service)
    })
}

#[async_trait]
impl Deployer for EcsDeployer {
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>> {
        let cfg = self.shared.config.app(app)?;
        let keys: Vec<ServiceKey> = cfg
            .processes
            .iter()
            .map(|p| ServiceKey::new(&p.cluster, &p.service))
            .collect();
        let infos = self.shared.poller(app).services(&keys).await?;
        Ok(cfg
            .processes
            .iter()
            .zip(infos)
            .map(|(p, info)| ProcessSpec {
                name: p.name.clone(),
                // Only task sets let us split traffic; ECS-controller services shift it alone.
                load_balanced: info.controller == Controller::External && p.load_balancer.is_some(),
                desired: u32::try_from(info.desired).unwrap_or(0),
                rollout: match info.controller {
                    Controller::External => RolloutControl::Engine,
                    _ => RolloutControl::Platform {
                        // The strategy ECS will run: the process's, else the service's own.
                        bake: native_strategy(p, &info)
                            .map_or(std::time::Duration::ZERO, |s| s.total_bake_time()),
                        native: native_strategy(p, &info)
                            .map_or(RolloutKind::Rolling, |s| s.kind()),
                        by: format!(
                            "ECS deployment controller of service {}; for Tapitalee's own \
                             strategies move the service to the EXTERNAL controller",
                            p.service
                        ),
                    },
                },
            })
            .collect())
    }

    async fn current(&self, ctx: &DeployContext) -> Result<Release> {
        let (p, info) = self.service(&ctx.target).await?;
        match info.controller {
            Controller::External => self.ts_current(ctx, &p, &info).await,
            _ => self.native_current(ctx, &p, &info).await,
        }
    }

    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision> {
        let target = &ctx.target;
        let (p, info) = self.service(target).await?;
        if let (Controller::External, Some(strategy)) = (info.controller, &p.ecs_strategy) {
            return Err(Error::invalid(
                "ECS deployment strategy",
                strategy.name(),
                format!(
                    "service {} of {target} uses the EXTERNAL controller, where Tapitalee's own \
                     strategy runs the rollout; remove ProcessConfig::ecs_strategy, or move the \
                     service to the ECS controller",
                    p.service
                ),
            ));
        }
        let live = match info.controller {
            Controller::External => {
                Self::release_task_set(&info).map(|t| t.task_definition.clone())
            }
            _ => info
                .deployments
                .iter()
                .find(|d| d.status == "PRIMARY")
                .map(|d| d.task_definition.clone()),
        };
        let base = live
            .or(info.task_definition.clone())
            .or(p.task_family.clone())
            .ok_or_else(|| {
                Error::invalid(
                    "task definition",
                    &p.service,
                    format!(
                        "{target} runs nothing yet and has no task definition to copy; set \
                         ProcessConfig::task_family"
                    ),
                )
            })?;
        let def = self
            .shared
            .task_def(&ctx.target.app, &base, Some(ctx.deployment))
            .await?;
        self.shared
            .register_copy(&def, p.container.as_deref(), image, ctx)
            .await
    }

    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet> {
        let (p, info) = self.service(&ctx.target).await?;
        match info.controller {
            Controller::External => self.ts_launch(ctx, &p, &info, revision, count).await,
            _ => self.native_launch(ctx, &p, &info, revision).await,
        }
    }

    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()> {
        let (p, info) = self.service(&fleet.target).await?;
        match info.controller {
            Controller::External => self.ts_scale(ctx, fleet, &p, &info, count).await,
            _ => self.native_scale(ctx, fleet, &p, &info, count).await,
        }
    }

    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()> {
        let target = &ctx.target;
        let (p, info) = self.service(target).await?;
        match info.controller {
            Controller::External => self.ts_route(ctx, &p, &info, weights).await,
            _ => Err(Error::invalid(
                "traffic weight",
                format!("{weights:?}"),
                format!(
                    "service {} of {target} uses the ECS deployment controller, which shifts \
                     traffic itself; use the EXTERNAL controller for weighted routing",
                    p.service
                ),
            )),
        }
    }

    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        let (p, info) = self.service(&fleet.target).await?;
        match info.controller {
            Controller::External => self.ts_make_primary(ctx, fleet, &p).await,
            _ => self.native_make_primary(ctx, fleet, &p, &info).await,
        }
    }

    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        let (p, info) = self.service(&fleet.target).await?;
        match info.controller {
            Controller::External => self.ts_retire(ctx, fleet, &p).await?,
            _ => self.native_retire(ctx, fleet, &p, &info).await?,
        }
        if self
            .shared
            .config
            .app(&fleet.target.app)?
            .deregister_rolled_back
            && let Err(e) = self.deregister_rolled_back(ctx, fleet, &info).await
        {
            // The rollback itself is done: a revision left ACTIVE is untidy, not unhealthy.
            tracing::warn!(
                target = %ctx.target,
                revision = %fleet.revision.id,
                error = %e,
                "could not deregister the rolled-back revision; deregister it by hand"
            );
        }
        Ok(())
    }

    async fn status(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus> {
        let (p, info) = self.service(&fleet.target).await?;
        match info.controller {
            Controller::External => self.ts_status(ctx, fleet, &p, &info).await,
            _ => self.native_status(ctx, fleet, &p, &info).await,
        }
    }

    /// EXTERNAL controller: the service's task set of the revision's task definition (each
    /// deployment registers its own). ECS controller: the service's deployment of it.
    async fn discover(&self, ctx: &DeployContext, revision: &Revision) -> Result<Option<Fleet>> {
        let (_, info) = self.service(&ctx.target).await?;
        let stable = ctx.stable.as_ref();
        match info.controller {
            Controller::External => Ok(info
                .task_sets
                .iter()
                .find(|t| {
                    t.task_definition == revision.id
                        && stable.is_none_or(|s| s.id.0 != t.arn)
                        && t.status != "DRAINING"
                })
                .map(|t| Fleet {
                    id: FleetId(t.arn.clone()),
                    target: ctx.target.clone(),
                    revision: revision.clone(),
                })),
            _ => Ok(crate::ecs_native::discover(ctx, &info, revision)),
        }
    }

    /// Load balancer target health of the process's new target group (passes processes
    /// without a load balancer).
    fn target_health(&self) -> Option<DynHealthProbe> {
        Some(Arc::new(TargetHealth::new(self.shared.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ECS runs `ceil(desired * percent / 100)` tasks.
    fn ecs_count(desired: u32, percent: f64) -> u32 {
        (f64::from(desired) * percent / 100.0).ceil() as u32
    }

    #[test]
    fn percent_gives_exactly_the_count() {
        for desired in 1..=500 {
            for count in 0..=desired {
                let p = scale_percent(count, desired);
                assert!((0.0..=100.0).contains(&p));
                assert_eq!(ecs_count(desired, p), count, "{count}/{desired} -> {p}");
            }
        }
    }

    fn task(last: &str, desired: &str) -> TaskInfo {
        TaskInfo {
            arn: "arn:task/1".into(),
            started_by: Some("ecs-svc/1".into()),
            task_definition: None,
            last_status: last.into(),
            desired_status: desired.into(),
            health: None,
            stop_code: None,
            stopped_reason: None,
            exit_codes: Vec::new(),
            started_at: None,
            ip: None,
        }
    }

    fn stopped(code: &str, reason: &str, exits: &[(&str, i32)]) -> TaskInfo {
        let mut t = task("STOPPED", "STOPPED");
        t.stop_code = Some(code.into());
        t.stopped_reason = Some(reason.into());
        t.exit_codes = exits.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect();
        t
    }

    fn app_container(health_check: bool) -> Containers {
        Containers {
            essential: vec!["app".into()],
            health_check,
        }
    }

    #[test]
    fn crashed_tasks_count_as_failures_and_scale_in_does_not() {
        let crashed = stopped(
            "EssentialContainerExited",
            "Essential container in task exited",
            &[("app", 137)],
        );
        let scaled_in = stopped(
            "ServiceSchedulerInitiated",
            "Scaling activity initiated by deployment",
            &[("app", 0)],
        );
        let mut unknown_health = task("RUNNING", "RUNNING");
        unknown_health.health = Some("UNKNOWN".into());
        let got = EcsDeployer::instances(
            &[crashed, scaled_in, unknown_health.clone()],
            &app_container(true),
        );
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].status,
            InstanceStatus::Stopped {
                reason: "Essential container in task exited".into(),
                exit_code: Some(137)
            }
        );
        assert_eq!(got[1].status, InstanceStatus::Pending);
        let got = EcsDeployer::instances(&[unknown_health], &app_container(false));
        assert_eq!(got[0].status, InstanceStatus::Running { healthy: None });
    }

    /// Tasks stopped on purpose exit 137/143 (SIGKILL/SIGTERM): the stop code decides, before
    /// the exit code is looked at, so scale-in, Spot interruptions and Fargate maintenance
    /// never roll a good release back.
    #[test]
    fn the_stop_code_decides_before_the_exit_code() {
        let c = app_container(false);
        let not_failures = [
            stopped("UserInitiated", "Task stopped by user", &[("app", 143)]),
            stopped(
                "SpotInterruption",
                "Your Spot Task was interrupted.",
                &[("app", 137)],
            ),
            stopped(
                "TerminationNotice",
                "Task stopped due to Fargate maintenance",
                &[("app", 143)],
            ),
            stopped(
                "ServiceSchedulerInitiated",
                "Scaling activity initiated by (deployment ecs-svc/1)",
                &[("app", 137)],
            ),
        ];
        for t in &not_failures {
            assert!(!is_failure(t, &c), "{:?} is not a failure", t.stop_code);
        }
        let failures = [
            stopped("TaskFailedToStart", "CannotPullContainerError: ...", &[]),
            stopped(
                "EssentialContainerExited",
                "Essential container in task exited",
                &[("app", 1)],
            ),
            stopped(
                "ServiceSchedulerInitiated",
                "Task failed ELB health checks in (target-group arn:...)",
                &[("app", 143)],
            ),
            stopped(
                "ServiceSchedulerInitiated",
                "Task failed container health checks",
                &[("app", 137)],
            ),
        ];
        for t in &failures {
            assert!(
                is_failure(t, &c),
                "{:?} {:?} is a failure",
                t.stop_code,
                t.stopped_reason
            );
        }
    }

    /// The exit code reported is the essential container's, not a sidecar's.
    #[test]
    fn the_exit_code_comes_from_the_essential_container() {
        let t = stopped(
            "EssentialContainerExited",
            "Essential container in task exited",
            &[("log-router", 0), ("xray", 2), ("app", 1)],
        );
        let got = EcsDeployer::instances(&[t], &app_container(false));
        assert_eq!(
            got[0].status,
            InstanceStatus::Stopped {
                reason: "Essential container in task exited".into(),
                exit_code: Some(1)
            }
        );
    }
}
