//! [`BlueGreen`]: a full new fleet beside the old one, one switch of all traffic, a bake, then
//! the old fleet retired.

use std::time::Duration;

use async_trait::async_trait;
use tapitalee_core::{Error, Result, Rollout, RolloutKind, Strategy};
use tokio::time::Instant;

use crate::analysis::AnalysisSpec;
use crate::common::{Gate, analysis_gate, ensure_healthy_now, gate_of};
use crate::quantity::Quantity;

/// Blue-green:
/// 1. launch the new fleet beside the old one: the full desired count, or a smaller
///    [`preview`](BlueGreenBuilder::preview) count first, and wait until it is healthy;
/// 2. run the optional pre-promotion analysis;
/// 3. promote: at once ([`auto_promote`](BlueGreenBuilder::auto_promote), the default), or on
///    `promote()` from the deployment handle;
/// 4. scale the new fleet to full size if it was a preview, check it is healthy *at that
///    moment*, and switch all traffic to it (load-balanced processes) and make it primary;
/// 5. bake for [`bake_time`](BlueGreenBuilder::bake_time), running the optional
///    post-promotion analysis meanwhile;
/// 6. wait [`scale_down_delay`](BlueGreenBuilder::scale_down_delay); the engine then retires
///    the old fleet.
///
/// The old fleet keeps its full size until then, so a rollback from any step is a switch
/// back. Traffic only ever points at a fleet that is healthy at that moment.
/// `promote_full()` skips the analyses, the manual gate, the bake and the delay (not the health
/// gate).
///
/// ```
/// use std::time::Duration;
/// use tapitalee_strategies::BlueGreen;
///
/// let bg = BlueGreen::builder()
///     .preview(1)
///     .auto_promote(false)
///     .bake_time(Duration::from_secs(600))
///     .build()?;
/// assert!(!bg.auto_promotes());
/// # Ok::<(), tapitalee_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BlueGreen {
    preview: Option<Quantity>,
    auto_promote: bool,
    pre_promotion: Option<AnalysisSpec>,
    post_promotion: Option<AnalysisSpec>,
    bake_time: Duration,
    scale_down_delay: Duration,
}

impl Default for BlueGreen {
    fn default() -> Self {
        BlueGreen {
            preview: None,
            auto_promote: true,
            pre_promotion: None,
            post_promotion: None,
            bake_time: Duration::ZERO,
            scale_down_delay: Duration::from_secs(30),
        }
    }
}

impl BlueGreen {
    /// Blue-green with the defaults: full fleet, auto-promotion, no bake, 30 s scale-down
    /// delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder.
    pub fn builder() -> BlueGreenBuilder {
        BlueGreenBuilder {
            inner: BlueGreen::default(),
        }
    }

    /// Whether it promotes without waiting for `promote()`.
    pub fn auto_promotes(&self) -> bool {
        self.auto_promote
    }
}

/// Builds a [`BlueGreen`].
#[derive(Debug, Clone)]
#[must_use]
pub struct BlueGreenBuilder {
    inner: BlueGreen,
}

impl BlueGreenBuilder {
    /// Launch this many instances first (a count or a percentage of the desired count, rounded
    /// up), and the rest only once promoted (default: all at once).
    pub fn preview(mut self, instances: impl Into<Quantity>) -> Self {
        self.inner.preview = Some(instances.into());
        self
    }

    /// Promote once healthy (and analysed) without waiting for `promote()` (default on).
    pub fn auto_promote(mut self, on: bool) -> Self {
        self.inner.auto_promote = on;
        self
    }

    /// An analysis of the new fleet before it gets traffic.
    pub fn pre_promotion_analysis(mut self, spec: AnalysisSpec) -> Self {
        self.inner.pre_promotion = Some(spec);
        self
    }

    /// An analysis of the new fleet after it gets all traffic, during the bake.
    pub fn post_promotion_analysis(mut self, spec: AnalysisSpec) -> Self {
        self.inner.post_promotion = Some(spec);
        self
    }

