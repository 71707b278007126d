//! [`AllAtOnce`]: the smallest useful strategy, for core's own tests.

use async_trait::async_trait;

use crate::error::Result;
use crate::rollout::Rollout;
use crate::strategy::Strategy;

/// Launches the full new fleet beside the old one, waits for health, moves all traffic, then
/// scales the old fleet to zero. The real strategies live in `tapitalee-strategies`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllAtOnce;

#[async_trait]
impl Strategy for AllAtOnce {
    fn name(&self) -> &str {
        "all-at-once"
    }

    async fn run(&self, rollout: &mut Rollout) -> Result<()> {
        let desired = rollout.desired();
        rollout
            .step(format!("launch {desired} new instance(s)"))
            .await?;
        rollout.launch(desired).await?;
        rollout.wait_candidate_healthy(desired).await?;
        rollout.step("switch to the new fleet").await?;
        if rollout.load_balanced() {
            rollout.route(100).await?;
        }
        rollout.make_primary().await?;
        rollout.scale_stable(0).await
    }
}
