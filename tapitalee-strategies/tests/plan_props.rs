//! Property tests of the pure arithmetic: rolling bounds and batches, canary scale.

use proptest::prelude::*;
use tapitalee_strategies::{Bounds, Quantity, rolling_plan};

fn quantity() -> impl Strategy<Value = Quantity> {
    prop_oneof![
        (0u32..12).prop_map(Quantity::Count),
        (0u8..=100).prop_map(Quantity::Percent),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn bounds_follow_kubernetes_rounding(d in 0u32..500, s in quantity(), u in quantity()) {
        let b = Bounds::new(d, s, u);
        prop_assert!(b.max_surge + b.max_unavailable >= 1, "fencepost");
        if let Quantity::Percent(p) = s {
            prop_assert_eq!(b.max_surge, (d * u32::from(p)).div_ceil(100));
        }
        if let (Quantity::Percent(p), true) = (u, b.max_surge > 0) {
            prop_assert_eq!(b.max_unavailable, d * u32::from(p) / 100);
        }
    }

    #[test]
    fn rolling_plan_keeps_its_invariants(
        d in 0u32..60,
        extra in -3i64..4,
        s in quantity(),
        u in quantity(),
    ) {
        let b = Bounds::new(d, s, u);
        // Usually the old fleet runs `desired`; sometimes more or fewer, or none at all.
        let stable = u32::try_from((i64::from(d) + extra).max(0)).unwrap();
        let plan = rolling_plan(b, stable);
        prop_assert!(!plan.is_empty());
        prop_assert!(plan.len() <= d as usize + 1, "{} batches for {d}", plan.len());
        let floor = b.min_healthy().min(stable);
        let ceiling = b.max_total().max(stable);
        let (mut old, mut new) = (stable, 0u32);
        for batch in &plan {
            prop_assert!(batch.stable_before <= old, "old fleet only shrinks");
            prop_assert!(batch.stable_after <= batch.stable_before);
            // While the new instances start, only the old ones and the previous batch count.
            prop_assert!(batch.stable_before + new >= floor,
                "healthy {} + {} < {floor}: {plan:?}", batch.stable_before, new);
            prop_assert!(batch.stable_before + batch.candidate <= ceiling,
                "total {} > {ceiling}: {plan:?}", batch.stable_before + batch.candidate);
            prop_assert!(batch.candidate > new || d == 0, "progress: {plan:?}");
            prop_assert!(batch.stable_after + batch.candidate >= floor);
            prop_assert!(batch.weight <= 100);
            if batch.stable_after > 0 {
                prop_assert!(batch.weight < 100);
            }
            old = batch.stable_after;
            new = batch.candidate;
        }
        let last = plan.last().unwrap();
        prop_assert_eq!(last.candidate, d);
        prop_assert_eq!(last.stable_after, 0);
        prop_assert_eq!(last.weight, 100);
        let weights: Vec<u8> = plan.iter().map(|b| b.weight).collect();
        prop_assert!(weights.windows(2).all(|w| w[0] <= w[1]), "weights only grow: {weights:?}");
    }

    #[test]
    fn quantity_round_trips(q in quantity()) {
        prop_assert_eq!(q.to_string().parse::<Quantity>().unwrap(), q);
    }

    #[test]
    fn rounding_brackets_the_exact_share(d in 0u32..100_000, p in 0u8..=100) {
        let q = Quantity::Percent(p);
        let exact = f64::from(d) * f64::from(p) / 100.0;
        prop_assert!(f64::from(q.round_down(d)) <= exact);
        prop_assert!(f64::from(q.round_up(d)) >= exact);
        prop_assert!(q.round_up(d) - q.round_down(d) <= 1);
    }
}
