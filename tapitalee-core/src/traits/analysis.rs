//! [`Analysis`]: one measurement of a deployment's health beyond instance states (a metric
//! query, an alarm, a smoke test), used as a gate by canary and blue-green strategies.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fleet::Fleet;
use crate::traits::deployer::DeployContext;

/// What an analysis looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisTarget {
    /// The deployment and process (platform calls take it as their context).
    pub context: DeployContext,
    /// The new fleet under analysis.
    pub candidate: Fleet,
    /// The stable fleet it is compared with, if any.
    pub stable: Option<Fleet>,
}

/// One measurement's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Measurement {
    /// The success condition holds.
    Pass {
        /// The measured value, in words (e.g. "error rate 0.2% <= 1%").
        detail: String,
    },
    /// The failure condition holds.
    Fail {
        /// The measured value, in words.
        detail: String,
    },
    /// Neither holds (no data yet, value between thresholds).
    Inconclusive {
        /// Why, in words.
        detail: String,
    },
}

/// Takes one measurement. Strategies run it at an interval, count passes, failures,
/// inconclusive results and errors, and decide.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Analysis: Send + Sync + fmt::Debug + 'static {
    /// A short name for events and reasons ("error-rate", "p99-latency", …).
    fn name(&self) -> &str;

    /// Takes one measurement. An `Err` counts as a measurement error, not a failure.
    async fn measure(&self, target: &AnalysisTarget) -> Result<Measurement>;
}

/// A shared analysis.
pub type DynAnalysis = Arc<dyn Analysis>;
