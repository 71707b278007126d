//! Rows: how records are encoded in SQLite, and every store operation as a function of a
//! connection already inside a transaction (the writer thread opens and commits it).

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foldhash::HashMap;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;

use crate::domain::{AppName, DeploymentId, Digest, DockerTag, ImageRef, Initiator, ProcessName};
use crate::error::{Error, Resource, Result};
use crate::fleet::Target;
use crate::fleet::{Fleet, Revision};
use crate::record::{
    DeploymentRecord, DeploymentStatus, ProcessRecord, RollbackPolicy, RolloutState, StepRecord,
};

/// The writer's connection, and the row numbers of the deployments and processes it has seen.
pub(super) struct Db {
    conn: Connection,
    keys: RefCell<Keys>,
}

/// Row numbers by text key: a write finds its rows by integer instead of through the text
/// keys' indexes. A row's number never changes (`INTEGER PRIMARY KEY`, and nothing is
/// deleted), so the numbers stay true, except those learnt in a transaction that is then
/// rolled back: the writer forgets them all then.
#[derive(Default)]
struct Keys {
    deployments: HashMap<String, i64>,
    /// By deployment number, then process name.
    processes: HashMap<i64, HashMap<String, i64>>,
}

/// Deployments whose numbers are kept at most; past it they are learnt again.
const MAX_KEYS: usize = 10_000;

impl Db {
    pub(super) fn new(conn: Connection) -> Self {
        Db {
            conn,
            keys: RefCell::new(Keys::default()),
        }
    }

    /// Forgets every row number (a transaction that may have made some was rolled back).
    pub(super) fn forget_keys(&self) {
        let mut keys = self.keys.borrow_mut();
        keys.deployments.clear();
        keys.processes.clear();
    }

    /// The number of deployment `id`, or `None` if there is no such deployment.
    fn deployment_key(&self, id: &str) -> Result<Option<i64>> {
        if let Some(&n) = self.keys.borrow().deployments.get(id) {
            return Ok(Some(n));
        }
        let n: Option<i64> = self
            .conn
            .prepare_cached("SELECT n FROM deployments WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(sql("finding a deployment"))?;
        if let Some(n) = n {
            self.remember_deployment(id, n);
        }
        Ok(n)
    }

    fn remember_deployment(&self, id: &str, n: i64) {
        let mut keys = self.keys.borrow_mut();
        if keys.deployments.len() >= MAX_KEYS {
            keys.deployments.clear();
        }
        keys.deployments.insert(id.to_owned(), n);
    }

    fn process_key(&self, deployment: i64, process: &str) -> Option<i64> {
        self.keys
            .borrow()
            .processes
            .get(&deployment)?
            .get(process)
            .copied()
    }

    fn remember_process(&self, deployment: i64, process: &str, n: i64) {
        let mut keys = self.keys.borrow_mut();
        if keys.processes.len() >= MAX_KEYS {
            keys.processes.clear();
        }
        keys.processes
            .entry(deployment)
            .or_default()
            .insert(process.to_owned(), n);
    }

    /// Forgets the numbers of a finished deployment's rows (nothing writes them any more).
    fn forget_deployment(&self, id: &str) {
        let mut keys = self.keys.borrow_mut();
        if let Some(n) = keys.deployments.remove(id) {
            keys.processes.remove(&n);
        }
    }
}

impl Deref for Db {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

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

static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(Mutex::default);

/// The JSON of the revisions and fleets a thread encoded last. A rollout writes its record
/// after every change, and its revisions and fleets (each a few hundred bytes of image
/// references and ids, escaped character by character) rarely change between two writes.
/// An entry is used only if its value equals the one to encode. Shared by the threads that
/// write (a rollout's task moves between tokio's workers); bounded.
#[derive(Default)]
struct Memo {
    revisions: HashMap<String, (Revision, Box<RawValue>)>,
    fleets: HashMap<String, (Fleet, Box<RawValue>)>,
}

/// Entries kept at most per kind; past it they are encoded again.
const MEMO_ENTRIES: usize = 4096;

impl Memo {
    fn revision(&mut self, r: &Revision) -> Result<&RawValue> {
        Self::get(&mut self.revisions, &r.id, r, "revision")
    }

    fn fleet(&mut self, f: &Fleet) -> Result<&RawValue> {
        Self::get(&mut self.fleets, &f.id.0, f, "fleet")
    }

