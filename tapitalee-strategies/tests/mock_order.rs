//! Call order as the contract, against core's mockall mocks: blue-green never routes before
//! the new fleet is healthy; every rollback restores capacity before traffic, and traffic
//! before retiring the new fleet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mockall::Sequence;
use tapitalee_core::mocks::{MockAnalysis, MockDeployer, MockImageRegistry};
use tapitalee_core::*;
use tapitalee_strategies::{AnalysisSpec, BlueGreen, Canary, Rolling};

const OLD: &str = "fleet-old";
const NEW: &str = "fleet-new";

fn app() -> AppName {
    "shop".parse().unwrap()
}

fn target() -> Target {
    Target::new(app(), "web".parse().unwrap())
}

fn image() -> ImageRef {
    ImageRef::new("registry.local/shop", "v2".parse().unwrap())
        .unwrap()
        .with_digest(format!("sha256:{:064x}", 2).parse().unwrap())
}

fn fleet(id: &str) -> Fleet {
    Fleet {
        id: FleetId(id.into()),
        target: target(),
        revision: Revision {
            id: format!("rev-{id}"),
            image: image(),
        },
    }
}

fn running(n: u32, healthy: bool) -> Vec<Instance> {
    (0..n)
        .map(|i| Instance {
            id: format!("task-{i}"),
            status: InstanceStatus::Running {
                healthy: Some(healthy),
            },
            started_at: None,
        })
        .collect()
}

/// What the scripted platform knows: fleet sizes, polls of the new fleet, and a log of calls.
#[derive(Debug, Default)]
struct Sim {
    sizes: HashMap<String, u32>,
    new_polls: u32,
    log: Vec<String>,
}

/// The new fleet: pending for its first `pending_polls` polls, then healthy up to
/// `max_healthy` instances; instances beyond that crash (a bad version under load).
#[derive(Debug, Clone, Copy)]
struct Script {
    desired: u32,
    lb: bool,
    pending_polls: u32,
    max_healthy: u32,
}

fn registry() -> MockImageRegistry {
    let mut r = MockImageRegistry::new();
    r.expect_resolve().returning(|_, _| Ok(image()));
    r
}

/// A mock deployer following `script`, logging every change in order. `healthy_seen` is set
/// once a poll of the new fleet reported it fully healthy.
fn deployer(script: Script, sim: Arc<Mutex<Sim>>, healthy_seen: Arc<AtomicBool>) -> MockDeployer {
    let mut d = MockDeployer::new();
    d.expect_target_health().returning(|| None);
    d.expect_processes().returning(move |_| {
        Ok(vec![ProcessSpec::new(
            "web".parse().unwrap(),
            script.desired,
            script.lb,
        )])
    });
    sim.lock().unwrap().sizes.insert(OLD.into(), script.desired);
    d.expect_current().returning(move |_| {
        Ok(Release {
            fleet: Some(fleet(OLD)),
            desired: script.desired,
        })
    });
    d.expect_prepare().returning(|_, _| Ok(fleet(NEW).revision));
    let s = sim.clone();
    d.expect_launch().returning(move |_, _, n| {
        let mut s = s.lock().unwrap();
        s.sizes.insert(NEW.into(), n);
        s.log.push(format!("launch new {n}"));
        Ok(fleet(NEW))
    });
    let s = sim.clone();
    d.expect_scale().returning(move |_, f, n| {
        let mut s = s.lock().unwrap();
        s.sizes.insert(f.id.0.clone(), n);
        let which = if f.id.0 == NEW { "new" } else { "old" };
        s.log.push(format!("scale {which} {n}"));
        Ok(())
    });
    let s = sim.clone();
    d.expect_route().returning(move |_, weights| {
        let new = weights
            .iter()
            .find(|w| w.fleet.0 == NEW)
            .map_or(0, |w| w.percent);
        s.lock().unwrap().log.push(format!("route new {new}%"));
        Ok(())
    });
    let s = sim.clone();
    d.expect_make_primary().returning(move |_, f| {
        let which = if f.id.0 == NEW { "new" } else { "old" };
        s.lock().unwrap().log.push(format!("primary {which}"));
        Ok(())
    });
    let s = sim.clone();
    d.expect_retire().returning(move |_, f| {
        let which = if f.id.0 == NEW { "new" } else { "old" };
        s.lock().unwrap().log.push(format!("retire {which}"));
        Ok(())
    });
    let s = sim;
    d.expect_status().returning(move |_, f| {
        let mut s = s.lock().unwrap();
        let n = s.sizes.get(&f.id.0).copied().unwrap_or(0);
        let instances = if f.id.0 == OLD {
            running(n, true)
        } else {
            s.new_polls += 1;
            if s.new_polls <= script.pending_polls {
                (0..n)
                    .map(|i| Instance {
                        id: format!("task-{i}"),
                        status: InstanceStatus::Pending,
                        started_at: None,
                    })
                    .collect()
            } else {
                let ok = n.min(script.max_healthy);
                if ok == n {
                    healthy_seen.store(true, Ordering::SeqCst);
                }
                let mut v = running(ok, true);
                v.extend((ok..n).map(|i| Instance {
                    id: format!("crashed-{i}"),
                    status: InstanceStatus::Stopped {
                        reason: "Essential container in task exited".into(),
                        exit_code: Some(1),
                    },
                    started_at: None,
                }));
                v
            }
        };
        Ok(FleetStatus {
            fleet: f.id.clone(),
            desired: n,
            instances,
        })
    });
    d
}

