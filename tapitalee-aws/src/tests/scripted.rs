use aws_sdk_ecs::Client as Ecs;
use aws_sdk_ecs::operation::describe_services::{DescribeServicesError, DescribeServicesOutput};
use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::operation::list_service_deployments::ListServiceDeploymentsOutput;
use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_ecs::operation::stop_service_deployment::StopServiceDeploymentOutput;
use aws_sdk_ecs::types::{
    Container, ContainerDefinition, Deployment, DeploymentController, DeploymentControllerType,
    DeploymentRolloutState, DesiredStatus, HealthStatus, Scale, Service, ServiceDeploymentBrief,
    ServiceDeploymentStatus, Task, TaskDefinition, TaskSet, TaskStopCode,
};
use aws_smithy_mocks::{Rule, mock};
use aws_smithy_types::error::ErrorMetadata;
use tapitalee_core::{
    AppName, DeployContext, Deployer, DeploymentId, Error, Fleet, FleetId, ImageRef, Initiator,
    InstanceStatus, ProcessName, Revision, Target,
};

use super::scripted;
use crate::config::{AppConfig, LoadBalancerConfig, ProcessConfig};

pub(super) const OLD_TD: &str = "arn:aws:ecs:us-east-1:1:task-definition/worker:1";
pub(super) const NEW_TD: &str = "arn:aws:ecs:us-east-1:1:task-definition/worker:2";

pub(super) fn app(n: usize) -> AppConfig {
    let mut a = AppConfig::new(AppName::new("myapp").unwrap(), "myapp");
    for i in 0..n {
        a = a.process(ProcessConfig::new(
            ProcessName::new(format!("p{i}")).unwrap(),
            "c",
            format!("s{i}"),
        ));
    }
    a
}

pub(super) fn target(p: &str) -> Target {
    Target::new(AppName::new("myapp").unwrap(), ProcessName::new(p).unwrap())
}

/// A deployment's context for process `p`, without a stable fleet.
pub(super) fn ctx(p: &str) -> DeployContext {
    DeployContext::new(
        DeploymentId::new(),
        Initiator::new("test").unwrap(),
        target(p),
    )
}

pub(super) fn fleet(p: &str, id: &str, td: &str) -> Fleet {
    Fleet {
        id: FleetId(id.into()),
        target: target(p),
        revision: Revision {
            id: td.into(),
            image: "repo/app:v2".parse::<ImageRef>().unwrap(),
        },
    }
}

pub(super) fn deployment(
    id: &str,
    status: &str,
    td: &str,
    state: DeploymentRolloutState,
    reason: &str,
) -> Deployment {
    Deployment::builder()
        .id(id)
        .status(status)
        .task_definition(td)
        .desired_count(2)
        .rollout_state(state)
        .rollout_state_reason(reason)
        .build()
}

pub(super) fn ecs_service(
    name: &str,
    controller: DeploymentControllerType,
    deployments: Vec<Deployment>,
) -> Service {
    Service::builder()
        .service_name(name)
        .service_arn(format!("arn:aws:ecs:us-east-1:1:service/c/{name}"))
        .status("ACTIVE")
        .desired_count(2)
        .deployment_controller(
            DeploymentController::builder()
                .r#type(controller)
                .build()
                .unwrap(),
        )
        .set_deployments(Some(deployments))
        .build()
}

pub(super) fn services_rule(services: Vec<Service>) -> Rule {
    mock!(Ecs::describe_services).then_output(move || {
        DescribeServicesOutput::builder()
            .set_services(Some(services.clone()))
            .build()
    })
}

pub(super) fn task_def_rule() -> Rule {
    mock!(Ecs::describe_task_definition).then_compute_output(|req| {
        DescribeTaskDefinitionOutput::builder()
            .task_definition(
                TaskDefinition::builder()
                    .task_definition_arn(req.task_definition().unwrap_or_default())
                    .family("worker")
                    .container_definitions(
                        ContainerDefinition::builder()
                            .name("worker")
                            .image("repo/app:v1")
                            .build(),
                    )
                    .build(),
            )
            .build()
    })
}

pub(super) fn running(arn: &str, started_by: &str, td: &str, health: HealthStatus) -> Task {
    Task::builder()
        .task_arn(arn)
        .started_by(started_by)
        .task_definition_arn(td)
        .last_status("RUNNING")
        .desired_status("RUNNING")
        .health_status(health)
        .build()
}