    fn get<'a, T: serde::Serialize + Clone + PartialEq>(
        map: &'a mut HashMap<String, (T, Box<RawValue>)>,
        key: &str,
        value: &T,
        what: &str,
    ) -> Result<&'a RawValue> {
        let hit = map.get(key).is_some_and(|(v, _)| v == value);
        if !hit {
            if map.len() >= MEMO_ENTRIES {
                map.clear();
            }
            let json = serde_json::value::to_raw_value(value).map_err(|e| {
                Error::store(format!("cannot encode a {what} for the SQLite store"), e)
            })?;
            map.insert(key.to_owned(), (value.clone(), json));
        }
        map.get(key)
            .map(|(_, json)| &**json)
            .ok_or_else(|| Error::store("SQLite store: an encoding went missing", key.to_owned()))
    }

    /// A rollout state as `RolloutState`'s own `Serialize` writes it (the same JSON object),
    /// with its fleets from the memo. Written by hand: its other fields are numbers and
    /// flags under fixed names, and serde's field-by-field path cost more than all the rest
    /// of a write.
    fn state(&mut self, state: &RolloutState) -> Result<String> {
        // Every field, by name: adding one to `RolloutState` fails to compile here.
        let RolloutState {
            desired,
            load_balanced,
            platform_run,
            platform_bake,
            stable,
            stable_desired,
            stable_count,
            candidate,
            candidate_count,
            candidate_weight,
            candidate_primary,
            stable_retired,
            launching,
            steps_done,
        } = state;
        if let (Some(s), Some(c)) = (stable, candidate)
            && s.id == c.id
            && s != c
        {
            // Two different fleets under one id: one memo entry cannot hold both.
            return to_json("rollout state", state);
        }
        let mut out = String::with_capacity(1024);
        let mut fleet = |out: &mut String, name: &str, f: &Option<Fleet>| -> Result<()> {
            out.push_str(name);
            match f {
                Some(f) => out.push_str(self.fleet(f)?.get()),
                None => out.push_str("null"),
            }
            Ok(())
        };
        let number = |out: &mut String, name: &str, n: u64| {
            out.push_str(name);
            push_decimal(out, n);
        };
        let flag = |out: &mut String, name: &str, b: bool| {
            out.push_str(name);
            out.push_str(if b { "true" } else { "false" });
        };
        number(&mut out, "{\"desired\":", u64::from(*desired));
        flag(&mut out, ",\"load_balanced\":", *load_balanced);
        flag(&mut out, ",\"platform_run\":", *platform_run);
        number(
            &mut out,
            ",\"platform_bake\":{\"secs\":",
            platform_bake.as_secs(),
        );
        number(
            &mut out,
            ",\"nanos\":",
            u64::from(platform_bake.subsec_nanos()),
        );
        out.push('}');
        fleet(&mut out, ",\"stable\":", stable)?;
        number(&mut out, ",\"stable_desired\":", u64::from(*stable_desired));
        number(&mut out, ",\"stable_count\":", u64::from(*stable_count));
        fleet(&mut out, ",\"candidate\":", candidate)?;
        number(
            &mut out,
            ",\"candidate_count\":",
            u64::from(*candidate_count),
        );
        number(
            &mut out,
            ",\"candidate_weight\":",
            u64::from(*candidate_weight),
        );
        flag(&mut out, ",\"candidate_primary\":", *candidate_primary);
        flag(&mut out, ",\"stable_retired\":", *stable_retired);
        flag(&mut out, ",\"launching\":", *launching);
        number(&mut out, ",\"steps_done\":", u64::from(*steps_done));
        out.push('}');
        Ok(out)
    }
}

/// Appends `n` in decimal.
fn push_signed(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_decimal(out, n.unsigned_abs());
}

/// Appends `n` in decimal (as JSON writes it).
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0_u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // A digit: n % 10 < 10.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
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
        // A panic while encoding leaves whole entries behind (each is inserted complete).
        let mut memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
        {
            Ok(ProcessRow {
                process: p.process.to_string(),
                strategy: p.strategy.clone(),
                status: to_json("process status", &p.status)?,
                from: p
                    .from
                    .as_ref()
                    .map(|r| memo.revision(r).map(|j| j.get().to_owned()))
                    .transpose()?,
                to: p
                    .to
                    .as_ref()
                    .map(|r| memo.revision(r).map(|j| j.get().to_owned()))
                    .transpose()?,
                started_at_ms: p.started_at.map(to_ms),
                finished_at_ms: p.finished_at.map(to_ms),
                state: memo.state(&p.state)?,
            })
        }
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
    read_deployment_at(r, 0)
}

