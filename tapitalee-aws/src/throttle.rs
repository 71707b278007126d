//! Client-side rate limiting: a token bucket per API operation, so that every deployment in
//! flight together stays under ECS's documented sustained rates instead of discovering them
//! through `ThrottlingException`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A sustained rate and a burst, for one operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: f64,
}

impl Rate {
    /// `per_second` sustained, with a burst of the same size (at least 1).
    pub fn per_second(per_second: f64) -> Self {
        Rate {
            per_second,
            burst: per_second.max(1.0),
        }
    }
}

/// Rate limits per API operation name (`"DescribeServices"`, `"UpdateService"`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    limits: HashMap<String, Rate>,
    default: Option<Rate>,
}

impl RateLimits {
    /// No limit at all (tests).
    pub fn unlimited() -> Self {
        RateLimits {
            limits: HashMap::new(),
            default: None,
        }
    }

    /// Under ECS's documented sustained rates: `DescribeServices` 20/s, `UpdateService` and
    /// `StopServiceDeployment` 5/s, `RegisterTaskDefinition` and `DeregisterTaskDefinition`
    /// 1/s, task set changes 5/s, and 20/s for every other operation.
    pub fn ecs_defaults() -> Self {
        RateLimits::unlimited()
            .default_rate(Rate::per_second(20.0))
            .limit("DescribeServices", Rate::per_second(20.0))
            .limit("DescribeTasks", Rate::per_second(20.0))
            .limit("UpdateService", Rate::per_second(5.0))
            .limit("StopServiceDeployment", Rate::per_second(5.0))
            .limit("RegisterTaskDefinition", Rate::per_second(1.0))
            .limit("DeregisterTaskDefinition", Rate::per_second(1.0))
            .limit("CreateTaskSet", Rate::per_second(5.0))
            .limit("UpdateTaskSet", Rate::per_second(5.0))
            .limit("DeleteTaskSet", Rate::per_second(5.0))
            .limit("UpdateServicePrimaryTaskSet", Rate::per_second(5.0))
    }

    /// Limits one operation.
    #[must_use]
    pub fn limit(mut self, operation: impl Into<String>, rate: Rate) -> Self {
        self.limits.insert(operation.into(), rate);
        self
    }

    /// The limit of operations not named.
    #[must_use]
    pub fn default_rate(mut self, rate: Rate) -> Self {
        self.default = Some(rate);
        self
    }

    fn rate_for(&self, operation: &str) -> Option<Rate> {
        self.limits.get(operation).copied().or(self.default)
    }
}

#[derive(Debug)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

/// Token buckets for every operation, shared by all clients of one backend.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    limits: Arc<RateLimits>,
    buckets: Arc<Mutex<HashMap<&'static str, Bucket>>>,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits: Arc::new(limits),
            buckets: Arc::default(),
        }
    }

    /// Waits until `operation` may be called, and takes its token.
    pub(crate) async fn acquire(&self, operation: &'static str) {
        let Some(rate) = self.limits.rate_for(operation) else {
            return;
        };
        if rate.per_second <= 0.0 {
            return;
        }
        let wait = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let b = buckets.entry(operation).or_insert(Bucket {
                rate,
                tokens: rate.burst,
                last: now,
            });
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * b.rate.per_second).min(b.rate.burst);
            b.last = now;
            // Take the token now (possibly going negative): later callers queue behind us.
            b.tokens -= 1.0;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / b.rate.per_second)
            }
        };
        if !wait.is_zero() {
            tracing::debug!(operation, wait_ms = wait.as_millis() as u64, "rate limited");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keeps_under_the_sustained_rate() {
        let limiter = RateLimiter::new(RateLimits::ecs_defaults());
        let start = Instant::now();
        for _ in 0..25 {
            limiter.acquire("UpdateService").await;
        }
        // 5 at once (the burst), then 20 more at 5/s.
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(4), "{took:?}");
        assert!(took < Duration::from_millis(4100), "{took:?}");

        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire("RegisterTaskDefinition").await;
        }
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_bucket() {
        let limiter = RateLimiter::new(RateLimits::ecs_defaults());
        let start = Instant::now();
        let calls = (0..60).map(|_| limiter.acquire("DescribeServices"));
        futures::future::join_all(calls).await;
        // 20 burst + 40 at 20/s = 2 s.
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(took < Duration::from_millis(2100), "{took:?}");
    }

    #[test]
    fn changes_ecs_limits_tightly_are_limited_as_tightly() {
        let limits = RateLimits::ecs_defaults();
        for (operation, per_second) in [
            ("UpdateService", 5.0),
            ("StopServiceDeployment", 5.0),
            ("CreateTaskSet", 5.0),
            ("RegisterTaskDefinition", 1.0),
            ("DeregisterTaskDefinition", 1.0),
            ("ListTasks", 20.0),
        ] {
            let rate = limits.rate_for(operation).expect(operation);
            assert!(
                (rate.per_second - per_second).abs() < f64::EPSILON,
                "{operation}: {rate:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limiter = RateLimiter::new(RateLimits::unlimited());
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire("UpdateService").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
