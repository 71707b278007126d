//! A rollback is never slower than the deployment that preceded it: for every strategy, on
//! every way a new version can fail, the time from "rolling back" to the process's end is at
//! most the time from the start to "rolling back" (tokio's paused clock, so time is exact).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tapitalee::strategies::{BlueGreen, Canary, Rolling};
use tapitalee::testkit::{Behavior, InMemoryPlatform};
use tapitalee::*;
use tokio::time::Instant;

fn strategies() -> Vec<(&'static str, DynStrategy)> {
    vec![
        ("rolling", Arc::new(Rolling::new())),
        (
            "rolling, no surge",
            Arc::new(
                Rolling::builder()
                    .max_surge(Quantity::Count(0))
                    .max_unavailable(Quantity::Count(2))
                    .build()
                    .unwrap(),
            ),
        ),
        ("blue-green", Arc::new(BlueGreen::new())),
        (
            "canary",
            Arc::new(
                Canary::builder()
                    .set_weight(20)
                    .pause(Duration::from_secs(30))
                    .set_weight(50)
                    .build()
                    .unwrap(),
            ),
        ),
    ]
}

fn failures() -> Vec<(&'static str, Behavior)> {
    vec![
        ("crash loop", Behavior::crash_loop(Duration::from_secs(2))),
        (
            "crash loop after the health gate",
            Behavior::crash_loop(Duration::from_secs(12)),
        ),
        ("never healthy", Behavior::never_healthy()),
        (
            "slow then crash",
            Behavior::crash_loop(Duration::from_secs(1)).start_delay(Duration::from_secs(30)),
        ),
    ]
}

use tapitalee::strategies::Quantity;

#[tokio::test(start_paused = true)]
async fn rollback_is_never_slower_than_the_deployment_before_it() {
    for (name, strategy) in strategies() {
        for (failure, behavior) in failures() {
            let platform = InMemoryPlatform::new();
            let app = platform.add_app("shop", &[("default", 4, true)]);
            platform.push_image(&app, "v1", Behavior::healthy());
            platform.seed_release(&app, "v1");
            platform.push_image(&app, "v2", behavior.clone());
            let engine = Engine::builder()
                .deployer(Arc::new(platform.clone()))
                .registry(Arc::new(platform.clone()))
                .default_strategy(strategy.clone())
                .health_gate(HealthGate {
                    progress_deadline: Duration::from_secs(120),
                    ..HealthGate::default()
                })
                .build()
                .unwrap();
            let start = Instant::now();
            let mut handle = engine
                .deploy(&app, DeployRequest::new().docker_tag("v2".parse().unwrap()))
                .await
                .unwrap();
            let mut events = handle.events();
            let watcher = tokio::spawn(async move {
                let mut rolling_back = None;
                let mut finished = None;
                while let Some(e) = events.next().await {
                    match e.kind {
                        EventKind::RollingBack { .. } => rolling_back = Some(Instant::now()),
                        EventKind::ProcessFinished { .. } => finished = Some(Instant::now()),
                        _ => {}
                    }
                }
                (rolling_back, finished)
            });
            let record = handle.wait().await.unwrap();
            let (rolling_back, finished) = watcher.await.unwrap();
            assert!(
                matches!(record.processes[0].status, ProcessStatus::RolledBack { .. }),
                "{name} / {failure}: {:?}",
                record.processes[0].status
            );
            let rolling_back = rolling_back.expect("a rollback event");
            let finished = finished.expect("a finish event");
            let deploying = rolling_back - start;
            let rollback = finished - rolling_back;
            assert!(
                rollback <= deploying,
                "{name} / {failure}: rollback took {rollback:?}, the deployment before it {deploying:?}"
            );
            assert_eq!(platform.live_tag(&app, "default").unwrap().as_str(), "v1");
            let fleets = platform.fleets(&app, "default");
            assert_eq!(fleets.len(), 1, "{name} / {failure}: {fleets:?}");
            assert_eq!(fleets[0].healthy, 4, "{name} / {failure}: {fleets:?}");
        }
    }
}
