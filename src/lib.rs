#![doc = include_str!("../README.md")]
//!
//! # This crate
//! The facade: re-exports [`tapitalee_core`] (domain, traits, engine, stores) at its root and
//! [`tapitalee_strategies`] as [`strategies`]; with the feature `aws`, `tapitalee_aws` as `aws`; with the feature
//! `docker`, `tapitalee_docker` as `docker`.

pub use tapitalee_core::*;
pub use tapitalee_strategies as strategies;

#[cfg(feature = "aws")]
pub use tapitalee_aws as aws;

#[cfg(feature = "docker")]
pub use tapitalee_docker as docker;

/// An [`EngineBuilder`] whose default strategy is [`Rolling`](strategies::Rolling) with its
/// defaults (25% surge, 25% unavailable), the product's default. Set the platform and store,
/// then `build()`.
pub fn engine() -> EngineBuilder {
    Engine::builder().default_strategy(std::sync::Arc::new(strategies::Rolling::new()))
}
