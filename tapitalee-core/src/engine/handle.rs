//! [`DeploymentHandle`]: what a caller holds while a deployment runs.

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::BroadcastStream;

use crate::control::DeploymentControl;
use crate::domain::DeploymentId;
use crate::error::{Error, Result};
use crate::event::DeployEvent;
use crate::record::DeploymentRecord;

/// A running deployment: its id, its events, its controls and its result.
///
/// Dropping the handle does not stop the deployment; it runs to its end in the background
/// (but a manual pause with no duration then aborts, since nobody is left to promote it).
#[derive(Debug)]
pub struct DeploymentHandle {
    pub(crate) id: DeploymentId,
    pub(crate) control: DeploymentControl,
    pub(crate) first_events: Option<broadcast::Receiver<DeployEvent>>,
    pub(crate) events: broadcast::Sender<DeployEvent>,
    pub(crate) join: JoinHandle<Result<DeploymentRecord>>,
}

impl DeploymentHandle {
    /// The deployment's id.
    pub fn id(&self) -> DeploymentId {
        self.id
    }

    /// The deployment's controls, to steer it from another task while waiting on it.
    pub fn control(&self) -> DeploymentControl {
        self.control.clone()
    }

    /// The deployment's events. The first call sees every event since the deployment started;
    /// later calls see events from then on. A consumer that falls more than 4,096 events
    /// behind skips the oldest.
    pub fn events(&mut self) -> impl Stream<Item = DeployEvent> + Send + Unpin + 'static + use<> {
        let rx = self
            .first_events
            .take()
            .unwrap_or_else(|| self.events.subscribe());
        BroadcastStream::new(rx).filter_map(|e| futures::future::ready(e.ok()))
    }

    /// Stops every process at its next step and rolls it back.
    pub fn abort(&self, reason: impl Into<String>) {
        self.control.abort(reason);
    }

    /// Holds every process at its next step until [`promote`](Self::promote).
    pub fn pause(&self) {
        self.control.pause();
    }

    /// Releases a pause or a manual gate.
    pub fn promote(&self) {
        self.control.promote();
    }

    /// Releases every pause and skips the remaining steps (`promote --full`).
    pub fn promote_full(&self) {
        self.control.promote_full();
    }

    /// Waits for the deployment to end and returns its record (without steps; the store has
    /// those). An `Err` means the engine itself failed, not that a process did: per-process
    /// outcomes are in the record.
    pub async fn wait(self) -> Result<DeploymentRecord> {
        let DeploymentHandle { join, control, .. } = self;
        let result = join.await;
        drop(control);
        result.map_err(|e| Error::Platform {
            operation: "deployment".into(),
            message: "the deployment task panicked or was cancelled".into(),
            source: Some(Box::new(e)),
        })?
    }
}
