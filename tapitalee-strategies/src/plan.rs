//! The arithmetic of a rolling update, pure and separately testable: [`Bounds`] from surge and
//! unavailability settings, and [`rolling_plan`], the batches that respect them.

use crate::quantity::Quantity;

/// The capacity bounds of a rolling update of `desired` instances.
///
/// Built with Kubernetes' rules: surge rounds up, unavailability rounds down, and if both come
/// to 0, unavailability becomes 1 (otherwise nothing could move).
///
/// ```
/// use tapitalee_strategies::{Bounds, Quantity};
///
/// let b = Bounds::new(10, Quantity::Percent(25), Quantity::Percent(25));
/// assert_eq!((b.max_surge, b.max_unavailable), (3, 2));
/// assert_eq!((b.min_healthy(), b.max_total()), (8, 13));
///
/// // The fencepost rule: 0 and 0 would deadlock.
/// let b = Bounds::new(3, Quantity::Percent(10), Quantity::Percent(10));
/// assert_eq!((b.max_surge, b.max_unavailable), (1, 0));
/// let b = Bounds::new(3, Quantity::Count(0), Quantity::Count(0));
/// assert_eq!((b.max_surge, b.max_unavailable), (0, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Instances the process should run when done.
    pub desired: u32,
    /// Instances allowed above `desired` (both fleets together).
    pub max_surge: u32,
    /// Healthy instances allowed below `desired`.
    pub max_unavailable: u32,
}

impl Bounds {
    /// The bounds for `desired` instances.
    pub fn new(desired: u32, max_surge: Quantity, max_unavailable: Quantity) -> Self {
        let max_surge = max_surge.round_up(desired);
        let mut max_unavailable = max_unavailable.round_down(desired);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Bounds {
            desired,
            max_surge,
            max_unavailable,
        }
    }

    /// The fewest healthy instances allowed at any moment: `desired - max_unavailable`.
    pub fn min_healthy(&self) -> u32 {
        self.desired.saturating_sub(self.max_unavailable)
    }

    /// The most instances allowed at any moment: `desired + max_surge`.
    pub fn max_total(&self) -> u32 {
        self.desired.saturating_add(self.max_surge)
    }
}

/// One batch of a rolling update, carried out in this order:
/// 1. scale the old fleet to `stable_before` (only ever down; only when there is no room to
///    surge),
/// 2. scale the new fleet up to `candidate` and wait until all of it is healthy,
/// 3. route `weight` percent of traffic to the new fleet (load-balanced processes),
/// 4. scale the old fleet down to `stable_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Batch {
    /// Old-fleet instances before the new fleet grows.
    pub stable_before: u32,
    /// New-fleet instances at the end of the batch (all healthy).
    pub candidate: u32,
    /// Percent of traffic for the new fleet once it is healthy: its share of the capacity
    /// left after the batch, rounded down (100 once the old fleet is gone).
    pub weight: u8,
    /// Old-fleet instances at the end of the batch.
    pub stable_after: u32,
}

/// The batches that move a process from `stable` old instances to `bounds.desired` new ones.
///
/// Guarantees, for every batch (checked by property tests):
/// - while the new instances start, healthy capacity (`stable_before` plus the previous
///   batch's `candidate`) is at least `min(initial capacity, bounds.min_healthy())`;
/// - `stable_before + candidate <= bounds.max_total()` (or the initial size, if larger);
/// - after the batch, `stable_after + candidate >= bounds.min_healthy()` (capped likewise);
/// - the new fleet only grows and the old one only shrinks; the last batch ends with the new
///   fleet at `desired`, the old one at 0 and 100% of traffic on the new fleet;
/// - there are at most `desired + 1` batches.
///
/// ```
/// use tapitalee_strategies::{Bounds, Quantity, rolling_plan};
///
/// let plan = rolling_plan(Bounds::new(4, Quantity::Count(1), Quantity::Count(1)), 4);
/// let steps: Vec<(u32, u32)> = plan.iter().map(|b| (b.candidate, b.stable_after)).collect();
/// assert_eq!(steps, [(1, 2), (3, 0), (4, 0)]);
/// assert_eq!(plan.last().map(|b| b.weight), Some(100));
/// ```
pub fn rolling_plan(bounds: Bounds, stable: u32) -> Vec<Batch> {
    let d = u64::from(bounds.desired);
    let min_healthy = u64::from(bounds.min_healthy());
    let max_total = u64::from(bounds.max_total());
    let mut old = u64::from(stable);
    let mut new = 0u64;
    let mut plan = Vec::new();
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    if d == 0 {
        plan.push(Batch {
            stable_before: stable,
            candidate: 0,
            weight: 100,
            stable_after: 0,
        });
        return plan;
    }
    while new < d {
        let stable_before = if old + new >= max_total {
            // No room to surge: use the unavailability allowance first.
            old.min(min_healthy.saturating_sub(new))
        } else {
            old
        };
        let candidate = d.min(max_total.saturating_sub(stable_before)).max(new + 1);
        let stable_after = stable_before.min(min_healthy.saturating_sub(candidate));
        let weight = if stable_after == 0 {
            100
        } else {
            u8::try_from(candidate * 100 / (candidate + stable_after)).unwrap_or(100)
        };
        plan.push(Batch {
            stable_before: to_u32(stable_before),
            candidate: to_u32(candidate),
            weight,
            stable_after: to_u32(stable_after),
        });
        old = stable_after;
        new = candidate;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(d: u32, s: Quantity, u: Quantity) -> Vec<(u32, u32, u32, u8)> {
        rolling_plan(Bounds::new(d, s, u), d)
            .into_iter()
            .map(|b| (b.stable_before, b.candidate, b.stable_after, b.weight))
            .collect()
    }

    #[test]
    fn default_settings_on_four() {
        let p = plan(4, Quantity::Percent(25), Quantity::Percent(25));
        assert_eq!(p, [(4, 1, 2, 33), (2, 3, 0, 100), (0, 4, 0, 100)]);
    }

    #[test]
    fn zero_surge_scales_old_down_first() {
        let p = plan(3, Quantity::Count(0), Quantity::Count(1));
        assert_eq!(p, [(2, 1, 1, 50), (1, 2, 0, 100), (0, 3, 0, 100)]);
    }

    #[test]
    fn one_instance_default_keeps_it_up() {
        let p = plan(1, Quantity::Percent(25), Quantity::Percent(25));
        assert_eq!(p, [(1, 1, 0, 100)]);
    }

    #[test]
    fn first_deploy_is_one_batch() {
        let b = rolling_plan(
            Bounds::new(5, Quantity::Percent(25), Quantity::Percent(25)),
            0,
        );
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].candidate, 5);
    }

    #[test]
    fn zero_desired() {
        let b = rolling_plan(Bounds::new(0, Quantity::Count(1), Quantity::Count(0)), 2);
        assert_eq!(
            b,
            [Batch {
                stable_before: 2,
                candidate: 0,
                weight: 100,
                stable_after: 0
            }]
        );
    }

    #[test]
    fn full_surge_is_blue_green_like() {
        let p = plan(4, Quantity::Percent(100), Quantity::Count(0));
        assert_eq!(p, [(4, 4, 0, 100)]);
    }
}
