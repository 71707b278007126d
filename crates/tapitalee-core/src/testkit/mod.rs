//! Test kit (feature `testkit`): the in-memory platform, a minimal strategy, and the
//! conformance suite every platform implementation must pass.

pub mod conformance;
mod platform;
mod strategy;

pub use platform::{Behavior, Call, Fault, FleetView, InMemoryPlatform, Op};
pub use strategy::AllAtOnce;
