//! SQLite-only tests: persistence across reopen, sharing between handles, schema versions.
use std::time::UNIX_EPOCH;

use super::rows::{from_ms, to_ms};
use super::schema::SCHEMA_VERSION;
use super::writer::Job;
use super::*;
use crate::domain::ProcessName;
use crate::record::ProcessRecord;
use crate::store::DeploymentStoreExt;
use crate::store::conformance;

fn target(app: &str) -> Target {
    Target::new(AppName::new(app).unwrap(), ProcessName::default_process())
}

#[tokio::test]
async fn conformance_in_memory() {
    conformance::run_all(&SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("nested/tapit.db")).unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn conformance_behind_dyn_arc() {
    let store: crate::store::DynDeploymentStore = Arc::new(SqliteStore::open_in_memory().unwrap());
    conformance::run_all(&*store).await;
}

#[tokio::test]
async fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapit.db");
    let rec = conformance::sample_record(&AppName::new("reopen").unwrap());
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create(&rec).await.unwrap();
        let step = conformance::step(Some("default"), "launched");
        store.append_step(&rec.id, &step).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let got = store.latest(&rec.app).await.unwrap().unwrap();
    assert_eq!(got.id, rec.id);
    assert_eq!(got.processes.len(), rec.processes.len());
    let p = got.process(&ProcessName::default_process()).unwrap();
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].message, "launched");
}

#[tokio::test]
async fn two_handles_share_history_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapit.db");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();

    let rec = conformance::sample_record(&AppName::new("shared").unwrap());
    a.create(&rec).await.unwrap();
    b.set_status(&rec.id, DeploymentStatus::Succeeded)
        .await
        .unwrap();
    let seen = a.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(seen.status, DeploymentStatus::Succeeded);
    assert_eq!(b.list(&rec.app, 10).await.unwrap().len(), 1);

    let t = target("shared");
    let (ha, hb) = (DeploymentId::new(), DeploymentId::new());
    let lease = Duration::from_secs(60);
    assert_eq!(a.try_lock(&t, &ha, lease).await.unwrap(), None);
    assert_eq!(b.try_lock(&t, &hb, lease).await.unwrap(), Some(ha));
    assert_eq!(b.lock_holder(&t).await.unwrap(), Some(ha));
    a.unlock(&t, &ha).await.unwrap();
    assert_eq!(b.try_lock(&t, &hb, lease).await.unwrap(), None);
    assert_eq!(a.lock_holder(&t).await.unwrap(), Some(hb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_handles_grant_one_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapit.db");
    let t = target("race");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = SqliteStore::open(&path).unwrap();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let me = DeploymentId::new();
            let got = store.try_lock(&t, &me, Duration::from_secs(60)).await;
            (me, got.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (me, got) = task.await.unwrap();
        if got.is_none() {
            winners.push(me);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one holder: {winners:?}");
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapit.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let e = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("upgrade Tapitalee"), "{e}");
}

#[test]
fn debug_shows_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapit.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.path(), Some(path.as_path()));
    let dbg = format!("{store:?}");
    assert!(
        dbg.contains("tapit.db") && !dbg.contains("Connection"),
        "{dbg}"
    );
    let mem = format!("{:?}", SqliteStore::open_in_memory().unwrap());
    assert!(mem.contains(":memory:"), "{mem}");
}

#[test]
fn odd_times_do_not_panic() {
    let before_epoch = UNIX_EPOCH - Duration::from_millis(1500);
    assert_eq!(to_ms(before_epoch), -1500);
    assert_eq!(from_ms(-1500).unwrap(), before_epoch);
    assert_eq!(to_ms(UNIX_EPOCH), 0);
    let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000);
    assert_eq!(from_ms(to_ms(far)).unwrap(), far);
    for ms in [i64::MIN, i64::MAX, -1, 1] {
        let _ = from_ms(ms).map(to_ms);
    }
}

