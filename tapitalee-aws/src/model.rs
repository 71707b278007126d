//! Plain snapshots of the ECS objects the backend reasons about, converted from SDK types once
//! (the poller's answers). Crate-private: no SDK type leaves the crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::types as ecs;
use aws_smithy_types::DateTime;

/// Which deployment controller a service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    /// Task sets driven by us.
    External,
    /// ECS's own deployments (`UpdateService`).
    Ecs,
    /// CodeDeploy: not supported.
    CodeDeploy,
}

/// An ECS service, as `DescribeServices` reported it.
#[derive(Debug, Clone)]
pub(crate) struct ServiceInfo {
    pub(crate) desired: i32,
    pub(crate) controller: Controller,
    pub(crate) task_definition: Option<String>,
    pub(crate) network: Option<ecs::NetworkConfiguration>,
    pub(crate) launch_type: Option<ecs::LaunchType>,
    pub(crate) platform_version: Option<String>,
    pub(crate) task_sets: Vec<TaskSetInfo>,
    pub(crate) deployments: Vec<DeploymentInfo>,
    /// How ECS deploys it (ECS controller): the base an [`EcsStrategy`](crate::EcsStrategy)
    /// is applied to.
    pub(crate) deployment_configuration: Option<ecs::DeploymentConfiguration>,
    /// The service deployment ECS is working on (`currentServiceDeployment`, ECS controller).
    pub(crate) current_service_deployment: Option<String>,
    /// ECS's service events, newest first, as `(when, message)`.
    pub(crate) events: Vec<(Option<SystemTime>, String)>,
}

/// A task set of an EXTERNAL-controller service.
#[derive(Debug, Clone)]
pub(crate) struct TaskSetInfo {
    pub(crate) id: String,
    pub(crate) arn: String,
    pub(crate) status: String,
    pub(crate) task_definition: String,
    pub(crate) computed_desired: i32,
    /// Its tasks RUNNING and starting, as ECS counts them.
    pub(crate) running: i32,
    pub(crate) pending: i32,
    /// `STEADY_STATE` or `STABILIZING` (ECS: steady once `runningCount` equals
    /// `computedDesiredCount`, nothing pending, and every task passes its container and
    /// load balancer health checks).
    pub(crate) stability: Option<String>,
    pub(crate) load_balancers: Vec<ecs::LoadBalancer>,
    pub(crate) network: Option<ecs::NetworkConfiguration>,
    pub(crate) launch_type: Option<ecs::LaunchType>,
    pub(crate) platform_version: Option<String>,
    pub(crate) capacity_provider_strategy: Vec<ecs::CapacityProviderStrategyItem>,
    pub(crate) service_registries: Vec<ecs::ServiceRegistry>,
}

impl TaskSetInfo {
    /// Whether ECS says the task set is whole and healthy: `STEADY_STATE` with its running
    /// count at `computedDesiredCount` and nothing pending.
    pub(crate) fn steady(&self) -> bool {
        self.stability.as_deref() == Some("STEADY_STATE")
            && self.running == self.computed_desired
            && self.pending == 0
    }

    /// Whether ECS says the task set is not steady yet (`STABILIZING`). An answer without a
    /// stability status says nothing.
    pub(crate) fn stabilizing(&self) -> bool {
        self.stability
            .as_deref()
            .is_some_and(|s| s != "STEADY_STATE")
    }

    /// The first of `pair` this task set is attached to.
    pub(crate) fn target_group_of<'a>(&'a self, pair: &[String; 2]) -> Option<&'a str> {
        self.load_balancers
            .iter()
            .filter_map(|lb| lb.target_group_arn())
            .find(|tg| pair.iter().any(|p| p == tg))
    }
}

/// A deployment of an ECS-controller service.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentInfo {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) task_definition: String,
    pub(crate) desired: i32,
    /// Tasks of this deployment that failed to launch or run (the circuit breaker's count).
    pub(crate) failed_tasks: i32,
    pub(crate) rollout_state: Option<String>,
    pub(crate) rollout_reason: Option<String>,
    pub(crate) created: Option<SystemTime>,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskInfo {
    pub(crate) arn: String,
    pub(crate) started_by: Option<String>,
    pub(crate) task_definition: Option<String>,
    pub(crate) last_status: String,
    pub(crate) desired_status: String,
    pub(crate) health: Option<String>,
    pub(crate) stop_code: Option<String>,
    pub(crate) stopped_reason: Option<String>,
    /// The exit code of each container that exited, by container name.
    pub(crate) exit_codes: Vec<(String, i32)>,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) ip: Option<String>,
}

pub(crate) fn system_time(t: Option<&DateTime>) -> Option<SystemTime> {
    let t = t?;
    let secs = u64::try_from(t.secs()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(u64::from(t.subsec_nanos())))
}

