//! Blue-green against the in-memory platform, on the paused clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tapitalee_core::testkit::Behavior;
use tapitalee_core::{DynStrategy, ProcessStatus};
use tapitalee_strategies::{AnalysisSpec, BlueGreen};

/// The one switch: traffic moves from 100% old to 100% new at once, onto a fully healthy fleet.
fn assert_single_switch(w: &World, desired: u32) {
    let routes: Vec<_> = w
        .checked
        .snapshots()
        .into_iter()
        .filter(|s| s.op == "route")
        .collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].weight("v2"), 100);
    assert_eq!(routes[0].fleet("v2").unwrap().healthy, desired);
}

#[tokio::test(start_paused = true)]
async fn full_fleet_switch_bake_and_delay() {
    let w = world(3, true, Behavior::healthy());
    let post = Scripted::new(&["pass"]);
    let bg = BlueGreen::builder()
        .bake_time(Duration::from_secs(300))
        .post_promotion_analysis(AnalysisSpec::new(post.clone()).interval(Duration::from_secs(60)))
        .scale_down_delay(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let p = w.deploy(Arc::new(bg)).await;
    assert_eq!(p.status, ProcessStatus::Succeeded, "{:?}", p.status);
    w.assert_promoted(true);
    assert_single_switch(&w, 3);
    assert_eq!(post.calls.load(Ordering::SeqCst), 3);
    // Bake 300 s (the analysis's 120 s inside it) + 30 s delay, plus start and health time.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(330) && took < Duration::from_secs(360),
        "{took:?}"
    );
    // The old fleet stays at full size until it is retired.
    for s in w.checked.snapshots().iter().filter(|s| s.op != "retire") {
        assert_eq!(s.fleet("v1").map(|f| f.desired), Some(3), "{s:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn preview_then_full_size_after_manual_promotion() {
    let w = world(4, true, Behavior::healthy());
    let bg = BlueGreen::builder()
        .preview(1)
        .auto_promote(false)
        .scale_down_delay(Duration::ZERO)
        .build()
        .unwrap();
    let h = w.start(Arc::new(bg)).await;
    let control = h.control();
    let waiter = tokio::spawn(h.wait());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!waiter.is_finished(), "waits for promote()");
    let v2 = w
        .fleets()
        .into_iter()
        .find(|f| f.tag.as_str() == "v2")
        .unwrap();
    assert_eq!((v2.desired, v2.healthy), (1, 1));
    assert_eq!(w.traffic_on("v1"), 100);
    control.promote();
    let rec = waiter.await.unwrap().unwrap();
    assert_eq!(rec.processes[0].status, ProcessStatus::Succeeded);
    assert_single_switch(&w, 4);
    w.assert_promoted(true);
}

#[tokio::test(start_paused = true)]
async fn pre_promotion_analysis_failure_never_routes() {
    let w = world(3, true, Behavior::healthy());
    let bg = BlueGreen::builder()
        .pre_promotion_analysis(
            AnalysisSpec::new(Scripted::new(&["fail"])).interval(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    let p = w.deploy(Arc::new(bg)).await;
    assert!(is_rolled_back(&p), "{:?}", p.status);
    assert!(w.checked.snapshots().iter().all(|s| s.op != "route"));
    w.assert_restored(true);
}

#[tokio::test(start_paused = true)]
async fn post_promotion_failure_switches_back() {
    let w = world(3, true, Behavior::healthy());
    let bg = BlueGreen::builder()
        .bake_time(Duration::from_secs(120))
        .post_promotion_analysis(
            AnalysisSpec::new(Scripted::new(&["pass", "fail"])).interval(Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    let p = w.deploy(Arc::new(bg)).await;
    match &p.status {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("post-promotion"), "{reason}")
        }
        s => panic!("{s:?}"),
    }
    w.assert_restored(true);
    assert_traffic_on_healthy(&w);
}

#[tokio::test(start_paused = true)]
async fn lb_unhealthy_new_fleet_never_gets_traffic() {
    let w = world(2, true, Behavior::lb_unhealthy());
    let p = w.deploy(Arc::new(BlueGreen::new())).await;
    assert!(is_rolled_back(&p), "{:?}", p.status);
    assert!(w.checked.snapshots().iter().all(|s| s.op != "route"));
    w.assert_restored(true);
}

fn bg() -> DynStrategy {
    Arc::new(
        BlueGreen::builder()
            .preview(1)
            .bake_time(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn fails_at_every_step_and_rolls_back() {
    for lb in [true, false] {
        let ok = world(3, lb, Behavior::healthy());
        ok.deploy(bg()).await;
        let changes = ok.checked.changes();
        assert!(changes >= 3, "{changes}");
        for k in 1..=changes {
            let w = world(3, lb, Behavior::healthy());
            w.checked.fail_change(k);
            let started = tokio::time::Instant::now();
            let p = w.deploy(bg()).await;
            let failed = w.checked.failed_at().expect("fault fired");
            assert!(is_rolled_back(&p), "change {k}: {:?}", p.status);
            w.assert_restored(lb);
            assert_traffic_on_healthy(&w);
            for s in w.checked.snapshots() {
                assert!(
                    s.fleet("v1").is_some_and(|f| f.healthy == 3),
                    "change {k}: {s:?}"
                );
            }
            assert!(failed.elapsed() <= failed - started + Duration::from_secs(1));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn abort_during_bake_switches_back() {
    let w = world(3, true, Behavior::healthy());
    let mut h = w.start(bg()).await;
    on_step(&mut h, "bake for", 1, |c| c.abort("bake looked bad"));
    let rec = h.wait().await.unwrap();
    assert!(
        is_rolled_back(&rec.processes[0]),
        "{:?}",
        rec.processes[0].status
    );
    let routes: Vec<u32> = w
        .checked
        .snapshots()
        .iter()
        .filter(|s| s.op == "route")
        .map(|s| s.weight("v2"))
        .collect();
    assert_eq!(routes, [100, 0]);
    w.assert_restored(true);
}

#[tokio::test(start_paused = true)]
async fn first_deploy_and_promote_full_at_the_gate() {
    let w = world_with(2, true, Behavior::healthy(), false);
    let p = w.deploy(Arc::new(BlueGreen::new())).await;
    assert_eq!(p.status, ProcessStatus::Succeeded, "{:?}", p.status);
    w.assert_promoted(true);

    let w = world(2, true, Behavior::healthy());
    let bg = BlueGreen::builder()
        .auto_promote(false)
        .bake_time(Duration::from_secs(3600))
        .build()
        .unwrap();
    let h = w.start(Arc::new(bg)).await;
    let control = h.control();
    let waiter = tokio::spawn(h.wait());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let t = tokio::time::Instant::now();
    control.promote_full();
    let rec = waiter.await.unwrap().unwrap();
    assert_eq!(rec.processes[0].status, ProcessStatus::Succeeded);
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "bake skipped: {:?}",
        t.elapsed()
    );
    w.assert_promoted(true);
}
