//! The embedded store: one SQLite file, shared by every `tapit` on the machine.
//!
//! The schema is normalized so that each write touches a few rows (a step is one `INSERT`, a
//! process update one `UPDATE`), never a whole deployment. The file is opened in WAL mode with
//! a busy timeout, so several OS processes can read and write it at once; locks are leases
//! whose expiry is wall-clock unix milliseconds, which every process on the machine agrees on.
//!
//! Each store runs its calls one at a time on tokio's blocking pool with group commit (see
//! [`writer`]): calls made while a transaction runs share the next one, so a thousand
//! concurrent writers cost a few commits, not a thousand, and a call still returns only once
//! its change is committed.
//!
//! Times are kept to the millisecond.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;

use super::DeploymentStore;
use crate::domain::{AppName, DeploymentId};
use crate::error::{Error, Result};
use crate::fleet::Target;
use crate::record::{DeploymentRecord, DeploymentStatus, ProcessRecord, StepRecord};

mod rows;
mod schema;
mod writer;

use rows::{ProcessRow, now_ms, target_params};
use writer::{Job, Writer};

/// Keeps history and locks in one SQLite file: the embedded default.
///
/// Every `tapit` on the machine can open the same file; each sees the others' deployments and
/// locks. Calls run on tokio's blocking pool, one transaction at a time, and calls made at
/// the same time commit together; clones share the connection, closed with the last clone.
#[derive(Clone)]
pub struct SqliteStore {
    path: Option<Arc<PathBuf>>,
    writer: Arc<Writer>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: &dyn fmt::Debug = match &self.path {
            Some(p) => p,
            None => &":memory:",
        };
        f.debug_struct("SqliteStore").field("path", path).finish()
    }
}

impl SqliteStore {
    /// Opens (or creates, with its parent directories) the store at `path`.
    ///
    /// Blocks briefly while the file is opened and its schema checked. Fails if the file was
    /// written by a newer Tapitalee (a newer schema version).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::store(
                    format!("cannot create the directory {} of the store", dir.display()),
                    e,
                )
            })?;
        }
        let name = path.display().to_string();
        let file = path.clone();
        let writer = Writer::open(&path.display().to_string(), move || {
            let conn = Connection::open(&file)
                .map_err(|e| Error::store(format!("cannot open the deployment store {name}"), e))?;
            schema::init(conn, &name, true)
        })?;
        Ok(SqliteStore {
            path: Some(Arc::new(path)),
            writer: Arc::new(writer),
        })
    }

    /// A private store in memory, gone when dropped: for tests.
    pub fn open_in_memory() -> Result<Self> {
        let writer = Writer::open(":memory:", || {
            let conn = Connection::open_in_memory()
                .map_err(|e| Error::store("cannot open an in-memory SQLite store", e))?;
            schema::init(conn, ":memory:", false)
        })?;
        Ok(SqliteStore {
            path: None,
            writer: Arc::new(writer),
        })
    }

    /// The file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref().map(PathBuf::as_path)
    }

    /// A process row (if given) and steps, in one savepoint: together or not at all. The
    /// process's own steps go into its row, encoded here rather than on the writer thread.
    async fn record(
        &self,
        id: &DeploymentId,
        process: Option<&ProcessRecord>,
        steps: &[StepRecord],
    ) -> Result<()> {
        let id = id_text(id);
        let (row, others) = match process {
            Some(p) => {
                let (lines, others) = rows::own_steps(p.process.as_str(), steps)?;
                (Some((ProcessRow::encode(p)?, lines)), others)
            }
            None => (None, steps.to_vec()),
        };
        self.call(true, move |db| rows::record(db, &id, row.as_ref(), &others))
            .await
    }

    /// Runs `f` on the blocking pool, inside a transaction shared with the calls queued at the
    /// same time; returns its outcome once that transaction committed. `writes` says whether
    /// `f` changes anything (then it runs in a savepoint, undone if it fails).
    async fn call<T, F>(&self, writes: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&rows::Db) -> Result<T> + Send + 'static,
    {
        let (job, reply) = Job::new(writes, f);
        self.writer.send(job)?;
        reply
            .await
            .map_err(|e| Error::store("SQLite store: the writer stopped during a call", e))?
    }
}

