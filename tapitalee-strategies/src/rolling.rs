//! [`Rolling`]: the default strategy. Replaces old instances with new ones in batches bounded by
//! `max_surge` and `max_unavailable`.

use std::time::Duration;

use async_trait::async_trait;
use tapitalee_core::{Error, Result, Rollout, RolloutKind, Strategy};

use crate::common::{has_stable, stable_count};
use crate::plan::{Bounds, rolling_plan};
use crate::quantity::Quantity;

/// A rolling update: in batches, scale the new fleet up, wait until it is healthy (including
/// the health gate's minimum healthy time), shift traffic in proportion, scale the old fleet
/// down; repeat. See [`rolling_plan`] for the batches and their guarantees.
///
/// Healthy capacity never drops below `desired - max_unavailable` and the two fleets together
/// never exceed `desired + max_surge`. Defaults: 25% / 25% (surge rounds up, unavailable rounds
/// down; both 0 makes unavailable 1). A rollback (the default
/// [`Rollout::restore_stable`]) restores the old fleet in one batch, so it is never slower than
/// the rollout. `promote_full()` does not skip batches: that would break the bounds.
///
/// With a [`watch`](RollingBuilder::watch), the last batch keeps its old instances running
/// (on standby, without traffic, within the surge bound) while the new fleet, which then takes
/// all the traffic, is watched: a version that crash-loops only after it took traffic fails
/// the process there and is rolled back, with old capacity at hand. Without a watch (the
/// default) the rollout ends as soon as the last batch is healthy. `promote_full()` ends a
/// watch early.
///
/// ```
/// use tapitalee_strategies::{Quantity, Rolling};
///
/// let rolling = Rolling::builder()
///     .max_surge("50%".parse::<Quantity>()?)
///     .max_unavailable(0)
///     .build()?;
/// assert_eq!(rolling.max_surge(), Quantity::Percent(50));
/// # Ok::<(), tapitalee_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    max_surge: Quantity,
    max_unavailable: Quantity,
    watch: Duration,
}

impl Default for Rolling {
    fn default() -> Self {
        Rolling {
            max_surge: Quantity::Percent(25),
            max_unavailable: Quantity::Percent(25),
            watch: Duration::ZERO,
        }
    }
}

impl Rolling {
    /// Rolling with the defaults (25% surge, 25% unavailable).
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder.
    pub fn builder() -> RollingBuilder {
        RollingBuilder {
            inner: Rolling::default(),
        }
    }

    /// Instances allowed above the desired count.
    pub fn max_surge(&self) -> Quantity {
        self.max_surge
    }

    /// Healthy instances allowed below the desired count.
    pub fn max_unavailable(&self) -> Quantity {
        self.max_unavailable
    }

    /// How long the new fleet is watched after the last batch, before the old fleet's last
    /// instances stop.
    pub fn watch(&self) -> Duration {
        self.watch
    }

    /// The bounds for a process of `desired` instances.
    pub fn bounds(&self, desired: u32) -> Bounds {
        Bounds::new(desired, self.max_surge, self.max_unavailable)
    }
}

/// Builds a [`Rolling`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RollingBuilder {
    inner: Rolling,
}

impl RollingBuilder {
    /// Instances allowed above the desired count, during the update (default 25%, rounded up).
    pub fn max_surge(mut self, surge: impl Into<Quantity>) -> Self {
        self.inner.max_surge = surge.into();
        self
    }

    /// Healthy instances allowed below the desired count (default 25%, rounded down).
    pub fn max_unavailable(mut self, unavailable: impl Into<Quantity>) -> Self {
        self.inner.max_unavailable = unavailable.into();
        self
    }

    /// After the last batch took its traffic, watch the new fleet this long (its instance
    /// failures counting against the failure threshold) before the old fleet's last
    /// instances stop. Default zero: no watch.
    pub fn watch(mut self, watch: Duration) -> Self {
        self.inner.watch = watch;
        self
    }

    /// The strategy, or [`Error::InvalidInput`] for a percentage above 100.
    pub fn build(self) -> Result<Rolling> {
        for (what, q) in [
            ("max surge", self.inner.max_surge),
            ("max unavailable", self.inner.max_unavailable),
        ] {
            if let Quantity::Percent(p) = q
                && p > 100
            {
                return Err(Error::invalid(
                    what,
                    q.to_string(),
                    format!("a percentage must be from 0% to 100% (got {p}%); use a count instead"),
                ));
            }
        }
        Ok(self.inner)
    }
}

#[async_trait]
impl Strategy for Rolling {
    fn name(&self) -> &str {
        "rolling"
    }

    fn kind(&self) -> RolloutKind {
        RolloutKind::Rolling
    }

    async fn run(&self, rollout: &mut Rollout) -> Result<()> {
        let bounds = self.bounds(rollout.desired());
        let plan = rolling_plan(bounds, stable_count(rollout));
        let split = rollout.load_balanced() && has_stable(rollout);
        rollout
            .note(format!(
                "rolling {} instance(s): max surge {} ({}), max unavailable {} ({}), {} batch(es)",
                bounds.desired,
                self.max_surge,
                bounds.max_surge,
                self.max_unavailable,
                bounds.max_unavailable,
                plan.len()
            ))
            .await;
        let batches = plan.len();
        for (i, batch) in plan.into_iter().enumerate() {
            rollout
                .step(format!(
                    "batch {}/{batches}: new fleet to {}, old fleet to {}",
                    i + 1,
                    batch.candidate,
                    batch.stable_after
                ))
                .await?;
            rollout.scale_stable(batch.stable_before).await?;
            rollout.launch(batch.candidate).await?;
            rollout.wait_candidate_healthy(batch.candidate).await?;
            if split || (rollout.load_balanced() && batch.weight == 100) {
                rollout.route(batch.weight).await?;
            }
            if i + 1 == batches && !self.watch.is_zero() && !rollout.full_promotion_requested() {
                rollout
                    .step(format!(
                        "watch the new fleet for {}, {} old instance(s) on standby",
                        humantime::format_duration(self.watch),
                        batch.stable_before
                    ))
                    .await?;
                rollout.watch(self.watch).await?;
            }
            rollout.scale_stable(batch.stable_after).await?;
        }
        rollout.make_primary().await
    }
}
