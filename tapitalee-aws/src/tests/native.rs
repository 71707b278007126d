//! The ECS-controller path: the strategy ECS runs, and rollbacks driven by core's engine.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecr::Client as Ecr;
use aws_sdk_ecr::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesOutput;
use aws_sdk_ecr::types::{ImageDetail, Repository};
use aws_sdk_ecs::Client as Ecs;
use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::operation::list_service_deployments::ListServiceDeploymentsOutput;
use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput;
use aws_sdk_ecs::operation::stop_service_deployment::StopServiceDeploymentOutput;
use aws_sdk_ecs::operation::update_service::UpdateServiceOutput;
use aws_sdk_ecs::types::{
    Container, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentControllerType,
    DeploymentRolloutState, DeploymentStrategy, DesiredStatus, HealthStatus,
    ServiceDeploymentBrief, StopServiceDeploymentStopType, Task, TaskDefinition, TaskStopCode,
};
use aws_smithy_mocks::{Rule, mock};
use tapitalee_core::testkit::AllAtOnce;
use tapitalee_core::{
    AppName, DeployContext, DeployRequest, Deployer, DockerTag, Engine, Error, Fleet, FleetStatus,
    HealthGate, ImageRef, Initiator, ProcessName, ProcessSpec, ProcessStatus, Release, Revision,
    RolloutControl, RolloutKind, TrafficWeight,
};

use super::scripted::{
    NEW_TD, OLD_TD, ctx, deployment, ecs_service, fleet, refs, running, services_rule,
    task_def_rule,
};
use super::{scripted, scripted_with_ecr};
use crate::config::{AppConfig, ProcessConfig};
use crate::ecs::EcsDeployer;
use crate::ecs_strategy::EcsStrategy;

fn app_with(strategy: Option<EcsStrategy>) -> AppConfig {
    let mut p = ProcessConfig::new(ProcessName::new("p0").unwrap(), "c", "s0");
    if let Some(s) = strategy {
        p = p.ecs_strategy(s);
    }
    AppConfig::new(AppName::new("myapp").unwrap(), "myapp").process(p)
}

fn existing_config() -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .maximum_percent(200)
        .minimum_healthy_percent(100)
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .build()
}

fn completed_service() -> aws_sdk_ecs::types::Service {
    let mut svc = ecs_service(
        "s0",
        DeploymentControllerType::Ecs,
        vec![deployment(
            "ecs-svc/1",
            "PRIMARY",
            OLD_TD,
            DeploymentRolloutState::Completed,
            "",
        )],
    );
    svc.deployment_configuration = Some(existing_config());
    svc
}

#[tokio::test]
async fn launch_sets_the_configured_ecs_strategy_and_keeps_the_rest() {
    let strategy = EcsStrategy::BlueGreen {
        bake_time: Duration::from_secs(15 * 60),
    };
    let svc = services_rule(vec![completed_service()]);
    let update = mock!(Ecs::update_service)
        .match_requests(|r| {
            let Some(c) = r.deployment_configuration() else {
                return false;
            };
            r.task_definition() == Some(NEW_TD)
                && c.strategy() == Some(&DeploymentStrategy::BlueGreen)
                && c.bake_time_in_minutes() == Some(15)
                && c.maximum_percent() == Some(200)
                && c.deployment_circuit_breaker().is_some_and(|b| b.rollback())
        })
        .then_output(|| UpdateServiceOutput::builder().build());
    let backend = scripted(vec![app_with(Some(strategy))], &[&svc, &update], &[], &[]);
    let new = fleet("p0", NEW_TD, NEW_TD);
    let launched = backend
        .deployer()
        .launch(&ctx("p0"), &new.revision, 2)
        .await
        .unwrap();
    assert_eq!(launched.id.0, NEW_TD);
    assert_eq!(update.num_calls(), 1, "UpdateService carried the strategy");

    // Linear: step percent and step bake time go in the linear configuration.
    let linear = EcsStrategy::Linear {
        step_percent: 20.0,
        step_bake_time: Duration::from_secs(120),
        bake_time: Duration::from_secs(300),
    };
    let update = mock!(Ecs::update_service)
        .match_requests(|r| {
            r.deployment_configuration().is_some_and(|c| {
                c.strategy() == Some(&DeploymentStrategy::Linear)
                    && c.linear_configuration().is_some_and(|l| {
                        l.step_percent() == Some(20.0) && l.step_bake_time_in_minutes() == Some(2)
                    })
                    && c.bake_time_in_minutes() == Some(5)
            })
        })
        .then_output(|| UpdateServiceOutput::builder().build());
    let backend = scripted(vec![app_with(Some(linear))], &[&svc, &update], &[], &[]);
    backend
        .deployer()
        .launch(&ctx("p0"), &new.revision, 2)
        .await
        .unwrap();
    assert_eq!(update.num_calls(), 1);

    // No strategy configured: the service's own deployment configuration is left alone.
    let update = mock!(Ecs::update_service)
        .match_requests(|r| r.deployment_configuration().is_none())
        .then_output(|| UpdateServiceOutput::builder().build());
    let backend = scripted(vec![app_with(None)], &[&svc, &update], &[], &[]);
    backend
        .deployer()
        .launch(&ctx("p0"), &new.revision, 2)
        .await
        .unwrap();
    assert_eq!(update.num_calls(), 1);
}

