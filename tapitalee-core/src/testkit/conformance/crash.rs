//! The crash-recovery case: a deployer dies mid-rollout; a fresh engine and a fresh backend
//! on the same store finish the deployment, from what the store recorded and what the
//! platform says. Every backend must pass it: it is what "a backend keeps no per-process state
//! between calls" means in practice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::Fixture;
use crate::domain::{AppName, ImageRef};
use crate::domain::{DeploymentId, Initiator};
use crate::engine::{DeployRequest, DeploymentHandle, Engine};
use crate::error::{Error, Result};
use crate::fleet::{Fleet, FleetStatus, ProcessSpec, Release, Revision, TrafficWeight};
use crate::record::{DeploymentRecord, DeploymentStatus, ProcessStatus};
use crate::rollout::{HealthGate, Rollout};
use crate::store::DynDeploymentStore;
use crate::strategy::Strategy;
use crate::traits::deployer::{DeployContext, Deployer, DynDeployer};
use crate::traits::health::DynHealthProbe;
use crate::traits::registry::DynImageRegistry;

/// Connects a fresh backend, as a new `tapit` process would: its deployer and registry.
pub type Backend = Arc<dyn Fn() -> (DynDeployer, DynImageRegistry) + Send + Sync>;

/// How long a dead deployer's locks last; recovery waits this out.
const LEASE: Duration = Duration::from_millis(300);

/// A gate that holds a launched fleet "waiting to be healthy" far longer than the test runs:
/// the rollout is mid-way when the deployer is killed.
fn holding_gate() -> HealthGate {
    HealthGate {
        min_healthy_time: Duration::from_secs(3600),
        progress_deadline: Duration::from_secs(7200),
        poll_interval: Duration::from_millis(50),
        ..HealthGate::default()
    }
}

fn quick_gate() -> HealthGate {
    HealthGate {
        min_healthy_time: Duration::from_millis(100),
        progress_deadline: Duration::from_secs(60),
        poll_interval: Duration::from_millis(50),
        ..HealthGate::default()
    }
}

/// Completes the deployment (the old fleet retired), then hangs before the engine records
/// the outcome: the deployer is killed there.
#[derive(Debug)]
struct HangAfterCompleting;

#[async_trait]
impl Strategy for HangAfterCompleting {
    fn name(&self) -> &str {
        "hang-after-completing"
    }

    async fn run(&self, rollout: &mut Rollout) -> Result<()> {
        let desired = rollout.desired();
        rollout.launch(desired).await?;
        rollout.wait_candidate_healthy(desired).await?;
        if rollout.load_balanced() {
            rollout.route(100).await?;
        }
        rollout.make_primary().await
    }

    async fn finalize(&self, rollout: &mut Rollout) -> Result<()> {
        rollout.complete().await?;
        rollout.note("completed; the deployer dies now").await;
        std::future::pending().await
    }
}

/// The platform change a deployer dies right after, before it could record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DieAt {
    /// The new fleet runs (ECS: `UpdateService` or `CreateTaskSet` done; Docker: containers
    /// started).
    Launch,
    /// All traffic sent to the new fleet.
    RouteAll,
    /// The new fleet made primary.
    MakePrimary,
    /// The old fleet scaled down to nothing.
    ScaleOldToZero,
    /// The new fleet retired (by a rollback).
    RetireNew,
}

/// A backend's deployer that dies the moment the platform accepted a change: the change took
/// effect, and the deployer never returns to record it.
#[derive(Debug)]
struct DieAfter {
    inner: DynDeployer,
    at: DieAt,
    done: Arc<AtomicBool>,
}

