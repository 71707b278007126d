//! Fan-out benchmark of the engine on the in-memory platform.
//!
//! - `engine_overhead/N`: a whole-app deploy of N processes with instant platform calls: the
//!   engine's own cost per process (locks, history, events, health gate, strategy steps).
//! - `engine_overhead_sqlite/N`: the same with the default store, SQLite in a file.
//! - `latency_10ms/N`: the same with 10 ms of latency on every platform call, against the
//!   ideal critical path (one process's deployment timed on a paused clock, where only the
//!   simulated latencies take time; processes run concurrently, so that is the ideal for any N). The ratio and the peak heap are printed after each group.
//!
//! - `runtime_floor/N` and `runtime_floor_2us/N`: no engine at all, N bare tokio tasks that
//!   wait out the same pattern of latencies as a process's deployment (two deployment-level
//!   calls, then one pair of concurrent calls and five more, 10 ms each), doing nothing or
//!   2 µs of busy work after each. What the runtime and its 1 ms timer cost by themselves at
//!   that width, and how much work per process and call fits under 1.05×.
//!
//! Run: `cargo bench --bench fanout`

#![allow(clippy::print_stdout, missing_docs)]

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tapitalee::testkit::{AllAtOnce, Behavior, InMemoryPlatform};
use tapitalee::{
    AppName, DeployRequest, DeploymentStatus, DynDeploymentStore, Engine, HealthGate, MemoryStore,
    SqliteStore,
};

/// Counts live and peak heap bytes of mimalloc, the allocator `tapit` uses (with glibc's
/// malloc, tokio's workers contend on its arena locks freeing each other's blocks).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// Counting costs two contended atomics per allocation: on only while memory is measured.
static COUNTING: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards to mimalloc; only adds atomic bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            let size = isize::try_from(layout.size()).unwrap_or(isize::MAX);
            let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(
                isize::try_from(layout.size()).unwrap_or(0),
                Ordering::Relaxed,
            );
        }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const LATENCY: Duration = Duration::from_millis(10);

fn process_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i}")).collect()
}

/// A platform with `n` processes of one instance each, running v1, with v2 pushed; an engine
/// deploying with unbounded concurrency, instant health (no start delay, no minimum healthy
/// time) so only the engine and the platform calls are measured.
fn setup(n: usize, latency: Duration) -> (InMemoryPlatform, AppName, Engine) {
    setup_with(n, latency, Arc::new(MemoryStore::new()))
}

fn setup_with(
    n: usize,
    latency: Duration,
    store: DynDeploymentStore,
) -> (InMemoryPlatform, AppName, Engine) {
    let platform = InMemoryPlatform::new();
    platform.record_calls(false);
    let names = process_names(n);
    let specs: Vec<(&str, u32, bool)> = names.iter().map(|s| (s.as_str(), 1, false)).collect();
    let app = platform.add_app("bench", &specs);
    let instant = Behavior::healthy().start_delay(Duration::ZERO);
    platform.push_image(&app, "v1", instant.clone());
    platform.seed_release(&app, "v1");
    platform.push_image(&app, "v2", instant);
    platform.set_latency(latency);
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
        .concurrency(n.max(1))
        .build()
        .expect("engine");
    (platform, app, engine)
}

async fn deploy(engine: &Engine, app: &AppName, tag: &str) {
    let record = engine
        .deploy(
            app,
            DeployRequest::new().docker_tag(tag.parse().expect("tag")),
        )
        .await
        .expect("deploy")
        .wait()
        .await
        .expect("wait");
    assert_eq!(record.status, DeploymentStatus::Succeeded);
}

/// The ideal critical path: the same one-process deployment with the same latency on tokio's
/// paused clock, where time advances exactly by the simulated latencies and the engine's own
/// work takes no time. Returns it and the number of platform calls made.
fn critical_path() -> (Duration, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("paused runtime");
    let (platform, app, engine) = runtime.block_on(async { setup(1, LATENCY) });
    platform.record_calls(true);
    let took = runtime.block_on(async {
        let start = tokio::time::Instant::now();
        deploy(&engine, &app, "v2").await;
        start.elapsed()
    });
    (took, platform.calls().len())
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sizes = [1usize, 100, 1000];

    let mut group = c.benchmark_group("engine_overhead");
    group.sample_size(20);
    for &n in &sizes {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (_platform, app, engine) = setup(n, Duration::ZERO);
                    let start = Instant::now();
                    runtime.block_on(deploy(&engine, &app, "v2"));
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();

    // The same with the default embedded store: SQLite in a file (WAL), every step persisted.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("engine_overhead_sqlite");
    group.sample_size(10);
    for &n in &sizes {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let path = dir.path().join(format!("history-{n}-{i}.db"));
                    let store = Arc::new(SqliteStore::open(&path).expect("sqlite store"));
                    let (_platform, app, engine) = setup_with(n, Duration::ZERO, store);
                    let start = Instant::now();
                    runtime.block_on(deploy(&engine, &app, "v2"));
                    total += start.elapsed();
                    let _ = std::fs::remove_file(&path);
                }
                total
            });
        });
    }
    group.finish();

    let (ideal, calls) = critical_path();
    println!(
        "ideal critical path: {ideal:?} ({calls} platform calls of {LATENCY:?}, some concurrent; \
         measured on a paused clock)"
    );
    let memory = latency_group(c, &runtime, "latency_10ms", &sizes, &|_| {
        Arc::new(MemoryStore::new())
    });
    report("in-memory store", &memory, &sizes, ideal);
    let sqlite = latency_group(c, &runtime, "latency_10ms_sqlite", &sizes, &|path| {
        Arc::new(SqliteStore::open(path).expect("sqlite store"))
    });
    report("SQLite store (file, WAL)", &sqlite, &sizes, ideal);
    for (name, work) in [
        ("runtime_floor", Duration::ZERO),
        ("runtime_floor_2us", Duration::from_micros(2)),
    ] {
        let floor = floor_group(c, &runtime, name, &sizes, work);
        report(
            &format!("the runtime alone, {work:?} of work per task and call (no engine)"),
            &floor,
            &sizes,
            ideal,
        );
    }
}

