//! The platform changes a strategy makes through a [`Rollout`]: each is sent under the
//! engine's retry policy for the rollout's phase, then recorded with the new state in one
//! store write.

use tracing::debug;

use super::{Phase, Role, Rollout};
use crate::error::{Error, Result};
use crate::fleet::{Fleet, TrafficWeight};
use crate::traits::deployer::DynDeployer;

impl Rollout {
    /// The platform under the retry policy of the current phase.
    pub(super) fn platform(&self) -> DynDeployer {
        match self.phase {
            Phase::Running => self.shared.forward.clone(),
            Phase::Completing | Phase::RollingBack => self.shared.persevering.clone(),
        }
    }

    /// The outcome of a change sent to the platform. A failed one may still have taken effect
    /// (an answer lost or timed out): from then on the record may be one change behind.
    fn sent<T>(&mut self, outcome: Result<T>) -> Result<T> {
        if outcome.is_err() {
            self.unsure = true;
        }
        outcome
    }

    pub(super) fn fleet(&self, role: Role) -> Result<Fleet> {
        let fleet = match role {
            Role::Stable => self.record.state.live_stable(),
            Role::Candidate => self.record.state.candidate.as_ref(),
        };
        fleet.cloned().ok_or_else(|| {
            Error::platform(
                format!("use of the {} fleet", role.label()),
                format!(
                    "process {} has no {} fleet (launch one first)",
                    self.ctx.target,
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
            self.scale(Role::Candidate, count).await?;
            return Ok(fleet);
        }
        // Written ahead: a deployer that dies after the platform started the fleet but before
        // recording it leaves `launching` set, and recovery looks the fleet up.
        self.record.state.launching = true;
        self.publish_change(format!(
            "launching a new fleet of revision {} with {count} instance(s)",
            self.revision.id
        ))
        .await;
        let launched = self
            .platform()
            .launch(&self.ctx, &self.revision, count)
            .await;
        // A launch that failed in this process was answered: the backend owns its cleanup.
        self.record.state.launching = false;
        let fleet = self.sent(launched)?;
        debug!(fleet = %fleet.id, count, "launched new fleet");
        self.record.state.candidate = Some(fleet.clone());
        self.record.state.candidate_count = count;
        self.publish_change(format!(
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

    /// Asks the old fleet to run `count` instances (no-op without one). Refused on a process
    /// whose platform runs the rollout: it sizes its fleets itself.
    pub async fn scale_stable(&mut self, count: u32) -> Result<()> {
        if self.record.state.live_stable().is_none() {
            return Ok(());
        }
        self.scale(Role::Stable, count).await
    }

    pub(super) async fn scale(&mut self, role: Role, count: u32) -> Result<()> {
        self.scale_to(role, count, false).await
    }

    /// Scales a fleet; unless `always`, only if the record shows it at another size.
    pub(super) async fn scale_to(&mut self, role: Role, count: u32, always: bool) -> Result<()> {
        self.check_abort()?;
        let fleet = self.fleet(role)?;
        let state = &self.record.state;
        let current = match role {
            Role::Stable => state.stable_count,
            Role::Candidate => state.candidate_count,
        };
        if current == count && !always {
            return Ok(());
        }
        if state.platform_run {
            return Err(Error::invalid(
                "instance count",
                count.to_string(),
                format!(
                    "the platform runs {}'s rollout and sizes its fleets itself; use a \
                     strategy that launches the new revision once (the default)",
                    self.ctx.target
                ),
            ));
        }
        let scaled = self.platform().scale(&self.ctx, &fleet, count).await;
        self.sent(scaled)?;
        match role {
            Role::Stable => self.record.state.stable_count = count,
            Role::Candidate => self.record.state.candidate_count = count,
        }
        self.publish_change(format!(
            "scaled {} fleet from {current} to {count}",
            role.label()
        ))
        .await;
        Ok(())
    }

    /// Sends `percent` of traffic to the new fleet and the rest to the old one. Only for
    /// load-balanced processes; a process without an old fleet always sends 100% to the new.
    pub async fn route(&mut self, percent: u8) -> Result<()> {
        self.route_to(percent, false).await
    }

    /// Routes traffic; unless `always`, only if the record shows another split.
    pub(super) async fn route_to(&mut self, percent: u8, always: bool) -> Result<()> {
        self.check_abort()?;
        let state = &self.record.state;
        if !state.load_balanced {
            return Err(Error::invalid(
                "traffic weight",
                percent.to_string(),
                format!(
                    "process {} has no load balancer, so its traffic cannot be split; use \
                     instance counts instead",
                    self.ctx.target
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
        if percent == state.candidate_weight && !always {
            return Ok(());
        }
        let candidate = self.fleet(Role::Candidate)?;
        let mut weights = vec![TrafficWeight {
            fleet: candidate.id.clone(),
            percent,
        }];
        match state.live_stable() {
            Some(stable) => weights.push(TrafficWeight {
                fleet: stable.id.clone(),
                percent: 100 - percent,
            }),
            None if percent < 100 => {
                return Err(Error::invalid(
                    "traffic weight",
                    percent.to_string(),
                    "there is no old fleet to take the rest of the traffic; route 100%",
                ));
            }
            None => {}
        }
        let routed = self.platform().route(&self.ctx, &weights).await;
        self.sent(routed)?;
        self.record.state.candidate_weight = percent;
        self.publish_change(format!("routed {percent}% of traffic to the new fleet"))
            .await;
        Ok(())
    }

    /// Makes the new fleet the process's live release.
    pub async fn make_primary(&mut self) -> Result<()> {
        self.check_abort()?;
        self.set_primary(Role::Candidate, false).await
    }

    /// Makes a fleet primary; unless `always`, only if the record shows the other one primary.
    pub(super) async fn set_primary(&mut self, role: Role, always: bool) -> Result<()> {
        let already = match role {
            Role::Candidate => self.record.state.candidate_primary,
            Role::Stable => !self.record.state.candidate_primary,
        };
        if already && !always {
            return Ok(());
        }
        let fleet = self.fleet(role)?;
        let made = self.platform().make_primary(&self.ctx, &fleet).await;
        self.sent(made)?;
        self.record.state.candidate_primary = role == Role::Candidate;
        self.publish_change(match role {
            Role::Candidate => "made the new fleet primary",
            Role::Stable => "made the old fleet primary again",
        })
        .await;
        Ok(())
    }

    /// Retires a fleet, unless it is already gone.
    pub(super) async fn retire(&mut self, role: Role) -> Result<()> {
        let fleet = match role {
            Role::Stable => self.record.state.live_stable().cloned(),
            Role::Candidate => self.record.state.candidate.clone(),
        };
        let Some(fleet) = fleet else { return Ok(()) };
        let retired = match self.platform().retire(&self.ctx, &fleet).await {
            // Gone already: retired by a call whose answer was lost, or before a crash.
            Err(e) if e.is_fleet_not_found() => {
                debug!(fleet = %fleet.id, "fleet already gone");
                Ok(())
            }
            other => other,
        };
        self.sent(retired)?;
        let state = &mut self.record.state;
        match role {
            Role::Stable => {
                state.stable_retired = true;
                state.stable_count = 0;
            }
            Role::Candidate => {
                state.candidate = None;
                state.candidate_count = 0;
                state.candidate_weight = 0;
                state.candidate_primary = false;
            }
        }
        self.publish_change(format!("retired {} fleet {}", role.label(), fleet.id))
            .await;
        Ok(())
    }
}