pub(super) fn tasks_rules(tasks: Vec<Task>) -> Vec<Rule> {
    let arns: Vec<String> = tasks
        .iter()
        .filter_map(|t| t.task_arn().map(str::to_owned))
        .collect();
    let running: Vec<String> = tasks
        .iter()
        .filter(|t| t.desired_status() == Some("RUNNING"))
        .filter_map(|t| t.task_arn().map(str::to_owned))
        .collect();
    let stopped: Vec<String> = arns
        .iter()
        .filter(|a| !running.contains(a))
        .cloned()
        .collect();
    vec![
        mock!(Ecs::list_tasks)
            .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Running))
            .then_output(move || {
                ListTasksOutput::builder()
                    .set_task_arns(Some(running.clone()))
                    .build()
            }),
        mock!(Ecs::list_tasks)
            .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Stopped))
            .then_output(move || {
                ListTasksOutput::builder()
                    .set_task_arns(Some(stopped.clone()))
                    .build()
            }),
        mock!(Ecs::describe_tasks).then_output(move || {
            DescribeTasksOutput::builder()
                .set_tasks(Some(tasks.clone()))
                .build()
        }),
    ]
}

pub(super) fn refs(rules: &[Rule]) -> Vec<&Rule> {
    rules.iter().collect()
}

#[tokio::test]
async fn describe_services_calls_per_poll_round_are_ceil_n_over_10() {
    for n in [1usize, 10, 25] {
        let rule = mock!(Ecs::describe_services).then_compute_output(|req| {
            DescribeServicesOutput::builder()
                .set_services(Some(
                    req.services()
                        .iter()
                        .map(|s| ecs_service(s, DeploymentControllerType::Ecs, vec![]))
                        .collect(),
                ))
                .build()
        });
        let backend = scripted(vec![app(n)], &[&rule], &[], &[]);
        let specs = backend
            .deployer()
            .processes(&AppName::new("myapp").unwrap())
            .await
            .unwrap();
        assert_eq!(specs.len(), n);
        assert!(specs.iter().all(|s| s.desired == 2));
        assert_eq!(
            backend.api_calls().count("DescribeServices"),
            n.div_ceil(10) as u64,
            "{n} services"
        );
        // Every request of every caller in the window shares the round.
        let d = backend.deployer();
        let before = backend.api_calls();
        let targets: Vec<Target> = (0..n).map(|i| target(&format!("p{i}"))).collect();
        let ctxs: Vec<DeployContext> = targets
            .iter()
            .map(|t| {
                DeployContext::new(DeploymentId::new(), Initiator::new("t").unwrap(), t.clone())
            })
            .collect();
        futures::future::join_all(ctxs.iter().map(|c| d.current(c))).await;
        let delta = backend.api_calls().since(&before);
        assert_eq!(
            delta.get("DescribeServices").copied(),
            Some(n.div_ceil(10) as u64),
            "{n}: {delta:?}"
        );
    }
}

#[tokio::test]
async fn ecs_rollout_in_progress_then_completed() {
    let in_progress = services_rule(vec![ecs_service(
        "s0",
        DeploymentControllerType::Ecs,
        vec![
            deployment(
                "ecs-svc/2",
                "PRIMARY",
                NEW_TD,
                DeploymentRolloutState::InProgress,
                "in progress",
            ),
            deployment(
                "ecs-svc/1",
                "ACTIVE",
                OLD_TD,
                DeploymentRolloutState::Completed,
                "",
            ),
        ],
    )]);
    let tasks = tasks_rules(vec![
        running("t1", "ecs-svc/2", NEW_TD, HealthStatus::Healthy),
        running("t2", "ecs-svc/2", NEW_TD, HealthStatus::Healthy),
        running("t0", "ecs-svc/1", OLD_TD, HealthStatus::Healthy),
    ]);
    let td = task_def_rule();
    let mut rules = vec![&in_progress, &td];
    rules.extend(refs(&tasks));
    let backend = scripted(vec![app(1)], &rules, &[], &[]);
    let new = fleet("p0", NEW_TD, NEW_TD);
    let status = backend.deployer().status(&ctx("p0"), &new).await.unwrap();
    // Both new tasks run, but ECS has not said COMPLETED: at most desired - 1 count.
    assert_eq!(status.desired, 2);
    assert_eq!(status.instances.len(), 2);
    assert_eq!(status.running(), 1, "{status:?}");

    let completed = services_rule(vec![ecs_service(
        "s0",
        DeploymentControllerType::Ecs,
        vec![deployment(
            "ecs-svc/2",
            "PRIMARY",
            NEW_TD,
            DeploymentRolloutState::Completed,
            "done",
        )],
    )]);
    let mut rules = vec![&completed, &td];
    rules.extend(refs(&tasks));
    let backend = scripted(vec![app(1)], &rules, &[], &[]);
    let status = backend.deployer().status(&ctx("p0"), &new).await.unwrap();
    assert_eq!(status.running(), 2, "{status:?}");
}

