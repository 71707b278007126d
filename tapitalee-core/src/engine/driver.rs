//! Running one deployment: the fan-out of process deployments, the rollback policy, and
//! each process's run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};
use tracing::{Instrument, info_span, warn};

use tokio::sync::watch;

use crate::control::{ControlState, DeploymentControl};
use crate::domain::{AppName, DeploymentId, ImageRef};
use crate::event::EventKind;
use crate::fleet::{Release, RolloutControl, Target};
use crate::record::{
    DeploymentRecord, DeploymentStatus, ProcessRecord, ProcessStatus, RollbackPolicy, RolloutState,
};
use crate::rollout::{Rollout, Shared};
use crate::store::DynDeploymentStore;
use crate::strategy::DynStrategy;

use super::{Engine, Planned};

/// Aborts a background task when dropped, however its owner exits.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    }
}

/// Records a process that ended before anything changed, and returns its record.
pub(super) async fn not_started(
    shared: &Shared,
    mut record: ProcessRecord,
    reason: String,
) -> ProcessRecord {
    record.status = ProcessStatus::NotStarted { reason };
    record.finished_at = Some(SystemTime::now());
    shared
        .publish(
            Some(&record.process.clone()),
            Some(&record),
            EventKind::ProcessFinished {
                status: record.status.clone(),
            },
        )
        .await;
    record
}

/// Runs one deployment to its end.
pub(super) struct Driver {
    pub(super) engine: Engine,
    pub(super) shared: Arc<Shared>,
    pub(super) record: DeploymentRecord,
    pub(super) planned: Vec<Planned>,
    pub(super) targets: Vec<Target>,
    /// The deployment's controls, read-only: once the caller drops its handle, nobody can
    /// promote any more, and a manual gate without a duration aborts.
    pub(super) control: watch::Receiver<ControlState>,
}

/// How a process's run phase ended.
enum RunOutcome {
    /// Finished (succeeded or rolled back) — final.
    Done(Box<ProcessRecord>),
    /// The strategy succeeded; under all-or-nothing, the rollout waits for the verdict.
    Ready(Box<Rollout>, DynStrategy),
}

impl Driver {
    pub(super) async fn run(mut self) -> crate::Result<DeploymentRecord> {
        let processes = self.planned.iter().map(|p| p.spec.name.clone()).collect();
        self.shared
            .publish(
                None,
                None,
                EventKind::Started {
                    image: self.record.image.clone(),
                    processes,
                },
            )
            .await;
        let renew = AbortOnDrop(tokio::spawn(renew_locks(
            self.engine.inner.store.clone(),
            self.targets.clone(),
            self.record.id,
            self.engine.inner.lease,
        )));
        let ready = self.run_processes().await;
        self.settle(ready).await;
        drop(renew);
        self.finish().await;
        Ok(self.record)
    }

