//! Engine behaviour on the in-memory platform, on tokio's paused clock: independence of
//! processes, partial success, per-process rollback, all-or-nothing, locks, gates, abort,
//! history, and refusal of bad input before anything changes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tapitalee::testkit::{AllAtOnce, Behavior, Fault, InMemoryPlatform, Op};
use tapitalee::*;
use tokio::time::Instant;

struct Fixture {
    platform: InMemoryPlatform,
    app: AppName,
}

/// An app with a web process (3, load-balanced), a worker (2) and a scheduler (1), all
/// running `v1`, and a healthy `v2` pushed.
fn fixture() -> Fixture {
    let platform = InMemoryPlatform::new();
    let app = platform.add_app(
        "shop",
        &[
            ("default", 3, true),
            ("worker", 2, false),
            ("scheduler", 1, false),
        ],
    );
    platform.push_image(&app, "v1", Behavior::healthy());
    platform.seed_release(&app, "v1");
    platform.push_image(&app, "v2", Behavior::healthy());
    Fixture { platform, app }
}

impl Fixture {
    fn engine(&self) -> EngineBuilder {
        Engine::builder()
            .deployer(Arc::new(self.platform.clone()))
            .registry(Arc::new(self.platform.clone()))
            .default_strategy(Arc::new(AllAtOnce))
    }

    fn tags(&self) -> Vec<(String, String)> {
        ["default", "worker", "scheduler"]
            .iter()
            .map(|p| {
                let tag = self.platform.live_tag(&self.app, p).map(|t| t.to_string());
                (p.to_string(), tag.unwrap_or_default())
            })
            .collect()
    }

    fn assert_tags(&self, expected: &[(&str, &str)]) {
        let tags = self.tags();
        for (p, t) in expected {
            let got = tags
                .iter()
                .find(|(name, _)| name == p)
                .map(|(_, t)| t.as_str());
            assert_eq!(got, Some(*t), "process {p} should run {t}; all: {tags:?}");
        }
    }

    /// Every process runs exactly one fleet, at its desired size, taking all traffic.
    fn assert_settled(&self) {
        for (p, desired) in [("default", 3), ("worker", 2), ("scheduler", 1)] {
            let fleets = self.platform.fleets(&self.app, p);
            assert_eq!(
                fleets.len(),
                1,
                "process {p} should run one fleet: {fleets:?}"
            );
            assert_eq!(fleets[0].desired, desired, "process {p}: {fleets:?}");
            assert_eq!(fleets[0].running, desired, "process {p}: {fleets:?}");
        }
        let traffic = self.platform.traffic(&self.app, "default");
        assert_eq!(traffic.len(), 1, "{traffic:?}");
        assert_eq!(traffic[0].percent, 100);
    }
}

/// Deploys and waits for the outcome.
async fn deploy_and_wait(
    engine: &Engine,
    app: &AppName,
    request: DeployRequest,
) -> DeploymentRecord {
    engine
        .deploy(app, request)
        .await
        .expect("the request is accepted")
        .wait()
        .await
        .expect("the deployment runs to its end")
}

fn tag(t: &str) -> DockerTag {
    t.parse().expect("tag")
}

fn status_of<'a>(record: &'a DeploymentRecord, process: &str) -> &'a ProcessStatus {
    &record
        .processes
        .iter()
        .find(|p| p.process.as_str() == process)
        .expect("process in record")
        .status
}

