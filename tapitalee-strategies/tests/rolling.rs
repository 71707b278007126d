//! Rolling against the in-memory platform, on the paused clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tapitalee_core::testkit::Behavior;
use tapitalee_core::{DynStrategy, ProcessStatus};
use tapitalee_strategies::{Bounds, Quantity, Rolling};

fn rolling(surge: u32, unavailable: u32) -> Rolling {
    Rolling::builder()
        .max_surge(surge)
        .max_unavailable(unavailable)
        .build()
        .unwrap()
}

/// Healthy capacity holds at every platform change; the surge bound holds during the run (a
/// rollback restores old capacity first, so it starts where the old fleet grows again).
fn assert_bounds(w: &World, b: Bounds) {
    let until = w.checked.failed_at();
    let mut old = u32::MAX;
    let mut rolling_back = false;
    for s in w.checked.snapshots() {
        let now_old = s.fleet("v1").map_or(0, |f| f.desired);
        rolling_back |= now_old > old;
        old = now_old;
        assert!(
            s.healthy() >= b.min_healthy(),
            "healthy {} < {} after {}: {:?}",
            s.healthy(),
            b.min_healthy(),
            s.op,
            s.fleets
        );
        if !rolling_back && until.is_none_or(|t| s.at < t) && s.op != "retire" {
            assert!(
                s.total() <= b.max_total(),
                "total {} > {} after {}: {:?}",
                s.total(),
                b.max_total(),
                s.op,
                s.fleets
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rolls_in_batches_within_bounds() {
    for (d, s, u, lb) in [
        (4, 1, 1, true),
        (5, 0, 1, true),
        (3, 2, 0, false),
        (10, 3, 2, true),
        (1, 1, 0, true),
    ] {
        let w = world(d, lb, Behavior::healthy());
        let strategy = rolling(s, u);
        let p = w.deploy(Arc::new(strategy)).await;
        assert_eq!(p.status, ProcessStatus::Succeeded, "{d} {s} {u}");
        w.assert_promoted(lb);
        assert_bounds(&w, strategy.bounds(d));
        assert_traffic_on_healthy(&w);
        let batches = step_messages(&w)
            .await
            .iter()
            .filter(|m| m.starts_with("batch "))
            .count();
        assert!(batches > 1 || d == 1, "{d}: {batches} batch(es)");
    }
}

#[tokio::test(start_paused = true)]
async fn default_rolling_on_four() {
    let w = world(4, true, Behavior::healthy());
    let p = w.deploy(Arc::new(Rolling::new())).await;
    assert_eq!(p.status, ProcessStatus::Succeeded);
    assert_bounds(
        &w,
        Bounds::new(4, Quantity::Percent(25), Quantity::Percent(25)),
    );
    // Traffic moved in proportion: some snapshot has both fleets sharing traffic.
    assert!(
        w.checked
            .snapshots()
            .iter()
            .any(|s| s.weight("v1") > 0 && s.weight("v2") > 0)
    );
}

#[tokio::test(start_paused = true)]
async fn first_deploy_has_no_old_fleet() {
    let w = world_with(3, true, Behavior::healthy(), false);
    let p = w.deploy(Arc::new(Rolling::new())).await;
    assert_eq!(p.status, ProcessStatus::Succeeded, "{:?}", p.status);
    w.assert_promoted(true);
}

#[tokio::test(start_paused = true)]
async fn crash_loop_rolls_back_fast() {
    let w = world(6, true, Behavior::crash_loop(Duration::from_secs(2)));
    let started = tokio::time::Instant::now();
    let p = w.deploy(Arc::new(Rolling::new())).await;
    match &p.status {
        ProcessStatus::RolledBack { reason } => assert!(reason.contains("exit code 1"), "{reason}"),
        s => panic!("{s:?}"),
    }
    w.assert_restored(true);
    assert_bounds(&w, Rolling::new().bounds(6));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "crash loops trip before the progress deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn never_healthy_hits_the_deadline_and_rolls_back() {
    let w = world(3, false, Behavior::never_healthy());
    let p = w.deploy(Arc::new(Rolling::new())).await;
    match &p.status {
        ProcessStatus::RolledBack { reason } => assert!(reason.contains("progress"), "{reason}"),
        s => panic!("{s:?}"),
    }
    w.assert_restored(false);
}

/// Fails every platform change the run makes, one at a time: each rolls back to full old
/// capacity, never below the availability bound, and no slower than the run before it.
#[tokio::test(start_paused = true)]
async fn fails_at_every_step_and_rolls_back() {
    for lb in [true, false] {
        let strategy: DynStrategy = Arc::new(rolling(1, 1));
        let ok = world(5, lb, Behavior::healthy());
        ok.deploy(strategy.clone()).await;
        let changes = ok.checked.changes();
        assert!(changes >= 6, "{changes}");
        for k in 1..=changes {
            let w = world(5, lb, Behavior::healthy());
            w.checked.fail_change(k);
            let started = tokio::time::Instant::now();
            let p = w.deploy(strategy.clone()).await;
            let failed = w.checked.failed_at().expect("the fault fired");
            assert!(is_rolled_back(&p), "change {k}: {:?}", p.status);
            w.assert_restored(lb);
            assert_bounds(&w, rolling(1, 1).bounds(5));
            let run = failed - started;
            let rollback = failed.elapsed();
            assert!(
                rollback <= run + Duration::from_secs(1),
                "change {k}: rollback {rollback:?} slower than run {run:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn abort_mid_batch_rolls_back() {
    let w = world(4, true, Behavior::healthy());
    let mut h = w.start(Arc::new(rolling(1, 0))).await;
    on_step(&mut h, "batch 2/", 1, |c| c.abort("operator said stop"));
    let rec = h.wait().await.unwrap();
    match &rec.processes[0].status {
        ProcessStatus::RolledBack { reason } => assert!(reason.contains("operator"), "{reason}"),
        s => panic!("{s:?}"),
    }
    w.assert_restored(true);
    assert_bounds(&w, rolling(1, 0).bounds(4));
}

#[tokio::test(start_paused = true)]
async fn pause_holds_between_batches_until_promoted() {
    let w = world(4, false, Behavior::healthy());
    let mut h = w.start(Arc::new(rolling(1, 0))).await;
    let control = h.control();
    on_step(&mut h, "batch 1/", 1, |c| c.pause());
    let waiter = tokio::spawn(h.wait());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!waiter.is_finished(), "paused deployments wait");
    let v2 = w.fleets().iter().filter(|f| f.tag.as_str() == "v2").count();
    assert_eq!(v2, 1);
    control.promote();
    let rec = waiter.await.unwrap().unwrap();
    assert_eq!(rec.processes[0].status, ProcessStatus::Succeeded);
    w.assert_promoted(false);
}

/// A version that passes its health gate and crash-loops only later (here 20 s after it
/// starts): without a watch the rollout has already ended; with one, the process is rolled
/// back during it, from a state where old instances are still running on standby.
#[tokio::test(start_paused = true)]
async fn a_watch_after_the_last_batch_catches_a_late_crash() {
    let late_crash = || Behavior::crash_loop(Duration::from_secs(20));

    let w = world(2, true, late_crash());
    let p = w.deploy(Arc::new(rolling(1, 0))).await;
    assert_eq!(p.status, ProcessStatus::Succeeded, "no watch: not seen");

    let w = world(2, true, late_crash());
    let watched = Rolling::builder()
        .max_surge(1)
        .max_unavailable(0)
        .watch(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(watched.watch(), Duration::from_secs(60));
    let started = tokio::time::Instant::now();
    let p = w.deploy(Arc::new(watched)).await;
    assert!(is_rolled_back(&p), "{:?}", p.status);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the failure ends the watch early: {:?}",
        started.elapsed()
    );
    w.assert_restored(true);
    assert_traffic_on_healthy(&w);
    assert_bounds(&w, Bounds::new(2, Quantity::Count(1), Quantity::Count(0)));
    // While the new fleet had all the traffic, an old instance was still running.
    let snapshots = w.checked.snapshots();
    let all_on_new = snapshots
        .iter()
        .find(|s| s.op == "route" && s.weight("v2") == 100)
        .expect("the new fleet took all the traffic");
    assert_eq!(all_on_new.fleet("v1").map(|f| f.desired), Some(1));
    assert!(
        snapshots
            .iter()
            .all(|s| s.fleet("v1").is_some_and(|f| f.desired >= 1)),
        "the old fleet never went below its standby instance"
    );
}
