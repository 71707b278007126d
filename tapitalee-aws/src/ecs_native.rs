//! The ECS-controller path of [`EcsDeployer`]: ECS runs the rollout
//! itself (`UpdateService`: a rolling update, or the blue-green / linear / canary
//! [`EcsStrategy`](crate::EcsStrategy) set on the process, applied with the new revision);
//! Tapitalee gates it and rolls it back.
//!
//! Why a path inside the one deployer rather than a separate `Deployer`: the engine holds one
//! deployer for all processes, and apps mix controllers.
//!
//! Fleets: the new fleet is the deployment `UpdateService` started, named in its id from
//! that call's answer (`ecs-svc/…@<service deployment ARN>`): a `DescribeServices` right after
//! the update may still show the old deployments (ECS is eventually consistent), so nothing
//! is inferred from a later read. The stable fleet ([`DeployContext::stable`]) is matched by
//! its task definition, which survives ECS rolling back to it under a new deployment id.
//! Nothing is remembered between calls: what a call needs is in its fleet and context.
//!
//! Success is ECS's verdict on that deployment, never `running == desired` (a
//! circuit-breaker rollback also ends with every task running, the old ones): its
//! `rolloutState` while `DescribeServices` shows it, else its service deployment status
//! (`DescribeServiceDeployments`, as ecspresso judges): `PENDING` / `IN_PROGRESS` go on,
//! `SUCCESSFUL` passes, anything else (`STOPPED`, `ROLLBACK_*`, …) fails with ECS's reason.
//! Until ECS completes it, at most `desired - 1` of its tasks are reported healthy, so a
//! gate waiting for the full count passes only then (bakes extend the engine's progress
//! deadline: [`RolloutControl::Platform::bake`](tapitalee_core::RolloutControl)). A failure
//! names ECS's problem service events and the last stopped task.
//!
//! Operations: `launch` = one `UpdateService(taskDefinition)` (none when the service's primary
//! deployment already runs the revision: a launch repeated after a crash follows it); `scale`
//! and `make_primary` of the new fleet are ECS's business (no call); `retire` of the new fleet
//! rolls back: `StopServiceDeployment(ROLLBACK)` of exactly that deployment while it is
//! `PENDING` or `IN_PROGRESS`, nothing while ECS is already undoing it, else `UpdateService`
//! with the previous task definition. Asking the stable fleet for capacity or primacy while
//! the service runs another revision rolls back the same way.
//!
//! Because retiring the new fleet is what restores the old one, these services are
//! [`RolloutControl::Platform`](tapitalee_core::RolloutControl::Platform): the engine launches
//! once, gates, and on failure retires the new fleet first (the previous revision comes from
//! the call's [`DeployContext`]), then waits for the old revision's capacity.

use aws_sdk_ecs::types::{
    DeploymentConfiguration, ServiceDeploymentBrief, StopServiceDeploymentStopType,
};
use tapitalee_core::{
    DeployContext, Error, Fleet, FleetId, FleetStatus, InstanceStatus, Release, Result, Revision,
};

use crate::config::ProcessConfig;
use crate::ecs::EcsDeployer;
use crate::model::{DeploymentInfo, ServiceInfo};
use crate::poller::ServiceKey;

fn primary(info: &ServiceInfo) -> Option<&DeploymentInfo> {
    info.deployments.iter().find(|d| d.status == "PRIMARY")
}

/// The revision the service is on (or moving to): its task definition, which `UpdateService`
/// and ECS's own rollbacks set at once; else its PRIMARY deployment's. (Emulators that do not
/// model deployments keep the first PRIMARY deployment and still update this.)
fn service_revision(info: &ServiceInfo) -> Option<&str> {
    info.task_definition
        .as_deref()
        .or_else(|| primary(info).map(|d| d.task_definition.as_str()))
        .filter(|td| !td.is_empty())
}