#[tokio::test(start_paused = true)]
async fn whole_app_deploy_succeeds_and_retires_old_fleets() {
    let fx = fixture();
    let engine = fx.engine().build().unwrap();
    let request = DeployRequest::new()
        .docker_tag(tag("v2"))
        .initiator("john.doe".parse().unwrap());
    let record = deploy_and_wait(&engine, &fx.app, request).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    assert_eq!(record.processes.len(), 3);
    assert!(
        record
            .processes
            .iter()
            .all(|p| p.status == ProcessStatus::Succeeded)
    );
    fx.assert_tags(&[("default", "v2"), ("worker", "v2"), ("scheduler", "v2")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn failing_process_rolls_back_alone_leaving_mixed_versions() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "worker",
        Behavior::crash_loop(Duration::from_secs(3)),
    );
    let engine = fx.engine().build().unwrap();
    let record =
        deploy_and_wait(&engine, &fx.app, DeployRequest::new().docker_tag(tag("v2"))).await;
    assert_eq!(record.status, DeploymentStatus::Partial);
    assert_eq!(status_of(&record, "default"), &ProcessStatus::Succeeded);
    assert_eq!(status_of(&record, "scheduler"), &ProcessStatus::Succeeded);
    match status_of(&record, "worker") {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("instance failure"), "{reason}");
            assert!(reason.contains("exit code 1"), "{reason}");
        }
        other => panic!("worker should have rolled back, got {other}"),
    }
    fx.assert_tags(&[("default", "v2"), ("worker", "v1"), ("scheduler", "v2")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn all_or_nothing_rolls_back_the_successful_processes_too() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "worker",
        Behavior::crash_loop(Duration::from_secs(3)),
    );
    let engine = fx.engine().build().unwrap();
    let request = DeployRequest::new()
        .docker_tag(tag("v2"))
        .rollback_policy(RollbackPolicy::AllOrNothing);
    let record = deploy_and_wait(&engine, &fx.app, request).await;
    assert_eq!(record.status, DeploymentStatus::Failed);
    for p in ["default", "scheduler"] {
        match status_of(&record, p) {
            ProcessStatus::RolledBack { reason } => {
                assert!(
                    reason.contains("all-or-nothing") && reason.contains("worker"),
                    "{reason}"
                )
            }
            other => panic!("{p} should have rolled back, got {other}"),
        }
    }
    fx.assert_tags(&[("default", "v1"), ("worker", "v1"), ("scheduler", "v1")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn all_or_nothing_finalizes_when_everything_succeeds() {
    let fx = fixture();
    let engine = fx.engine().build().unwrap();
    let request = DeployRequest::new()
        .docker_tag(tag("v2"))
        .rollback_policy(RollbackPolicy::AllOrNothing);
    let record = deploy_and_wait(&engine, &fx.app, request).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    fx.assert_tags(&[("default", "v2"), ("worker", "v2"), ("scheduler", "v2")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn a_slow_process_does_not_hold_back_the_others() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "default",
        Behavior::healthy().start_delay(Duration::from_secs(120)),
    );
    let engine = fx.engine().build().unwrap();
    let mut handle = engine
        .deploy(&fx.app, DeployRequest::new().docker_tag(tag("v2")))
        .await
        .unwrap();
    let events = handle.events();
    let record = handle.wait().await.unwrap();
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    let finished: Vec<String> = events
        .filter_map(|e| async move {
            matches!(e.kind, EventKind::ProcessFinished { .. })
                .then(|| e.process.map(|p| p.to_string()).unwrap_or_default())
        })
        .collect()
        .await;
    assert_eq!(
        finished.last().map(String::as_str),
        Some("default"),
        "{finished:?}"
    );
    assert_eq!(finished.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn crash_loop_fails_fast_not_at_the_deadline() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "scheduler",
        Behavior::crash_loop(Duration::from_secs(2)),
    );
    let engine = fx.engine().build().unwrap();
    let started = Instant::now();
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("scheduler".parse().unwrap()),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(record.status, DeploymentStatus::Failed);
    assert!(
        took < Duration::from_secs(60),
        "a crash loop must trip the failure threshold quickly, took {took:?}"
    );
    match status_of(&record, "scheduler") {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("threshold of 3"), "{reason}")
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn failure_threshold_is_configurable() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "scheduler",
        Behavior::crash_loop(Duration::from_secs(2)),
    );
    let gate = HealthGate {
        failure_threshold: Some(6),
        ..HealthGate::default()
    };
    let engine = fx.engine().health_gate(gate).build().unwrap();
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("scheduler".parse().unwrap()),
    )
    .await;
    match status_of(&record, "scheduler") {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("threshold of 6"), "{reason}")
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn never_healthy_fleet_hits_the_progress_deadline() {
    let fx = fixture();
    fx.platform
        .set_behavior(&fx.app, "v2", "worker", Behavior::never_healthy());
    let gate = HealthGate {
        progress_deadline: Duration::from_secs(90),
        ..HealthGate::default()
    };
    let engine = fx.engine().health_gate(gate).build().unwrap();
    let started = Instant::now();
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("worker".parse().unwrap()),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(90) && took < Duration::from_secs(120),
        "{took:?}"
    );
    match status_of(&record, "worker") {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("no progress within 1m 30s"), "{reason}");
            assert!(reason.contains("fails its health check"), "{reason}");
        }
        other => panic!("{other}"),
    }
    fx.assert_tags(&[("worker", "v1")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn flapping_health_never_satisfies_the_minimum_healthy_time() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "worker",
        Behavior::flapping(Duration::from_secs(4)),
    );
    let gate = HealthGate {
        progress_deadline: Duration::from_secs(60),
        ..HealthGate::default()
    };
    let engine = fx.engine().health_gate(gate).build().unwrap();
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("worker".parse().unwrap()),
    )
    .await;
    assert!(
        matches!(
            status_of(&record, "worker"),
            ProcessStatus::RolledBack { .. }
        ),
        "{record:?}"
    );
    fx.assert_tags(&[("worker", "v1")]);
}

#[tokio::test(start_paused = true)]
async fn load_balancer_health_is_part_of_the_gate() {
    let fx = fixture();
    fx.platform
        .set_behavior(&fx.app, "v2", "default", Behavior::lb_unhealthy());
    let probe = ContainerHealth.and(fx.platform.clone());
    let gate = HealthGate {
        progress_deadline: Duration::from_secs(60),
        ..HealthGate::default()
    };
    let engine = fx
        .engine()
        .probe(Arc::new(probe))
        .health_gate(gate)
        .build()
        .unwrap();
    let record =
        deploy_and_wait(&engine, &fx.app, DeployRequest::new().docker_tag(tag("v2"))).await;
    assert_eq!(record.status, DeploymentStatus::Partial);
    match status_of(&record, "default") {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("load balancer health check"), "{reason}")
        }
        other => panic!("{other}"),
    }
    fx.assert_tags(&[("default", "v1"), ("worker", "v2")]);
}

