//! [`Retrying`]: the engine's one retry policy, as a [`Deployer`] wrapper.
//!
//! Backends retry at the transport level (the AWS backend: throttling and 5xx, up to 6 sends
//! with jittered backoff). On top of that the engine wraps its deployer twice:
//! - while a process moves forward, [`RetryPolicy::forward`] gives a retryable failure
//!   (throttled, transient) that outlived the transport's retries one more try later;
//! - while a process rolls back or completes, [`RetryPolicy::persevere`] retries any failure
//!   but a refusal (invalid input, abort), 3 sends in all, 1 s then 2 s apart: a rollback is
//!   the one operation that must not be abandoned on a passing failure.
//!
//! So one platform change is sent at most `policy.max_attempts × transport attempts` times:
//! on AWS at most 2 × 6 = 12 while deploying and 3 × 6 = 18 while rolling back. Health polls
//! are not wrapped: the health gate tolerates a bounded run of retryable poll errors itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;

use crate::domain::{AppName, ImageRef};
use crate::error::{Error, Result};
use crate::fleet::{Fleet, FleetStatus, ProcessSpec, Release, Revision, TrafficWeight};
use crate::traits::deployer::{DeployContext, Deployer, DynDeployer};
use crate::traits::health::DynHealthProbe;

/// Which failures a [`RetryPolicy`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// Only retryable ones ([`Error::is_retryable`]): throttling, transient failures.
    Retryable,
    /// Every failure except a refusal of the request itself ([`Error::InvalidInput`]) and
    /// [`Error::Aborted`].
    AllButRefusals,
}

/// How many times, how far apart, and which failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles for each later one.
    pub backoff: Duration,
    /// Which failures are retried.
    pub on: RetryOn,
}

impl RetryPolicy {
    /// Moving forward: retryable failures get one more send, 1 s later.
    pub fn forward() -> Self {
        RetryPolicy {
            max_attempts: 2,
            backoff: Duration::from_secs(1),
            on: RetryOn::Retryable,
        }
    }

    /// Rolling back or completing: any failure but a refusal, 3 sends, 1 s then 2 s apart.
    pub fn persevere() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_secs(1),
            on: RetryOn::AllButRefusals,
        }
    }

    fn retries(&self, e: &Error) -> bool {
        match self.on {
            RetryOn::Retryable => e.is_retryable(),
            RetryOn::AllButRefusals => {
                !matches!(e, Error::InvalidInput { .. } | Error::Aborted { .. })
            }
        }
    }

    /// Runs `call` under this policy.
    pub async fn run<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>> + Send,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.max_attempts && self.retries(&e) => {
                    let wait = self.backoff.saturating_mul(1 << (attempt - 1).min(16));
                    warn!(operation = what, attempt, error = %e, retry_in = ?wait, "platform call failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A [`Deployer`] that retries the changes of another under a [`RetryPolicy`]. Reads
/// (`processes`, `status`) and `prepare` pass through with the same policy except `status`,
/// which is never retried (the health gate has its own tolerance).
#[derive(Debug, Clone)]
pub struct Retrying {
    inner: DynDeployer,
    policy: RetryPolicy,
}

impl Retrying {
    /// Wraps `inner`.
    pub fn new(inner: DynDeployer, policy: RetryPolicy) -> Self {
        Retrying { inner, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

#[async_trait]
impl Deployer for Retrying {
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>> {
        self.policy
            .run("processes", || self.inner.processes(app))
            .await
    }

    async fn current(&self, ctx: &DeployContext) -> Result<Release> {
        self.policy.run("current", || self.inner.current(ctx)).await
    }

    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision> {
        self.policy
            .run("prepare", || self.inner.prepare(ctx, image))
            .await
    }

    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet> {
        self.policy
            .run("launch", || self.inner.launch(ctx, revision, count))
            .await
    }

    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()> {
        self.policy
            .run("scale", || self.inner.scale(ctx, fleet, count))
            .await
    }

    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()> {
        self.policy
            .run("route", || self.inner.route(ctx, weights))
            .await
    }

    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.policy
            .run("make primary", || self.inner.make_primary(ctx, fleet))
            .await
    }

    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.policy
            .run("retire", || self.inner.retire(ctx, fleet))
            .await
    }

    async fn status(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus> {
        self.inner.status(ctx, fleet).await
    }

    async fn discover(&self, ctx: &DeployContext, revision: &Revision) -> Result<Option<Fleet>> {
        self.policy
            .run("discover", || self.inner.discover(ctx, revision))
            .await
    }

    fn target_health(&self) -> Option<DynHealthProbe> {
        self.inner.target_health()
    }
}

/// Wraps a deployer in a policy, as the engine does.
pub fn retrying(inner: DynDeployer, policy: RetryPolicy) -> DynDeployer {
    Arc::new(Retrying::new(inner, policy))
}