/// A fleet of an ECS-controller service, as its [`FleetId`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NativeFleet<'a> {
    /// A revision, whichever deployment runs it: the stable fleet (its id is the task
    /// definition ARN), which survives ECS replacing deployment ids during a rollback.
    Revision,
    /// The deployment an `UpdateService` started for the revision: its id (`ecs-svc/…`,
    /// which its tasks carry as `startedBy`) and, when ECS reported one, its service
    /// deployment ARN.
    Deployment { id: &'a str, arn: Option<&'a str> },
}

/// Between a deployment id and its service deployment ARN in a [`FleetId`] (neither
/// contains it).
const ARN_SEPARATOR: char = '@';

fn deployment_fleet_id(id: &str, arn: Option<&str>) -> FleetId {
    FleetId(match arn {
        Some(arn) => format!("{id}{ARN_SEPARATOR}{arn}"),
        None => id.to_owned(),
    })
}

fn parse(fleet: &Fleet) -> NativeFleet<'_> {
    let id = fleet.id.0.as_str();
    if id == fleet.revision.id {
        return NativeFleet::Revision;
    }
    match id.split_once(ARN_SEPARATOR) {
        Some((id, arn)) => NativeFleet::Deployment { id, arn: Some(arn) },
        None => NativeFleet::Deployment { id, arn: None },
    }
}

/// How a call treats a fleet: the deployment's stable fleet by its revision (ECS replaces
/// deployment ids when it rolls back to it), every other one as its id says.
fn kind<'a>(ctx: &DeployContext, fleet: &'a Fleet) -> NativeFleet<'a> {
    if ctx.stable.as_ref().is_some_and(|s| s.id == fleet.id) {
        NativeFleet::Revision
    } else {
        parse(fleet)
    }
}

/// A service deployment's status and ECS's reason for it.
#[derive(Debug, Clone)]
struct ServiceDeployment {
    status: String,
    reason: Option<String>,
}

impl ServiceDeployment {
    /// ECS is still rolling it out.
    fn in_flight(&self) -> bool {
        matches!(self.status.as_str(), "PENDING" | "IN_PROGRESS")
    }

    /// ECS is returning (or returned) the service to the previous revision, or was asked to
    /// stop it.
    fn being_undone(&self) -> bool {
        matches!(
            self.status.as_str(),
            "ROLLBACK_REQUESTED"
                | "ROLLBACK_IN_PROGRESS"
                | "ROLLBACK_SUCCESSFUL"
                | "STOP_REQUESTED"
        )
    }