impl From<&ecs::Service> for ServiceInfo {
    fn from(s: &ecs::Service) -> Self {
        let controller = match s.deployment_controller().map(|c| c.r#type()) {
            Some(ecs::DeploymentControllerType::External) => Controller::External,
            Some(ecs::DeploymentControllerType::CodeDeploy) => Controller::CodeDeploy,
            _ => Controller::Ecs,
        };
        ServiceInfo {
            desired: s.desired_count(),
            controller,
            task_definition: s.task_definition().map(str::to_owned),
            network: s.network_configuration().cloned(),
            launch_type: s.launch_type().cloned(),
            platform_version: s.platform_version().map(str::to_owned),
            task_sets: s.task_sets().iter().map(TaskSetInfo::from).collect(),
            deployments: s.deployments().iter().map(DeploymentInfo::from).collect(),
            deployment_configuration: s.deployment_configuration().cloned(),
            current_service_deployment: s.current_service_deployment().map(str::to_owned),
            events: s
                .events()
                .iter()
                .filter_map(|e| Some((system_time(e.created_at()), e.message()?.to_owned())))
                .collect(),
        }
    }
}

impl From<&ecs::TaskSet> for TaskSetInfo {
    fn from(t: &ecs::TaskSet) -> Self {
        TaskSetInfo {
            id: t.id().unwrap_or_default().to_owned(),
            arn: t.task_set_arn().unwrap_or_default().to_owned(),
            status: t.status().unwrap_or_default().to_owned(),
            task_definition: t.task_definition().unwrap_or_default().to_owned(),
            computed_desired: t.computed_desired_count(),
            running: t.running_count(),
            pending: t.pending_count(),
            stability: t.stability_status().map(|s| s.as_str().to_owned()),
            load_balancers: t.load_balancers().to_vec(),
            network: t.network_configuration().cloned(),
            launch_type: t.launch_type().cloned(),
            platform_version: t.platform_version().map(str::to_owned),
            capacity_provider_strategy: t.capacity_provider_strategy().to_vec(),
            service_registries: t.service_registries().to_vec(),
        }
    }
}

impl From<&ecs::Deployment> for DeploymentInfo {
    fn from(d: &ecs::Deployment) -> Self {
        DeploymentInfo {
            id: d.id().unwrap_or_default().to_owned(),
            status: d.status().unwrap_or_default().to_owned(),
            task_definition: d.task_definition().unwrap_or_default().to_owned(),
            desired: d.desired_count(),
            failed_tasks: d.failed_tasks(),
            rollout_state: d.rollout_state().map(|s| s.as_str().to_owned()),
            rollout_reason: d.rollout_state_reason().map(str::to_owned),
            created: system_time(d.created_at()),
        }
    }
}

impl TaskInfo {
    /// The exit code that explains a stop, from the essential containers (all, when none is
    /// known): the first non-zero one, else the first.
    pub(crate) fn exit_code(&self, essential: &[String]) -> Option<i32> {
        let codes: Vec<i32> = self
            .exit_codes
            .iter()
            .filter(|(name, _)| essential.is_empty() || essential.contains(name))
            .map(|(_, code)| *code)
            .collect();
        codes
            .iter()
            .copied()
            .find(|c| *c != 0)
            .or(codes.first().copied())
    }
}

impl From<&ecs::Task> for TaskInfo {
    fn from(t: &ecs::Task) -> Self {
        let exit_codes = t
            .containers()
            .iter()
            .filter_map(|c| Some((c.name().unwrap_or_default().to_owned(), c.exit_code()?)))
            .collect();
        let ip = t
            .containers()
            .iter()
            .flat_map(|c| c.network_interfaces())
            .find_map(|n| n.private_ipv4_address())
            .or_else(|| {
                t.attachments()
                    .iter()
                    .flat_map(|a| a.details())
                    .find(|kv| kv.name() == Some("privateIPv4Address"))
                    .and_then(|kv| kv.value())
            })
            .map(str::to_owned);
        TaskInfo {
            arn: t.task_arn().unwrap_or_default().to_owned(),
            started_by: t.started_by().map(str::to_owned),
            task_definition: t.task_definition_arn().map(str::to_owned),
            last_status: t.last_status().unwrap_or_default().to_owned(),
            desired_status: t.desired_status().unwrap_or_default().to_owned(),
            health: t.health_status().map(|h| h.as_str().to_owned()),
            stop_code: t.stop_code().map(|c| c.as_str().to_owned()),
            stopped_reason: t.stopped_reason().map(str::to_owned),
            exit_codes,
            started_at: system_time(t.started_at()),
            ip,
        }
    }
}
