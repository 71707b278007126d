//! A mailbox per deployment: requests (promote, abort) for the process running a deployment,
//! left by any machine that shares the table.

use std::time::SystemTime;

use tapitalee_core::{DeploymentId, Result};

use super::DynamoStore;
use super::items;

/// A message left for the process running a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMessage {
    /// Its key: unique, and messages sort by it (by their senders' clocks, then arrival in
    /// one sender).
    pub key: String,
    /// When it was sent, by the sender's clock.
    pub at: SystemTime,
    /// The message (at most 32 KiB; longer ones are cut).
    pub message: String,
}

impl DynamoStore {
    /// Leaves `message` for the process running deployment `id` (which reads them with
    /// [`control_messages`](Self::control_messages)), from any machine sharing the table.
    ///
    /// One `TransactWriteItems`: a check that the deployment exists ([`Error::NotFound`]
    /// otherwise, and nothing is written) and the message item, `pk = CTL#<id>`,
    /// `sk = <ulid>`. The key is made before the first attempt, so a retry never leaves the
    /// message twice.
    ///
    /// [`Error::NotFound`]: tapitalee_core::Error::NotFound
    pub async fn send_control(&self, id: &DeploymentId, message: &str) -> Result<()> {
        let key = items::new_token();
        let item = items::control_item(id, &key, message);
        let writes = vec![self.head_exists(id)?, self.put(item, None)?];
        self.write_about(id, writes, key).await
    }

    /// Every message left for deployment `id`, in key order: one strongly consistent `Query`
    /// of its mailbox (a small partition of its own, so a deployer polling it reads only
    /// the messages). An unknown deployment has none.
    pub async fn control_messages(&self, id: &DeploymentId) -> Result<Vec<ControlMessage>> {
        let found = self.query(Some(*id), items::control_pk(id), None).await?;
        found.iter().map(items::decode_control).collect()
    }
}