    fn describe(&self, arn: &str) -> String {
        format!(
            "service deployment {arn} is {}{}",
            self.status,
            self.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
    }
}

/// Words marking a service event as a problem (placement failures, the circuit breaker,
/// failed health checks, rollbacks), lower case.
const PROBLEM_WORDS: [&str; 7] = [
    "unable to",
    "fail",
    "circuit breaker",
    "rolling back",
    "unhealthy",
    "insufficient",
    "error",
];

/// The service's problem events since `since` (newest first, at most 3), as
/// "; ECS service events: …", or "".
fn ecs_said(info: &ServiceInfo, since: Option<std::time::SystemTime>) -> String {
    let said = problem_events(info, since);
    if said.is_empty() {
        String::new()
    } else {
        format!("; ECS service events: {}", said.join(" | "))
    }
}

/// The service's problem events since `since`, newest first, at most 3.
fn problem_events(info: &ServiceInfo, since: Option<std::time::SystemTime>) -> Vec<&str> {
    let mut said: Vec<&str> = Vec::new();
    for (at, message) in &info.events {
        if let (Some(since), Some(at)) = (since, at)
            && at < &since
        {
            continue;
        }
        let lower = message.to_lowercase();
        if PROBLEM_WORDS.iter().any(|w| lower.contains(w)) && !said.contains(&message.as_str()) {
            said.push(message);
        }
        if said.len() == 3 {
            break;
        }
    }
    said
}

/// What ECS said about a fleet of an ECS-controller service that has fewer tasks than it
/// should (it cannot place them, its deployment failed...): its problem events since the
/// fleet's deployment started, for the health gate's problems (and so the reason of a
/// process that makes no progress).
pub(crate) fn service_problems(info: &ServiceInfo, fleet: &Fleet) -> Vec<String> {
    let since = match parse(fleet) {
        NativeFleet::Deployment { id, .. } => info
            .deployments
            .iter()
            .find(|d| d.id == id)
            .and_then(|d| d.created),
        NativeFleet::Revision => primary(info).and_then(|d| d.created),
    };
    problem_events(info, since)
        .into_iter()
        .rev()
        .map(|e| format!("ECS: {e}"))
        .collect()
}

/// The last stopped task's reason (and exit code), as "; last stopped task: …", or "".
fn last_stop(instances: &[tapitalee_core::Instance]) -> String {
    instances
        .iter()
        .rev()
        .find_map(|i| match &i.status {
            InstanceStatus::Stopped { reason, exit_code } => Some(format!(
                "; last stopped task: {reason}{}",
                exit_code
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default()
            )),
            _ => None,
        })
        .unwrap_or_default()
}

/// The fleet an `UpdateService` to `revision` started on the service, if ECS still runs a
/// deployment of it (not the stable revision's): named as the launch names it, so retiring
/// it stops exactly that deployment, or sends the service back once.
pub(crate) fn discover(
    ctx: &DeployContext,
    info: &ServiceInfo,
    revision: &Revision,
) -> Option<Fleet> {
    if ctx
        .stable
        .as_ref()
        .is_some_and(|s| s.revision.id == revision.id)
    {
        return None;
    }
    let d = info
        .deployments
        .iter()
        .find(|d| d.task_definition == revision.id && !d.id.is_empty())?;
    let arn = (d.status == "PRIMARY")
        .then_some(info.current_service_deployment.as_deref())
        .flatten();
    Some(Fleet {
        id: deployment_fleet_id(&d.id, arn),
        target: ctx.target.clone(),
        revision: revision.clone(),
    })
}

impl EcsDeployer {
    pub(crate) async fn native_current(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
    ) -> Result<Release> {
        let target = &ctx.target;
        let fleet = match service_revision(info) {
            // Back on (or still on) the deployment's stable revision: the same fleet, whichever
            // deployment now runs it.
            Some(td) if ctx.stable.as_ref().is_some_and(|s| s.revision.id == td) => {
                ctx.stable.clone()
            }
            Some(td) => Some(Fleet {
                // A deployment still in progress is followed as the launch named it; once
                // completed, the revision is the fleet (an id that survives ECS rolling back
                // to it under a new deployment id).
                id: primary(info)
                    .filter(|d| {
                        d.task_definition == td
                            && !d.id.is_empty()
                            && d.rollout_state.as_deref() == Some("IN_PROGRESS")
                    })
                    .map_or_else(
                        || FleetId(td.to_owned()),
                        |d| deployment_fleet_id(&d.id, info.current_service_deployment.as_deref()),
                    ),
                target: target.clone(),
                revision: self.revision_of(ctx, td, p).await?,
            }),
            None => None,
        };
        Ok(Release {
            fleet,
            desired: u32::try_from(info.desired).unwrap_or(0),
        })
    }

