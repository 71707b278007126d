//! The store conformance suite (placeholder until the SQLite store lands).

use super::DeploymentStore;

/// Runs every store check.
pub async fn run_all(_store: &dyn DeploymentStore) {}
