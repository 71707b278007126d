//! The store conformance suite: what every [`DeploymentStore`] must do.
//!
//! Each check is a public async fn over `&dyn DeploymentStore` that panics on failure, so a
//! new implementation proves itself with one test:
//!
//! ```no_run
//! # async fn demo() {
//! use tapitalee_core::MemoryStore;
//! use tapitalee_core::testkit::store_conformance as conformance;
//! conformance::run_all(&MemoryStore::new()).await;
//! # }
//! ```
//!
//! Checks use fresh app names and ids, so they can share one store (and one file, run after
//! run). The lease check sleeps for real (about 120 ms): run it on a normal, unpaused runtime.
//! Times in records are built with millisecond precision, the precision stores keep.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{DeploymentStore, DeploymentStoreExt};
use crate::domain::{AppName, DeploymentId, Digest, DockerTag, ImageRef, Initiator, ProcessName};
use crate::error::{Error, Resource};
use crate::fleet::{Fleet, FleetId, Revision, Target};
use crate::record::{
    DeploymentRecord, DeploymentStatus, ProcessRecord, ProcessStatus, RollbackPolicy, RolloutState,
    StepRecord,
};

/// Runs every check against `store`.
pub async fn run_all(store: &dyn DeploymentStore) {
    create_get_round_trip(store).await;
    update_process_keeps_steps_and_order(store).await;
    record_change_updates_and_appends(store).await;
    record_changes_and_append_steps_keep_order(store).await;
    append_step_to_process_and_deployment(store).await;
    set_status_sets_finished_at_when_final(store).await;
    list_newest_first_without_steps(store).await;
    latest_is_newest_with_steps(store).await;
    list_orders_by_start_then_id(store).await;
    finish_sets_status_and_releases_locks(store).await;
    unknown_ids_are_not_found(store).await;
    duplicate_create_fails(store).await;
    lock_is_exclusive_and_renewable(store).await;
    unlock_only_by_holder(store).await;
    expired_lease_can_be_taken(store).await;
    concurrent_changes_all_land_in_order(store).await;
    concurrent_try_locks_grant_one(store).await;
}

