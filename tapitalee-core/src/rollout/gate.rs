//! Health gates: waiting for a fleet to become healthy (minimum healthy time, failure
//! threshold, progress deadline), and watching the new fleet after its gate.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::{Role, Rollout};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::fleet::Fleet;

/// When a fleet counts as healthy, and when it has failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthGate {
    /// How long a fleet must stay healthy before it counts (catches crash loops that start
    /// fine and die a few seconds later). Default 10 s.
    pub min_healthy_time: Duration,
    /// Instance failures (stopped instances) of a new fleet that fail the process. `None`
    /// uses ECS's circuit-breaker rule: half the desired count, at least 3, at most 200.
    pub failure_threshold: Option<u32>,
    /// How long a wait may go without progress (more healthy instances) before the process
    /// fails. Default 10 min.
    pub progress_deadline: Duration,
    /// How often the fleet is polled. Default 5 s.
    pub poll_interval: Duration,
    /// Consecutive retryable platform errors tolerated while polling. Default 5.
    pub max_poll_errors: u32,
}

impl Default for HealthGate {
    fn default() -> Self {
        HealthGate {
            min_healthy_time: Duration::from_secs(10),
            failure_threshold: None,
            progress_deadline: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
            max_poll_errors: 5,
        }
    }
}

impl HealthGate {
    /// The failure threshold for a process of `desired` instances.
    pub fn threshold_for(&self, desired: u32) -> u32 {
        self.failure_threshold
            .unwrap_or_else(|| desired.div_ceil(2).clamp(3, 200))
            .max(1)
    }
}

/// Adds the fleet's stopped instances not seen before to `seen`; returns their stop reasons.
fn record_failures(seen: &mut HashSet<String>, status: &crate::FleetStatus) -> Vec<String> {
    let mut newly = Vec::new();
    for i in &status.instances {
        if let crate::InstanceStatus::Stopped { reason, exit_code } = &i.status
            && seen.insert(i.id.clone())
        {
            newly.push(match exit_code {
                Some(c) => format!("{reason} (exit code {c})"),
                None => reason.clone(),
            });
        }
    }
    newly
}

impl Rollout {
    /// Waits `duration` while watching the new fleet: its instance failures keep counting
    /// toward the failure threshold, so a version that passed its health gate and then
    /// crash-loops (during a bake, or while the old fleet is kept on standby) fails the
    /// process — and rolls it back — instead of being completed. Honours `abort()`.
    pub async fn watch(&mut self, duration: Duration) -> Result<()> {
        let until = Instant::now() + duration;
        loop {
            self.check_candidate_failures().await?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            self.sleep((until - now).min(self.shared.gate.poll_interval))
                .await?;
        }
    }

    /// Polls the new fleet once and fails if its instance failures reached the threshold.
    /// Retryable platform errors skip the check (the next one will see the failures).
    pub(super) async fn check_candidate_failures(&mut self) -> Result<()> {
        let Some(fleet) = self.record.state.candidate.clone() else {
            return Ok(());
        };
        let status = match self.shared.deployer.status(&fleet).await {
            Ok(status) => status,
            Err(e) if e.is_retryable() => return Ok(()),
            Err(e) => return Err(e),
        };
        let newly = record_failures(&mut self.failed_instances, &status);
        let failures = u32::try_from(self.failed_instances.len()).unwrap_or(u32::MAX);
        let threshold = self.shared.gate.threshold_for(self.desired);
        if !newly.is_empty() {
            self.emit(EventKind::Health {
                fleet: Role::Candidate.label().into(),
                healthy: status.running(),
                wanted: self.record.state.candidate_count,
                failures,
            })
            .await;
        }
        if failures >= threshold {
            return Err(Error::HealthFailed {
                process: self.target.process.to_string(),
                reason: format!(
                    "{failures} instance failure(s) reached the threshold of {threshold} after \
                     the new fleet passed its health gate; last: {}",
                    newly.last().map_or("stopped", String::as_str)
                ),
            });
        }
        Ok(())
    }

    /// Waits until the new fleet has `wanted` healthy instances that stayed healthy for the
    /// gate's minimum healthy time. Fails fast on a crash loop (instance failures reaching the
    /// threshold) and on the progress deadline; honours `abort()`.
    pub async fn wait_candidate_healthy(&mut self, wanted: u32) -> Result<()> {
        self.wait_healthy(Role::Candidate, wanted).await
    }

