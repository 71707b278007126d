//! Deployers in separate OS processes race for the same app's process lock through one
//! DynamoDB table (moto on 127.0.0.1).
//!
//! The test binary runs itself again as each deployer (`TAPIT_DYNAMO_RACE_CHILD` set). First a
//! deployer takes the lock with a short lease and exits without releasing it (a crash); then
//! racers each run a few deployments: create the record, wait for the lock (bounded), record
//! changes while holding it (checking the table still names it), finish (status and release
//! in one write). Everything a deployer observed is written to its deployment's steps, and
//! the parent checks, from the table alone:
//!
//! - nobody took the crashed deployer's lock before its lease and margin ran out;
//! - holding intervals never overlap: exactly one holder at a time;
//! - every refusal named a deployment that was holding the lock during the refused call;
//! - nothing is lost: every deployment is listed, finished, with every step in order.

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tapitalee_aws::{AwsConfig, DynamoStore, RateLimits, RetryPolicy, StaticCredentials};
use tapitalee_core::testkit::store_conformance::fresh_app;
use tapitalee_core::{
    AppName, DeploymentId, DeploymentRecord, DeploymentStatus, DeploymentStore, DockerTag,
    ImageRef, Initiator, ProcessName, ProcessRecord, ProcessStatus, RollbackPolicy, Secret,
    StepRecord, Target,
};

const CHILD_ENV: &str = "TAPIT_DYNAMO_RACE_CHILD";
const RACERS: usize = 6;
const ROUNDS: usize = 3;
const WORK_STEPS: u32 = 3;
/// The crashed deployer's lease; the store's margin is min(lease, 5 s), so 1.5 s more.
const CRASH_LEASE: Duration = Duration::from_millis(1500);
/// The racers' lease: far longer than the test, so only releases pass the lock on.
const LEASE: Duration = Duration::from_secs(120);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match std::env::var(CHILD_ENV) {
        Ok(spec) => rt.block_on(child(&spec)),
        Err(_) => rt.block_on(parent()),
    }
}

fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn store(endpoint: &str, table: &str) -> DynamoStore {
    let config = AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(StaticCredentials::new("testing", Secret::new("testing")))
        .rate_limits(RateLimits::unlimited())
        // moto answers concurrent TransactWriteItems with HTTP 500 now and then: retried.
        .retry(RetryPolicy {
            max_attempts: 25,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
        })
        .build()
        .expect("a configuration");
    DynamoStore::builder()
        .table(table)
        .aws_config(config)
        .connect()
        .await
        .expect("a store")
}

fn default_process() -> ProcessName {
    ProcessName::new("default").expect("a process name")
}

fn step(process: bool, message: String) -> StepRecord {
    StepRecord {
        at: SystemTime::now(),
        process: process.then(default_process),
        message,
    }
}

async fn new_deployment(store: &DynamoStore, app: &AppName, who: &str) -> DeploymentRecord {
    let id = DeploymentId::new();
    let rec = DeploymentRecord {
        id,
        app: app.clone(),
        initiator: Initiator::new(who).expect("an initiator"),
        image: ImageRef::new("app", DockerTag::default()).expect("an image"),
        only_process: None,
        policy: RollbackPolicy::Independent,
        status: DeploymentStatus::Running,
        created_at: id.created_at(),
        finished_at: None,
        resumes: None,
        steps: Vec::new(),
        processes: vec![ProcessRecord::pending(default_process(), "rolling")],
    };
    store.create(&rec).await.expect("create");
    rec
}

