//! Canary against the in-memory platform, on the paused clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tapitalee_core::testkit::{Behavior, Op};
use tapitalee_core::{DeployRequest, DynStrategy, Error, EventKind, ProcessStatus};
use tapitalee_strategies::{AnalysisSpec, Canary, HealthAnalysis};

fn spec(a: Arc<Scripted>) -> AnalysisSpec {
    AnalysisSpec::new(a)
        .interval(Duration::from_secs(10))
        .count(2)
}

fn weights_seen(w: &World) -> Vec<u32> {
    let mut seen: Vec<u32> = Vec::new();
    for s in w.checked.snapshots().iter().filter(|s| s.op == "route") {
        let v = s.weight("v2");
        if seen.last() != Some(&v) {
            seen.push(v);
        }
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn steps_then_full_promotion() {
    let w = world(10, true, Behavior::healthy());
    let health = HealthAnalysis::new(Arc::new(w.platform.clone()), Arc::new(w.platform.clone()));
    let canary = Canary::builder()
        .set_weight(20)
        .pause(Duration::from_secs(60))
        .analysis(AnalysisSpec::new(health.shared()).interval(Duration::from_secs(10)))
        .set_weight(50)
        .pause(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let p = w.deploy(Arc::new(canary)).await;
    assert_eq!(p.status, ProcessStatus::Succeeded, "{:?}", p.status);
    w.assert_promoted(true);
    assert_eq!(weights_seen(&w), [20, 50, 100]);
    assert_traffic_on_healthy(&w);
    // The old fleet keeps full capacity until the engine retires it.
    for s in w.checked.snapshots().iter().filter(|s| s.op != "retire") {
        assert_eq!(s.fleet("v1").map(|f| f.desired), Some(10), "{s:?}");
    }
    // The canary matched the traffic weight: 2 then 5 of 10 instances.
    let sizes: Vec<u32> = w
        .checked
        .snapshots()
        .iter()
        .filter_map(|s| s.fleet("v2").map(|f| f.desired))
        .collect();
    assert!(sizes.starts_with(&[2]) && sizes.contains(&5), "{sizes:?}");
    assert!(started.elapsed() >= Duration::from_secs(60 + 20 + 30));
}

#[tokio::test(start_paused = true)]
async fn first_deploy_promotes_fully() {
    let w = world_with(4, true, Behavior::healthy(), false);
    let canary = Canary::builder()
        .set_weight(10)
        .pause_until_promoted()
        .build()
        .unwrap();
    let p = w.deploy(Arc::new(canary)).await;
    assert_eq!(p.status, ProcessStatus::Succeeded, "{:?}", p.status);
    w.assert_promoted(true);
}

fn three_step() -> DynStrategy {
    Arc::new(
        Canary::builder()
            .set_weight(25)
            .analysis(spec(Scripted::new(&["pass"])))
            .set_weight(50)
            .pause(Duration::from_secs(20))
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn fails_at_every_step_and_rolls_back() {
    let ok = world(4, true, Behavior::healthy());
    ok.deploy(three_step()).await;
    let changes = ok.checked.changes();
    assert!(changes >= 5, "{changes}");
    for k in 1..=changes {
        let w = world(4, true, Behavior::healthy());
        w.checked.fail_change(k);
        let started = tokio::time::Instant::now();
        let p = w.deploy(three_step()).await;
        let failed = w.checked.failed_at().expect("fault fired");
        assert!(is_rolled_back(&p), "change {k}: {:?}", p.status);
        w.assert_restored(true);
        assert_traffic_on_healthy(&w);
        // Capacity first: the old fleet never drops below its size.
        for s in w.checked.snapshots() {
            assert!(
                s.fleet("v1").is_some_and(|f| f.healthy == 4),
                "change {k}: {s:?}"
            );
        }
        assert!(failed.elapsed() <= failed - started + Duration::from_secs(1));
    }
}

#[tokio::test(start_paused = true)]
async fn failing_analysis_rolls_back_and_skips_the_rest() {
    let w = world(4, true, Behavior::healthy());
    let after = Scripted::new(&["pass"]);
    let canary = Canary::builder()
        .set_weight(25)
        .analysis(spec(Scripted::new(&["pass", "fail"])))
        .set_weight(50)
        .analysis(spec(after.clone()))
        .build()
        .unwrap();
    let p = w.deploy(Arc::new(canary)).await;
    match &p.status {
        ProcessStatus::RolledBack { reason } => {
            assert!(reason.contains("analysis scripted failed"), "{reason}");
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(
        after.calls.load(Ordering::SeqCst),
        0,
        "later analyses skipped"
    );
    assert_eq!(weights_seen(&w), [25, 0]);
    w.assert_restored(true);
}

#[tokio::test(start_paused = true)]
async fn inconclusive_analysis_pauses_until_promoted() {
    let w = world(4, true, Behavior::healthy());
    let canary = Canary::builder()
        .set_weight(25)
        .analysis(spec(Scripted::new(&["inconclusive"])))
        .set_weight(50)
        .build()
        .unwrap();
    let mut h = w.start(Arc::new(canary)).await;
    let control = h.control();
    let mut events = Box::pin(h.events());
    let waiter = tokio::spawn(h.wait());
    use futures::StreamExt;
    loop {
        let e = events.next().await.unwrap();
        if let EventKind::Paused { reason } = &e.kind {
            assert!(reason.contains("inconclusive"), "{reason}");
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert!(
        !waiter.is_finished(),
        "inconclusive holds until a human decides"
    );
    assert_eq!(w.traffic_on("v2"), 25);
    control.promote();
    let rec = waiter.await.unwrap().unwrap();
    assert_eq!(rec.processes[0].status, ProcessStatus::Succeeded);
    w.assert_promoted(true);
}

#[tokio::test(start_paused = true)]
async fn inconclusive_then_abort_rolls_back() {
    let w = world(4, true, Behavior::healthy());
    let canary = Canary::builder()
        .set_weight(25)
        .analysis(spec(Scripted::new(&["inconclusive"])))
        .build()
        .unwrap();
    let mut h = w.start(Arc::new(canary)).await;
    on_step(&mut h, "inconclusive (", 1, |c| c.abort("looks bad"));
    let rec = h.wait().await.unwrap();
    assert!(
        is_rolled_back(&rec.processes[0]),
        "{:?}",
        rec.processes[0].status
    );
    w.assert_restored(true);
}

#[tokio::test(start_paused = true)]
async fn manual_pause_waits_for_promote() {
    let w = world(4, true, Behavior::healthy());
    let canary = Canary::builder()
        .set_weight(25)
        .pause_until_promoted()
        .set_weight(75)
        .pause(Duration::from_secs(600))
        .build()
        .unwrap();
    let h = w.start(Arc::new(canary)).await;
    let control = h.control();
    let waiter = tokio::spawn(h.wait());
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert!(!waiter.is_finished());
    assert_eq!(w.traffic_on("v2"), 25);
    control.promote();
    // The timed pause then runs its course: 10 minutes, not forever.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(w.traffic_on("v2"), 75);
    assert!(!waiter.is_finished());
    let rec = waiter.await.unwrap().unwrap();
    assert_eq!(rec.processes[0].status, ProcessStatus::Succeeded);
    w.assert_promoted(true);
}

#[tokio::test(start_paused = true)]
async fn promote_full_skips_the_remaining_steps() {
    let w = world(4, true, Behavior::healthy());
    let later = Scripted::new(&["pass"]);
    let canary = Canary::builder()
        .set_weight(25)
        .pause_until_promoted()
        .set_weight(50)
        .analysis(spec(later.clone()))
        .pause_until_promoted()
        .build()
        .unwrap();
    let h = w.start(Arc::new(canary)).await;
    let control = h.control();
    let waiter = tokio::spawn(h.wait());
    tokio::time::sleep(Duration::from_secs(600)).await;
    control.promote_full();
    let rec = waiter.await.unwrap().unwrap();
    assert_eq!(rec.processes[0].status, ProcessStatus::Succeeded);
    assert_eq!(weights_seen(&w), [25, 100]);
    assert_eq!(later.calls.load(Ordering::SeqCst), 0);
    let steps = step_messages(&w).await;
    assert!(!steps.iter().any(|m| m.starts_with("step 3/")), "{steps:?}");
    w.assert_promoted(true);
}

#[tokio::test(start_paused = true)]
async fn abort_during_a_timed_pause() {
    let w = world(4, true, Behavior::healthy());
    let canary = Canary::builder()
        .set_weight(50)
        .pause(Duration::from_secs(3600))
        .build()
        .unwrap();
    let h = w.start(Arc::new(canary)).await;
    let control = h.control();
    let waiter = tokio::spawn(h.wait());
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(w.traffic_on("v2"), 50);
    let t = tokio::time::Instant::now();
    control.abort("rollback requested");
    let rec = waiter.await.unwrap().unwrap();
    assert!(is_rolled_back(&rec.processes[0]));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "abort interrupts the pause"
    );
    w.assert_restored(true);
}

#[tokio::test(start_paused = true)]
async fn worker_canary_is_a_count_gated_on_health() {
    let w = world(4, false, Behavior::crash_loop(Duration::from_secs(2)));
    let canary = Canary::builder()
        .set_scale(1)
        .pause(Duration::from_secs(60))
        .build()
        .unwrap();
    let p = w.deploy(Arc::new(canary)).await;
    assert!(is_rolled_back(&p), "{:?}", p.status);
    // Only ever one canary instance asked for.
    assert!(
        w.checked
            .snapshots()
            .iter()
            .all(|s| s.fleet("v2").is_none_or(|f| f.desired <= 1))
    );
    w.assert_restored(false);

    let w = world(4, false, Behavior::healthy());
    let canary = Canary::builder()
        .set_weight(50)
        .pause(Duration::from_secs(60))
        .split_by_instances(true)
        .build()
        .unwrap();
    let p = w.deploy(Arc::new(canary)).await;
    assert_eq!(p.status, ProcessStatus::Succeeded);
    let sizes: Vec<u32> = w
        .checked
        .snapshots()
        .iter()
        .filter_map(|s| s.fleet("v2").map(|f| f.desired))
        .collect();
    assert_eq!(sizes.first(), Some(&2), "{sizes:?}");
    w.assert_promoted(false);
}

#[tokio::test(start_paused = true)]
async fn traffic_steps_on_a_worker_are_refused_before_any_change() {
    let w = world(2, false, Behavior::healthy());
    let canary = Canary::builder().set_weight(10).build().unwrap();
    let err = w
        .engine
        .deploy(
            &w.app,
            DeployRequest::new()
                .docker_tag("v2".parse().unwrap())
                .strategy(Arc::new(canary)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(err.to_string().contains("split_by_instances"), "{err}");
    assert!(
        !w.platform
            .calls()
            .iter()
            .any(|c| c.op == Op::Launch || c.op == Op::Prepare)
    );
}
