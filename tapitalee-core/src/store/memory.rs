//! An in-process store.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use async_trait::async_trait;

use super::DeploymentStore;
use crate::domain::{AppName, DeploymentId, ProcessName};
use crate::error::{Error, Resource, Result};
use crate::fleet::Target;
use crate::record::{DeploymentRecord, DeploymentStatus, ProcessRecord, RolloutState, StepRecord};

/// Keeps history and locks in memory: for tests, benchmarks and single-process tools.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    deployments: BTreeMap<DeploymentId, Entry>,
    locks: HashMap<Target, (DeploymentId, Instant)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A process's record (if given) and steps, under one lock.
    fn record(
        &self,
        id: &DeploymentId,
        process: Option<&ProcessRecord>,
        steps: &[StepRecord],
    ) -> Result<()> {
        self.with(|inner| {
            let entry = inner.deployments.get_mut(id).ok_or_else(|| missing(id))?;
            if let Some(process) = process {
                match entry.process_mut(&process.process) {
                    Some(p) => update_in_place(p, process),
                    None => {
                        let mut p = process.clone();
                        p.steps.clear();
                        let at = entry.record.processes.len();
                        entry.index.insert(p.process.clone(), at);
                        entry.record.processes.push(p);
                    }
                }
            }
            for step in steps {
                match step
                    .process
                    .as_ref()
                    .and_then(|name| entry.process_mut(name))
                {
                    Some(p) => p.steps.push(step.clone()),
                    None => entry.record.steps.push(step.clone()),
                }
            }
            Ok(())
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::store("memory store poisoned by a panic", "poisoned"))?;
        f(&mut inner)
    }
}

/// A deployment and the position of each of its processes, so updates are O(1) even for
/// apps of thousands of processes.
#[derive(Debug)]
struct Entry {
    record: DeploymentRecord,
    index: HashMap<ProcessName, usize>,
}

impl Entry {
    fn process_mut(&mut self, name: &ProcessName) -> Option<&mut ProcessRecord> {
        let at = *self.index.get(name)?;
        self.record.processes.get_mut(at)
    }
}

/// Copies `from` into `to` except its steps, cloning only what changed: a rollout persists its
/// record after every platform change, and most fields (revisions, fleets) stay the same.
fn update_in_place(to: &mut ProcessRecord, from: &ProcessRecord) {
    fn assign<T: Clone + PartialEq>(to: &mut T, from: &T) {
        if to != from {
            to.clone_from(from);
        }
    }
    let ProcessRecord {
        process,
        strategy,
        status,
        from: from_revision,
        to: to_revision,
        started_at,
        finished_at,
        state,
        steps: _,
    } = from;
    assign(&mut to.process, process);
    assign(&mut to.strategy, strategy);
    assign(&mut to.status, status);
    assign(&mut to.from, from_revision);
    assign(&mut to.to, to_revision);
    assign(&mut to.started_at, started_at);
    assign(&mut to.finished_at, finished_at);
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
    let s = &mut to.state;
    s.desired = *desired;
    s.load_balanced = *load_balanced;
    s.platform_run = *platform_run;
    s.platform_bake = *platform_bake;
    assign(&mut s.stable, stable);
    assign(&mut s.candidate, candidate);
    s.stable_desired = *stable_desired;
    s.stable_count = *stable_count;
    s.candidate_count = *candidate_count;
    s.candidate_weight = *candidate_weight;
    s.candidate_primary = *candidate_primary;
    s.stable_retired = *stable_retired;
    s.launching = *launching;
    s.steps_done = *steps_done;
}

fn set_status(inner: &mut Inner, id: &DeploymentId, status: DeploymentStatus) -> Result<()> {
    let rec = &mut inner
        .deployments
        .get_mut(id)
        .ok_or_else(|| missing(id))?
        .record;
    rec.status = status;
    rec.finished_at = status.is_final().then(SystemTime::now);
    Ok(())
}

fn missing(id: &DeploymentId) -> Error {
    Error::not_found(Resource::Deployment, id.to_string(), "")
}

