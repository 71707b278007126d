//! Zero downtime under load, on a real Docker engine: rolling (with a watch after its last
//! batch for the version failing after traffic), blue-green and canary
//! deployments of a good version and of bad ones (crash loop, never healthy, failing after it
//! took traffic), with keep-alive clients sending requests through the app's proxy the whole
//! time. Every case: zero failed requests, the served version switching as the strategy says,
//! the old containers gone only on success, nothing of the new version left after a rollback.
#![allow(clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tapitalee_core::{
    DeployRequest, DeploymentStatus, DockerTag, DynStrategy, Engine, HealthGate, MemoryStore,
};
use tapitalee_strategies::{BlueGreen, Canary, Rolling};

/// The tests share two cores: one scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Scenario {
    name: &'static str,
    strategy: DynStrategy,
    /// `ENV` lines of the new version's image.
    new_env: &'static [(&'static str, &'static str)],
    succeeds: bool,
    /// Whether the new version must have served some requests (canaries).
    serves_new: bool,
}

fn gate() -> HealthGate {
    HealthGate {
        min_healthy_time: Duration::from_secs(2),
        failure_threshold: Some(1),
        progress_deadline: Duration::from_secs(12),
        poll_interval: Duration::from_millis(250),
        ..HealthGate::default()
    }
}

