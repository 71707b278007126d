//! The deployment engine: validates a request, locks the processes, fans out one independent
//! deployment per process, applies the rollback policy and records everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinSet;
use tracing::{Instrument, info_span, warn};

use crate::control::DeploymentControl;
use crate::domain::{AppName, DeploymentId, ImageRef, Initiator, ProcessName};
use crate::error::{Error, Resource, Result};
use crate::event::EventKind;
use crate::fleet::{ProcessSpec, Target};
use crate::record::{
    DeploymentRecord, DeploymentStatus, ProcessRecord, ProcessStatus, RollbackPolicy, RolloutState,
};
use crate::rollout::{HealthGate, Rollout, Shared};
use crate::store::{DeploymentStoreExt, DynDeploymentStore, MemoryStore};
use crate::strategy::DynStrategy;
use crate::traits::deployer::{DeployMeta, DynDeployer};
use crate::traits::health::{ContainerHealth, DynHealthProbe};
use crate::traits::registry::DynImageRegistry;

mod handle;
mod request;

pub use handle::DeploymentHandle;
pub use request::DeployRequest;

/// The deployment engine. Cheap to clone; every clone shares the same platform and store.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    deployer: DynDeployer,
    registry: DynImageRegistry,
    probe: DynHealthProbe,
    store: DynDeploymentStore,
    strategy: DynStrategy,
    gate: HealthGate,
    concurrency: usize,
    lease: Duration,
}

/// Builds an [`Engine`].
#[derive(Debug, Default)]
#[must_use]
pub struct EngineBuilder {
    deployer: Option<DynDeployer>,
    registry: Option<DynImageRegistry>,
    probe: Option<DynHealthProbe>,
    store: Option<DynDeploymentStore>,
    strategy: Option<DynStrategy>,
    gate: HealthGate,
    concurrency: Option<usize>,
    lease: Option<Duration>,
}

impl EngineBuilder {
    /// The platform (required).
    pub fn deployer(mut self, deployer: DynDeployer) -> Self {
        self.deployer = Some(deployer);
        self
    }

    /// The image registry (required).
    pub fn registry(mut self, registry: DynImageRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The health probe (default: [`ContainerHealth`]).
    pub fn probe(mut self, probe: DynHealthProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The history and lock store (default: a [`MemoryStore`]).
    pub fn store(mut self, store: DynDeploymentStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The strategy for processes a request does not give one (required).
    pub fn default_strategy(mut self, strategy: DynStrategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// The health gate (default: [`HealthGate::default`]).
    pub fn health_gate(mut self, gate: HealthGate) -> Self {
        self.gate = gate;
        self
    }

    /// How many processes deploy at once (default 16).
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// How long a process lock lives without renewal (default 60 s). A crashed deployer's
    /// locks expire after this.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The engine, or [`Error::InvalidInput`] naming what is missing.
    pub fn build(self) -> Result<Engine> {
        fn required<T>(v: Option<T>, what: &'static str) -> Result<T> {
            v.ok_or_else(|| {
                Error::invalid(
                    "engine configuration",
                    what,
                    format!("is required; call EngineBuilder::{what}(...)"),
                )
            })
        }
        let concurrency = self.concurrency.unwrap_or(16);
        if concurrency == 0 {
            return Err(Error::invalid(
                "concurrency",
                "0",
                "must be at least 1 process at a time",
            ));
        }
        let lease = self.lease.unwrap_or(Duration::from_secs(60));
        if lease < Duration::from_millis(100) {
            return Err(Error::invalid(
                "lock lease",
                format!("{lease:?}"),
                "must be at least 100ms so renewals can keep up",
            ));
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                deployer: required(self.deployer, "deployer")?,
                registry: required(self.registry, "registry")?,
                probe: self.probe.unwrap_or_else(|| Arc::new(ContainerHealth)),
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                strategy: required(self.strategy, "default_strategy")?,
                gate: self.gate,
                concurrency,
                lease,
            }),
        })
    }
}

/// One process to deploy, resolved from a request.
#[derive(Debug, Clone)]
struct Planned {
    spec: ProcessSpec,
    strategy: DynStrategy,
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The history store.
    pub fn store(&self) -> &DynDeploymentStore {
        &self.inner.store
    }