/// `now`, truncated to the millisecond.
pub fn now_ms() -> SystemTime {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// An app name no other check (or earlier run on the same file) uses: `<label>-<ulid>`.
pub fn fresh_app(label: &str) -> AppName {
    let id = DeploymentId::new().to_string();
    let suffix = id.trim_start_matches("dep-");
    AppName::new(format!("{label}-{suffix}")).expect("valid app name")
}

fn process(name: &str) -> ProcessName {
    ProcessName::new(name).expect("valid process name")
}

fn revision(app: &AppName, name: &str, n: u32) -> Revision {
    let image = ImageRef::new(
        format!("registry.local:5000/{app}"),
        DockerTag::new(format!("v{n}")).expect("valid tag"),
    )
    .expect("valid image");
    Revision {
        id: format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{app}-{name}:{n}"),
        image,
    }
}

/// A step at `now` (ms precision) for `process` (or the deployment, with `None`).
pub fn step(process: Option<&str>, message: &str) -> StepRecord {
    StepRecord {
        at: now_ms(),
        process: process.map(self::process),
        message: message.to_owned(),
    }
}

/// A deployment of `app` with every field set: processes `default`, `worker` and `scheduler`
/// (in that order, in varied states, the first with a step that `create` must drop), a
/// digest-pinned image, an end time, a resumed deployment and one deployment-level step.
pub fn sample_record(app: &AppName) -> DeploymentRecord {
    let id = DeploymentId::new();
    let created_at = id.created_at();
    let digest = Digest::new(format!("sha256:{}", "ab".repeat(32))).expect("valid digest");
    let image = ImageRef::new(
        format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{app}"),
        DockerTag::new("v2.0.1-abc").expect("valid tag"),
    )
    .expect("valid image")
    .with_digest(digest);

    let default = process("default");
    let stable = Fleet {
        id: FleetId("ecs-svc/1111".into()),
        target: Target::new(app.clone(), default.clone()),
        revision: revision(app, "default", 1),
    };
    let candidate = Fleet {
        id: FleetId("ecs-svc/2222".into()),
        target: Target::new(app.clone(), default.clone()),
        revision: revision(app, "default", 2),
    };
    let web = ProcessRecord {
        process: default,
        strategy: "canary".into(),
        status: ProcessStatus::RolledBack {
            reason: "5xx rate 12% > 1%".into(),
        },
        from: Some(stable.revision.clone()),
        to: Some(candidate.revision.clone()),
        started_at: Some(created_at + Duration::from_millis(5)),
        finished_at: Some(created_at + Duration::from_millis(90_001)),
        state: RolloutState {
            desired: 4,
            load_balanced: true,
            platform_run: false,
            platform_bake: Duration::from_secs(90),
            stable: Some(stable),
            stable_desired: 4,
            stable_count: 3,
            candidate: Some(candidate),
            candidate_count: 1,
            candidate_weight: 25,
            candidate_primary: false,
            stable_retired: false,
            launching: false,
            steps_done: 3,
        },
        steps: vec![step(Some("default"), "dropped by create")],
    };
    let worker = ProcessRecord {
        status: ProcessStatus::Succeeded,
        from: Some(revision(app, "worker", 1)),
        to: Some(revision(app, "worker", 2)),
        started_at: Some(created_at + Duration::from_millis(7)),
        finished_at: Some(created_at + Duration::from_millis(30_000)),
        state: RolloutState {
            stable_retired: true,
            candidate_primary: true,
            candidate_count: 2,
            // Round-trips like every other field.
            launching: true,
            steps_done: 2,
            ..RolloutState::default()
        },
        ..ProcessRecord::pending(process("worker"), "rolling")
    };
    let scheduler = ProcessRecord::pending(process("scheduler"), "recreate");

    DeploymentRecord {
        id,
        app: app.clone(),
        initiator: Initiator::new("john.doe (ci run 42)").expect("valid initiator"),
        image,
        only_process: None,
        policy: RollbackPolicy::AllOrNothing,
        status: DeploymentStatus::Partial,
        created_at,
        finished_at: Some(created_at + Duration::from_millis(90_002)),
        resumes: Some(DeploymentId::new()),
        steps: vec![step(None, "image resolved")],
        processes: vec![web, worker, scheduler],
    }
}

/// A bare running deployment of `app`, with one pending `default` process.
fn running_record(app: &AppName) -> DeploymentRecord {
    let id = DeploymentId::new();
    DeploymentRecord {
        id,
        app: app.clone(),
        initiator: Initiator::unknown(),
        image: ImageRef::new("app", DockerTag::default()).expect("valid image"),
        only_process: Some(process("default")),
        policy: RollbackPolicy::Independent,
        status: DeploymentStatus::Running,
        created_at: id.created_at(),
        finished_at: None,
        resumes: None,
        steps: Vec::new(),
        processes: vec![ProcessRecord::pending(process("default"), "rolling")],
    }
}

/// `n` fresh ids, oldest first.
fn sorted_ids(n: usize) -> Vec<DeploymentId> {
    let mut ids: Vec<_> = (0..n).map(|_| DeploymentId::new()).collect();
    ids.sort();
    ids
}

async fn get(store: &dyn DeploymentStore, id: &DeploymentId) -> DeploymentRecord {
    store
        .get(id)
        .await
        .expect("get succeeds")
        .unwrap_or_else(|| panic!("deployment {id} not found"))
}

fn names(r: &DeploymentRecord) -> Vec<&str> {
    r.processes.iter().map(|p| p.process.as_str()).collect()
}

/// `create` then `get` returns the record as given, except that process steps are dropped.
pub async fn create_get_round_trip(store: &dyn DeploymentStore) {
    let rec = sample_record(&fresh_app("round-trip"));
    store.create(&rec).await.expect("create succeeds");

    let mut expected = rec.clone();
    for p in &mut expected.processes {
        p.steps.clear();
    }
    assert_eq!(get(store, &rec.id).await, expected);

    let mut only = running_record(&fresh_app("round-trip-only"));
    only.processes.clear();
    store.create(&only).await.expect("create succeeds");
    assert_eq!(get(store, &only.id).await, only, "no processes");
}

/// `update_process` replaces a process in place (order kept, steps kept, given steps
/// ignored) and appends a process it does not know yet.
pub async fn update_process_keeps_steps_and_order(store: &dyn DeploymentStore) {
    let rec = sample_record(&fresh_app("update"));
    store.create(&rec).await.expect("create succeeds");
    let kept = step(Some("worker"), "scaled candidate to 2");
    store.append_step(&rec.id, &kept).await.expect("append");

    let mut worker = rec.processes[1].clone();
    worker.status = ProcessStatus::RollbackFailed {
        reason: "service not found".into(),
    };
    worker.to = Some(revision(&rec.app, "worker", 3));
    worker.finished_at = None;
    worker.state.steps_done = 7;
    worker.steps = vec![step(Some("worker"), "ignored by update_process")];
    store
        .update_process(&rec.id, &worker)
        .await
        .expect("update_process succeeds");

    let got = get(store, &rec.id).await;
    assert_eq!(names(&got), ["default", "worker", "scheduler"]);
    let expected = ProcessRecord {
        steps: vec![kept],
        ..worker
    };
    assert_eq!(got.processes[1], expected);
    assert_eq!(got.processes[2], rec.processes[2], "others untouched");

    let mut extra = ProcessRecord::pending(process("extra"), "rolling");
    extra.steps = vec![step(Some("extra"), "ignored")];
    store
        .update_process(&rec.id, &extra)
        .await
        .expect("update_process adds a process");
    let got = get(store, &rec.id).await;
    assert_eq!(names(&got), ["default", "worker", "scheduler", "extra"]);
    assert!(got.processes[3].steps.is_empty());
    assert_eq!(
        got.processes[1], expected,
        "a later add keeps earlier updates"
    );
}

/// `record_change` replaces the process record (keeping earlier steps) and appends the step.
pub async fn record_change_updates_and_appends(store: &dyn DeploymentStore) {
    let rec = sample_record(&fresh_app("change"));
    store.create(&rec).await.expect("create succeeds");
    let first = step(Some("worker"), "launched new fleet");
    store.append_step(&rec.id, &first).await.expect("append");

    let mut worker = rec.processes[1].clone();
    worker.state.candidate_count = 3;
    worker.state.candidate_weight = 40;
    worker.steps = vec![step(Some("worker"), "ignored by record_change")];
    let change = step(Some("worker"), "routed 40% of traffic to the new fleet");
    store
        .record_change(&rec.id, &worker, &change)
        .await
        .expect("record_change succeeds");

    let got = get(store, &rec.id).await;
    let expected = ProcessRecord {
        steps: vec![first, change],
        ..worker
    };
    assert_eq!(got.processes[1], expected);
    let untouched = ProcessRecord {
        steps: Vec::new(),
        ..rec.processes[0].clone()
    };
    assert_eq!(got.processes[0], untouched, "others untouched");
    let missing = DeploymentId::new();
    assert!(
        store
            .record_change(&missing, &expected, &step(Some("worker"), "x"))
            .await
            .is_err(),
        "record_change on an unknown deployment fails"
    );
}

/// `record_changes` replaces a process and appends several steps in order; `append_steps`
/// appends several steps, each to its process or to the deployment.
pub async fn record_changes_and_append_steps_keep_order(store: &dyn DeploymentStore) {
    let rec = sample_record(&fresh_app("changes"));
    store.create(&rec).await.expect("create succeeds");
    let mut worker = rec.processes[1].clone();
    worker.state.candidate_count = 2;
    let (announced, step_msg, launched) = (
        step(Some("worker"), "rolling deployment from v1 to v2"),
        step(Some("worker"), "launch 2 new instance(s)"),
        step(Some("worker"), "launched new fleet ts-2 with 2 instance(s)"),
    );
    store
        .record_changes(
            &rec.id,
            &worker,
            &[announced.clone(), step_msg.clone(), launched.clone()],
        )
        .await
        .expect("record_changes succeeds");
    let (paused, overall) = (
        step(Some("worker"), "paused: waiting for promote"),
        step(None, "deployment-level note"),
    );
    store
        .append_steps(&rec.id, &[paused.clone(), overall.clone()])
        .await
        .expect("append_steps succeeds");
    store
        .append_steps(&rec.id, &[])
        .await
        .expect("no steps is fine");
    let got = get(store, &rec.id).await;
    let expected = ProcessRecord {
        steps: vec![announced, step_msg, launched, paused],
        ..worker
    };
    assert_eq!(got.processes[1], expected);
    assert_eq!(
        got.steps.last(),
        Some(&overall),
        "the deployment-level step"
    );
    assert!(
        store
            .append_steps(&DeploymentId::new(), &[step(None, "x")])
            .await
            .is_err(),
        "append_steps on an unknown deployment fails"
    );
}

/// Steps land on their process, on the deployment (`None`, or a process the deployment does
/// not have, keeping its `process` field), in order.
pub async fn append_step_to_process_and_deployment(store: &dyn DeploymentStore) {
    let mut rec = running_record(&fresh_app("steps"));
    rec.processes
        .push(ProcessRecord::pending(process("worker"), "rolling"));
    store.create(&rec).await.expect("create succeeds");

    let steps = [
        step(None, "started"),
        step(Some("default"), "launched candidate"),
        step(Some("worker"), "launched candidate"),
        step(Some("default"), "shifted 50% of traffic"),
        step(Some("ghost"), "about a process not in this deployment"),
        step(None, "finished"),
    ];
    for s in &steps {
        store
            .append_step(&rec.id, s)
            .await
            .expect("append succeeds");
    }
    let got = get(store, &rec.id).await;
    assert_eq!(
        got.steps,
        [steps[0].clone(), steps[4].clone(), steps[5].clone()]
    );
    assert_eq!(got.processes[0].steps, [steps[1].clone(), steps[3].clone()]);
    assert_eq!(got.processes[1].steps, [steps[2].clone()]);
}

/// `set_status` sets the end time for final statuses only, and clears it otherwise.
pub async fn set_status_sets_finished_at_when_final(store: &dyn DeploymentStore) {
    let rec = running_record(&fresh_app("status"));
    store.create(&rec).await.expect("create succeeds");
    let slack = Duration::from_millis(1);

    for status in [DeploymentStatus::Interrupted, DeploymentStatus::Running] {
        store.set_status(&rec.id, status).await.expect("set_status");
        let got = get(store, &rec.id).await;
        assert_eq!(got.status, status);
        assert_eq!(got.finished_at, None, "{status} is not final");
    }
    for status in [
        DeploymentStatus::Succeeded,
        DeploymentStatus::Partial,
        DeploymentStatus::Failed,
    ] {
        let before = SystemTime::now();
        store.set_status(&rec.id, status).await.expect("set_status");
        let after = SystemTime::now();
        let got = get(store, &rec.id).await;
        assert_eq!(got.status, status);
        let at = got
            .finished_at
            .unwrap_or_else(|| panic!("{status} is final"));
        assert!(
            at + slack >= before && at <= after + slack,
            "finished_at {at:?} not between {before:?} and {after:?}"
        );
    }
    store
        .set_status(&rec.id, DeploymentStatus::Interrupted)
        .await
        .expect("set_status");
    assert_eq!(get(store, &rec.id).await.finished_at, None);
    assert_eq!(get(store, &rec.id).await.processes, rec.processes);
}

/// `list` returns one app's deployments newest (highest id) first, at most `limit`, with
/// processes and without steps.
pub async fn list_newest_first_without_steps(store: &dyn DeploymentStore) {
    let app = fresh_app("list");
    let other = fresh_app("list-other");
    let ids = sorted_ids(3);
    // Created out of order: the order is the ids', not the insertion's.
    for &i in &[1, 0, 2] {
        let rec = DeploymentRecord {
            id: ids[i],
            created_at: ids[i].created_at(),
            ..sample_record(&app)
        };
        store.create(&rec).await.expect("create succeeds");
        store
            .append_step(&rec.id, &step(Some("default"), "process step"))
            .await
            .expect("append");
        store
            .append_step(&rec.id, &step(None, "deployment step"))
            .await
            .expect("append");
    }
    store
        .create(&running_record(&other))
        .await
        .expect("create succeeds");

    let all = store.list(&app, 10).await.expect("list succeeds");
    let got: Vec<_> = all.iter().map(|r| r.id).collect();
    assert_eq!(got, [ids[2], ids[1], ids[0]]);
    for r in &all {
        assert_eq!(r.app, app);
        assert!(r.steps.is_empty(), "list returns no deployment steps");
        assert_eq!(names(r), ["default", "worker", "scheduler"]);
        assert!(
            r.processes.iter().all(|p| p.steps.is_empty()),
            "list returns no process steps"
        );
    }
    let full = get(store, &ids[2]).await;
    let mut stripped = full.clone();
    stripped.steps.clear();
    for p in &mut stripped.processes {
        p.steps.clear();
    }
    assert_eq!(all[0], stripped, "list rows equal get rows minus steps");

    let two = store.list(&app, 2).await.expect("list succeeds");
    let got: Vec<_> = two.iter().map(|r| r.id).collect();
    assert_eq!(got, [ids[2], ids[1]]);
    assert!(store.list(&app, 0).await.expect("list").is_empty());
    assert_eq!(store.list(&other, 10).await.expect("list").len(), 1);
    let none = fresh_app("list-none");
    assert!(store.list(&none, 10).await.expect("list").is_empty());
}

/// [`DeploymentStoreExt::latest`] returns the newest deployment with all its steps.
pub async fn latest_is_newest_with_steps(store: &dyn DeploymentStore) {
    let app = fresh_app("latest");
    assert!(store.latest(&app).await.expect("latest").is_none());

    let ids = sorted_ids(2);
    for id in [ids[1], ids[0]] {
        let rec = DeploymentRecord {
            id,
            created_at: id.created_at(),
            ..running_record(&app)
        };
        store.create(&rec).await.expect("create succeeds");
    }
    let s1 = step(None, "resolved image");
    let s2 = step(Some("default"), "healthy");
    store.append_step(&ids[1], &s1).await.expect("append");
    store.append_step(&ids[1], &s2).await.expect("append");

    let latest = store
        .latest(&app)
        .await
        .expect("latest succeeds")
        .expect("a latest deployment");
    assert_eq!(latest.id, ids[1]);
    assert_eq!(latest.steps, [s1]);
    assert_eq!(latest.processes[0].steps, [s2]);
}

/// `list` and `latest` order by start time, newest first; deployments started in the same
/// millisecond by id (ids increase within a process). A deployment another machine started
/// later comes first even if its id sorts lower.
pub async fn list_orders_by_start_then_id(store: &dyn DeploymentStore) {
    let app = fresh_app("order");
    let ids = sorted_ids(3);
    let at = now_ms();
    // ids[0] and ids[1] started in the same millisecond; ids[2]'s record says it started
    // earlier (another machine's clock), so it is the oldest although its id is the highest.
    let starts = [at, at, at - Duration::from_secs(5)];
    for (i, &id) in ids.iter().enumerate().rev() {
        let rec = DeploymentRecord {
            id,
            created_at: starts[i],
            ..running_record(&app)
        };
        store.create(&rec).await.expect("create succeeds");
    }
    let got: Vec<_> = store
        .list(&app, 10)
        .await
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        got,
        [ids[1], ids[0], ids[2]],
        "newest start first, same-millisecond starts by id"
    );
    let latest = store.latest(&app).await.expect("latest").expect("some");
    assert_eq!(latest.id, ids[1], "latest is the newest start, ties by id");
}

