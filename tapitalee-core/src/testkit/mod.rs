//! Test kit (feature `testkit`): the in-memory platform, a minimal strategy, and the
//! conformance suite every platform implementation must pass.

mod behavior;
pub mod conformance;
mod platform;
mod sim;
mod strategy;

pub use behavior::Behavior;
pub use platform::{Call, Fault, FleetView, InMemoryPlatform, Op};
pub use strategy::AllAtOnce;
