//! The ECS-controller path of [`EcsDeployer`]: ECS runs the rollout
//! itself (`UpdateService`: a rolling update, or the blue-green / linear / canary
//! [`EcsStrategy`](crate::EcsStrategy) set on the process, applied with the new revision);
//! Tapitalee gates it and rolls it back.
//!
//! Why a path inside the one deployer rather than a separate `Deployer`: the engine holds one
//! deployer for all processes, and apps mix controllers. Here a fleet is the service's tasks of
//! ONE task definition (its id is the task definition ARN), which survives ECS replacing its
//! internal deployment ids during a rollback.
//!
//! Success is judged by the deployment's own rollout state, never by `running == desired`:
//! a circuit-breaker rollback also ends with every task running (the old ones). While the
//! deployment is `IN_PROGRESS`, at most `desired - 1` of its tasks are reported healthy, so
//! a gate waiting for the full count passes only once ECS says `COMPLETED`; `FAILED`, or the
//! deployment disappearing, is a [`Error::HealthFailed`] naming ECS's reason.
//!
//! Operations: `launch` = `UpdateService(taskDefinition)`; `scale` of the new fleet is ECS's
//! business (no call); asking the old fleet for capacity, `make_primary` of the old fleet, or
//! `retire` of the new one rolls back: `StopServiceDeployment(ROLLBACK)` while the rollout is
//! in progress, else `UpdateService` with the previous task definition.
//!
//! Because retiring the new fleet is what restores the old one, these services are
//! [`RolloutControl::Platform`](tapitalee_core::RolloutControl::Platform): the engine launches
//! once, gates, and on failure retires the new fleet first (the previous revision comes from
//! the call's [`DeployContext`]: nothing is remembered between calls), then waits for the old
//! revision's capacity.

use aws_sdk_ecs::types::{DeploymentConfiguration, StopServiceDeploymentStopType};
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

