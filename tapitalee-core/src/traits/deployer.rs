//! [`Deployer`]: the platform that runs fleets (ECS in production).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{AppName, DeploymentId, ImageRef, Initiator};
use crate::error::Result;
use crate::fleet::{Fleet, FleetStatus, ProcessSpec, Release, Revision, Target, TrafficWeight};
use crate::traits::health::DynHealthProbe;

/// Whom a platform call serves: the deployment, who started it, the process, and what the
/// process ran before.
///
/// The engine builds it from the deployment's record (the stable fleet is the one recorded
/// when the deployment started), so a fresh backend after a crash receives exactly what the
/// first one did: a backend keeps no per-process state between calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployContext {
    /// The deployment making the call (platforms tag and attribute with it).
    pub deployment: DeploymentId,
    /// Who started that deployment.
    pub initiator: Initiator,
    /// The app and process.
    pub target: Target,
    /// The fleet the process ran when the deployment started: its rollback target. `None` on
    /// a first deploy, and in [`current`](Deployer::current) and
    /// [`prepare`](Deployer::prepare), which run before it is known.
    pub stable: Option<Fleet>,
}

impl DeployContext {
    /// A context for a deployment of `target`, before its stable fleet is known.
    pub fn new(deployment: DeploymentId, initiator: Initiator, target: Target) -> Self {
        DeployContext {
            deployment,
            initiator,
            target,
            stable: None,
        }
    }

    /// The same context with the process's stable fleet.
    #[must_use]
    pub fn with_stable(mut self, stable: Option<Fleet>) -> Self {
        self.stable = stable;
        self
    }
}

/// The platform: processes, revisions, fleets and traffic.
///
/// Every method is one platform operation; strategies compose them. Implementations map their
/// own failures into [`Error`](crate::Error) kinds (throttled and transient errors are
/// retryable) and must be safe to call concurrently for different processes. Everything a call
/// depends on arrives in its arguments ([`DeployContext`], [`Fleet`], [`Revision`]): an
/// implementation holds clients and caches of immutable things, never per-process state
/// filled by earlier calls.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Deployer: Send + Sync + fmt::Debug + 'static {
    /// The processes of an app. An unknown app is [`Error::NotFound`](crate::Error::NotFound).
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>>;

    /// What the process runs now: the rollback target.
    async fn current(&self, ctx: &DeployContext) -> Result<Release>;

    /// A revision of the process's live one with only the image changed (pinned by digest).
    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision>;

    /// Starts a new fleet of `count` instances of a revision. It takes no traffic until
    /// [`route`](Deployer::route) sends it some. On a process whose platform runs the rollout
    /// ([`RolloutControl::Platform`](crate::RolloutControl::Platform)) this starts the
    /// platform's rollout to the revision.
    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet>;

    /// Asks a fleet to run `count` instances.
    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()>;

    /// Splits the process's traffic between fleets. Only for load-balanced processes; weights
    /// sum to 100.
    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()>;

    /// Makes a fleet the process's live release (ECS: the primary task set).
    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()>;

    /// Stops and removes a fleet. Retiring a fleet that is already gone succeeds. On a
    /// platform-run process, retiring the new fleet asks the platform to roll back to
    /// `ctx.stable`.
    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()>;

    /// A fleet's instances as the platform sees them now. A fleet that no longer exists is
    /// [`Error::NotFound`](crate::Error::NotFound) with [`Resource::Fleet`](crate::Resource).
    async fn status(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus>;

    /// The fleet of `revision` that this deployment (`ctx.deployment`) launched for the
    /// process, as the platform runs it now: `Ok(None)` if the platform runs none (never
    /// started, or already gone). Never the process's stable fleet (`ctx.stable`).
    ///
    /// The engine calls it only after a deployer died between a [`launch`](Deployer::launch)
    /// and recording the fleet it returned ([`RolloutState::launching`](crate::RolloutState)):
    /// a rollback then retires what it finds (on a platform-run process: the platform goes
    /// back to `ctx.stable`), so the process is back on its old fleet and the record says so.
    /// A stateless backend reads it from the platform (ECS: the service deployment or task
    /// set of the revision's task definition; Docker: containers by label).
    ///
    /// Default: [`Error::Platform`](crate::Error::Platform) saying the platform cannot
    /// look fleets up, for platforms that cannot. A guess either way would be wrong: `None`
    /// would report an orphaned fleet as rolled back, a fleet would be invented. The
    /// interrupted process is then reported `RollbackFailed`, naming the revision to look for
    /// and remove by hand.
    async fn discover(&self, ctx: &DeployContext, revision: &Revision) -> Result<Option<Fleet>> {
        Err(crate::Error::platform(
            "discover",
            format!(
                "this platform cannot look up the fleet of revision {} that deployment {} may \
                 have launched for {}; look for it on the platform and remove it",
                revision.id, ctx.deployment, ctx.target
            ),
        ))
    }

    /// The platform's load balancer target-health probe, if it has one. The engine's default
    /// health gate is container health AND this probe, so a new fleet that fails the load
    /// balancer's health check never takes all the traffic. The probe must pass fleets of
    /// processes without a load balancer. Default: none.
    fn target_health(&self) -> Option<DynHealthProbe> {
        None
    }
}

/// A shared deployer, as the engine holds it.
pub type DynDeployer = Arc<dyn Deployer>;