/// `finish` sets the final status and releases the deployment's locks together: once the
/// status reads final, the processes can be locked by another deployment.
pub async fn finish_sets_status_and_releases_locks(store: &dyn DeploymentStore) {
    let app = fresh_app("finish");
    let rec = running_record(&app);
    store.create(&rec).await.expect("create succeeds");
    let targets: Vec<Target> = ["default", "worker"]
        .iter()
        .map(|p| Target::new(app.clone(), process(p)))
        .collect();
    let lease = Duration::from_secs(60);
    for t in &targets {
        assert_eq!(store.try_lock(t, &rec.id, lease).await.expect("lock"), None);
    }
    // A lock of another deployment on a process not named is left alone.
    let other = DeploymentId::new();
    let third = Target::new(app.clone(), process("scheduler"));
    assert_eq!(
        store.try_lock(&third, &other, lease).await.expect("lock"),
        None
    );

    store
        .finish(&rec.id, DeploymentStatus::Partial, &targets)
        .await
        .expect("finish succeeds");
    let got = get(store, &rec.id).await;
    assert_eq!(got.status, DeploymentStatus::Partial);
    assert!(got.finished_at.is_some(), "a final status sets finished_at");
    let next = DeploymentId::new();
    for t in &targets {
        assert_eq!(
            store.lock_holder(t).await.expect("holder"),
            None,
            "{t} released"
        );
        assert_eq!(store.try_lock(t, &next, lease).await.expect("lock"), None);
    }
    assert_eq!(
        store.lock_holder(&third).await.expect("holder"),
        Some(other)
    );
    assert_not_found(
        store
            .finish(&DeploymentId::new(), DeploymentStatus::Failed, &[])
            .await,
        "finish",
    );
}

