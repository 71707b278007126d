//! [`Canary`]: a small new fleet beside the old one, traffic shifted step by step, gated by
//! pauses and analyses, then full promotion.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tapitalee_core::{Error, ProcessSpec, Result, Rollout, RolloutKind, Strategy};

use crate::analysis::AnalysisSpec;
use crate::common::{Gate, analysis_gate, ensure_healthy_now, gate_of, has_stable, promote_fully};
use crate::quantity::Quantity;

/// How many instances the canary (new) fleet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryScale {
    /// A count or a percentage of the desired count (rounded up).
    Instances(Quantity),
    /// The traffic weight's share of the desired count, rounded up (the default).
    MatchTraffic,
}

/// One step of a canary.
#[derive(Debug, Clone)]
pub enum CanaryStep {
    /// Send this percent of traffic to the new fleet (0 to 100). The new fleet is scaled and
    /// healthy before it gets any.
    SetWeight(u8),
    /// Scale the new fleet, independently of traffic from now on (or back to matching it).
    SetScale(CanaryScale),
    /// Wait for the duration, or until `promote()` without one.
    Pause(Option<Duration>),
    /// Run an analysis: pass continues, fail rolls back, inconclusive pauses until `promote()`.
    Analysis(AnalysisSpec),
}

impl fmt::Display for CanaryStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanaryStep::SetWeight(w) => write!(f, "set weight {w}%"),
            CanaryStep::SetScale(CanaryScale::Instances(q)) => write!(f, "set canary scale {q}"),
            CanaryStep::SetScale(CanaryScale::MatchTraffic) => {
                f.write_str("set canary scale to match traffic")
            }
            CanaryStep::Pause(Some(d)) => write!(f, "pause {}", humantime::format_duration(*d)),
            CanaryStep::Pause(None) => f.write_str("pause until promoted"),
            CanaryStep::Analysis(a) => write!(f, "analysis {}", a.name()),
        }
    }
}

/// A canary: a list of [`CanaryStep`]s, then full promotion (new fleet at full size, all
/// traffic, primary). `promote_full()` skips the remaining steps and analyses.
///
/// The old fleet keeps its full size throughout, so a rollback from any step only moves
/// traffic back and retires the canary. On a first deploy (no old fleet) there is nothing to
/// compare with: the canary promotes fully at once.
///
/// Processes without a load balancer cannot split traffic. There a canary is a number of
/// instances gated on health: use [`CanaryStep::SetScale`], or opt in with
/// [`CanaryBuilder::split_by_instances`] to read each set-weight step as "this percent of the
/// desired instances". Otherwise [`Strategy::validate`] refuses the process before anything
/// changes.
///
/// ```
/// use std::time::Duration;
/// use tapitalee_strategies::Canary;
///
/// let canary = Canary::builder()
///     .set_weight(10)
///     .pause(Duration::from_secs(300))
///     .set_weight(50)
///     .pause_until_promoted()
///     .build()?;
/// assert_eq!(canary.steps().len(), 4);
/// assert!(Canary::builder().set_weight(150).build().is_err());
/// # Ok::<(), tapitalee_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Canary {
    steps: Vec<CanaryStep>,
    split_by_instances: bool,
}

impl Canary {
    /// A builder with no steps.
    pub fn builder() -> CanaryBuilder {
        CanaryBuilder {
            steps: Vec::new(),
            split_by_instances: false,
        }
    }

    /// The steps.
    pub fn steps(&self) -> &[CanaryStep] {
        &self.steps
    }
}

/// Builds a [`Canary`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CanaryBuilder {
    steps: Vec<CanaryStep>,
    split_by_instances: bool,
}

