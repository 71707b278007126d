//! [`DeploymentStore`]: the deployment history and the per-process locks.
//!
//! Two implementations ship: [`MemoryStore`] (one process, tests, benchmarks) and
//! `SqliteStore` (feature `sqlite`, the embedded default: one file, shared by every `tapit` on
//! the machine, survives restarts). Both pass the same conformance suite
//! (`testkit::store_conformance`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{AppName, DeploymentId};
use crate::error::Result;
use crate::fleet::Target;
use crate::record::{DeploymentRecord, DeploymentStatus, ProcessRecord, StepRecord};

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The deployment history and the per-process locks.
///
/// Locks are leases: a holder that stops renewing loses its lock when the lease ends, so a
/// crashed deployer never blocks a process forever.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait DeploymentStore: Send + Sync + fmt::Debug + 'static {
    /// Records a new deployment (its processes as given, their steps ignored).
    async fn create(&self, record: &DeploymentRecord) -> Result<()>;

    /// Replaces one process's record (status, revisions, state, timings; its steps are kept).
    async fn update_process(&self, id: &DeploymentId, process: &ProcessRecord) -> Result<()>;

    /// Appends a step to the audit trail.
    async fn append_step(&self, id: &DeploymentId, step: &StepRecord) -> Result<()>;

    /// Replaces a process's record and appends a step about the change. A rollout calls this
    /// after every platform change; stores that can should do it in one write. The default
    /// calls [`update_process`](Self::update_process) then [`append_step`](Self::append_step).
    async fn record_change(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
        step: &StepRecord,
    ) -> Result<()> {
        self.update_process(id, process).await?;
        self.append_step(id, step).await
    }

    /// Replaces a process's record and appends several steps about it, in one write where the
    /// store can. A rollout records the steps that change nothing on the platform
    /// (announcements, pauses) with its next state change this way: fewer writes per process.
    /// The default calls [`update_process`](Self::update_process), then
    /// [`append_steps`](Self::append_steps).
    async fn record_changes(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
        steps: &[StepRecord],
    ) -> Result<()> {
        self.update_process(id, process).await?;
        self.append_steps(id, steps).await
    }

    /// Appends several steps, in one write where the store can (a rollout about to wait
    /// records the steps it holds, so the history is never behind while time passes). The
    /// default calls [`append_step`](Self::append_step) for each.
    async fn append_steps(&self, id: &DeploymentId, steps: &[StepRecord]) -> Result<()> {
        for step in steps {
            self.append_step(id, step).await?;
        }
        Ok(())
    }

    /// Sets a deployment's overall status (and its end time when final).
    async fn set_status(&self, id: &DeploymentId, status: DeploymentStatus) -> Result<()>;

    /// Ends a deployment: sets its final status and releases the locks it holds on `targets`,
    /// in one write where the store can. A caller that sees the final status can deploy the
    /// same processes at once, and no reader ever sees a running deployment without its locks
    /// (which `Engine::recover` would take for a crashed one).
    ///
    /// The default releases the locks, then sets the status: stores that can should override
    /// it with one atomic write.
    async fn finish(
        &self,
        id: &DeploymentId,
        status: DeploymentStatus,
        targets: &[Target],
    ) -> Result<()> {
        for target in targets {
            self.unlock(target, id).await?;
        }
        self.set_status(id, status).await
    }

    /// One deployment with every process and step, or `None`.
    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>>;

    /// An app's deployments, newest first, at most `limit`, with processes but without steps.
    async fn list(&self, app: &AppName, limit: usize) -> Result<Vec<DeploymentRecord>>;

    /// Takes or renews the lock on a process for `holder` for `lease`. Returns `None` when
    /// `holder` now holds it, or `Some(other)` when another live deployment does.
    async fn try_lock(
        &self,
        target: &Target,
        holder: &DeploymentId,
        lease: Duration,
    ) -> Result<Option<DeploymentId>>;

    /// Releases a lock if `holder` holds it.
    async fn unlock(&self, target: &Target, holder: &DeploymentId) -> Result<()>;

    /// The live holder of a process's lock, if any.
    async fn lock_holder(&self, target: &Target) -> Result<Option<DeploymentId>>;
}

/// A shared store, as the engine holds it.
pub type DynDeploymentStore = Arc<dyn DeploymentStore>;

/// Conveniences on every store.
#[async_trait]
pub trait DeploymentStoreExt: DeploymentStore {
    /// The app's most recent deployment, with every step.
    async fn latest(&self, app: &AppName) -> Result<Option<DeploymentRecord>> {
        match self.list(app, 1).await?.into_iter().next() {
            Some(r) => self.get(&r.id).await,
            None => Ok(None),
        }
    }
}

impl<S: DeploymentStore + ?Sized> DeploymentStoreExt for S {}
