//! Running one deployment: the fan-out of process deployments, the rollback policy, and
//! each process's run, rollback and completion.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, info_span, warn};

use crate::control::DeploymentControl;
use crate::domain::{AppName, DeploymentId, ImageRef, ProcessName};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::fleet::Target;
use crate::record::{
    DeploymentRecord, DeploymentStatus, ProcessRecord, ProcessStatus, RollbackPolicy, RolloutState,
};
use crate::rollout::{Rollout, Shared};
use crate::store::DynDeploymentStore;
use crate::strategy::DynStrategy;
use crate::traits::deployer::{DeployMeta, DynDeployer};

use super::{Engine, Planned};

/// Restores a process to its previous release from its recorded state, without its strategy
/// (after a crash, or a strategy that panicked): the rollout's default rollback. Records and
/// returns the process's final record.
pub(super) async fn restore_recorded(
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
pub(super) struct Driver {
    pub(super) engine: Engine,
    pub(super) shared: Arc<Shared>,
    pub(super) record: DeploymentRecord,
    pub(super) planned: Vec<Planned>,
    pub(super) targets: Vec<Target>,
    pub(super) control: DeploymentControl,
}

/// How a process's run phase ended.
enum RunOutcome {
    /// Finished (succeeded or rolled back) — final.
    Done(Box<ProcessRecord>),
    /// The strategy succeeded; under all-or-nothing, the rollout waits for the verdict.
    Ready(Box<Rollout>, DynStrategy),
}

impl Driver {
    pub(super) async fn run(self) -> Result<DeploymentRecord> {
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

        // Independent platform reads/writes: one round trip on the critical path, not two.
        let prepared = futures::future::try_join(
            shared.deployer.current(&target),
            shared.deployer.prepare(&target, &image, &meta),
        )
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
