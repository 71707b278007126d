//! [`Rollout`]: the engine's handle on one process's deployment, which strategies drive.
//!
//! - `mod.rs`: the rollout, its controls (steps, pauses, abort) and the one publish path;
//! - `changes`: the platform changes, each recorded with its new state in one store write;
//! - `gate`: health gates and watching the new fleet;
//! - `restore`: the default rollback and completion;
//! - `lifecycle`: how the engine ends a rollout (finalize, roll back, record the outcome).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::control::ControlState;
use crate::domain::{AppName, DeploymentId, Initiator, ProcessName};
use crate::error::{Error, Result};
use crate::event::{DeployEvent, EventKind};
use crate::fleet::{Fleet, Revision, Target};
use crate::record::{ProcessRecord, RolloutState, StepRecord};
use crate::store::DynDeploymentStore;
use crate::traits::deployer::{DeployContext, DynDeployer};
use crate::traits::health::DynHealthProbe;
use crate::traits::retry::{RetryPolicy, retrying};

mod changes;
mod gate;
mod lifecycle;
mod restore;

pub use gate::HealthGate;

/// What a pause was released by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Its duration elapsed.
    Elapsed,
    /// `promote()`.
    Promoted,
    /// `promote_full()`: skip the remaining steps.
    PromotedFull,
}

/// Where a rollout is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The strategy moves the process forward: abortable, pausable.
    Running,
    /// The new version is live; the old fleet is being retired. Not abortable.
    Completing,
    /// Restoring the previous release. Not abortable.
    RollingBack,
}

/// Which of a process's two fleets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The fleet live before the deployment.
    Stable,
    /// The new fleet.
    Candidate,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Stable => "stable",
            Role::Candidate => "new",
        }
    }
}

/// What every rollout of a deployment shares: the platform under the engine's two retry
/// policies, the probe and gate, and the journal (store and event stream).
#[derive(Debug)]
pub(crate) struct Shared {
    deployment: DeploymentId,
    initiator: Initiator,
    /// The platform as given: for health polls, which the gate retries itself.
    deployer: DynDeployer,
    /// Under [`RetryPolicy::forward`]: changes while running.
    forward: DynDeployer,
    /// Under [`RetryPolicy::persevere`]: changes while rolling back or completing.
    persevering: DynDeployer,
    probe: DynHealthProbe,
    store: DynDeploymentStore,
    events: broadcast::Sender<DeployEvent>,
    gate: HealthGate,
}

impl Shared {
    pub(crate) fn new(
        deployment: DeploymentId,
        initiator: Initiator,
        deployer: DynDeployer,
        probe: DynHealthProbe,
        store: DynDeploymentStore,
        events: broadcast::Sender<DeployEvent>,
        gate: HealthGate,
    ) -> Arc<Self> {
        Arc::new(Shared {
            deployment,
            initiator,
            forward: retrying(deployer.clone(), RetryPolicy::forward()),
            persevering: retrying(deployer.clone(), RetryPolicy::persevere()),
            deployer,
            probe,
            store,
            events,
            gate,
        })
    }

    /// The context of a process's platform calls, from its record.
    pub(crate) fn context(&self, app: &AppName, record: &ProcessRecord) -> DeployContext {
        DeployContext::new(
            self.deployment,
            self.initiator.clone(),
            Target::new(app.clone(), record.process.clone()),
        )
        .with_stable(record.state.stable.clone())
    }

    /// The platform under the forward policy (for reading releases and preparing revisions).
    pub(crate) fn platform(&self) -> &DynDeployer {
        &self.forward
    }

    /// The one publish path: [`announce`](Self::announce) the event, then record it in the
    /// history at once (as a step, with the process's record replaced in the same store
    /// write when one is given). Health readings are not recorded. A history failure is
    /// traced, not fatal: the platform change already happened.
    pub(crate) async fn publish(
        &self,
        process: Option<&ProcessName>,
        record: Option<&ProcessRecord>,
        kind: EventKind,
    ) {
        let step = self.announce(process, kind);
        self.write(record, step.as_slice()).await;
    }

    /// Traces the event and sends it to the event stream; returns the step that records it
    /// in the history (none for health readings), for the caller to write.
    pub(crate) fn announce(
        &self,
        process: Option<&ProcessName>,
        kind: EventKind,
    ) -> Option<StepRecord> {
        let at = SystemTime::now();
        let message = kind.to_string();
        match process {
            Some(p) => info!(process = %p, "{message}"),
            None => info!("{message}"),
        }
        let recorded = !matches!(kind, EventKind::Health { .. });
        let _ = self.events.send(DeployEvent {
            deployment: self.deployment,
            process: process.cloned(),
            at,
            kind,
        });
        recorded.then(|| StepRecord {
            at,
            process: process.cloned(),
            message,
        })
    }