#[async_trait]
impl DeploymentStore for MemoryStore {
    async fn create(&self, record: &DeploymentRecord) -> Result<()> {
        self.with(|inner| {
            if inner.deployments.contains_key(&record.id) {
                return Err(Error::store(
                    format!("deployment {} already exists", record.id),
                    "duplicate id",
                ));
            }
            let mut record = record.clone();
            let mut index = HashMap::with_capacity(record.processes.len());
            for (at, p) in record.processes.iter_mut().enumerate() {
                p.steps.clear();
                index.insert(p.process.clone(), at);
            }
            inner.deployments.insert(record.id, Entry { record, index });
            Ok(())
        })
    }

    async fn update_process(&self, id: &DeploymentId, process: &ProcessRecord) -> Result<()> {
        self.with(|inner| {
            let entry = inner.deployments.get_mut(id).ok_or_else(|| missing(id))?;
            match entry.process_mut(&process.process) {
                Some(p) => update_in_place(p, process),
                None => {
                    let mut p = process.clone();
                    p.steps.clear();
                    let at = entry.record.processes.len();
                    entry.index.insert(p.process.clone(), at);
                    entry.record.processes.push(p);
                }
            }
            Ok(())
        })
    }

    async fn record_change(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
        step: &StepRecord,
    ) -> Result<()> {
        self.record(id, Some(process), std::slice::from_ref(step))
    }

    async fn record_changes(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
        steps: &[StepRecord],
    ) -> Result<()> {
        self.record(id, Some(process), steps)
    }

    async fn append_steps(&self, id: &DeploymentId, steps: &[StepRecord]) -> Result<()> {
        self.record(id, None, steps)
    }

    async fn append_step(&self, id: &DeploymentId, step: &StepRecord) -> Result<()> {
        self.record(id, None, std::slice::from_ref(step))
    }

    async fn set_status(&self, id: &DeploymentId, status: DeploymentStatus) -> Result<()> {
        self.with(|inner| set_status(inner, id, status))
    }

    async fn finish(
        &self,
        id: &DeploymentId,
        status: DeploymentStatus,
        targets: &[Target],
    ) -> Result<()> {
        self.with(|inner| {
            set_status(inner, id, status)?;
            for t in targets {
                if inner.locks.get(t).is_some_and(|(h, _)| h == id) {
                    inner.locks.remove(t);
                }
            }
            Ok(())
        })
    }

    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>> {
        self.with(|inner| Ok(inner.deployments.get(id).map(|e| e.record.clone())))
    }

    async fn list(&self, app: &AppName, limit: usize) -> Result<Vec<DeploymentRecord>> {
        self.with(|inner| {
            // Newest start first; ids break ties (they increase within a process).
            let mut mine: Vec<&DeploymentRecord> = inner
                .deployments
                .values()
                .map(|e| &e.record)
                .filter(|r| &r.app == app)
                .collect();
            mine.sort_unstable_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
            Ok(mine
                .into_iter()
                .take(limit)
                .map(|r| {
                    let mut r = r.clone();
                    r.steps.clear();
                    for p in &mut r.processes {
                        p.steps.clear();
                    }
                    r
                })
                .collect())
        })
    }

    async fn try_lock(
        &self,
        target: &Target,
        holder: &DeploymentId,
        lease: Duration,
    ) -> Result<Option<DeploymentId>> {
        self.with(|inner| {
            let now = Instant::now();
            match inner.locks.get(target) {
                Some((other, until)) if other != holder && *until > now => Ok(Some(*other)),
                _ => {
                    inner.locks.insert(target.clone(), (*holder, now + lease));
                    Ok(None)
                }
            }
        })
    }

    async fn unlock(&self, target: &Target, holder: &DeploymentId) -> Result<()> {
        self.with(|inner| {
            if inner.locks.get(target).is_some_and(|(h, _)| h == holder) {
                inner.locks.remove(target);
            }
            Ok(())
        })
    }

    async fn lock_holder(&self, target: &Target) -> Result<Option<DeploymentId>> {
        self.with(|inner| {
            Ok(inner
                .locks
                .get(target)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(h, _)| *h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::store::conformance::run_all(&MemoryStore::new()).await;
    }
}