#[tokio::test]
async fn an_ecs_strategy_on_an_external_service_is_refused_before_anything_changes() {
    let svc = services_rule(vec![ecs_service(
        "s0",
        DeploymentControllerType::External,
        vec![],
    )]);
    let strategy = EcsStrategy::Canary {
        canary_percent: 10.0,
        canary_bake_time: Duration::from_secs(600),
        bake_time: Duration::ZERO,
    };
    let backend = scripted(vec![app_with(Some(strategy))], &[&svc], &[], &[]);
    let image =
        "repo/app:v2@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse::<ImageRef>()
            .unwrap();
    let e = backend
        .deployer()
        .prepare(&ctx("p0"), &image)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains("\"CANARY\"")
            && shown.contains("EXTERNAL")
            && shown.contains("ecs_strategy"),
        "{shown}"
    );
    assert_eq!(backend.api_calls().count("RegisterTaskDefinition"), 0);
}

#[tokio::test]
async fn the_controller_decides_who_runs_the_rollout() {
    for (controller, platform_run) in [
        (DeploymentControllerType::Ecs, true),
        (DeploymentControllerType::External, false),
    ] {
        let svc = services_rule(vec![ecs_service(
            "s0",
            controller.clone(),
            vec![deployment(
                "ecs-svc/1",
                "PRIMARY",
                OLD_TD,
                DeploymentRolloutState::Completed,
                "",
            )],
        )]);
        let backend = scripted(vec![app_with(None)], &[&svc], &[], &[]);
        let specs = backend
            .deployer()
            .processes(&AppName::new("myapp").unwrap())
            .await
            .unwrap();
        match &specs[0].rollout {
            RolloutControl::Platform { native, by, .. } => {
                assert!(platform_run, "{controller:?}");
                assert_eq!(*native, RolloutKind::Rolling);
                assert!(by.contains("EXTERNAL"), "{by}");
            }
            RolloutControl::Engine => assert!(!platform_run, "{controller:?}"),
        }
    }
}

