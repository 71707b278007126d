//! Rows: how records are encoded in SQLite, and every store operation as a function of a
//! connection already inside a transaction (the writer thread opens and commits it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::{AppName, DeploymentId, Digest, DockerTag, ImageRef, Initiator, ProcessName};
use crate::error::{Error, Resource, Result};
use crate::fleet::Target;
use crate::record::{
    DeploymentRecord, DeploymentStatus, ProcessRecord, RollbackPolicy, StepRecord,
};

pub(super) fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::store(format!("SQLite store: {op} failed"), e)
}

pub(super) fn missing(id: &str) -> Error {
    Error::not_found(Resource::Deployment, id, "")
}

fn corrupt(what: &str, value: &str, e: impl Into<crate::error::BoxError>) -> Error {
    Error::store(
        format!("SQLite store holds an unreadable {what} {value:?}"),
        e,
    )
}

/// Unix milliseconds, saturating; times before 1970 are negative.
pub(super) fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

pub(super) fn from_ms(ms: i64) -> Result<SystemTime> {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.ok_or_else(|| corrupt("timestamp", &ms.to_string(), "out of this platform's range"))
}

fn opt_from_ms(ms: Option<i64>) -> Result<Option<SystemTime>> {
    ms.map(from_ms).transpose()
}

pub(super) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub(super) fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| Error::store(format!("cannot encode a {what} for the SQLite store"), e))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, s, e))
}

fn parse<'a, T>(what: &str, s: &'a str, f: impl FnOnce(&'a str) -> Result<T>) -> Result<T> {
    f(s).map_err(|e| corrupt(what, s, e))
}

fn parse_status(s: &str) -> Result<DeploymentStatus> {
    s.parse().map_err(|e| corrupt("deployment status", s, e))
}

fn parse_policy(s: &str) -> Result<RollbackPolicy> {
    s.parse().map_err(|e| corrupt("rollback policy", s, e))
}

/// A process row, encoded for writing.
pub(super) struct ProcessRow {
    process: String,
    strategy: String,
    status: String,
    from: Option<String>,
    to: Option<String>,
    started_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    state: String,
}

impl ProcessRow {
    pub(super) fn encode(p: &ProcessRecord) -> Result<Self> {
        Ok(ProcessRow {
            process: p.process.to_string(),
            strategy: p.strategy.clone(),
            status: to_json("process status", &p.status)?,
            from: p
                .from
                .as_ref()
                .map(|r| to_json("revision", r))
                .transpose()?,
            to: p.to.as_ref().map(|r| to_json("revision", r)).transpose()?,
            started_at_ms: p.started_at.map(to_ms),
            finished_at_ms: p.finished_at.map(to_ms),
            state: to_json("rollout state", &p.state)?,
        })
    }

    fn decode(self) -> Result<ProcessRecord> {
        Ok(ProcessRecord {
            process: parse("process name", &self.process, ProcessName::new)?,
            strategy: self.strategy,
            status: from_json("process status", &self.status)?,
            from: self.from.map(|s| from_json("revision", &s)).transpose()?,
            to: self.to.map(|s| from_json("revision", &s)).transpose()?,
            started_at: opt_from_ms(self.started_at_ms)?,
            finished_at: opt_from_ms(self.finished_at_ms)?,
            state: from_json("rollout state", &self.state)?,
            steps: Vec::new(),
        })
    }
}

const PROCESS_COLUMNS: &str =
    "process, strategy, status, from_rev, to_rev, started_at_ms, finished_at_ms, state";