    /// Writes steps, with a process's record when given, in one store write.
    pub(crate) async fn write(&self, record: Option<&ProcessRecord>, steps: &[StepRecord]) {
        let written = match record {
            Some(record) => {
                self.store
                    .record_changes(&self.deployment, record, steps)
                    .await
            }
            None if steps.is_empty() => Ok(()),
            None => self.store.append_steps(&self.deployment, steps).await,
        };
        if let Err(e) = written {
            warn!(error = %e, "could not record a step in the deployment history");
        }
    }
}

/// One process's deployment, as a strategy sees it.
///
/// Every method that changes the platform records the new [`RolloutState`] in the history
/// before returning, so a rollback — even by another process after a crash — knows exactly
/// which fleets exist, at what size and with what traffic. The rollout owns the process's
/// record; the engine gets it back when the rollout ends.
#[derive(Debug)]
pub struct Rollout {
    shared: Arc<Shared>,
    ctx: DeployContext,
    revision: Revision,
    record: ProcessRecord,
    control: watch::Receiver<ControlState>,
    /// Promotions this process has used at its manual gates.
    promotions_seen: u64,
    phase: Phase,
    /// The new fleet's instances seen stopped, counted against the failure threshold.
    failed_instances: HashSet<String>,
    /// Whether the platform may be one change ahead of the record: the rollout was rebuilt
    /// from the history after its deployer died (which may have been mid-call), or a change
    /// call failed (a timeout or a lost answer may hide a change the platform made). Its
    /// rollback then sends every restoring change, whatever the record says is done.
    unsure: bool,
    /// Steps that changed nothing on the platform, announced but not written yet: they are
    /// written with the next state change, or before the rollout waits, whichever comes
    /// first (one store write instead of several).
    pending: std::sync::Mutex<Vec<StepRecord>>,
}

