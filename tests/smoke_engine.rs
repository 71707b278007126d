//! Smoke test of the engine on the in-memory platform.

use std::sync::Arc;
use std::time::Duration;

use tapitalee::testkit::{AllAtOnce, Behavior, InMemoryPlatform};
use tapitalee::*;

#[tokio::test(start_paused = true)]
async fn smoke() {
    let p = InMemoryPlatform::new();
    let app = p.add_app(
        "shop",
        &[
            ("default", 3, true),
            ("worker", 2, false),
            ("scheduler", 1, false),
        ],
    );
    p.push_image(&app, "v1", Behavior::healthy());
    p.seed_release(&app, "v1");
    p.push_image(&app, "v2", Behavior::healthy());
    let engine = Engine::builder()
        .deployer(Arc::new(p.clone()))
        .registry(Arc::new(p.clone()))
        .default_strategy(Arc::new(AllAtOnce))
        .build()
        .unwrap();
    let h = engine
        .deploy(&app, DeployRequest::new().docker_tag("v2".parse().unwrap()))
        .await
        .unwrap();
    let rec = h.wait().await.unwrap();
    for p in &rec.processes {
        eprintln!("{} {}", p.process, p.status);
    }
    assert_eq!(rec.status, DeploymentStatus::Succeeded);
    assert_eq!(p.live_tag(&app, "worker").unwrap().as_str(), "v2");
    p.push_image(&app, "v3", Behavior::crash_loop(Duration::from_secs(3)));
    let h = engine
        .deploy(&app, DeployRequest::new().docker_tag("v3".parse().unwrap()))
        .await
        .unwrap();
    let rec = h.wait().await.unwrap();
    for p in &rec.processes {
        eprintln!("{} {}", p.process, p.status);
    }
    assert_eq!(rec.status, DeploymentStatus::Failed);
    assert_eq!(p.live_tag(&app, "worker").unwrap().as_str(), "v2");
    let latest = engine.latest(&app).await.unwrap().unwrap();
    for p in &latest.processes {
        for s in &p.steps {
            eprintln!("  {} {}", p.process, s.message);
        }
    }
}
