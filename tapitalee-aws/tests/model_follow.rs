//! Following the ECS deployment itself, on the ECS model (issue 8, defects 11 and 4, service
//! events): the deployment `UpdateService` started is the one followed, even while
//! `DescribeServices` still shows the service as it was; a PENDING deployment is stopped with
//! a rollback like an IN_PROGRESS one; ECS-native bakes longer than the engine's progress
//! deadline pass a good release; and what ECS said about a failed rollout (service events)
//! reaches the process's reason.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::model::{self, Behavior, Ctl, Env, Svc};
use tapitalee_aws::{AwsBackend, EcsStrategy};
use tapitalee_core::{
    DeployRequest, DeploymentRecord, DockerTag, Engine, Initiator, MemoryStore, ProcessStatus,
};
use tapitalee_strategies::Rolling;

fn ecs(app: &str, desired: u32) -> Svc {
    Svc {
        app: app.into(),
        controller: Ctl::Ecs,
        desired,
    }
}

async fn engine(env: &Env, apps: &[(&str, Option<EcsStrategy>)]) -> Engine {
    engine_with(env, apps, env.gate()).await
}

async fn engine_with(
    env: &Env,
    apps: &[(&str, Option<EcsStrategy>)],
    gate: tapitalee_core::HealthGate,
) -> Engine {
    let configs = apps.iter().map(|(a, s)| env.app(a, *s)).collect();
    let backend = AwsBackend::connect(env.config(configs)).await.unwrap();
    Engine::builder()
        .deployer(Arc::new(backend.deployer()))
        .registry(Arc::new(backend.registry()))
        .store(Arc::new(MemoryStore::new()))
        .default_strategy(Arc::new(Rolling::new()))
        .health_gate(gate)
        .concurrency(8)
        .build()
        .unwrap()
}

async fn deploy(engine: &Engine, env: &Env, app: &str, tag: &str) -> DeploymentRecord {
    let handle = engine
        .deploy(
            &env.app_name(app),
            DeployRequest::new()
                .docker_tag(DockerTag::new(tag).unwrap())
                .initiator(Initiator::new("follow").unwrap()),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), handle.wait())
        .await
        .unwrap_or_else(|_| panic!("{app}: the deployment did not end within 120 s"))
        .unwrap()
}

/// Waits for the service to settle, then checks that all `desired` tasks run `revision`.
async fn assert_runs(env: &Env, app: &str, desired: usize, revision: &str) {
    assert!(
        env.settle(app, Duration::from_secs(900)).await,
        "{app} never settled\n{}",
        env.model.describe(&env.cluster(), &env.service(app))
    );
    let running = env.running(app);
    assert!(
        running.len() == desired && running.iter().all(|td| td == revision),
        "{app}: want {desired} tasks on {revision}, got {running:?}\n{}",
        env.model.describe(&env.cluster(), &env.service(app))
    );
}

fn new_revision(record: &DeploymentRecord) -> String {
    record.processes[0].to.as_ref().unwrap().id.clone()
}

fn reason(record: &DeploymentRecord) -> String {
    match &record.processes[0].status {
        ProcessStatus::RolledBack { reason } => reason.clone(),
        other => panic!("expected a rollback, got {other}: {record:?}"),
    }
}

/// `DescribeServices` shows the old deployments for a minute after each `UpdateService`:
/// the backend follows the deployment the update started (not what a read shows), sends one
/// `UpdateService` per release, and rolls a bad release back with one
/// `StopServiceDeployment` of exactly that deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_started_deployment_is_followed_while_describe_services_lags() {
    let env = model::start_with("lag", &[ecs("good", 2), ecs("bad", 2)], |c| {
        c.timing.describe_lag = Duration::from_secs(60);
    })
    .await;
    let engine = engine(&env, &[("good", None), ("bad", None)]).await;

    env.model.reset_calls();
    let record = deploy(&engine, &env, "good", "good").await;
    assert_eq!(
        record.processes[0].status,
        ProcessStatus::Succeeded,
        "{record:#?}"
    );
    assert_runs(&env, "good", 2, &new_revision(&record)).await;
    let calls = env.model.calls().calls;
    assert_eq!(calls.get("UpdateService"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("StopServiceDeployment"), None, "{calls:?}");

    env.model.reset_calls();
    let record = deploy(&engine, &env, "bad", "crash").await;
    let why = reason(&record);
    assert_runs(&env, "bad", 2, &env.first_task_definition("bad")).await;
    let calls = env.model.calls().calls;
    assert_eq!(calls.get("UpdateService"), Some(&1), "{why}: {calls:?}");
    assert!(
        calls.get("StopServiceDeployment").is_none_or(|n| *n <= 1),
        "{why}: {calls:?}"
    );
}

