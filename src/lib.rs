//! Tapitalee: zero-downtime, per-process deployments of multi-process apps.
//!
//! This facade re-exports [`tapitalee_core`] (domain, traits, engine) and
//! [`tapitalee_strategies`] (rolling, blue-green, canary).

pub use tapitalee_core::*;
pub use tapitalee_strategies as strategies;
