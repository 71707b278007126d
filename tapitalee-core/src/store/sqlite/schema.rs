//! The schema, and the configuration of a fresh connection.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// The schema version this build writes and understands (`PRAGMA user_version`).
///
/// - 1: the first.
/// - 2: no foreign keys (the store checks that a deployment exists before writing under it,
///   and never deletes one) and step numbers without `AUTOINCREMENT` (still increasing: a step
///   is never deleted). Each made every step's `INSERT` write or look up one more b-tree.
/// - 3: deployments and processes numbered by an `INTEGER PRIMARY KEY` (`n`), found by
///   integer (the store keeps the numbers it has seen; the text keys stay unique); a process's
///   steps appended to its own row (`steps`, one JSON line each), so a state change and its
///   steps are one `UPDATE`; the `steps` table keeps the deployment's own steps (and those of
///   processes written before version 3), indexed by deployment number.
pub(super) const SCHEMA_VERSION: i64 = 3;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL pages between automatic checkpoints (SQLite's default is 1,000: 4 MiB).
const WAL_CHECKPOINT_PAGES: i64 = 16_384;

/// The page cache's limit, in KiB (SQLite's `cache_size` takes a negative number for KiB).
/// Pages are cached as they are used: a small history never takes this much.
const CACHE_KIB: i64 = -32 * 1024;

/// Prepared statements kept per connection (more than the store has).
const STATEMENT_CACHE: usize = 64;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deployments (
    n               INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    app             TEXT NOT NULL,
    initiator       TEXT NOT NULL,
    image_repo      TEXT NOT NULL,
    image_tag       TEXT NOT NULL,
    image_digest    TEXT,
    only_process    TEXT,
    policy          TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    resumes         TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS deployments_by_app ON deployments (app, id DESC);
CREATE INDEX IF NOT EXISTS deployments_by_start ON deployments (app, created_at_ms DESC, id DESC);

CREATE TABLE IF NOT EXISTS processes (
    n               INTEGER PRIMARY KEY,
    deployment_id   TEXT NOT NULL,
    process         TEXT NOT NULL,
    ordinal         INTEGER NOT NULL,
    strategy        TEXT NOT NULL,
    status          TEXT NOT NULL,
    from_rev        TEXT,
    to_rev          TEXT,
    started_at_ms   INTEGER,
    finished_at_ms  INTEGER,
    state           TEXT NOT NULL,
    steps           TEXT NOT NULL DEFAULT '',
    UNIQUE (deployment_id, process),
    UNIQUE (deployment_id, ordinal)
) STRICT;

CREATE TABLE IF NOT EXISTS steps (
    seq             INTEGER PRIMARY KEY,
    deployment      INTEGER NOT NULL,
    process         TEXT,
    attached        INTEGER NOT NULL,
    at_ms           INTEGER NOT NULL,
    message         TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS steps_by_deployment ON steps (deployment);

CREATE TABLE IF NOT EXISTS locks (
    app             TEXT NOT NULL,
    process         TEXT NOT NULL,
    holder          TEXT NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (app, process)
) STRICT;
";

/// Brings a version 1 or 2 store to the current version, before [`SCHEMA`] runs: the
/// `deployments`, `processes` and `steps` tables (and their named indexes) step aside,
/// `SCHEMA` creates them as they are now, and [`MIGRATE_COPY`] moves every row over, step
/// numbers included (versions 1 and 2 have the same columns). The locks stay as they are.
/// All inside the caller's transaction.
const MIGRATE_SET_ASIDE: &str = "
ALTER TABLE deployments RENAME TO deployments_old;
ALTER TABLE processes RENAME TO processes_old;
ALTER TABLE steps RENAME TO steps_old;
DROP INDEX IF EXISTS deployments_by_app;
DROP INDEX IF EXISTS deployments_by_start;
DROP INDEX IF EXISTS steps_by_deployment;
";

const MIGRATE_COPY: &str = "
INSERT INTO deployments (id, app, initiator, image_repo, image_tag, image_digest,
    only_process, policy, status, created_at_ms, finished_at_ms, resumes)
    SELECT id, app, initiator, image_repo, image_tag, image_digest,
    only_process, policy, status, created_at_ms, finished_at_ms, resumes
    FROM deployments_old ORDER BY created_at_ms, id;
INSERT INTO processes (deployment_id, process, ordinal, strategy, status, from_rev, to_rev,
    started_at_ms, finished_at_ms, state)
    SELECT deployment_id, process, ordinal, strategy, status, from_rev, to_rev,
    started_at_ms, finished_at_ms, state FROM processes_old ORDER BY deployment_id, ordinal;
INSERT INTO steps (seq, deployment, process, attached, at_ms, message)
    SELECT s.seq, d.n, s.process, s.attached, s.at_ms, s.message
    FROM steps_old s JOIN deployments d ON d.id = s.deployment_id;
DROP TABLE steps_old;
DROP TABLE processes_old;
DROP TABLE deployments_old;
";

/// Configures a fresh connection and brings its schema up to date.
pub(super) fn init(mut conn: Connection, name: &str, wal: bool) -> Result<Connection> {
    let fail = |what: &str| {
        let msg = format!("cannot {what} the deployment store {name}");
        move |e: rusqlite::Error| Error::store(msg, e)
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail("configure"))?;
    // Every statement stays prepared: the writer runs the same few over and over.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if wal {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(fail("enable WAL on"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail("configure"))?;
        // A checkpoint copies the latest version of every page in the WAL back into the
        // file. A wide deployment rewrites the same process pages every round, so checkpoints
        // far apart copy each page once instead of once per round.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(fail("configure"))?;
    }
    // SQLite's default page cache is 2 MiB; a deployment of a thousand processes writes
    // rows on more pages than that each round, and every page evicted is read again.
    conn.pragma_update(None, "cache_size", CACHE_KIB)
        .map_err(fail("configure"))?;

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail("lock"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fail("read the schema version of"))?;
    if version > SCHEMA_VERSION {
        return Err(Error::store(
            format!(
                "the deployment store {name} has schema version {version}, newer than the \
                 {SCHEMA_VERSION} this Tapitalee understands; upgrade Tapitalee, or use another store file"
            ),
            "schema version too new",
        ));
    }
    if version < SCHEMA_VERSION {
        // 0: a new file (nothing to move).
        let upgrade = version > 0;
        let failed = format!("upgrade (schema version {version} to {SCHEMA_VERSION})");
        if upgrade {
            tx.execute_batch(MIGRATE_SET_ASIDE).map_err(fail(&failed))?;
        }
        tx.execute_batch(SCHEMA)
            .map_err(fail("create the schema of"))?;
        if upgrade {
            tx.execute_batch(MIGRATE_COPY).map_err(fail(&failed))?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(fail("set the schema version of"))?;
    }
    tx.commit().map_err(fail("initialize"))?;
    Ok(conn)
}