fn engine(d: MockDeployer) -> Engine {
    Engine::builder()
        .deployer(Arc::new(d))
        .registry(Arc::new(registry()))
        .health_gate(HealthGate {
            min_healthy_time: Duration::from_secs(2),
            failure_threshold: Some(1),
            progress_deadline: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            max_poll_errors: 0,
        })
        .default_strategy(Arc::new(Rolling::new()))
        .build()
        .unwrap()
}

async fn run(e: &Engine, strategy: DynStrategy) -> ProcessRecord {
    let h = e
        .deploy(
            &app(),
            DeployRequest::new()
                .docker_tag("v2".parse().unwrap())
                .strategy(strategy),
        )
        .await
        .unwrap();
    h.wait().await.unwrap().processes.remove(0)
}

fn pos(log: &[String], entry: &str) -> usize {
    log.iter()
        .position(|l| l == entry)
        .unwrap_or_else(|| panic!("{entry:?} not in {log:?}"))
}

#[tokio::test(start_paused = true)]
async fn blue_green_routes_only_after_health_in_strict_order() {
    let healthy = Arc::new(AtomicBool::new(false));
    let mut d = MockDeployer::new();
    d.expect_target_health().returning(|| None);
    // Strict sequence: launch, one switch, primacy, then the engine retires the old fleet.
    // Anything else, or another order, fails the test.
    let mut seq = Sequence::new();
    d.expect_processes()
        .returning(move |_| Ok(vec![ProcessSpec::new("web".parse().unwrap(), 2, true)]));
    d.expect_current().returning(move |_| {
        Ok(Release {
            fleet: Some(fleet(OLD)),
            desired: 2,
        })
    });
    d.expect_prepare().returning(|_, _| Ok(fleet(NEW).revision));
    d.expect_launch()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, n| {
            assert_eq!(n, 2);
            Ok(fleet(NEW))
        });
    let polls = Arc::new(Mutex::new(0u32));
    let h = healthy.clone();
    let since = Arc::new(Mutex::new(None::<tokio::time::Instant>));
    let first_healthy = since.clone();
    // Polls are not in the sequence (their number is the health gate's business); the route
    // below checks that they reported the fleet healthy for the minimum healthy time.
    d.expect_status()
        .withf(|_, f| f.id.0 == NEW)
        .returning(move |_, f| {
            let mut p = polls.lock().unwrap();
            *p += 1;
            let pending = *p <= 3;
            if !pending {
                h.store(true, Ordering::SeqCst);
                first_healthy
                    .lock()
                    .unwrap()
                    .get_or_insert_with(tokio::time::Instant::now);
            }
            Ok(FleetStatus {
                fleet: f.id.clone(),
                desired: 2,
                instances: if pending { vec![] } else { running(2, true) },
            })
        });
    let h = healthy.clone();
    d.expect_route()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, w| {
            assert!(
                h.load(Ordering::SeqCst),
                "routed before the new fleet was healthy"
            );
            let healthy_for = since.lock().unwrap().expect("healthy").elapsed();
            assert!(healthy_for >= Duration::from_secs(2), "{healthy_for:?}");
            assert_eq!(w.iter().find(|w| w.fleet.0 == NEW).unwrap().percent, 100);
            Ok(())
        });
    d.expect_make_primary()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|_, f| f.id.0 == NEW)
        .returning(|_, _| Ok(()));
    d.expect_retire()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|_, f| f.id.0 == OLD)
        .returning(|_, _| Ok(()));
    let e = engine(d);
    let p = run(
        &e,
        Arc::new(
            BlueGreen::builder()
                .scale_down_delay(Duration::ZERO)
                .build()
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(p.status, ProcessStatus::Succeeded, "{:?}", p.status);
}

#[tokio::test(start_paused = true)]
async fn rolling_rollback_restores_capacity_then_traffic_then_retires() {
    // Batch 1 (1 new instance) passes; batch 2 crashes.
    let script = Script {
        desired: 4,
        lb: true,
        pending_polls: 1,
        max_healthy: 1,
    };
    let sim = Arc::new(Mutex::new(Sim::default()));
    let d = deployer(script, sim.clone(), Arc::default());
    let p = run(&engine(d), Arc::new(Rolling::new())).await;
    assert!(
        matches!(p.status, ProcessStatus::RolledBack { .. }),
        "{:?}",
        p.status
    );
    let log = sim.lock().unwrap().log.clone();
    // The run reached batch 2: old fleet scaled down, some traffic on the new one.
    let down = pos(&log, "scale old 2");
    let shifted = pos(&log, "route new 33%");
    assert!(shifted < down, "traffic follows capacity: {log:?}");
    let restore = pos(&log, "scale old 4");
    let back = pos(&log, "route new 0%");
    let retire = pos(&log, "retire new");
    assert!(down < restore && restore < back && back < retire, "{log:?}");
    assert!(!log.iter().any(|l| l == "primary new"), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn canary_rollback_after_failed_analysis() {
    let script = Script {
        desired: 4,
        lb: true,
        pending_polls: 0,
        max_healthy: 4,
    };
    let sim = Arc::new(Mutex::new(Sim::default()));
    let d = deployer(script, sim.clone(), Arc::default());
    let mut analysis = MockAnalysis::new();
    analysis.expect_name().return_const("error-rate".to_owned());
    analysis.expect_measure().times(1).returning(|t| {
        assert_eq!(t.candidate.id.0, NEW);
        assert_eq!(t.stable.as_ref().unwrap().id.0, OLD);
        Ok(Measurement::Fail {
            detail: "5xx 4%".into(),
        })
    });
    let canary = Canary::builder()
        .set_weight(25)
        .analysis(AnalysisSpec::new(Arc::new(analysis)))
        .set_weight(50)
        .build()
        .unwrap();
    let p = run(&engine(d), Arc::new(canary)).await;
    match &p.status {
        ProcessStatus::RolledBack { reason } => {
            assert!(
                reason.contains("error-rate") && reason.contains("5xx 4%"),
                "{reason}"
            )
        }
        s => panic!("{s:?}"),
    }
    let log = sim.lock().unwrap().log.clone();
    assert_eq!(
        log,
        [
            "launch new 1",
            "route new 25%",
            "route new 0%",
            "retire new"
        ],
        "skips the remaining steps; traffic back before the canary goes"
    );
}

#[tokio::test(start_paused = true)]
async fn blue_green_rollback_after_switch_restores_primary_and_traffic_first() {
    let script = Script {
        desired: 3,
        lb: true,
        pending_polls: 0,
        max_healthy: 3,
    };
    let sim = Arc::new(Mutex::new(Sim::default()));
    let d = deployer(script, sim.clone(), Arc::default());
    let mut analysis = MockAnalysis::new();
    analysis.expect_name().return_const("latency".to_owned());
    analysis.expect_measure().returning(|_| {
        Ok(Measurement::Fail {
            detail: "p99 2s".into(),
        })
    });
    let bg = BlueGreen::builder()
        .post_promotion_analysis(AnalysisSpec::new(Arc::new(analysis)))
        .build()
        .unwrap();
    let p = run(&engine(d), Arc::new(bg)).await;
    assert!(matches!(p.status, ProcessStatus::RolledBack { .. }));
    let log = sim.lock().unwrap().log.clone();
    assert_eq!(
        log,
        [
            "launch new 3",
            "route new 100%",
            "primary new",
            "route new 0%",
            "primary old",
            "retire new"
        ]
    );
}