/// Spins for `work` (0: returns at once), standing in for an engine's work between two
/// calls.
fn busy(work: Duration) {
    let start = Instant::now();
    while start.elapsed() < work {
        std::hint::spin_loop();
    }
}

/// The engine's pattern of waits with none of its work: two calls for the whole deployment,
/// then N tasks that each wait out two concurrent calls and five more in sequence, `work` of
/// busy work after each (a process's deployment in the other groups, on the same runtime).
fn floor_group(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    sizes: &[usize],
    work: Duration,
) -> Vec<Run> {
    let mut summary = Vec::new();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for &n in sizes {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    runtime.block_on(async {
                        for _ in 0..2 {
                            tokio::time::sleep(LATENCY).await;
                            busy(work);
                        }
                        let mut tasks = tokio::task::JoinSet::new();
                        for _ in 0..n {
                            tasks.spawn(async move {
                                tokio::join!(
                                    tokio::time::sleep(LATENCY),
                                    tokio::time::sleep(LATENCY)
                                );
                                busy(work);
                                for _ in 0..5 {
                                    tokio::time::sleep(LATENCY).await;
                                    busy(work);
                                }
                            });
                        }
                        while tasks.join_next().await.is_some() {}
                    });
                    let took = start.elapsed();
                    summary.push((n, took, 0));
                    total += took;
                }
                total
            });
        });
    }
    group.finish();
    summary
}

/// One run: processes, wall time, peak heap growth.
type Run = (usize, Duration, usize);

/// Deploys N processes with 10 ms of latency per platform call on the store `store` makes;
/// returns every run for the summary. The peak heap is measured in one more run per size,
/// untimed: counting costs two contended atomics per allocation.
fn latency_group(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    sizes: &[usize],
    store: &dyn Fn(&std::path::Path) -> DynDeploymentStore,
) -> Vec<Run> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut summary = Vec::new();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for &n in sizes {
        let mut measured = false;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let path = dir.path().join(format!("history-{n}-{i}.db"));
                    let (_platform, app, engine) = setup_with(n, LATENCY, store(&path));
                    let start = Instant::now();
                    runtime.block_on(deploy(&engine, &app, "v2"));
                    let took = start.elapsed();
                    summary.push((n, took, 0));
                    total += took;
                    let _ = std::fs::remove_file(&path);
                }
                measured = true;
                total
            });
        });
        if measured {
            let path = dir.path().join(format!("history-{n}-heap.db"));
            let (_platform, app, engine) = setup_with(n, LATENCY, store(&path));
            // Net heap growth from here; frees of older blocks count negative.
            LIVE.store(0, Ordering::Relaxed);
            PEAK.store(0, Ordering::Relaxed);
            COUNTING.store(true, Ordering::Relaxed);
            runtime.block_on(deploy(&engine, &app, "v2"));
            COUNTING.store(false, Ordering::Relaxed);
            let peak = usize::try_from(PEAK.load(Ordering::Relaxed)).unwrap_or(0);
            summary.push((n, Duration::MAX, peak));
            let _ = std::fs::remove_file(&path);
        }
    }
    group.finish();
    summary
}

fn report(store: &str, summary: &[Run], sizes: &[usize], ideal: Duration) {
    if summary.is_empty() {
        return; // the group was filtered out
    }
    println!();
    println!("{store}");
    println!("processes | median wall | x ideal | x 1 process | peak heap growth");
    let median_of = |n: usize| {
        let of_n = || summary.iter().filter(|(m, _, _)| *m == n);
        let peak = of_n().map(|(_, _, p)| *p).max().unwrap_or(0);
        // Timed runs only (the heap's run is not).
        let mut times: Vec<Duration> = of_n()
            .map(|(_, t, _)| *t)
            .filter(|t| *t != Duration::MAX)
            .collect();
        times.sort();
        (times[times.len() / 2], peak)
    };
    let (single, _) = median_of(1);
    for &n in sizes {
        let (median, peak) = median_of(n);
        // A group without a heap run (the runtime floor) has nothing to show there.
        let heap = if peak == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} MiB", peak as f64 / (1024.0 * 1024.0))
        };
        println!(
            "{n:>9} | {:>11.1?} | {:>7.3} | {:>11.3} | {heap:>10}",
            median,
            median.as_secs_f64() / ideal.as_secs_f64(),
            median.as_secs_f64() / single.as_secs_f64(),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