    /// `UpdateService` to the revision, once: the fleet names the deployment it started
    /// (from the answer, never from a later read, which may still show the old deployments).
    /// When the service's primary deployment already is this revision (a launch repeated
    /// after a crash), that deployment is followed and nothing is sent.
    pub(crate) async fn native_launch(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
        revision: &Revision,
    ) -> Result<Fleet> {
        let target = &ctx.target;
        let fleet = |id: FleetId| Fleet {
            id,
            target: target.clone(),
            revision: revision.clone(),
        };
        let ongoing = primary(info).filter(|d| {
            d.task_definition == revision.id && d.rollout_state.as_deref() != Some("FAILED")
        });
        if let Some(d) = ongoing {
            tracing::info!(%target, deployment = %d.id, revision = %revision.id, "ECS already deploys this revision; following that deployment");
            return Ok(fleet(deployment_fleet_id(
                &d.id,
                info.current_service_deployment.as_deref(),
            )));
        }
        let config = p
            .ecs_strategy
            .map(|s| s.apply(info.deployment_configuration.as_ref()));
        let updated = self.update_service(ctx, p, &revision.id, config).await?;
        let started = updated.as_ref().and_then(|svc| {
            let d = primary(svc).filter(|d| d.task_definition == revision.id)?;
            Some(deployment_fleet_id(
                &d.id,
                svc.current_service_deployment.as_deref(),
            ))
        });
        Ok(fleet(started.unwrap_or_else(|| {
            // ECS did not say which deployment it started (emulators without deployments):
            // follow the revision.
            tracing::debug!(%target, "UpdateService named no deployment; following the revision");
            FleetId(revision.id.clone())
        })))
    }

    pub(crate) async fn native_scale(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
        count: u32,
    ) -> Result<()> {
        if let NativeFleet::Deployment { .. } = kind(ctx, fleet) {
            tracing::debug!(fleet = %fleet.id, count, "ECS sizes its own deployments; nothing to do");
            return Ok(());
        }
        let is_primary = service_revision(info) == Some(fleet.revision.id.as_str());
        if is_primary || count == 0 {
            tracing::debug!(fleet = %fleet.id, count, "ECS sizes its own deployments; nothing to do");
            return Ok(());
        }
        // Capacity for a revision that is not the service's: only a rollback gives it.
        self.roll_back_to(ctx, p, info, &fleet.revision).await
    }

    pub(crate) async fn native_make_primary(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
    ) -> Result<()> {
        if let NativeFleet::Deployment { .. } = kind(ctx, fleet) {
            // The deployment was the primary one from the moment ECS started it.
            return Ok(());
        }
        if service_revision(info) == Some(fleet.revision.id.as_str()) {
            return Ok(());
        }
        self.roll_back_to(ctx, p, info, &fleet.revision).await
    }

