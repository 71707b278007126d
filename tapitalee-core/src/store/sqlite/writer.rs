//! The writer thread: group commit.
//!
//! One named thread owns the connection. Callers send it jobs and await a oneshot reply. The
//! thread blocks for a job, drains whatever else is queued (up to [`MAX_BATCH`]) and runs the
//! lot in one transaction (`BEGIN IMMEDIATE` if any job writes), each writing job inside its
//! own savepoint: a job that fails rolls back alone and gets its own error while the others
//! go on. Replies go out only after `COMMIT` succeeded, so a call that returned `Ok` is
//! committed; if the transaction fails, every job in it gets that error.
//!
//! Jobs run one after another, in arrival order, so two calls in one batch behave exactly as
//! if they had been made one after the other. Under load a batch holds many jobs and one
//! commit serves them all; alone, a call costs one transaction, as before.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, trace, warn};

use crate::error::{Error, Result};

/// The most jobs one transaction runs. Bounds how long the file's write lock is held at once,
/// and the latency of the first job of a batch.
pub(super) const MAX_BATCH: usize = 256;

/// One call, its outcome kept until the batch's transaction ends.
trait Task: Send {
    /// Runs the call; panics are the writer's to catch.
    fn run(&mut self, conn: &Connection);
    /// Whether the call ran and succeeded (else its savepoint is rolled back).
    fn succeeded(&self) -> bool;
    /// Sends the outcome, or `failed` if the transaction did not commit.
    fn reply(self: Box<Self>, failed: Option<&Failure>);
}

struct Call<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    tx: oneshot::Sender<Result<T>>,
}

impl<T, F> Task for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(f) = self.f.take() {
            self.out = Some(f(conn));
        }
    }

    fn succeeded(&self) -> bool {
        matches!(self.out, Some(Ok(_)))
    }

    fn reply(self: Box<Self>, failed: Option<&Failure>) {
        let out = match (failed, self.out) {
            (Some(why), _) => Err(why.error()),
            (None, Some(out)) => out,
            (None, None) => Err(Error::store(
                "SQLite store: a call panicked; its changes were rolled back",
                "panic in a store call",
            )),
        };
        // The caller may have stopped waiting; the outcome stands either way.
        let _ = self.tx.send(out);
    }
}

/// A job for the writer: a call, and whether it writes.
pub(super) struct Job {
    writes: bool,
    task: Box<dyn Task>,
}

impl Job {
    /// A job running `f`, and the receiver of its outcome.
    pub(super) fn new<T, F>(writes: bool, f: F) -> (Self, oneshot::Receiver<Result<T>>)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let task = Box::new(Call {
            f: Some(f),
            out: None,
            tx,
        });
        (Job { writes, task }, rx)
    }
}

/// Why a whole transaction failed: given to every job in it.
struct Failure {
    what: &'static str,
    cause: String,
}

impl Failure {
    fn new(what: &'static str, e: &rusqlite::Error) -> Self {
        Failure {
            what,
            cause: e.to_string(),
        }
    }

    fn error(&self) -> Error {
        Error::store(
            format!("SQLite store: {} failed", self.what),
            self.cause.clone(),
        )
    }
}

/// The writer thread, as its handles see it. Dropping it closes the channel and waits for
/// the thread to finish the jobs already queued and close the connection.
pub(super) struct Writer {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Committed transactions; held by the thread too, so it is unique once the thread ended.
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the thread, which opens its connection with `open` and owns it from then on.
    /// Returns once the connection is open (or failed to), so the first call finds the thread
    /// running. `name` names the store in errors.
    pub(super) fn spawn<O>(name: &str, open: O) -> Result<Self>
    where
        O: FnOnce() -> Result<Connection> + Send + 'static,
    {
        let (jobs, queue) = mpsc::unbounded_channel();
        let (ready, opened) = std::sync::mpsc::sync_channel(1);
        let commits = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&commits);
        let db = name.to_owned();
        let thread = std::thread::Builder::new()
            .name("tapit-sqlite-writer".into())
            .spawn(move || {
                let conn = match open() {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                serve(&conn, queue, &counter, &db);
            })
            .map_err(|e| {
                Error::store(
                    format!("cannot start the writer thread of the deployment store {name}"),
                    e,
                )
            })?;
        let writer = Writer {
            jobs: Some(jobs),
            thread: Some(thread),
            commits,
        };
        match opened.recv() {
            Ok(opened) => opened.map(|()| writer),
            // The thread panicked while opening (and `writer`'s drop joins it).
            Err(e) => Err(Error::store(
                format!("the writer thread of the deployment store {name} failed to start"),
                e,
            )),
        }
    }

