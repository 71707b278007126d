//! The analysis runner: [`AnalysisSpec`] (how often and how many measurements of an
//! [`Analysis`], and the limits that decide), [`AnalysisRun`] (the pure tally) and
//! [`HealthAnalysis`] (a simple analysis over a [`HealthProbe`]'s readings).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tapitalee_core::{
    Analysis, AnalysisTarget, DynAnalysis, DynDeployer, DynHealthProbe, Error, InstanceStatus,
    Measurement, Result, Rollout,
};

/// How an analysis ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every measurement taken, within the failure and inconclusive limits.
    Passed,
    /// Too many failures, or too many consecutive measurement errors.
    Failed {
        /// Why, in words.
        reason: String,
    },
    /// Too many inconclusive measurements: a human should decide (strategies pause).
    Inconclusive {
        /// Why, in words.
        reason: String,
    },
    /// Skipped by `promote_full()` before it could decide.
    Skipped,
}

/// An [`Analysis`] run as a gate: `count` measurements, `interval` apart, judged against
/// limits (Argo Rollouts' semantics):
///
/// - more than `failure_limit` failed measurements: [`Verdict::Failed`] (at once);
/// - more than `inconclusive_limit` inconclusive ones: [`Verdict::Inconclusive`] (at once);
/// - more than `consecutive_error_limit` errors in a row: [`Verdict::Failed`]. An error does not
///   count as a measurement; the next one is taken after the interval;
/// - otherwise, after `count` measurements: [`Verdict::Passed`].
///
/// Defaults: 3 measurements, 30 s apart, no failure, no inconclusive result, 4 errors in a row.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tapitalee_core::testkit::InMemoryPlatform;
/// use tapitalee_strategies::{AnalysisSpec, HealthAnalysis};
///
/// let platform = Arc::new(InMemoryPlatform::new());
/// let spec = AnalysisSpec::new(Arc::new(HealthAnalysis::new(platform.clone(), platform)))
///     .interval(Duration::from_secs(10))
///     .count(6)
///     .failure_limit(1);
/// spec.validate()?;
/// # Ok::<(), tapitalee_core::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AnalysisSpec {
    analysis: DynAnalysis,
    interval: Duration,
    count: u32,
    failure_limit: u32,
    inconclusive_limit: u32,
    consecutive_error_limit: u32,
}

impl AnalysisSpec {
    /// Runs `analysis` with the default limits.
    pub fn new(analysis: DynAnalysis) -> Self {
        AnalysisSpec {
            analysis,
            interval: Duration::from_secs(30),
            count: 3,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
        }
    }

    /// Time between measurements (default 30 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Measurements to take (default 3).
    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Failed measurements tolerated (default 0).
    pub fn failure_limit(mut self, limit: u32) -> Self {
        self.failure_limit = limit;
        self
    }

    /// Inconclusive measurements tolerated (default 0).
    pub fn inconclusive_limit(mut self, limit: u32) -> Self {
        self.inconclusive_limit = limit;
        self
    }

    /// Measurement errors in a row tolerated (default 4).
    pub fn consecutive_error_limit(mut self, limit: u32) -> Self {
        self.consecutive_error_limit = limit;
        self
    }

    /// The analysis.
    pub fn analysis(&self) -> &DynAnalysis {
        &self.analysis
    }

    /// The analysis's name.
    pub fn name(&self) -> &str {
        self.analysis.name()
    }

    /// Checks the settings: at least one measurement, and a non-zero interval between several.
    pub fn validate(&self) -> Result<()> {
        if self.count == 0 {
            return Err(Error::invalid(
                "analysis count",
                "0",
                format!(
                    "analysis {} must take at least 1 measurement",
                    self.analysis.name()
                ),
            ));
        }
        if self.count > 1 && self.interval.is_zero() {
            return Err(Error::invalid(
                "analysis interval",
                "0s",
                format!(
                    "analysis {} takes {} measurements; space them out (e.g. 30s)",
                    self.analysis.name(),
                    self.count
                ),
            ));
        }
        Ok(())
    }

