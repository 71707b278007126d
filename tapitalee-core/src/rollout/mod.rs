//! [`Rollout`]: the engine's handle on one process's deployment, which strategies drive.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::control::ControlState;
use crate::domain::DeploymentId;
use crate::error::{Error, Result};
use crate::event::{DeployEvent, EventKind};
use crate::fleet::{Fleet, Revision, Target, TrafficWeight};
use crate::record::{ProcessRecord, RolloutState, StepRecord};
use crate::store::DynDeploymentStore;
use crate::traits::deployer::{DynDeployer, RollbackOrder};
use crate::traits::health::DynHealthProbe;

mod gate;

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

/// Which of a process's two fleets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
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

/// What every rollout of a deployment shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) deployment: DeploymentId,
    pub(crate) deployer: DynDeployer,
    pub(crate) probe: DynHealthProbe,
    pub(crate) store: DynDeploymentStore,
    pub(crate) events: broadcast::Sender<DeployEvent>,
    pub(crate) gate: HealthGate,
}

impl Shared {
    /// Emits an event, records it as a step and traces it. History failures are traced, not
    /// fatal: the platform change already happened. Health readings are events only.
    pub(crate) async fn emit(&self, process: Option<&crate::ProcessName>, kind: EventKind) {
        self.publish(process, None, kind).await;
    }

    /// Like [`emit`](Self::emit) for a process, also replacing its record in the same store
    /// write.
    pub(crate) async fn emit_change(&self, record: &ProcessRecord, kind: EventKind) {
        self.publish(Some(&record.process), Some(record), kind)
            .await;
    }

    async fn publish(
        &self,
        process: Option<&crate::ProcessName>,
        record: Option<&ProcessRecord>,
        kind: EventKind,
    ) {
        let at = SystemTime::now();
        let message = kind.to_string();
        match process {
            Some(p) => info!(process = %p, "{message}"),
            None => info!("{message}"),
        }
        let step = StepRecord {
            at,
            process: process.cloned(),
            message,
        };
        let written = match record {
            Some(record) => {
                self.store
                    .record_change(&self.deployment, record, &step)
                    .await
            }
            None if matches!(kind, EventKind::Health { .. }) => Ok(()),
            None => self.store.append_step(&self.deployment, &step).await,
        };
        if let Err(e) = written {
            warn!(error = %e, "could not record a step in the deployment history");
        }
        let _ = self.events.send(DeployEvent {
            deployment: self.deployment,
            process: process.cloned(),
            at,
            kind,
        });
    }
}

/// One process's deployment, as a strategy sees it.
///
/// Every method that changes the platform records the new [`RolloutState`] in the history
/// before returning, so a rollback — even by another process after a crash — knows exactly
/// which fleets exist, at what size and with what traffic.
#[derive(Debug)]
pub struct Rollout {
    shared: Arc<Shared>,
    target: Target,
    load_balanced: bool,
    desired: u32,
    revision: Revision,
    record: ProcessRecord,
    control: watch::Receiver<ControlState>,
    promotions_seen: u64,
    rolling_back: bool,
    failed_instances: HashSet<String>,
    rollback_order: RollbackOrder,
}