    /// Queues a job.
    pub(super) fn send(&self, job: Job) -> Result<()> {
        self.jobs
            .as_ref()
            .ok_or("closed")
            .and_then(|jobs| jobs.send(job).map_err(|_| "the thread has stopped"))
            .map_err(|e| Error::store("SQLite store: the writer thread is gone", e))
    }

    /// The counter of committed transactions (for tests).
    #[cfg(test)]
    pub(super) fn commits(&self) -> &Arc<AtomicU64> {
        &self.commits
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the SQLite store's writer thread panicked");
        }
        trace!(
            commits = self.commits.load(Ordering::Relaxed),
            "SQLite store closed"
        );
    }
}

/// The thread's loop: until every handle is gone, run what is queued, one batch at a time.
fn serve(
    conn: &Connection,
    mut queue: mpsc::UnboundedReceiver<Job>,
    commits: &AtomicU64,
    db: &str,
) {
    let mut batch = VecDeque::with_capacity(MAX_BATCH);
    // Parks on a futex, without spinning: the thread does not compete with the runtime.
    while let Some(first) = queue.blocking_recv() {
        batch.push_back(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push_back(job),
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            run_batch(conn, &mut batch, commits);
        }
    }
    trace!(db, "SQLite store writer stopping: every handle is gone");
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(drop)
}

/// Runs jobs from the front of `batch` in one transaction, counts the commit, and replies to
/// them. Stops early, leaving the rest queued for another transaction, if a job lost
/// the transaction (SQLite rolls it back by itself on some errors, e.g. a full disk).
fn run_batch(conn: &Connection, batch: &mut VecDeque<Job>, commits: &AtomicU64) {
    let writes = batch.iter().any(|j| j.writes);
    let begin = if writes { "BEGIN IMMEDIATE" } else { "BEGIN" };
    if let Err(e) = exec(conn, begin) {
        let failure = Failure::new("starting a transaction", &e);
        warn!(error = %e, jobs = batch.len(), "SQLite store: cannot start a transaction");
        for job in batch.drain(..) {
            job.task.reply(Some(&failure));
        }
        return;
    }
    let mut done: Vec<Job> = Vec::with_capacity(batch.len());
    while let Some(mut job) = batch.pop_front() {
        let result = run_job(conn, &mut job);
        done.push(job);
        if let Err(e) = result {
            let failure = Failure::new("a transaction", &e);
            warn!(error = %e, jobs = done.len(), "SQLite store: lost a transaction");
            abandon(conn);
            for job in done {
                job.task.reply(Some(&failure));
            }
            return;
        }
    }
    if let Err(e) = exec(conn, "COMMIT") {
        let failure = Failure::new("committing", &e);
        warn!(error = %e, jobs = done.len(), "SQLite store: cannot commit");
        abandon(conn);
        for job in done {
            job.task.reply(Some(&failure));
        }
        return;
    }
    commits.fetch_add(1, Ordering::Relaxed);
    trace!(jobs = done.len(), "SQLite store: committed a batch");
    for job in done {
        job.task.reply(None);
    }
}

/// Runs one job inside the open transaction, a writing one in its own savepoint, rolled back
/// if it fails. An error here means the transaction itself is lost.
fn run_job(conn: &Connection, job: &mut Job) -> rusqlite::Result<()> {
    if job.writes {
        exec(conn, "SAVEPOINT job")?;
    }
    let task = &mut job.task;
    // A panic leaves the task without an outcome: it fails, and its savepoint is undone.
    let _ = catch_unwind(AssertUnwindSafe(|| task.run(conn)));
    if job.writes {
        if !job.task.succeeded() {
            exec(conn, "ROLLBACK TO job")?;
        }
        exec(conn, "RELEASE job")?;
    }
    if conn.is_autocommit() {
        // SQLite rolled the whole transaction back (e.g. I/O error, full disk).
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("the transaction was rolled back".into()),
        ));
    }
    Ok(())
}

/// Rolls back whatever is left of the transaction.
fn abandon(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK")
    {
        error!(error = %e, "SQLite store: cannot roll back a failed transaction");
    }
}