/// A deployment row whose [`DEPLOYMENT_COLUMNS`] start at column `at`.
fn read_deployment_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<DeploymentRow> {
    Ok(DeploymentRow {
        id: r.get(at)?,
        app: r.get(at + 1)?,
        initiator: r.get(at + 2)?,
        image_repo: r.get(at + 3)?,
        image_tag: r.get(at + 4)?,
        image_digest: r.get(at + 5)?,
        only_process: r.get(at + 6)?,
        policy: r.get(at + 7)?,
        status: r.get(at + 8)?,
        created_at_ms: r.get(at + 9)?,
        finished_at_ms: r.get(at + 10)?,
        resumes: r.get(at + 11)?,
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
/// A deployment's processes in creation order, without steps, and (if `with_steps`) the
/// steps kept in each row (not decoded yet).
fn load_processes(
    conn: &Connection,
    id: &str,
    with_steps: bool,
) -> Result<Vec<(ProcessRecord, String)>> {
    let steps = if with_steps { "steps" } else { "''" };
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {PROCESS_COLUMNS}, {steps} FROM processes WHERE deployment_id = ?1 \
             ORDER BY ordinal"
        ))
        .map_err(sql("reading processes"))?;
    let rows = stmt
        .query_map([id], |r| Ok((read_process(r)?, r.get::<_, String>(8)?)))
        .map_err(sql("reading processes"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql("reading processes"))?;
    rows.into_iter()
        .map(|(row, steps)| Ok((row.decode()?, steps)))
        .collect()
}

/// A step as a line of a process row's `steps`: `[at_ms,"message"]` and a newline (JSON
/// escapes any newline in the message).
fn step_line(out: &mut String, step: &StepRecord) -> Result<()> {
    out.push('[');
    push_signed(out, to_ms(step.at));
    out.push(',');
    out.push_str(&to_json("step", &step.message)?);
    out.push_str("]\n");
    Ok(())
}

/// The steps of a process row's `steps`.
fn read_step_lines(process: &ProcessName, lines: &str) -> Result<Vec<StepRecord>> {
    lines
        .lines()
        .map(|line| {
            let (at_ms, message): (i64, String) = from_json("step", line)?;
            Ok(StepRecord {
                at: from_ms(at_ms)?,
                process: Some(process.clone()),
                message,
            })
        })
        .collect()
}

/// Replaces a process's row (not its steps), or appends it after the others. Returns the
/// deployment's number.
pub(super) fn write_process(db: &Db, id: &str, row: &ProcessRow, steps: &str) -> Result<i64> {
    let deployment = db.deployment_key(id)?.ok_or_else(|| missing(id))?;
    if let Some(n) = db.process_key(deployment, &row.process)
        && update_process(db, n, id, row, steps)?
    {
        return Ok(deployment);
    }
    let n = match find_process(db, id, &row.process).map_err(sql("updating a process"))? {
        Some(n) => {
            update_process(db, n, id, row, steps)?;
            n
        }
        None => {
            // A process not in the deployment yet: append it after the others.
            let next: i64 = db
                .prepare_cached(
                    "SELECT COALESCE(MAX(ordinal) + 1, 0) FROM processes WHERE deployment_id = ?1",
                )
                .and_then(|mut s| s.query_row([id], |r| r.get(0)))
                .map_err(sql("updating a process"))?;
            insert_process(db, id, next, row, steps).map_err(sql("adding a process"))?
        }
    };
    db.remember_process(deployment, &row.process, n);
    Ok(deployment)
}

/// The number of `id`'s process `name`, looked up by its text keys.
fn find_process(db: &Db, id: &str, name: &str) -> rusqlite::Result<Option<i64>> {
    db.prepare_cached("SELECT n FROM processes WHERE deployment_id = ?1 AND process = ?2")?
        .query_row([id, name], |r| r.get(0))
        .optional()
}

/// Rewrites process row `n` and appends `steps` (lines) to its steps, if it is `id`'s
/// process `row.process` (a number learnt in a transaction that was then undone may be
/// another's).
fn update_process(db: &Db, n: i64, id: &str, row: &ProcessRow, steps: &str) -> Result<bool> {
    let updated = db
        .prepare_cached(
            "UPDATE processes SET strategy = ?4, status = ?5, from_rev = ?6, \
             to_rev = ?7, started_at_ms = ?8, finished_at_ms = ?9, state = ?10, \
             steps = steps || ?11 \
             WHERE n = ?1 AND deployment_id = ?2 AND process = ?3",
        )
        .and_then(|mut s| {
            s.execute(params![
                n,
                id,
                row.process,
                row.strategy,
                row.status,
                row.from,
                row.to,
                row.started_at_ms,
                row.finished_at_ms,
                row.state,
                steps
            ])
        })
        .map_err(sql("updating a process"))?;
    Ok(updated == 1)
}

/// Appends a step: to its process's row if the deployment has that process, else to the
/// deployment's own steps.
pub(super) fn append_step_row(db: &Db, id: &str, step: &StepRecord) -> Result<()> {
    let deployment = db.deployment_key(id)?.ok_or_else(|| missing(id))?;
    if let Some(process) = &step.process {
        let name = process.as_str();
        let n = match db.process_key(deployment, name) {
            Some(n) => Some(n),
            None => find_process(db, id, name).map_err(sql("appending a step"))?,
        };
        if let Some(n) = n {
            let mut line = String::new();
            step_line(&mut line, step)?;
            let appended = db
                .prepare_cached(
                    "UPDATE processes SET steps = steps || ?4 \
                     WHERE n = ?1 AND deployment_id = ?2 AND process = ?3",
                )
                .and_then(|mut s| s.execute(params![n, id, name, line]))
                .map_err(sql("appending a step"))?;
            if appended == 1 {
                db.remember_process(deployment, name, n);
                return Ok(());
            }
        }
    }
    insert_step(db, deployment, step, false).map(drop)
}

/// A process's row with its own steps, already encoded as lines, and other steps, which go
/// where [`append_step_row`] places them.
pub(super) fn record(
    db: &Db,
    id: &str,
    row: Option<&(ProcessRow, String)>,
    others: &[StepRecord],
) -> Result<()> {
    if let Some((row, lines)) = row {
        write_process(db, id, row, lines)?;
    }
    others
        .iter()
        .try_for_each(|step| append_step_row(db, id, step))
}

/// Splits steps into the lines of `process`'s own and the others.
pub(super) fn own_steps(process: &str, steps: &[StepRecord]) -> Result<(String, Vec<StepRecord>)> {
    let mut lines = String::new();
    let mut others = Vec::new();
    for step in steps {
        if step.process.as_ref().is_some_and(|p| p.as_str() == process) {
            step_line(&mut lines, step)?;
        } else {
            others.push(step.clone());
        }
    }
    Ok((lines, others))
}

/// Inserts a process row; returns its number.
fn insert_process(
    conn: &Connection,
    id: &str,
    ordinal: i64,
    p: &ProcessRow,
    steps: &str,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(&format!(
        "INSERT INTO processes (deployment_id, ordinal, {PROCESS_COLUMNS}, steps) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
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
        p.state,
        steps
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Appends a step of deployment number `deployment`.
fn insert_step(
    conn: &Connection,
    deployment: i64,
    step: &StepRecord,
    attached: bool,
) -> Result<usize> {
    conn.prepare_cached(
        "INSERT INTO steps (deployment, process, attached, at_ms, message) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            deployment,
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
pub(super) fn create(db: &Db, r: &DeploymentRecord, processes: &[ProcessRow]) -> Result<()> {
    let conn: &Connection = db;
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
    let deployment = conn.last_insert_rowid();
    db.remember_deployment(&id, deployment);
    for (ordinal, p) in (0_i64..).zip(processes) {
        let n = insert_process(conn, &id, ordinal, p, "").map_err(|e| {
            Error::store(
                format!("cannot record process {:?} of deployment {id}", p.process),
                e,
            )
        })?;
        db.remember_process(deployment, &p.process, n);
    }
    for step in &r.steps {
        insert_step(conn, deployment, step, false)?;
    }
    Ok(())
}

/// Sets a deployment's status and end time.
pub(super) fn set_status(
    db: &Db,
    id: &str,
    status: DeploymentStatus,
    finished: Option<i64>,
) -> Result<()> {
    if status.is_final() {
        db.forget_deployment(id);
    }
    let n = db
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
            "SELECT n, {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"
        ))
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok((r.get::<_, i64>(0)?, read_deployment_at(r, 1)?))
            })
            .optional()
        })
        .map_err(sql("reading a deployment"))?;
    let Some((deployment, row)) = row else {
        return Ok(None);
    };
    let (processes, row_steps): (Vec<_>, Vec<_>) =
        load_processes(conn, id, true)?.into_iter().unzip();
    let mut rec = row.decode(processes)?;
    let position: HashMap<ProcessName, usize> = rec
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.process.clone(), i))
        .collect();

    let mut stmt = conn
        .prepare_cached(
            "SELECT process, attached, at_ms, message FROM steps \
             WHERE deployment = ?1 ORDER BY seq",
        )
        .map_err(sql("reading steps"))?;
    let steps = stmt
        .query_map([deployment], |r| {
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
            (Some(name), true) => position.get(name).and_then(|&i| rec.processes.get_mut(i)),
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
    // A process's own steps, after any it had in the steps table (written before version 3).
    for (p, lines) in rec.processes.iter_mut().zip(&row_steps) {
        let steps = read_step_lines(&p.process, lines)?;
        p.steps.extend(steps);
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
            let processes = load_processes(conn, &row.id, false)?;
            row.decode(processes.into_iter().map(|(p, _)| p).collect())
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fleet::{FleetId, Target};

    fn fleet(id: &str, revision: &str, tag: &str) -> Fleet {
        Fleet {
            id: FleetId(id.to_owned()),
            target: Target::new(
                AppName::new("memo").unwrap(),
                ProcessName::new("web").unwrap(),
            ),
            revision: Revision {
                id: revision.to_owned(),
                image: ImageRef::new("registry.local/memo", DockerTag::new(tag).unwrap()).unwrap(),
            },
        }
    }

    /// The row's JSON, compared as values with what serde's derive writes.
    fn assert_encodes_as_derive(p: &ProcessRecord) {
        let row = ProcessRow::encode(p).unwrap();
        let value = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(value(&row.state), serde_json::to_value(&p.state).unwrap());
        let want = |r: &Option<Revision>| r.as_ref().map(|r| serde_json::to_value(r).unwrap());
        assert_eq!(row.from.as_deref().map(value), want(&p.from));
        assert_eq!(row.to.as_deref().map(value), want(&p.to));
        assert_eq!(
            row.decode().unwrap(),
            ProcessRecord {
                steps: Vec::new(),
                ..p.clone()
            }
        );
    }

    #[test]
    fn step_lines_read_back() {
        let web = ProcessName::new("web").unwrap();
        let steps: Vec<StepRecord> = [
            (1_700_000_000_123_i64, "plain"),
            (-5, "before 1970"),
            (0, "two\nlines, \"quoted\", tab\t and ünïcode ✓"),
            (i64::MAX / 1000, ""),
        ]
        .into_iter()
        .map(|(ms, m)| StepRecord {
            at: from_ms(ms).unwrap(),
            process: Some(web.clone()),
            message: m.to_owned(),
        })
        .collect();
        let mut lines = String::new();
        for step in &steps {
            step_line(&mut lines, step).unwrap();
        }
        assert_eq!(lines.lines().count(), steps.len(), "{lines}");
        assert_eq!(read_step_lines(&web, &lines).unwrap(), steps);
        assert!(read_step_lines(&web, "").unwrap().is_empty());
        assert!(read_step_lines(&web, "not json\n").is_err());
    }

    #[test]
    fn memoized_encoding_is_the_derives() {
        let old = fleet("fleet-1", "web:1", "v1");
        // Ids are the platform's: anything, even what JSON must escape.
        let new = fleet("fleet-\"2\"", "web:2", "v2");
        let mut p = ProcessRecord::pending(ProcessName::new("web").unwrap(), "rolling");
        p.from = Some(old.revision.clone());
        p.to = Some(new.revision.clone());
        p.state = RolloutState {
            desired: 4,
            load_balanced: true,
            platform_run: true,
            platform_bake: Duration::from_millis(1500),
            stable: Some(old.clone()),
            stable_desired: 3,
            stable_count: 2,
            candidate: Some(new.clone()),
            candidate_count: 1,
            candidate_weight: 25,
            candidate_primary: true,
            stable_retired: true,
            launching: true,
            steps_done: 7,
        };
        assert_encodes_as_derive(&p);
        // Again, from the memo.
        assert_encodes_as_derive(&p);
        // A fleet and a revision changed under the same ids: encoded anew, not the memo's.
        let changed = fleet("fleet-\"2\"", "web:2", "v3");
        p.state.candidate = Some(changed.clone());
        p.to = Some(changed.revision.clone());
        assert_encodes_as_derive(&p);
        // Two different fleets under one id.
        p.state.stable = Some(fleet("fleet-\"2\"", "web:1", "v1"));
        assert_encodes_as_derive(&p);
        p.state.stable = None;
        p.state.candidate = None;
        assert_encodes_as_derive(&p);
        // Numbers at their extremes.
        p.state = RolloutState {
            desired: u32::MAX,
            platform_bake: Duration::new(u64::MAX, 999_999_999),
            candidate_weight: u8::MAX,
            ..RolloutState::default()
        };
        assert_encodes_as_derive(&p);
        p.state = RolloutState::default();
        assert_encodes_as_derive(&p);
    }
}