impl Rollout {
    /// A rollout of the process `record` describes (its state says where it stands), moving
    /// it to `revision`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        app: &AppName,
        revision: Revision,
        record: ProcessRecord,
        control: watch::Receiver<ControlState>,
    ) -> Self {
        Rollout {
            ctx: shared.context(app, &record),
            shared,
            revision,
            record,
            control,
            // Every promote() counts once for every process: it releases the manual gate a
            // process waits at, or the next one it reaches, whenever the process started.
            promotions_seen: 0,
            phase: Phase::Running,
            failed_instances: HashSet::new(),
            unsure: false,
            pending: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The deployment this rollout belongs to.
    pub fn deployment(&self) -> DeploymentId {
        self.shared.deployment
    }

    /// The app and process.
    pub fn target(&self) -> &Target {
        &self.ctx.target
    }

    /// The context of this rollout's platform calls: for a strategy or analysis that calls
    /// the platform itself.
    pub fn context(&self) -> &DeployContext {
        &self.ctx
    }

    /// How many instances the process should run when done.
    pub fn desired(&self) -> u32 {
        self.record.state.desired
    }

    /// Whether a load balancer fronts the process (traffic can be split).
    pub fn load_balanced(&self) -> bool {
        self.record.state.load_balanced
    }

    /// The new revision.
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The platform state reached so far.
    pub fn state(&self) -> &RolloutState {
        &self.record.state
    }

    /// The fleet live before the deployment, while it exists.
    pub fn stable(&self) -> Option<&Fleet> {
        self.record.state.live_stable()
    }

    /// The new fleet, once launched.
    pub fn candidate(&self) -> Option<&Fleet> {
        self.record.state.candidate.as_ref()
    }

    /// The health gate in force.
    pub fn gate(&self) -> &HealthGate {
        &self.shared.gate
    }

    /// Whether `promote_full()` asked to skip the remaining steps.
    pub fn full_promotion_requested(&self) -> bool {
        self.control.borrow().full
    }

    /// Records a step in the audit trail and the event stream, then honours the deployment's
    /// controls: returns [`Error::Aborted`] after `abort()`, waits while paused.
    pub async fn step(&mut self, message: impl Into<String>) -> Result<()> {
        self.check_abort()?;
        self.record.state.steps_done += 1;
        self.publish(EventKind::Step {
            message: message.into(),
        })
        .await;
        if self.control.borrow().paused && self.phase == Phase::Running {
            self.publish(EventKind::Paused {
                reason: "paused by request".into(),
            })
            .await;
            self.wait_until_unpaused().await?;
            self.publish(EventKind::Resumed).await;
        }
        Ok(())
    }

    /// Records something in the audit trail without making it a step (no pause point).
    pub async fn note(&self, message: impl Into<String>) {
        self.publish(EventKind::Step {
            message: message.into(),
        })
        .await;
    }

    /// A manual gate: waits for `promote()`, or `duration` if given, watching the new fleet
    /// meanwhile. Returns what released it, or [`Error::Aborted`].
    pub async fn pause(
        &mut self,
        duration: Option<Duration>,
        reason: impl Into<String>,
    ) -> Result<Resume> {
        self.check_abort()?;
        if self.full_promotion_requested() {
            return Ok(Resume::PromotedFull);
        }
        self.publish(EventKind::Paused {
            reason: reason.into(),
        })
        .await;
        let how = self.wait_for_promotion(duration).await?;
        self.publish(EventKind::Resumed).await;
        Ok(how)
    }

    /// Sleeps, waking early with [`Error::Aborted`] on `abort()` (not while rolling back).
    pub async fn sleep(&mut self, duration: Duration) -> Result<()> {
        self.flush().await;
        let until = Instant::now() + duration;
        loop {
            self.check_abort()?;
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(()),
                changed = self.control.changed(), if self.phase == Phase::Running => {
                    if changed.is_err() {
                        // The handle is gone: nobody can abort any more; just sleep.
                        tokio::time::sleep_until(until).await;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits while the deployment is paused (`pause()` on the handle) or until abort.
    async fn wait_until_unpaused(&mut self) -> Result<()> {
        self.flush().await;
        while self.control.borrow().paused {
            self.check_abort()?;
            if self.control.changed().await.is_err() {
                return Err(Error::Aborted {
                    reason: "the deployment handle was dropped while paused".into(),
                });
            }
        }
        self.check_abort()
    }

    async fn wait_for_promotion(&mut self, duration: Option<Duration>) -> Result<Resume> {
        self.flush().await;
        let until = duration.map(|d| Instant::now() + d);
        let watching = self.record.state.candidate.is_some() && self.phase == Phase::Running;
        let mut next_check = Instant::now() + self.shared.gate.poll_interval;
        loop {
            self.check_abort()?;
            if let Some(how) = self.take_promotion() {
                return Ok(how);
            }
            let sleep = async {
                match until {
                    Some(u) => tokio::time::sleep_until(u).await,
                    None => std::future::pending().await,
                }
            };
            let tick = async {
                if watching {
                    tokio::time::sleep_until(next_check).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = sleep => return Ok(Resume::Elapsed),
                () = tick => {
                    // A paused rollout still watches its new fleet: a crash loop during a
                    // pause fails the process instead of waiting for a promotion.
                    next_check = Instant::now() + self.shared.gate.poll_interval;
                    self.check_candidate_failures().await?;
                }
                changed = self.control.changed() => {
                    if changed.is_err() {
                        return match until {
                            // Nobody can promote any more: a timed pause still ends on time.
                            Some(u) => {
                                tokio::time::sleep_until(u).await;
                                Ok(Resume::Elapsed)
                            }
                            None => Err(Error::Aborted {
                                reason: "the deployment handle was dropped while paused".into(),
                            }),
                        };
                    }
                }
            }
        }
    }

    /// Uses one promotion not yet used by this process, if there is one.
    fn take_promotion(&mut self) -> Option<Resume> {
        let state = self.control.borrow();
        if state.promotions <= self.promotions_seen {
            return None;
        }
        let full = state.full;
        drop(state);
        self.promotions_seen += 1;
        Some(if full {
            Resume::PromotedFull
        } else {
            Resume::Promoted
        })
    }

    fn check_abort(&self) -> Result<()> {
        if self.phase != Phase::Running {
            return Ok(());
        }
        match &self.control.borrow().abort {
            Some(reason) => Err(Error::Aborted {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Publishes an event about this process; its step is written with the next change or
    /// before the next wait.
    async fn publish(&self, kind: EventKind) {
        if let Some(step) = self.shared.announce(Some(&self.record.process), kind) {
            self.pending_steps().push(step);
        }
    }

    fn pending_steps(&self) -> std::sync::MutexGuard<'_, Vec<StepRecord>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the steps held back, before time passes.
    async fn flush(&self) {
        let steps = std::mem::take(&mut *self.pending_steps());
        self.shared.write(None, &steps).await;
    }

    /// Publishes a change of the process's record (a platform change, or its outcome): the
    /// record, the steps held back and a step about the change, in one store write.
    async fn publish_record(&self, kind: EventKind) {
        let step = self.shared.announce(Some(&self.record.process), kind);
        let mut steps = std::mem::take(&mut *self.pending_steps());
        steps.extend(step);
        self.shared.write(Some(&self.record), &steps).await;
    }

    /// Publishes a platform change: the process's new record and a step about it.
    async fn publish_change(&self, message: impl Into<String>) {
        self.publish_record(EventKind::Step {
            message: message.into(),
        })
        .await;
    }
}