    pub(crate) async fn native_retire(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
    ) -> Result<()> {
        let stable = match ctx.stable.as_ref().map(|f| &f.revision) {
            Some(stable) if stable.id != fleet.revision.id => Some(stable),
            _ => None,
        };
        let NativeFleet::Deployment { id, arn } = kind(ctx, fleet) else {
            if service_revision(info) != Some(fleet.revision.id.as_str()) {
                // Not the service's revision: ECS drains (or drained) its tasks itself.
                return Ok(());
            }
            return match stable {
                Some(stable) => self.roll_back_to(ctx, p, info, stable).await,
                None => Err(Self::nothing_to_return_to(fleet, p)),
            };
        };
        let Some(arn) = arn else {
            // No service deployment ARN: judge by what DescribeServices shows.
            let ours = info.deployments.iter().find(|d| d.id == id);
            let live = ours.is_some_and(|d| d.rollout_state.as_deref() != Some("FAILED"))
                || service_revision(info) == Some(fleet.revision.id.as_str());
            return match (live, stable) {
                (false, _) => Ok(()),
                (true, Some(stable)) => self.roll_back_to(ctx, p, info, stable).await,
                (true, None) => Err(Self::nothing_to_return_to(fleet, p)),
            };
        };
        let sd = self.service_deployment(ctx, arn).await?;
        if sd.being_undone() {
            tracing::debug!(deployment = %id, status = %sd.status, "ECS is already undoing the deployment");
            return Ok(());
        }
        if sd.in_flight() {
            // PENDING or IN_PROGRESS: stop exactly this deployment, with a rollback.
            match self.stop_deployment(ctx, arn).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(target = %ctx.target, error = %e, "StopServiceDeployment failed; redeploying the previous revision instead")
                }
            }
        } else if sd.status == "STOPPED"
            && service_revision(info) != Some(fleet.revision.id.as_str())
        {
            // Superseded by a later deployment of another revision, or aborted.
            return Ok(());
        } else if self.newer_deployment_exists(ctx, p, arn).await? {
            // A later deployment (a rollback already asked for) replaces it.
            return Ok(());
        }
        match stable {
            Some(stable) => self
                .update_service(ctx, p, &stable.id, None)
                .await
                .map(|_| ()),
            None => Err(Self::nothing_to_return_to(fleet, p)),
        }
    }

    fn nothing_to_return_to(fleet: &Fleet, p: &ProcessConfig) -> Error {
        Error::platform(
            "retire",
            format!(
                "{} is the only revision service {} runs and there is no previous one to \
                 return to; deploy the previous tag again",
                fleet.revision.id, p.service
            ),
        )
    }

    pub(crate) async fn native_status(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
    ) -> Result<FleetStatus> {
        match kind(ctx, fleet) {
            NativeFleet::Revision => self.revision_status(ctx, fleet, p, info).await,
            NativeFleet::Deployment { id, arn } => {
                self.deployment_status(ctx, fleet, p, info, id, arn).await
            }
        }
    }

    /// The status of the deployment this backend started: judged by ECS's own verdict on it
    /// (its rollout state, and its service deployment status once it is out of sight or
    /// all its tasks are up), its tasks being those it started.
    async fn deployment_status(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
        id: &str,
        arn: Option<&str>,
    ) -> Result<FleetStatus> {
        let tasks = self
            .shared
            .poller(&fleet.target.app)
            .tasks(ServiceKey::new(&p.cluster, &p.service))
            .await?;
        let mine: Vec<_> = tasks
            .into_iter()
            .filter(|t| t.started_by.as_deref() == Some(id))
            .collect();
        let def = self
            .shared
            .task_def(&ctx.target.app, &fleet.revision.id, Some(ctx.deployment))
            .await?;
        let mut instances = Self::instances(&mine, &def.containers());
        let process = fleet.target.process.to_string();
        let stops = last_stop(&instances);
        let failed = |what: String, since| Error::HealthFailed {
            process: process.clone(),
            reason: format!("{what}{stops}{}", ecs_said(info, since)),
        };
        let visible = info.deployments.iter().find(|d| d.id == id);
        let since = visible.and_then(|d| d.created);
        let (desired, mut completed) = match visible {
            Some(d) if d.rollout_state.as_deref() == Some("FAILED") => {
                return Err(failed(
                    format!(
                        "ECS marked deployment {id} of service {} FAILED: {}",
                        p.service,
                        d.rollout_reason.as_deref().unwrap_or("no reason given")
                    ),
                    since,
                ));
            }
            Some(d) if d.status != "PRIMARY" && d.rollout_state.as_deref() != Some("COMPLETED") => {
                return Err(failed(
                    format!(
                        "deployment {id} of service {} was replaced by deployment {} before it \
                         completed",
                        p.service,
                        primary(info).map_or("(unknown)", |d| d.id.as_str())
                    ),
                    since,
                ));
            }
            Some(d) => (d.desired, d.rollout_state.as_deref() == Some("COMPLETED")),
            None => {
                let Some(arn) = arn else {
                    let why = self.rollback_reason(ctx, p).await;
                    return Err(failed(
                        format!(
                            "the ECS deployment {id} of {} is no longer active on service {} \
                             (rolled back or replaced){why}",
                            fleet.revision.id, p.service
                        ),
                        None,
                    ));
                };
                // Out of sight: DescribeServices does not show it yet (it lags behind
                // UpdateService), or any more. Its service deployment says which.
                let sd = self.service_deployment(ctx, arn).await?;
                match sd.status.as_str() {
                    "PENDING" | "IN_PROGRESS" => (info.desired, false),
                    "SUCCESSFUL" => (info.desired, true),
                    _ => return Err(failed(sd.describe(arn), None)),
                }
            }
        };
        let desired = u32::try_from(desired).unwrap_or(0);
        if !completed
            && let Some(arn) = arn
            && visible.is_some()
            && healthy(&instances) >= desired
        {
            // Every task is up and ECS has not completed it (bakes, traffic shifts): its
            // service deployment says whether ECS is still going or giving up.
            let sd = self.service_deployment(ctx, arn).await?;
            match sd.status.as_str() {
                "PENDING" | "IN_PROGRESS" => {}
                "SUCCESSFUL" => completed = true,
                _ => return Err(failed(sd.describe(arn), since)),
            }
        }
        if !completed {
            cap_healthy(&mut instances, desired);
        }
        Ok(FleetStatus {
            fleet: fleet.id.clone(),
            desired,
            instances,
        })
    }

    /// The status of a revision, whichever deployment runs it (the stable fleet while ECS
    /// brings it back).
    async fn revision_status(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
    ) -> Result<FleetStatus> {
        let mut ours: Vec<&DeploymentInfo> = info
            .deployments
            .iter()
            .filter(|d| d.task_definition == fleet.revision.id)
            .collect();
        ours.sort_by_key(|d| d.status != "PRIMARY");
        let is_stable = ctx.stable.as_ref().is_some_and(|s| s.id == fleet.id);
        let d = ours.first();
        if d.is_none() && !is_stable {
            let why = self.rollback_reason(ctx, p).await;
            return Err(Error::HealthFailed {
                process: fleet.target.process.to_string(),
                reason: format!(
                    "the ECS deployment of {} is no longer active on service {} (rolled back or \
                     replaced){why}{}",
                    fleet.revision.id,
                    p.service,
                    ecs_said(info, None)
                ),
            });
        }
        if let Some(d) = d
            && d.rollout_state.as_deref() == Some("FAILED")
        {
            return Err(Error::HealthFailed {
                process: fleet.target.process.to_string(),
                reason: format!(
                    "ECS marked deployment {} of service {} FAILED: {}{}",
                    d.id,
                    p.service,
                    d.rollout_reason.as_deref().unwrap_or("no reason given"),
                    ecs_said(info, d.created)
                ),
            });
        }
        let tasks = self
            .shared
            .poller(&fleet.target.app)
            .tasks(ServiceKey::new(&p.cluster, &p.service))
            .await?;
        let mine: Vec<_> = tasks
            .into_iter()
            .filter(|t| {
                d.is_some_and(|d| t.started_by.as_deref() == Some(d.id.as_str()))
                    || t.task_definition.as_deref() == Some(fleet.revision.id.as_str())
            })
            .collect();
        let def = self
            .shared
            .task_def(&ctx.target.app, &fleet.revision.id, Some(ctx.deployment))
            .await?;
        let mut instances = Self::instances(&mine, &def.containers());
        // The stable revision out of sight: the service is on its way back to it (a read
        // still shows the deployment it leaves).
        let desired = u32::try_from(d.map_or(info.desired, |d| d.desired)).unwrap_or(0);
        let completed = d.is_some_and(|d| d.rollout_state.as_deref() == Some("COMPLETED"));
        if d.is_none_or(|d| !completed && d.status == "PRIMARY") {
            cap_healthy(&mut instances, desired);
        }
        Ok(FleetStatus {
            fleet: fleet.id.clone(),
            desired,
            instances,
        })
    }

    /// `UpdateService` to `task_definition`; returns the service as the answer shows it.
    async fn update_service(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        task_definition: &str,
        deployment_configuration: Option<DeploymentConfiguration>,
    ) -> Result<Option<ServiceInfo>> {
        let target = &ctx.target;
        let ecs = &self.shared.clients(&ctx.target.app).ecs;
        let strategy = deployment_configuration
            .as_ref()
            .and_then(|c| c.strategy())
            .map(|s| s.as_str().to_owned());
        let out = self
            .shared
            .layer
            .call("UpdateService", Some(ctx.deployment), || {
                ecs.update_service()
                    .cluster(&p.cluster)
                    .service(&p.service)
                    .task_definition(task_definition)
                    .set_deployment_configuration(deployment_configuration.clone())
                    .send()
            })
            .await?;
        tracing::info!(%target, revision = task_definition, strategy = strategy.as_deref().unwrap_or("as configured"), "updated service");
        Ok(out.service().map(ServiceInfo::from))
    }

    /// Returns the service to `revision`: stops the in-progress deployment with a rollback
    /// when there is one, else redeploys `revision`.
    async fn roll_back_to(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
        revision: &Revision,
    ) -> Result<()> {
        let target = &ctx.target;
        let in_progress = primary(info).is_some_and(|d| {
            d.rollout_state.as_deref() == Some("IN_PROGRESS") && d.task_definition != revision.id
        });
        if in_progress {
            match self.stop_in_progress(ctx, p).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%target, error = %e, "StopServiceDeployment failed; redeploying the previous revision instead")
                }
            }
        }
        self.update_service(ctx, p, &revision.id, None)
            .await
            .map(|_| ())
    }

    /// `StopServiceDeployment(ROLLBACK)` on the service's newest PENDING or IN_PROGRESS
    /// deployment, if any.
    async fn stop_in_progress(&self, ctx: &DeployContext, p: &ProcessConfig) -> Result<bool> {
        use aws_sdk_ecs::types::ServiceDeploymentStatus as Status;
        let list = self
            .recent_deployments(ctx, p, &[Status::Pending, Status::InProgress])
            .await?;
        let Some(arn) = list
            .iter()
            .max_by_key(|b| created_at(b))
            .and_then(|b| b.service_deployment_arn())
        else {
            return Ok(false);
        };
        self.stop_deployment(ctx, arn).await?;
        Ok(true)
    }

    /// `StopServiceDeployment(ROLLBACK)` of one service deployment.
    async fn stop_deployment(&self, ctx: &DeployContext, arn: &str) -> Result<()> {
        let ecs = &self.shared.clients(&ctx.target.app).ecs;
        self.shared
            .layer
            .call("StopServiceDeployment", Some(ctx.deployment), || {
                ecs.stop_service_deployment()
                    .service_deployment_arn(arn)
                    .stop_type(StopServiceDeploymentStopType::Rollback)
                    .send()
            })
            .await?;
        tracing::info!(target = %ctx.target, service_deployment = arn, "stopped deployment with rollback");
        Ok(())
    }

    /// One service deployment's status (`DescribeServiceDeployments`).
    async fn service_deployment(
        &self,
        ctx: &DeployContext,
        arn: &str,
    ) -> Result<ServiceDeployment> {
        let ecs = &self.shared.clients(&ctx.target.app).ecs;
        let out = self
            .shared
            .layer
            .call("DescribeServiceDeployments", Some(ctx.deployment), || {
                ecs.describe_service_deployments()
                    .service_deployment_arns(arn)
                    .send()
            })
            .await?;
        let Some(sd) = out.service_deployments().first() else {
            return Err(Error::not_found(
                tapitalee_core::Resource::Fleet,
                arn,
                "ECS knows no such service deployment; it may be older than ECS keeps (90 days)",
            ));
        };
        Ok(ServiceDeployment {
            status: sd.status().map_or("UNKNOWN", |s| s.as_str()).to_owned(),
            reason: sd.status_reason().map(str::to_owned),
        })
    }

    /// Whether the service has a service deployment created after `arn`.
    async fn newer_deployment_exists(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        arn: &str,
    ) -> Result<bool> {
        let list = self.recent_deployments(ctx, p, &[]).await?;
        let ours = list
            .iter()
            .find(|b| b.service_deployment_arn() == Some(arn))
            .and_then(created_at);
        Ok(match ours {
            Some(ours) => list.iter().any(|b| created_at(b).is_some_and(|c| c > ours)),
            // Not among the newest ones listed: newer ones exist.
            None => list.len() >= RECENT,
        })
    }

    /// The service's newest service deployments (at most [`RECENT`]), of the given statuses
    /// (any status when none is given).
    async fn recent_deployments(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        statuses: &[aws_sdk_ecs::types::ServiceDeploymentStatus],
    ) -> Result<Vec<ServiceDeploymentBrief>> {
        let ecs = &self.shared.clients(&ctx.target.app).ecs;
        let out = self
            .shared
            .layer
            .call("ListServiceDeployments", Some(ctx.deployment), || {
                let mut call = ecs
                    .list_service_deployments()
                    .cluster(&p.cluster)
                    .service(&p.service)
                    .max_results(RECENT as i32);
                for status in statuses {
                    call = call.status(status.clone());
                }
                call.send()
            })
            .await?;
        Ok(out.service_deployments().to_vec())
    }

    /// ECS's words on the latest rollback of the service, best effort, as ": …" or "".
    async fn rollback_reason(&self, ctx: &DeployContext, p: &ProcessConfig) -> String {
        let out = self.recent_deployments(ctx, p, &[]).await;
        match out {
            Ok(list) => list
                .iter()
                .max_by_key(|b| created_at(b))
                .map(|b| {
                    format!(
                        "; latest service deployment: {}{}",
                        b.status().map_or("unknown", |s| s.as_str()),
                        b.status_reason()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "could not list service deployments");
                String::new()
            }
        }
    }
}