async fn run(s: Scenario) {
    let _serial = SERIAL.lock().await;
    if !engine_or_skip(s.name) {
        return;
    }
    let app = TestApp::new(&s.name.replace('_', "-")[..12.min(s.name.len())]);
    demo_image(&app.repository, "v1", &[]);
    demo_image(&app.repository, "v2", s.new_env);
    let backend = backend(&app, demo_config(&app, 2, 1));
    seed(&backend, &app.name, "v1").await;
    let addr = backend
        .proxy_address(&app.name)
        .await
        .expect("proxy address")
        .expect("the proxy runs");

    let load = common::load::start(
        addr,
        4,
        Duration::from_millis(2),
        Duration::from_secs(150),
        200_000,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deploy_started = load.elapsed();
    let engine = Engine::builder()
        .deployer(Arc::new(backend.clone()))
        .registry(Arc::new(backend.clone()))
        .store(Arc::new(MemoryStore::new()))
        .default_strategy(s.strategy.clone())
        .health_gate(gate())
        .build()
        .expect("engine");
    let record = engine
        .deploy(
            &app.name,
            DeployRequest::new().docker_tag(DockerTag::new("v2").unwrap()),
        )
        .await
        .expect("deploy")
        .wait()
        .await
        .expect("deployment");
    let done = load.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = load.stop().await;

    let failures = report.failures();
    eprintln!(
        "FIGURES {}: {} requests, {} failed, v1 {} / v2 {}, deployment {:?} in {:.1} s",
        s.name,
        report.requests(),
        failures.len(),
        report.count("v1"),
        report.count("v2"),
        record.status,
        (done - deploy_started).as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{}: {} failed requests, first: {:?}",
        s.name,
        failures.len(),
        failures.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        report.requests() > 100,
        "the load ran: {} requests",
        report.requests()
    );
    let before = report.versions_between(Duration::ZERO, deploy_started);
    assert!(
        !before.is_empty() && before.iter().all(|v| *v == "v1"),
        "only v1 before the deployment"
    );
    let (expected, other) = if s.succeeds {
        ("v2", "v1")
    } else {
        ("v1", "v2")
    };
    let after = report.versions_between(done + Duration::from_millis(500), Duration::MAX);
    assert!(
        !after.is_empty() && after.iter().all(|v| *v == expected),
        "{}: only {expected} after the deployment ended ({:?}); saw {} of {other}",
        s.name,
        record.status,
        after.iter().filter(|v| **v == other).count()
    );
    if s.succeeds {
        assert_eq!(
            record.status,
            DeploymentStatus::Succeeded,
            "{}: {:?}",
            s.name,
            record.processes
        );
        assert!(
            app.containers_with("tapit.image.tag=v1").is_empty(),
            "{}: the old containers are gone after success",
            s.name
        );
    } else {
        assert_eq!(
            record.status,
            DeploymentStatus::Partial,
            "{}: the web process rolls back, the worker succeeds: {:?}",
            s.name,
            record.processes
        );
        let web = &record
            .processes
            .iter()
            .find(|p| p.process.as_str() == "default")
            .expect("web");
        assert!(
            matches!(web.status, tapitalee_core::ProcessStatus::RolledBack { .. }),
            "{}: web rolled back: {}",
            s.name,
            web.status
        );
        // A crashing instance's last log lines outlive its removal, in the failure reason.
        let said = if s.new_env == CRASH_AT_START {
            Some("crashing at start (DEMO_CRASH_AT_START), exit 2")
        } else if s.new_env == CRASH_AFTER_TRAFFIC {
            Some("crashing after 7 s (DEMO_CRASH_AFTER), exit 3")
        } else {
            None
        };
        if let Some(said) = said {
            assert!(
                web.status.to_string().contains(said),
                "{}: the failure reason carries the crashed instance's last log line {said:?}: {}",
                s.name,
                web.status
            );
        }
        let left: Vec<String> = app
            .containers_with("tapit.image.tag=v2")
            .into_iter()
            .filter(|c| {
                let out = std::process::Command::new("docker")
                    .args([
                        "inspect",
                        "-f",
                        "{{index .Config.Labels \"tapit.process\"}}",
                        c,
                    ])
                    .output()
                    .expect("inspect");
                String::from_utf8_lossy(&out.stdout).trim() == "default"
            })
            .collect();
        assert!(
            left.is_empty(),
            "{}: no container of the rolled-back web version is left: {left:?}",
            s.name
        );
        assert!(
            !app.containers_with("tapit.image.tag=v1").is_empty(),
            "{}: v1 still runs after the rollback",
            s.name
        );
    }
    if s.serves_new {
        assert!(
            report.count("v2") > 0,
            "{}: the canary served some requests",
            s.name
        );
    }
}

const CRASH_AT_START: &[(&str, &str)] = &[
    ("DEMO_CRASH_AT_START", "1"),
    ("DEMO_ONLY_PROCESS", "default"),
];
const NEVER_HEALTHY: &[(&str, &str)] = &[("DEMO_UNHEALTHY", "1"), ("DEMO_ONLY_PROCESS", "default")];
const CRASH_AFTER_TRAFFIC: &[(&str, &str)] =
    &[("DEMO_CRASH_AFTER", "7"), ("DEMO_ONLY_PROCESS", "default")];

fn rolling() -> DynStrategy {
    Arc::new(Rolling::new())
}

fn blue_green() -> DynStrategy {
    Arc::new(
        BlueGreen::builder()
            .bake_time(Duration::from_secs(1))
            .scale_down_delay(Duration::ZERO)
            .build()
            .expect("blue-green"),
    )
}

fn canary(pause: Duration) -> DynStrategy {
    Arc::new(
        Canary::builder()
            .set_weight(25)
            .pause(pause)
            .set_weight(50)
            .pause(pause)
            .split_by_instances(true)
            .build()
            .expect("canary"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_good_version() {
    run(Scenario {
        name: "rolling_good",
        strategy: rolling(),
        new_env: &[],
        succeeds: true,
        serves_new: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_crash_loop_rolls_back() {
    run(Scenario {
        name: "rolling_crash",
        strategy: rolling(),
        new_env: CRASH_AT_START,
        succeeds: false,
        serves_new: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_good_version() {
    run(Scenario {
        name: "bluegreen_good",
        strategy: blue_green(),
        new_env: &[],
        succeeds: true,
        serves_new: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_never_healthy_rolls_back() {
    run(Scenario {
        name: "bluegreen_unhealthy",
        strategy: blue_green(),
        new_env: NEVER_HEALTHY,
        succeeds: false,
        serves_new: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_good_version() {
    run(Scenario {
        name: "canary_good",
        strategy: canary(Duration::from_secs(2)),
        new_env: &[],
        succeeds: true,
        serves_new: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_failing_after_traffic_rolls_back() {
    run(Scenario {
        name: "canary_crash_after",
        strategy: canary(Duration::from_secs(8)),
        new_env: CRASH_AFTER_TRAFFIC,
        succeeds: false,
        serves_new: true,
    })
    .await;
}

/// The deployer dies mid-canary (half the traffic on the new fleet); a fresh engine and backend
/// recover the deployment and resume it to the end, while the load never sees a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployer_killed_mid_canary_then_resumed() {
    let _serial = SERIAL.lock().await;
    if !engine_or_skip("deployer_killed_mid_canary_then_resumed") {
        return;
    }
    let app = TestApp::new("killed");
    demo_image(&app.repository, "v1", &[]);
    demo_image(&app.repository, "v2", &[]);
    let config = demo_config(&app, 2, 0);
    let backend = backend(&app, config.clone());
    seed(&backend, &app.name, "v1").await;
    let addr = backend.proxy_address(&app.name).await.unwrap().unwrap();
    let store: tapitalee_core::DynDeploymentStore = Arc::new(MemoryStore::new());
    let lease = Duration::from_secs(1);
    let engine_with = |strategy: DynStrategy| {
        Engine::builder()
            .deployer(Arc::new(common::backend(&app, config.clone())))
            .registry(Arc::new(common::backend(&app, config.clone())))
            .store(store.clone())
            .default_strategy(strategy)
            .health_gate(gate())
            .lock_lease(lease)
            .build()
            .expect("engine")
    };

    let load = common::load::start(
        addr,
        4,
        Duration::from_millis(2),
        Duration::from_secs(150),
        200_000,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The first deployer: a canary at 50% that would pause for an hour; killed (its runtime
    // dropped) once the canary takes half the traffic.
    let first = engine_with(Arc::new(
        Canary::builder()
            .set_weight(50)
            .pause(Duration::from_secs(3600))
            .build()
            .unwrap(),
    ));
    let (store2, name) = (store.clone(), app.name.clone());
    let id = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (id, handle) = runtime.block_on(async {
            let handle = first
                .deploy(
                    &name,
                    DeployRequest::new().docker_tag(DockerTag::new("v2").unwrap()),
                )
                .await
                .expect("deploy");
            let id = handle.id();
            for _ in 0..600 {
                let record = store2.get(&id).await.unwrap().unwrap();
                if record
                    .processes
                    .iter()
                    .any(|p| p.state.candidate_weight == 50)
                {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return (id, handle);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the canary never took traffic");
        });
        drop(runtime); // the deployer dies
        drop(handle);
        id
    })
    .await
    .unwrap();
    let killed_at = load.elapsed();

    tokio::time::sleep(lease * 2).await;
    let fresh = engine_with(Arc::new(Rolling::new()));
    let found = fresh.recover(&app.name).await.expect("recover");
    assert!(found.contains(&id), "recover finds {id}: {found:?}");
    let record = fresh
        .resume(&id)
        .await
        .expect("resume")
        .wait()
        .await
        .expect("the resumed deployment");
    let done = load.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = load.stop().await;
    let failures = report.failures();
    eprintln!(
        "FIGURES killed_mid_canary: {} requests, {} failed, v1 {} / v2 {}, resumed {:?}",
        report.requests(),
        failures.len(),
        report.count("v1"),
        report.count("v2"),
        record.status
    );
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        failures.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        record.status,
        DeploymentStatus::Succeeded,
        "{:?}",
        record.processes
    );
    assert!(
        report
            .versions_between(Duration::ZERO, killed_at)
            .contains(&"v2"),
        "the canary served before the deployer died"
    );
    let after = report.versions_between(done + Duration::from_millis(500), Duration::MAX);
    assert!(
        !after.is_empty() && after.iter().all(|v| *v == "v2"),
        "only v2 at the end"
    );
    assert!(
        app.containers_with("tapit.image.tag=v1").is_empty(),
        "v1 is gone"
    );
}

fn blue_green_baking(bake: Duration) -> DynStrategy {
    Arc::new(
        BlueGreen::builder()
            .bake_time(bake)
            .scale_down_delay(Duration::ZERO)
            .build()
            .expect("blue-green"),
    )
}

/// The new fleet takes all the traffic after the last batch, then fails while it is watched,
/// with an old instance still on standby: rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_failing_after_traffic_rolls_back() {
    run(Scenario {
        name: "rolling_crash_after",
        strategy: Arc::new(
            Rolling::builder()
                .watch(Duration::from_secs(12))
                .build()
                .expect("rolling"),
        ),
        new_env: CRASH_AFTER_TRAFFIC,
        succeeds: false,
        serves_new: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_never_healthy_rolls_back() {
    run(Scenario {
        name: "rolling_unhealthy",
        strategy: rolling(),
        new_env: NEVER_HEALTHY,
        succeeds: false,
        serves_new: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_crash_loop_rolls_back() {
    run(Scenario {
        name: "bluegreen_crash",
        strategy: blue_green(),
        new_env: CRASH_AT_START,
        succeeds: false,
        serves_new: false,
    })
    .await;
}

/// The new fleet takes all the traffic, then fails during the bake: traffic switches back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_failing_after_traffic_rolls_back() {
    run(Scenario {
        name: "bluegreen_crash_after",
        strategy: blue_green_baking(Duration::from_secs(12)),
        new_env: CRASH_AFTER_TRAFFIC,
        succeeds: false,
        serves_new: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_crash_loop_rolls_back() {
    run(Scenario {
        name: "canary_crash",
        strategy: canary(Duration::from_secs(2)),
        new_env: CRASH_AT_START,
        succeeds: false,
        serves_new: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_never_healthy_rolls_back() {
    run(Scenario {
        name: "canary_unhealthy",
        strategy: canary(Duration::from_secs(2)),
        new_env: NEVER_HEALTHY,
        succeeds: false,
        serves_new: false,
    })
    .await;
}