fn read_process(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProcessRow> {
    Ok(ProcessRow {
        process: r.get(0)?,
        strategy: r.get(1)?,
        status: r.get(2)?,
        from: r.get(3)?,
        to: r.get(4)?,
        started_at_ms: r.get(5)?,
        finished_at_ms: r.get(6)?,
        state: r.get(7)?,
    })
}

/// A deployment row as read.
struct DeploymentRow {
    id: String,
    app: String,
    initiator: String,
    image_repo: String,
    image_tag: String,
    image_digest: Option<String>,
    only_process: Option<String>,
    policy: String,
    status: String,
    created_at_ms: i64,
    finished_at_ms: Option<i64>,
    resumes: Option<String>,
}

const DEPLOYMENT_COLUMNS: &str = "id, app, initiator, image_repo, image_tag, image_digest, \
     only_process, policy, status, created_at_ms, finished_at_ms, resumes";

fn read_deployment(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRow> {
    Ok(DeploymentRow {
        id: r.get(0)?,
        app: r.get(1)?,
        initiator: r.get(2)?,
        image_repo: r.get(3)?,
        image_tag: r.get(4)?,
        image_digest: r.get(5)?,
        only_process: r.get(6)?,
        policy: r.get(7)?,
        status: r.get(8)?,
        created_at_ms: r.get(9)?,
        finished_at_ms: r.get(10)?,
        resumes: r.get(11)?,
    })
}

impl DeploymentRow {
    fn decode(self, processes: Vec<ProcessRecord>) -> Result<DeploymentRecord> {
        let tag = parse("docker tag", &self.image_tag, DockerTag::new)?;
        let mut image = ImageRef::new(self.image_repo.clone(), tag)
            .map_err(|e| corrupt("image repository", &self.image_repo, e))?;
        image.digest = self
            .image_digest
            .as_deref()
            .map(|d| parse("image digest", d, Digest::new))
            .transpose()?;
        Ok(DeploymentRecord {
            id: parse("deployment id", &self.id, str::parse)?,
            app: parse("app name", &self.app, AppName::new)?,
            initiator: parse("initiator", &self.initiator, Initiator::new)?,
            image,
            only_process: self
                .only_process
                .as_deref()
                .map(|p| parse("process name", p, ProcessName::new))
                .transpose()?,
            policy: parse_policy(&self.policy)?,
            status: parse_status(&self.status)?,
            created_at: from_ms(self.created_at_ms)?,
            finished_at: opt_from_ms(self.finished_at_ms)?,
            resumes: self
                .resumes
                .as_deref()
                .map(|r| parse("deployment id", r, str::parse))
                .transpose()?,
            steps: Vec::new(),
            processes,
        })
    }
}

/// A deployment's processes in creation order, without steps.
fn load_processes(conn: &Connection, id: &str) -> Result<Vec<ProcessRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {PROCESS_COLUMNS} FROM processes WHERE deployment_id = ?1 ORDER BY ordinal"
        ))
        .map_err(sql("reading processes"))?;
    let rows = stmt
        .query_map([id], read_process)
        .map_err(sql("reading processes"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql("reading processes"))?;
    rows.into_iter().map(ProcessRow::decode).collect()
}

/// Replaces a process's row (not its steps), or appends it after the others.
pub(super) fn write_process(conn: &Connection, id: &str, row: &ProcessRow) -> Result<()> {
    let updated = conn
        .prepare_cached(
            "UPDATE processes SET strategy = ?3, status = ?4, from_rev = ?5, \
             to_rev = ?6, started_at_ms = ?7, finished_at_ms = ?8, state = ?9 \
             WHERE deployment_id = ?1 AND process = ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                row.process,
                row.strategy,
                row.status,
                row.from,
                row.to,
                row.started_at_ms,
                row.finished_at_ms,
                row.state
            ])
        })
        .map_err(sql("updating a process"))?;
    if updated == 0 {
        // A process not in the deployment yet: append it after the others.
        let next: Option<i64> = conn
            .prepare_cached(
                "SELECT (SELECT COALESCE(MAX(ordinal) + 1, 0) FROM processes \
                 WHERE deployment_id = ?1) FROM deployments WHERE id = ?1",
            )
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(sql("updating a process"))?;
        let next = next.ok_or_else(|| missing(id))?;
        insert_process(conn, id, next, row).map_err(sql("adding a process"))?;
    }
    Ok(())
}