/// A deployment still PENDING when the engine gives up on it (here: ECS takes 20 minutes to
/// start it, longer than the 10-minute progress deadline) is stopped with a rollback, not
/// replaced by a second `UpdateService`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_deployment_is_stopped_with_a_rollback() {
    let env = model::start_with("pnd", &[ecs("slow", 2)], |c| {
        c.timing.pending = Duration::from_secs(1200);
    })
    .await;
    let engine = engine(&env, &[("slow", None)]).await;
    env.model.reset_calls();
    let record = deploy(&engine, &env, "slow", "good").await;
    let why = reason(&record);
    assert_runs(&env, "slow", 2, &env.first_task_definition("slow")).await;
    let calls = env.model.calls().calls;
    assert_eq!(calls.get("UpdateService"), Some(&1), "{why}: {calls:?}");
    assert_eq!(
        calls.get("StopServiceDeployment"),
        Some(&1),
        "{why}: {calls:?}"
    );
}

/// ECS blue-green and canary with a 10-minute bake (as long as the engine's whole progress
/// deadline): a good release goes live, a crash-looping one rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_minute_native_bakes_pass_good_releases_and_catch_bad_ones() {
    let ten = Duration::from_secs(600);
    let blue_green = EcsStrategy::BlueGreen { bake_time: ten };
    let canary = EcsStrategy::Canary {
        canary_percent: 10.0,
        canary_bake_time: Duration::from_secs(300),
        bake_time: ten,
    };
    let apps = [
        ("bggood", blue_green, "good"),
        ("bgbad", blue_green, "crash"),
        ("cngood", canary, "good"),
        ("cnbad", canary, "sick"),
    ];
    let services: Vec<Svc> = apps.iter().map(|(a, _, _)| ecs(a, 2)).collect();
    let env = model::start("bake", &services).await;
    let engine = engine(
        &env,
        &apps
            .iter()
            .map(|(a, s, _)| (*a, Some(*s)))
            .collect::<Vec<_>>(),
    )
    .await;
    let records = futures::future::join_all(
        apps.iter()
            .map(|(app, _, tag)| deploy(&engine, &env, app, tag)),
    )
    .await;
    for ((app, _, tag), record) in apps.iter().zip(&records) {
        if *tag == "good" {
            assert_eq!(
                record.processes[0].status,
                ProcessStatus::Succeeded,
                "{app}: {record:#?}"
            );
            assert_runs(&env, app, 2, &new_revision(record)).await;
        } else {
            reason(record);
            assert_runs(&env, app, 2, &env.first_task_definition(app)).await;
        }
    }
}