fn assert_not_found(result: crate::error::Result<()>, what: &str) {
    match result {
        Err(Error::NotFound {
            resource: Resource::Deployment,
            ..
        }) => {}
        other => panic!("{what} on an unknown id: expected NotFound(deployment), got {other:?}"),
    }
}

/// Writes to an unknown id fail with [`Error::NotFound`]; `get` returns `None`.
pub async fn unknown_ids_are_not_found(store: &dyn DeploymentStore) {
    let id = DeploymentId::new();
    assert!(store.get(&id).await.expect("get succeeds").is_none());
    let p = ProcessRecord::pending(process("default"), "rolling");
    assert_not_found(store.update_process(&id, &p).await, "update_process");
    assert_not_found(
        store.append_step(&id, &step(None, "orphan")).await,
        "append_step",
    );
    assert_not_found(
        store
            .append_step(&id, &step(Some("default"), "orphan"))
            .await,
        "append_step",
    );
    assert_not_found(
        store.set_status(&id, DeploymentStatus::Failed).await,
        "set_status",
    );
    assert!(store.get(&id).await.expect("get succeeds").is_none());
}

/// Creating an id twice fails and leaves the first record alone.
pub async fn duplicate_create_fails(store: &dyn DeploymentStore) {
    let rec = running_record(&fresh_app("dup"));
    store.create(&rec).await.expect("create succeeds");
    let again = DeploymentRecord {
        status: DeploymentStatus::Failed,
        processes: Vec::new(),
        ..rec.clone()
    };
    assert!(
        store.create(&again).await.is_err(),
        "a second create of {} must fail",
        rec.id
    );
    assert_eq!(get(store, &rec.id).await, rec);
}