    /// Runs every process's strategy, at most `concurrency` at once. Returns the processes
    /// that succeeded but wait for the all-or-nothing verdict.
    async fn run_processes(&mut self) -> Vec<(usize, Rollout, DynStrategy)> {
        let semaphore = Arc::new(Semaphore::new(self.engine.inner.concurrency));
        let mut tasks = JoinSet::new();
        let mut index_of = HashMap::new();
        for (index, plan) in std::mem::take(&mut self.planned).into_iter().enumerate() {
            let span = info_span!(
                "deploy.process",
                app = %self.record.app,
                process = %plan.spec.name,
                deployment.id = %self.record.id,
            );
            let job = ProcessJob {
                shared: self.shared.clone(),
                app: self.record.app.clone(),
                image: self.record.image.clone(),
                policy: self.record.policy,
                control: self.control.clone(),
                semaphore: semaphore.clone(),
                plan,
            };
            // Boxed: the task cell then holds a pointer, not the job's whole state machine,
            // which spawning and joining would otherwise copy several times over.
            let job = Box::pin(async move { (index, job.run().await) }.instrument(span));
            let task = tasks.spawn(job);
            index_of.insert(task.id(), index);
        }
        let mut ready = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((_, (index, RunOutcome::Done(p)))) => self.record.processes[index] = *p,
                Ok((_, (index, RunOutcome::Ready(rollout, strategy)))) => {
                    ready.push((index, *rollout, strategy));
                }
                Err(e) => {
                    if let Some(&index) = index_of.get(&e.id()) {
                        self.restore_panicked(index, e).await;
                    }
                }
            }
        }
        ready
    }

    /// A strategy (or platform) panicked mid-deployment. Its state was recorded after every
    /// change: restore the old release from it.
    async fn restore_panicked(&mut self, index: usize, e: JoinError) {
        let reason = format!("the deployment panicked: {}", panic_message(e));
        let recorded = match self.engine.inner.store.get(&self.record.id).await {
            Ok(Some(r)) => r.processes.into_iter().nth(index),
            _ => None,
        }
        .unwrap_or_else(|| self.record.processes[index].clone());
        self.record.processes[index] = finish_recorded(
            &self.shared,
            &self.record.app,
            recorded,
            reason,
            Finish::RollBack,
        )
        .await;
    }

    /// Finalizes the processes that wait for the all-or-nothing verdict, or rolls them back
    /// if another failed.
    async fn settle(&mut self, ready: Vec<(usize, Rollout, DynStrategy)>) {
        if ready.is_empty() {
            return;
        }
        let failed: Vec<&str> = self
            .record
            .processes
            .iter()
            .filter(|p| p.status.is_final() && p.status != ProcessStatus::Succeeded)
            .map(|p| p.process.as_str())
            .collect();
        let verdict = (!failed.is_empty()).then(|| {
            format!(
                "all-or-nothing: rolled back because {} failed",
                failed.join(", ")
            )
        });
        let mut finishing = JoinSet::new();
        for (index, rollout, strategy) in ready {
            let verdict = verdict.clone();
            let span = info_span!("deploy.process", process = %rollout.target().process);
            finishing.spawn(
                async move {
                    let record = match verdict {
                        None => rollout.finalize(&strategy).await,
                        Some(reason) => rollout.roll_back(Some(&strategy), reason).await,
                    };
                    (index, record)
                }
                .instrument(span),
            );
        }
        while let Some(joined) = finishing.join_next().await {
            match joined {
                Ok((index, p)) => self.record.processes[index] = p,
                // Its record stays as last written; its lease lapses and recovery finds it.
                Err(e) => warn!(
                    panic = %panic_message(e),
                    "a process finalization task panicked; roll it back with Engine::recover \
                     and Engine::rollback once its lock expires"
                ),
            }
        }
    }

    /// Records the outcome and releases the locks in one store write, then announces it.
    async fn finish(&mut self) {
        let record = &mut self.record;
        record.status =
            DeploymentStatus::from_processes(record.processes.iter().map(|p| &p.status));
        record.finished_at = Some(SystemTime::now());
        let store = &self.engine.inner.store;
        if let Err(e) = store.finish(&record.id, record.status, &self.targets).await {
            warn!(error = %e, "could not record the deployment's outcome in the history");
            self.engine.unlock_all(&self.targets, &record.id).await;
        }
        let status = record.status;
        self.shared
            .publish(None, None, EventKind::Finished { status })
            .await;
    }
}

/// How a process is finished from its recorded state, without its strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    /// Roll it back (a strategy that panicked).
    RollBack,
    /// Complete it if the platform shows the new version live on its own, else roll it back
    /// (a deployer that died; see [`Rollout::recover`]).
    Recover,
}