/// Records the order of deployer operations, as the engine makes them.
#[derive(Debug)]
struct Recorder {
    inner: EcsDeployer,
    log: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

#[async_trait]
impl Deployer for Recorder {
    async fn processes(&self, app: &AppName) -> tapitalee_core::Result<Vec<ProcessSpec>> {
        self.inner.processes(app).await
    }
    async fn current(&self, ctx: &DeployContext) -> tapitalee_core::Result<Release> {
        self.inner.current(ctx).await
    }
    async fn prepare(
        &self,
        ctx: &DeployContext,
        image: &ImageRef,
    ) -> tapitalee_core::Result<Revision> {
        self.inner.prepare(ctx, image).await
    }
    async fn launch(
        &self,
        ctx: &DeployContext,
        revision: &Revision,
        count: u32,
    ) -> tapitalee_core::Result<Fleet> {
        self.note(format!("launch {}", revision.id));
        self.inner.launch(ctx, revision, count).await
    }
    async fn scale(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
        count: u32,
    ) -> tapitalee_core::Result<()> {
        self.note(format!("scale {} {count}", fleet.id));
        self.inner.scale(ctx, fleet, count).await
    }
    async fn route(
        &self,
        ctx: &DeployContext,
        weights: &[TrafficWeight],
    ) -> tapitalee_core::Result<()> {
        self.note("route".into());
        self.inner.route(ctx, weights).await
    }
    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> tapitalee_core::Result<()> {
        self.note(format!("make_primary {}", fleet.id));
        self.inner.make_primary(ctx, fleet).await
    }
    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> tapitalee_core::Result<()> {
        self.note(format!("retire {}", fleet.id));
        self.inner.retire(ctx, fleet).await
    }
    async fn status(
        &self,
        ctx: &DeployContext,
        fleet: &Fleet,
    ) -> tapitalee_core::Result<FleetStatus> {
        self.note(format!("status {}", fleet.id));
        self.inner.status(ctx, fleet).await
    }
}

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn ecr_rules() -> Vec<Rule> {
    vec![
        mock!(Ecr::describe_images).then_output(|| {
            DescribeImagesOutput::builder()
                .image_details(
                    ImageDetail::builder()
                        .image_digest(DIGEST)
                        .image_tags("v2")
                        .build(),
                )
                .build()
        }),
        mock!(Ecr::describe_repositories).then_output(|| {
            DescribeRepositoriesOutput::builder()
                .repositories(
                    Repository::builder()
                        .repository_name("myapp")
                        .repository_uri("1.dkr.ecr.us-east-1.amazonaws.com/myapp")
                        .build(),
                )
                .build()
        }),
    ]
}

/// The ECS-controller service as ECS would show it: before the deployment (0), while the new
/// revision's tasks crash (1), and after `StopServiceDeployment(ROLLBACK)` restored the old
/// revision (2).
fn rolling_back_service(phase: Arc<AtomicU8>, log: Arc<Mutex<Vec<String>>>) -> Vec<Rule> {
    let old_tasks = || {
        vec![
            running("t-old-1", "ecs-svc/1", OLD_TD, HealthStatus::Healthy),
            running("t-old-2", "ecs-svc/1", OLD_TD, HealthStatus::Healthy),
        ]
    };
    let crashed = |arn: &str| {
        Task::builder()
            .task_arn(arn)
            .started_by("ecs-svc/2")
            .task_definition_arn(NEW_TD)
            .last_status("STOPPED")
            .desired_status("STOPPED")
            .stop_code(TaskStopCode::EssentialContainerExited)
            .stopped_reason("Essential container in task exited")
            .containers(Container::builder().name("worker").exit_code(1).build())
            .build()
    };
    let all_tasks: Vec<Task> = old_tasks()
        .into_iter()
        .chain(["t-new-1", "t-new-2", "t-new-3"].map(crashed))
        .collect();
    let (p1, p2, p3, p4) = (phase.clone(), phase.clone(), phase.clone(), phase);
    vec![
        mock!(Ecs::describe_services).then_output(move || {
            let deployments = match p1.load(Ordering::SeqCst) {
                0 => vec![deployment(
                    "ecs-svc/1",
                    "PRIMARY",
                    OLD_TD,
                    DeploymentRolloutState::Completed,
                    "",
                )],
                1 => vec![
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
                _ => vec![deployment(
                    "ecs-svc/3",
                    "PRIMARY",
                    OLD_TD,
                    DeploymentRolloutState::Completed,
                    "rolled back",
                )],
            };
            DescribeServicesOutput::builder()
                .services(ecs_service(
                    "s0",
                    DeploymentControllerType::Ecs,
                    deployments,
                ))
                .build()
        }),
        mock!(Ecs::update_service).then_output(move || {
            p2.store(1, Ordering::SeqCst);
            UpdateServiceOutput::builder().build()
        }),
        mock!(Ecs::list_service_deployments)
            .match_requests(|r| {
                r.status()
                    == [
                        aws_sdk_ecs::types::ServiceDeploymentStatus::Pending,
                        aws_sdk_ecs::types::ServiceDeploymentStatus::InProgress,
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
            }),
        mock!(Ecs::stop_service_deployment)
            .match_requests(|r| {
                r.service_deployment_arn() == Some("arn:sd/2")
                    && r.stop_type() == Some(&StopServiceDeploymentStopType::Rollback)
            })
            .then_output(move || {
                log.lock().unwrap().push("StopServiceDeployment".into());
                p3.store(2, Ordering::SeqCst);
                StopServiceDeploymentOutput::builder().build()
            }),
        mock!(Ecs::list_tasks)
            .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Running))
            .then_output(move || {
                ListTasksOutput::builder()
                    .task_arns("t-old-1")
                    .task_arns("t-old-2")
                    .build()
            }),
        mock!(Ecs::list_tasks)
            .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Stopped))
            .then_output(move || {
                let stopped: &[&str] = if p4.load(Ordering::SeqCst) == 0 {
                    &[]
                } else {
                    &["t-new-1", "t-new-2", "t-new-3"]
                };
                ListTasksOutput::builder()
                    .set_task_arns(Some(stopped.iter().map(|s| (*s).to_owned()).collect()))
                    .build()
            }),
        mock!(Ecs::describe_tasks).then_output(move || {
            DescribeTasksOutput::builder()
                .set_tasks(Some(all_tasks.clone()))
                .build()
        }),
        mock!(Ecs::register_task_definition).then_output(|| {
            RegisterTaskDefinitionOutput::builder()
                .task_definition(
                    TaskDefinition::builder()
                        .task_definition_arn(NEW_TD)
                        .build(),
                )
                .build()
        }),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_failing_ecs_controller_deployment_retires_first_and_rolls_back_fast() {
    let phase = Arc::new(AtomicU8::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let ecs = rolling_back_service(phase.clone(), log.clone());
    let td = task_def_rule();
    let mut ecs_rules = refs(&ecs);
    ecs_rules.push(&td);
    let ecr = ecr_rules();
    let backend = scripted_with_ecr(vec![app_with(None)], &ecs_rules, &refs(&ecr), &[], &[]);
    let deployer = Arc::new(Recorder {
        inner: backend.deployer(),
        log: log.clone(),
    });
    let gate = HealthGate {
        progress_deadline: Duration::from_secs(600),
        ..HealthGate::default()
    };
    let engine = Engine::builder()
        .deployer(deployer)
        .registry(Arc::new(backend.registry()))
        .default_strategy(Arc::new(AllAtOnce))
        .health_gate(gate.clone())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let record = engine
        .deploy(
            &AppName::new("myapp").unwrap(),
            DeployRequest::new()
                .docker_tag(DockerTag::new("v2").unwrap())
                .initiator(Initiator::new("test").unwrap()),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    let took = started.elapsed();

    let p = &record.processes[0];
    match &p.status {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("exit code 1"), "{reason}")
        }
        other => panic!("expected RolledBack, got {other:?}; steps: {:?}", p.steps),
    }
    assert!(
        took < gate.progress_deadline / 10,
        "rolled back in {took:?}, not after the progress deadline"
    );
    let log = log.lock().unwrap().clone();
    let at = |what: &str| {
        log.iter()
            .position(|l| l == what)
            .unwrap_or_else(|| panic!("no {what:?} in {log:?}"))
    };
    let stop = at("StopServiceDeployment");
    assert!(at(&format!("retire {NEW_TD}")) < stop, "{log:?}");
    assert!(
        stop < at(&format!("status {OLD_TD}")),
        "the old capacity is awaited only after the new deployment is stopped: {log:?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.starts_with(&format!("scale {OLD_TD}"))),
        "ECS restores the old revision itself: {log:?}"
    );
    let calls = backend.api_calls();
    assert_eq!(calls.count("StopServiceDeployment"), 1);
    assert_eq!(
        calls.count("UpdateService"),
        1,
        "only the launch: {calls:?}"
    );
    assert_eq!(phase.load(Ordering::SeqCst), 2);
}

/// The ECS service of a healthy release: before (phase 0), while ECS rolls the new revision
/// out (phase 1: IN_PROGRESS for a few polls, its 2 tasks running), then COMPLETED.
fn healthy_rollout(phase: Arc<AtomicU8>, polls: Arc<AtomicU8>) -> Vec<Rule> {
    let (p1, p2, p3) = (phase.clone(), phase.clone(), phase);
    vec![
        mock!(Ecs::describe_services).then_output(move || {
            let deployments = match p1.load(Ordering::SeqCst) {
                0 => vec![deployment(
                    "ecs-svc/1",
                    "PRIMARY",
                    OLD_TD,
                    DeploymentRolloutState::Completed,
                    "",
                )],
                _ => {
                    let done = polls.fetch_add(1, Ordering::SeqCst) >= 4;
                    let mut d = vec![deployment(
                        "ecs-svc/2",
                        "PRIMARY",
                        NEW_TD,
                        if done {
                            DeploymentRolloutState::Completed
                        } else {
                            DeploymentRolloutState::InProgress
                        },
                        "",
                    )];
                    if !done {
                        d.push(deployment(
                            "ecs-svc/1",
                            "ACTIVE",
                            OLD_TD,
                            DeploymentRolloutState::Completed,
                            "",
                        ));
                    }
                    d
                }
            };
            DescribeServicesOutput::builder()
                .services(ecs_service(
                    "s0",
                    DeploymentControllerType::Ecs,
                    deployments,
                ))
                .build()
        }),
        mock!(Ecs::update_service).then_output(move || {
            p2.store(1, Ordering::SeqCst);
            UpdateServiceOutput::builder().build()
        }),
        mock!(Ecs::list_tasks)
            .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Running))
            .then_output(move || {
                let (a, b) = if p3.load(Ordering::SeqCst) == 0 {
                    ("t-old-1", "t-old-2")
                } else {
                    ("t-new-1", "t-new-2")
                };
                ListTasksOutput::builder().task_arns(a).task_arns(b).build()
            }),
        mock!(Ecs::list_tasks)
            .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Stopped))
            .then_output(|| ListTasksOutput::builder().build()),
        mock!(Ecs::describe_tasks).then_output(|| {
            DescribeTasksOutput::builder()
                .tasks(running(
                    "t-old-1",
                    "ecs-svc/1",
                    OLD_TD,
                    HealthStatus::Healthy,
                ))
                .tasks(running(
                    "t-old-2",
                    "ecs-svc/1",
                    OLD_TD,
                    HealthStatus::Healthy,
                ))
                .tasks(running(
                    "t-new-1",
                    "ecs-svc/2",
                    NEW_TD,
                    HealthStatus::Healthy,
                ))
                .tasks(running(
                    "t-new-2",
                    "ecs-svc/2",
                    NEW_TD,
                    HealthStatus::Healthy,
                ))
                .build()
        }),
        mock!(Ecs::register_task_definition).then_output(|| {
            RegisterTaskDefinitionOutput::builder()
                .task_definition(
                    TaskDefinition::builder()
                        .task_definition_arn(NEW_TD)
                        .build(),
                )
                .build()
        }),
    ]
}