/// How many service deployments a listing asks for: the newest few are all a rollout needs.
const RECENT: usize = 5;

/// When a service deployment was created, to order them.
fn created_at(b: &ServiceDeploymentBrief) -> Option<(i64, u32)> {
    b.created_at().map(|t| (t.secs(), t.subsec_nanos()))
}

fn healthy(instances: &[tapitalee_core::Instance]) -> u32 {
    let n = instances
        .iter()
        .filter(
            |i| matches!(i.status, InstanceStatus::Running { healthy } if healthy != Some(false)),
        )
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Not done until ECS says so: keeps the healthy count below the desired one.
fn cap_healthy(instances: &mut [tapitalee_core::Instance], desired: u32) {
    let mut allowed = desired.saturating_sub(1);
    for i in instances {
        if matches!(i.status, InstanceStatus::Running { healthy } if healthy != Some(false)) {
            if allowed == 0 {
                i.status = InstanceStatus::Pending;
            } else {
                allowed -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapitalee_core::{DeploymentId, ImageRef, Initiator, Target};

    const TD: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:7";
    const SD: &str = "arn:aws:ecs:us-east-1:1:service-deployment/c/s/AbC-12";

    fn fleet(id: FleetId) -> Fleet {
        Fleet {
            id,
            target: Target::new(
                tapitalee_core::AppName::new("a").unwrap(),
                tapitalee_core::ProcessName::new("web").unwrap(),
            ),
            revision: Revision {
                id: TD.into(),
                image: ImageRef::new("r/a", tapitalee_core::DockerTag::new("v1").unwrap()).unwrap(),
            },
        }
    }

    #[test]
    fn a_fleet_id_names_the_deployment_and_its_service_deployment() {
        let launched = fleet(deployment_fleet_id("ecs-svc/42", Some(SD)));
        assert_eq!(
            parse(&launched),
            NativeFleet::Deployment {
                id: "ecs-svc/42",
                arn: Some(SD)
            }
        );
        let no_arn = fleet(deployment_fleet_id("ecs-svc/42", None));
        assert_eq!(
            parse(&no_arn),
            NativeFleet::Deployment {
                id: "ecs-svc/42",
                arn: None
            }
        );
        assert_eq!(parse(&fleet(FleetId(TD.into()))), NativeFleet::Revision);
        // The deployment's stable fleet goes by its revision, whatever its id says.
        let ctx = DeployContext::new(
            DeploymentId::new(),
            Initiator::new("t").unwrap(),
            launched.target.clone(),
        )
        .with_stable(Some(launched.clone()));
        assert_eq!(kind(&ctx, &launched), NativeFleet::Revision);
        assert!(matches!(
            kind(&ctx, &no_arn),
            NativeFleet::Deployment { .. }
        ));
    }
}
