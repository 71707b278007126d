//! Building blocks the three strategies share.

use tapitalee_core::{Error, Result, Resume, Rollout};

use crate::analysis::{AnalysisSpec, Verdict};

/// Makes sure the new fleet has `wanted` healthy instances *now*: one poll, and a full health
/// wait only if it falls short. Call it right before sending traffic to the fleet.
pub(crate) async fn ensure_healthy_now(rollout: &mut Rollout, wanted: u32) -> Result<()> {
    if wanted == 0 {
        return Ok(());
    }
    match rollout.check_candidate().await {
        Ok(report) if report.healthy >= wanted => Ok(()),
        _ => rollout.wait_candidate_healthy(wanted).await,
    }
}

/// The end of every strategy: the new fleet at the desired count and healthy, all traffic on
/// it (load-balanced processes), primary. The old fleet is left for `finalize` to retire.
pub(crate) async fn promote_fully(rollout: &mut Rollout) -> Result<()> {
    let desired = rollout.desired();
    rollout.launch(desired).await?;
    rollout.wait_candidate_healthy(desired).await?;
    if rollout.load_balanced() {
        ensure_healthy_now(rollout, desired).await?;
        rollout.route(100).await?;
    }
    rollout.make_primary().await
}

/// What an analysis gate decided, for the strategy running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Carry on with the next step.
    Continue,
    /// `promote_full()`: skip the remaining steps.
    SkipRest,
}

/// Runs an analysis as a gate: passing continues, failing is an error (the engine rolls back),
/// inconclusive pauses until `promote()` (or `promote_full()`).
pub(crate) async fn analysis_gate(
    rollout: &mut Rollout,
    spec: &AnalysisSpec,
    what: &str,
) -> Result<Gate> {
    match spec.run(rollout).await? {
        Verdict::Passed => Ok(Gate::Continue),
        Verdict::Skipped => Ok(Gate::SkipRest),
        Verdict::Failed { reason } => Err(Error::HealthFailed {
            process: rollout.target().process.to_string(),
            reason: format!("{what} analysis {} failed: {reason}", spec.name()),
        }),
        Verdict::Inconclusive { reason } => {
            let resume = rollout
                .pause(
                    None,
                    format!(
                        "{what} analysis {} was inconclusive ({reason}); promote to carry on, \
                         abort to roll back",
                        spec.name()
                    ),
                )
                .await?;
            Ok(gate_of(resume))
        }
    }
}

/// Whether a pause's release asks to skip the remaining steps.
pub(crate) fn gate_of(resume: Resume) -> Gate {
    match resume {
        Resume::PromotedFull => Gate::SkipRest,
        Resume::Elapsed | Resume::Promoted => Gate::Continue,
    }
}

/// The stable fleet's current size, or 0 without one (first deploy, or already retired).
pub(crate) fn stable_count(rollout: &Rollout) -> u32 {
    let state = rollout.state();
    if state.stable.is_some() && !state.stable_retired {
        state.stable_count
    } else {
        0
    }
}

/// Whether there is an old fleet to share traffic with.
pub(crate) fn has_stable(rollout: &Rollout) -> bool {
    let state = rollout.state();
    state.stable.is_some() && !state.stable_retired
}
