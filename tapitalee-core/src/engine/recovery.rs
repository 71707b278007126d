//! Finding deployments interrupted by a crash, and resuming or rolling them back.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::domain::{AppName, DeploymentId};
use crate::error::{Error, Resource, Result};
use crate::fleet::Target;
use crate::record::{DeploymentRecord, DeploymentStatus, ProcessRecord, ProcessStatus};

use super::driver::{Finish, finish_recorded};
use super::{DeploymentHandle, Engine, Launch, Planned};

impl Engine {
    /// Finds the app's deployments whose deployer stopped mid-way (recorded as running, but
    /// holding no live lock) and marks them [`DeploymentStatus::Interrupted`]. Returns their
    /// ids; [`resume`](Self::resume) or [`rollback`](Self::rollback) each.
    pub async fn recover(&self, app: &AppName) -> Result<Vec<DeploymentId>> {
        let mut found = Vec::new();
        for summary in self.inner.store.list(app, 100).await? {
            if summary.status != DeploymentStatus::Running {
                continue;
            }
            let mut alive = false;
            for p in summary.processes.iter().filter(|p| !p.status.is_final()) {
                let target = Target::new(app.clone(), p.process.clone());
                if self.inner.store.lock_holder(&target).await? == Some(summary.id) {
                    alive = true;
                }
            }
            if alive {
                continue;
            }
            let Some(record) = self.inner.store.get(&summary.id).await? else {
                continue;
            };
            for p in record.processes.iter().filter(|p| !p.status.is_final()) {
                let mut p = p.clone();
                p.status = ProcessStatus::Interrupted;
                self.inner.store.update_process(&record.id, &p).await?;
            }
            self.inner
                .store
                .set_status(&record.id, DeploymentStatus::Interrupted)
                .await?;
            found.push(record.id);
        }
        Ok(found)
    }

    /// Finishes the interrupted processes of an interrupted deployment from the platform's
    /// actual state: a process whose new version is already live on its own (its old fleet
    /// retired or gone) is completed and reported succeeded; the others are rolled back to
    /// what they ran before, from the state the deployment recorded. Returns the updated
    /// record.
    pub async fn rollback(&self, id: &DeploymentId) -> Result<DeploymentRecord> {
        let record = self.interrupted(id).await?;
        self.restore_interrupted(&record, "interrupted; rolled back on request")
            .await?;
        self.get(id).await
    }

    /// Resumes an interrupted deployment: its interrupted processes are first finished as
    /// [`rollback`](Self::rollback) does (removing an orphaned new fleet), then those back on
    /// their previous release are deployed again with the same image digest, initiator and
    /// policy under a new deployment that records which one it resumes.
    pub async fn resume(&self, id: &DeploymentId) -> Result<DeploymentHandle> {
        let record = self.interrupted(id).await?;
        let specs = self.inner.deployer.processes(&record.app).await?;
        for p in record
            .processes
            .iter()
            .filter(|p| p.status == ProcessStatus::Interrupted)
        {
            if !specs.iter().any(|s| s.name == p.process) {
                return Err(Error::not_found(
                    Resource::Process,
                    p.process.as_str(),
                    format!("process no longer exists in app {}", record.app),
                ));
            }
        }
        let restored = self
            .restore_interrupted(&record, "interrupted; restored before resuming")
            .await?;
        let planned = restored
            .iter()
            .filter(|p| {
                matches!(
                    p.status,
                    ProcessStatus::RolledBack { .. } | ProcessStatus::NotStarted { .. }
                )
            })
            .filter_map(|p| specs.iter().find(|s| s.name == p.process))
            .map(|spec| {
                Ok(Planned {
                    strategy: self.strategy_for(&record.app, spec, None)?,
                    spec: spec.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if planned.is_empty() {
            return Err(Error::invalid(
                "deployment",
                id.to_string(),
                "has nothing left to resume: every interrupted process was found completed \
                 on the platform",
            ));
        }
        self.start(Launch {
            app: record.app.clone(),
            image: record.image.clone(),
            initiator: record.initiator.clone(),
            policy: record.policy,
            lock_wait: Duration::ZERO,
            only_process: record.only_process.clone(),
            planned,
            resumes: Some(record.id),
        })
        .await
    }

    async fn interrupted(&self, id: &DeploymentId) -> Result<DeploymentRecord> {
        let record = self.get(id).await?;
        if record.status != DeploymentStatus::Interrupted {
            return Err(Error::invalid(
                "deployment",
                id.to_string(),
                format!(
                    "is {}, not interrupted; only interrupted deployments (see \
                     Engine::recover) can be resumed or rolled back",
                    record.status
                ),
            ));
        }
        Ok(record)
    }

    /// Finishes every interrupted process of `record`; returns the processes' final records
    /// (only those that were interrupted).
    async fn restore_interrupted(
        &self,
        record: &DeploymentRecord,
        reason: &str,
    ) -> Result<Vec<ProcessRecord>> {
        let targets: Vec<Target> = record
            .processes
            .iter()
            .filter(|p| p.status == ProcessStatus::Interrupted)
            .map(|p| Target::new(record.app.clone(), p.process.clone()))
            .collect();
        self.lock_all(&targets, &record.id, Duration::ZERO).await?;
        let (events, _) = broadcast::channel(16);
        let shared = self.shared(record, events);
        let mut statuses = Vec::new();
        let mut restored = Vec::new();
        for p in &record.processes {
            if p.status != ProcessStatus::Interrupted {
                statuses.push(p.status.clone());
                continue;
            }
            let done = finish_recorded(
                &shared,
                &record.app,
                p.clone(),
                reason.to_owned(),
                Finish::Recover,
            )
            .await;
            statuses.push(done.status.clone());
            restored.push(done);
        }
        let overall = DeploymentStatus::from_processes(&statuses);
        self.inner
            .store
            .finish(&record.id, overall, &targets)
            .await?;
        Ok(restored)
    }
}
