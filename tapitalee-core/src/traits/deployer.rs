//! [`Deployer`]: the platform that runs fleets (ECS in production).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{AppName, DeploymentId, ImageRef, Initiator};
use crate::error::Result;
use crate::fleet::{Fleet, FleetStatus, ProcessSpec, Release, Revision, Target, TrafficWeight};

/// What a platform records on a revision it prepares, for its own audit trail (ECS: tags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployMeta {
    /// The deployment preparing it.
    pub deployment: DeploymentId,
    /// Who started that deployment.
    pub initiator: Initiator,
}

/// How a process is restored when its deployment rolls back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RollbackOrder {
    /// Restore the old fleet's capacity and wait for it, then its traffic, then retire the
    /// new fleet: the process never lacks capacity (the default, for platforms where fleets
    /// are independent, such as ECS task sets).
    #[default]
    CapacityFirst,
    /// Retire the new fleet first: the platform itself then brings the old version back (ECS
    /// services on the ECS deployment controller, where stopping a deployment with
    /// `ROLLBACK` restores the previous one). Then wait for the old fleet's capacity.
    RetireFirst,
}

impl DeployMeta {
    /// Metadata for a deployment.
    pub fn new(deployment: DeploymentId, initiator: Initiator) -> Self {
        DeployMeta {
            deployment,
            initiator,
        }
    }
}

/// The platform: processes, revisions, fleets and traffic.
///
/// Every method is one platform operation; strategies compose them. Implementations map their
/// own failures into [`Error`](crate::Error) kinds (throttled and transient errors are
/// retryable) and must be safe to call concurrently for different processes.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Deployer: Send + Sync + fmt::Debug + 'static {
    /// The processes of an app. An unknown app is [`Error::NotFound`](crate::Error::NotFound).
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>>;

    /// What the process runs now: the rollback target.
    async fn current(&self, target: &Target) -> Result<Release>;

    /// A revision of the process's live one with only the image changed (pinned by digest).
    async fn prepare(
        &self,
        target: &Target,
        image: &ImageRef,
        meta: &DeployMeta,
    ) -> Result<Revision>;

    /// Starts a new fleet of `count` instances of a revision. It takes no traffic until
    /// [`route`](Deployer::route) sends it some.
    async fn launch(&self, target: &Target, revision: &Revision, count: u32) -> Result<Fleet>;

    /// Asks a fleet to run `count` instances.
    async fn scale(&self, fleet: &Fleet, count: u32) -> Result<()>;

    /// Splits the process's traffic between fleets. Only for load-balanced processes; weights
    /// sum to 100.
    async fn route(&self, target: &Target, weights: &[TrafficWeight]) -> Result<()>;

    /// Makes a fleet the process's live release (ECS: the primary task set).
    async fn make_primary(&self, fleet: &Fleet) -> Result<()>;

    /// Stops and removes a fleet. Retiring a fleet that is already gone succeeds.
    async fn retire(&self, fleet: &Fleet) -> Result<()>;

    /// A fleet's instances as the platform sees them now.
    async fn status(&self, fleet: &Fleet) -> Result<FleetStatus>;

    /// How a rollback of this process must be ordered (default:
    /// [`RollbackOrder::CapacityFirst`]). Asked once per process deployment, after
    /// [`current`](Deployer::current).
    fn rollback_order(&self, target: &Target) -> RollbackOrder {
        let _ = target;
        RollbackOrder::CapacityFirst
    }
}

/// A shared deployer, as the engine holds it.
pub type DynDeployer = Arc<dyn Deployer>;