impl EcsDeployer {
    pub(crate) async fn native_current(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
    ) -> Result<Release> {
        let target = &ctx.target;
        let fleet = match service_revision(info) {
            Some(td) => Some(Fleet {
                id: FleetId(td.to_owned()),
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

    pub(crate) async fn native_launch(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        info: &ServiceInfo,
        revision: &Revision,
    ) -> Result<Fleet> {
        let target = &ctx.target;
        let config = p
            .ecs_strategy
            .map(|s| s.apply(info.deployment_configuration.as_ref()));
        self.update_service(ctx, p, &revision.id, config).await?;
        Ok(Fleet {
            id: FleetId(revision.id.clone()),
            target: target.clone(),
            revision: revision.clone(),
        })
    }

    pub(crate) async fn native_scale(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        p: &ProcessConfig,
        info: &ServiceInfo,
        count: u32,
    ) -> Result<()> {
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
        if service_revision(info) != Some(fleet.revision.id.as_str()) {
            // Not the service's revision: ECS drains (or drained) its tasks itself.
            return Ok(());
        }
        match ctx.stable.as_ref().map(|f| &f.revision) {
            Some(stable) if stable.id != fleet.revision.id => {
                self.roll_back_to(ctx, p, info, stable).await
            }
            _ => Err(Error::platform(
                "retire",
                format!(
                    "{} is the only revision service {} runs and there is no previous one to \
                     return to; deploy the previous tag again",
                    fleet.revision.id, p.service
                ),
            )),
        }
    }

    pub(crate) async fn native_status(
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
        let Some(d) = ours.first() else {
            let why = self.rollback_reason(ctx, p).await;
            return Err(Error::HealthFailed {
                process: fleet.target.process.to_string(),
                reason: format!(
                    "the ECS deployment of {} is no longer active on service {} (rolled back or \
                     replaced){why}",
                    fleet.revision.id, p.service
                ),
            });
        };
        if d.rollout_state.as_deref() == Some("FAILED") {
            return Err(Error::HealthFailed {
                process: fleet.target.process.to_string(),
                reason: format!(
                    "ECS marked deployment {} of service {} FAILED: {}",
                    d.id,
                    p.service,
                    d.rollout_reason.as_deref().unwrap_or("no reason given")
                ),
            });
        }
        let tasks = self
            .shared
            .poller
            .tasks(ServiceKey::new(&p.cluster, &p.service))
            .await?;
        let mine: Vec<_> = tasks
            .into_iter()
            .filter(|t| {
                t.started_by.as_deref() == Some(d.id.as_str())
                    || t.task_definition.as_deref() == Some(fleet.revision.id.as_str())
            })
            .collect();
        let def = self
            .shared
            .task_def(&fleet.revision.id, Some(ctx.deployment))
            .await?;
        let mut instances = Self::instances(&mine, &def.containers());
        let desired = u32::try_from(d.desired).unwrap_or(0);
        let completed = d.rollout_state.as_deref() == Some("COMPLETED");
        if !completed && d.status == "PRIMARY" {
            // Not done until ECS says so: keep the healthy count below the desired one.
            let mut allowed = desired.saturating_sub(1);
            for i in &mut instances {
                if matches!(i.status, InstanceStatus::Running { healthy } if healthy != Some(false))
                {
                    if allowed == 0 {
                        i.status = InstanceStatus::Pending;
                    } else {
                        allowed -= 1;
                    }
                }
            }
        }
        Ok(FleetStatus {
            fleet: fleet.id.clone(),
            desired,
            instances,
        })
    }

    async fn update_service(
        &self,
        ctx: &DeployContext,
        p: &ProcessConfig,
        task_definition: &str,
        deployment_configuration: Option<DeploymentConfiguration>,
    ) -> Result<()> {
        let target = &ctx.target;
        let ecs = &self.shared.clients.ecs;
        let strategy = deployment_configuration
            .as_ref()
            .and_then(|c| c.strategy())
            .map(|s| s.as_str().to_owned());
        self.shared
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
        Ok(())
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
        self.update_service(ctx, p, &revision.id, None).await
    }

    /// `StopServiceDeployment(ROLLBACK)` on the service's in-progress deployment, if any.
    async fn stop_in_progress(&self, ctx: &DeployContext, p: &ProcessConfig) -> Result<bool> {
        let target = &ctx.target;
        let ecs = &self.shared.clients.ecs;
        let deployment = Some(ctx.deployment);
        let out = self
            .shared
            .layer
            .call("ListServiceDeployments", deployment, || {
                ecs.list_service_deployments()
                    .cluster(&p.cluster)
                    .service(&p.service)
                    .status(aws_sdk_ecs::types::ServiceDeploymentStatus::InProgress)
                    .send()
            })
            .await?;
        let Some(arn) = out
            .service_deployments()
            .iter()
            .max_by_key(|b| b.created_at().map(|t| t.secs()))
            .and_then(|b| b.service_deployment_arn())
        else {
            return Ok(false);
        };
        self.shared
            .layer
            .call("StopServiceDeployment", deployment, || {
                ecs.stop_service_deployment()
                    .service_deployment_arn(arn)
                    .stop_type(StopServiceDeploymentStopType::Rollback)
                    .send()
            })
            .await?;
        tracing::info!(%target, service_deployment = arn, "stopped deployment with rollback");
        Ok(true)
    }

    /// ECS's words on the latest rollback of the service, best effort, as ": …" or "".
    async fn rollback_reason(&self, ctx: &DeployContext, p: &ProcessConfig) -> String {
        let ecs = &self.shared.clients.ecs;
        let out = self
            .shared
            .layer
            .call("ListServiceDeployments", Some(ctx.deployment), || {
                ecs.list_service_deployments()
                    .cluster(&p.cluster)
                    .service(&p.service)
                    .max_results(5)
                    .send()
            })
            .await;
        match out {
            Ok(out) => out
                .service_deployments()
                .iter()
                .max_by_key(|b| b.created_at().map(|t| t.secs()))
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
