//! The writer: group commit, run on tokio's blocking pool.
//!
//! Callers queue jobs and await a oneshot reply. When a job arrives and no drain is running,
//! one is started with `spawn_blocking`: it takes whatever is queued (up to [`MAX_BATCH`]),
//! runs the lot in one transaction (`BEGIN IMMEDIATE` if any job writes), each writing job
//! inside its own savepoint: a job that fails rolls back alone and gets its own error while
//! the others go on. It repeats until the queue is empty, then ends. Replies go out only after
//! `COMMIT` succeeded, so a call that returned `Ok` is committed; if the transaction fails,
//! every job in it gets that error.
//!
//! Jobs run one after another, in arrival order, so two calls in one batch behave exactly as
//! if they had been made one after the other. Under load a batch holds many jobs and one
//! commit serves them all; alone, a call costs one transaction.
//!
//! Why the blocking pool rather than a thread of its own: while a blocking task runs, tokio's
//! paused test clock does not auto-advance, so a paused-clock test sees a store write take no
//! simulated time, as it takes none with the in-memory store. With a private thread, the
//! runtime looked idle while a write was in flight and jumped its clock ahead.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::rows::Db;
use tracing::{error, trace, warn};

use crate::error::{Error, Result};

/// The most jobs one transaction runs. Bounds how long the file's write lock is held at once,
/// and the latency of the first job of a batch.
pub(super) const MAX_BATCH: usize = 1024;

/// One call, its outcome kept until the batch's transaction ends.
trait Task: Send {
    /// Runs the call (again, if it ran before: its earlier outcome is replaced); panics are the
    /// writer's to catch.
    fn run(&mut self, db: &Db);
    /// Whether the call ran and succeeded (else its savepoint is rolled back).
    fn succeeded(&self) -> bool;
    /// Sends the outcome, or `failed` if the transaction did not commit.
    fn reply(self: Box<Self>, failed: Option<&Failure>);
}

struct Call<T, F> {
    f: F,
    out: Option<Result<T>>,
    tx: oneshot::Sender<Result<T>>,
}

impl<T, F> Task for Call<T, F>
where
    T: Send,
    F: Fn(&Db) -> Result<T> + Send,
{
    fn run(&mut self, db: &Db) {
        self.out = None;
        self.out = Some((self.f)(db));
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
        F: Fn(&Db) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let task = Box::new(Call { f, out: None, tx });
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

/// The connection and the queue of jobs waiting for it.
pub(super) struct Writer {
    shared: Arc<Shared>,
}

struct Shared {
    conn: Mutex<Db>,
    queue: Mutex<Queue>,
    commits: AtomicU64,
    db: String,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Whether a drain is running (it will see jobs queued before it clears this).
    draining: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Jobs run under catch_unwind, so a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    /// Opens the connection (on the calling thread): once this returns, the store is ready.
    pub(super) fn open<O>(name: &str, open: O) -> Result<Self>
    where
        O: FnOnce() -> Result<Connection>,
    {
        Ok(Writer {
            shared: Arc::new(Shared {
                conn: Mutex::new(Db::new(open()?)),
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    draining: false,
                }),
                commits: AtomicU64::new(0),
                db: name.to_owned(),
            }),
        })
    }

    /// Queues a job, starting a drain if none runs.
    pub(super) fn send(&self, job: Job) -> Result<()> {
        let start = {
            let mut queue = lock(&self.shared.queue);
            queue.jobs.push_back(job);
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            let shared = Arc::clone(&self.shared);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drain(&shared))),
                // Outside a runtime (a synchronous caller): run here.
                Err(_) => drain(&shared),
            }
        }
        Ok(())
    }

    /// Transactions committed so far.
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// A weak handle on the connection's owner, to see it released.
    #[cfg(test)]
    pub(super) fn owner(&self) -> std::sync::Weak<impl Sized + use<>> {
        Arc::downgrade(&self.shared)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        trace!(
            db = self.db,
            commits = self.commits.load(Ordering::Relaxed),
            "SQLite store closed"
        );
    }
}