/// Appends a step; it belongs to its process if the deployment has that process.
pub(super) fn append_step_row(conn: &Connection, id: &str, step: &StepRecord) -> Result<()> {
    let n = conn
        .prepare_cached(
            "INSERT INTO steps (deployment_id, process, attached, at_ms, message) \
             SELECT id, ?2, ?2 IS NOT NULL AND EXISTS (SELECT 1 FROM processes \
                 WHERE deployment_id = ?1 AND process = ?2), ?3, ?4 \
             FROM deployments WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                step.process.as_ref().map(ProcessName::as_str),
                to_ms(step.at),
                step.message
            ])
        })
        .map_err(sql("appending a step"))?;
    if n == 0 {
        return Err(missing(id));
    }
    Ok(())
}

/// Appends a step of a deployment whose process row `row` was just written: the step belongs
/// to that process if it names it.
pub(super) fn append_known_step(
    conn: &Connection,
    id: &str,
    row: &ProcessRow,
    step: &StepRecord,
) -> Result<()> {
    let attached = step
        .process
        .as_ref()
        .is_some_and(|p| p.as_str() == row.process);
    if attached {
        insert_step(conn, id, step, true).map(drop)
    } else {
        append_step_row(conn, id, step)
    }
}

fn insert_process(
    conn: &Connection,
    id: &str,
    ordinal: i64,
    p: &ProcessRow,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(&format!(
        "INSERT INTO processes (deployment_id, ordinal, {PROCESS_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        id,
        ordinal,
        p.process,
        p.strategy,
        p.status,
        p.from,
        p.to,
        p.started_at_ms,
        p.finished_at_ms,
        p.state
    ])
}

fn insert_step(conn: &Connection, id: &str, step: &StepRecord, attached: bool) -> Result<usize> {
    conn.prepare_cached(
        "INSERT INTO steps (deployment_id, process, attached, at_ms, message) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            step.process.as_ref().map(ProcessName::as_str),
            attached,
            to_ms(step.at),
            step.message
        ])
    })
    .map_err(sql("appending a step"))
}

pub(super) fn target_params(t: &Target) -> (String, String) {
    (t.app.to_string(), t.process.to_string())
}

/// Records a new deployment with its processes and steps.
pub(super) fn create(
    conn: &Connection,
    r: &DeploymentRecord,
    processes: &[ProcessRow],
) -> Result<()> {
    let id = r.id.to_string();
    let exists = conn
        .prepare_cached("SELECT 1 FROM deployments WHERE id = ?1")
        .and_then(|mut s| s.query_row([&id], |_| Ok(())).optional())
        .map_err(sql("creating a deployment"))?
        .is_some();
    if exists {
        return Err(Error::store(
            format!("deployment {id} already exists"),
            "duplicate id",
        ));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO deployments ({DEPLOYMENT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            id,
            r.app.as_str(),
            r.initiator.as_str(),
            r.image.repository,
            r.image.tag.as_str(),
            r.image.digest.as_ref().map(Digest::as_str),
            r.only_process.as_ref().map(ProcessName::as_str),
            r.policy.as_str(),
            r.status.as_str(),
            to_ms(r.created_at),
            r.finished_at.map(to_ms),
            r.resumes.map(|d| d.to_string()),
        ])
    })
    .map_err(sql("creating a deployment"))?;
    for (ordinal, p) in (0_i64..).zip(processes) {
        insert_process(conn, &id, ordinal, p).map_err(|e| {
            Error::store(
                format!("cannot record process {:?} of deployment {id}", p.process),
                e,
            )
        })?;
    }
    for step in &r.steps {
        insert_step(conn, &id, step, false)?;
    }
    Ok(())
}