    /// How long the new fleet serves with the old one on standby (default 0). The new fleet
    /// is watched meanwhile: a crash loop switches traffic back.
    pub fn bake_time(mut self, bake: Duration) -> Self {
        self.inner.bake_time = bake;
        self
    }

    /// How long the old fleet is kept after the bake before it is retired (default 30 s),
    /// watching the new fleet as during the bake.
    pub fn scale_down_delay(mut self, delay: Duration) -> Self {
        self.inner.scale_down_delay = delay;
        self
    }

    /// The strategy, or [`Error::InvalidInput`] for a preview percentage above 100 or an
    /// invalid analysis.
    pub fn build(self) -> Result<BlueGreen> {
        if let Some(Quantity::Percent(p)) = self.inner.preview
            && p > 100
        {
            return Err(Error::invalid(
                "preview size",
                format!("{p}%"),
                "must be from 0% to 100% of the desired count; use a count instead",
            ));
        }
        for spec in [&self.inner.pre_promotion, &self.inner.post_promotion]
            .into_iter()
            .flatten()
        {
            spec.validate()?;
        }
        Ok(self.inner)
    }
}

#[async_trait]
impl Strategy for BlueGreen {
    fn name(&self) -> &str {
        "blue-green"
    }

    fn kind(&self) -> RolloutKind {
        RolloutKind::BlueGreen
    }

    async fn run(&self, rollout: &mut Rollout) -> Result<()> {
        let desired = rollout.desired();
        let preview = self
            .preview
            .map_or(desired, |q| q.round_up(desired).min(desired));
        rollout
            .step(if preview < desired {
                format!("launch a preview of {preview} of {desired} new instance(s)")
            } else {
                format!("launch {desired} new instance(s)")
            })
            .await?;
        rollout.launch(preview).await?;
        rollout.wait_candidate_healthy(preview).await?;

        let mut skip = rollout.full_promotion_requested();
        if let (Some(spec), false) = (&self.pre_promotion, skip) {
            rollout.step("pre-promotion analysis").await?;
            skip = analysis_gate(rollout, spec, "pre-promotion").await? == Gate::SkipRest;
        }
        if !self.auto_promote && !skip && !rollout.full_promotion_requested() {
            rollout.step("wait for promotion").await?;
            let resume = rollout
                .pause(
                    None,
                    "blue-green: new fleet ready; promote to switch traffic",
                )
                .await?;
            skip = gate_of(resume) == Gate::SkipRest;
        }
        skip |= rollout.full_promotion_requested();

        if preview < desired {
            rollout
                .step(format!("scale the new fleet to {desired}"))
                .await?;
            rollout.launch(desired).await?;
            rollout.wait_candidate_healthy(desired).await?;
        }
        rollout.step("switch traffic to the new fleet").await?;
        ensure_healthy_now(rollout, desired).await?;
        if rollout.load_balanced() {
            rollout.route(100).await?;
        }
        rollout.make_primary().await?;

        if skip || rollout.full_promotion_requested() {
            return Ok(());
        }
        if !self.bake_time.is_zero() || self.post_promotion.is_some() {
            rollout
                .step(format!(
                    "bake for {}",
                    humantime::format_duration(self.bake_time)
                ))
                .await?;
            let started = Instant::now();
            if let Some(spec) = &self.post_promotion
                && analysis_gate(rollout, spec, "post-promotion").await? == Gate::SkipRest
            {
                return Ok(());
            }
            let left = self.bake_time.saturating_sub(started.elapsed());
            rollout.watch(left).await?;
        }
        if !self.scale_down_delay.is_zero() && !rollout.full_promotion_requested() {
            rollout
                .step(format!(
                    "keep the old fleet for {} before retiring it",
                    humantime::format_duration(self.scale_down_delay)
                ))
                .await?;
            rollout.watch(self.scale_down_delay).await?;
        }
        Ok(())
    }
}
