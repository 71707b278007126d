//! Steering a deployment run by another `tapit` process (a detached deployer, or a
//! `create deploy --wait` in another terminal): `promote deploy` and `abort deploy` append a
//! request to a small file named after the deployment, in the `control` directory next to the
//! history file; the process running the deployment polls that file and applies each new
//! line to its [`DeploymentControl`]. One line per request (`abort REASON`, `promote`,
//! `promote-full`), appended with `O_APPEND` so concurrent writers never interleave. The
//! runner deletes the file when the deployment ends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The control file of a deployment, given the history file's path.
pub fn path(history: &Path, id: &DeploymentId) -> PathBuf {
    history
        .parent()
        .unwrap_or(Path::new("."))
        .join("control")
        .join(id.to_string())
}

/// Appends a request for the deployment's runner.
pub fn send(history: &Path, id: &DeploymentId, request: &Request) -> Result<(), CliError> {
    let path = path(history, id);
    let fail = |e: std::io::Error| {
        CliError::other(format!(
            "cannot write the control request {}: {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(fail)?;
    f.write_all(request.line().as_bytes()).map_err(fail)
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

/// Polls the deployment's control file until dropped (abort the task), applying requests.
pub async fn watch(history: PathBuf, id: DeploymentId, control: impl Steer) {
    let path = path(&history, &id);
    let mut applied = 0usize;
    loop {
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            let lines: Vec<&str> = text.lines().collect();
            for line in lines.iter().skip(applied) {
                match Request::parse(line) {
                    Some(r) => control.apply(r),
                    None => tracing::warn!(line, "ignoring an unknown control request"),
                }
            }
            applied = applied.max(lines.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes the control file once the deployment has ended.
pub fn cleanup(history: &Path, id: &DeploymentId) {
    let _ = std::fs::remove_file(path(history, id));
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
        let history = dir.path().join("history.db");
        let id = DeploymentId::new();
        let seen = Recorder::default();
        let task = tokio::spawn(watch(history.clone(), id, seen.clone()));
        send(&history, &id, &Request::Promote).unwrap();
        send(&history, &id, &Request::Abort("from a test".into())).unwrap();
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
        cleanup(&history, &id);
        assert!(!path(&history, &id).exists());
    }
}
