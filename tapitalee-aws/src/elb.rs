//! ELBv2: weighted routing between a process's two target groups, and target health as a
//! [`HealthProbe`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use tapitalee_core::{
    DeploymentId, Fleet, FleetStatus, HealthProbe, HealthReport, InstanceStatus, Result,
};

use crate::backend::Shared;
use crate::config::LoadBalancerConfig;
use crate::model::Controller;
use crate::poller::ServiceKey;

/// Points the listener (or its rule) at the pair of target groups with these weights.
pub(crate) async fn set_weights(
    shared: &Shared,
    deployment: Option<DeploymentId>,
    lb: &LoadBalancerConfig,
    split: [u8; 2],
) -> Result<()> {
    let forward = ForwardActionConfig::builder()
        .set_target_groups(Some(
            lb.target_groups
                .iter()
                .zip(split)
                .map(|(tg, w)| {
                    TargetGroupTuple::builder()
                        .target_group_arn(tg)
                        .weight(i32::from(w))
                        .build()
                })
                .collect(),
        ))
        .build();
    let action = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(forward)
        .build();
    let elb = &shared.clients.elb;
    match &lb.rule_arn {
        Some(rule) => {
            shared
                .layer
                .call("ModifyRule", deployment, || {
                    elb.modify_rule()
                        .rule_arn(rule)
                        .actions(action.clone())
                        .send()
                })
                .await
                .map_err(|e| {
                    e.not_found_as(
                        tapitalee_core::Resource::Process,
                        rule,
                        "the listener rule does not exist; fix LoadBalancerConfig::rule",
                    )
                })?;
        }
        None => {
            shared
                .layer
                .call("ModifyListener", deployment, || {
                    elb.modify_listener()
                        .listener_arn(&lb.listener_arn)
                        .default_actions(action.clone())
                        .send()
                })
                .await
                .map_err(|e| {
                    e.not_found_as(
                        tapitalee_core::Resource::Process,
                        &lb.listener_arn,
                        "the listener does not exist; fix LoadBalancerConfig::listener_arn",
                    )
                })?;
        }
    }
    tracing::info!(
        listener = %lb.listener_arn,
        blue = split[0],
        green = split[1],
        "set traffic weights"
    );
    Ok(())
}

/// Load balancer target health as a [`HealthProbe`]: an instance passes when its task's IP is
/// a `healthy` target of the target group its task set is attached to.
///
/// Fleets without a load balancer (workers, ECS-controller services, whose own deployment
/// gates on target health) pass through: every instance the status reports running passes.
/// Compose it with core's container health: `ContainerHealth.and(backend.target_health())`.
#[derive(Clone)]
pub struct TargetHealth {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TargetHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetHealth").finish_non_exhaustive()
    }
}

impl TargetHealth {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        TargetHealth { shared }
    }

    /// The health of every target of a target group: target id (IP) → state and reason.
    async fn targets(
        &self,
        target_group: &str,
        deployment: Option<DeploymentId>,
    ) -> Result<HashMap<String, (String, Option<String>)>> {
        let elb = &self.shared.clients.elb;
        let out = self
            .shared
            .layer
            .call("DescribeTargetHealth", deployment, || {
                elb.describe_target_health()
                    .target_group_arn(target_group)
                    .send()
            })
            .await
            .map_err(|e| {
                e.not_found_as(
                    tapitalee_core::Resource::Process,
                    target_group,
                    "the target group does not exist; fix LoadBalancerConfig's target groups",
                )
            })?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let id = d.target()?.id()?.to_owned();
                let h = d.target_health()?;
                let state = h.state().map_or("unknown", |s| s.as_str()).to_owned();
                let why = h
                    .description()
                    .map(str::to_owned)
                    .or_else(|| h.reason().map(|r| r.as_str().to_owned()));
                Some((id, (state, why)))
            })
            .collect())
    }
}

fn pass_through(status: &FleetStatus) -> HealthReport {
    HealthReport {
        healthy: status.running(),
        problems: Vec::new(),
    }
}

#[async_trait]
impl HealthProbe for TargetHealth {
    fn name(&self) -> &str {
        "load-balancer"
    }

    async fn check(&self, fleet: &Fleet, status: &FleetStatus) -> Result<HealthReport> {
        let p = self
            .shared
            .config
            .app(&fleet.target.app)?
            .get(&fleet.target.process)?
            .clone();
        if p.load_balancer.is_none() {
            return Ok(pass_through(status));
        }
        let key = ServiceKey::new(&p.cluster, &p.service);
        let info = self.shared.poller.service(key.clone()).await?;
        if info.controller != Controller::External {
            return Ok(pass_through(status));
        }
        let Some(tg) = info
            .task_sets
            .iter()
            .find(|t| t.arn == fleet.id.0 || t.id == fleet.id.0)
            .and_then(|t| t.target_group().map(str::to_owned))
        else {
            return Ok(HealthReport {
                healthy: 0,
                problems: vec![format!(
                    "task set {} is attached to no target group",
                    fleet.id
                )],
            });
        };
        let deployment = None; // a probe is called without a deployment context
        let targets = self.targets(&tg, deployment).await?;
        let ips: HashMap<String, Option<String>> = self
            .shared
            .poller
            .recent_tasks(&key)
            .await?
            .into_iter()
            .map(|t| (t.arn, t.ip))
            .collect();
        let mut report = HealthReport::default();
        for i in &status.instances {
            if !matches!(i.status, InstanceStatus::Running { healthy } if healthy != Some(false)) {
                continue;
            }
            let ip = ips.get(&i.id).cloned().flatten();
            match ip.as_ref().and_then(|ip| targets.get(ip)) {
                Some((state, _)) if state == "healthy" => report.healthy += 1,
                Some((state, why)) => report.problems.push(format!(
                    "instance {} is {state} in target group {tg}{}",
                    i.id,
                    why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
                )),
                None => report.problems.push(format!(
                    "instance {} is not registered in target group {tg} yet",
                    i.id
                )),
            }
        }
        Ok(report)
    }
}