fn target(label: &str) -> Target {
    Target::new(fresh_app(label), process("default"))
}

/// A lock is taken, renewed by its holder, refused to others (naming the holder), and
/// independent per process.
pub async fn lock_is_exclusive_and_renewable(store: &dyn DeploymentStore) {
    let t = target("lock");
    let (a, b) = (DeploymentId::new(), DeploymentId::new());
    let lease = Duration::from_secs(60);

    assert_eq!(store.lock_holder(&t).await.expect("lock_holder"), None);
    assert_eq!(store.try_lock(&t, &a, lease).await.expect("try_lock"), None);
    assert_eq!(store.lock_holder(&t).await.expect("lock_holder"), Some(a));
    assert_eq!(
        store.try_lock(&t, &a, lease).await.expect("try_lock"),
        None,
        "the holder renews"
    );
    assert_eq!(
        store.try_lock(&t, &b, lease).await.expect("try_lock"),
        Some(a),
        "another holder is refused and told who holds it"
    );
    assert_eq!(store.lock_holder(&t).await.expect("lock_holder"), Some(a));

    let sibling = Target::new(t.app.clone(), process("worker"));
    assert_eq!(
        store.try_lock(&sibling, &b, lease).await.expect("try_lock"),
        None,
        "locks are per process"
    );
    let elsewhere = Target::new(fresh_app("lock-other"), t.process.clone());
    assert_eq!(
        store
            .try_lock(&elsewhere, &b, lease)
            .await
            .expect("try_lock"),
        None,
        "locks are per app"
    );
    assert_eq!(store.lock_holder(&t).await.expect("lock_holder"), Some(a));
}