    /// Waits until the old fleet has `wanted` healthy instances (no minimum healthy time: it
    /// is the known-good version).
    pub async fn wait_stable_healthy(&mut self, wanted: u32) -> Result<()> {
        self.wait_healthy(Role::Stable, wanted).await
    }

    pub(super) async fn wait_healthy(&mut self, role: Role, wanted: u32) -> Result<()> {
        if wanted == 0 {
            return Ok(());
        }
        let fleet = self.fleet(role)?;
        let gate = self.shared.gate.clone();
        let min_healthy = match role {
            Role::Candidate => gate.min_healthy_time,
            Role::Stable => Duration::ZERO,
        };
        let threshold = gate.threshold_for(self.desired);
        let mut deadline = Instant::now() + gate.progress_deadline;
        let mut best = 0;
        let mut healthy_since: Option<Instant> = None;
        let mut last = None;
        let mut errors = 0;
        let mut problems: Vec<String> = Vec::new();
        let mut seen_failures = match role {
            Role::Candidate => std::mem::take(&mut self.failed_instances),
            Role::Stable => HashSet::new(),
        };
        let result = loop {
            if let Err(e) = self.check_abort() {
                break Err(e);
            }
            let now = Instant::now();
            match self.poll(&fleet).await {
                Ok((status, report)) => {
                    errors = 0;
                    let newly_failed = record_failures(&mut seen_failures, &status);
                    let failures = u32::try_from(seen_failures.len()).unwrap_or(u32::MAX);
                    let healthy = report.healthy;
                    if last != Some((healthy, failures)) {
                        last = Some((healthy, failures));
                        self.emit(EventKind::Health {
                            fleet: role.label().into(),
                            healthy,
                            wanted,
                            failures,
                        })
                        .await;
                    }
                    if let Some(reason) = newly_failed.last() {
                        problems.push(reason.clone());
                    }
                    if role == Role::Candidate && failures >= threshold {
                        break Err(Error::HealthFailed {
                            process: self.target.process.to_string(),
                            reason: format!(
                                "{failures} instance failure(s) reached the threshold of \
                                 {threshold}; last: {}",
                                problems.last().map_or("stopped", String::as_str)
                            ),
                        });
                    }
                    if healthy > best {
                        best = healthy;
                        deadline = now + gate.progress_deadline;
                    }
                    if healthy >= wanted {
                        let since = *healthy_since.get_or_insert(now);
                        if now.duration_since(since) >= min_healthy {
                            break Ok(());
                        }
                    } else {
                        healthy_since = None;
                        if !report.problems.is_empty() {
                            problems.extend(report.problems.iter().take(3).cloned());
                            let excess = problems.len().saturating_sub(5);
                            problems.drain(..excess);
                        }
                    }
                }
                Err(e) if e.is_retryable() && errors < gate.max_poll_errors => {
                    errors += 1;
                    debug!(error = %e, errors, "retryable error polling fleet health");
                }
                Err(e) => break Err(e),
            }
            if now >= deadline {
                let detail = match problems.last() {
                    Some(p) => format!("{best}/{wanted} healthy; last problem: {p}"),
                    None => format!("{best}/{wanted} healthy"),
                };
                break Err(Error::DeadlineExceeded {
                    process: self.target.process.to_string(),
                    after: gate.progress_deadline,
                    detail,
                });
            }
            let mut wake = (now + gate.poll_interval).min(deadline);
            if let Some(since) = healthy_since {
                wake = wake.min(since + min_healthy);
            }
            if let Err(e) = self.sleep(wake.saturating_duration_since(now)).await {
                break Err(e);
            }
        };
        if role == Role::Candidate {
            self.failed_instances = seen_failures;
        }
        result
    }

    /// Polls the new fleet's health once, without waiting: how many of its instances pass the
    /// probe right now. For a strategy that must know a fleet is healthy *at this moment*
    /// (e.g. just before routing traffic to it after a long manual pause).
    pub async fn check_candidate(&self) -> Result<crate::traits::health::HealthReport> {
        let fleet = self.fleet(Role::Candidate)?;
        Ok(self.poll(&fleet).await?.1)
    }

    async fn poll(
        &self,
        fleet: &Fleet,
    ) -> Result<(crate::FleetStatus, crate::traits::health::HealthReport)> {
        let status = self.shared.deployer.status(fleet).await?;
        let report = self.shared.probe.check(fleet, &status).await?;
        Ok((status, report))
    }
}