/// The service itself is set up for ECS blue-green with a 15-minute bake (in its deployment
/// configuration, not through `ProcessConfig::ecs_strategy`): the bake still counts toward
/// the 10-minute progress deadline, so a good release goes live; a crash-looping one rolls
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bake_set_on_the_service_itself_counts_too() {
    let env = model::start("svc", &[ecs("good", 2), ecs("bad", 2)]).await;
    let ecs_client = aws_sdk_ecs::Client::from_conf(
        aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(aws_sdk_ecs::config::Region::new("us-east-1"))
            .endpoint_url(env.model.endpoint())
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .build(),
    );
    for app in ["good", "bad"] {
        ecs_client
            .update_service()
            .cluster(env.cluster())
            .service(env.service(app))
            .deployment_configuration(
                aws_sdk_ecs::types::DeploymentConfiguration::builder()
                    .strategy(aws_sdk_ecs::types::DeploymentStrategy::BlueGreen)
                    .bake_time_in_minutes(15)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let engine = engine(&env, &[("good", None), ("bad", None)]).await;
    let (good, bad) = tokio::join!(
        deploy(&engine, &env, "good", "good"),
        deploy(&engine, &env, "bad", "crash")
    );
    assert_eq!(
        good.processes[0].status,
        ProcessStatus::Succeeded,
        "{good:#?}\n{}",
        env.model.describe(&env.cluster(), &env.service("good"))
    );
    assert_runs(&env, "good", 2, &new_revision(&good)).await;
    reason(&bad);
    assert_runs(&env, "bad", 2, &env.first_task_definition("bad")).await;
}

/// ECS cannot place the new revision's tasks: the rollout fails at the progress deadline,
/// and the reason says what ECS said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_failure_is_named_in_the_reason() {
    let env = model::start("plc", &[ecs("full", 2)]).await;
    env.model.script(&env.digest("sick"), Behavior::Unplaceable);
    let engine = engine(&env, &[("full", None)]).await;
    let record = deploy(&engine, &env, "full", "sick").await;
    let why = reason(&record);
    assert!(why.contains("unable to place a task"), "{why}");
    assert_runs(&env, "full", 2, &env.first_task_definition("full")).await;
}

/// A circuit-breaker rollback: the reason carries the stopped tasks' reason and ECS's events.
/// (The engine's own failure threshold is raised so that ECS's breaker decides, not the
/// engine's count of the same failures.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_rollback_is_named_in_the_reason() {
    let env = model::start("cbr", &[ecs("crash", 4)]).await;
    let gate = tapitalee_core::HealthGate {
        failure_threshold: Some(50),
        ..env.gate()
    };
    let engine = engine_with(&env, &[("crash", None)], gate).await;
    let record = deploy(&engine, &env, "crash", "crash").await;
    let why = reason(&record);
    assert!(why.contains("Essential container in task exited"), "{why}");
    assert!(
        why.contains("ECS service events") && why.contains("circuit breaker"),
        "{why}"
    );
    assert_runs(&env, "crash", 4, &env.first_task_definition("crash")).await;
}

/// A launch repeated for the same release (as after a crash between the `UpdateService` and
/// the record of it) follows the deployment the first one started: no second
/// `UpdateService`, the same fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_launch_follows_the_first_deployment() {
    use tapitalee_core::{DeployContext, Deployer, DeploymentId, ImageRegistry, Target};
    let env = model::start("rep", &[ecs("again", 2)]).await;
    let backend = AwsBackend::connect(env.config(vec![env.app("again", None)]))
        .await
        .unwrap();
    let (deployer, registry) = (backend.deployer(), backend.registry());
    let target = Target::new(env.app_name("again"), env.process("again"));
    let ctx = DeployContext::new(
        DeploymentId::new(),
        Initiator::new("follow").unwrap(),
        target,
    );
    let stable = deployer.current(&ctx).await.unwrap().fleet;
    let ctx = ctx.with_stable(stable);
    let image = registry
        .resolve(&env.app_name("again"), &DockerTag::new("good").unwrap())
        .await
        .unwrap();
    let revision = deployer.prepare(&ctx, &image).await.unwrap();
    env.model.reset_calls();
    let first = deployer.launch(&ctx, &revision, 2).await.unwrap();
    let second = deployer.launch(&ctx, &revision, 2).await.unwrap();
    assert!(first.id.0.starts_with("ecs-svc/"), "{first:?}");
    assert_eq!(first.id, second.id);
    let calls = env.model.calls().calls;
    assert_eq!(calls.get("UpdateService"), Some(&1), "{calls:?}");
    assert_runs(&env, "again", 2, &revision.id).await;
}