#[tokio::test]
async fn circuit_breaker_rollback_fails_the_fleet_though_all_tasks_run() {
    // ECS rolled back: our deployment FAILED, the old one is PRIMARY and fully running.
    let failed = services_rule(vec![ecs_service(
        "s0",
        DeploymentControllerType::Ecs,
        vec![
            deployment(
                "ecs-svc/3",
                "PRIMARY",
                OLD_TD,
                DeploymentRolloutState::InProgress,
                "rolling back",
            ),
            deployment(
                "ecs-svc/2",
                "ACTIVE",
                NEW_TD,
                DeploymentRolloutState::Failed,
                "ECS deployment circuit breaker: tasks failed to start.",
            ),
        ],
    )]);
    let backend = scripted(vec![app(1)], &[&failed], &[], &[]);
    let e = backend
        .deployer()
        .status(&ctx("p0"), &fleet("p0", NEW_TD, NEW_TD))
        .await
        .unwrap_err();
    match &e {
        Error::HealthFailed { reason, .. } => {
            assert!(reason.contains("circuit breaker"), "{reason}")
        }
        other => panic!("expected HealthFailed, got {other:?}"),
    }

    // Later the failed deployment is gone altogether; running == desired on the old revision.
    let gone = services_rule(vec![ecs_service(
        "s0",
        DeploymentControllerType::Ecs,
        vec![deployment(
            "ecs-svc/3",
            "PRIMARY",
            OLD_TD,
            DeploymentRolloutState::Completed,
            "",
        )],
    )]);
    let list = mock!(Ecs::list_service_deployments).then_output(|| {
        ListServiceDeploymentsOutput::builder()
            .service_deployments(
                ServiceDeploymentBrief::builder()
                    .service_deployment_arn("arn:sd/2")
                    .status(ServiceDeploymentStatus::RollbackSuccessful)
                    .status_reason("circuit breaker")
                    .build(),
            )
            .build()
    });
    let backend = scripted(vec![app(1)], &[&gone, &list], &[], &[]);
    let e = backend
        .deployer()
        .status(&ctx("p0"), &fleet("p0", NEW_TD, NEW_TD))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::HealthFailed { .. }), "{e}");
    assert!(e.to_string().contains("ROLLBACK_SUCCESSFUL"), "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn retiring_an_in_progress_ecs_rollout_stops_it_with_rollback() {
    let svc = services_rule(vec![ecs_service(
        "s0",
        DeploymentControllerType::Ecs,
        vec![deployment(
            "ecs-svc/2",
            "PRIMARY",
            NEW_TD,
            DeploymentRolloutState::InProgress,
            "",
        )],
    )]);
    let list = mock!(Ecs::list_service_deployments)
        .match_requests(|r| {
            r.status()
                == [
                    ServiceDeploymentStatus::Pending,
                    ServiceDeploymentStatus::InProgress,
                ]
        })
        .then_output(|| {
            ListServiceDeploymentsOutput::builder()
                .service_deployments(
                    ServiceDeploymentBrief::builder()
                        .service_deployment_arn("arn:sd/2")
                        .build(),
                )
                .build()
        });
    let stop = mock!(Ecs::stop_service_deployment)
        .match_requests(|r| {
            r.service_deployment_arn() == Some("arn:sd/2")
                && r.stop_type()
                    == Some(&aws_sdk_ecs::types::StopServiceDeploymentStopType::Rollback)
        })
        .then_output(|| StopServiceDeploymentOutput::builder().build());
    let backend = scripted(vec![app(1)], &[&svc, &list, &stop], &[], &[]);
    let d = backend.deployer();
    let c = ctx("p0").with_stable(Some(fleet("p0", OLD_TD, OLD_TD)));
    d.retire(&c, &fleet("p0", NEW_TD, NEW_TD)).await.unwrap();
    assert_eq!(stop.num_calls(), 1);
    assert_eq!(backend.api_calls().count("UpdateService"), 0);
}