impl Rollout {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        target: Target,
        load_balanced: bool,
        desired: u32,
        revision: Revision,
        record: ProcessRecord,
        control: watch::Receiver<ControlState>,
    ) -> Self {
        let promotions_seen = control.borrow().promotions;
        let rollback_order = shared.deployer.rollback_order(&target);
        Rollout {
            shared,
            target,
            load_balanced,
            desired,
            revision,
            record,
            control,
            promotions_seen,
            rolling_back: false,
            failed_instances: HashSet::new(),
            rollback_order,
        }
    }

    /// The deployment this rollout belongs to.
    pub fn deployment(&self) -> DeploymentId {
        self.shared.deployment
    }

    /// The app and process.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How many instances the process should run when done.
    pub fn desired(&self) -> u32 {
        self.desired
    }

    /// Whether a load balancer fronts the process (traffic can be split).
    pub fn load_balanced(&self) -> bool {
        self.load_balanced
    }

    /// The new revision.
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The platform state reached so far.
    pub fn state(&self) -> &RolloutState {
        &self.record.state
    }

    /// The fleet live before the deployment, if any.
    pub fn stable(&self) -> Option<&Fleet> {
        self.record.state.stable.as_ref()
    }

    /// The new fleet, once launched.
    pub fn candidate(&self) -> Option<&Fleet> {
        self.record.state.candidate.as_ref()
    }

    /// The health gate in force.
    pub fn gate(&self) -> &HealthGate {
        &self.shared.gate
    }

    /// Whether this rollout is rolling back (aborts are ignored then).
    pub fn is_rolling_back(&self) -> bool {
        self.rolling_back
    }

    /// Whether `promote_full()` asked to skip the remaining steps.
    pub fn full_promotion_requested(&self) -> bool {
        self.control.borrow().full
    }

    pub(crate) fn record(&self) -> &ProcessRecord {
        &self.record
    }

    pub(crate) fn record_mut(&mut self) -> &mut ProcessRecord {
        &mut self.record
    }

    pub(crate) async fn persist_now(&self) {
        self.persist().await;
    }

    pub(crate) async fn shared_emit(&self, kind: EventKind) {
        self.emit(kind).await;
    }

    pub(crate) fn set_rolling_back(&mut self) {
        self.rolling_back = true;
    }

    /// Records a step in the audit trail and the event stream, then honours the deployment's
    /// controls: returns [`Error::Aborted`] after `abort()`, waits while paused.
    pub async fn step(&mut self, message: impl Into<String>) -> Result<()> {
        self.check_abort()?;
        self.record.state.steps_done += 1;
        self.emit(EventKind::Step {
            message: message.into(),
        })
        .await;
        if self.control.borrow().paused && !self.rolling_back {
            self.emit(EventKind::Paused {
                reason: "paused by request".into(),
            })
            .await;
            self.wait_for_promotion(None).await?;
            self.emit(EventKind::Resumed).await;
        }
        Ok(())
    }

    /// Records something in the audit trail without making it a step (no pause point).
    pub async fn note(&self, message: impl Into<String>) {
        self.emit(EventKind::Step {
            message: message.into(),
        })
        .await;
    }

    /// Waits for `promote()`, or `duration` if given. Returns what released it, or
    /// [`Error::Aborted`].
    pub async fn pause(
        &mut self,
        duration: Option<Duration>,
        reason: impl Into<String>,
    ) -> Result<Resume> {
        self.check_abort()?;
        if self.full_promotion_requested() {
            return Ok(Resume::PromotedFull);
        }
        self.emit(EventKind::Paused {
            reason: reason.into(),
        })
        .await;
        let how = self.wait_for_promotion(duration).await?;
        self.emit(EventKind::Resumed).await;
        Ok(how)
    }

    /// Sleeps, waking early with [`Error::Aborted`] on `abort()` (not while rolling back).
    pub async fn sleep(&mut self, duration: Duration) -> Result<()> {
        let until = Instant::now() + duration;
        loop {
            self.check_abort()?;
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(()),
                changed = self.control.changed(), if !self.rolling_back => {
                    if changed.is_err() {
                        // The handle is gone: nobody can abort any more; just sleep.
                        tokio::time::sleep_until(until).await;
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn wait_for_promotion(&mut self, duration: Option<Duration>) -> Result<Resume> {
        let until = duration.map(|d| Instant::now() + d);
        let watching = self.record.state.candidate.is_some() && !self.rolling_back;
        let mut next_check = Instant::now() + self.shared.gate.poll_interval;
        loop {
            self.check_abort()?;
            let state = self.control.borrow().clone();
            if state.promotions > self.promotions_seen {
                self.promotions_seen = state.promotions;
                return Ok(if state.full {
                    Resume::PromotedFull
                } else {
                    Resume::Promoted
                });
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
                        match until {
                            // Nobody can promote any more: a timed pause still ends on time.
                            Some(u) => {
                                tokio::time::sleep_until(u).await;
                                return Ok(Resume::Elapsed);
                            }
                            None => {
                                return Err(Error::Aborted {
                                    reason: "the deployment handle was dropped while paused"
                                        .into(),
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    fn check_abort(&self) -> Result<()> {
        if self.rolling_back {
            return Ok(());
        }
        match &self.control.borrow().abort {
            Some(reason) => Err(Error::Aborted {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    async fn emit(&self, kind: EventKind) {
        self.shared.emit(Some(&self.target.process), kind).await;
    }

    /// Runs one platform change. While rolling back (or completing), a failed change is
    /// retried a few times with backoff before giving up: a rollback is the one operation
    /// that must not be abandoned on a passing failure. Refusals of the request itself
    /// (invalid input) are not retried.
    async fn persevere<T, F, Fut>(&self, what: &str, mut change: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        const RETRIES: u32 = 3;
        let mut attempt = 0;
        loop {
            match change().await {
                Ok(v) => return Ok(v),
                Err(e)
                    if self.rolling_back
                        && attempt < RETRIES
                        && !matches!(e, Error::InvalidInput { .. } | Error::Aborted { .. }) =>
                {
                    attempt += 1;
                    let backoff = Duration::from_secs(1 << (attempt - 1));
                    self.note(format!(
                        "{what} failed ({e}); retrying in {} ({attempt}/{RETRIES})",
                        humantime::format_duration(backoff)
                    ))
                    .await;
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records a platform change: the new state and a step about it, in one store write.
    async fn changed(&self, message: impl Into<String>) {
        self.shared
            .emit_change(
                &self.record,
                EventKind::Step {
                    message: message.into(),
                },
            )
            .await;
    }

    async fn persist(&self) {
        if let Err(e) = self
            .shared
            .store
            .update_process(&self.shared.deployment, &self.record)
            .await
        {
            warn!(error = %e, "could not record rollout state in the deployment history");
        }
    }

    fn fleet(&self, role: Role) -> Result<Fleet> {
        let fleet = match role {
            Role::Stable => self.record.state.stable.clone(),
            Role::Candidate => self.record.state.candidate.clone(),
        };
        fleet.ok_or_else(|| {
            Error::platform(
                format!("use of the {} fleet", role.label()),
                format!(
                    "process {} has no {} fleet (launch one first)",
                    self.target,
                    role.label()
                ),
            )
        })
    }

    /// Launches the new fleet with `count` instances (taking no traffic yet). Launching again
    /// scales the existing new fleet instead.
    pub async fn launch(&mut self, count: u32) -> Result<Fleet> {
        self.check_abort()?;
        if let Some(fleet) = self.record.state.candidate.clone() {
            self.scale_candidate(count).await?;
            return Ok(fleet);
        }
        let fleet = self
            .shared
            .deployer
            .launch(&self.target, &self.revision, count)
            .await?;
        debug!(fleet = %fleet.id, count, "launched new fleet");
        self.record.state.candidate = Some(fleet.clone());
        self.record.state.candidate_count = count;
        self.changed(format!(
            "launched new fleet {} with {count} instance(s)",
            fleet.id
        ))
        .await;
        Ok(fleet)
    }

    /// Asks the new fleet to run `count` instances.
    pub async fn scale_candidate(&mut self, count: u32) -> Result<()> {
        self.scale(Role::Candidate, count).await
    }

    /// Asks the old fleet to run `count` instances (no-op without one).
    pub async fn scale_stable(&mut self, count: u32) -> Result<()> {
        if self.record.state.stable.is_none() || self.record.state.stable_retired {
            return Ok(());
        }
        self.scale(Role::Stable, count).await
    }

    async fn scale(&mut self, role: Role, count: u32) -> Result<()> {
        self.check_abort()?;
        let fleet = self.fleet(role)?;
        let current = match role {
            Role::Stable => self.record.state.stable_count,
            Role::Candidate => self.record.state.candidate_count,
        };
        if current == count {
            return Ok(());
        }
        let d = self.shared.deployer.clone();
        self.persevere("scale", || d.scale(&fleet, count)).await?;
        match role {
            Role::Stable => self.record.state.stable_count = count,
            Role::Candidate => self.record.state.candidate_count = count,
        }
        self.changed(format!(
            "scaled {} fleet from {current} to {count}",
            role.label()
        ))
        .await;
        Ok(())
    }

    /// Sends `percent` of traffic to the new fleet and the rest to the old one. Only for
    /// load-balanced processes; a process without an old fleet always sends 100% to the new.
    pub async fn route(&mut self, percent: u8) -> Result<()> {
        self.check_abort()?;
        if !self.load_balanced {
            return Err(Error::invalid(
                "traffic weight",
                percent.to_string(),
                format!(
                    "process {} has no load balancer, so its traffic cannot be split; use \
                     instance counts instead",
                    self.target
                ),
            ));
        }
        if percent > 100 {
            return Err(Error::invalid(
                "traffic weight",
                percent.to_string(),
                "must be a percentage from 0 to 100",
            ));
        }
        if percent == self.record.state.candidate_weight {
            return Ok(());
        }
        let candidate = self.fleet(Role::Candidate)?;
        let mut weights = vec![TrafficWeight {
            fleet: candidate.id.clone(),
            percent,
        }];
        match (&self.record.state.stable, self.record.state.stable_retired) {
            (Some(stable), false) => weights.push(TrafficWeight {
                fleet: stable.id.clone(),
                percent: 100 - percent,
            }),
            _ if percent < 100 => {
                return Err(Error::invalid(
                    "traffic weight",
                    percent.to_string(),
                    "there is no old fleet to take the rest of the traffic; route 100%",
                ));
            }
            _ => {}
        }
        let d = self.shared.deployer.clone();
        let target = self.target.clone();
        self.persevere("route", || d.route(&target, &weights))
            .await?;
        self.record.state.candidate_weight = percent;
        self.changed(format!("routed {percent}% of traffic to the new fleet"))
            .await;
        Ok(())
    }

    /// Makes the new fleet the process's live release.
    pub async fn make_primary(&mut self) -> Result<()> {
        self.check_abort()?;
        if self.record.state.candidate_primary {
            return Ok(());
        }
        let candidate = self.fleet(Role::Candidate)?;
        let d = self.shared.deployer.clone();
        self.persevere("make primary", || d.make_primary(&candidate))
            .await?;
        self.record.state.candidate_primary = true;
        self.changed("made the new fleet primary").await;
        Ok(())
    }

    /// The default rollback, from any state: restore the old fleet's capacity and wait for it,
    /// then its traffic and primacy, then retire the new fleet. Never leaves the process
    /// without healthy capacity that it had before.
    ///
    /// When the platform restores the old version itself ([`RollbackOrder::RetireFirst`]),
    /// traffic and primacy go back first, then the new fleet is retired, then the old fleet's
    /// capacity is awaited.
    pub async fn restore_stable(&mut self) -> Result<()> {
        self.rolling_back = true;
        if self.rollback_order == RollbackOrder::RetireFirst {
            return self.restore_by_retiring().await;
        }
        let state = self.record.state.clone();
        match (&state.stable, state.stable_retired) {
            (Some(_), false) => {
                let wanted = state.stable_desired;
                if state.stable_count < wanted {
                    self.scale(Role::Stable, wanted).await?;
                }
                self.wait_healthy(Role::Stable, wanted).await?;
                if self.load_balanced && state.candidate_weight > 0 && state.candidate.is_some() {
                    self.route(0).await?;
                }
                if state.candidate_primary {
                    let stable = self.fleet(Role::Stable)?;
                    let d = self.shared.deployer.clone();
                    self.persevere("make primary", || d.make_primary(&stable))
                        .await?;
                    self.record.state.candidate_primary = false;
                    self.changed("made the old fleet primary again").await;
                }
            }
            (Some(stable), true) => {
                return Err(Error::platform(
                    "rollback",
                    format!(
                        "the old fleet {} was already retired; deploy the previous tag again",
                        stable.id
                    ),
                ));
            }
            (None, _) => {}
        }
        self.retire(Role::Candidate).await
    }

    async fn restore_by_retiring(&mut self) -> Result<()> {
        let state = self.record.state.clone();
        if let (Some(stable), true) = (&state.stable, state.stable_retired) {
            return Err(Error::platform(
                "rollback",
                format!(
                    "the old fleet {} was already retired; deploy the previous tag again",
                    stable.id
                ),
            ));
        }
        let has_stable = state.stable.is_some();
        if has_stable
            && self.load_balanced
            && state.candidate_weight > 0
            && state.candidate.is_some()
        {
            self.route(0).await?;
        }
        if has_stable && state.candidate_primary {
            let stable = self.fleet(Role::Stable)?;
            let d = self.shared.deployer.clone();
            self.persevere("make primary", || d.make_primary(&stable))
                .await?;
            self.record.state.candidate_primary = false;
            self.changed("made the old fleet primary again").await;
        }
        self.retire(Role::Candidate).await?;
        if has_stable {
            let wanted = state.stable_desired;
            if state.stable_count < wanted {
                self.scale(Role::Stable, wanted).await?;
            }
            self.wait_healthy(Role::Stable, wanted).await?;
        }
        Ok(())
    }

    /// The default completion: the new fleet at full size, all traffic and primary; then the
    /// old fleet retired.
    pub async fn complete(&mut self) -> Result<()> {
        self.rolling_back = true; // completion is not abortable: it only removes the old fleet
        if self.record.state.candidate_count < self.desired {
            self.scale(Role::Candidate, self.desired).await?;
            self.wait_healthy(Role::Candidate, self.desired).await?;
        }
        if self.load_balanced && self.record.state.candidate_weight < 100 {
            self.route(100).await?;
        }
        self.make_primary().await?;
        self.retire(Role::Stable).await
    }

    /// Retires the old fleet (the deployment can no longer be undone in place).
    pub async fn retire_stable(&mut self) -> Result<()> {
        self.retire(Role::Stable).await
    }

    async fn retire(&mut self, role: Role) -> Result<()> {
        let fleet = match role {
            Role::Stable if !self.record.state.stable_retired => self.record.state.stable.clone(),
            Role::Stable => None,
            Role::Candidate => self.record.state.candidate.clone(),
        };
        let Some(fleet) = fleet else { return Ok(()) };
        let d = self.shared.deployer.clone();
        self.persevere("retire", || d.retire(&fleet)).await?;
        match role {
            Role::Stable => {
                self.record.state.stable_retired = true;
                self.record.state.stable_count = 0;
            }
            Role::Candidate => {
                self.record.state.candidate = None;
                self.record.state.candidate_count = 0;
                self.record.state.candidate_weight = 0;
            }
        }
        self.changed(format!("retired {} fleet {}", role.label(), fleet.id))
            .await;
        Ok(())
    }
}