/// Sets a deployment's status and end time.
pub(super) fn set_status(
    conn: &Connection,
    id: &str,
    status: DeploymentStatus,
    finished: Option<i64>,
) -> Result<()> {
    let n = conn
        .prepare_cached("UPDATE deployments SET status = ?2, finished_at_ms = ?3 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, status.as_str(), finished]))
        .map_err(sql("setting a deployment's status"))?;
    if n == 0 {
        return Err(missing(id));
    }
    Ok(())
}

/// One deployment with its processes and steps.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<DeploymentRecord>> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"
        ))
        .and_then(|mut s| s.query_row([id], read_deployment).optional())
        .map_err(sql("reading a deployment"))?;
    let Some(row) = row else { return Ok(None) };
    let processes = load_processes(conn, id)?;
    let mut rec = row.decode(processes)?;

    let mut stmt = conn
        .prepare_cached(
            "SELECT process, attached, at_ms, message FROM steps \
             WHERE deployment_id = ?1 ORDER BY seq",
        )
        .map_err(sql("reading steps"))?;
    let steps = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(sql("reading steps"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql("reading steps"))?;
    for (process, attached, at_ms, message) in steps {
        let process = process
            .as_deref()
            .map(|p| parse("process name", p, ProcessName::new))
            .transpose()?;
        let owner = match (&process, attached) {
            (Some(name), true) => rec.processes.iter_mut().find(|p| &p.process == name),
            _ => None,
        };
        let step = StepRecord {
            at: from_ms(at_ms)?,
            process,
            message,
        };
        match owner {
            Some(p) => p.steps.push(step),
            None => rec.steps.push(step),
        }
    }
    Ok(Some(rec))
}

/// An app's deployments, newest first, with processes but without steps.
pub(super) fn list(conn: &Connection, app: &str, limit: i64) -> Result<Vec<DeploymentRecord>> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app = ?1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT ?2"
        ))
        .and_then(|mut s| {
            s.query_map(params![app, limit], read_deployment)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql("listing deployments"))?;
    rows.into_iter()
        .map(|row| {
            let processes = load_processes(conn, &row.id)?;
            row.decode(processes)
        })
        .collect()
}

/// Takes or renews a lock for `holder` until `lease_ms` from now, unless another live holder
/// has it (returned).
pub(super) fn try_lock(
    conn: &Connection,
    (app, process): &(String, String),
    holder: &str,
    lease_ms: i64,
) -> Result<Option<DeploymentId>> {
    let now = now_ms();
    let current: Option<(String, i64)> = conn
        .prepare_cached("SELECT holder, expires_at_ms FROM locks WHERE app = ?1 AND process = ?2")
        .and_then(|mut s| {
            s.query_row(params![app, process], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(sql("taking a lock"))?;
    if let Some((other, _)) = current.filter(|(h, until)| h != holder && *until > now) {
        return parse("lock holder", &other, str::parse).map(Some);
    }
    conn.prepare_cached(
        "INSERT INTO locks (app, process, holder, expires_at_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (app, process) DO UPDATE \
         SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms",
    )
    .and_then(|mut s| s.execute(params![app, process, holder, now.saturating_add(lease_ms)]))
    .map_err(sql("taking a lock"))?;
    Ok(None)
}

/// Releases a lock if `holder` holds it.
pub(super) fn unlock(
    conn: &Connection,
    (app, process): &(String, String),
    holder: &str,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM locks WHERE app = ?1 AND process = ?2 AND holder = ?3")
        .and_then(|mut s| s.execute(params![app, process, holder]))
        .map_err(sql("releasing a lock"))?;
    Ok(())
}

/// The live holder of a lock.
pub(super) fn lock_holder(
    conn: &Connection,
    (app, process): &(String, String),
) -> Result<Option<DeploymentId>> {
    let holder: Option<String> = conn
        .prepare_cached(
            "SELECT holder FROM locks WHERE app = ?1 AND process = ?2 AND expires_at_ms > ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![app, process, now_ms()], |r| r.get(0))
                .optional()
        })
        .map_err(sql("reading a lock"))?;
    holder
        .map(|h| parse("lock holder", &h, str::parse))
        .transpose()
}