#[tokio::test]
async fn crash_looping_tasks_are_stopped_instances_with_exit_codes() {
    let ts = TaskSet::builder()
        .id("ecs-svc/9")
        .task_set_arn("arn:aws:ecs:us-east-1:1:task-set/c/s0/ecs-svc/9")
        .status("ACTIVE")
        .task_definition(NEW_TD)
        .computed_desired_count(2)
        .scale(Scale::builder().value(100.0).build())
        .build();
    let svc = services_rule(vec![
        ecs_service("s0", DeploymentControllerType::External, vec![]).to_builder_with_task_set(ts),
    ]);
    let crashed = |arn: &str, code: i32| {
        Task::builder()
            .task_arn(arn)
            .started_by("ecs-svc/9")
            .task_definition_arn(NEW_TD)
            .last_status("STOPPED")
            .desired_status("STOPPED")
            .stop_code(TaskStopCode::EssentialContainerExited)
            .stopped_reason("Essential container in task exited")
            .containers(Container::builder().name("worker").exit_code(code).build())
            .build()
    };
    let tasks = tasks_rules(vec![
        crashed("t1", 1),
        crashed("t2", 137),
        Task::builder()
            .task_arn("t3")
            .started_by("ecs-svc/9")
            .last_status("PROVISIONING")
            .desired_status("RUNNING")
            .build(),
        running("t-other", "ecs-svc/1", OLD_TD, HealthStatus::Healthy),
    ]);
    let td = task_def_rule();
    let mut rules = vec![&svc, &td];
    rules.extend(refs(&tasks));
    let backend = scripted(vec![app(1)], &rules, &[], &[]);
    let f = fleet(
        "p0",
        "arn:aws:ecs:us-east-1:1:task-set/c/s0/ecs-svc/9",
        NEW_TD,
    );
    let status = backend.deployer().status(&ctx("p0"), &f).await.unwrap();
    assert_eq!(status.desired, 2);
    assert_eq!(status.stopped(), 2, "{status:?}");
    assert_eq!(
        status.instances.len(),
        3,
        "the other task set's task is not ours"
    );
    assert!(status.instances.iter().any(|i| i.status
        == InstanceStatus::Stopped {
            reason: "Essential container in task exited".into(),
            exit_code: Some(137)
        }));
    let report = tapitalee_core::HealthProbe::check(&tapitalee_core::ContainerHealth, &f, &status)
        .await
        .unwrap();
    assert_eq!(report.healthy, 0);
    assert!(
        report.problems.iter().any(|p| p.contains("exit code 1")),
        "{report:?}"
    );
}

fn throttled() -> DescribeServicesError {
    DescribeServicesError::generic(
        ErrorMetadata::builder()
            .code("ThrottlingException")
            .message("Rate exceeded")
            .build(),
    )
}

