//! The default rollback and completion of a [`Rollout`].

use super::{Phase, Role, Rollout};
use crate::error::{Error, Result};

impl Rollout {
    /// The default rollback, from any state: restore the old fleet's capacity and wait for it,
    /// then its traffic and primacy, then retire the new fleet. Never leaves the process
    /// without healthy capacity that it had before.
    ///
    /// On a process whose platform runs the rollout, retiring the new fleet is what brings the
    /// old version back (ECS: stopping the deployment with `ROLLBACK`): traffic and primacy go
    /// back first, then the new fleet is retired, then the old fleet's capacity is awaited.
    pub async fn restore_stable(&mut self) -> Result<()> {
        self.phase = Phase::RollingBack;
        self.find_unrecorded_launch().await?;
        let state = &self.record.state;
        if let (Some(stable), true) = (&state.stable, state.stable_retired) {
            return Err(Error::platform(
                "rollback",
                format!(
                    "the old fleet {} was already retired; deploy the previous tag again",
                    stable.id
                ),
            ));
        }
        if state.platform_run {
            self.return_to_stable().await?;
            self.retire(Role::Candidate).await?;
            self.restore_capacity().await
        } else {
            self.restore_capacity().await?;
            self.return_to_stable().await?;
            self.retire(Role::Candidate).await
        }
    }

    /// After a deployer died between launching the new fleet and recording it: asks the
    /// platform for the fleet ([`Deployer::discover`](crate::Deployer::discover)) and records
    /// it as the new fleet, so the rollback retires it (on a platform-run process, that sends
    /// the platform back to the old fleet). Nothing to do unless a launch is unrecorded.
    pub(crate) async fn find_unrecorded_launch(&mut self) -> Result<()> {
        let state = &self.record.state;
        if !state.launching || state.candidate.is_some() {
            return Ok(());
        }
        let found = self
            .platform()
            .discover(&self.ctx, &self.revision)
            .await
            .map_err(|e| {
                Error::platform(
                    "rollback",
                    format!(
                        "a launch of revision {} was sent but its fleet was never recorded, and \
                         the platform could not be asked for it: {e}",
                        self.revision.id
                    ),
                )
            })?;
        self.record.state.launching = false;
        match found {
            Some(fleet) => {
                self.record.state.candidate = Some(fleet.clone());
                self.publish_change(format!(
                    "found new fleet {} on the platform: launched before the deployer stopped, \
                     never recorded",
                    fleet.id
                ))
                .await;
            }
            None => {
                self.publish_change(format!(
                    "the platform runs no fleet of revision {}: the launch never took effect",
                    self.revision.id
                ))
                .await;
            }
        }
        Ok(())
    }

    /// The old fleet back at the size it had before the deployment, healthy (no minimum
    /// healthy time: it is the known-good version). Nothing to do without an old fleet.
    async fn restore_capacity(&mut self) -> Result<()> {
        let state = &self.record.state;
        if state.live_stable().is_none() {
            return Ok(());
        }
        let wanted = state.stable_desired;
        // Sent even at the recorded size when the record may lag: the platform may have
        // scaled the old fleet down without the record showing it.
        let always = self.resend_restores();
        if state.stable_count < wanted || always {
            self.scale_to(Role::Stable, wanted, always).await?;
        }
        self.wait_healthy(Role::Stable, wanted).await
    }

    /// All traffic and primacy back to the old fleet, if the new one has any.
    async fn return_to_stable(&mut self) -> Result<()> {
        let state = &self.record.state;
        if state.live_stable().is_none() {
            return Ok(());
        }
        let always = self.resend_restores();
        // Routing skips a split the record already shows, unless `always`.
        if state.load_balanced && state.candidate.is_some() {
            match self.route_to(0, always).await {
                // Resent on a hunch, and the new fleet is gone (retired before a crash): it
                // takes no traffic.
                Err(e) if always && e.is_fleet_not_found() => {}
                other => other?,
            }
        }
        self.set_primary(Role::Stable, always).await
    }

    /// Whether the rollback sends its restoring changes even where the record says they are
    /// not needed: when the platform may be one change ahead of the record, on a process
    /// whose fleets the engine controls (a platform that runs the rollout restores its old
    /// fleet itself when the new one is retired).
    fn resend_restores(&self) -> bool {
        self.unsure && !self.record.state.platform_run
    }

    /// Marks the record as possibly one change behind the platform: the rollout was rebuilt
    /// from the history after its deployer died, maybe in the middle of a change.
    pub(crate) fn rebuilt_from_history(&mut self) {
        self.unsure = true;
    }

    /// The default completion: the new fleet at full size, all traffic and primary; then the
    /// old fleet retired. Not abortable: it only removes the old fleet.
    pub async fn complete(&mut self) -> Result<()> {
        self.phase = Phase::Completing;
        let state = &self.record.state;
        let desired = state.desired;
        let route_all = state.load_balanced && !state.platform_run && state.candidate_weight < 100;
        if state.candidate_count < desired && !state.platform_run {
            self.scale(Role::Candidate, desired).await?;
            self.wait_healthy(Role::Candidate, desired).await?;
        }
        if route_all {
            self.route(100).await?;
        }
        self.set_primary(Role::Candidate, false).await?;
        self.retire(Role::Stable).await
    }
}
