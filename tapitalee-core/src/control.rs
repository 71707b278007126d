//! Steering a running deployment: abort, pause, promote.

use std::sync::Arc;

use tokio::sync::watch;

/// What the controls of a deployment say now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ControlState {
    /// Set once by `abort()`, with the reason.
    pub(crate) abort: Option<String>,
    /// Set by `pause()`, cleared by `promote()`.
    pub(crate) paused: bool,
    /// Bumped by every `promote()`.
    pub(crate) promotions: u64,
    /// Set by `promote_full()`: skip the remaining steps.
    pub(crate) full: bool,
}

/// Steers a running deployment from anywhere: cheap to clone, safe to share.
#[derive(Debug, Clone)]
pub struct DeploymentControl {
    tx: Arc<watch::Sender<ControlState>>,
}

impl DeploymentControl {
    pub(crate) fn new() -> Self {
        DeploymentControl {
            tx: Arc::new(watch::Sender::new(ControlState::default())),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<ControlState> {
        self.tx.subscribe()
    }

    /// Stops every process at its next step and rolls it back. Processes not started yet are
    /// cancelled untouched. Rollbacks already under way are not interrupted.
    pub fn abort(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.tx.send_modify(|s| {
            s.abort.get_or_insert(reason);
        });
    }

    /// Holds every process at its next step until [`promote`](Self::promote).
    pub fn pause(&self) {
        self.tx.send_modify(|s| s.paused = true);
    }

    /// Releases a pause and one manual gate in every process.
    ///
    /// Every promote counts once for every process of the deployment, whenever that process
    /// starts: it releases the manual gate the process waits at now or, if it waits at none,
    /// the next one it reaches. So with processes deploying one at a time, an early promote
    /// still releases each process's first gate; N promotes release N gates in each.
    pub fn promote(&self) {
        self.tx.send_modify(|s| {
            s.paused = false;
            s.promotions += 1;
        });
    }

    /// Releases every pause and asks strategies to skip their remaining steps and analyses
    /// (`promote --full`).
    pub fn promote_full(&self) {
        self.tx.send_modify(|s| {
            s.paused = false;
            s.full = true;
            s.promotions += 1;
        });
    }

    /// Whether `abort()` was called.
    pub fn is_aborted(&self) -> bool {
        self.tx.borrow().abort.is_some()
    }
}
