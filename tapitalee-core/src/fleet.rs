//! The fleet model: revisions, fleets, releases and instance states.
//!
//! Strategies speak only of fleets: launch one, scale it, route traffic to it, retire it. A
//! rolling update, a blue-green switch and a canary are the same vocabulary used differently.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::domain::{AppName, ImageRef, ProcessName};

/// Which app and process an operation is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The app.
    pub app: AppName,
    /// The process.
    pub process: ProcessName,
}

impl Target {
    /// A target.
    pub fn new(app: AppName, process: ProcessName) -> Self {
        Target { app, process }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.process)
    }
}

/// What a process is and what its platform can do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// The process name.
    pub name: ProcessName,
    /// Whether a load balancer fronts it, so traffic can be split between fleets.
    pub load_balanced: bool,
    /// How many instances it normally runs.
    pub desired: u32,
    /// Who runs its rollouts: the engine (independent fleets) or the platform itself.
    pub rollout: RolloutControl,
}

impl ProcessSpec {
    /// A process whose fleets the engine controls.
    pub fn new(name: ProcessName, desired: u32, load_balanced: bool) -> Self {
        ProcessSpec {
            name,
            load_balanced,
            desired,
            rollout: RolloutControl::Engine,
        }
    }
}

/// The families of rollout a strategy, or a platform's own rollout, belongs to: what lets the
/// engine map a requested strategy onto a platform that runs rollouts itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RolloutKind {
    /// Replace instances in batches.
    Rolling,
    /// Start a full new fleet, switch all traffic at once.
    BlueGreen,
    /// Shift traffic (or instances) in steps, watching each.
    Canary,
    /// Anything else (user-written strategies).
    Other,
}

impl fmt::Display for RolloutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            RolloutKind::Rolling => "rolling",
            RolloutKind::BlueGreen => "blue-green",
            RolloutKind::Canary => "canary",
            RolloutKind::Other => "custom",
        })
    }
}

/// Who runs a process's rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutControl {
    /// The engine: fleets can be launched, scaled, routed and retired independently (ECS task
    /// sets, Docker containers, the in-memory platform). Any strategy runs.
    #[default]
    Engine,
    /// The platform replaces instances itself (an ECS service on the ECS deployment
    /// controller): fleets cannot be scaled independently. The engine launches the new
    /// revision once, gates it (its own gates on top of the platform's), then completes it or
    /// asks the platform to roll back by retiring the new fleet.
    Platform {
        /// The rollout the platform is configured to run.
        native: RolloutKind,
        /// Who runs it and how to get independent fleets instead, for messages (e.g. "the
        /// ECS deployment controller; move the service to the EXTERNAL controller for
        /// Tapitalee's own strategies").
        by: String,
        /// How long the platform's rollout waits on purpose (bakes, steps between traffic
        /// shifts) before it reports completion: a time without visible progress that the
        /// engine's progress deadline must not count.
        bake: std::time::Duration,
    },
}

/// A runnable version of one process on one platform (ECS: a task definition revision).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revision {
    /// The platform's id for it (ECS: the task definition ARN).
    pub id: String,
    /// The image it runs.
    pub image: ImageRef,
}

/// The platform's id of a fleet (ECS: a task set ARN).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FleetId(pub String);

impl fmt::Display for FleetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The instances of ONE revision of ONE process (ECS: a task set; in memory: a vector).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fleet {
    /// Its id.
    pub id: FleetId,
    /// The process it belongs to.
    pub target: Target,
    /// What it runs.
    pub revision: Revision,
}

/// What a process runs now: the rollback target of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The live fleet, if the process runs one (a process never deployed has none).
    pub fleet: Option<Fleet>,
    /// How many instances the process should run.
    pub desired: u32,
}

impl Release {
    /// The live revision, if any.
    pub fn revision(&self) -> Option<&Revision> {
        self.fleet.as_ref().map(|f| &f.revision)
    }
}

/// One fleet's share of a process's traffic, in percent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficWeight {
    /// The fleet.
    pub fleet: FleetId,
    /// Percent of requests, 0-100. Weights of one call sum to 100.
    pub percent: u8,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceStatus {
    /// Provisioning, pulling, starting.
    Pending,
    /// Running. `healthy` is the container health check's verdict, `None` without one.
    Running {
        /// Container health, if the revision defines a health check.
        healthy: Option<bool>,
    },
    /// Stopped, with why.
    Stopped {
        /// The platform's stop reason (e.g. "Essential container in task exited").
        reason: String,
        /// The main container's exit code, if it ran.
        exit_code: Option<i32>,
    },
}

/// One instance (ECS: a task) of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The platform's id (ECS: the task ARN).
    pub id: String,
    /// Its state.
    pub status: InstanceStatus,
    /// When it started running, if it did.
    pub started_at: Option<SystemTime>,
}

/// A fleet's instances as the platform reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The fleet.
    pub fleet: FleetId,
    /// How many instances the fleet is asked to run.
    pub desired: u32,
    /// Its instances, including recently stopped ones.
    pub instances: Vec<Instance>,
}

impl FleetStatus {
    /// Instances running (healthy or not yet judged).
    pub fn running(&self) -> u32 {
        self.count(|s| matches!(s, InstanceStatus::Running { healthy } if *healthy != Some(false)))
    }

    /// Instances stopped.
    pub fn stopped(&self) -> u32 {
        self.count(|s| matches!(s, InstanceStatus::Stopped { .. }))
    }

    fn count(&self, f: impl Fn(&InstanceStatus) -> bool) -> u32 {
        u32::try_from(self.instances.iter().filter(|i| f(&i.status)).count()).unwrap_or(u32::MAX)
    }
}
