//! [`Strategy`]: how one process moves from its old release to the new revision.
//!
//! A strategy drives a [`Rollout`], the engine's handle on one process's deployment. The
//! rollout performs each platform operation, records it in the audit trail, keeps the
//! [`RolloutState`](crate::record::RolloutState) that a rollback needs, and enforces the health
//! gates, pauses and aborts, so a strategy is only its sequence of steps.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::fleet::{ProcessSpec, RolloutKind};
use crate::rollout::Rollout;

/// Drives one process from its old release to the new revision.
///
/// # Contract
/// - [`run`](Strategy::run) ends with the new fleet at the desired count, taking all traffic
///   (when load-balanced) and primary; the old fleet may still exist (scaled down or not).
///   It must not retire the old fleet: the engine decides that in
///   [`finalize`](Strategy::finalize), only for processes that succeeded (and, under
///   [`RollbackPolicy::AllOrNothing`](crate::RollbackPolicy::AllOrNothing), only once every
///   process succeeded).
/// - On any error from `run` the engine calls [`rollback`](Strategy::rollback) on the same
///   rollout, from whatever step was reached. The default restores the old fleet's capacity
///   first, then its traffic, then retires the new fleet.
/// - Call [`Rollout::step`] between steps: it records the step, honours `pause()` and
///   `abort()` from the deployment handle.
///
/// # Example
/// A "recreate-less" all-at-once strategy:
/// ```
/// use async_trait::async_trait;
/// use tapitalee_core::{Result, Rollout, Strategy};
///
/// #[derive(Debug)]
/// struct AllAtOnce;
///
/// #[async_trait]
/// impl Strategy for AllAtOnce {
///     fn name(&self) -> &str {
///         "all-at-once"
///     }
///
///     async fn run(&self, rollout: &mut Rollout) -> Result<()> {
///         let desired = rollout.desired();
///         rollout.step(format!("launch {desired} new instance(s)")).await?;
///         rollout.launch(desired).await?;
///         rollout.wait_candidate_healthy(desired).await?;
///         if rollout.load_balanced() {
///             rollout.route(100).await?;
///         }
///         rollout.make_primary().await?;
///         rollout.scale_stable(0).await
///     }
/// }
/// ```
#[async_trait]
pub trait Strategy: Send + Sync + fmt::Debug + 'static {
    /// A short name for the audit trail ("rolling", "blue-green", "canary", …).
    fn name(&self) -> &str;

    /// Which family of rollout this is. On a process whose platform runs rollouts itself
    /// ([`RolloutControl::Platform`](crate::RolloutControl::Platform)) a strategy of the same
    /// kind as the platform's is mapped to the platform's rollout; any other is refused before
    /// anything changes. Default: [`RolloutKind::Other`].
    fn kind(&self) -> RolloutKind {
        RolloutKind::Other
    }

    /// Checks the strategy's settings against the process before anything changes (e.g. a
    /// traffic split on a process without a load balancer). The default accepts everything.
    fn validate(&self, process: &ProcessSpec) -> Result<()> {
        let _ = process;
        Ok(())
    }

    /// Moves the process to the new revision. See the trait's contract.
    async fn run(&self, rollout: &mut Rollout) -> Result<()>;

    /// Undoes `run` from wherever it stopped. Abort is ignored while this runs.
    async fn rollback(&self, rollout: &mut Rollout) -> Result<()> {
        rollout.restore_stable().await
    }

    /// Completes a successful deployment: retires the old fleet.
    async fn finalize(&self, rollout: &mut Rollout) -> Result<()> {
        rollout.complete().await
    }
}

/// A shared strategy, as the engine holds it.
pub type DynStrategy = Arc<dyn Strategy>;

/// The rollout of a process whose platform runs it
/// ([`RolloutControl::Platform`](crate::RolloutControl::Platform)): launch the new revision
/// once (the platform replaces the instances), wait for it to pass the engine's health gates
/// on top of the platform's own, make it primary. The default completion and rollback follow:
/// on failure the new fleet is retired, which asks the platform to roll back.
///
/// The engine runs it on such processes for the default strategy, and for a requested
/// strategy of the same [`RolloutKind`] as the platform's.
#[derive(Debug, Clone)]
pub struct PlatformRollout {
    name: String,
}

impl PlatformRollout {
    /// The platform's rollout of `kind`, named for the audit trail.
    pub fn new(kind: RolloutKind) -> Self {
        PlatformRollout {
            name: format!("{kind} (run by the platform)"),
        }
    }
}

#[async_trait]
impl Strategy for PlatformRollout {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, rollout: &mut Rollout) -> Result<()> {
        let desired = rollout.desired();
        rollout
            .step(format!(
                "start the platform's rollout of the new revision ({desired} instance(s))"
            ))
            .await?;
        rollout.launch(desired).await?;
        rollout.wait_candidate_healthy(desired).await?;
        rollout.make_primary().await
    }
}
