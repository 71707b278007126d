//! Tapitalee's deployment strategies: [`Rolling`] (the default), [`BlueGreen`] and [`Canary`],
//! plus the analysis runner ([`AnalysisSpec`], [`HealthAnalysis`]) they gate on.
//!
//! Each is an implementation of core's [`Strategy`] trait that speaks only of *fleets*: launch
//! the new one, scale either, route traffic between them, make one primary. They never know
//! which platform runs them. Users write their own strategies on the same trait; these three
//! are the reference for how to do it.
//!
//! # Writing a strategy
//! A strategy drives a [`Rollout`], the engine's handle on one process's deployment. The
//! rollout performs each platform operation, records it (so a rollback, even after a crash,
//! knows what exists), and enforces health gates, pauses and aborts. The rules:
//!
//! 1. Call [`Rollout::step`] before each step: it records the step and honours `pause()` and
//!    `abort()` from the deployment handle. Wait with [`Rollout::sleep`] or
//!    [`Rollout::pause`], never `tokio::time::sleep`, so an abort interrupts the wait.
//! 2. Grow the new fleet with [`Rollout::launch`] (again to resize it), then gate on
//!    [`Rollout::wait_candidate_healthy`] before it takes traffic or the old fleet shrinks.
//!    It fails fast on crash loops and on the progress deadline.
//! 3. Route traffic with [`Rollout::route`] only on [`Rollout::load_balanced`] processes and
//!    only to a fleet that is healthy at that moment ([`Rollout::check_candidate`]).
//! 4. End `run` with the new fleet at [`Rollout::desired`], all traffic, and primary
//!    ([`Rollout::make_primary`]). Do not retire the old fleet: the engine does that in
//!    [`Strategy::finalize`] once the process (or, all-or-nothing, the app) succeeded.
//! 5. Return an error to fail the process: the engine then calls [`Strategy::rollback`] from
//!    whatever step was reached. The default ([`Rollout::restore_stable`]) restores the old
//!    fleet's capacity, then its traffic, then retires the new fleet; keep the old fleet
//!    around and that is all a rollback needs.
//! 6. Check settings against the process in [`Strategy::validate`] (e.g. traffic steps on a
//!    process without a load balancer): the engine calls it before anything changes.
//! 7. Handle the first deploy: [`Rollout::stable`] is `None` and there is nothing to split
//!    traffic with.
//!
//! ```
//! use async_trait::async_trait;
//! use tapitalee_core::{Result, Rollout, Strategy};
//!
//! /// One instance at a time, each gated on health.
//! #[derive(Debug)]
//! struct OneAtATime;
//!
//! #[async_trait]
//! impl Strategy for OneAtATime {
//!     fn name(&self) -> &str {
//!         "one-at-a-time"
//!     }
//!
//!     async fn run(&self, rollout: &mut Rollout) -> Result<()> {
//!         let desired = rollout.desired();
//!         let old = rollout.state().stable_count;
//!         for n in 1..=desired {
//!             rollout.step(format!("new instance {n}/{desired}")).await?;
//!             rollout.launch(n).await?;
//!             rollout.wait_candidate_healthy(n).await?;
//!             rollout.scale_stable(old.saturating_sub(n)).await?;
//!         }
//!         if rollout.load_balanced() {
//!             rollout.route(100).await?;
//!         }
//!         rollout.make_primary().await
//!     }
//! }
//! ```
//! `examples/custom_strategy.rs` at the workspace root plugs such a strategy into the engine.
//!
//! # The strategies
//! - [`Rolling`]: batches bounded by `max_surge` / `max_unavailable` ([`Quantity`]: counts or
//!   percentages); the arithmetic is the pure [`rolling_plan`] over [`Bounds`].
//! - [`BlueGreen`]: full new fleet (or a preview), health and optional analysis gates, manual or
//!   automatic promotion, one traffic switch, bake, scale-down delay.
//! - [`Canary`]: [`CanaryStep`]s (weight, scale, pause, analysis), then full promotion.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tapitalee_core::{DeployRequest, DynStrategy};
//! use tapitalee_strategies::{BlueGreen, Canary, Rolling};
//!
//! let rolling: DynStrategy = Arc::new(Rolling::builder().max_surge(2).build()?);
//! let canary: DynStrategy = Arc::new(
//!     Canary::builder()
//!         .set_weight(10)
//!         .pause(Duration::from_secs(600))
//!         .build()?,
//! );
//! let request = DeployRequest::new()
//!     .strategy(rolling)
//!     .strategy_for("default".parse()?, canary)
//!     .strategy_for("scheduler".parse()?, Arc::new(BlueGreen::new()));
//! # let _ = request;
//! # Ok::<(), tapitalee_core::Error>(())
//! ```

mod analysis;
mod blue_green;
mod canary;
mod common;
mod plan;
mod quantity;
mod rolling;

pub use analysis::{AnalysisRun, AnalysisSpec, HealthAnalysis, Verdict};
pub use blue_green::{BlueGreen, BlueGreenBuilder};
pub use canary::{Canary, CanaryBuilder, CanaryScale, CanaryStep};
pub use plan::{Batch, Bounds, rolling_plan};
pub use quantity::Quantity;
pub use rolling::{Rolling, RollingBuilder};

#[doc(no_inline)]
pub use tapitalee_core::{Rollout, Strategy};