/// Finishes a process from its recorded state, without its strategy. Records and returns its
/// final record.
pub(super) async fn finish_recorded(
    shared: &Arc<Shared>,
    app: &AppName,
    recorded: ProcessRecord,
    reason: String,
    how: Finish,
) -> ProcessRecord {
    let Some(revision) = recorded.to.clone() else {
        let reason = format!("{reason}; nothing had changed yet");
        return not_started(shared, recorded, reason).await;
    };
    let control = DeploymentControl::new();
    let mut rollout = Rollout::new(shared.clone(), app, revision, recorded, control.subscribe());
    rollout.rebuilt_from_history();
    match how {
        Finish::RollBack => rollout.roll_back(None, reason).await,
        Finish::Recover => rollout.recover(reason).await,
    }
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
        // At once: a store with group commit renews them in a few transactions.
        let renewed =
            futures::future::join_all(targets.iter().map(|t| store.try_lock(t, &id, lease))).await;
        for (t, got) in targets.iter().zip(renewed) {
            match got {
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
    policy: RollbackPolicy,
    control: watch::Receiver<ControlState>,
    semaphore: Arc<Semaphore>,
    plan: Planned,
}

impl ProcessJob {
    async fn run(self) -> RunOutcome {
        let record = ProcessRecord::pending(self.plan.spec.name.clone(), self.plan.strategy.name());
        let Ok(_permit) = self.semaphore.clone().acquire_owned().await else {
            let reason = "engine shutting down".to_owned();
            return RunOutcome::Done(Box::new(
                Box::pin(not_started(&self.shared, record, reason)).await,
            ));
        };
        let control = self.control.clone();
        let aborted = control.borrow().abort.clone();
        if let Some(reason) = aborted {
            let reason = format!("aborted before it started: {reason}");
            return RunOutcome::Done(Box::new(
                Box::pin(not_started(&self.shared, record, reason)).await,
            ));
        }
        let mut rollout = match Box::pin(self.begin(record, control)).await {
            Ok(rollout) => rollout,
            Err(record) => return RunOutcome::Done(record),
        };
        let strategy = self.plan.strategy;
        Box::pin(rollout.announce(strategy.name())).await;
        match strategy.run(&mut rollout).await {
            Ok(()) if self.policy == RollbackPolicy::AllOrNothing => {
                Box::pin(rollout.await_verdict()).await;
                RunOutcome::Ready(Box::new(rollout), strategy)
            }
            Ok(()) => RunOutcome::Done(Box::new(Box::pin(rollout.finalize(&strategy)).await)),
            Err(e) => {
                let record = Box::pin(rollout.roll_back(Some(&strategy), e.to_string())).await;
                RunOutcome::Done(Box::new(record))
            }
        }
    }

    /// Reads the process's release and prepares the new revision (concurrently: one round
    /// trip), then sets up its rollout; or records why it could not start.
    async fn begin(
        &self,
        mut record: ProcessRecord,
        control: watch::Receiver<ControlState>,
    ) -> Result<Rollout, Box<ProcessRecord>> {
        record.status = ProcessStatus::Running;
        record.started_at = Some(SystemTime::now());
        let ctx = self.shared.context(&self.app, &record);
        let platform = self.shared.platform();
        let prepared =
            futures::future::try_join(platform.current(&ctx), platform.prepare(&ctx, &self.image))
                .await;
        let (current, revision) = match prepared {
            Ok(v) => v,
            Err(e) => {
                let reason = format!("could not prepare the new revision: {e}");
                return Err(Box::new(not_started(&self.shared, record, reason).await));
            }
        };
        record.from = current.revision().cloned();
        record.to = Some(revision.clone());
        record.state = initial_state(&self.plan, current);
        Ok(Rollout::new(
            self.shared.clone(),
            &self.app,
            revision,
            record,
            control,
        ))
    }
}

/// Where a process's rollout starts: its release as the stable fleet, at the size it runs.
fn initial_state(plan: &Planned, current: Release) -> RolloutState {
    let running = if current.fleet.is_some() {
        current.desired
    } else {
        0
    };
    RolloutState {
        desired: if current.fleet.is_some() {
            current.desired
        } else {
            plan.spec.desired
        },
        load_balanced: plan.spec.load_balanced,
        platform_run: matches!(plan.spec.rollout, RolloutControl::Platform { .. }),
        platform_bake: match &plan.spec.rollout {
            RolloutControl::Platform { bake, .. } => *bake,
            RolloutControl::Engine => std::time::Duration::ZERO,
        },
        stable: current.fleet,
        stable_desired: running,
        stable_count: running,
        ..RolloutState::default()
    }
}
