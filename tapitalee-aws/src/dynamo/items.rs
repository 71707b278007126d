//! Items: the key schema, and how records are encoded as DynamoDB items and read back.
//!
//! Every function here is pure; the calls are in [`super`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use tapitalee_core::{
    AppName, DeploymentId, DeploymentRecord, DeploymentStatus, Digest, DockerTag, Error, ImageRef,
    Initiator, ProcessName, ProcessRecord, Result, RollbackPolicy, StepRecord, Target,
};

/// An item as the SDK holds it.
pub(super) type Item = HashMap<String, AttributeValue>;

/// The partition key attribute.
pub(super) const PK: &str = "pk";
/// The sort key attribute.
pub(super) const SK: &str = "sk";

/// The sort key of a deployment's head item.
pub(super) const HEAD: &str = "D";
/// Sort keys of process items start with this.
const PROCESS_PREFIX: &str = "P#";
/// Sort keys of step items start with this; every head and process key sorts before it.
pub(super) const STEP_PREFIX: &str = "S#";

/// Step messages longer than this are cut (at a character boundary) so that a step item stays
/// far under DynamoDB's 400 KB item limit.
pub(super) const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// The table's TTL attribute (unix seconds): DynamoDB deletes an item some time after it.
/// Only control messages carry it; deployments and their steps are history, kept.
pub(super) const EXPIRES_AT: &str = "expires_at";

/// How long a control message is kept.
pub(super) const CONTROL_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The partition of one deployment: its head, its processes and its steps.
pub(super) fn deployment_pk(id: &DeploymentId) -> String {
    format!("DEP#{id}")
}

/// The partition of an app's index: one item per deployment, sorted by start then id.
pub(super) fn app_pk(app: &AppName) -> String {
    format!("APP#{app}")
}

/// The sort key of a deployment in its app's index: start (unix ms, 15 digits) then id, so
/// that a descending query lists newest start first and same-millisecond starts by id.
pub(super) fn index_sk(created_at: SystemTime, id: &DeploymentId) -> String {
    format!("{:015}#{id}", to_ms(created_at).max(0))
}

/// The mailbox of a deployment: one item per control message, sorted by its ULID key.
pub(super) fn control_pk(id: &DeploymentId) -> String {
    format!("CTL#{id}")
}

/// A control message item.
pub(super) fn control_item(id: &DeploymentId, key_: &str, message: &str) -> Item {
    let mut item = key(control_pk(id), key_);
    let now = now_ms();
    item.insert("at_ms".to_owned(), n(now));
    item.insert("message".to_owned(), s(cap_message(message)));
    // Read within seconds by the running deployer; DynamoDB's TTL deletes it after a week.
    item.insert(
        EXPIRES_AT.to_owned(),
        n(now / 1000 + CONTROL_KEPT.as_secs().cast_signed()),
    );
    item
}

/// A control message from its item.
pub(super) fn decode_control(item: &Item) -> Result<super::control::ControlMessage> {
    let r = Reader {
        item,
        what: "control message attribute",
    };
    Ok(super::control::ControlMessage {
        key: r.s(SK)?.to_owned(),
        at: from_ms(r.n("at_ms")?)?,
        message: r.s("message")?.to_owned(),
    })
}

/// The partition of an app's locks; the sort key is the process.
pub(super) fn lock_pk(app: &AppName) -> String {
    format!("LOCK#{app}")
}

pub(super) fn process_sk(process: &ProcessName) -> String {
    format!("{PROCESS_PREFIX}{process}")
}

/// A new step sort key: a ULID from one monotonic generator per OS process, so steps sort in
/// the order this process wrote them (even within one millisecond), and steps written from
/// different machines sort by their writers' clocks. Generated once per call, before the
/// first attempt: a retried write puts the same item again and never duplicates it.
pub(super) fn new_step_sk() -> String {
    format!("{STEP_PREFIX}{}", new_token())
}

/// A fresh ULID string (26 characters), strictly increasing within this OS process.
pub(super) fn new_token() -> String {
    static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    generator
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk.into()))])
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Unix milliseconds, saturating; times before 1970 are negative.
pub(super) fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

pub(super) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

fn from_ms(ms: i64) -> Result<SystemTime> {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.ok_or_else(|| corrupt("timestamp", &ms.to_string(), "out of this platform's range"))
}

fn corrupt(what: &str, value: &str, e: impl Into<tapitalee_core::BoxError>) -> Error {
    Error::store(
        format!("the DynamoDB store holds an unreadable {what} {value:?}"),
        e,
    )
}

fn parse_status(s: &str) -> Result<DeploymentStatus> {
    s.parse().map_err(|e| corrupt("deployment status", s, e))
}

fn parse_policy(s: &str) -> Result<RollbackPolicy> {
    s.parse().map_err(|e| corrupt("rollback policy", s, e))
}

