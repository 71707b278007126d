#![doc = include_str!("../README.md")]
//!
//! # This crate
//! The facade: re-exports [`tapitalee_core`] (domain, traits, engine, stores) at its root and
//! [`tapitalee_strategies`] as [`strategies`]; with the feature `aws`, `tapitalee_aws` as `aws`.

pub use tapitalee_core::*;
pub use tapitalee_strategies as strategies;

#[cfg(feature = "aws")]
pub use tapitalee_aws as aws;