/// `unlock` by another holder is ignored; by the holder it frees the lock.
pub async fn unlock_only_by_holder(store: &dyn DeploymentStore) {
    let t = target("unlock");
    let (a, b) = (DeploymentId::new(), DeploymentId::new());
    let lease = Duration::from_secs(60);

    store.unlock(&t, &a).await.expect("unlocking a free lock");
    assert_eq!(store.try_lock(&t, &a, lease).await.expect("try_lock"), None);
    store.unlock(&t, &b).await.expect("unlock by non-holder");
    assert_eq!(store.lock_holder(&t).await.expect("lock_holder"), Some(a));
    assert_eq!(
        store.try_lock(&t, &b, lease).await.expect("try_lock"),
        Some(a)
    );
    store.unlock(&t, &a).await.expect("unlock by holder");
    assert_eq!(store.lock_holder(&t).await.expect("lock_holder"), None);
    assert_eq!(store.try_lock(&t, &b, lease).await.expect("try_lock"), None);
    assert_eq!(store.lock_holder(&t).await.expect("lock_holder"), Some(b));
}

/// A lease that ran out is no longer reported, and another holder can take the lock.
///
/// Sleeps for real about 120 ms.
pub async fn expired_lease_can_be_taken(store: &dyn DeploymentStore) {
    let t = target("lease");
    let (a, b) = (DeploymentId::new(), DeploymentId::new());

    assert_eq!(
        store
            .try_lock(&t, &a, Duration::from_millis(50))
            .await
            .expect("try_lock"),
        None
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        store.lock_holder(&t).await.expect("lock_holder"),
        None,
        "an expired lease has no holder"
    );
    let lease = Duration::from_secs(60);
    assert_eq!(
        store.try_lock(&t, &b, lease).await.expect("try_lock"),
        None,
        "an expired lease can be taken"
    );
    assert_eq!(store.lock_holder(&t).await.expect("lock_holder"), Some(b));
    assert_eq!(
        store.try_lock(&t, &a, lease).await.expect("try_lock"),
        Some(b),
        "the former holder lost it"
    );
}