    /// Takes measurements of the rollout's new fleet until the limits decide. Waits are
    /// abort-aware ([`Rollout::sleep`]); each measurement and the verdict are recorded with
    /// [`Rollout::note`]. `promote_full()` skips the rest ([`Verdict::Skipped`]).
    ///
    /// # Errors
    /// [`Error::Aborted`] on abort; [`Error::Platform`] without a new fleet to analyse.
    pub async fn run(&self, rollout: &mut Rollout) -> Result<Verdict> {
        let name = self.analysis.name().to_owned();
        let candidate = rollout.candidate().cloned().ok_or_else(|| {
            Error::platform(
                format!("analysis {name}"),
                format!(
                    "process {} has no new fleet to analyse yet; launch one first",
                    rollout.target()
                ),
            )
        })?;
        let target = AnalysisTarget {
            context: rollout.context().clone(),
            candidate,
            stable: rollout.stable().cloned(),
        };
        rollout
            .note(format!(
                "analysis {name}: {} measurement(s) every {}",
                self.count,
                humantime::format_duration(self.interval)
            ))
            .await;
        let mut run = AnalysisRun::new(self);
        loop {
            if rollout.full_promotion_requested() {
                rollout
                    .note(format!("analysis {name}: skipped (full promotion)"))
                    .await;
                return Ok(Verdict::Skipped);
            }
            let measured = self.analysis.measure(&target).await;
            let line = match &measured {
                Ok(Measurement::Pass { detail }) => format!("pass: {detail}"),
                Ok(Measurement::Fail { detail }) => format!("FAIL: {detail}"),
                Ok(Measurement::Inconclusive { detail }) => format!("inconclusive: {detail}"),
                Err(e) => format!("error: {e}"),
            };
            rollout.note(format!("analysis {name}: {line}")).await;
            if let Some(verdict) = run.record(measured.as_ref()) {
                rollout
                    .note(format!("analysis {name}: {}", describe(&verdict)))
                    .await;
                return Ok(verdict);
            }
            rollout.sleep(self.interval).await?;
        }
    }
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Passed => "passed".into(),
        Verdict::Failed { reason } => format!("failed ({reason})"),
        Verdict::Inconclusive { reason } => format!("inconclusive ({reason})"),
        Verdict::Skipped => "skipped".into(),
    }
}

/// The tally of an analysis in progress: feed it measurements, it says when the limits
/// decide. Pure, so the rules are testable without a clock.
///
/// ```
/// use std::sync::Arc;
/// use tapitalee_core::{Measurement, testkit::InMemoryPlatform};
/// use tapitalee_strategies::{AnalysisRun, AnalysisSpec, HealthAnalysis, Verdict};
///
/// let p = Arc::new(InMemoryPlatform::new());
/// let spec = AnalysisSpec::new(Arc::new(HealthAnalysis::new(p.clone(), p))).count(2);
/// let mut run = AnalysisRun::new(&spec);
/// let pass = Measurement::Pass { detail: "ok".into() };
/// assert_eq!(run.record(Ok(&pass)), None);
/// assert_eq!(run.record(Ok(&pass)), Some(Verdict::Passed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisRun {
    count: u32,
    failure_limit: u32,
    inconclusive_limit: u32,
    consecutive_error_limit: u32,
    /// Measurements taken (errors excluded).
    pub taken: u32,
    /// Passed measurements.
    pub passed: u32,
    /// Failed measurements.
    pub failed: u32,
    /// Inconclusive measurements.
    pub inconclusive: u32,
    /// Errors since the last measurement.
    pub errors_in_row: u32,
    last_detail: String,
}

impl AnalysisRun {
    /// A fresh tally with the spec's limits.
    pub fn new(spec: &AnalysisSpec) -> Self {
        AnalysisRun {
            count: spec.count.max(1),
            failure_limit: spec.failure_limit,
            inconclusive_limit: spec.inconclusive_limit,
            consecutive_error_limit: spec.consecutive_error_limit,
            taken: 0,
            passed: 0,
            failed: 0,
            inconclusive: 0,
            errors_in_row: 0,
            last_detail: String::new(),
        }
    }

    /// Records one measurement (or error); returns the verdict once the limits decide.
    pub fn record(
        &mut self,
        measured: std::result::Result<&Measurement, &Error>,
    ) -> Option<Verdict> {
        match measured {
            Err(e) => {
                self.errors_in_row += 1;
                if self.errors_in_row > self.consecutive_error_limit {
                    return Some(Verdict::Failed {
                        reason: format!(
                            "{} measurement errors in a row (limit {}); last: {e}",
                            self.errors_in_row, self.consecutive_error_limit
                        ),
                    });
                }
                return None;
            }
            Ok(m) => {
                self.errors_in_row = 0;
                self.taken += 1;
                match m {
                    Measurement::Pass { detail } => {
                        self.passed += 1;
                        self.last_detail.clone_from(detail);
                    }
                    Measurement::Fail { detail } => {
                        self.failed += 1;
                        if self.failed > self.failure_limit {
                            return Some(Verdict::Failed {
                                reason: format!(
                                    "{} failed measurement(s) (limit {}); last: {detail}",
                                    self.failed, self.failure_limit
                                ),
                            });
                        }
                    }
                    Measurement::Inconclusive { detail } => {
                        self.inconclusive += 1;
                        if self.inconclusive > self.inconclusive_limit {
                            return Some(Verdict::Inconclusive {
                                reason: format!(
                                    "{} inconclusive measurement(s) (limit {}); last: {detail}",
                                    self.inconclusive, self.inconclusive_limit
                                ),
                            });
                        }
                    }
                }
            }
        }
        (self.taken >= self.count).then_some(Verdict::Passed)
    }
}

/// A simple [`Analysis`] over a [`HealthProbe`](tapitalee_core::HealthProbe)'s readings of the
/// new fleet:
/// - **pass** when every instance the fleet should run passes the probe;
/// - **inconclusive** when the shortfall is only instances still starting;
/// - **fail** otherwise: instances running but failing the probe, or stopped with an error
///   exit code (a crash; exit codes 137 and 143 are the platform stopping a task, not a crash).
///
/// The AWS crate adds CloudWatch metric and alarm analyses on the same trait.
#[derive(Debug, Clone)]
pub struct HealthAnalysis {
    name: String,
    deployer: DynDeployer,
    probe: DynHealthProbe,
}

