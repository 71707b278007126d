//! Where a wide deployment's time goes: deploys an app of N one-instance processes on the
//! in-memory platform (10 ms per platform call, the fan-out benchmark's set-up), then prints,
//! for every platform operation and every kind of event, when the first process reached it,
//! the median one, the 90th percentile and the last. The spread between first and last is
//! what the fan-out costs over one process.
//!
//! ```text
//! cargo run --release --example fanout_timeline -- 1000          # in-memory store
//! cargo run --release --example fanout_timeline -- 1000 sqlite   # SQLite store in a temp dir
//! ```
//!
//! Runs the deployment 5 times and prints the timeline of the last (warm) run. On a busy
//! machine, run it under `chrt -f 50` (as root) for stable figures.

#![allow(clippy::print_stdout, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tapitalee::testkit::{AllAtOnce, Behavior, InMemoryPlatform};
use tapitalee::{
    DeployRequest, DynDeploymentStore, Engine, EventKind, HealthGate, MemoryStore, SqliteStore,
};

/// The allocator `tapit` uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 5;

/// When each process reached something: the first, the median, the 90th percentile and the
/// last. A median close to the last means the processes move as one bunch (a store that
/// answers a whole batch at once), close to the first a few stragglers.
#[derive(Default)]
struct Span {
    times: Vec<Duration>,
}

impl Span {
    fn add(&mut self, at: Duration) {
        self.times.push(at);
    }

    fn first(&self) -> Option<Duration> {
        self.times.iter().min().copied()
    }

    fn print(&mut self, what: &str) {
        self.times.sort();
        let at = |q: usize| self.times[(self.times.len() - 1) * q / 100];
        let (first, last) = (at(0), at(100));
        println!(
            "{what:<36} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>6}",
            first,
            at(50),
            at(90),
            last,
            last - first,
            self.times.len()
        );
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next().map(|s| s.parse()) {
        None => 1000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            println!("usage: fanout_timeline [PROCESSES] [sqlite]");
            std::process::exit(2);
        }
    };
    let sqlite = args.next().as_deref() == Some("sqlite");
    let workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    for run in 1..=RUNS {
        let store: DynDeploymentStore = if sqlite {
            let path = dir.path().join(format!("history-{run}.db"));
            Arc::new(SqliteStore::open(path).expect("SQLite store"))
        } else {
            Arc::new(MemoryStore::new())
        };
        let platform = InMemoryPlatform::new();
        let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let specs: Vec<(&str, u32, bool)> = names.iter().map(|s| (s.as_str(), 1, false)).collect();
        let app = platform.add_app("bench", &specs);
        let instant = Behavior::healthy().start_delay(Duration::ZERO);
        platform.push_image(&app, "v1", instant.clone());
        platform.seed_release(&app, "v1");
        platform.push_image(&app, "v2", instant);
        platform.set_latency(Duration::from_millis(10));
        // Recording calls costs a little; only the printed run pays it.
        platform.record_calls(run == RUNS);
        let engine = Engine::builder()
            .deployer(Arc::new(platform.clone()))
            .registry(Arc::new(platform.clone()))
            .store(store)
            .default_strategy(Arc::new(AllAtOnce))
            .health_gate(HealthGate {
                min_healthy_time: Duration::ZERO,
                poll_interval: Duration::from_millis(1),
                ..HealthGate::default()
            })
            .concurrency(n)
            .build()
            .expect("engine");
        runtime.block_on(async {
            let clock = tokio::time::Instant::now();
            let start = SystemTime::now();
            let mut handle = engine
                .deploy(&app, DeployRequest::new().docker_tag("v2".parse().expect("tag")))
                .await
                .expect("deploy");
            let returned = clock.elapsed();
            let mut events = handle.events();
            let collect = tokio::spawn(async move {
                let mut seen: BTreeMap<String, Span> = BTreeMap::new();
                while let Some(e) = events.next().await {
                    let what = match &e.kind {
                        EventKind::Started { .. } => "deployment started".to_owned(),
                        EventKind::ProcessStarted { .. } => "process started".to_owned(),
                        EventKind::Step { message, .. } => {
                            message.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
                        }
                        EventKind::ProcessFinished { .. } => "process finished".to_owned(),
                        _ => continue,
                    };
                    let at = e.at.duration_since(start).unwrap_or_default();
                    seen.entry(what).or_default().add(at);
                }
                seen
            });
            let record = handle.wait().await.expect("deployment");
            let total = clock.elapsed();
            let events = collect.await.expect("event collector");
            println!(
                "run {run}: {n} processes, {} store: {:?}, deploy() returned after {returned:.1?}, done after {total:.1?}",
                if sqlite { "SQLite" } else { "in-memory" },
                record.status,
            );
            if run < RUNS {
                return;
            }
            let mut calls: BTreeMap<String, Span> = BTreeMap::new();
            for call in platform.calls() {
                calls
                    .entry(format!("call {:?}", call.op))
                    .or_default()
                    .add(call.at.duration_since(clock));
            }
            let mut rows: Vec<(String, Span)> = calls.into_iter().chain(events).collect();
            rows.sort_by_key(|(_, s)| s.first());
            println!(
                "\n{:<36} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}",
                "", "first", "median", "90%", "last", "spread", "count"
            );
            for (what, mut span) in rows {
                span.print(&what);
            }
        });
    }
}
