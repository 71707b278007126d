//! Property tests over the in-memory platform: random sizes, settings, weight lists, new-version
//! behaviours and fault schedules. Every run ends promoted or rolled back to full old capacity;
//! traffic only ever points at healthy fleets; rolling keeps its bounds; canary and
//! blue-green never shrink the old fleet.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use tapitalee_core::testkit::{Behavior, Fault, Op};
use tapitalee_core::{DynStrategy, ProcessStatus};
use tapitalee_strategies::{BlueGreen, Bounds, Canary, Quantity, Rolling};

#[derive(Debug, Clone)]
enum Pick {
    Rolling(Quantity, Quantity),
    Canary(Vec<(u8, u64)>),
    BlueGreen(Option<u32>, u64),
}

fn quantity() -> impl Strategy<Value = Quantity> {
    prop_oneof![
        (0u32..4).prop_map(Quantity::Count),
        (0u8..=100).prop_map(Quantity::Percent),
    ]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        (quantity(), quantity()).prop_map(|(s, u)| Pick::Rolling(s, u)),
        prop::collection::vec((0u8..=100, 0u64..120), 1..4).prop_map(Pick::Canary),
        (prop::option::of(0u32..4), 0u64..300).prop_map(|(p, b)| Pick::BlueGreen(p, b)),
    ]
}

fn behavior() -> impl Strategy<Value = Behavior> {
    prop_oneof![
        4 => Just(Behavior::healthy()),
        1 => (1u64..20).prop_map(|s| Behavior::crash_loop(Duration::from_secs(s))),
        1 => Just(Behavior::never_healthy()),
        1 => Just(Behavior::lb_unhealthy()),
        1 => (2u64..8).prop_map(|s| Behavior::flapping(Duration::from_secs(s))),
    ]
}

fn strategy(p: &Pick, lb: bool) -> DynStrategy {
    match p {
        Pick::Rolling(s, u) => Arc::new(
            Rolling::builder()
                .max_surge(*s)
                .max_unavailable(*u)
                .build()
                .unwrap(),
        ),
        Pick::Canary(steps) => {
            let mut b = Canary::builder().split_by_instances(!lb);
            for (w, pause) in steps {
                b = b.set_weight(*w).pause(Duration::from_secs(*pause));
            }
            Arc::new(b.build().unwrap())
        }
        Pick::BlueGreen(preview, bake) => {
            let mut b = BlueGreen::builder().bake_time(Duration::from_secs(*bake));
            if let Some(n) = preview {
                b = b.preview(*n);
            }
            Arc::new(b.build().unwrap())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_run_ends_promoted_or_fully_restored(
        desired in 1u32..7,
        lb in any::<bool>(),
        pick in pick(),
        v2 in behavior(),
        fail_change in 0usize..10,
        status_faults in prop::collection::vec((any::<bool>(), 1u32..3), 0..3),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let w = world(desired, lb, v2.clone());
            if fail_change > 0 {
                w.checked.fail_change(fail_change);
            }
            // Retryable polling faults (fewer in a row than the gate tolerates).
            for (throttle, times) in &status_faults {
                let fault = if *throttle { Fault::Throttle } else { Fault::Transient };
                w.platform.inject(Op::Status, Some("web"), fault, *times);
            }
            let p = w.deploy(strategy(&pick, lb)).await;
            match &p.status {
                ProcessStatus::Succeeded => w.assert_promoted(lb),
                ProcessStatus::RolledBack { .. } => w.assert_restored(lb),
                // The injected change failure landed in the rollback itself (after a health
                // failure): reported as such, and the old fleet still serves.
                ProcessStatus::RollbackFailed { reason } => {
                    assert!(reason.contains("injected"), "{reason}");
                    let old = w.fleets().into_iter().find(|f| f.tag.as_str() == "v1");
                    assert!(old.is_some_and(|f| f.healthy >= 1), "{:?}", w.fleets());
                }
                s => panic!("{s:?}"),
            }
            if w.checked.failed_at().is_none() && v2 == Behavior::healthy() {
                assert_eq!(p.status, ProcessStatus::Succeeded, "healthy and no fault");
            }
            assert_traffic_on_healthy(&w);
            let snapshots = w.checked.snapshots();
            match &pick {
                Pick::Rolling(s, u) => {
                    let b = Bounds::new(desired, *s, *u);
                    let mut old = u32::MAX;
                    let mut rolling_back = false;
                    for snap in &snapshots {
                        let o = snap.fleet("v1").map_or(0, |f| f.desired);
                        rolling_back |= o > old;
                        old = o;
                        if snap.op == "retire" {
                            continue;
                        }
                        assert!(snap.healthy() >= b.min_healthy(), "{b:?} {snap:?}");
                        if !rolling_back && w.checked.failed_at().is_none_or(|t| snap.at < t) {
                            assert!(snap.total() <= b.max_total(), "{b:?} {snap:?}");
                        }
                    }
                }
                Pick::Canary(_) | Pick::BlueGreen(..) => {
                    for snap in snapshots.iter().filter(|s| s.op != "retire") {
                        assert_eq!(snap.fleet("v1").map(|f| f.healthy), Some(desired), "{snap:?}");
                    }
                }
            }
        });
    }
}
