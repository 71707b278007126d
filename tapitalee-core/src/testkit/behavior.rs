//! [`Behavior`]: how instances of an image behave in the in-memory platform.

use std::time::Duration;

/// How instances of an image behave once launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    /// Time from launch to running.
    pub start_delay: Duration,
    /// If set, each instance exits this long after it starts running, and the platform
    /// replaces it (a crash loop).
    pub crash_after: Option<Duration>,
    /// The exit code of a crash.
    pub exit_code: i32,
    /// The container health check never passes.
    pub never_healthy: bool,
    /// If set, container health flips between passing and failing with this period.
    pub flap_period: Option<Duration>,
    /// Whether the load balancer's target health check passes (when container health does).
    pub lb_healthy: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            start_delay: Duration::from_secs(5),
            crash_after: None,
            exit_code: 1,
            never_healthy: false,
            flap_period: None,
            lb_healthy: true,
        }
    }
}

impl Behavior {
    /// Starts in 5 s and stays healthy.
    pub fn healthy() -> Self {
        Self::default()
    }

    /// Starts, runs for `after`, exits with code 1, and is replaced: forever.
    pub fn crash_loop(after: Duration) -> Self {
        Behavior {
            crash_after: Some(after),
            ..Self::default()
        }
    }

    /// Runs but never passes its container health check.
    pub fn never_healthy() -> Self {
        Behavior {
            never_healthy: true,
            ..Self::default()
        }
    }

    /// Health flips every `period`.
    pub fn flapping(period: Duration) -> Self {
        Behavior {
            flap_period: Some(period),
            ..Self::default()
        }
    }

    /// Passes container health but fails the load balancer's check.
    pub fn lb_unhealthy() -> Self {
        Behavior {
            lb_healthy: false,
            ..Self::default()
        }
    }

    /// The same behaviour with another start delay.
    #[must_use]
    pub fn start_delay(mut self, delay: Duration) -> Self {
        self.start_delay = delay;
        self
    }
}
