//! What a caller asks the engine to deploy.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::{DockerTag, Initiator, ProcessName};
use crate::record::RollbackPolicy;
use crate::strategy::DynStrategy;

/// A deployment request: which image, which processes, how.
///
/// ```
/// use tapitalee_core::{DeployRequest, RollbackPolicy};
///
/// let request = DeployRequest::new()
///     .docker_tag("v1.2.3-abc123".parse()?)
///     .initiator("github-actions".parse()?)
///     .rollback_policy(RollbackPolicy::AllOrNothing);
/// # Ok::<(), tapitalee_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct DeployRequest {
    pub(crate) docker_tag: DockerTag,
    pub(crate) initiator: Initiator,
    pub(crate) process: Option<ProcessName>,
    pub(crate) strategy: Option<DynStrategy>,
    pub(crate) strategies: HashMap<ProcessName, DynStrategy>,
    pub(crate) policy: RollbackPolicy,
    pub(crate) lock_wait: Duration,
}

impl DeployRequest {
    /// Deploy `latest` to every process, by `unknown`, with the engine's default strategy.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Docker tag to deploy (default `latest`).
    #[must_use]
    pub fn docker_tag(mut self, tag: DockerTag) -> Self {
        self.docker_tag = tag;
        self
    }

    /// Who is deploying, for the audit trail.
    #[must_use]
    pub fn initiator(mut self, initiator: Initiator) -> Self {
        self.initiator = initiator;
        self
    }

    /// Deploy only this process instead of the whole app.
    #[must_use]
    pub fn process(mut self, process: ProcessName) -> Self {
        self.process = Some(process);
        self
    }

    /// The strategy for every process without one of its own (default: the engine's).
    #[must_use]
    pub fn strategy(mut self, strategy: DynStrategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// The strategy for one process.
    #[must_use]
    pub fn strategy_for(mut self, process: ProcessName, strategy: DynStrategy) -> Self {
        self.strategies.insert(process, strategy);
        self
    }

    /// What to do with processes that succeeded when another fails (default: leave them).
    #[must_use]
    pub fn rollback_policy(mut self, policy: RollbackPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long to wait for processes locked by another deployment before giving up with
    /// [`Error::Locked`](crate::Error::Locked) (default: do not wait).
    #[must_use]
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }
}
