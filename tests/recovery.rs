//! A deployer that crashes mid-deployment: the history (SQLite, one file) shows the
//! deployment as interrupted once its locks expire, and another engine — as after a restart —
//! rolls it back or resumes it.
//!
//! The crash is real: the runtime running the first engine is dropped mid-step, killing its
//! tasks without any cleanup, exactly as a killed `tapit` process would.

use std::sync::Arc;
use std::time::Duration;

use tapitalee::testkit::{AllAtOnce, Behavior, InMemoryPlatform};
use tapitalee::*;

/// Launches the new fleet, then waits for a promotion that never comes: the crash happens
/// while it waits.
#[derive(Debug)]
struct LaunchThenHold;

#[async_trait::async_trait]
impl Strategy for LaunchThenHold {
    fn name(&self) -> &str {
        "launch-then-hold"
    }

    async fn run(&self, rollout: &mut Rollout) -> Result<()> {
        let desired = rollout.desired();
        rollout.launch(desired).await?;
        if rollout.load_balanced() {
            rollout.route(50).await?;
        }
        rollout.pause(None, "holding until the crash").await?;
        Ok(())
    }
}

const LEASE: Duration = Duration::from_millis(300);

fn gate() -> HealthGate {
    HealthGate {
        min_healthy_time: Duration::ZERO,
        poll_interval: Duration::from_millis(10),
        ..HealthGate::default()
    }
}

fn setup() -> (InMemoryPlatform, AppName, tempfile::TempDir) {
    let platform = InMemoryPlatform::new();
    let app = platform.add_app("shop", &[("default", 2, true), ("worker", 1, false)]);
    platform.push_image(&app, "v1", Behavior::healthy().start_delay(Duration::ZERO));
    platform.seed_release(&app, "v1");
    platform.push_image(&app, "v2", Behavior::healthy().start_delay(Duration::ZERO));
    (platform, app, tempfile::tempdir().expect("temp dir"))
}

fn engine(platform: &InMemoryPlatform, db: &std::path::Path) -> Engine {
    Engine::builder()
        .deployer(Arc::new(platform.clone()))
        .registry(Arc::new(platform.clone()))
        .store(Arc::new(SqliteStore::open(db).expect("open history")))
        .default_strategy(Arc::new(AllAtOnce))
        .health_gate(gate())
        .lock_lease(LEASE)
        .build()
        .expect("engine")
}

/// Starts a deployment in its own runtime, waits until both new fleets are launched and half
/// the web traffic moved, then kills the runtime. Returns the deployment's id.
fn deploy_and_crash(
    platform: &InMemoryPlatform,
    app: &AppName,
    db: &std::path::Path,
) -> DeploymentId {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let id = runtime.block_on(async {
        let engine = engine(platform, db);
        let handle = engine
            .deploy(
                app,
                DeployRequest::new()
                    .docker_tag("v2".parse().expect("tag"))
                    .strategy(Arc::new(LaunchThenHold)),
            )
            .await
            .expect("deploy");
        let id = handle.id();
        for _ in 0..500 {
            let half = platform
                .traffic(app, "default")
                .iter()
                .any(|w| w.percent == 50);
            if half && platform.fleets(app, "worker").len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Keep the handle alive: its deployment is killed with the runtime, not aborted.
        std::mem::forget(handle);
        id
    });
    runtime.shutdown_timeout(Duration::ZERO);
    id
}

#[tokio::test]
async fn interrupted_deployment_is_found_and_rolled_back() {
    let (platform, app, dir) = setup();
    let db = dir.path().join("history.db");
    let id = tokio::task::spawn_blocking({
        let (platform, app, db) = (platform.clone(), app.clone(), db.clone());
        move || deploy_and_crash(&platform, &app, &db)
    })
    .await
    .expect("crashed run");

    // Mid-way: two fleets, traffic split.
    assert_eq!(platform.fleets(&app, "default").len(), 2);
    let restarted = engine(&platform, &db);

    // While its locks are live, the deployment is not declared interrupted (its deployer
    // might be alive), and the processes stay locked.
    assert!(restarted.recover(&app).await.expect("recover").is_empty());
    let locked = restarted
        .deploy(
            &app,
            DeployRequest::new().docker_tag("v1".parse().expect("tag")),
        )
        .await;
    assert!(matches!(locked, Err(Error::Locked { holder, .. }) if holder == id));

    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(restarted.recover(&app).await.expect("recover"), vec![id]);
    let record = restarted.get(&id).await.expect("record");
    assert_eq!(record.status, DeploymentStatus::Interrupted);
    assert!(
        record
            .processes
            .iter()
            .all(|p| p.status == ProcessStatus::Interrupted)
    );

    let record = restarted.rollback(&id).await.expect("rollback");
    assert_eq!(record.status, DeploymentStatus::Failed);
    for p in &record.processes {
        assert!(
            matches!(p.status, ProcessStatus::RolledBack { .. }),
            "{p:?}"
        );
    }
    for p in ["default", "worker"] {
        let fleets = platform.fleets(&app, p);
        assert_eq!(
            fleets.len(),
            1,
            "{p}: the orphaned new fleet is gone: {fleets:?}"
        );
        assert_eq!(fleets[0].tag.as_str(), "v1");
        assert_eq!(platform.live_tag(&app, p).expect("live").as_str(), "v1");
    }
    let traffic = platform.traffic(&app, "default");
    assert_eq!(traffic.len(), 1);
    assert_eq!(traffic[0].percent, 100);

    // Only interrupted deployments can be rolled back this way.
    assert!(matches!(
        restarted.rollback(&id).await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn interrupted_deployment_can_be_resumed() {
    let (platform, app, dir) = setup();
    let db = dir.path().join("history.db");
    let id = tokio::task::spawn_blocking({
        let (platform, app, db) = (platform.clone(), app.clone(), db.clone());
        move || deploy_and_crash(&platform, &app, &db)
    })
    .await
    .expect("crashed run");
    tokio::time::sleep(LEASE * 2).await;

    let restarted = engine(&platform, &db);
    assert_eq!(restarted.recover(&app).await.expect("recover"), vec![id]);
    let handle = restarted.resume(&id).await.expect("resume");
    let resumed = handle.wait().await.expect("resumed deployment");
    assert_eq!(resumed.status, DeploymentStatus::Succeeded);
    assert_eq!(resumed.resumes, Some(id));
    assert_eq!(resumed.image.tag.as_str(), "v2");
    for p in ["default", "worker"] {
        assert_eq!(platform.live_tag(&app, p).expect("live").as_str(), "v2");
        assert_eq!(platform.fleets(&app, p).len(), 1, "{p}");
    }
    let original = restarted.get(&id).await.expect("original");
    assert!(original.status.is_final());
    let list = restarted.list(&app, 10).await.expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, resumed.id, "newest first");
}
