//! ELBv2: weighted routing between a process's two target groups, and target health as a
//! [`HealthProbe`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use tapitalee_core::{
    AppName, DeploymentId, Error, Fleet, FleetStatus, HealthProbe, HealthReport, InstanceStatus,
    Result,
};

use crate::backend::Shared;
use crate::config::{LoadBalancerConfig, Route};
use crate::model::Controller;
use crate::poller::ServiceKey;

/// Sets the weights of the process's two target groups in the forward action of every route
/// its traffic takes (the listener's default actions or a rule, plus the extra routes), and
/// changes nothing else: authentication actions, their order, stickiness and any other target
/// group stay as they are.
pub(crate) async fn set_weights(
    shared: &Shared,
    app: &AppName,
    deployment: Option<DeploymentId>,
    lb: &LoadBalancerConfig,
    split: [u8; 2],
) -> Result<()> {
    for route in lb.routes() {
        patch_route(shared, app, deployment, lb, &route, Some(split)).await?;
    }
    tracing::info!(
        listener = %lb.listener_arn,
        routes = lb.routes().len(),
        blue = split[0],
        green = split[1],
        "set traffic weights"
    );
    Ok(())
}

/// Puts both target groups in the forward action of every route (the idle one at weight 0)
/// without changing any weight: a target group that no listener forwards to is never
/// health-checked (its targets stay `unused`), so this must hold before a task set registers
/// targets in it.
pub(crate) async fn ensure_target_groups(
    shared: &Shared,
    app: &AppName,
    deployment: Option<DeploymentId>,
    lb: &LoadBalancerConfig,
) -> Result<()> {
    for route in lb.routes() {
        patch_route(shared, app, deployment, lb, &route, None).await?;
    }
    Ok(())
}

/// Reads a route's actions, patches its forward action, and writes them back if they changed.
async fn patch_route(
    shared: &Shared,
    app: &AppName,
    deployment: Option<DeploymentId>,
    lb: &LoadBalancerConfig,
    route: &Route,
    split: Option<[u8; 2]>,
) -> Result<()> {
    let elb = &shared.clients(app).elb;
    let not_found = |arn: &str, what: &str| {
        let (arn, what) = (arn.to_owned(), what.to_owned());
        move |e: crate::error::AwsError| {
            e.not_found_as(tapitalee_core::Resource::Process, &arn, what.clone())
        }
    };
    let actions = match &route.rule_arn {
        Some(rule) => shared
            .layer
            .call("DescribeRules", deployment, || {
                elb.describe_rules().rule_arns(rule).send()
            })
            .await
            .map_err(not_found(
                rule,
                "the listener rule does not exist; fix the load balancer configuration",
            ))?
            .rules()
            .first()
            .map(|r| r.actions().to_vec()),
        None => shared
            .layer
            .call("DescribeListeners", deployment, || {
                elb.describe_listeners()
                    .listener_arns(&route.listener_arn)
                    .send()
            })
            .await
            .map_err(not_found(
                &route.listener_arn,
                "the listener does not exist; fix the load balancer configuration",
            ))?
            .listeners()
            .first()
            .map(|l| l.default_actions().to_vec()),
    }
    .unwrap_or_default();
    let where_ = route.rule_arn.as_deref().unwrap_or(&route.listener_arn);
    let patched = patch_forward(&actions, &lb.target_groups, split)
        .map_err(|why| Error::invalid("load balancer route", where_, why))?;
    if patched == actions {
        return Ok(());
    }
    match &route.rule_arn {
        Some(rule) => {
            shared
                .layer
                .call("ModifyRule", deployment, || {
                    elb.modify_rule()
                        .rule_arn(rule)
                        .set_actions(Some(patched.clone()))
                        .send()
                })
                .await
                .map_err(not_found(rule, "the listener rule does not exist"))?;
        }
        None => {
            shared
                .layer
                .call("ModifyListener", deployment, || {
                    elb.modify_listener()
                        .listener_arn(&route.listener_arn)
                        .set_default_actions(Some(patched.clone()))
                        .send()
                })
                .await
                .map_err(not_found(
                    &route.listener_arn,
                    "the listener does not exist",
                ))?;
        }
    }
    Ok(())
}

