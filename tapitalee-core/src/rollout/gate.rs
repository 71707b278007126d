//! Health gates: waiting for a fleet to become healthy (minimum healthy time, failure
//! threshold, progress deadline), and watching the new fleet after its gate.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::{Role, Rollout};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::fleet::{Fleet, FleetStatus, InstanceStatus};
use crate::traits::health::HealthReport;

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
fn record_failures(seen: &mut HashSet<String>, status: &FleetStatus) -> Vec<String> {
    let mut newly = Vec::new();
    for i in &status.instances {
        if let InstanceStatus::Stopped { reason, exit_code } = &i.status
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

fn count(set: &HashSet<String>) -> u32 {
    u32::try_from(set.len()).unwrap_or(u32::MAX)
}

/// One wait for a fleet to become healthy: what it has seen so far, and the verdict of each
/// poll. Pure bookkeeping, no I/O, so the waiting loop stays short.
struct Wait {
    role: Role,
    wanted: u32,
    /// Instance failures that fail the wait (new fleet only).
    threshold: Option<u32>,
    min_healthy: Duration,
    progress_deadline: Duration,
    max_poll_errors: u32,
    deadline: Instant,
    best: u32,
    healthy_since: Option<Instant>,
    last_reported: Option<(u32, u32)>,
    poll_errors: u32,
    problems: Vec<String>,
    failures: HashSet<String>,
}

/// What a poll decided.
enum Verdict {
    /// Healthy long enough.
    Healthy,
    /// Not yet: poll again.
    Pending,
}

impl Wait {
    fn new(
        gate: &HealthGate,
        role: Role,
        wanted: u32,
        state: &crate::RolloutState,
        failures: HashSet<String>,
    ) -> Self {
        let (threshold, min_healthy, bake) = match role {
            Role::Candidate => (
                Some(gate.threshold_for(state.desired)),
                gate.min_healthy_time,
                state.platform_bake,
            ),
            Role::Stable => (None, Duration::ZERO, Duration::ZERO),
        };
        // A platform's rollout shows no progress while it bakes on purpose: that time is
        // not counted against the progress deadline.
        let progress_deadline = gate.progress_deadline + bake;
        Wait {
            role,
            wanted,
            threshold,
            min_healthy,
            progress_deadline,
            max_poll_errors: gate.max_poll_errors,
            deadline: Instant::now() + progress_deadline,
            best: 0,
            healthy_since: None,
            last_reported: None,
            poll_errors: 0,
            problems: Vec::new(),
            failures,
        }
    }

    /// Takes one poll's answer. Returns the health event to publish if the reading changed.
    fn observe(
        &mut self,
        now: Instant,
        process: &str,
        status: &FleetStatus,
        report: &HealthReport,
    ) -> (Option<EventKind>, Result<Verdict>) {
        self.poll_errors = 0;
        let newly_failed = record_failures(&mut self.failures, status);
        let failures = count(&self.failures);
        let healthy = report.healthy;
        let event = (self.last_reported != Some((healthy, failures))).then(|| {
            self.last_reported = Some((healthy, failures));
            EventKind::Health {
                fleet: self.role.label().into(),
                healthy,
                wanted: self.wanted,
                failures,
            }
        });
        if let Some(reason) = newly_failed.last() {
            self.problems.push(reason.clone());
        }
        if let Some(threshold) = self.threshold.filter(|t| failures >= *t) {
            return (
                event,
                Err(Error::HealthFailed {
                    process: process.to_owned(),
                    reason: format!(
                        "{failures} instance failure(s) reached the threshold of {threshold}; \
                         last: {}",
                        self.problems.last().map_or("stopped", String::as_str)
                    ),
                }),
            );
        }
        if healthy > self.best {
            self.best = healthy;
            self.deadline = now + self.progress_deadline;
        }
        if healthy >= self.wanted {
            let since = *self.healthy_since.get_or_insert(now);
            if now.duration_since(since) >= self.min_healthy {
                return (event, Ok(Verdict::Healthy));
            }
        } else {
            self.healthy_since = None;
            if !report.problems.is_empty() {
                self.problems
                    .extend(report.problems.iter().take(3).cloned());
                let excess = self.problems.len().saturating_sub(5);
                self.problems.drain(..excess);
            }
        }
        (event, Ok(Verdict::Pending))
    }

    /// Takes a failed poll: retryable errors are tolerated a few times in a row.
    fn poll_failed(&mut self, e: Error) -> Result<()> {
        if e.is_retryable() && self.poll_errors < self.max_poll_errors {
            self.poll_errors += 1;
            debug!(error = %e, errors = self.poll_errors, "retryable error polling fleet health");
            Ok(())
        } else {
            Err(e)
        }
    }

    /// The deadline error, if it has passed.
    fn check_deadline(&self, now: Instant, process: &str) -> Result<()> {
        if now < self.deadline {
            return Ok(());
        }
        let (best, wanted) = (self.best, self.wanted);
        let detail = match self.problems.last() {
            Some(p) => format!("{best}/{wanted} healthy; last problem: {p}"),
            None => format!("{best}/{wanted} healthy"),
        };
        Err(Error::DeadlineExceeded {
            process: process.to_owned(),
            after: self.progress_deadline,
            detail,
        })
    }

    /// When to poll next: the poll interval, or sooner when the minimum healthy time or the
    /// deadline ends first.
    fn next_poll(&self, now: Instant, interval: Duration) -> Instant {
        let mut wake = (now + interval).min(self.deadline);
        if let Some(since) = self.healthy_since {
            wake = wake.min(since + self.min_healthy);
        }
        wake
    }
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
        let status = match self.shared.deployer.status(&self.ctx, &fleet).await {
            Ok(status) => status,
            Err(e) if e.is_retryable() => return Ok(()),
            Err(e) => return Err(e),
        };
        let newly = record_failures(&mut self.failed_instances, &status);
        let failures = count(&self.failed_instances);
        let threshold = self.shared.gate.threshold_for(self.desired());
        if !newly.is_empty() {
            self.publish(EventKind::Health {
                fleet: Role::Candidate.label().into(),
                healthy: status.running(),
                wanted: self.record.state.candidate_count,
                failures,
            })
            .await;
        }
        if failures >= threshold {
            return Err(Error::HealthFailed {
                process: self.ctx.target.process.to_string(),
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

    pub(super) async fn wait_healthy(&mut self, role: Role, wanted: u32) -> Result<()> {
        if wanted == 0 {
            return Ok(());
        }
        let fleet = self.fleet(role)?;
        let failures = match role {
            Role::Candidate => std::mem::take(&mut self.failed_instances),
            Role::Stable => HashSet::new(),
        };
        let mut wait = Wait::new(
            &self.shared.gate,
            role,
            wanted,
            &self.record.state,
            failures,
        );
        let result = self.run_wait(&fleet, &mut wait).await;
        if role == Role::Candidate {
            self.failed_instances = wait.failures;
        }
        result
    }

    async fn run_wait(&mut self, fleet: &Fleet, wait: &mut Wait) -> Result<()> {
        let process = self.ctx.target.process.to_string();
        loop {
            self.check_abort()?;
            let now = Instant::now();
            match self.poll(fleet).await {
                Ok((status, report)) => {
                    let (event, verdict) = wait.observe(now, &process, &status, &report);
                    if let Some(event) = event {
                        self.publish(event).await;
                    }
                    if let Verdict::Healthy = verdict? {
                        return Ok(());
                    }
                }
                Err(e) => wait.poll_failed(e)?,
            }
            wait.check_deadline(now, &process)?;
            let wake = wait.next_poll(now, self.shared.gate.poll_interval);
            self.sleep(wake.saturating_duration_since(now)).await?;
        }
    }

    /// Polls the new fleet's health once, without waiting: how many of its instances pass the
    /// probe right now. For a strategy that must know a fleet is healthy *at this moment*
    /// (e.g. just before routing traffic to it after a long manual pause).
    pub async fn check_candidate(&self) -> Result<HealthReport> {
        let fleet = self.fleet(Role::Candidate)?;
        Ok(self.poll(&fleet).await?.1)
    }

    async fn poll(&self, fleet: &Fleet) -> Result<(FleetStatus, HealthReport)> {
        let status = self.shared.deployer.status(&self.ctx, fleet).await?;
        let report = self.shared.probe.check(fleet, &status).await?;
        Ok((status, report))
    }
}