#[tokio::test]
async fn throttling_bursts_are_retried_and_counted() {
    let svc = ecs_service("s0", DeploymentControllerType::Ecs, vec![]);
    let rule = mock!(Ecs::describe_services)
        .sequence()
        .error(throttled)
        .times(3)
        .output(move || {
            DescribeServicesOutput::builder()
                .services(svc.clone())
                .build()
        })
        .repeatedly()
        .build();
    let backend = scripted(vec![app(1)], &[&rule], &[], &[]);
    let specs = backend
        .deployer()
        .processes(&AppName::new("myapp").unwrap())
        .await
        .unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(backend.api_calls().count("DescribeServices"), 4);

    // A burst longer than the retry budget surfaces as a retryable Throttled error.
    let always = mock!(Ecs::describe_services).then_error(throttled);
    let backend = scripted(vec![app(1)], &[&always], &[], &[]);
    let e = backend
        .deployer()
        .processes(&AppName::new("myapp").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Throttled { .. }), "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("DescribeServices"), "{e}");
    assert_eq!(
        backend.api_calls().count("DescribeServices"),
        5,
        "bounded: 5 attempts"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_as_transient() {
    let svc = ecs_service("s0", DeploymentControllerType::Ecs, vec![]);
    let rule = mock!(Ecs::describe_services)
        .sequence()
        .http_status(503, None)
        .times(2)
        .output(move || {
            DescribeServicesOutput::builder()
                .services(svc.clone())
                .build()
        })
        .repeatedly()
        .build();
    let backend = scripted(vec![app(1)], &[&rule], &[], &[]);
    backend
        .deployer()
        .processes(&AppName::new("myapp").unwrap())
        .await
        .unwrap();
    assert_eq!(backend.api_calls().count("DescribeServices"), 3);

    let always = mock!(Ecs::describe_services)
        .sequence()
        .http_status(500, Some("<html>Internal Server Error</html>".into()))
        .repeatedly()
        .build();
    let backend = scripted(vec![app(1)], &[&always], &[], &[]);
    let e = backend
        .deployer()
        .processes(&AppName::new("myapp").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transient { .. }), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn a_missing_service_names_the_fix() {
    let rule =
        mock!(Ecs::describe_services).then_output(|| DescribeServicesOutput::builder().build());
    let backend = scripted(vec![app(1)], &[&rule], &[], &[]);
    let e = backend.deployer().current(&ctx("p0")).await.unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("\"s0\"") && shown.contains("ProcessConfig"),
        "{shown}"
    );
}

trait WithTaskSet {
    fn to_builder_with_task_set(self, ts: TaskSet) -> Service;
}

impl WithTaskSet for Service {
    fn to_builder_with_task_set(self, ts: TaskSet) -> Service {
        let mut s = self;
        s.task_sets = Some(vec![ts]);
        s
    }
}

/// `CreateTaskSet` carries an idempotency token derived from the deployment and the process:
/// a 5xx (or timeout) whose request did create a task set is retried with the same token, so
/// ECS returns that task set instead of creating an orphaned second one.
#[tokio::test]
async fn create_task_set_is_retried_with_the_same_idempotency_token() {
    use aws_sdk_ecs::operation::create_task_set::CreateTaskSetOutput;
    use aws_sdk_ecs::types::{AwsVpcConfiguration, NetworkConfiguration};
    use std::sync::{Arc, Mutex};

    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .subnets("subnet-1")
                .build()
                .unwrap(),
        )
        .build();
    let svc = services_rule(vec![
        Service::builder()
            .service_name("s0")
            .desired_count(2)
            .deployment_controller(
                DeploymentController::builder()
                    .r#type(DeploymentControllerType::External)
                    .build()
                    .unwrap(),
            )
            .network_configuration(network)
            .build(),
    ]);
    let td = task_def_rule();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let seen = tokens.clone();
    let create = mock!(Ecs::create_task_set)
        .match_requests(move |r| {
            seen.lock()
                .unwrap()
                .push(r.client_token().map(str::to_owned));
            true
        })
        .sequence()
        .http_status(503, None)
        .output(|| {
            CreateTaskSetOutput::builder()
                .task_set(TaskSet::builder().task_set_arn("arn:ts/new").build())
                .build()
        })
        .build();
    let backend = scripted(vec![app(1)], &[&svc, &td, &create], &[], &[]);
    let c = ctx("p0");
    let fleet = backend
        .deployer()
        .launch(&c, &fleet("p0", NEW_TD, NEW_TD).revision, 1)
        .await
        .unwrap();
    assert_eq!(fleet.id.0, "arn:ts/new");
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 2, "the 503 was retried: {tokens:?}");
    let first = tokens[0].clone().expect("a client token");
    assert!(first.len() <= 36, "ECS allows 36 characters: {first}");
    assert_eq!(tokens[1].as_deref(), Some(first.as_str()), "the same token");
    assert_eq!(
        first,
        crate::ecs::client_token(&c),
        "derived from the context"
    );
    assert_ne!(
        first,
        crate::ecs::client_token(&ctx("p0")),
        "per deployment"
    );
}