impl HealthAnalysis {
    /// Reads fleet status from `deployer` and judges it with `probe`.
    pub fn new(deployer: DynDeployer, probe: DynHealthProbe) -> Self {
        let name = format!("health ({})", probe.name());
        HealthAnalysis {
            name,
            deployer,
            probe,
        }
    }

    /// The same analysis under another name (for events and reasons).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// This analysis, shared.
    pub fn shared(self) -> DynAnalysis {
        Arc::new(self)
    }
}

#[async_trait]
impl Analysis for HealthAnalysis {
    fn name(&self) -> &str {
        &self.name
    }

    async fn measure(&self, target: &AnalysisTarget) -> Result<Measurement> {
        let status = self
            .deployer
            .status(&target.context, &target.candidate)
            .await?;
        let report = self.probe.check(&target.candidate, &status).await?;
        let wanted = status.desired;
        let healthy = report.healthy;
        if wanted == 0 {
            return Ok(Measurement::Inconclusive {
                detail: "the new fleet runs no instances".into(),
            });
        }
        if healthy >= wanted {
            return Ok(Measurement::Pass {
                detail: format!("{healthy}/{wanted} healthy"),
            });
        }
        let crashed = status.instances.iter().any(|i| {
            matches!(&i.status, InstanceStatus::Stopped { exit_code: Some(c), .. }
                if *c != 0 && *c != 137 && *c != 143)
        });
        let starting = u32::try_from(
            status
                .instances
                .iter()
                .filter(|i| i.status == InstanceStatus::Pending)
                .count(),
        )
        .unwrap_or(u32::MAX);
        let problem = report
            .problems
            .first()
            .map(|p| format!("; {p}"))
            .unwrap_or_default();
        if !crashed && healthy.saturating_add(starting) >= wanted {
            Ok(Measurement::Inconclusive {
                detail: format!("{healthy}/{wanted} healthy, {starting} starting"),
            })
        } else {
            Ok(Measurement::Fail {
                detail: format!("{healthy}/{wanted} healthy{problem}"),
            })
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapitalee_core::testkit::InMemoryPlatform;

    fn spec() -> AnalysisSpec {
        let p = Arc::new(InMemoryPlatform::new());
        AnalysisSpec::new(Arc::new(HealthAnalysis::new(p.clone(), p)))
    }

    fn pass() -> Measurement {
        Measurement::Pass { detail: "p".into() }
    }
    fn fail() -> Measurement {
        Measurement::Fail { detail: "f".into() }
    }
    fn inc() -> Measurement {
        Measurement::Inconclusive { detail: "i".into() }
    }

    #[test]
    fn passes_after_count() {
        let mut r = AnalysisRun::new(&spec().count(3));
        assert_eq!(r.record(Ok(&pass())), None);
        assert_eq!(r.record(Ok(&pass())), None);
        assert_eq!(r.record(Ok(&pass())), Some(Verdict::Passed));
    }

    #[test]
    fn fails_as_soon_as_the_limit_is_passed() {
        let mut r = AnalysisRun::new(&spec().count(5).failure_limit(1));
        assert_eq!(r.record(Ok(&fail())), None);
        assert_eq!(r.record(Ok(&pass())), None);
        assert!(matches!(
            r.record(Ok(&fail())),
            Some(Verdict::Failed { .. })
        ));
    }

    #[test]
    fn inconclusive_past_its_limit() {
        let mut r = AnalysisRun::new(&spec().count(5).inconclusive_limit(1));
        assert_eq!(r.record(Ok(&inc())), None);
        let v = r.record(Ok(&inc()));
        assert!(matches!(v, Some(Verdict::Inconclusive { .. })), "{v:?}");
    }

    #[test]
    fn failures_within_limit_still_pass() {
        let mut r = AnalysisRun::new(&spec().count(2).failure_limit(1));
        assert_eq!(r.record(Ok(&fail())), None);
        assert_eq!(r.record(Ok(&pass())), Some(Verdict::Passed));
    }

    #[test]
    fn consecutive_errors() {
        let e = Error::platform("metrics", "down");
        let mut r = AnalysisRun::new(&spec().count(2).consecutive_error_limit(1));
        assert_eq!(r.record(Err(&e)), None);
        assert_eq!(
            r.record(Ok(&pass())),
            None,
            "a measurement resets the streak"
        );
        assert_eq!(r.record(Err(&e)), None);
        let v = r.record(Err(&e));
        assert!(
            matches!(&v, Some(Verdict::Failed { reason }) if reason.contains("2 measurement errors")),
            "{v:?}"
        );
    }

    #[test]
    fn validation_names_the_fix() {
        let e = spec().count(0).validate().unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        let e = spec().interval(Duration::ZERO).validate().unwrap_err();
        assert!(e.to_string().contains("space them out"), "{e}");
        assert!(spec().interval(Duration::ZERO).count(1).validate().is_ok());
    }
}