pub(super) fn status_value(s: DeploymentStatus) -> AttributeValue {
    AttributeValue::S(s.as_str().to_owned())
}

/// Reads attributes of one item, naming the item in errors.
struct Reader<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn opt_s(&self, name: &str) -> Result<Option<&'a str>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(other) => Err(corrupt(self.what, name, format!("not a string: {other:?}"))),
        }
    }

    fn s(&self, name: &str) -> Result<&'a str> {
        self.opt_s(name)?
            .ok_or_else(|| corrupt(self.what, name, "attribute missing"))
    }

    fn opt_n(&self, name: &str) -> Result<Option<i64>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|e| corrupt(self.what, v, e)),
            Some(other) => Err(corrupt(self.what, name, format!("not a number: {other:?}"))),
        }
    }

    fn n(&self, name: &str) -> Result<i64> {
        self.opt_n(name)?
            .ok_or_else(|| corrupt(self.what, name, "attribute missing"))
    }
}

fn parse<'a, T>(what: &str, v: &'a str, f: impl FnOnce(&'a str) -> Result<T>) -> Result<T> {
    f(v).map_err(|e| corrupt(what, v, e))
}

/// The head item of a deployment: everything but its processes and steps. `token` marks the
/// `create` call that wrote it, so a retry of that call recognises its own write.
pub(super) fn head_item(r: &DeploymentRecord, token: &str) -> Item {
    let mut item = key(deployment_pk(&r.id), HEAD);
    let mut put = |k: &str, v: AttributeValue| {
        item.insert(k.to_owned(), v);
    };
    put("app", s(r.app.as_str()));
    put("id", s(r.id.to_string()));
    put("initiator", s(r.initiator.as_str()));
    put("image_repo", s(r.image.repository.clone()));
    put("image_tag", s(r.image.tag.as_str()));
    if let Some(d) = &r.image.digest {
        put("image_digest", s(d.as_str()));
    }
    if let Some(p) = &r.only_process {
        put("only_process", s(p.as_str()));
    }
    put("policy", s(r.policy.as_str()));
    put("status", status_value(r.status));
    put("created_at_ms", n(to_ms(r.created_at)));
    if let Some(t) = r.finished_at {
        put("finished_at_ms", n(to_ms(t)));
    }
    if let Some(id) = &r.resumes {
        put("resumes", s(id.to_string()));
    }
    put("create_token", s(token));
    item
}

/// The app index item of a deployment.
pub(super) fn index_item(r: &DeploymentRecord) -> Item {
    let mut item = key(app_pk(&r.app), index_sk(r.created_at, &r.id));
    item.insert("id".to_owned(), s(r.id.to_string()));
    item
}

/// A process item's record: the process without its steps, as JSON.
pub(super) fn process_json(p: &ProcessRecord) -> Result<String> {
    let bare = ProcessRecord {
        steps: Vec::new(),
        ..p.clone()
    };
    serde_json::to_string(&bare)
        .map_err(|e| Error::store("cannot encode a process record for DynamoDB", e))
}

/// A process item as `create` writes it.
pub(super) fn process_item(id: &DeploymentId, p: &ProcessRecord, ordinal: i64) -> Result<Item> {
    let mut item = key(deployment_pk(id), process_sk(&p.process));
    item.insert("process".to_owned(), s(p.process.as_str()));
    item.insert("ordinal".to_owned(), n(ordinal));
    item.insert("status".to_owned(), s(p.status.to_string()));
    item.insert("record".to_owned(), s(process_json(p)?));
    Ok(item)
}

/// A step item under the sort key `sk`.
pub(super) fn step_item(id: &DeploymentId, sk: String, step: &StepRecord) -> Item {
    let mut item = key(deployment_pk(id), sk);
    item.insert("at_ms".to_owned(), n(to_ms(step.at)));
    if let Some(p) = &step.process {
        item.insert("process".to_owned(), s(p.as_str()));
    }
    item.insert("message".to_owned(), s(cap_message(&step.message)));
    item
}

/// `message`, cut to [`MAX_MESSAGE_BYTES`] at a character boundary.
fn cap_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut cut = MAX_MESSAGE_BYTES - 32;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… ({} more bytes cut)",
        &message[..cut],
        message.len() - cut
    )
}