/// A new task set is launched like the live one: its capacity providers (FARGATE_SPOT stays
/// Spot, so no launch type), its service registries, and every load balancer, with only the
/// weighted pair switched to the idle target group.
#[tokio::test]
async fn a_new_task_set_copies_the_live_ones_capacity_registries_and_load_balancers() {
    use aws_sdk_ecs::operation::create_task_set::CreateTaskSetOutput;
    use aws_sdk_ecs::types::{
        AwsVpcConfiguration, CapacityProviderStrategyItem, LoadBalancer, NetworkConfiguration,
        ServiceRegistry,
    };
    use aws_sdk_elasticloadbalancingv2::Client as Elb;
    use aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersOutput;
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, Listener};

    const BLUE: &str = "arn:tg/blue";
    const GREEN: &str = "arn:tg/green";
    const NLB: &str = "arn:tg/nlb-tcp";
    let lb = |tg: &str, port: i32| {
        LoadBalancer::builder()
            .target_group_arn(tg)
            .container_name("app")
            .container_port(port)
            .build()
    };
    let spot = CapacityProviderStrategyItem::builder()
        .capacity_provider("FARGATE_SPOT")
        .weight(1)
        .build()
        .unwrap();
    let registry = ServiceRegistry::builder()
        .registry_arn("arn:servicediscovery:srv/web")
        .build();
    let live = TaskSet::builder()
        .id("ecs-svc/live")
        .task_set_arn("arn:ts/live")
        .status("PRIMARY")
        .task_definition(OLD_TD)
        .capacity_provider_strategy(spot.clone())
        .load_balancers(lb(BLUE, 8080))
        .load_balancers(lb(NLB, 9000))
        .service_registries(registry.clone())
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .subnets("subnet-1")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build();
    let svc = services_rule(vec![
        Service::builder()
            .service_name("s0")
            .desired_count(2)
            .deployment_controller(
                DeploymentController::builder()
                    .r#type(DeploymentControllerType::External)
                    .build()
                    .unwrap(),
            )
            .task_sets(live)
            .build(),
    ]);
    let (want_spot, want_registry) = (spot.clone(), registry.clone());
    let create = mock!(Ecs::create_task_set)
        .match_requests(move |r| {
            r.launch_type().is_none()
                && r.capacity_provider_strategy() == [want_spot.clone()]
                && r.service_registries() == [want_registry.clone()]
                && r.load_balancers() == [lb(GREEN, 8080), lb(NLB, 9000)]
        })
        .then_output(|| {
            CreateTaskSetOutput::builder()
                .task_set(TaskSet::builder().task_set_arn("arn:ts/new").build())
                .build()
        });
    // The listener already forwards to both groups: nothing to change there.
    let listener = mock!(Elb::describe_listeners).then_output(|| {
        let forward = |tg: &str, w: i32| {
            aws_sdk_elasticloadbalancingv2::types::TargetGroupTuple::builder()
                .target_group_arn(tg)
                .weight(w)
                .build()
        };
        DescribeListenersOutput::builder()
            .listeners(
                Listener::builder()
                    .default_actions(
                        Action::builder()
                            .r#type(ActionTypeEnum::Forward)
                            .forward_config(
                                aws_sdk_elasticloadbalancingv2::types::ForwardActionConfig::builder()
                                    .target_groups(forward(BLUE, 100))
                                    .target_groups(forward(GREEN, 0))
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let app = AppConfig::new(AppName::new("myapp").unwrap(), "myapp").process(
        ProcessConfig::new(ProcessName::new("p0").unwrap(), "c", "s0")
            .load_balancer(LoadBalancerConfig::new("arn:listener/1", BLUE, GREEN, 8080)),
    );
    let backend = scripted(vec![app], &[&svc, &create], &[&listener], &[]);
    let fleet = backend
        .deployer()
        .launch(&ctx("p0"), &fleet("p0", NEW_TD, NEW_TD).revision, 1)
        .await
        .unwrap();
    assert_eq!(fleet.id.0, "arn:ts/new");
    assert_eq!(
        create.num_calls(),
        1,
        "the request matched what the live task set runs"
    );
    assert_eq!(backend.api_calls().count("ModifyListener"), 0);
}

/// A stopped task is final, and ECS lists it for about an hour: it is described once, not at
/// every poll (which re-described every stopped task of the service each round).
#[tokio::test]
async fn stopped_tasks_are_described_once() {
    use std::sync::{Arc, Mutex};

    let ts = TaskSet::builder()
        .id("ecs-svc/9")
        .task_set_arn("arn:ts/9")
        .status("ACTIVE")
        .task_definition(NEW_TD)
        .computed_desired_count(2)
        .build();
    let svc = services_rule(vec![
        ecs_service("s0", DeploymentControllerType::External, vec![]).to_builder_with_task_set(ts),
    ]);
    let stopped = Task::builder()
        .task_arn("t-stopped")
        .started_by("ecs-svc/9")
        .last_status("STOPPED")
        .desired_status("STOPPED")
        .stop_code(TaskStopCode::EssentialContainerExited)
        .stopped_reason("Essential container in task exited")
        .containers(Container::builder().name("app").exit_code(1).build())
        .build();
    let live = running("t-live", "ecs-svc/9", NEW_TD, HealthStatus::Healthy);
    let all = [stopped, live];
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    let describe = mock!(Ecs::describe_tasks).then_compute_output(move |r| {
        let wanted = r.tasks();
        seen.lock().unwrap().extend(wanted.iter().cloned());
        DescribeTasksOutput::builder()
            .set_tasks(Some(
                all.iter()
                    .filter(|t| wanted.iter().any(|w| Some(w.as_str()) == t.task_arn()))
                    .cloned()
                    .collect(),
            ))
            .build()
    });
    let list_running = mock!(Ecs::list_tasks)
        .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Running))
        .then_output(|| ListTasksOutput::builder().task_arns("t-live").build());
    let list_stopped = mock!(Ecs::list_tasks)
        .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Stopped))
        .then_output(|| ListTasksOutput::builder().task_arns("t-stopped").build());
    let td = task_def_rule();
    let backend = scripted(
        vec![app(1)],
        &[&svc, &td, &describe, &list_running, &list_stopped],
        &[],
        &[],
    );
    let f = fleet("p0", "arn:ts/9", NEW_TD);
    for _ in 0..3 {
        let status = backend.deployer().status(&ctx("p0"), &f).await.unwrap();
        assert_eq!(status.stopped(), 1, "the stopped task is still reported");
        assert_eq!(status.running(), 1);
    }
    let asked = asked.lock().unwrap().clone();
    let times = |arn: &str| asked.iter().filter(|a| *a == arn).count();
    assert_eq!(times("t-stopped"), 1, "described once: {asked:?}");
    assert_eq!(times("t-live"), 3, "running tasks are described every poll");
}