/// A deployment of `n` pending processes `p0`, `p1`, …
fn wide_record(n: usize) -> DeploymentRecord {
    let mut rec = conformance::sample_record(&conformance::fresh_app("wide"));
    rec.processes = (0..n)
        .map(|i| ProcessRecord::pending(ProcessName::new(format!("p{i}")).unwrap(), "rolling"))
        .collect();
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_writers_all_land_in_order() {
    const TASKS: usize = 200;
    const CHANGES: u32 = 10;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tapit.db")).unwrap();
    let rec = wide_record(TASKS);
    store.create(&rec).await.unwrap();
    let before = store.writer.commits();

    let mut tasks = tokio::task::JoinSet::new();
    for p in rec.processes.clone() {
        let (store, id) = (store.clone(), rec.id);
        tasks.spawn(async move {
            let mut p = p;
            for k in 1..=CHANGES {
                p.state.steps_done = k;
                let change = conformance::step(Some(p.process.as_str()), &format!("{k}"));
                store.record_change(&id, &p, &change).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let commits = store.writer.commits() - before;

    // Read back through a second store on the file: everything is committed.
    let got = SqliteStore::open(dir.path().join("tapit.db"))
        .unwrap()
        .get(&rec.id)
        .await
        .unwrap()
        .unwrap();
    for (i, p) in got.processes.iter().enumerate() {
        assert_eq!(p.process.as_str(), format!("p{i}"));
        assert_eq!(p.state.steps_done, CHANGES);
        let order: Vec<_> = p.steps.iter().map(|s| s.message.as_str()).collect();
        let want: Vec<_> = (1..=CHANGES).map(|k| k.to_string()).collect();
        assert_eq!(order, want, "{}'s changes, in order", p.process);
    }
    let calls = TASKS as u64 * u64::from(CHANGES);
    assert!(
        commits < calls,
        "concurrent calls share transactions: {commits} commits for {calls} calls"
    );
}

/// Holds the writer thread inside a job until the returned sender is dropped, so that the
/// calls made meanwhile queue up and run in the next transaction, together.
async fn hold_the_writer(store: &SqliteStore) -> std::sync::mpsc::Sender<()> {
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let released = std::sync::Mutex::new(released);
    let (job, _reply) = Job::new(false, move |_: &rows::Db| {
        if let Some(tx) = started_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let _ = released.lock().unwrap().recv();
        Ok(())
    });
    store.writer.send(job).unwrap();
    started.await.unwrap();
    release
}

#[tokio::test]
async fn a_failing_job_rolls_back_alone() {
    let store = SqliteStore::open_in_memory().unwrap();
    let rec = wide_record(2);
    store.create(&rec).await.unwrap();
    let (t, holder) = (target("savepoints"), DeploymentId::new());
    let missing = DeploymentId::new();
    let mut p0 = rec.processes[0].clone();
    p0.state.steps_done = 7;

    let (kept, x) = (
        conformance::step(Some("p0"), "kept"),
        conformance::step(None, "x"),
    );
    let also_kept = conformance::step(None, "also kept");
    let release = hold_the_writer(&store).await;
    let before = store.writer.commits();
    let ok_change = store.record_change(&rec.id, &p0, &kept);
    let not_found = store.record_change(&missing, &p0, &x);
    let duplicate = store.create(&rec);
    // Writes, then fails: its write is undone.
    let (t2, h2) = (t.clone(), holder.to_string());
    let undone = store.call(true, move |conn| {
        rows::try_lock(conn, &target_params(&t2), &h2, 60_000)?;
        Err::<(), _>(Error::store("deliberate", "test"))
    });
    // Writes, then panics: undone too, and the writer survives.
    let (t3, h3) = (t.clone(), holder.to_string());
    let panics = store.call(true, move |conn| -> Result<()> {
        rows::try_lock(conn, &target_params(&t3), &h3, 60_000)?;
        panic!("a deliberate panic in a store call")
    });
    let ok_step = store.append_step(&rec.id, &also_kept);
    let mut all = Box::pin(async {
        futures::join!(ok_change, not_found, duplicate, undone, panics, ok_step)
    });
    // One poll queues every call behind the held writer.
    assert!(futures::poll!(all.as_mut()).is_pending());
    drop(release);
    let (ok_change, not_found, duplicate, undone, panics, ok_step) = all.await;

    ok_change.unwrap();
    ok_step.unwrap();
    assert!(
        matches!(not_found, Err(Error::NotFound { .. })),
        "{not_found:?}"
    );
    assert!(
        duplicate
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );
    assert!(undone.unwrap_err().to_string().contains("deliberate"));
    assert!(panics.unwrap_err().to_string().contains("panicked"));
    assert_eq!(
        store.writer.commits() - before,
        2,
        "the held job's transaction, then one for all six calls"
    );

    let got = store.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(got.processes[0].state.steps_done, 7);
    assert_eq!(got.processes[0].steps.len(), 1);
    assert_eq!(got.steps.last().unwrap().message, "also kept");
    assert_eq!(store.lock_holder(&t).await.unwrap(), None, "rolled back");
    assert_eq!(
        store
            .try_lock(&t, &holder, Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn two_try_locks_in_one_batch_run_in_order() {
    let store = SqliteStore::open_in_memory().unwrap();
    let t = target("one-batch");
    let (a, b) = (DeploymentId::new(), DeploymentId::new());
    let lease = Duration::from_secs(60);
    let release = hold_the_writer(&store).await;
    let mut both = Box::pin(async {
        futures::join!(store.try_lock(&t, &a, lease), store.try_lock(&t, &b, lease))
    });
    assert!(futures::poll!(both.as_mut()).is_pending());
    drop(release);
    let (first, second) = both.await;
    assert_eq!(first.unwrap(), None);
    assert_eq!(second.unwrap(), Some(a));
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapit.db");
    let store = SqliteStore::open(&path).unwrap();
    let clone = store.clone();
    let rec = conformance::sample_record(&conformance::fresh_app("drop"));
    store.create(&rec).await.unwrap();
    // A running drain holds its own reference until it ends, just after its last reply.
    let owner = store.writer.owner();

    drop(store);
    assert!(
        owner.upgrade().is_some(),
        "a clone keeps the connection open"
    );
    assert!(clone.get(&rec.id).await.unwrap().is_some());

    drop(clone);
    // The drain ends on the blocking pool; on a loaded machine that can take a while.
    for _ in 0..1000 {
        if owner.upgrade().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(owner.upgrade().is_none(), "the connection was released");
    let wal = dir.path().join("tapit.db-wal");
    assert!(
        !wal.exists(),
        "the connection was closed (its WAL checkpointed away)"
    );
    assert!(
        SqliteStore::open(&path)
            .unwrap()
            .get(&rec.id)
            .await
            .unwrap()
            .is_some()
    );
}

/// A store call holds tokio's paused clock like `spawn_blocking` does: while a write is in
/// flight the runtime is not idle, so the clock does not jump ahead (with the writer on a
/// thread of its own it did, and a paused-clock deployment on SQLite took simulated minutes
/// more than in memory).
#[tokio::test(start_paused = true)]
async fn store_calls_take_no_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tapit.db")).unwrap();
    let start = tokio::time::Instant::now();
    let writes = async {
        for _ in 0..20 {
            let rec = conformance::sample_record(&conformance::fresh_app("paused"));
            store.create(&rec).await.unwrap();
            store.get(&rec.id).await.unwrap().unwrap();
        }
    };
    // A timer elsewhere in the runtime: an idle runtime would auto-advance to it.
    tokio::select! {
        () = writes => {}
        () = tokio::time::sleep(Duration::from_secs(3600)) => {
            panic!("the paused clock jumped an hour ahead during store calls");
        }
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// The schema of version 1, as Tapitalee 0.x wrote it (foreign keys, `AUTOINCREMENT`).
const SCHEMA_V1: &str = "
CREATE TABLE deployments (
    id TEXT PRIMARY KEY NOT NULL, app TEXT NOT NULL, initiator TEXT NOT NULL,
    image_repo TEXT NOT NULL, image_tag TEXT NOT NULL, image_digest TEXT,
    only_process TEXT, policy TEXT NOT NULL, status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL, finished_at_ms INTEGER, resumes TEXT
) STRICT;
CREATE INDEX deployments_by_app ON deployments (app, id DESC);
CREATE INDEX deployments_by_start ON deployments (app, created_at_ms DESC, id DESC);
CREATE TABLE processes (
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    process TEXT NOT NULL, ordinal INTEGER NOT NULL, strategy TEXT NOT NULL,
    status TEXT NOT NULL, from_rev TEXT, to_rev TEXT, started_at_ms INTEGER,
    finished_at_ms INTEGER, state TEXT NOT NULL,
    PRIMARY KEY (deployment_id, process), UNIQUE (deployment_id, ordinal)
) STRICT;
CREATE TABLE steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    process TEXT, attached INTEGER NOT NULL, at_ms INTEGER NOT NULL, message TEXT NOT NULL
) STRICT;
CREATE INDEX steps_by_deployment ON steps (deployment_id, seq);
CREATE TABLE locks (
    app TEXT NOT NULL, process TEXT NOT NULL, holder TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL, PRIMARY KEY (app, process)
) STRICT;
";

/// Version 2: version 1 without foreign keys and `AUTOINCREMENT`.
const SCHEMA_V2: &str = "
CREATE TABLE deployments (
    id TEXT PRIMARY KEY NOT NULL, app TEXT NOT NULL, initiator TEXT NOT NULL,
    image_repo TEXT NOT NULL, image_tag TEXT NOT NULL, image_digest TEXT,
    only_process TEXT, policy TEXT NOT NULL, status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL, finished_at_ms INTEGER, resumes TEXT
) STRICT;
CREATE INDEX deployments_by_app ON deployments (app, id DESC);
CREATE INDEX deployments_by_start ON deployments (app, created_at_ms DESC, id DESC);
CREATE TABLE processes (
    deployment_id TEXT NOT NULL, process TEXT NOT NULL, ordinal INTEGER NOT NULL,
    strategy TEXT NOT NULL, status TEXT NOT NULL, from_rev TEXT, to_rev TEXT,
    started_at_ms INTEGER, finished_at_ms INTEGER, state TEXT NOT NULL,
    PRIMARY KEY (deployment_id, process), UNIQUE (deployment_id, ordinal)
) STRICT;
CREATE TABLE steps (
    seq INTEGER PRIMARY KEY, deployment_id TEXT NOT NULL,
    process TEXT, attached INTEGER NOT NULL, at_ms INTEGER NOT NULL, message TEXT NOT NULL
) STRICT;
CREATE INDEX steps_by_deployment ON steps (deployment_id, seq);
CREATE TABLE locks (
    app TEXT NOT NULL, process TEXT NOT NULL, holder TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL, PRIMARY KEY (app, process)
) STRICT;
";

/// Rewrites the store at `path` as schema `version` (1 or 2) would have stored the same rows.
fn downgrade(path: &std::path::Path, version: i64) {
    let schema = match version {
        1 => SCHEMA_V1,
        2 => SCHEMA_V2,
        _ => panic!("no schema version {version} to go back to"),
    };
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "ATTACH ':memory:' AS old;
         CREATE TABLE old.d AS SELECT * FROM deployments;
         CREATE TABLE old.p AS SELECT * FROM processes;
         CREATE TABLE old.s AS SELECT * FROM steps;
         CREATE TABLE old.l AS SELECT * FROM locks;
         DROP TABLE steps; DROP TABLE processes; DROP TABLE locks; DROP TABLE deployments;",
    )
    .unwrap();
    conn.execute_batch(schema).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO deployments SELECT {DEPLOYMENT_COLUMNS} FROM old.d;
         INSERT INTO processes SELECT deployment_id, process, ordinal, strategy, status,
             from_rev, to_rev, started_at_ms, finished_at_ms, state FROM old.p;
         INSERT INTO steps SELECT s.seq, d.id, s.process, s.attached, s.at_ms, s.message
             FROM old.s s JOIN old.d d ON d.n = s.deployment;
         INSERT INTO steps (deployment_id, process, attached, at_ms, message)
             SELECT p.deployment_id, p.process, 1,
                 json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]')
             FROM old.p p, json_each('[' || replace(rtrim(p.steps, char(10)), char(10), ',') || ']') j
             WHERE p.steps != '' ORDER BY p.n, j.key;
         INSERT INTO locks SELECT * FROM old.l;
         PRAGMA user_version = {version};"
    ))
    .unwrap();
}

/// The columns of a deployment row, in the order of every schema version's table.
const DEPLOYMENT_COLUMNS: &str = "id, app, initiator, image_repo, image_tag, image_digest, \
     only_process, policy, status, created_at_ms, finished_at_ms, resumes";

#[tokio::test]
async fn upgrades_a_version_1_store_keeping_its_history() {
    upgrades_keeping_history(1).await;
}

#[tokio::test]
async fn upgrades_a_version_2_store_keeping_its_history() {
    upgrades_keeping_history(2).await;
}

async fn upgrades_keeping_history(version: i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapit.db");
    let app = conformance::fresh_app("upgrade");
    let record = conformance::sample_record(&app);
    let lock = target("upgrade-lock");
    let before = {
        let store = SqliteStore::open(&path).unwrap();
        store.create(&record).await.unwrap();
        store
            .append_step(
                &record.id,
                &conformance::step(Some("default"), "before the upgrade"),
            )
            .await
            .unwrap();
        store
            .try_lock(&lock, &record.id, Duration::from_secs(600))
            .await
            .unwrap();
        store.get(&record.id).await.unwrap().unwrap()
    };
    assert!(!before.processes[0].steps.is_empty() && !before.steps.is_empty());
    downgrade(&path, version);
    let seq_v1: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT MAX(seq) FROM steps", [], |r| r.get(0))
        .unwrap();
    assert!(seq_v1 > 0, "the sample has steps");

    let store = SqliteStore::open(&path).unwrap();
    let read = store.get(&record.id).await.unwrap().expect("kept");
    assert_eq!(
        read, before,
        "every row of version {version} survives the upgrade"
    );
    // Still held: the lock table is untouched.
    let other = DeploymentId::new();
    assert_eq!(
        store
            .try_lock(&lock, &other, Duration::from_secs(60))
            .await
            .unwrap(),
        Some(record.id)
    );
    // New steps come after the old ones, under the process and the deployment.
    let mut process = record.processes[0].clone();
    process.status = crate::record::ProcessStatus::Succeeded;
    let added = conformance::step(Some(process.process.as_str()), "after the upgrade");
    store
        .record_changes(&record.id, &process, std::slice::from_ref(&added))
        .await
        .unwrap();
    store
        .append_step(
            &record.id,
            &conformance::step(None, "deployment-level, after"),
        )
        .await
        .unwrap();
    let read = store.get(&record.id).await.unwrap().unwrap();
    let steps = &read.processes[0].steps;
    assert_eq!(
        steps.last().map(|s| s.message.as_str()),
        Some("after the upgrade")
    );
    assert_eq!(steps.len(), before.processes[0].steps.len() + 1);
    assert_eq!(
        read.steps.last().map(|s| s.message.as_str()),
        Some("deployment-level, after")
    );
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let schema: String = conn
        .query_row(
            "SELECT group_concat(sql, ';') FROM sqlite_master",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !schema.contains("REFERENCES") && !schema.contains("AUTOINCREMENT"),
        "{schema}"
    );
    assert!(
        !schema.contains("_old") && schema.contains("steps_by_deployment ON steps (deployment)"),
        "{schema}"
    );
    let seq: i64 = conn
        .query_row("SELECT MAX(seq) FROM steps", [], |r| r.get(0))
        .unwrap();
    assert!(
        seq > seq_v1,
        "numbers keep increasing: {seq} after {seq_v1}"
    );
}

/// The writer remembers row numbers; a transaction undone must take the numbers it taught it
/// along, or the next deployment, given the same numbers, would receive the undone one's writes.
#[tokio::test]
async fn an_undone_create_leaves_no_row_numbers_behind() {
    let store = SqliteStore::open_in_memory().unwrap();
    let app = conformance::fresh_app("undone");
    let undone = conformance::sample_record(&app);
    let encoded = undone
        .processes
        .iter()
        .map(rows::ProcessRow::encode)
        .collect::<Result<Vec<_>>>()
        .unwrap();
    let r = undone.clone();
    let (job, reply) = Job::new(true, move |db: &rows::Db| {
        rows::create(db, &r, &encoded)?;
        Err::<(), _>(Error::store("fails after creating", "on purpose"))
    });
    store.writer.send(job).unwrap();
    assert!(reply.await.unwrap().is_err());
    assert!(store.get(&undone.id).await.unwrap().is_none(), "undone");

    // The next deployment is given the row numbers the undone one had.
    let kept = conformance::sample_record(&app);
    store.create(&kept).await.unwrap();
    let before = store.get(&kept.id).await.unwrap().unwrap();

    let process = &undone.processes[0];
    let step = conformance::step(Some(process.process.as_str()), "for the undone one");
    let err = store
        .record_change(&undone.id, process, &step)
        .await
        .expect_err("the undone deployment does not exist");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = store
        .append_step(&undone.id, &step)
        .await
        .expect_err("the undone deployment does not exist");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(store.get(&kept.id).await.unwrap().unwrap(), before);
}