/// Many processes recording changes at the same time (as a deployment's processes do): every
/// change lands, each process's steps in the order it made them, its record the last it wrote.
pub async fn concurrent_changes_all_land_in_order(store: &dyn DeploymentStore) {
    const PROCESSES: usize = 50;
    const CHANGES: u32 = 5;
    let mut rec = running_record(&fresh_app("concurrent"));
    rec.processes = (0..PROCESSES)
        .map(|i| ProcessRecord::pending(process(&format!("p{i}")), "rolling"))
        .collect();
    store.create(&rec).await.expect("create succeeds");
    let writers = rec.processes.iter().map(|p| {
        let id = rec.id;
        async move {
            let mut p = p.clone();
            for k in 1..=CHANGES {
                p.state.steps_done = k;
                let change = step(Some(p.process.as_str()), &format!("change {k}"));
                store
                    .record_change(&id, &p, &change)
                    .await
                    .expect("record_change succeeds");
            }
        }
    });
    futures::future::join_all(writers).await;

    let got = get(store, &rec.id).await;
    assert_eq!(got.processes.len(), PROCESSES, "no process added or lost");
    for (p, want) in got.processes.iter().zip(&rec.processes) {
        assert_eq!(p.process, want.process, "creation order kept");
        assert_eq!(
            p.state.steps_done, CHANGES,
            "{} holds its last change",
            p.process
        );
        let messages: Vec<_> = p.steps.iter().map(|s| s.message.as_str()).collect();
        let expected: Vec<_> = (1..=CHANGES).map(|k| format!("change {k}")).collect();
        assert_eq!(messages, expected, "{}'s steps, in order", p.process);
    }
}

/// Many deployments asking for the same lock at the same time: exactly one gets it, and every
/// other is told that one holds it.
pub async fn concurrent_try_locks_grant_one(store: &dyn DeploymentStore) {
    let t = target("lock-race");
    let lease = Duration::from_secs(60);
    let holders: Vec<_> = (0..20).map(|_| DeploymentId::new()).collect();
    let answers =
        futures::future::join_all(holders.iter().map(|h| store.try_lock(&t, h, lease))).await;
    let answers: Vec<_> = answers
        .into_iter()
        .map(|a| a.expect("try_lock succeeds"))
        .collect();
    let winners: Vec<_> = holders
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_none())
        .map(|(h, _)| *h)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one holder: {winners:?}");
    let winner = winners[0];
    for answer in answers.iter().flatten() {
        assert_eq!(*answer, winner, "the others are told who holds it");
    }
    assert_eq!(
        store.lock_holder(&t).await.expect("lock_holder"),
        Some(winner)
    );
}
