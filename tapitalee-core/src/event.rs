//! Events a deployment emits as it happens. The CLI renders them; the store records them.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::domain::{DeploymentId, ImageRef, ProcessName};
use crate::record::{DeploymentStatus, ProcessStatus};

/// One thing that happened in a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployEvent {
    /// The deployment.
    pub deployment: DeploymentId,
    /// The process, for process-level events.
    pub process: Option<ProcessName>,
    /// When (wall clock).
    pub at: SystemTime,
    /// What.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventKind {
    /// The deployment was accepted: image resolved, processes locked.
    Started {
        /// The image, pinned by digest.
        image: ImageRef,
        /// The processes being deployed.
        processes: Vec<ProcessName>,
    },
    /// A process's deployment began.
    ProcessStarted {
        /// The strategy driving it.
        strategy: String,
        /// The revision it ran before (`None` on a first deploy).
        from: Option<String>,
        /// The revision it moves to.
        to: String,
    },
    /// A strategy step (launch, scale, route, pause, analysis, …), in words.
    Step {
        /// What the step does.
        message: String,
    },
    /// Health of a fleet changed while waiting on a gate.
    Health {
        /// Which fleet: "new" or "stable".
        fleet: String,
        /// Instances passing health.
        healthy: u32,
        /// Instances wanted.
        wanted: u32,
        /// Instance failures counted so far.
        failures: u32,
    },
    /// Waiting for `promote()`.
    Paused {
        /// Why.
        reason: String,
    },
    /// Resumed after a pause.
    Resumed,
    /// Rolling back, and why.
    RollingBack {
        /// The reason.
        reason: String,
    },
    /// A process's deployment ended.
    ProcessFinished {
        /// How.
        status: ProcessStatus,
    },
    /// The whole deployment ended.
    Finished {
        /// How.
        status: DeploymentStatus,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Started { image, processes } => {
                let names: Vec<&str> = processes.iter().map(ProcessName::as_str).collect();
                write!(f, "deploying {image} to {}", names.join(", "))
            }
            EventKind::ProcessStarted { strategy, from, to } => write!(
                f,
                "{strategy} deployment from {} to {to}",
                from.as_deref().unwrap_or("nothing (first deploy)")
            ),
            EventKind::Step { message } => f.write_str(message),
            EventKind::Health {
                fleet,
                healthy,
                wanted,
                failures,
            } => {
                write!(f, "{fleet} fleet: {healthy}/{wanted} healthy")?;
                if *failures > 0 {
                    write!(f, ", {failures} instance failure(s)")?;
                }
                Ok(())
            }
            EventKind::Paused { reason } => write!(f, "paused: {reason}"),
            EventKind::Resumed => f.write_str("resumed"),
            EventKind::RollingBack { reason } => write!(f, "rolling back: {reason}"),
            EventKind::ProcessFinished { status } => write!(f, "finished: {status}"),
            EventKind::Finished { status } => write!(f, "deployment {status}"),
        }
    }
}