/// Takes the lock for `id`, waiting (bounded); every refusal is written as a deployment
/// step. Returns (start of the successful call, its end) in unix ms.
async fn acquire(
    store: &DynamoStore,
    target: &Target,
    id: &DeploymentId,
    lease: Duration,
) -> (i64, i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let from = now_ms();
        let got = store.try_lock(target, id, lease).await.expect("try_lock");
        let to = now_ms();
        match got {
            None => return (from, to),
            Some(holder) => {
                assert_ne!(holder, *id, "refused in favour of itself");
                store
                    .append_step(
                        id,
                        &step(
                            false,
                            format!("refused holder={holder} from={from} to={to}"),
                        ),
                    )
                    .await
                    .expect("append a refusal");
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} waited more than 120 s for {target}"
        );
        tokio::time::sleep(Duration::from_millis(
            5 + u64::try_from(to % 20).unwrap_or(0),
        ))
        .await;
    }
}

async fn child(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let [endpoint, table, app, role, index] = parts[..] else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let store = store(endpoint, table).await;
    let app = AppName::new(app).expect("an app name");
    let target = Target::new(app.clone(), default_process());

    if role == "crasher" {
        let rec = new_deployment(&store, &app, "crasher").await;
        let (from, at) = acquire(&store, &target, &rec.id, CRASH_LEASE).await;
        store
            .append_step(
                &rec.id,
                &step(true, format!("acquired from={from} at={at}")),
            )
            .await
            .expect("append");
        // Crash: exit holding the lock, without finishing.
        std::process::exit(0);
    }

    for _ in 0..ROUNDS {
        let rec = new_deployment(&store, &app, &format!("racer {index}")).await;
        let (from, at) = acquire(&store, &target, &rec.id, LEASE).await;
        let mut p = rec.processes[0].clone();
        p.status = ProcessStatus::Running;
        store
            .record_change(
                &rec.id,
                &p,
                &step(true, format!("acquired from={from} at={at}")),
            )
            .await
            .expect("record_change");
        for k in 1..=WORK_STEPS {
            let holder = store.lock_holder(&target).await.expect("lock_holder");
            assert_eq!(
                holder,
                Some(rec.id),
                "the table names the holder while it works"
            );
            p.state.steps_done = k;
            store
                .record_change(&rec.id, &p, &step(true, format!("work {k}")))
                .await
                .expect("record_change");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        p.status = ProcessStatus::Succeeded;
        let released = now_ms();
        store
            .record_change(&rec.id, &p, &step(true, format!("released at={released}")))
            .await
            .expect("record_change");
        store
            .finish(
                &rec.id,
                DeploymentStatus::Succeeded,
                std::slice::from_ref(&target),
            )
            .await
            .expect("finish");
        let done = now_ms();
        store
            .append_step(&rec.id, &step(false, format!("finished at={done}")))
            .await
            .expect("append");
    }
}

async fn run_children(endpoint: &str, table: &str, app: &AppName, roles: &[(&str, usize)]) {
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = roles
        .iter()
        .map(|(role, index)| {
            tokio::process::Command::new(&exe)
                .env(
                    CHILD_ENV,
                    format!("{endpoint}|{table}|{app}|{role}|{index}"),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn a deployer")
        })
        .collect();
    let outputs = tokio::time::timeout(
        Duration::from_secs(300),
        futures::future::join_all(children.into_iter().map(|c| c.wait_with_output())),
    )
    .await
    .expect("deployers finish within 300 s");
    for (out, (role, index)) in outputs.into_iter().zip(roles) {
        let out = out.expect("a deployer's output");
        assert!(
            out.status.success(),
            "deployer {role} {index} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `key=value` words of a step message.
fn fields(message: &str) -> HashMap<&str, &str> {
    message
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
}

fn ms(fields: &HashMap<&str, &str>, key: &str) -> i64 {
    fields[key].parse().expect("a time in ms")
}

async fn parent() {
    let endpoint = support::moto().endpoint.clone();
    let table = format!(
        "tapit-race-{}",
        DeploymentId::new().to_string().trim_start_matches("dep-")
    );
    let app = fresh_app("race");
    let store = store(&endpoint, &table).await;
    store.create_table().await.expect("create the table");

    run_children(&endpoint, &table, &app, &[("crasher", 0)]).await;
    let racers: Vec<_> = (0..RACERS).map(|i| ("racer", i)).collect();
    run_children(&endpoint, &table, &app, &racers).await;

    // Everything is in the table.
    let listed = store.list(&app, 1000).await.expect("list");
    assert_eq!(
        listed.len(),
        1 + RACERS * ROUNDS,
        "every deployment is listed"
    );
    let mut records = Vec::new();
    for r in &listed {
        records.push(
            store
                .get(&r.id)
                .await
                .expect("get")
                .expect("a listed deployment exists"),
        );
    }
    let (crashed, racers): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|r| r.initiator.as_str() == "crasher");
    let crashed = crashed[0];
    assert_eq!(
        crashed.status,
        DeploymentStatus::Running,
        "the crashed deployer never finished"
    );
    let crash = fields(&crashed.processes[0].steps[0].message);
    let takeover = ms(&crash, "from") + i64::try_from((CRASH_LEASE * 2).as_millis()).unwrap();

    // Holding intervals, inside the real ones: from the end of the successful try_lock to
    // the start of the finishing write.
    let mut held: Vec<(i64, i64, DeploymentId)> = Vec::new();
    let mut calls: HashMap<DeploymentId, (i64, i64)> = HashMap::new();
    calls.insert(crashed.id, (ms(&crash, "from"), i64::MAX));
    for r in &racers {
        assert_eq!(r.status, DeploymentStatus::Succeeded, "{} finished", r.id);
        assert!(r.finished_at.is_some());
        let p = &r.processes[0];
        assert_eq!(p.status, ProcessStatus::Succeeded);
        assert_eq!(p.state.steps_done, WORK_STEPS);
        let messages: Vec<&str> = p.steps.iter().map(|s| s.message.as_str()).collect();
        assert_eq!(
            messages.len(),
            2 + WORK_STEPS as usize,
            "{}: {messages:?}",
            r.id
        );
        assert!(messages[0].starts_with("acquired "));
        let work: Vec<String> = (1..=WORK_STEPS).map(|k| format!("work {k}")).collect();
        assert_eq!(
            messages[1..=WORK_STEPS as usize],
            work,
            "{}'s steps in order",
            r.id
        );
        assert!(messages[messages.len() - 1].starts_with("released "));
        let acquired = fields(messages[0]);
        let released = ms(&fields(messages[messages.len() - 1]), "at");
        let finished = r
            .steps
            .iter()
            .find(|s| s.message.starts_with("finished "))
            .map(|s| ms(&fields(&s.message), "at"))
            .expect("a finished step");
        assert!(
            ms(&acquired, "at") >= takeover,
            "{} took the crashed deployer's lock {} ms before its lease and margin ended",
            r.id,
            takeover - ms(&acquired, "at")
        );
        held.push((ms(&acquired, "at"), released, r.id));
        calls.insert(r.id, (ms(&acquired, "from"), finished));
    }
    held.sort();
    for pair in held.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        assert!(
            start >= end,
            "{a} held the lock until {end}, {b} took it at {start}"
        );
    }

    // Every loser was told of a deployment holding the lock during its call.
    let mut refusals = 0;
    for r in &records {
        for s in r.steps.iter().filter(|s| s.message.starts_with("refused ")) {
            refusals += 1;
            let f = fields(&s.message);
            let holder: DeploymentId = f["holder"].parse().expect("a deployment id");
            assert_ne!(holder, r.id);
            let (from, until) = *calls
                .get(&holder)
                .unwrap_or_else(|| panic!("{} was refused by {holder}, no deployer", r.id));
            assert!(
                from <= ms(&f, "to") && until >= ms(&f, "from"),
                "{} was refused by {holder} at {}..{}, which held it only within {from}..{until}",
                r.id,
                ms(&f, "from"),
                ms(&f, "to")
            );
        }
    }
    assert!(
        refusals >= RACERS,
        "the racers contended: {refusals} refusals"
    );
    assert_eq!(
        store
            .lock_holder(&Target::new(app, default_process()))
            .await
            .expect("holder"),
        None
    );
}