/// A deployment id as text, formatted once per deployment and thread: a wide deployment's
/// processes write under the same id thousands of times.
fn id_text(id: &DeploymentId) -> Arc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(DeploymentId, Arc<str>)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((known, text)) if known == id => Arc::clone(text),
        _ => {
            let text: Arc<str> = Arc::from(id.to_string());
            *last = Some((*id, Arc::clone(&text)));
            text
        }
    })
}

#[async_trait]
impl DeploymentStore for SqliteStore {
    async fn create(&self, record: &DeploymentRecord) -> Result<()> {
        let processes = record
            .processes
            .iter()
            .map(ProcessRow::encode)
            .collect::<Result<Vec<_>>>()?;
        let r = record.clone();
        self.call(true, move |conn| rows::create(conn, &r, &processes))
            .await
    }

    async fn update_process(&self, id: &DeploymentId, process: &ProcessRecord) -> Result<()> {
        let row = ProcessRow::encode(process)?;
        let id = id_text(id);
        self.call(true, move |db| {
            rows::write_process(db, &id, &row, "").map(drop)
        })
        .await
    }

    async fn append_step(&self, id: &DeploymentId, step: &StepRecord) -> Result<()> {
        self.record(id, None, std::slice::from_ref(step)).await
    }

    async fn record_change(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
        step: &StepRecord,
    ) -> Result<()> {
        self.record(id, Some(process), std::slice::from_ref(step))
            .await
    }

    async fn record_changes(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
        steps: &[StepRecord],
    ) -> Result<()> {
        self.record(id, Some(process), steps).await
    }

    async fn append_steps(&self, id: &DeploymentId, steps: &[StepRecord]) -> Result<()> {
        self.record(id, None, steps).await
    }

    async fn set_status(&self, id: &DeploymentId, status: DeploymentStatus) -> Result<()> {
        let id = id.to_string();
        let finished = status.is_final().then(now_ms);
        self.call(true, move |conn| {
            rows::set_status(conn, &id, status, finished)
        })
        .await
    }

    async fn finish(
        &self,
        id: &DeploymentId,
        status: DeploymentStatus,
        targets: &[Target],
    ) -> Result<()> {
        let id = id.to_string();
        let finished = status.is_final().then(now_ms);
        let targets: Vec<(String, String)> = targets.iter().map(target_params).collect();
        // One savepoint: the status and the released locks land together.
        self.call(true, move |conn| {
            for t in &targets {
                rows::unlock(conn, t, &id)?;
            }
            rows::set_status(conn, &id, status, finished)
        })
        .await
    }

    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>> {
        let id = id.to_string();
        // One transaction, so the deployment, processes and steps agree.
        self.call(false, move |conn| rows::get(conn, &id)).await
    }

    async fn list(&self, app: &AppName, limit: usize) -> Result<Vec<DeploymentRecord>> {
        let app = app.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(false, move |conn| rows::list(conn, &app, limit))
            .await
    }

    async fn try_lock(
        &self,
        target: &Target,
        holder: &DeploymentId,
        lease: Duration,
    ) -> Result<Option<DeploymentId>> {
        let target = target_params(target);
        let holder = holder.to_string();
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        // Within `BEGIN IMMEDIATE`: no other process reads the lock between our read and write.
        self.call(true, move |conn| {
            rows::try_lock(conn, &target, &holder, lease_ms)
        })
        .await
    }

    async fn unlock(&self, target: &Target, holder: &DeploymentId) -> Result<()> {
        let target = target_params(target);
        let holder = holder.to_string();
        self.call(true, move |conn| rows::unlock(conn, &target, &holder))
            .await
    }

    async fn lock_holder(&self, target: &Target) -> Result<Option<DeploymentId>> {
        let target = target_params(target);
        self.call(false, move |conn| rows::lock_holder(conn, &target))
            .await
    }
}

#[cfg(test)]
mod tests;