/// The stopped tasks of a service whose running tasks are what it asked for and have not
/// changed are listed once, not every round (ECS keeps listing them for about an hour); a
/// running task gone from the listing, or a listing short of the desired count, brings the
/// stopped listing back, and the task that stopped is reported.
#[tokio::test]
async fn stopped_tasks_are_listed_again_only_when_one_can_have_stopped() {
    use std::sync::{Arc, Mutex};

    let ts = TaskSet::builder()
        .id("ecs-svc/9")
        .task_set_arn("arn:ts/9")
        .status("ACTIVE")
        .task_definition(NEW_TD)
        .computed_desired_count(2)
        .build();
    let svc = services_rule(vec![
        ecs_service("s0", DeploymentControllerType::External, vec![]).to_builder_with_task_set(ts),
    ]);
    let crashed = |arn: &str| {
        Task::builder()
            .task_arn(arn)
            .started_by("ecs-svc/9")
            .last_status("STOPPED")
            .desired_status("STOPPED")
            .stop_code(TaskStopCode::EssentialContainerExited)
            .stopped_reason("Essential container in task exited")
            .containers(Container::builder().name("app").exit_code(1).build())
            .build()
    };
    let live = [
        running("t1", "ecs-svc/9", NEW_TD, HealthStatus::Healthy),
        running("t2", "ecs-svc/9", NEW_TD, HealthStatus::Healthy),
        running("t3", "ecs-svc/9", NEW_TD, HealthStatus::Healthy),
    ];
    let stopped_now = Arc::new(Mutex::new(vec!["t0"]));
    let s = stopped_now.clone();
    let describe = mock!(Ecs::describe_tasks).then_compute_output(move |r| {
        let stopped = s.lock().unwrap().clone();
        DescribeTasksOutput::builder()
            .set_tasks(Some(
                r.tasks()
                    .iter()
                    .filter_map(|w| {
                        if stopped.contains(&w.as_str()) {
                            Some(crashed(w))
                        } else {
                            live.iter()
                                .find(|t| t.task_arn() == Some(w.as_str()))
                                .cloned()
                        }
                    })
                    .collect(),
            ))
            .build()
    });
    let running_now = Arc::new(Mutex::new(vec!["t1", "t2"]));
    let (r, s) = (running_now.clone(), stopped_now.clone());
    let list_running = mock!(Ecs::list_tasks)
        .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Running))
        .then_compute_output(move |_| {
            ListTasksOutput::builder()
                .set_task_arns(Some(
                    r.lock().unwrap().iter().map(|a| (*a).to_owned()).collect(),
                ))
                .build()
        });
    let list_stopped = mock!(Ecs::list_tasks)
        .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Stopped))
        .then_compute_output(move |_| {
            ListTasksOutput::builder()
                .set_task_arns(Some(
                    s.lock().unwrap().iter().map(|a| (*a).to_owned()).collect(),
                ))
                .build()
        });
    let td = task_def_rule();
    let backend = scripted(
        vec![app(1)],
        &[&svc, &td, &describe, &list_running, &list_stopped],
        &[],
        &[],
    );
    let f = fleet("p0", "arn:ts/9", NEW_TD);
    let poll = || async { backend.deployer().status(&ctx("p0"), &f).await.unwrap() };
    for _ in 0..5 {
        let status = poll().await;
        assert_eq!(status.stopped(), 1, "t0 is still reported");
        assert_eq!(status.running(), 2);
    }
    assert_eq!(list_running.num_calls(), 5, "running tasks: every round");
    assert_eq!(
        list_stopped.num_calls(),
        1,
        "stopped tasks: once while nothing changes"
    );

    // t1 crashes and is replaced by t3: it left the running listing.
    *running_now.lock().unwrap() = vec!["t2", "t3"];
    stopped_now.lock().unwrap().push("t1");
    let status = poll().await;
    assert_eq!(
        list_stopped.num_calls(),
        2,
        "a running task is gone: listed again"
    );
    assert_eq!(status.stopped(), 2, "t1's crash is reported: {status:?}");
    poll().await;
    assert_eq!(list_stopped.num_calls(), 2);

    // t3 stops and the scheduler has not replaced it yet: short of the 2 asked for, every
    // round until it is.
    *running_now.lock().unwrap() = vec!["t2"];
    poll().await;
    poll().await;
    assert_eq!(list_stopped.num_calls(), 4);
}

