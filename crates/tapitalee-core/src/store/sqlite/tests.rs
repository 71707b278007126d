//! SQLite-only tests: persistence across reopen, sharing between handles, schema versions.
use super::*;
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
    assert!(e.contains("upgrade tapit"), "{e}");
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
