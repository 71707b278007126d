//! What the DynamoDB store costs per deployment step, against moto server on 127.0.0.1
//! (started by the benchmark; `pip install 'moto[server]'`).
//!
//! - `dynamo_store/record_change`: one deployment step (the process record and the step, one
//!   `TransactWriteItems`), the write a rollout makes after every platform change;
//! - `dynamo_store/record_changes/3`: a step that changes the platform with the two steps held
//!   back before it (an announcement, a pause), one `TransactWriteItems` of 5 items;
//! - `dynamo_store/append_step`, `try_lock` (a renewal), `lock_holder`, `create` (a
//!   deployment of 3 processes), `finish` (final status and 2 locks), `get` (3 processes,
//!   20 steps), `list/10`;
//! - `dynamo_store/control_poll`: what a running deployer pays each second to read its
//!   mailbox (promote and abort from other machines), and `send_control`.
//!
//! Before the timings it prints the API calls each store method makes, and those of a whole
//! rolling deployment of a 3-process app through the engine (in-memory platform, this store), (counted by the SDK
//! interceptor). Latencies on moto measure moto (a Python server that copies the whole table
//! on every transaction), not DynamoDB; the call counts hold anywhere.
//!
//! Run: `cargo bench --features aws --bench dynamo_store`

#![allow(clippy::print_stdout, missing_docs)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tapitalee::aws::{AwsConfig, DynamoStore, RateLimits, RetryPolicy, StaticCredentials};
use tapitalee::{DeploymentId, DeploymentStatus, DeploymentStore, Secret, Target};
use tapitalee_core::testkit::store_conformance::{fresh_app, sample_record, step};

/// moto_server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is installed (pip install 'moto[server]')");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn store(endpoint: &str, table: &str) -> DynamoStore {
    let config = AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(StaticCredentials::new("testing", Secret::new("testing")))
        .rate_limits(RateLimits::unlimited())
        .retry(RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
        })
        .build()
        .expect("a configuration");
    let store = DynamoStore::builder()
        .table(table)
        .aws_config(config)
        .connect()
        .await
        .expect("a store");
    store.create_table().await.expect("the table");
    store
}

