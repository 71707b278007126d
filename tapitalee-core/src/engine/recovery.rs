//! Finding deployments interrupted by a crash, and resuming or rolling them back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::domain::{AppName, DeploymentId, ProcessName};
use crate::error::{Error, Resource, Result};
use crate::fleet::Target;
use crate::record::{DeploymentRecord, DeploymentStatus, ProcessStatus};
use crate::rollout::Shared;

use super::driver::restore_recorded;
use super::{DeploymentHandle, Engine, Planned};

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

    /// Rolls back the interrupted processes of an interrupted deployment to what they ran
    /// before it, from the platform state it recorded. Returns the updated record.
    pub async fn rollback(&self, id: &DeploymentId) -> Result<DeploymentRecord> {
        let record = self.interrupted(id).await?;
        self.restore_interrupted(&record, "interrupted; rolled back on request")
            .await?;
        self.get(id).await
    }

    /// Resumes an interrupted deployment: the processes it left half-way are first restored
    /// to their previous release (removing the orphaned new fleet), then deployed again with
    /// the same image digest, initiator and policy under a new deployment that records which
    /// one it resumes.
    pub async fn resume(&self, id: &DeploymentId) -> Result<DeploymentHandle> {
        let record = self.interrupted(id).await?;
        let names: Vec<ProcessName> = record
            .processes
            .iter()
            .filter(|p| p.status == ProcessStatus::Interrupted)
            .map(|p| p.process.clone())
            .collect();
        let specs = self.inner.deployer.processes(&record.app).await?;
        let planned = names
            .iter()
            .map(|n| {
                let spec = specs.iter().find(|s| &s.name == n).ok_or_else(|| {
                    Error::not_found(
                        Resource::Process,
                        n.as_str(),
                        format!("process no longer exists in app {}", record.app),
                    )
                })?;
                Ok(Planned {
                    spec: spec.clone(),
                    strategy: self.inner.strategy.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.restore_interrupted(&record, "interrupted; restored before resuming")
            .await?;
        self.start(
            &record.app,
            record.image.clone(),
            record.initiator.clone(),
            record.policy,
            Duration::ZERO,
            record.only_process.clone(),
            planned,
            Some(record.id),
        )
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

    async fn restore_interrupted(&self, record: &DeploymentRecord, reason: &str) -> Result<()> {
        let targets: Vec<Target> = record
            .processes
            .iter()
            .filter(|p| p.status == ProcessStatus::Interrupted)
            .map(|p| Target::new(record.app.clone(), p.process.clone()))
            .collect();
        self.lock_all(&targets, &record.id, Duration::ZERO).await?;
        let (events, _) = broadcast::channel(16);
        let shared = Arc::new(Shared {
            deployment: record.id,
            deployer: self.inner.deployer.clone(),
            probe: self.inner.probe.clone(),
            store: self.inner.store.clone(),
            events,
            gate: self.inner.gate.clone(),
        });
        let specs = self.inner.deployer.processes(&record.app).await?;
        let mut statuses = Vec::new();
        for p in &record.processes {
            if p.status != ProcessStatus::Interrupted {
                statuses.push(p.status.clone());
                continue;
            }
            let load_balanced = specs.iter().any(|s| s.name == p.process && s.load_balanced);
            let restored = restore_recorded(&shared, &record.app, p, load_balanced, reason).await;
            statuses.push(restored.status);
        }
        let overall = DeploymentStatus::from_processes(&statuses);
        self.inner.store.set_status(&record.id, overall).await?;
        self.unlock_all(&targets, &record.id).await;
        Ok(())
    }
}
