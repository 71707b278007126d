//! The layer every SDK call goes through: rate limit, count (per deployment), retry throttled
//! and transient failures with jittered exponential backoff, bounded.
//!
//! The SDK's own retries are disabled so that this one layer decides, and counts, every
//! attempt.

use std::future::Future;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use rand::Rng;
use tapitalee_core::DeploymentId;

use crate::error::AwsError;
use crate::metrics;
use crate::throttle::RateLimiter;

/// How throttled (`ThrottlingException`, 429) and transient (5xx, timeouts) failures are
/// retried: exponential backoff with full jitter, bounded in attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry). Default 6.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry. Default 200 ms.
    pub base_delay: Duration,
    /// The largest backoff. Default 10 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The backoff before retry number `retry` (1-based): uniform in
    /// `[0, min(max_delay, base_delay * 2^(retry-1))]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1).min(20)))
            .min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// Rate limiting and retries, shared by every client of a backend.
#[derive(Debug, Clone)]
pub(crate) struct CallLayer {
    pub(crate) limiter: RateLimiter,
    pub(crate) retry: RetryPolicy,
}

impl CallLayer {
    /// Runs one AWS operation through the layer. `make` builds and sends the request; it is
    /// called once per attempt.
    pub(crate) async fn call<T, E, F, Fut>(
        &self,
        operation: &'static str,
        deployment: Option<DeploymentId>,
        mut make: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 1;
        loop {
            self.limiter.acquire(operation).await;
            match metrics::scoped(deployment, make()).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let e = AwsError::from_sdk(operation, e);
                    if !e.is_retryable() || attempt >= self.retry.max_attempts {
                        if e.is_retryable() {
                            tracing::warn!(operation, attempts = attempt, error = %e, "giving up");
                        }
                        return Err(e);
                    }
                    let wait = self.retry.backoff(attempt);
                    tracing::debug!(
                        operation,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        error = %e,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy::default();
        for retry in 1..40 {
            let d = p.backoff(retry);
            assert!(d <= p.max_delay, "{retry}: {d:?}");
        }
        for _ in 0..100 {
            assert!(p.backoff(1) <= Duration::from_millis(200));
            assert!(p.backoff(3) <= Duration::from_millis(800));
        }
        // Jitter: not always the same value.
        let samples: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(5)).collect();
        assert!(samples.len() > 1);
    }
}