/// The actions with their forward action sending `split` (blue, green) to the two target
/// groups, or with `None` keeping today's weights and adding a missing group at weight 0.
/// Everything else is kept: other actions and their order, stickiness, other target groups.
fn patch_forward(
    actions: &[Action],
    groups: &[String; 2],
    split: Option<[u8; 2]>,
) -> std::result::Result<Vec<Action>, String> {
    let forwards = actions
        .iter()
        .filter(|a| a.r#type == Some(ActionTypeEnum::Forward))
        .count();
    if forwards != 1 {
        return Err(format!(
            "has {forwards} forward actions; Tapitalee weights exactly one, which must forward \
             to the process's target groups"
        ));
    }
    let mut out = actions.to_vec();
    let forward = out
        .iter_mut()
        .find(|a| a.r#type == Some(ActionTypeEnum::Forward))
        .ok_or("has no forward action")?;
    let mut config = forward
        .forward_config
        .clone()
        .unwrap_or_else(|| ForwardActionConfig::builder().build());
    let mut tuples = config.target_groups.clone().unwrap_or_default();
    if let Some(simple) = forward.target_group_arn.take()
        && !tuples
            .iter()
            .any(|t| t.target_group_arn.as_deref() == Some(simple.as_str()))
    {
        // A plain "forward to one group": that group takes everything.
        tuples.push(
            TargetGroupTuple::builder()
                .target_group_arn(simple)
                .weight(100)
                .build(),
        );
    }
    for (i, group) in groups.iter().enumerate() {
        let weight = split.map(|s| i32::from(s[i]));
        match tuples
            .iter_mut()
            .find(|t| t.target_group_arn.as_deref() == Some(group.as_str()))
        {
            Some(t) => {
                if let Some(w) = weight {
                    t.weight = Some(w);
                }
            }
            None => tuples.push(
                TargetGroupTuple::builder()
                    .target_group_arn(group)
                    .weight(weight.unwrap_or(0))
                    .build(),
            ),
        }
    }
    config.target_groups = Some(tuples);
    forward.forward_config = Some(config);
    Ok(out)
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
    /// Read by the shared poller: one `DescribeTargetHealth` per group per round, whoever
    /// asks.
    async fn targets(&self, app: &AppName, target_group: &str) -> Result<crate::poller::Targets> {
        self.shared.poller(app).targets(target_group).await
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
        // Fewer tasks than desired and none on its way: on an ECS-controller service, ECS's
        // service events say why (it cannot place them, ...); read them only then.
        let live = status
            .instances
            .iter()
            .filter(|i| !matches!(i.status, InstanceStatus::Stopped { .. }))
            .count();
        let starting = status
            .instances
            .iter()
            .any(|i| i.status == InstanceStatus::Pending);
        let short = u32::try_from(live).unwrap_or(u32::MAX) < status.desired && !starting;
        if p.load_balancer.is_none() && !short {
            return Ok(pass_through(status));
        }
        let key = ServiceKey::new(&p.cluster, &p.service);
        let app = &fleet.target.app;
        let info = self.shared.poller(app).service(key.clone()).await?;
        if info.controller != Controller::External {
            let mut report = pass_through(status);
            if short {
                report.problems = crate::ecs_native::service_problems(&info, fleet);
            }
            return Ok(report);
        }
        let Some(lb) = &p.load_balancer else {
            return Ok(pass_through(status));
        };
        let task_set = info
            .task_sets
            .iter()
            .find(|t| t.arn == fleet.id.0 || t.id == fleet.id.0);
        let Some(tg) =
            task_set.and_then(|t| t.target_group_of(&lb.target_groups).map(str::to_owned))
        else {
            return Ok(HealthReport {
                healthy: 0,
                problems: vec![format!(
                    "task set {} is attached to no target group",
                    fleet.id
                )],
            });
        };
        let targets = self.targets(app, &tg).await?;
        let recent = self.shared.poller(app).recent_tasks(&key).await?;
        let ips: HashMap<String, Option<String>> =
            recent.into_iter().map(|t| (t.arn, t.ip)).collect();
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
        // ECS has the last word on a task set: until it calls it STEADY_STATE (every task
        // running and passing its container and load balancer checks), it is not done,
        // whatever one read of the target group showed.
        if let Some(ts) = task_set
            && ts.stabilizing()
            && report.healthy >= status.desired
        {
            report.healthy = status.desired.saturating_sub(1);
            report.problems.push(format!(
                "task set {} is {} in ECS ({} of {} tasks running, {} pending)",
                ts.id,
                ts.stability.as_deref().unwrap_or_default(),
                ts.running,
                ts.computed_desired,
                ts.pending
            ));
        }
        Ok(report)
    }
}