impl CanaryBuilder {
    /// Adds a step.
    pub fn step(mut self, step: CanaryStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds steps.
    pub fn steps(mut self, steps: impl IntoIterator<Item = CanaryStep>) -> Self {
        self.steps.extend(steps);
        self
    }

    /// Adds a [`CanaryStep::SetWeight`].
    pub fn set_weight(self, percent: u8) -> Self {
        self.step(CanaryStep::SetWeight(percent))
    }

    /// Adds a [`CanaryStep::SetScale`] of a count or percentage.
    pub fn set_scale(self, instances: impl Into<Quantity>) -> Self {
        self.step(CanaryStep::SetScale(CanaryScale::Instances(
            instances.into(),
        )))
    }

    /// Adds a timed [`CanaryStep::Pause`] (`promote()` ends it early).
    pub fn pause(self, duration: Duration) -> Self {
        self.step(CanaryStep::Pause(Some(duration)))
    }

    /// Adds a [`CanaryStep::Pause`] until `promote()`.
    pub fn pause_until_promoted(self) -> Self {
        self.step(CanaryStep::Pause(None))
    }

    /// Adds a [`CanaryStep::Analysis`].
    pub fn analysis(self, spec: AnalysisSpec) -> Self {
        self.step(CanaryStep::Analysis(spec))
    }

    /// On processes without a load balancer, read set-weight steps as a share of the desired
    /// instances instead of refusing the process (default off).
    pub fn split_by_instances(mut self, on: bool) -> Self {
        self.split_by_instances = on;
        self
    }

    /// The strategy, or [`Error::InvalidInput`] naming the bad step: a weight above 100, a
    /// percentage above 100, an analysis before the canary has any instance, an invalid
    /// analysis.
    pub fn build(self) -> Result<Canary> {
        let mut launched = false;
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            match step {
                CanaryStep::SetWeight(w) if *w > 100 => {
                    return Err(Error::invalid(
                        "canary weight",
                        format!("{w}%"),
                        format!("step {n}: a traffic weight must be from 0% to 100%"),
                    ));
                }
                CanaryStep::SetScale(CanaryScale::Instances(Quantity::Percent(p))) if *p > 100 => {
                    return Err(Error::invalid(
                        "canary scale",
                        format!("{p}%"),
                        format!(
                            "step {n}: a percentage of instances must be from 0% to 100%; use a \
                             count instead"
                        ),
                    ));
                }
                CanaryStep::SetWeight(w) => launched |= *w > 0,
                CanaryStep::SetScale(CanaryScale::Instances(q)) => {
                    launched |= *q != Quantity::Count(0) && *q != Quantity::Percent(0);
                }
                CanaryStep::SetScale(CanaryScale::MatchTraffic) | CanaryStep::Pause(_) => {}
                CanaryStep::Analysis(spec) => {
                    spec.validate()?;
                    if !launched {
                        return Err(Error::invalid(
                            "canary step",
                            step.to_string(),
                            format!(
                                "step {n}: the canary has no instances to analyse yet; put a \
                                 set-weight or set-scale step before it"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(Canary {
            steps: self.steps,
            split_by_instances: self.split_by_instances,
        })
    }
}

/// How many canary instances a weight and scale call for, out of `desired`.
fn canary_count(desired: u32, weight: u8, scale: CanaryScale, load_balanced: bool) -> u32 {
    let count = match scale {
        CanaryScale::Instances(q) => q.round_up(desired),
        CanaryScale::MatchTraffic => Quantity::Percent(weight).round_up(desired),
    };
    // Traffic may only point at a fleet with healthy instances.
    if load_balanced && weight > 0 {
        count.max(1)
    } else {
        count
    }
}

#[async_trait]
impl Strategy for Canary {
    fn name(&self) -> &str {
        "canary"
    }

    fn kind(&self) -> RolloutKind {
        RolloutKind::Canary
    }

    fn validate(&self, process: &ProcessSpec) -> Result<()> {
        if process.load_balanced || self.split_by_instances {
            return Ok(());
        }
        if let Some((i, step)) = self
            .steps
            .iter()
            .enumerate()
            .find(|(_, s)| matches!(s, CanaryStep::SetWeight(w) if *w > 0 && *w < 100))
        {
            return Err(Error::invalid(
                "canary step",
                step.to_string(),
                format!(
                    "step {}: process {} has no load balancer, so its traffic cannot be split; \
                     use set-scale steps (instance counts), or Canary::builder()\
                     .split_by_instances(true)",
                    i + 1,
                    process.name
                ),
            ));
        }
        Ok(())
    }

    async fn run(&self, rollout: &mut Rollout) -> Result<()> {
        if !has_stable(rollout) {
            rollout
                .step("no old fleet to compare with: promote fully")
                .await?;
            return promote_fully(rollout).await;
        }
        let lb = rollout.load_balanced();
        let desired = rollout.desired();
        let total = self.steps.len();
        let mut weight = 0u8;
        let mut scale = CanaryScale::MatchTraffic;
        for (i, step) in self.steps.iter().enumerate() {
            if rollout.full_promotion_requested() {
                break;
            }
            rollout
                .step(format!("step {}/{total}: {step}", i + 1))
                .await?;
            if rollout.full_promotion_requested() {
                break;
            }
            let gate = match step {
                CanaryStep::SetWeight(w) => {
                    weight = *w;
                    apply(rollout, desired, weight, scale, lb).await?;
                    Gate::Continue
                }
                CanaryStep::SetScale(s) => {
                    scale = *s;
                    apply(rollout, desired, weight, scale, lb).await?;
                    Gate::Continue
                }
                CanaryStep::Pause(duration) => {
                    let reason = match duration {
                        Some(d) => format!("canary pause of {}", humantime::format_duration(*d)),
                        None => "canary paused until promoted".to_owned(),
                    };
                    gate_of(rollout.pause(*duration, reason).await?)
                }
                CanaryStep::Analysis(spec) => analysis_gate(rollout, spec, "canary").await?,
            };
            if gate == Gate::SkipRest {
                break;
            }
        }
        if rollout.full_promotion_requested() {
            rollout
                .note("full promotion requested: skipping the remaining steps")
                .await;
        }
        rollout.step("full promotion").await?;
        promote_fully(rollout).await
    }
}

/// Brings the canary to the size and traffic share of `weight` and `scale`: capacity (healthy)
/// before traffic when it grows, traffic before capacity when it shrinks, and a fresh health
/// check before any traffic lands on it.
async fn apply(
    rollout: &mut Rollout,
    desired: u32,
    weight: u8,
    scale: CanaryScale,
    lb: bool,
) -> Result<()> {
    let count = canary_count(desired, weight, scale, lb);
    let current = rollout.state().candidate_count;
    let routes = lb && rollout.state().candidate_weight != weight;
    if rollout.candidate().is_none() || count > current {
        rollout.launch(count).await?;
        rollout.wait_candidate_healthy(count).await?;
    }
    if routes {
        if weight > 0 {
            // The canary may have changed since it was last judged (a long pause, a crash).
            ensure_healthy_now(rollout, count).await?;
        }
        rollout.route(weight).await?;
    }
    if count < current {
        rollout.scale_candidate(count).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(canary_count(10, 10, CanaryScale::MatchTraffic, true), 1);
        assert_eq!(canary_count(10, 15, CanaryScale::MatchTraffic, true), 2);
        assert_eq!(canary_count(3, 1, CanaryScale::MatchTraffic, true), 1);
        assert_eq!(canary_count(3, 0, CanaryScale::MatchTraffic, true), 0);
        assert_eq!(
            canary_count(3, 50, CanaryScale::Instances(Quantity::Count(0)), true),
            1
        );
        assert_eq!(
            canary_count(3, 50, CanaryScale::Instances(Quantity::Count(0)), false),
            0
        );
        assert_eq!(
            canary_count(8, 0, CanaryScale::Instances(Quantity::Percent(25)), false),
            2
        );
    }

    #[test]
    fn validation() {
        let e = Canary::builder()
            .set_weight(10)
            .set_weight(101)
            .build()
            .unwrap_err();
        assert!(
            e.to_string().contains("101%") && e.to_string().contains("step 2"),
            "{e}"
        );
        let e = Canary::builder()
            .set_scale(Quantity::Percent(120))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("120%"), "{e}");
        // Descending weights are fine.
        assert!(
            Canary::builder()
                .set_weight(50)
                .set_weight(10)
                .build()
                .is_ok()
        );
        let worker = ProcessSpec::new("worker".parse().unwrap(), 2, false);
        let c = Canary::builder().set_weight(20).build().unwrap();
        let e = c.validate(&worker).unwrap_err();
        assert!(
            e.to_string().contains("worker") && e.to_string().contains("set-scale"),
            "{e}"
        );
        let c = Canary::builder()
            .set_weight(20)
            .split_by_instances(true)
            .build()
            .unwrap();
        assert!(c.validate(&worker).is_ok());
        let c = Canary::builder()
            .set_scale(1)
            .pause_until_promoted()
            .build()
            .unwrap();
        assert!(c.validate(&worker).is_ok());
    }
}