/// The sort key of an item.
pub(super) fn sort_key(item: &Item) -> Option<&str> {
    match item.get(SK) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

fn decode_head(item: &Item) -> Result<DeploymentRecord> {
    let r = Reader {
        item,
        what: "deployment attribute",
    };
    let tag = parse("docker tag", r.s("image_tag")?, DockerTag::new)?;
    let repo = r.s("image_repo")?;
    let mut image = ImageRef::new(repo, tag).map_err(|e| corrupt("image repository", repo, e))?;
    image.digest = r
        .opt_s("image_digest")?
        .map(|d| parse("image digest", d, Digest::new))
        .transpose()?;
    Ok(DeploymentRecord {
        id: parse("deployment id", r.s("id")?, str::parse)?,
        app: parse("app name", r.s("app")?, AppName::new)?,
        initiator: parse("initiator", r.s("initiator")?, Initiator::new)?,
        image,
        only_process: r
            .opt_s("only_process")?
            .map(|p| parse("process name", p, ProcessName::new))
            .transpose()?,
        policy: parse_policy(r.s("policy")?)?,
        status: parse_status(r.s("status")?)?,
        created_at: from_ms(r.n("created_at_ms")?)?,
        finished_at: r.opt_n("finished_at_ms")?.map(from_ms).transpose()?,
        resumes: r
            .opt_s("resumes")?
            .map(|v| parse("deployment id", v, str::parse))
            .transpose()?,
        steps: Vec::new(),
        processes: Vec::new(),
    })
}

fn decode_process(item: &Item) -> Result<(i64, ProcessRecord)> {
    let r = Reader {
        item,
        what: "process attribute",
    };
    let json = r.s("record")?;
    let p: ProcessRecord = serde_json::from_str(json).map_err(|e| corrupt("process", json, e))?;
    Ok((r.n("ordinal")?, p))
}

fn decode_step(item: &Item) -> Result<StepRecord> {
    let r = Reader {
        item,
        what: "step attribute",
    };
    Ok(StepRecord {
        at: from_ms(r.n("at_ms")?)?,
        process: r
            .opt_s("process")?
            .map(|p| parse("process name", p, ProcessName::new))
            .transpose()?,
        message: r.s("message")?.to_owned(),
    })
}

/// A deployment from the items of its partition in sort key order (head, processes, steps),
/// or `None` without a head. A step about a process the deployment has goes to that process;
/// any other step to the deployment, keeping its `process` field.
pub(super) fn assemble(items: &[Item]) -> Result<Option<DeploymentRecord>> {
    let mut head = None;
    let mut processes = Vec::new();
    let mut steps = Vec::new();
    for item in items {
        match sort_key(item) {
            Some(HEAD) => head = Some(decode_head(item)?),
            Some(k) if k.starts_with(PROCESS_PREFIX) => processes.push(decode_process(item)?),
            Some(k) if k.starts_with(STEP_PREFIX) => steps.push(decode_step(item)?),
            _ => {}
        }
    }
    let Some(mut rec) = head else {
        return Ok(None);
    };
    // Creation order; processes added later come after, in the order they were added.
    processes.sort_by(|(a, pa), (b, pb)| (a, &pa.process).cmp(&(b, &pb.process)));
    rec.processes = processes.into_iter().map(|(_, p)| p).collect();
    for step in steps {
        let owner = step
            .process
            .as_ref()
            .and_then(|name| rec.processes.iter_mut().find(|p| &p.process == name));
        match owner {
            Some(p) => p.steps.push(step),
            None => rec.steps.push(step),
        }
    }
    Ok(Some(rec))
}

/// A lock item's holder and the unix ms from which another deployment may take it.
pub(super) fn decode_lock(item: &Item) -> Result<(DeploymentId, i64)> {
    let r = Reader {
        item,
        what: "lock attribute",
    };
    Ok((
        parse("lock holder", r.s("holder")?, str::parse)?,
        r.n("takeover_at_ms")?,
    ))
}

/// The id in an app index item.
pub(super) fn decode_index(item: &Item) -> Result<DeploymentId> {
    let r = Reader {
        item,
        what: "index attribute",
    };
    parse("deployment id", r.s("id")?, str::parse)
}

/// A lock item for `holder` on `target` until `now + lease`, takeable by others from
/// `now + lease + margin`.
pub(super) fn lock_item(
    target: &Target,
    holder: &DeploymentId,
    now: i64,
    lease: Duration,
    margin: Duration,
) -> Item {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let margin_ms = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
    let expires = now.saturating_add(lease_ms);
    let mut item = key(lock_pk(&target.app), target.process.as_str());
    item.insert("holder".to_owned(), s(holder.to_string()));
    item.insert("expires_at_ms".to_owned(), n(expires));
    item.insert(
        "takeover_at_ms".to_owned(),
        n(expires.saturating_add(margin_ms)),
    );
    item.insert("lease_ms".to_owned(), n(lease_ms));
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = cap_message(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.ends_with("bytes cut)"));
        assert_eq!(cap_message("short"), "short");
    }

    #[test]
    fn index_keys_sort_by_start_then_id() {
        let a = DeploymentId::new();
        let b = DeploymentId::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        assert!(index_sk(t, &a) < index_sk(t, &b));
        assert!(index_sk(t + Duration::from_millis(1), &a) > index_sk(t, &b));
        let step = new_step_sk();
        assert!(
            step.as_str() > HEAD
                && step.as_str() > process_sk(&ProcessName::new("zzz").unwrap()).as_str()
        );
    }
}
