//! Steering a deployment run by another `tapit` process (a detached deployer, a
//! `create deploy --wait` in another terminal, or, with a DynamoDB history, a `tapit` on
//! another machine): `promote deploy` and `abort deploy` send a request through the app's
//! [`Channel`]; the process running the deployment polls it and applies each new request to
//! its [`DeploymentControl`]. One line per request: `abort REASON`, `promote`,
//! `promote-full`.
//!
//! - With a SQLite history (one machine), the channel is a small file per deployment in the
//!   `control` directory next to the history file, appended with `O_APPEND` so concurrent
//!   writers never interleave; the runner deletes it when the deployment ends.
//! - With a DynamoDB history, the channel is the deployment's mailbox in the same table
//!   ([`DynamoStore::send_control`]): whoever can see the deployment in the history can
//!   steer it, from any machine, without access to the runner's disk. The runner polls it
//!   once a second (one `Query` of a partition holding only the requests) and applies each
//!   message once, by its key; the messages stay in the table as a record of who asked.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tapitalee::aws::DynamoStore;
use tapitalee::{DeploymentControl, DeploymentId};

use crate::exit::CliError;

/// A request to a running deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Abort and roll back.
    Abort(String),
    /// Release one pause.
    Promote,
    /// Release every pause, skip the remaining steps.
    PromoteFull,
}

impl Request {
    fn line(&self) -> String {
        match self {
            Request::Abort(reason) => format!("abort {}\n", reason.replace('\n', " ")),
            Request::Promote => "promote\n".to_owned(),
            Request::PromoteFull => "promote-full\n".to_owned(),
        }
    }

    fn parse(line: &str) -> Option<Request> {
        match line {
            "promote" => Some(Request::Promote),
            "promote-full" => Some(Request::PromoteFull),
            _ => line
                .strip_prefix("abort ")
                .map(|r| Request::Abort(r.to_owned())),
        }
    }
}

/// How requests reach the `tapit` running a deployment.
#[derive(Debug, Clone)]
pub enum Channel {
    /// Files in this directory (one machine: the SQLite history's).
    Files(PathBuf),
    /// The deployment's mailbox in the DynamoDB history table (any machine).
    Table(DynamoStore),
}

/// How often the runner reads a DynamoDB mailbox.
const TABLE_POLL: Duration = Duration::from_secs(1);
/// How often the runner reads a control file.
const FILE_POLL: Duration = Duration::from_millis(200);

impl Channel {
    /// The channel of a SQLite history kept in `dir`: its `control` subdirectory.
    pub fn files(dir: &Path) -> Channel {
        Channel::Files(dir.join("control"))
    }

    /// Sends a request to the deployment's runner.
    pub async fn send(&self, id: &DeploymentId, request: &Request) -> Result<(), CliError> {
        match self {
            Channel::Files(dir) => send_file(dir, id, request),
            Channel::Table(store) => Ok(store.send_control(id, request.line().trim_end()).await?),
        }
    }

    /// Polls for requests until dropped (abort the task), applying each once.
    pub async fn watch(self, id: DeploymentId, control: impl Steer) {
        match self {
            Channel::Files(dir) => watch_file(dir, id, control).await,
            Channel::Table(store) => watch_table(store, id, control).await,
        }
    }

    /// Removes what the deployment's requests left on this machine, once it has ended.
    pub fn cleanup(&self, id: &DeploymentId) {
        if let Channel::Files(dir) = self {
            let _ = std::fs::remove_file(dir.join(id.to_string()));
        }
    }
}

fn send_file(dir: &Path, id: &DeploymentId, request: &Request) -> Result<(), CliError> {
    let path = dir.join(id.to_string());
    let fail = |e: std::io::Error| {
        CliError::other(format!(
            "cannot write the control request {}: {e}",
            path.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(fail)?;
    f.write_all(request.line().as_bytes()).map_err(fail)
}

fn apply(control: &impl Steer, line: &str) {
    match Request::parse(line) {
        Some(r) => control.apply(r),
        None => tracing::warn!(line, "ignoring an unknown control request"),
    }
}

async fn watch_file(dir: PathBuf, id: DeploymentId, control: impl Steer) {
    let path = dir.join(id.to_string());
    let mut applied = 0usize;
    loop {
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            let lines: Vec<&str> = text.lines().collect();
            for line in lines.iter().skip(applied) {
                apply(&control, line);
            }
            applied = applied.max(lines.len());
        }
        tokio::time::sleep(FILE_POLL).await;
    }
}

async fn watch_table(store: DynamoStore, id: DeploymentId, control: impl Steer) {
    // By key, not by count: a request from a machine whose clock runs behind may sort before
    // one already applied.
    let mut applied: HashSet<String> = HashSet::new();
    loop {
        match store.control_messages(&id).await {
            Ok(messages) => {
                for m in messages {
                    if applied.insert(m.key) {
                        apply(&control, &m.message);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the deployment's control requests"),
        }
        tokio::time::sleep(TABLE_POLL).await;
    }
}

/// What a control request acts on (a [`DeploymentControl`]; a recorder in tests).
pub trait Steer: Send + 'static {
    /// Applies one request.
    fn apply(&self, request: Request);
}

impl Steer for DeploymentControl {
    fn apply(&self, request: Request) {
        match request {
            Request::Abort(reason) => self.abort(reason),
            Request::Promote => self.promote(),
            Request::PromoteFull => self.promote_full(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Abort("by alice".into()),
            Request::Promote,
            Request::PromoteFull,
        ] {
            assert_eq!(Request::parse(r.line().trim_end()), Some(r));
        }
        assert_eq!(Request::parse("reboot"), None);
    }

    #[derive(Clone, Default)]
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Request>>>);

    impl Steer for Recorder {
        fn apply(&self, request: Request) {
            self.0.lock().unwrap().push(request);
        }
    }

    #[tokio::test]
    async fn requests_reach_the_runner_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let channel = Channel::files(dir.path());
        let id = DeploymentId::new();
        let seen = Recorder::default();
        let task = tokio::spawn(channel.clone().watch(id, seen.clone()));
        channel.send(&id, &Request::Promote).await.unwrap();
        channel
            .send(&id, &Request::Abort("from a test".into()))
            .await
            .unwrap();
        for _ in 0..50 {
            if seen.0.lock().unwrap().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        task.abort();
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![Request::Promote, Request::Abort("from a test".into())]
        );
        let file = dir.path().join("control").join(id.to_string());
        assert!(file.exists());
        channel.cleanup(&id);
        assert!(!file.exists());
    }
}