/// Issue 8, defect 1: with the product's default (rolling) strategy, a healthy ECS-controller
/// release of 2 tasks used to scale "the old fleet", which the backend took for a rollback:
/// StopServiceDeployment on a healthy rollout, UpdateService again, back and forth, RolledBack.
/// Now ECS runs the rollout: one UpdateService, gated until COMPLETED, and it succeeds.
#[tokio::test(start_paused = true)]
async fn the_default_strategy_releases_an_ecs_controller_service_with_one_update() {
    let phase = Arc::new(AtomicU8::new(0));
    let ecs = healthy_rollout(phase.clone(), Arc::new(AtomicU8::new(0)));
    let td = task_def_rule();
    let mut ecs_rules = refs(&ecs);
    ecs_rules.push(&td);
    let ecr = ecr_rules();
    let backend = scripted_with_ecr(vec![app_with(None)], &ecs_rules, &refs(&ecr), &[], &[]);
    let engine = tapitalee::engine()
        .deployer(Arc::new(backend.deployer()))
        .registry(Arc::new(backend.registry()))
        .health_gate(HealthGate {
            min_healthy_time: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            ..HealthGate::default()
        })
        .build()
        .unwrap();
    let record = engine
        .deploy(
            &AppName::new("myapp").unwrap(),
            DeployRequest::new()
                .docker_tag(DockerTag::new("v2").unwrap())
                .initiator(Initiator::new("test").unwrap()),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    let p = &record.processes[0];
    assert_eq!(
        p.status,
        ProcessStatus::Succeeded,
        "steps: {:?}",
        p.steps.iter().map(|s| &s.message).collect::<Vec<_>>()
    );
    assert_eq!(p.strategy, "rolling (run by the platform)");
    let calls = backend.api_calls();
    assert_eq!(calls.count("UpdateService"), 1, "{calls:?}");
    assert_eq!(calls.count("StopServiceDeployment"), 0, "{calls:?}");
    assert_eq!(phase.load(Ordering::SeqCst), 1);
}
