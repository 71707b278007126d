//! Tapitalee's core: domain types, the platform traits, and the deployment engine.
//!
//! An app is a set of processes (`default`, `worker`, `scheduler`, …). Deploying it creates
//! one independent deployment per process: each is health-gated on its own, a failed one rolls
//! back on its own, the others carry on. See [`Engine`].
//!
//! Platforms implement [`Deployer`], [`HealthProbe`] and [`ImageRegistry`]; strategies
//! implement [`Strategy`] over a [`Rollout`]. History and locks live in a
//! [`store::DeploymentStore`].

mod control;
pub mod domain;
mod engine;
pub mod error;
pub mod event;
pub mod fleet;
pub mod record;
mod rollout;
pub mod store;
mod strategy;
pub mod traits;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use control::DeploymentControl;
pub use domain::{AppName, DeploymentId, Digest, DockerTag, ImageRef, Initiator, ProcessName};
pub use engine::{DeployRequest, DeploymentHandle, Engine, EngineBuilder};
pub use error::{BoxError, Error, Resource, Result};
pub use event::{DeployEvent, EventKind};
pub use fleet::{
    Fleet, FleetId, FleetStatus, Instance, InstanceStatus, ProcessSpec, Release, Revision, Target,
    TrafficWeight,
};
pub use record::{
    DeploymentRecord, DeploymentStatus, ProcessRecord, ProcessStatus, RollbackPolicy, RolloutState,
    StepRecord,
};
pub use rollout::{HealthGate, Resume, Role, Rollout};
pub use store::{
    DeploymentStore, DeploymentStoreExt, DynDeploymentStore, MemoryStore, SqliteStore,
};
pub use strategy::{DynStrategy, Strategy};
pub use traits::analysis::{Analysis, AnalysisTarget, DynAnalysis, Measurement};
pub use traits::deployer::{DeployMeta, Deployer, DynDeployer, RollbackOrder};
pub use traits::health::{
    AllOf, AnyOf, ContainerHealth, DynHealthProbe, HealthProbe, HealthProbeExt, HealthReport,
    all_of, any_of,
};
pub use traits::registry::{
    DynImageRegistry, ImageInfo, ImageRegistry, RegistryCredentials, Secret,
};