    /// Starts a deployment. Everything that can be refused is refused here, before any
    /// change: an unknown app or process, a missing image, a strategy that does not fit a
    /// process, a process locked by another deployment.
    pub async fn deploy(&self, app: &AppName, request: DeployRequest) -> Result<DeploymentHandle> {
        let specs = self.inner.deployer.processes(app).await?;
        let known = || {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            format!("app {app} has: {}", names.join(", "))
        };
        let check = |p: &ProcessName| {
            if specs.iter().any(|s| &s.name == p) {
                Ok(())
            } else {
                Err(Error::not_found(Resource::Process, p.as_str(), known()))
            }
        };
        if let Some(p) = &request.process {
            check(p)?;
        }
        for p in request.strategies.keys() {
            check(p)?;
        }
        let planned = specs
            .iter()
            .filter(|s| request.process.as_ref().is_none_or(|p| p == &s.name))
            .map(|spec| {
                let strategy = request
                    .strategies
                    .get(&spec.name)
                    .or(request.strategy.as_ref())
                    .unwrap_or(&self.inner.strategy)
                    .clone();
                strategy.validate(spec)?;
                Ok(Planned {
                    spec: spec.clone(),
                    strategy,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if planned.is_empty() {
            return Err(Error::not_found(
                Resource::Process,
                "(any)",
                format!("app {app} has no processes to deploy"),
            ));
        }
        let image = self
            .inner
            .registry
            .resolve(app, &request.docker_tag)
            .await?;
        if image.digest.is_none() {
            return Err(Error::platform(
                "image resolution",
                format!("the registry resolved {image} without a digest"),
            ));
        }
        self.start(
            app,
            image,
            request.initiator,
            request.policy,
            request.lock_wait,
            request.process,
            planned,
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        app: &AppName,
        image: ImageRef,
        initiator: Initiator,
        policy: RollbackPolicy,
        lock_wait: Duration,
        only_process: Option<ProcessName>,
        planned: Vec<Planned>,
        resumes: Option<DeploymentId>,
    ) -> Result<DeploymentHandle> {
        let id = DeploymentId::new();
        let targets: Vec<Target> = planned
            .iter()
            .map(|p| Target::new(app.clone(), p.spec.name.clone()))
            .collect();
        self.lock_all(&targets, &id, lock_wait).await?;
        let record = DeploymentRecord {
            id,
            app: app.clone(),
            initiator,
            image: image.clone(),
            only_process,
            policy,
            status: DeploymentStatus::Running,
            created_at: SystemTime::now(),
            finished_at: None,
            resumes,
            steps: Vec::new(),
            processes: planned
                .iter()
                .map(|p| ProcessRecord::pending(p.spec.name.clone(), p.strategy.name()))
                .collect(),
        };
        if let Err(e) = self.inner.store.create(&record).await {
            self.unlock_all(&targets, &id).await;
            return Err(e);
        }
        let (events, first_events) = broadcast::channel(4096);
        let control = DeploymentControl::new();
        let shared = Arc::new(Shared {
            deployment: id,
            deployer: self.inner.deployer.clone(),
            probe: self.inner.probe.clone(),
            store: self.inner.store.clone(),
            events: events.clone(),
            gate: self.inner.gate.clone(),
        });
        let span = info_span!("deploy", app = %app, deployment.id = %id, image = %image);
        let driver = Driver {
            engine: self.clone(),
            shared,
            record,
            planned,
            targets,
            control: control.clone(),
        };
        let join = tokio::spawn(driver.run().instrument(span));
        Ok(DeploymentHandle {
            id,
            control,
            first_events: Some(first_events),
            events,
            join,
        })
    }

    async fn lock_all(&self, targets: &[Target], id: &DeploymentId, wait: Duration) -> Result<()> {
        let give_up = tokio::time::Instant::now() + wait;
        loop {
            let mut held = None;
            let mut taken = Vec::new();
            for t in targets {
                match self.inner.store.try_lock(t, id, self.inner.lease).await {
                    Ok(None) => taken.push(t.clone()),
                    Ok(Some(holder)) => {
                        held = Some((t.clone(), holder));
                        break;
                    }
                    Err(e) => {
                        self.unlock_all(&taken, id).await;
                        return Err(e);
                    }
                }
            }
            let Some((target, holder)) = held else {
                return Ok(());
            };
            self.unlock_all(&taken, id).await;
            let now = tokio::time::Instant::now();
            if now >= give_up {
                return Err(Error::Locked {
                    app: target.app.to_string(),
                    process: target.process.to_string(),
                    holder,
                });
            }
            tokio::time::sleep((give_up - now).min(Duration::from_secs(1))).await;
        }
    }

    async fn unlock_all(&self, targets: &[Target], id: &DeploymentId) {
        for t in targets {
            if let Err(e) = self.inner.store.unlock(t, id).await {
                warn!(error = %e, target = %t, "could not release a process lock; it expires with its lease");
            }
        }
    }

    /// The app's most recent deployment, with every step.
    pub async fn latest(&self, app: &AppName) -> Result<Option<DeploymentRecord>> {
        self.inner.store.latest(app).await
    }

    /// The app's deployments, newest first.
    pub async fn list(&self, app: &AppName, limit: usize) -> Result<Vec<DeploymentRecord>> {
        self.inner.store.list(app, limit).await
    }

    /// One deployment with every step, or [`Error::NotFound`].
    pub async fn get(&self, id: &DeploymentId) -> Result<DeploymentRecord> {
        self.inner.store.get(id).await?.ok_or_else(|| {
            Error::not_found(
                Resource::Deployment,
                id.to_string(),
                "see `tapit list deploys` for the app's deployments",
            )
        })
    }

    /// Finds the app's deployments whose deployer stopped mid-way (recorded as running, but
    /// holding no live lock) and marks them [`DeploymentStatus::Interrupted`]. Returns their
    /// ids; [`resume`](Self::resume) or [`rollback`](Self::rollback) each.
    pub async fn recover(&self, app: &AppName) -> Result<Vec<DeploymentId>> {
        let mut found = Vec::new();
        for summary in self.inner.store.list(app, 100).await? {
            if summary.status != DeploymentStatus::Running {
                continue;
            }
            let mut alive = false;
            for p in summary.processes.iter().filter(|p| !p.status.is_final()) {
                let target = Target::new(app.clone(), p.process.clone());
                if self.inner.store.lock_holder(&target).await? == Some(summary.id) {
                    alive = true;
                }
            }
            if alive {
                continue;
            }
            let Some(record) = self.inner.store.get(&summary.id).await? else {
                continue;
            };
            for p in record.processes.iter().filter(|p| !p.status.is_final()) {
                let mut p = p.clone();
                p.status = ProcessStatus::Interrupted;
                self.inner.store.update_process(&record.id, &p).await?;
            }
            self.inner
                .store
                .set_status(&record.id, DeploymentStatus::Interrupted)
                .await?;
            found.push(record.id);
        }
        Ok(found)
    }

    /// Rolls back the interrupted processes of an interrupted deployment to what they ran
    /// before it, from the platform state it recorded. Returns the updated record.
    pub async fn rollback(&self, id: &DeploymentId) -> Result<DeploymentRecord> {
        let record = self.interrupted(id).await?;
        self.restore_interrupted(&record, "interrupted; rolled back on request")
            .await?;
        self.get(id).await
    }

    /// Resumes an interrupted deployment: the processes it left half-way are first restored
    /// to their previous release (removing the orphaned new fleet), then deployed again with
    /// the same image digest, initiator and policy under a new deployment that records which
    /// one it resumes.
    pub async fn resume(&self, id: &DeploymentId) -> Result<DeploymentHandle> {
        let record = self.interrupted(id).await?;
        let names: Vec<ProcessName> = record
            .processes
            .iter()
            .filter(|p| p.status == ProcessStatus::Interrupted)
            .map(|p| p.process.clone())
            .collect();
        let specs = self.inner.deployer.processes(&record.app).await?;
        let planned = names
            .iter()
            .map(|n| {
                let spec = specs.iter().find(|s| &s.name == n).ok_or_else(|| {
                    Error::not_found(
                        Resource::Process,
                        n.as_str(),
                        format!("process no longer exists in app {}", record.app),
                    )
                })?;
                Ok(Planned {
                    spec: spec.clone(),
                    strategy: self.inner.strategy.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.restore_interrupted(&record, "interrupted; restored before resuming")
            .await?;
        self.start(
            &record.app,
            record.image.clone(),
            record.initiator.clone(),
            record.policy,
            Duration::ZERO,
            record.only_process.clone(),
            planned,
            Some(record.id),
        )
        .await
    }

    async fn interrupted(&self, id: &DeploymentId) -> Result<DeploymentRecord> {
        let record = self.get(id).await?;
        if record.status != DeploymentStatus::Interrupted {
            return Err(Error::invalid(
                "deployment",
                id.to_string(),
                format!(
                    "is {}, not interrupted; only interrupted deployments (see \
                     Engine::recover) can be resumed or rolled back",
                    record.status
                ),
            ));
        }
        Ok(record)
    }

    async fn restore_interrupted(&self, record: &DeploymentRecord, reason: &str) -> Result<()> {
        let targets: Vec<Target> = record
            .processes
            .iter()
            .filter(|p| p.status == ProcessStatus::Interrupted)
            .map(|p| Target::new(record.app.clone(), p.process.clone()))
            .collect();
        self.lock_all(&targets, &record.id, Duration::ZERO).await?;
        let (events, _) = broadcast::channel(16);
        let shared = Arc::new(Shared {
            deployment: record.id,
            deployer: self.inner.deployer.clone(),
            probe: self.inner.probe.clone(),
            store: self.inner.store.clone(),
            events,
            gate: self.inner.gate.clone(),
        });
        let specs = self.inner.deployer.processes(&record.app).await?;
        let mut statuses = Vec::new();
        for p in &record.processes {
            if p.status != ProcessStatus::Interrupted {
                statuses.push(p.status.clone());
                continue;
            }
            let load_balanced = specs.iter().any(|s| s.name == p.process && s.load_balanced);
            let restored = restore_recorded(&shared, &record.app, p, load_balanced, reason).await;
            statuses.push(restored.status);
        }
        let overall = DeploymentStatus::from_processes(&statuses);
        self.inner.store.set_status(&record.id, overall).await?;
        self.unlock_all(&targets, &record.id).await;
        Ok(())
    }
}

/// Restores a process to its previous release from its recorded state, without its strategy
/// (after a crash, or a strategy that panicked): the rollout's default rollback. Records and
/// returns the process's final record.
async fn restore_recorded(
    shared: &Arc<Shared>,
    app: &AppName,
    recorded: &ProcessRecord,
    load_balanced: bool,
    reason: &str,
) -> ProcessRecord {
    let mut out = match recorded.to.clone() {
        None => ProcessRecord {
            status: ProcessStatus::NotStarted {
                reason: format!("{reason}; nothing had changed yet"),
            },
            ..recorded.clone()
        },
        Some(revision) => {
            let control = DeploymentControl::new();
            let mut rollout = Rollout::new(
                shared.clone(),
                Target::new(app.clone(), recorded.process.clone()),
                load_balanced,
                recorded.state.stable_desired,
                revision,
                recorded.clone(),
                control.subscribe(),
            );
            rollout.set_rolling_back();
            let status = match rollout.restore_stable().await {
                Ok(()) => ProcessStatus::RolledBack {
                    reason: reason.to_owned(),
                },
                Err(e) => ProcessStatus::RollbackFailed {
                    reason: format!("{reason}, and the rollback failed: {e}"),
                },
            };
            ProcessRecord {
                status,
                ..rollout.record().clone()
            }
        }
    };
    out.finished_at = Some(SystemTime::now());
    finish(shared, &out).await;
    out
}

/// Aborts a background task when dropped, however its owner exits.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    }
}

/// Runs one deployment to its end.
struct Driver {
    engine: Engine,
    shared: Arc<Shared>,
    record: DeploymentRecord,
    planned: Vec<Planned>,
    targets: Vec<Target>,
    control: DeploymentControl,
}

/// How a process's run phase ended.
enum RunOutcome {
    /// Finished (succeeded or rolled back) — final.
    Done(Box<ProcessRecord>),
    /// The strategy succeeded; under all-or-nothing, the rollout waits for the verdict.
    Ready(Box<Rollout>, DynStrategy),
}

impl Driver {
    async fn run(self) -> Result<DeploymentRecord> {
        let Driver {
            engine,
            shared,
            mut record,
            planned,
            targets,
            control,
        } = self;
        let inner = &engine.inner;
        shared
            .emit(
                None,
                EventKind::Started {
                    image: record.image.clone(),
                    processes: planned.iter().map(|p| p.spec.name.clone()).collect(),
                },
            )
            .await;

        let renew = AbortOnDrop(tokio::spawn(renew_locks(
            inner.store.clone(),
            targets.clone(),
            record.id,
            inner.lease,
        )));

        let semaphore = Arc::new(Semaphore::new(inner.concurrency));
        let mut tasks = JoinSet::new();
        let mut task_index = HashMap::new();
        for (index, plan) in planned.into_iter().enumerate() {
            let span = info_span!(
                "deploy.process",
                app = %record.app,
                process = %plan.spec.name,
                deployment.id = %record.id,
            );
            let job = ProcessJob {
                shared: shared.clone(),
                app: record.app.clone(),
                image: record.image.clone(),
                meta: DeployMeta::new(record.id, record.initiator.clone()),
                policy: record.policy,
                control: control.clone(),
                semaphore: semaphore.clone(),
                plan,
            };
            let task = tasks.spawn(async move { (index, job.run().await) }.instrument(span));
            task_index.insert(task.id(), index);
        }
        drop(control);

        let mut ready = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (index, outcome) = match joined {
                Ok((_, done)) => done,
                Err(e) => {
                    // A strategy (or platform) panicked mid-deployment. Its state was recorded
                    // after every change: restore the old release from it.
                    let Some(&index) = task_index.get(&e.id()) else {
                        continue;
                    };
                    let reason = format!("the deployment panicked: {}", panic_message(e));
                    let recorded = inner
                        .store
                        .get(&record.id)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|r| r.processes.into_iter().nth(index))
                        .unwrap_or_else(|| record.processes[index].clone());
                    let load_balanced = recorded.state.candidate_weight > 0
                        || shared_spec_lb(&inner.deployer, &record.app, &recorded.process).await;
                    let restored =
                        restore_recorded(&shared, &record.app, &recorded, load_balanced, &reason)
                            .await;
                    record.processes[index] = restored;
                    continue;
                }
            };
            match outcome {
                RunOutcome::Done(p) => record.processes[index] = *p,
                RunOutcome::Ready(rollout, strategy) => ready.push((index, rollout, strategy)),
            }
        }

        if !ready.is_empty() {
            let failed: Vec<&ProcessRecord> = record
                .processes
                .iter()
                .filter(|p| p.status.is_final() && p.status != ProcessStatus::Succeeded)
                .collect();
            let verdict = if failed.is_empty() {
                None
            } else {
                let names: Vec<&str> = failed.iter().map(|p| p.process.as_str()).collect();
                Some(format!(
                    "all-or-nothing: rolled back because {} failed",
                    names.join(", ")
                ))
            };
            let mut finishing = JoinSet::new();
            for (index, rollout, strategy) in ready {
                let verdict = verdict.clone();
                let span = info_span!("deploy.process", process = %rollout.target().process);
                finishing.spawn(
                    async move {
                        let mut rollout = *rollout;
                        let record = match verdict {
                            None => finalize(&mut rollout, &strategy).await,
                            Some(reason) => {
                                roll_back(&mut rollout, &strategy, reason).await;
                                rollout.record().clone()
                            }
                        };
                        (index, record)
                    }
                    .instrument(span),
                );
            }
            while let Some(joined) = finishing.join_next().await {
                let (index, p) = joined.map_err(|e| Error::Platform {
                    operation: "process deployment".into(),
                    message: format!(
                        "a process finalization task panicked ({}); see the history for its \
                         state and roll it back with Engine::recover/rollback once its lock expires",
                        panic_message(e)
                    ),
                    source: None,
                })?;
                record.processes[index] = p;
            }
        }
        drop(renew);

        record.status =
            DeploymentStatus::from_processes(record.processes.iter().map(|p| &p.status));
        record.finished_at = Some(SystemTime::now());
        if let Err(e) = inner.store.set_status(&record.id, record.status).await {
            warn!(error = %e, "could not record the deployment's outcome in the history");
        }
        shared
            .emit(
                None,
                EventKind::Finished {
                    status: record.status,
                },
            )
            .await;
        engine.unlock_all(&targets, &record.id).await;
        Ok(record)
    }
}

/// Whether a process is load-balanced, by the platform's word (false if it cannot say).
async fn shared_spec_lb(deployer: &DynDeployer, app: &AppName, process: &ProcessName) -> bool {
    deployer
        .processes(app)
        .await
        .map(|specs| specs.iter().any(|s| &s.name == process && s.load_balanced))
        .unwrap_or(false)
}

async fn renew_locks(
    store: DynDeploymentStore,
    targets: Vec<Target>,
    id: DeploymentId,
    lease: Duration,
) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        for t in &targets {
            match store.try_lock(t, &id, lease).await {
                Ok(None) => {}
                Ok(Some(other)) => {
                    warn!(target = %t, holder = %other, "lost a process lock to another deployment")
                }
                Err(e) => warn!(error = %e, target = %t, "could not renew a process lock"),
            }
        }
    }
}

/// One process's deployment.
struct ProcessJob {
    shared: Arc<Shared>,
    app: AppName,
    image: ImageRef,
    meta: DeployMeta,
    policy: RollbackPolicy,
    control: DeploymentControl,
    semaphore: Arc<Semaphore>,
    plan: Planned,
}

impl ProcessJob {
    async fn run(self) -> RunOutcome {
        let ProcessJob {
            shared,
            app,
            image,
            meta,
            policy,
            control,
            semaphore,
            plan,
        } = self;
        let mut record = ProcessRecord::pending(plan.spec.name.clone(), plan.strategy.name());
        let not_started = |mut record: ProcessRecord, reason: String| {
            record.status = ProcessStatus::NotStarted { reason };
            record.finished_at = Some(SystemTime::now());
            record
        };
        let _permit = match semaphore.acquire_owned().await {
            Ok(p) => p,
            Err(_) => {
                return RunOutcome::Done(Box::new(not_started(
                    record,
                    "engine shutting down".into(),
                )));
            }
        };
        let rx = control.subscribe();
        drop(control);
        let aborted = rx.borrow().abort.clone();
        if let Some(reason) = aborted {
            let record = not_started(record, format!("aborted before it started: {reason}"));
            finish(&shared, &record).await;
            return RunOutcome::Done(Box::new(record));
        }
        let target = Target::new(app, plan.spec.name.clone());
        record.status = ProcessStatus::Running;
        record.started_at = Some(SystemTime::now());

        let prepared = async {
            let current = shared.deployer.current(&target).await?;
            let revision = shared.deployer.prepare(&target, &image, &meta).await?;
            Ok::<_, Error>((current, revision))
        }
        .await;
        let (current, revision) = match prepared {
            Ok(v) => v,
            Err(e) => {
                let record =
                    not_started(record, format!("could not prepare the new revision: {e}"));
                finish(&shared, &record).await;
                return RunOutcome::Done(Box::new(record));
            }
        };
        let desired = if current.fleet.is_some() {
            current.desired
        } else {
            plan.spec.desired
        };
        record.from = current.revision().cloned();
        record.to = Some(revision.clone());
        record.state = RolloutState {
            stable_desired: if current.fleet.is_some() {
                current.desired
            } else {
                0
            },
            stable_count: if current.fleet.is_some() {
                current.desired
            } else {
                0
            },
            stable: current.fleet.clone(),
            ..RolloutState::default()
        };
        let load_balanced = current.load_balanced || plan.spec.load_balanced;
        let mut rollout = Rollout::new(
            shared.clone(),
            target,
            load_balanced,
            desired,
            revision.clone(),
            record,
            rx,
        );
        rollout
            .note(
                EventKind::ProcessStarted {
                    strategy: plan.strategy.name().to_owned(),
                    from: current.revision().map(|r| r.id.clone()),
                    to: revision.id.clone(),
                }
                .to_string(),
            )
            .await;

        match plan.strategy.run(&mut rollout).await {
            Ok(()) if policy == RollbackPolicy::AllOrNothing => {
                rollout
                    .note("new version live; waiting for the other processes (all-or-nothing)")
                    .await;
                RunOutcome::Ready(Box::new(rollout), plan.strategy)
            }
            Ok(()) => RunOutcome::Done(Box::new(finalize(&mut rollout, &plan.strategy).await)),
            Err(e) => {
                roll_back(&mut rollout, &plan.strategy, e.to_string()).await;
                RunOutcome::Done(Box::new(rollout.record().clone()))
            }
        }
    }
}

/// Completes a succeeded process: retires the old fleet. A failure before the new fleet is
/// fully live rolls back; a failure after (retiring the old fleet) is noted, not fatal.
async fn finalize(rollout: &mut Rollout, strategy: &DynStrategy) -> ProcessRecord {
    match strategy.finalize(rollout).await {
        Ok(()) => set_final(rollout, ProcessStatus::Succeeded).await,
        Err(e) => {
            let state = rollout.state();
            let live = state.candidate_primary
                && (!rollout.load_balanced() || state.candidate_weight == 100);
            if live {
                rollout
                    .note(format!(
                        "the new version is live, but retiring the old fleet failed: {e}"
                    ))
                    .await;
                set_final(rollout, ProcessStatus::Succeeded).await
            } else {
                roll_back(
                    rollout,
                    strategy,
                    format!("completing the deployment failed: {e}"),
                )
                .await;
                rollout.record().clone()
            }
        }
    }
}

async fn roll_back(rollout: &mut Rollout, strategy: &DynStrategy, reason: String) {
    rollout.set_rolling_back();
    rollout
        .shared_emit(EventKind::RollingBack {
            reason: reason.clone(),
        })
        .await;
    let status = match strategy.rollback(rollout).await {
        Ok(()) => ProcessStatus::RolledBack { reason },
        Err(e) => ProcessStatus::RollbackFailed {
            reason: format!("{reason}; then the rollback failed: {e}"),
        },
    };
    set_final(rollout, status).await;
}

async fn set_final(rollout: &mut Rollout, status: ProcessStatus) -> ProcessRecord {
    let record = rollout.record_mut();
    record.status = status;
    record.finished_at = Some(SystemTime::now());
    let record = record.clone();
    rollout.persist_now().await;
    rollout
        .shared_emit(EventKind::ProcessFinished {
            status: record.status.clone(),
        })
        .await;
    record
}

async fn finish(shared: &Shared, record: &ProcessRecord) {
    if let Err(e) = shared
        .store
        .update_process(&shared.deployment, record)
        .await
    {
        warn!(error = %e, "could not record a process outcome in the history");
    }
    shared
        .emit(
            Some(&record.process),
            EventKind::ProcessFinished {
                status: record.status.clone(),
            },
        )
        .await;
}