/// A revision is described once: the live one on its first read, the one a deployment
/// registers never (RegisterTaskDefinition's answer is the whole revision).
#[tokio::test]
async fn revisions_are_described_once_and_registered_ones_never() {
    use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput;

    let td = task_def_rule();
    let register = mock!(Ecs::register_task_definition).then_compute_output(|req| {
        RegisterTaskDefinitionOutput::builder()
            .task_definition(
                TaskDefinition::builder()
                    .task_definition_arn(NEW_TD)
                    .family(req.family().unwrap_or_default())
                    .set_container_definitions(Some(req.container_definitions().to_vec()))
                    .build(),
            )
            .build()
    });
    let backend = scripted(vec![app(1)], &[&td, &register], &[], &[]);
    let d = backend.deployer();
    let base = d
        .shared
        .task_def(&target("p0").app, OLD_TD, None)
        .await
        .unwrap();
    d.shared
        .task_def(&target("p0").app, OLD_TD, None)
        .await
        .unwrap();
    assert_eq!(td.num_calls(), 1);
    let image: ImageRef = format!("repo/app:v2@sha256:{}", "b".repeat(64))
        .parse()
        .unwrap();
    let revision = d
        .shared
        .register_copy(&base, None, &image, &ctx("p0"))
        .await
        .unwrap();
    assert_eq!(revision.id, NEW_TD);
    let new = d
        .shared
        .task_def(&target("p0").app, NEW_TD, None)
        .await
        .unwrap();
    assert_eq!(new.image(None).unwrap().digest, image.digest);
    assert_eq!(
        td.num_calls(),
        1,
        "the registered revision is not described"
    );
}