impl DieAfter {
    async fn die_if(&self, at: DieAt) {
        if self.at == at {
            self.done.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Deployer for DieAfter {
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>> {
        self.inner.processes(app).await
    }

    async fn current(&self, ctx: &DeployContext) -> Result<Release> {
        self.inner.current(ctx).await
    }

    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision> {
        self.inner.prepare(ctx, image).await
    }

    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet> {
        let fleet = self.inner.launch(ctx, revision, count).await?;
        self.die_if(DieAt::Launch).await;
        Ok(fleet)
    }

    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()> {
        self.inner.scale(ctx, fleet, count).await?;
        if count == 0 && ctx.stable.as_ref().is_some_and(|s| s.id == fleet.id) {
            self.die_if(DieAt::ScaleOldToZero).await;
        }
        Ok(())
    }

    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()> {
        self.inner.route(ctx, weights).await?;
        let all_new = weights
            .iter()
            .all(|w| (Some(&w.fleet) == ctx.stable.as_ref().map(|s| &s.id)) == (w.percent == 0));
        if all_new {
            self.die_if(DieAt::RouteAll).await;
        }
        Ok(())
    }

    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.inner.make_primary(ctx, fleet).await?;
        if ctx.stable.as_ref().is_none_or(|s| s.id != fleet.id) {
            self.die_if(DieAt::MakePrimary).await;
        }
        Ok(())
    }

    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.inner.retire(ctx, fleet).await?;
        if ctx.stable.as_ref().is_none_or(|s| s.id != fleet.id) {
            self.die_if(DieAt::RetireNew).await;
        }
        Ok(())
    }

    async fn status(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus> {
        self.inner.status(ctx, fleet).await
    }

    async fn discover(&self, ctx: &DeployContext, revision: &Revision) -> Result<Option<Fleet>> {
        self.inner.discover(ctx, revision).await
    }

    fn target_health(&self) -> Option<DynHealthProbe> {
        self.inner.target_health()
    }
}

fn engine(backend: &Backend, store: &DynDeploymentStore, gate: HealthGate, halt: bool) -> Engine {
    engine_dying(backend, store, gate, halt, None)
}

fn engine_dying(
    backend: &Backend,
    store: &DynDeploymentStore,
    gate: HealthGate,
    halt: bool,
    die_after: Option<(DieAt, Arc<AtomicBool>)>,
) -> Engine {
    let (mut deployer, registry) = backend();
    if let Some((at, done)) = die_after {
        deployer = Arc::new(DieAfter {
            inner: deployer,
            at,
            done,
        });
    }
    let strategy: Arc<dyn Strategy> = if halt {
        Arc::new(HangAfterCompleting)
    } else {
        Arc::new(super::super::AllAtOnce)
    };
    Engine::builder()
        .deployer(deployer)
        .registry(registry)
        .store(store.clone())
        .default_strategy(strategy)
        .health_gate(gate)
        .lock_lease(LEASE)
        .build()
        .expect("engine")
}

/// Runs a deployment on a runtime of its own until `reached` says so, then drops that runtime
/// with the deployment in flight: its tasks vanish at their await points, no rollback runs,
/// its locks stop being renewed. Exactly what a killed process leaves behind.
async fn kill_when(
    backend: &Backend,
    store: &DynDeploymentStore,
    fx: &Fixture,
    gate: HealthGate,
    halt: bool,
    reached: fn(&DeploymentRecord) -> bool,
) -> DeploymentId {
    kill_at(backend, store, fx, gate, halt, None, Box::new(reached)).await
}

/// Kills the deployer the moment the platform accepted its launch, before it is recorded.
async fn kill_after_launch(
    backend: &Backend,
    store: &DynDeploymentStore,
    fx: &Fixture,
) -> DeploymentId {
    kill_after(backend, store, fx, DieAt::Launch, holding_gate()).await
}

/// Kills the deployer the moment the platform accepted the change `at`, before it is
/// recorded.
async fn kill_after(
    backend: &Backend,
    store: &DynDeploymentStore,
    fx: &Fixture,
    at: DieAt,
    gate: HealthGate,
) -> DeploymentId {
    let done = Arc::new(AtomicBool::new(false));
    let seen = done.clone();
    let reached = Box::new(move |_: &DeploymentRecord| seen.load(Ordering::SeqCst));
    kill_at(backend, store, fx, gate, false, Some((at, done)), reached).await
}

type Reached = Box<dyn Fn(&DeploymentRecord) -> bool + Send>;

async fn kill_at(
    backend: &Backend,
    store: &DynDeploymentStore,
    fx: &Fixture,
    gate: HealthGate,
    halt: bool,
    die_after: Option<(DieAt, Arc<AtomicBool>)>,
    reached: Reached,
) -> DeploymentId {
    let (backend, store, fx) = (backend.clone(), store.clone(), fx.clone());
    tokio::task::spawn_blocking(move || {
        let runtime = doomed_runtime();
        let (id, handle): (DeploymentId, DeploymentHandle) = runtime.block_on(async {
            let engine = engine_dying(&backend, &store, gate, halt, die_after);
            let request = DeployRequest::new()
                .docker_tag(fx.tag.clone())
                .process(fx.process.clone())
                .initiator(Initiator::new("conformance-crash").expect("initiator"));
            let handle = engine.deploy(&fx.app, request).await.expect("deploy");
            let id = handle.id();
            for _ in 0..600 {
                if let Some(record) = store.get(&id).await.expect("read the history")
                    && reached(&record)
                {
                    return (id, handle);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("deployment {id} never reached the point where the deployer is killed");
        });
        drop(runtime); // the crash
        drop(handle);
        id
    })
    .await
    .expect("the deployer's thread")
}

/// A runtime of its own for a deployer that will be killed by dropping it.
fn doomed_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the deployer that will die")
}

/// Rolls the interrupted deployment `id` back on a runtime of its own, and kills that
/// deployer the moment the platform accepted the change `at`.
async fn kill_rollback_after(
    backend: &Backend,
    store: &DynDeploymentStore,
    id: DeploymentId,
    at: DieAt,
) {
    let (backend, store) = (backend.clone(), store.clone());
    tokio::task::spawn_blocking(move || {
        let runtime = doomed_runtime();
        let done = Arc::new(AtomicBool::new(false));
        let seen = done.clone();
        runtime.block_on(async move {
            let engine = engine_dying(&backend, &store, quick_gate(), false, Some((at, done)));
            let rollback = tokio::spawn(async move { engine.rollback(&id).await });
            for _ in 0..600 {
                if seen.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the rollback of {id} never reached {at:?}: {rollback:?}");
        });
        drop(runtime); // the crash
    })
    .await
    .expect("the deployer's thread");
}

/// Finds the killed deployment with a fresh engine once its lease lapsed.
async fn recover(engine: &Engine, fx: &Fixture, id: DeploymentId) {
    tokio::time::sleep(LEASE * 2).await;
    let found = engine.recover(&fx.app).await.expect("recover");
    assert!(
        found.contains(&id),
        "recover finds {id} interrupted; got {found:?}"
    );
}

async fn live_fleet(deployer: &DynDeployer, fx: &Fixture) -> Option<crate::Fleet> {
    let ctx = DeployContext::new(
        DeploymentId::new(),
        Initiator::new("conformance-crash").expect("initiator"),
        fx.target(),
    );
    deployer.current(&ctx).await.expect("current").fleet
}

/// Runs the crash cases against a backend: killed mid-rollout then `recover` +
/// `rollback` (back on the old fleet, the new one gone), killed mid-rollout then `recover` +
/// `resume` (on the new revision), killed between the platform accepting the launch and the
/// store recording it then `rollback` (the platform is asked for the fleet,
/// [`Deployer::discover`]: back on the old fleet, the found one gone) or `resume` (on the new
/// revision, no second fleet left beside it), and — on processes whose fleets the engine controls —
/// killed after the old fleet was retired but before the outcome was written, then
/// `recover` + `rollback`, which must report the truth: succeeded, on the new version.
///
/// Instances must start on the backend (the new fleet has to become healthy). Runs on a real
/// clock: each case waits out a 300 ms lease.
pub async fn crash_recovery(backend: &Backend, store: DynDeploymentStore, fx: &Fixture) {
    let mid_rollout =
        |r: &DeploymentRecord| r.processes.iter().any(|p| p.state.candidate.is_some());

    // 1. Killed mid-rollout; a fresh deployer rolls it back.
    let (deployer, _) = backend();
    let old = live_fleet(&deployer, fx)
        .await
        .expect("a live fleet to start from");
    let id = kill_when(backend, &store, fx, holding_gate(), false, mid_rollout).await;
    let fresh = engine(backend, &store, quick_gate(), false);
    recover(&fresh, fx, id).await;
    let record = fresh.rollback(&id).await.expect("rollback after a crash");
    rolled_back_to(backend, fx, &record, &old, "killed mid-rollout").await;
    assert_eq!(record.status, DeploymentStatus::Failed);

    // 2. Killed mid-rollout; a fresh deployer resumes it to the end.
    let id = kill_when(backend, &store, fx, holding_gate(), false, mid_rollout).await;
    let fresh = engine(backend, &store, quick_gate(), false);
    recover(&fresh, fx, id).await;
    let resumed = fresh.resume(&id).await.expect("resume after a crash");
    let record = resumed.wait().await.expect("the resumed deployment");
    assert_eq!(
        record.status,
        DeploymentStatus::Succeeded,
        "resumed: {:?}",
        record.processes[0].status
    );
    let (deployer, _) = backend();
    let live = live_fleet(&deployer, fx).await.expect("a live fleet");
    let image = &record.image;
    assert_eq!(
        live.revision.image.digest, image.digest,
        "runs the new digest"
    );
    let before = fresh.get(&id).await.expect("the interrupted record");
    assert!(
        matches!(before.processes[0].status, ProcessStatus::RolledBack { .. }),
        "the interrupted attempt was restored before resuming: {}",
        before.processes[0].status
    );

    // 3. Killed between the platform change that started the new fleet and recording it; a
    //    fresh deployer finds the fleet on the platform and rolls it back.
    let (deployer, _) = backend();
    let old = live_fleet(&deployer, fx).await.expect("a live fleet");
    let id = kill_after_launch(backend, &store, fx).await;
    let fresh = engine(backend, &store, quick_gate(), false);
    recover(&fresh, fx, id).await;
    let orphan = unrecorded_fleet(backend, &fresh, fx, id, &old).await;
    let record = fresh
        .rollback(&id)
        .await
        .expect("rollback after a crash before the launch was recorded");
    let when = "a new fleet launched but never recorded";
    let deployer = rolled_back_to(backend, fx, &record, &old, when).await;
    assert_gone(&deployer, fx, &orphan, "after the rollback").await;

    // 4. The same crash, then `resume`: the process ends on the new version, and the fleet
    //    launched before the crash does not linger beside the one resume runs.
    let id = kill_after_launch(backend, &store, fx).await;
    let fresh = engine(backend, &store, quick_gate(), false);
    recover(&fresh, fx, id).await;
    let orphan = unrecorded_fleet(backend, &fresh, fx, id, &old).await;
    let resumed = fresh.resume(&id).await.expect("resume after a crash");
    let record = resumed.wait().await.expect("the resumed deployment");
    assert_eq!(
        record.status,
        DeploymentStatus::Succeeded,
        "resumed: {:?}",
        record.processes[0].status
    );
    let (deployer, _) = backend();
    let live = live_fleet(&deployer, fx).await.expect("a live fleet");
    assert_eq!(live.revision.image.digest, record.image.digest);
    if live.id != orphan.id {
        assert_gone(&deployer, fx, &orphan, "after resuming").await;
    }

    // 5. Killed after completing (old fleet retired), before the outcome was written: the
    //    truth is that the process runs the new version.
    let specs = deployer.processes(&fx.app).await.expect("processes");
    let engine_run = specs
        .iter()
        .any(|s| s.name == fx.process && s.rollout == crate::RolloutControl::Engine);
    if !engine_run {
        return;
    }
    let retired = |r: &DeploymentRecord| r.processes.iter().any(|p| p.state.stable_retired);
    let id = kill_when(backend, &store, fx, quick_gate(), true, retired).await;
    let fresh = engine(backend, &store, quick_gate(), false);
    recover(&fresh, fx, id).await;
    let record = fresh.rollback(&id).await.expect("finish after a crash");
    assert_eq!(
        record.processes[0].status,
        ProcessStatus::Succeeded,
        "a process already on its new version, old fleet gone, is reported succeeded"
    );
    assert_eq!(record.status, DeploymentStatus::Succeeded);
    let (deployer, _) = backend();
    let live = live_fleet(&deployer, fx).await.expect("a live fleet");
    assert_eq!(live.revision.image.digest, record.image.digest);

    // 6–8. Killed right after the platform took a change the record does not show yet (all
    //    traffic to the new fleet, the new fleet primary, the old fleet scaled to nothing):
    //    the rollback must not trust the record for it, and brings the old fleet back, live,
    //    at its size and healthy.
    let load_balanced = specs
        .iter()
        .any(|s| s.name == fx.process && s.load_balanced);
    let mut points = vec![DieAt::MakePrimary, DieAt::ScaleOldToZero];
    if load_balanced {
        points.insert(0, DieAt::RouteAll);
    }
    for at in points {
        let old = live_fleet(&deployer, fx).await.expect("a live fleet");
        let ctx = DeployContext::new(
            DeploymentId::new(),
            Initiator::new("conformance-crash").expect("initiator"),
            fx.target(),
        );
        let size = deployer
            .status(&ctx, &old)
            .await
            .expect("the old fleet's status")
            .desired;
        let id = kill_after(backend, &store, fx, at, quick_gate()).await;
        let fresh = engine(backend, &store, quick_gate(), false);
        recover(&fresh, fx, id).await;
        let new = fresh
            .get(&id)
            .await
            .expect("the interrupted record")
            .processes[0]
            .state
            .candidate
            .clone()
            .expect("the new fleet was recorded before the crash");
        let record = fresh.rollback(&id).await.expect("rollback after a crash");
        let when = format!("killed after {at:?}");
        let deployer = rolled_back_to(backend, fx, &record, &old, &when).await;
        let status = deployer
            .status(&ctx, &old)
            .await
            .expect("the old fleet's status");
        assert_eq!(
            (status.desired, status.running()),
            (size, size),
            "killed after {at:?}: the old fleet is back at its size, healthy: {status:?}"
        );
        assert_gone(
            &deployer,
            fx,
            &new,
            &format!("after {at:?} and the rollback"),
        )
        .await;
    }

    // 9. Killed mid-rollout; the rollback's deployer killed in turn right after the platform
    //    retired the new fleet; a third one rolls back again: back on the old fleet, the new
    //    one found gone (a resent route or retire naming it is answered "not found").
    let old = live_fleet(&deployer, fx).await.expect("a live fleet");
    let id = kill_when(backend, &store, fx, holding_gate(), false, mid_rollout).await;
    let checker = engine(backend, &store, quick_gate(), false);
    recover(&checker, fx, id).await;
    kill_rollback_after(backend, &store, id, DieAt::RetireNew).await;
    let fresh = engine(backend, &store, quick_gate(), false);
    tokio::time::sleep(LEASE * 2).await;
    fresh.recover(&fx.app).await.expect("recover");
    let record = fresh
        .rollback(&id)
        .await
        .expect("rollback after two crashes");
    let when = "killed after the rollback retired the new fleet, then rolled back again";
    rolled_back_to(backend, fx, &record, &old, when).await;
}

/// Checks a rollback's outcome: the process rolled back, `old` the live fleet again. Returns
/// the fresh deployer it asked.
async fn rolled_back_to(
    backend: &Backend,
    fx: &Fixture,
    record: &DeploymentRecord,
    old: &crate::Fleet,
    when: &str,
) -> DynDeployer {
    let p = &record.processes[0];
    assert!(
        matches!(p.status, ProcessStatus::RolledBack { .. }),
        "{when}: rolled back, got {}",
        p.status
    );
    let (deployer, _) = backend();
    assert_eq!(
        live_fleet(&deployer, fx).await.map(|f| f.id),
        Some(old.id.clone()),
        "{when}: the old fleet is live again"
    );
    deployer
}

/// The fleet the killed deployment launched without recording it, as the platform shows it
/// (the record names its revision; the fleet itself is not in it).
async fn unrecorded_fleet(
    backend: &Backend,
    engine: &Engine,
    fx: &Fixture,
    id: DeploymentId,
    old: &crate::Fleet,
) -> crate::Fleet {
    let record = engine.get(&id).await.expect("the interrupted record");
    let p = &record.processes[0];
    assert!(
        p.state.candidate.is_none() && p.state.launching,
        "the record must show a launch sent and no new fleet recorded: {:?}",
        p.state
    );
    let revision =
        p.to.clone()
            .expect("the record names the revision being launched");
    let ctx = DeployContext::new(id, record.initiator.clone(), fx.target())
        .with_stable(Some(old.clone()));
    let (deployer, _) = backend();
    let fleet = deployer
        .discover(&ctx, &revision)
        .await
        .expect("discover the unrecorded fleet")
        .expect("the platform runs the fleet launched before the crash");
    assert_ne!(fleet.id, old.id, "discover never returns the stable fleet");
    assert_eq!(fleet.revision.image.digest, revision.image.digest);
    fleet
}

/// The fleet no longer runs: NotFound, nothing desired, or no instances. (A deployment of an
/// ECS-controller service that ECS completed and a later `UpdateService` replaced still
/// reports the count it was started with; its tasks are gone.)
async fn assert_gone(deployer: &DynDeployer, fx: &Fixture, fleet: &crate::Fleet, when: &str) {
    let ctx = DeployContext::new(
        DeploymentId::new(),
        Initiator::new("conformance-crash").expect("initiator"),
        fx.target(),
    );
    match deployer.status(&ctx, fleet).await {
        Err(Error::NotFound { .. }) => {}
        Ok(s) if s.desired == 0 || s.instances.is_empty() => {}
        other => panic!(
            "the fleet {} launched before the crash still runs {when}: {other:?}",
            fleet.id
        ),
    }
}