/// The refusal names the holder's deployment id, initiator and start time, from every store.
async fn a_locked_process_is_refused_naming_the_holder_on(store: DynDeploymentStore) {
    let fx = fixture();
    let engine = fx.engine().store(store).build().unwrap();
    let before = std::time::SystemTime::now();
    let first = engine
        .deploy(
            &fx.app,
            DeployRequest::new()
                .docker_tag(tag("v2"))
                .initiator("alice@ci".parse().unwrap()),
        )
        .await
        .unwrap();
    let started = engine.get(&first.id()).await.unwrap().created_at;
    assert!(started >= before - Duration::from_secs(1));
    let second = engine
        .deploy(
            &fx.app,
            DeployRequest::new()
                .docker_tag(tag("v1"))
                .initiator("bob".parse().unwrap())
                .process("worker".parse().unwrap()),
        )
        .await;
    match second {
        Err(e @ Error::Locked { .. }) => {
            let message = e.to_string();
            let Error::Locked {
                process,
                holder,
                initiator,
                started_at,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(process, "worker");
            assert_eq!(holder, first.id());
            assert_eq!(initiator.as_deref(), Some("alice@ci"));
            assert_eq!(started_at, Some(started));
            assert!(message.contains(&first.id().to_string()), "{message}");
            assert!(message.contains("started by alice@ci at "), "{message}");
            let at = humantime::format_rfc3339_seconds(started).to_string();
            assert!(message.contains(&at), "{message}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // The refused request changed nothing and left no lock behind.
    let record = first.wait().await.unwrap();
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    fx.assert_tags(&[("worker", "v2")]);
    let again = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v1"))
            .process("worker".parse().unwrap()),
    )
    .await;
    assert_eq!(again.status, DeploymentStatus::Succeeded);
    fx.assert_tags(&[("worker", "v1"), ("default", "v2")]);
}

#[tokio::test(start_paused = true)]
async fn a_locked_process_is_refused_naming_the_holder_in_memory() {
    a_locked_process_is_refused_naming_the_holder_on(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(start_paused = true)]
async fn a_locked_process_is_refused_naming_the_holder_on_sqlite() {
    a_locked_process_is_refused_naming_the_holder_on(Arc::new(
        SqliteStore::open_in_memory().unwrap(),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_locked_process_can_be_waited_for_within_a_bound() {
    let fx = fixture();
    let engine = fx.engine().build().unwrap();
    let first = engine
        .deploy(&fx.app, DeployRequest::new().docker_tag(tag("v2")))
        .await
        .unwrap();
    let first_id = first.id();
    let waiter = {
        let engine = engine.clone();
        let app = fx.app.clone();
        tokio::spawn(async move {
            let request = DeployRequest::new()
                .docker_tag(tag("v1"))
                .process("worker".parse().unwrap())
                .lock_wait(Duration::from_secs(300));
            engine.deploy(&app, request).await?.wait().await
        })
    };
    let first = first.wait().await.unwrap();
    assert_eq!(first.status, DeploymentStatus::Succeeded);
    let second = waiter.await.unwrap().unwrap();
    assert_ne!(second.id, first_id);
    assert_eq!(second.status, DeploymentStatus::Succeeded);
    fx.assert_tags(&[("worker", "v1"), ("default", "v2")]);

    // A bounded wait that runs out is refused with the holder's id.
    let slow = engine
        .deploy(&fx.app, DeployRequest::new().docker_tag(tag("v2")))
        .await
        .unwrap();
    let request = DeployRequest::new()
        .docker_tag(tag("v1"))
        .process("worker".parse().unwrap())
        .lock_wait(Duration::from_secs(3));
    match engine.deploy(&fx.app, request).await {
        Err(Error::Locked { holder, .. }) => assert_eq!(holder, slow.id()),
        other => panic!("expected Locked, got {other:?}"),
    }
    slow.wait().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn abort_mid_way_rolls_every_process_back() {
    let fx = fixture();
    for p in ["default", "worker", "scheduler"] {
        fx.platform.set_behavior(
            &fx.app,
            "v2",
            p,
            Behavior::healthy().start_delay(Duration::from_secs(60)),
        );
    }
    let engine = fx.engine().build().unwrap();
    let handle = engine
        .deploy(&fx.app, DeployRequest::new().docker_tag(tag("v2")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        fx.platform.fleets(&fx.app, "worker").len(),
        2,
        "new fleet launched"
    );
    handle.abort("stop requested by john.doe");
    let record = handle.wait().await.unwrap();
    assert_eq!(record.status, DeploymentStatus::Failed);
    for p in &record.processes {
        match &p.status {
            ProcessStatus::RolledBack { reason } => {
                assert!(reason.contains("stop requested by john.doe"), "{reason}")
            }
            other => panic!("{}: {other}", p.process),
        }
    }
    fx.assert_tags(&[("default", "v1"), ("worker", "v1"), ("scheduler", "v1")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn abort_cancels_processes_not_started_yet() {
    let fx = fixture();
    let engine = fx.engine().concurrency(1).build().unwrap();
    let handle = engine
        .deploy(&fx.app, DeployRequest::new().docker_tag(tag("v2")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.abort("changed my mind");
    let record = handle.wait().await.unwrap();
    let not_started = record
        .processes
        .iter()
        .filter(|p| matches!(p.status, ProcessStatus::NotStarted { .. }))
        .count();
    assert_eq!(not_started, 2, "{record:?}");
    fx.assert_tags(&[("default", "v1"), ("worker", "v1"), ("scheduler", "v1")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let fx = fixture();
    let engine = fx.engine().concurrency(1).build().unwrap();
    deploy_and_wait(&engine, &fx.app, DeployRequest::new().docker_tag(tag("v2"))).await;
    let launches: Vec<Instant> = fx
        .platform
        .calls()
        .into_iter()
        .filter(|c| c.op == Op::Launch)
        .map(|c| c.at)
        .collect();
    assert_eq!(launches.len(), 3);
    for pair in launches.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_secs(15),
            "with concurrency 1 a process starts after the previous one ends"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn pause_holds_every_process_until_promote() {
    let fx = fixture();
    let engine = fx.engine().build().unwrap();
    let handle = engine
        .deploy(&fx.app, DeployRequest::new().docker_tag(tag("v2")))
        .await
        .unwrap();
    handle.pause();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        !fx.platform.calls().iter().any(|c| c.op == Op::Launch),
        "paused before the first step: nothing launched"
    );
    handle.promote();
    let record = handle.wait().await.unwrap();
    assert_eq!(record.status, DeploymentStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn retryable_platform_errors_while_polling_are_ridden_out() {
    let fx = fixture();
    fx.platform
        .inject(Op::Status, Some("worker"), Fault::Throttle, 3);
    fx.platform
        .inject(Op::Status, Some("default"), Fault::Transient, 2);
    let engine = fx.engine().build().unwrap();
    let record =
        deploy_and_wait(&engine, &fx.app, DeployRequest::new().docker_tag(tag("v2"))).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_failed_platform_call_rolls_back_that_process_only() {
    let fx = fixture();
    fx.platform.inject(
        Op::Route,
        Some("default"),
        Fault::Fail("listener rule limit reached".into()),
        1,
    );
    let engine = fx.engine().build().unwrap();
    let record =
        deploy_and_wait(&engine, &fx.app, DeployRequest::new().docker_tag(tag("v2"))).await;
    assert_eq!(record.status, DeploymentStatus::Partial);
    match status_of(&record, "default") {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("listener rule limit reached"), "{reason}")
        }
        other => panic!("{other}"),
    }
    fx.assert_tags(&[("default", "v1"), ("worker", "v2"), ("scheduler", "v2")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn a_failed_prepare_leaves_the_process_untouched() {
    let fx = fixture();
    fx.platform.inject(
        Op::Prepare,
        Some("worker"),
        Fault::Fail("task definition limit".into()),
        1,
    );
    let engine = fx.engine().build().unwrap();
    let record =
        deploy_and_wait(&engine, &fx.app, DeployRequest::new().docker_tag(tag("v2"))).await;
    match status_of(&record, "worker") {
        ProcessStatus::NotStarted { reason } => {
            assert!(reason.contains("task definition limit"), "{reason}")
        }
        other => panic!("{other}"),
    }
    assert_eq!(record.status, DeploymentStatus::Partial);
    assert!(
        !fx.platform
            .calls_for("worker")
            .iter()
            .any(|c| c.op == Op::Launch)
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_failure_is_reported_as_such() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "worker",
        Behavior::crash_loop(Duration::from_secs(3)),
    );
    fx.platform.inject(
        Op::Retire,
        Some("worker"),
        Fault::Fail("access denied".into()),
        // More than the rollback's retries: the platform keeps refusing.
        10,
    );
    let engine = fx.engine().build().unwrap();
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("worker".parse().unwrap()),
    )
    .await;
    match status_of(&record, "worker") {
        ProcessStatus::RollbackFailed { reason } => {
            assert!(
                reason.contains("instance failure") && reason.contains("access denied"),
                "{reason}"
            )
        }
        other => panic!("{other}"),
    }
    // The old version still serves: its capacity was restored before the retire failed.
    fx.assert_tags(&[("worker", "v1")]);
}

#[tokio::test(start_paused = true)]
async fn first_deploy_of_a_process_without_a_release() {
    let platform = InMemoryPlatform::new();
    let app = platform.add_app("fresh", &[("default", 2, true), ("worker", 1, false)]);
    platform.push_image(&app, "v1", Behavior::healthy());
    let engine = Engine::builder()
        .deployer(Arc::new(platform.clone()))
        .registry(Arc::new(platform.clone()))
        .default_strategy(Arc::new(AllAtOnce))
        .build()
        .unwrap();
    let record = deploy_and_wait(&engine, &app, DeployRequest::new().docker_tag(tag("v1"))).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    assert_eq!(platform.live_tag(&app, "default").unwrap().as_str(), "v1");
    assert_eq!(platform.fleets(&app, "default")[0].running, 2);
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_refused_before_anything_changes() {
    let fx = fixture();
    let engine = fx.engine().build().unwrap();

    match engine
        .deploy(
            &fx.app,
            DeployRequest::new().process("wrker".parse().unwrap()),
        )
        .await
    {
        Err(
            e @ Error::NotFound {
                resource: Resource::Process,
                ..
            },
        ) => {
            let m = e.to_string();
            assert!(
                m.contains("\"wrker\"") && m.contains("default, scheduler, worker"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }

    match engine
        .deploy(&fx.app, DeployRequest::new().docker_tag(tag("v9")))
        .await
    {
        Err(
            e @ Error::NotFound {
                resource: Resource::Image,
                ..
            },
        ) => {
            let m = e.to_string();
            assert!(m.contains("v9") && m.contains("recent tags"), "{m}");
            assert!(
                !m.contains("tapit"),
                "library errors leave CLI hints to the CLI: {m}"
            );
        }
        other => panic!("{other:?}"),
    }

    let ghost = AppName::new("ghost").unwrap();
    assert!(matches!(
        engine.deploy(&ghost, DeployRequest::new()).await,
        Err(Error::NotFound {
            resource: Resource::App,
            ..
        })
    ));

    let strategy_for_unknown = DeployRequest::new()
        .docker_tag(tag("v2"))
        .strategy_for("web".parse().unwrap(), Arc::new(AllAtOnce));
    assert!(matches!(
        engine.deploy(&fx.app, strategy_for_unknown).await,
        Err(Error::NotFound {
            resource: Resource::Process,
            ..
        })
    ));

    // `latest` is the default tag, and it was never pushed.
    assert!(matches!(
        engine.deploy(&fx.app, DeployRequest::new()).await,
        Err(Error::NotFound {
            resource: Resource::Image,
            ..
        })
    ));

    #[derive(Debug)]
    struct NeedsLoadBalancer;
    #[async_trait::async_trait]
    impl Strategy for NeedsLoadBalancer {
        fn name(&self) -> &str {
            "needs-lb"
        }
        fn validate(&self, process: &ProcessSpec) -> Result<()> {
            if process.load_balanced {
                Ok(())
            } else {
                Err(Error::invalid(
                    "strategy",
                    "needs-lb",
                    format!("process {} has no load balancer", process.name),
                ))
            }
        }
        async fn run(&self, _: &mut Rollout) -> Result<()> {
            unreachable!("refused before running")
        }
    }
    let refused = engine
        .deploy(
            &fx.app,
            DeployRequest::new()
                .docker_tag(tag("v2"))
                .strategy(Arc::new(NeedsLoadBalancer)),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidInput { .. })),
        "{refused:?}"
    );

    let changes = fx
        .platform
        .calls()
        .into_iter()
        .filter(|c| !matches!(c.op, Op::Processes | Op::Resolve))
        .count();
    assert_eq!(changes, 0, "refused requests must not touch the platform");
    assert!(
        engine.list(&fx.app, 10).await.unwrap().is_empty(),
        "nor the history"
    );

    assert!("v1 2".parse::<DockerTag>().is_err());
    assert!("John\nDoe".parse::<Initiator>().is_err());
    assert!(matches!(
        Engine::builder().build(),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        fx.engine().concurrency(0).build(),
        Err(Error::InvalidInput { .. })
    ));
    for gate in [
        HealthGate {
            poll_interval: Duration::ZERO,
            ..HealthGate::default()
        },
        HealthGate {
            progress_deadline: Duration::ZERO,
            ..HealthGate::default()
        },
        HealthGate {
            failure_threshold: Some(0),
            ..HealthGate::default()
        },
    ] {
        match fx.engine().health_gate(gate.clone()).build() {
            Err(e @ Error::InvalidInput { .. }) => {
                assert!(e.to_string().contains("health gate"), "{e}")
            }
            other => panic!("{gate:?} must be refused, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn history_records_every_step_with_audit_fields() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "worker",
        Behavior::crash_loop(Duration::from_secs(3)),
    );
    let engine = fx.engine().build().unwrap();
    let request = DeployRequest::new()
        .docker_tag(tag("v2"))
        .initiator("github-actions".parse().unwrap());
    let handle = engine.deploy(&fx.app, request).await.unwrap();
    let id = handle.id();
    handle.wait().await.unwrap();

    let latest = engine.latest(&fx.app).await.unwrap().expect("a deployment");
    assert_eq!(latest.id, id);
    assert_eq!(latest.initiator.as_str(), "github-actions");
    assert_eq!(latest.image.tag.as_str(), "v2");
    assert!(latest.image.digest.is_some());
    assert_eq!(latest.status, DeploymentStatus::Partial);
    assert!(latest.finished_at.is_some());
    let worker = latest.process(&"worker".parse().unwrap()).unwrap();
    assert!(worker.from.is_some() && worker.to.is_some());
    assert!(worker.started_at.is_some() && worker.finished_at.is_some());
    let messages: Vec<&str> = worker.steps.iter().map(|s| s.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.starts_with("launched new fleet")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("rolling back")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("retired new fleet")),
        "{messages:?}"
    );
    assert!(
        latest
            .steps
            .iter()
            .any(|s| s.message.starts_with("deploying"))
    );
    let list = engine.list(&fx.app, 10).await.unwrap();
    assert_eq!(list.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn platform_run_rollback_retires_the_new_fleet_first() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "worker",
        Behavior::crash_loop(Duration::from_secs(3)),
    );
    fx.platform
        .set_platform_rollout(&fx.app, "worker", RolloutKind::Rolling);
    let engine = fx.engine().build().unwrap();
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("worker".parse().unwrap()),
    )
    .await;
    assert!(matches!(
        status_of(&record, "worker"),
        ProcessStatus::RolledBack { .. }
    ));
    let calls = fx.platform.calls_for("worker");
    assert!(
        !calls.iter().any(|c| c.op == Op::Scale),
        "fleets of a platform-run process are never scaled: {calls:?}"
    );
    let retire = calls
        .iter()
        .position(|c| c.op == Op::Retire)
        .expect("retired");
    let last_status = calls
        .iter()
        .rposition(|c| c.op == Op::Status)
        .expect("polled");
    assert!(
        retire < last_status,
        "the old fleet is awaited after the new one is retired: {calls:?}"
    );
    fx.assert_tags(&[("worker", "v1")]);
    fx.assert_settled();
}

/// The defect the AWS backend had: the default (rolling) strategy scaled the old fleet of a
/// service whose platform runs the rollout, which the platform took as a rollback. Now the
/// platform's own rollout runs, once, under the engine's gates: a healthy release of 2+
/// instances succeeds without a single scale call.
#[tokio::test(start_paused = true)]
async fn the_default_strategy_on_a_platform_run_process_launches_once_and_succeeds() {
    for desired in [1, 2, 4, 10] {
        let platform = InMemoryPlatform::new();
        let app = platform.add_app("svc", &[("worker", desired, false)]);
        platform.push_image(&app, "v1", Behavior::healthy());
        platform.seed_release(&app, "v1");
        platform.push_image(&app, "v2", Behavior::healthy());
        platform.set_platform_rollout(&app, "worker", RolloutKind::Rolling);
        let engine = tapitalee::engine()
            .deployer(Arc::new(platform.clone()))
            .registry(Arc::new(platform.clone()))
            .build()
            .unwrap();
        let record =
            deploy_and_wait(&engine, &app, DeployRequest::new().docker_tag(tag("v2"))).await;
        assert_eq!(
            record.status,
            DeploymentStatus::Succeeded,
            "{desired} instances"
        );
        let worker = &record.processes[0];
        assert_eq!(worker.strategy, "rolling (run by the platform)");
        let calls = platform.calls_for("worker");
        assert_eq!(calls.iter().filter(|c| c.op == Op::Launch).count(), 1);
        assert!(!calls.iter().any(|c| c.op == Op::Scale), "{calls:?}");
        assert_eq!(platform.live_tag(&app, "worker").unwrap().as_str(), "v2");
        let fleets = platform.fleets(&app, "worker");
        assert_eq!(fleets.len(), 1, "the old fleet is gone: {fleets:?}");
        assert_eq!(fleets[0].healthy, desired);
    }
}

#[tokio::test(start_paused = true)]
async fn a_strategy_needing_fleets_is_refused_on_a_platform_run_process_and_a_native_one_is_mapped()
{
    let fx = fixture();
    fx.platform
        .set_platform_rollout(&fx.app, "worker", RolloutKind::Rolling);
    let engine = tapitalee::engine()
        .deployer(Arc::new(fx.platform.clone()))
        .registry(Arc::new(fx.platform.clone()))
        .build()
        .unwrap();
    let canary = strategies::Canary::builder().set_scale(1).build().unwrap();
    let e = engine
        .deploy(
            &fx.app,
            DeployRequest::new()
                .docker_tag(tag("v2"))
                .strategy_for("worker".parse().unwrap(), Arc::new(canary)),
        )
        .await
        .unwrap_err();
    let shown = e.to_string();
    assert!(matches!(e, Error::InvalidInput { .. }), "{shown}");
    assert!(
        shown.contains("worker")
            && shown.contains("canary")
            && shown.contains("without a strategy"),
        "{shown}"
    );
    assert!(
        fx.platform.calls().iter().all(|c| c.op == Op::Processes),
        "refused before anything changed"
    );
    // Rolling is what the platform runs: mapped onto its rollout.
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("worker".parse().unwrap())
            .strategy(Arc::new(strategies::Rolling::new())),
    )
    .await;
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    assert_eq!(
        record.processes[0].strategy,
        "rolling (run by the platform)"
    );
}

/// The engine's default gate includes the platform's load balancer target health: an image
/// whose containers run but fail the load balancer's health check never takes all traffic.
#[tokio::test(start_paused = true)]
async fn the_default_gate_includes_load_balancer_target_health() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "default",
        Behavior {
            lb_healthy: false,
            ..Behavior::healthy()
        },
    );
    let engine = fx
        .engine()
        .health_gate(HealthGate {
            progress_deadline: Duration::from_secs(60),
            ..HealthGate::default()
        })
        .build()
        .unwrap();
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("default".parse().unwrap()),
    )
    .await;
    match status_of(&record, "default") {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("load balancer health check"), "{reason}")
        }
        other => panic!("expected a rollback, got {other}"),
    }
    fx.assert_tags(&[("default", "v1")]);
    let traffic = fx.platform.traffic(&fx.app, "default");
    assert_eq!(traffic.len(), 1, "{traffic:?}");
    assert_eq!(traffic[0].percent, 100);
}

/// An early promote (before any gate) counts for every process, also those that start later:
/// with one process at a time, both pass their manual gate.
#[tokio::test(start_paused = true)]
async fn an_early_promote_releases_the_first_gate_of_every_process() {
    let fx = fixture();
    let engine = fx.engine().concurrency(1).build().unwrap();
    let bg = strategies::BlueGreen::builder()
        .auto_promote(false)
        .build()
        .unwrap();
    let handle = engine
        .deploy(
            &fx.app,
            DeployRequest::new()
                .docker_tag(tag("v2"))
                .strategy(Arc::new(bg)),
        )
        .await
        .unwrap();
    handle.promote();
    let record = tokio::time::timeout(Duration::from_secs(3600), handle.wait())
        .await
        .expect("no process waits forever for a promote it was given")
        .unwrap();
    assert_eq!(record.status, DeploymentStatus::Succeeded, "{record:?}");
}

/// Locks are released in the same store write as the final status: a deployer that sees the
/// previous deployment finished can deploy at once, every time.
#[tokio::test(start_paused = true)]
async fn a_finished_deployment_holds_no_lock() {
    let fx = fixture();
    // SQLite: its calls yield, so a reader can run between two writes of the deployer.
    let engine = fx
        .engine()
        .store(Arc::new(SqliteStore::open_in_memory().unwrap()))
        .build()
        .unwrap();
    for round in 0..20 {
        let tag_name = if round % 2 == 0 { "v2" } else { "v1" };
        let mut handle = engine
            .deploy(&fx.app, DeployRequest::new().docker_tag(tag(tag_name)))
            .await
            .unwrap();
        let id = handle.id();
        let mut events = handle.events();
        let mut finished = 0;
        while finished < 3 {
            let e = events.next().await.expect("events until the end");
            if matches!(e.kind, EventKind::ProcessFinished { .. }) {
                finished += 1;
            }
        }
        // Every process is done: poll the history as a second deployer would, as fast as it
        // can, until the deployment reads final.
        loop {
            let rec = engine.get(&id).await.unwrap();
            if rec.status.is_final() {
                break;
            }
            tokio::task::yield_now().await;
        }
        for p in ["default", "worker", "scheduler"] {
            let t = Target::new(fx.app.clone(), p.parse().unwrap());
            assert_eq!(
                engine.store().lock_holder(&t).await.unwrap(),
                None,
                "round {round}: {p} still locked after the final status"
            );
        }
        drop(handle);
    }
}

/// While rolling back, one throttled platform call is sent a bounded number of times: the
/// engine's persevering policy (3 sends), not retries stacked in several places.
#[tokio::test(start_paused = true)]
async fn a_throttled_rollback_call_is_sent_a_bounded_number_of_times() {
    let fx = fixture();
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "worker",
        Behavior::crash_loop(Duration::from_secs(3)),
    );
    fx.platform
        .inject(Op::Retire, Some("worker"), Fault::Throttle, u32::MAX);
    let engine = fx.engine().build().unwrap();
    let record = deploy_and_wait(
        &engine,
        &fx.app,
        DeployRequest::new()
            .docker_tag(tag("v2"))
            .process("worker".parse().unwrap()),
    )
    .await;
    assert!(matches!(
        status_of(&record, "worker"),
        ProcessStatus::RollbackFailed { .. }
    ));
    let retires = fx
        .platform
        .calls_for("worker")
        .iter()
        .filter(|c| c.op == Op::Retire)
        .count();
    assert_eq!(
        retires,
        RetryPolicy::persevere().max_attempts as usize,
        "one retire call, sent at most the policy's attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_strategy_is_rolled_back_from_its_recorded_state() {
    #[derive(Debug)]
    struct Panics;
    #[async_trait::async_trait]
    impl Strategy for Panics {
        fn name(&self) -> &str {
            "panics"
        }
        async fn run(&self, rollout: &mut Rollout) -> Result<()> {
            let desired = rollout.desired();
            rollout.launch(desired).await?;
            rollout.wait_candidate_healthy(desired).await?;
            if rollout.load_balanced() {
                rollout.route(50).await?;
            }
            rollout.scale_stable(1).await?;
            panic!("bug in a user strategy");
        }
    }
    let fx = fixture();
    let engine = fx.engine().build().unwrap();
    let request = DeployRequest::new()
        .docker_tag(tag("v2"))
        .strategy_for("default".parse().unwrap(), Arc::new(Panics));
    let record = deploy_and_wait(&engine, &fx.app, request).await;
    assert_eq!(record.status, DeploymentStatus::Partial);
    match status_of(&record, "default") {
        ProcessStatus::RolledBack { reason } => {
            assert!(
                reason.contains("panicked: bug in a user strategy"),
                "{reason}"
            )
        }
        other => panic!("{other}"),
    }
    fx.assert_tags(&[("default", "v1"), ("worker", "v2"), ("scheduler", "v2")]);
    fx.assert_settled();
    let stored = engine.get(&record.id).await.unwrap();
    assert!(matches!(
        stored.process(&"default".parse().unwrap()).unwrap().status,
        ProcessStatus::RolledBack { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_paused_rollout_still_watches_its_new_fleet() {
    #[derive(Debug)]
    struct LaunchThenWaitForPromotion;
    #[async_trait::async_trait]
    impl Strategy for LaunchThenWaitForPromotion {
        fn name(&self) -> &str {
            "launch-then-wait"
        }
        async fn run(&self, rollout: &mut Rollout) -> Result<()> {
            let desired = rollout.desired();
            rollout.launch(desired).await?;
            rollout.wait_candidate_healthy(desired).await?;
            rollout.pause(None, "waiting for a human").await?;
            unreachable!("nobody promotes; the crash loop must end the pause")
        }
    }
    let fx = fixture();
    // Healthy long enough to pass the gate (5 s start + 10 s minimum), then crash-looping.
    fx.platform.set_behavior(
        &fx.app,
        "v2",
        "worker",
        Behavior::crash_loop(Duration::from_secs(30)),
    );
    let engine = fx.engine().build().unwrap();
    let request = DeployRequest::new()
        .docker_tag(tag("v2"))
        .process("worker".parse().unwrap())
        .strategy(Arc::new(LaunchThenWaitForPromotion));
    let started = Instant::now();
    let record = deploy_and_wait(&engine, &fx.app, request).await;
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "{:?}",
        started.elapsed()
    );
    match status_of(&record, "worker") {
        ProcessStatus::RolledBack { reason } => {
            assert!(
                reason.contains("after the new fleet passed its health gate"),
                "{reason}"
            )
        }
        other => panic!("{other}"),
    }
    fx.assert_tags(&[("worker", "v1")]);
    fx.assert_settled();
}

#[tokio::test(start_paused = true)]
async fn the_facade_engine_rolls_by_default() {
    let fx = fixture();
    let engine = tapitalee::engine()
        .deployer(Arc::new(fx.platform.clone()))
        .registry(Arc::new(fx.platform.clone()))
        .build()
        .unwrap();
    let record =
        deploy_and_wait(&engine, &fx.app, DeployRequest::new().docker_tag(tag("v2"))).await;
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    assert!(
        record.processes.iter().all(|p| p.strategy == "rolling"),
        "{record:?}"
    );
    fx.assert_settled();
}

/// A platform's rollout that bakes on purpose shows no progress meanwhile (ECS: healthy stays
/// below the desired count until COMPLETED). The configured bake is not counted against the
/// progress deadline: a 12-minute wait passes with a 15-minute bake declared, and fails the
/// 10-minute deadline without one.
#[tokio::test(start_paused = true)]
async fn a_platform_bake_extends_the_progress_deadline() {
    for (bake, succeeds) in [
        (Duration::from_secs(15 * 60), true),
        (Duration::ZERO, false),
    ] {
        let platform = InMemoryPlatform::new();
        let app = platform.add_app("svc", &[("worker", 2, false)]);
        platform.push_image(&app, "v1", Behavior::healthy());
        platform.seed_release(&app, "v1");
        platform.push_image(
            &app,
            "v2",
            Behavior::healthy().start_delay(Duration::from_secs(12 * 60)),
        );
        platform.set_platform_rollout_with_bake(&app, "worker", RolloutKind::BlueGreen, bake);
        let engine = tapitalee::engine()
            .deployer(Arc::new(platform.clone()))
            .registry(Arc::new(platform.clone()))
            .build()
            .unwrap();
        let record =
            deploy_and_wait(&engine, &app, DeployRequest::new().docker_tag(tag("v2"))).await;
        let worker = &record.processes[0];
        if succeeds {
            assert_eq!(worker.status, ProcessStatus::Succeeded, "bake {bake:?}");
        } else {
            match &worker.status {
                ProcessStatus::RolledBack { reason } => {
                    assert!(reason.contains("no progress within 10m"), "{reason}")
                }
                other => panic!("expected a rollback on the deadline, got {other}"),
            }
        }
    }
}

/// A platform that makes a change and then loses the answer (a connection reset after the
/// request was sent): the change took effect, the engine sees an error.
#[derive(Debug)]
struct AnswerLost {
    inner: InMemoryPlatform,
    op: Op,
}

impl AnswerLost {
    /// The change made, its answer lost.
    fn after(&self, made: Result<()>) -> Result<()> {
        made?;
        Err(Error::Transient {
            operation: format!("{:?}", self.op),
            source: "connection reset after the request was sent".into(),
        })
    }
}

#[async_trait::async_trait]
impl Deployer for AnswerLost {
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>> {
        self.inner.processes(app).await
    }
    async fn current(&self, ctx: &DeployContext) -> Result<Release> {
        self.inner.current(ctx).await
    }
    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision> {
        self.inner.prepare(ctx, image).await
    }
    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet> {
        self.inner.launch(ctx, revision, count).await
    }
    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()> {
        let made = self.inner.scale(ctx, fleet, count).await;
        let old = ctx.stable.as_ref().is_some_and(|s| s.id == fleet.id);
        if self.op == Op::Scale && old && count == 0 {
            return self.after(made);
        }
        made
    }
    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()> {
        let made = self.inner.route(ctx, weights).await;
        let to_new = weights
            .iter()
            .any(|w| w.percent == 100 && ctx.stable.as_ref().is_none_or(|s| s.id != w.fleet));
        if self.op == Op::Route && to_new {
            return self.after(made);
        }
        made
    }
    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        let made = self.inner.make_primary(ctx, fleet).await;
        let new = ctx.stable.as_ref().is_none_or(|s| s.id != fleet.id);
        if self.op == Op::MakePrimary && new {
            return self.after(made);
        }
        made
    }
    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        let new = ctx.stable.as_ref().is_none_or(|s| s.id != fleet.id);
        if self.op != Op::Retire || !new {
            return self.inner.retire(ctx, fleet).await;
        }
        // As ECS answers a DeleteTaskSet of a deleted task set: not found.
        let gone = self
            .inner
            .fleets(&ctx.target.app, ctx.target.process.as_str());
        if !gone.iter().any(|f| f.id == fleet.id) {
            return Err(Error::not_found(
                Resource::Fleet,
                fleet.id.to_string(),
                "retired",
            ));
        }
        let made = self.inner.retire(ctx, fleet).await;
        self.after(made)
    }
    async fn status(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus> {
        self.inner.status(ctx, fleet).await
    }
    async fn discover(&self, ctx: &DeployContext, revision: &Revision) -> Result<Option<Fleet>> {
        self.inner.discover(ctx, revision).await
    }
    fn target_health(&self) -> Option<DynHealthProbe> {
        self.inner.target_health()
    }
}

/// Deploys `v2` of the web process through a platform that loses the answer to `op`, and
/// checks the outcome: rolled back, every process on its old fleet at full size with all
/// traffic.
async fn rolled_back_despite_a_lost_answer(fx: &Fixture, op: Op) {
    let engine = Engine::builder()
        .deployer(Arc::new(AnswerLost {
            inner: fx.platform.clone(),
            op,
        }))
        .registry(Arc::new(fx.platform.clone()))
        .default_strategy(Arc::new(AllAtOnce))
        .build()
        .unwrap();
    let request = DeployRequest::new()
        .docker_tag(tag("v2"))
        .process("default".parse().unwrap());
    let record = deploy_and_wait(&engine, &fx.app, request).await;
    let status = status_of(&record, "default");
    assert!(
        matches!(status, ProcessStatus::RolledBack { .. }),
        "answer lost after {op:?}: {status}"
    );
    fx.assert_tags(&[("default", "v1"), ("worker", "v1"), ("scheduler", "v1")]);
    fx.assert_settled();
}

/// The rollback's last change, retiring the new fleet, made but its answer lost: the resend
/// finds the fleet gone (as ECS says of a deleted task set), which is what the rollback
/// wanted. Reported rolled back, not failed.
#[tokio::test(start_paused = true)]
async fn a_new_fleet_found_gone_when_the_rollback_retires_it_again_is_retired() {
    let fx = fixture();
    fx.platform
        .set_behavior(&fx.app, "v2", "default", Behavior::never_healthy());
    rolled_back_despite_a_lost_answer(&fx, Op::Retire).await;
}

/// A change the platform made whose answer was lost (all traffic to the new fleet, the new
/// fleet primary, the old fleet scaled to nothing) fails the process, and its rollback must
/// undo that change too although the record never showed it: the process ends on its old
/// fleet, at full size and taking all traffic, reported rolled back.
#[tokio::test(start_paused = true)]
async fn a_change_made_but_not_confirmed_is_undone_by_the_rollback() {
    for op in [Op::Route, Op::MakePrimary, Op::Scale] {
        rolled_back_despite_a_lost_answer(&fixture(), op).await;
    }
}
