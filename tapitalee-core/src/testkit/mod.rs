//! Test kit (feature `testkit`): the in-memory platform, a minimal strategy, and the
//! conformance suites every platform and store implementation must pass.

mod behavior;
pub mod conformance;
mod platform;
mod sim;
mod strategy;

/// The store conformance suite: what every [`DeploymentStore`](crate::DeploymentStore) must do.
pub use crate::store::conformance as store_conformance;

pub use behavior::Behavior;
pub use platform::{Call, Fault, FleetView, InMemoryPlatform, Op};
pub use strategy::AllAtOnce;