/// Runs batches until the queue is empty.
fn drain(shared: &Shared) {
    let db = lock(&shared.conn);
    loop {
        let mut batch: VecDeque<Job> = {
            let mut queue = lock(&shared.queue);
            if queue.jobs.is_empty() {
                queue.draining = false;
                return;
            }
            let n = queue.jobs.len().min(MAX_BATCH);
            queue.jobs.drain(..n).collect()
        };
        while !batch.is_empty() {
            run_batch(&db, &mut batch, &shared.commits);
        }
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(drop)
}

/// Runs jobs from the front of `batch` in one transaction, counts the commit, and replies to
/// them. Stops early, leaving the rest queued for another transaction, if a job lost
/// the transaction (SQLite rolls it back by itself on some errors, e.g. a full disk).
fn run_batch(conn: &Db, batch: &mut VecDeque<Job>, commits: &AtomicU64) {
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
    // The fast path: every job without a savepoint of its own, which nearly always all
    // succeed (savepoints were a third of the writer's time). If one fails, the transaction
    // is rolled back and the batch runs again, each writing job in its own savepoint.
    let done = if run_plain(conn, batch) {
        batch.drain(..).collect()
    } else {
        abandon(conn);
        match exec(conn, begin) {
            Ok(()) => match run_isolated(conn, batch) {
                Ok(done) => done,
                Err((done, e)) => {
                    let failure = Failure::new("a transaction", &e);
                    warn!(error = %e, jobs = done.len(), "SQLite store: lost a transaction");
                    abandon(conn);
                    for job in done {
                        job.task.reply(Some(&failure));
                    }
                    return;
                }
            },
            Err(e) => {
                let failure = Failure::new("starting a transaction", &e);
                for job in batch.drain(..) {
                    job.task.reply(Some(&failure));
                }
                return;
            }
        }
    };
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

/// Runs every job in the open transaction without savepoints; false as soon as one fails (or
/// SQLite rolled the transaction back), leaving the batch to run again.
fn run_plain(conn: &Db, batch: &mut VecDeque<Job>) -> bool {
    for job in batch.iter_mut() {
        let task = &mut job.task;
        let _ = catch_unwind(AssertUnwindSafe(|| task.run(conn)));
        if !job.task.succeeded() || conn.is_autocommit() {
            return false;
        }
    }
    true
}

/// Runs the jobs in the open transaction, each writing one in its own savepoint. Returns the
/// jobs run, or those and the error that lost the transaction (the others stay in `batch`).
fn run_isolated(
    conn: &Db,
    batch: &mut VecDeque<Job>,
) -> std::result::Result<Vec<Job>, (Vec<Job>, rusqlite::Error)> {
    let mut done: Vec<Job> = Vec::with_capacity(batch.len());
    while let Some(mut job) = batch.pop_front() {
        let result = run_job(conn, &mut job);
        done.push(job);
        if let Err(e) = result {
            // The jobs not run yet stay queued for the next transaction.
            return Err((done, e));
        }
    }
    Ok(done)
}

/// Runs one job inside the open transaction, a writing one in its own savepoint, rolled back
/// if it fails. An error here means the transaction itself is lost.
fn run_job(conn: &Db, job: &mut Job) -> rusqlite::Result<()> {
    if job.writes {
        exec(conn, "SAVEPOINT job")?;
    }
    let task = &mut job.task;
    // A panic leaves the task without an outcome: it fails, and its savepoint is undone.
    let _ = catch_unwind(AssertUnwindSafe(|| task.run(conn)));
    if job.writes {
        if !job.task.succeeded() {
            conn.forget_keys();
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
fn abandon(conn: &Db) {
    // Row numbers learnt in the transaction may be undone with it.
    conn.forget_keys();
    if !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK")
    {
        error!(error = %e, "SQLite store: cannot roll back a failed transaction");
    }
}
