//! How the engine starts and ends a [`Rollout`]: announce it, then finalize a success or roll
//! back a failure, and record the outcome with the process's final record in one write.

use std::time::SystemTime;

use super::{Phase, Rollout};
use crate::event::EventKind;
use crate::record::{ProcessRecord, ProcessStatus};
use crate::strategy::DynStrategy;

impl Rollout {
    /// Announces the process's deployment (its strategy, from and to which revision).
    pub(crate) async fn announce(&self, strategy: &str) {
        self.publish(EventKind::ProcessStarted {
            strategy: strategy.to_owned(),
            from: self.record.from.as_ref().map(|r| r.id.clone()),
            to: self.revision.id.clone(),
        })
        .await;
    }

    /// Records that the process waits for the all-or-nothing verdict (written now: the wait
    /// may be long).
    pub(crate) async fn await_verdict(&self) {
        self.note("new version live; waiting for the other processes (all-or-nothing)")
            .await;
        self.flush().await;
    }

    /// Completes a succeeded process with its strategy's `finalize` (retiring the old fleet).
    /// A failure before the new fleet is fully live rolls back; a failure after it (retiring
    /// the old fleet) is noted, not fatal: the process runs the new version.
    pub(crate) async fn finalize(mut self, strategy: &DynStrategy) -> ProcessRecord {
        match strategy.finalize(&mut self).await {
            Ok(()) => self.conclude(ProcessStatus::Succeeded).await,
            Err(e) if self.record.state.candidate_live() => {
                self.note(format!(
                    "the new version is live, but retiring the old fleet failed: {e}"
                ))
                .await;
                self.conclude(ProcessStatus::Succeeded).await
            }
            Err(e) => {
                let reason = format!("completing the deployment failed: {e}");
                self.roll_back(Some(strategy), reason).await
            }
        }
    }

    /// Rolls the process back from wherever it stopped: with its strategy's `rollback`, or
    /// without a strategy (after a crash or a panic) the default
    /// [`restore_stable`](Self::restore_stable).
    pub(crate) async fn roll_back(
        mut self,
        strategy: Option<&DynStrategy>,
        reason: String,
    ) -> ProcessRecord {
        self.phase = Phase::RollingBack;
        self.publish(EventKind::RollingBack {
            reason: reason.clone(),
        })
        .await;
        let rolled_back = match strategy {
            Some(strategy) => strategy.rollback(&mut self).await,
            None => self.restore_stable().await,
        };
        let status = match rolled_back {
            Ok(()) => ProcessStatus::RolledBack { reason },
            Err(e) => ProcessStatus::RollbackFailed {
                reason: format!("{reason}; then the rollback failed: {e}"),
            },
        };
        self.conclude(status).await
    }

    /// Finishes an interrupted process from the platform's actual state: if its new version
    /// is already live on its own (the old fleet retired or gone, or a first deploy made
    /// live), the deployment is completed; otherwise it is rolled back as recorded.
    pub(crate) async fn recover(mut self, reason: String) -> ProcessRecord {
        if !self.rolled_forward().await {
            return self.roll_back(None, reason).await;
        }
        self.phase = Phase::Completing;
        self.note(format!(
            "{reason}; the new version was already live with the old fleet gone: completing"
        ))
        .await;
        let desired = self.desired();
        let completed = match self.complete().await {
            Ok(()) => self.wait_candidate_healthy(desired).await,
            Err(e) => Err(e),
        };
        let status = match completed {
            Ok(()) => ProcessStatus::Succeeded,
            Err(e) => ProcessStatus::RollbackFailed {
                reason: format!(
                    "{reason}; the old fleet is gone and the new one could not be completed: \
                     {e}; deploy the previous tag again"
                ),
            },
        };
        self.conclude(status).await
    }

    /// Whether the process can only go forward: the new fleet is primary and the old one was
    /// retired (as recorded, or as the platform now says), or there never was an old one.
    async fn rolled_forward(&mut self) -> bool {
        let state = &self.record.state;
        if state.candidate.is_none() || !state.candidate_primary {
            return false;
        }
        let Some(stable) = state.live_stable().cloned() else {
            // Retired as recorded, or a first deploy made live.
            return state.stable_retired || state.candidate_live();
        };
        match self.shared.deployer.status(&self.ctx, &stable).await {
            Err(e) if e.is_fleet_not_found() => {
                // Retired after the last write: the platform is the truth.
                self.record.state.stable_retired = true;
                self.record.state.stable_count = 0;
                true
            }
            _ => false,
        }
    }

    /// Records the process's outcome (its record and a step, in one write) and hands the
    /// record back.
    pub(crate) async fn conclude(mut self, status: ProcessStatus) -> ProcessRecord {
        self.record.status = status.clone();
        self.record.finished_at = Some(SystemTime::now());
        self.publish_record(EventKind::ProcessFinished { status })
            .await;
        self.record
    }
}
