//! Tapitalee's core: domain types, the platform traits, and the deployment engine.
//!
//! An app is a set of processes (`default`, `worker`, `scheduler`, …). Deploying it creates
//! one independent deployment per process: each is health-gated on its own, a failed one rolls
//! back on its own, the others carry on. See [`Engine`].
//!
//! Platforms implement [`Deployer`], [`HealthProbe`] and [`ImageRegistry`]; strategies
//! implement [`Strategy`] over a [`Rollout`]. History and locks live in a
//! [`DeploymentStore`]. Every public type is at the crate root.
//!
//! Features: `sqlite` (default) the [`SqliteStore`]; `testkit` the in-memory platform and the
//! conformance suites; `mocks` mockall mocks of the traits.

mod control;
mod domain;
mod engine;
mod error;
mod event;
mod fleet;
mod record;
mod rollout;
mod store;
mod strategy;
mod traits;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use control::DeploymentControl;
pub use domain::{
    AppName, DeploymentId, Digest, DockerTag, ImageRef, Initiator, MAX_INITIATOR_LEN, ProcessName,
};
pub use engine::{DeployRequest, DeploymentHandle, Engine, EngineBuilder};
pub use error::{BoxError, Error, MAX_QUOTED_CHARS, Resource, Result};
pub use event::{DeployEvent, EventKind};
pub use fleet::{
    Fleet, FleetId, FleetStatus, Instance, InstanceStatus, ProcessSpec, Release, Revision,
    RolloutControl, RolloutKind, Target, TrafficWeight,
};
pub use record::{
    DeploymentRecord, DeploymentStatus, ProcessRecord, ProcessStatus, RollbackPolicy, RolloutState,
    StepRecord,
};
pub use rollout::{HealthGate, Resume, Rollout};
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{DeploymentStore, DeploymentStoreExt, DynDeploymentStore, MemoryStore};
pub use strategy::{DynStrategy, PlatformRollout, Strategy};
pub use traits::analysis::{Analysis, AnalysisTarget, DynAnalysis, Measurement};
pub use traits::deployer::{DeployContext, Deployer, DynDeployer};
pub use traits::health::{
    AllOf, AnyOf, ContainerHealth, DynHealthProbe, HealthProbe, HealthProbeExt, HealthReport,
    all_of, any_of,
};
pub use traits::registry::{
    DynImageRegistry, ImageInfo, ImageRegistry, RegistryCredentials, Secret,
};
pub use traits::retry::{RetryOn, RetryPolicy, Retrying, retrying};

/// mockall mocks of the public traits (feature `mocks`).
#[cfg(feature = "mocks")]
pub mod mocks {
    pub use crate::store::MockDeploymentStore;
    pub use crate::traits::analysis::MockAnalysis;
    pub use crate::traits::deployer::MockDeployer;
    pub use crate::traits::health::MockHealthProbe;
    pub use crate::traits::registry::MockImageRegistry;
}