/// Prints the API calls of each store method on a fresh deployment.
async fn print_calls(store: &DynamoStore) {
    let calls = |before: &tapitalee::aws::ApiCalls| -> String {
        store
            .api_calls()
            .since(before)
            .iter()
            .map(|(op, n)| format!("{n} {op}"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let app = fresh_app("calls");
    let rec = sample_record(&app);
    let target = Target::new(app.clone(), rec.processes[0].process.clone());
    let holder = rec.id;
    println!("API calls per store method (DynamoDB store):");
    let mut at = store.api_calls();
    macro_rules! measure {
        ($name:expr, $call:expr) => {{
            $call.await.expect($name);
            println!("  {:<34} {}", $name, calls(&at));
            at = store.api_calls();
        }};
    }
    measure!("create (3 processes, 1 step)", store.create(&rec));
    measure!(
        "record_change (a deployment step)",
        store.record_change(&rec.id, &rec.processes[0], &step(Some("default"), "scaled"))
    );
    measure!(
        "record_changes (3 steps)",
        store.record_changes(
            &rec.id,
            &rec.processes[0],
            &[
                step(Some("default"), "announced"),
                step(Some("default"), "paused 10s"),
                step(Some("default"), "scaled to 4")
            ]
        )
    );
    measure!(
        "append_steps (2 steps)",
        store.append_steps(
            &rec.id,
            &[step(Some("default"), "paused"), step(None, "note")]
        )
    );
    measure!(
        "append_step",
        store.append_step(&rec.id, &step(None, "note"))
    );
    measure!("send_control", store.send_control(&rec.id, "promote"));
    measure!("control_messages", store.control_messages(&rec.id));
    measure!(
        "update_process",
        store.update_process(&rec.id, &rec.processes[1])
    );
    measure!(
        "set_status",
        store.set_status(&rec.id, DeploymentStatus::Running)
    );
    measure!(
        "try_lock (take)",
        store.try_lock(&target, &holder, Duration::from_secs(60))
    );
    measure!(
        "try_lock (renew)",
        store.try_lock(&target, &holder, Duration::from_secs(60))
    );
    measure!(
        "try_lock (refused, holder returned)",
        store.try_lock(&target, &DeploymentId::new(), Duration::from_secs(60))
    );
    measure!("lock_holder", store.lock_holder(&target));
    measure!(
        "finish (status + 1 lock)",
        store.finish(
            &rec.id,
            DeploymentStatus::Succeeded,
            std::slice::from_ref(&target)
        )
    );
    measure!("get", store.get(&rec.id));
    measure!("list (1 deployment)", store.list(&app, 10));
    let _ = at;
}

/// Prints the API calls of a whole deployment through the engine: a rolling deployment of
/// `default` (2 instances, load-balanced), `worker` and `scheduler` on the in-memory platform,
/// with its history and locks in the table.
async fn print_deployment_calls(endpoint: &str) {
    use std::sync::Arc;
    use tapitalee::strategies::Rolling;
    use tapitalee::{DeployRequest, Engine, HealthGate};
    use tapitalee_core::testkit::{Behavior, InMemoryPlatform};

    let store = store(endpoint, &table_name()).await;
    let platform = InMemoryPlatform::new();
    platform.record_calls(false);
    let app = platform.add_app(
        "shop",
        &[
            ("default", 2, true),
            ("worker", 1, false),
            ("scheduler", 1, false),
        ],
    );
    platform.push_image(&app, "v1", Behavior::healthy());
    platform.seed_release(&app, "v1");
    platform.push_image(&app, "v2", Behavior::healthy());
    let gate = HealthGate {
        min_healthy_time: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        ..HealthGate::default()
    };
    let engine = Engine::builder()
        .deployer(Arc::new(platform.clone()))
        .registry(Arc::new(platform.clone()))
        .store(Arc::new(store.clone()))
        .default_strategy(Arc::new(Rolling::new()))
        .health_gate(gate)
        .build()
        .expect("an engine");
    let before = store.api_calls();
    let record = engine
        .deploy(
            &app,
            DeployRequest::new().docker_tag("v2".parse().expect("a tag")),
        )
        .await
        .expect("deploy")
        .wait()
        .await
        .expect("the deployment");
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    let calls = store.api_calls().since(&before);
    let stored = store
        .get(&record.id)
        .await
        .expect("get")
        .expect("the record");
    let steps = stored.steps.len()
        + stored
            .processes
            .iter()
            .map(|p| p.steps.len())
            .sum::<usize>();
    let total: u64 = calls.values().sum();
    println!(
        "A rolling deployment of 3 processes through the engine: {steps} steps recorded, {total} \
         API calls: {}",
        calls
            .iter()
            .map(|(op, n)| format!("{n} {op}"))
            .collect::<Vec<_>>()
            .join(" + ")
    );
}

fn table_name() -> String {
    format!(
        "tapit-bench-{}",
        DeploymentId::new().to_string().trim_start_matches("dep-")
    )
}

/// Times `iters` runs of `op` on a fresh table with one deployment of `sample_record`'s shape
/// (moto copies the whole table on every transaction, so each sample starts small).
async fn on_fresh_table<F, Fut>(endpoint: &str, iters: u64, op: F) -> Duration
where
    F: Fn(DynamoStore, tapitalee::DeploymentRecord, u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let store = store(endpoint, &table_name()).await;
    let rec = sample_record(&fresh_app("bench"));
    store.create(&rec).await.expect("create");
    let start = Instant::now();
    for i in 0..iters {
        op(store.clone(), rec.clone(), i).await;
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let moto = Moto::start();
    let endpoint = moto.endpoint.clone();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let store0 = rt.block_on(store(&endpoint, &table_name()));
    rt.block_on(print_calls(&store0));
    rt.block_on(print_deployment_calls(&endpoint));

    let mut g = c.benchmark_group("dynamo_store");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    let lease = Duration::from_secs(60);
    g.bench_function("record_change", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, i| async move {
                let change = step(Some("default"), &format!("routed {i}% of traffic"));
                store
                    .record_change(&rec.id, &rec.processes[0], &change)
                    .await
                    .expect("record_change");
            })
        });
    });
    g.bench_function("record_changes/3", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, i| async move {
                let steps = [
                    step(Some("default"), "canary step announced"),
                    step(Some("default"), "paused 10s"),
                    step(Some("default"), &format!("routed {i}% of traffic")),
                ];
                store
                    .record_changes(&rec.id, &rec.processes[0], &steps)
                    .await
                    .expect("record_changes");
            })
        });
    });
    g.bench_function("send_control", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, _| async move {
                store
                    .send_control(&rec.id, "promote")
                    .await
                    .expect("send_control");
            })
        });
    });
    g.bench_function("control_poll", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, _| async move {
                store
                    .control_messages(&rec.id)
                    .await
                    .expect("control_messages");
            })
        });
    });
    g.bench_function("append_step", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, _| async move {
                store
                    .append_step(&rec.id, &step(None, "note"))
                    .await
                    .expect("append_step");
            })
        });
    });
    g.bench_function("try_lock", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, _| async move {
                let target = Target::new(rec.app.clone(), rec.processes[0].process.clone());
                store
                    .try_lock(&target, &rec.id, lease)
                    .await
                    .expect("try_lock");
            })
        });
    });
    g.bench_function("lock_holder", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, _| async move {
                let target = Target::new(rec.app.clone(), rec.processes[0].process.clone());
                store.lock_holder(&target).await.expect("lock_holder");
            })
        });
    });
    g.bench_function("create", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, _| async move {
                store
                    .create(&sample_record(&rec.app))
                    .await
                    .expect("create");
            })
        });
    });
    g.bench_function("finish", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            on_fresh_table(&endpoint, iters, |store, rec, _| async move {
                let targets: Vec<Target> = rec.processes[..2]
                    .iter()
                    .map(|p| Target::new(rec.app.clone(), p.process.clone()))
                    .collect();
                store
                    .finish(&rec.id, DeploymentStatus::Succeeded, &targets)
                    .await
                    .expect("finish");
            })
        });
    });

    // Reads, on a table of 10 deployments of 3 processes, one with 20 steps.
    let app = fresh_app("reads");
    let reads = rt.block_on(store(&endpoint, &table_name()));
    let rec = sample_record(&app);
    rt.block_on(reads.create(&rec)).expect("create");
    for k in 0..20 {
        rt.block_on(reads.append_step(&rec.id, &step(Some("default"), &format!("step {k}"))))
            .expect("append");
    }
    for _ in 0..9 {
        rt.block_on(reads.create(&sample_record(&app)))
            .expect("create");
    }
    g.bench_function("get", |b| {
        b.to_async(&rt)
            .iter(|| async { reads.get(&rec.id).await.expect("get") });
    });
    g.bench_function("list/10", |b| {
        b.to_async(&rt)
            .iter(|| async { reads.list(&app, 10).await.expect("list") });
    });
    g.finish();
    drop(moto);
}

criterion_group!(benches, bench);
criterion_main!(benches);
