//! The deployment engine: validates a request, locks the processes, fans out one independent
//! deployment per process, applies the rollback policy and records everything.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use tracing::{Instrument, info_span, warn};

use crate::control::DeploymentControl;
use crate::domain::{AppName, DeploymentId, ImageRef, Initiator, ProcessName};
use crate::error::{Error, Resource, Result};
use crate::fleet::{ProcessSpec, RolloutControl, Target};
use crate::record::{DeploymentRecord, DeploymentStatus, ProcessRecord, RollbackPolicy};
use crate::rollout::{HealthGate, Shared};
use crate::store::{DeploymentStoreExt, DynDeploymentStore};
use crate::strategy::{DynStrategy, PlatformRollout};
use crate::traits::deployer::DynDeployer;
use crate::traits::health::DynHealthProbe;
use crate::traits::registry::DynImageRegistry;

mod builder;
mod driver;
mod handle;
mod recovery;
mod request;

use driver::Driver;

pub use builder::EngineBuilder;
pub use handle::DeploymentHandle;
pub use request::DeployRequest;

/// The deployment engine. Cheap to clone; every clone shares the same platform and store.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    deployer: DynDeployer,
    registry: DynImageRegistry,
    probe: DynHealthProbe,
    store: DynDeploymentStore,
    strategy: DynStrategy,
    gate: HealthGate,
    concurrency: usize,
    lease: Duration,
}

/// One process to deploy, resolved from a request.
#[derive(Debug, Clone)]
struct Planned {
    spec: ProcessSpec,
    strategy: DynStrategy,
}

/// Everything a deployment starts from, once its request was checked.
#[derive(Debug)]
struct Launch {
    app: AppName,
    image: ImageRef,
    initiator: Initiator,
    policy: RollbackPolicy,
    lock_wait: Duration,
    only_process: Option<ProcessName>,
    planned: Vec<Planned>,
    resumes: Option<DeploymentId>,
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The history store.
    pub fn store(&self) -> &DynDeploymentStore {
        &self.inner.store
    }

    /// Starts a deployment. Everything that can be refused is refused here, before any
    /// change: an unknown app or process, a missing image, a strategy that does not fit a
    /// process, a process locked by another deployment.
    pub async fn deploy(&self, app: &AppName, request: DeployRequest) -> Result<DeploymentHandle> {
        let specs = self.inner.deployer.processes(app).await?;
        let planned = self.plan(app, &specs, &request)?;
        let image = self
            .inner
            .registry
            .resolve(app, &request.docker_tag)
            .await?;
        if image.digest.is_none() {
            return Err(Error::platform(
                "image resolution",
                format!("the registry resolved {image} without a digest"),
            ));
        }
        self.start(Launch {
            app: app.clone(),
            image,
            initiator: request.initiator,
            policy: request.policy,
            lock_wait: request.lock_wait,
            only_process: request.process,
            planned,
            resumes: None,
        })
        .await
    }

    /// The processes a request deploys, each with its strategy, or why the request is refused.
    fn plan(
        &self,
        app: &AppName,
        specs: &[ProcessSpec],
        request: &DeployRequest,
    ) -> Result<Vec<Planned>> {
        let check = |p: &ProcessName| {
            if specs.iter().any(|s| &s.name == p) {
                return Ok(());
            }
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            Err(Error::not_found(
                Resource::Process,
                p.as_str(),
                format!("app {app} has: {}", names.join(", ")),
            ))
        };
        if let Some(p) = &request.process {
            check(p)?;
        }
        for p in request.strategies.keys() {
            check(p)?;
        }
        let planned = specs
            .iter()
            .filter(|s| request.process.as_ref().is_none_or(|p| p == &s.name))
            .map(|spec| {
                let requested = request
                    .strategies
                    .get(&spec.name)
                    .or(request.strategy.as_ref());
                Ok(Planned {
                    strategy: self.strategy_for(app, spec, requested)?,
                    spec: spec.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if planned.is_empty() {
            return Err(Error::not_found(
                Resource::Process,
                "(any)",
                format!("app {app} has no processes to deploy"),
            ));
        }
        Ok(planned)
    }

    /// The strategy a process deploys with. A process whose platform runs the rollout gets
    /// the platform's rollout for the default strategy and for a requested one of the same
    /// kind; any other requested strategy is refused, naming the alternatives.
    fn strategy_for(
        &self,
        app: &AppName,
        spec: &ProcessSpec,
        requested: Option<&DynStrategy>,
    ) -> Result<DynStrategy> {
        match (&spec.rollout, requested) {
            (RolloutControl::Engine, requested) => {
                let strategy = requested.unwrap_or(&self.inner.strategy).clone();
                strategy.validate(spec)?;
                Ok(strategy)
            }
            (RolloutControl::Platform { native, .. }, None) => {
                Ok(Arc::new(PlatformRollout::new(*native)))
            }
            (RolloutControl::Platform { native, .. }, Some(s)) if s.kind() == *native => {
                Ok(Arc::new(PlatformRollout::new(*native)))
            }
            (RolloutControl::Platform { native, by, .. }, Some(s)) => Err(Error::invalid(
                "strategy",
                s.name(),
                format!(
                    "process {} of app {app} is rolled out by its platform ({by}), which runs \
                     a {native} rollout itself and cannot scale or route fleets independently; \
                     deploy it without a strategy of its own (the platform's {native} rollout, \
                     under Tapitalee's health gates), or configure the platform to run a {} \
                     rollout natively",
                    spec.name,
                    s.kind()
                ),
            )),
        }
    }

    async fn start(&self, launch: Launch) -> Result<DeploymentHandle> {
        let id = DeploymentId::new();
        let targets: Vec<Target> = launch
            .planned
            .iter()
            .map(|p| Target::new(launch.app.clone(), p.spec.name.clone()))
            .collect();
        self.lock_all(&targets, &id, launch.lock_wait).await?;
        let record = DeploymentRecord {
            id,
            app: launch.app.clone(),
            initiator: launch.initiator,
            image: launch.image.clone(),
            only_process: launch.only_process,
            policy: launch.policy,
            status: DeploymentStatus::Running,
            created_at: SystemTime::now(),
            finished_at: None,
            resumes: launch.resumes,
            steps: Vec::new(),
            processes: launch
                .planned
                .iter()
                .map(|p| ProcessRecord::pending(p.spec.name.clone(), p.strategy.name()))
                .collect(),
        };
        if let Err(e) = self.inner.store.create(&record).await {
            self.unlock_all(&targets, &id).await;
            return Err(e);
        }
        let (events, first_events) = broadcast::channel(4096);
        let control = DeploymentControl::new();
        let shared = self.shared(&record, events.clone());
        let span =
            info_span!("deploy", app = %launch.app, deployment.id = %id, image = %launch.image);
        let driver = Driver {
            engine: self.clone(),
            shared,
            record,
            planned: launch.planned,
            targets,
            control: control.subscribe(),
        };
        let join = tokio::spawn(driver.run().instrument(span));
        Ok(DeploymentHandle {
            id,
            control,
            first_events: Some(first_events),
            events,
            join,
        })
    }

    /// What the rollouts of a deployment share.
    fn shared(
        &self,
        record: &DeploymentRecord,
        events: broadcast::Sender<crate::event::DeployEvent>,
    ) -> Arc<Shared> {
        Shared::new(
            record.id,
            record.initiator.clone(),
            self.inner.deployer.clone(),
            self.inner.probe.clone(),
            self.inner.store.clone(),
            events,
            self.inner.gate.clone(),
        )
    }

    async fn lock_all(&self, targets: &[Target], id: &DeploymentId, wait: Duration) -> Result<()> {
        let give_up = tokio::time::Instant::now() + wait;
        // The first attempt asks for every lock at once, so a store with group commit takes
        // them in a few transactions. Should another deployment hold one, later attempts go one
        // at a time in order, as two deployments contending for the same processes must, or
        // each could keep defeating the other.
        let mut at_once = true;
        loop {
            let (store, lease) = (&self.inner.store, self.inner.lease);
            let answers = if at_once {
                futures::future::join_all(targets.iter().map(|t| store.try_lock(t, id, lease)))
                    .await
            } else {
                let mut answers = Vec::with_capacity(targets.len());
                for t in targets {
                    let got = store.try_lock(t, id, lease).await;
                    let stop = !matches!(got, Ok(None));
                    answers.push(got);
                    if stop {
                        break;
                    }
                }
                answers
            };
            let (mut held, mut failed, mut taken) = (None, None, Vec::new());
            for (t, got) in targets.iter().zip(answers) {
                match got {
                    Ok(None) => taken.push(t.clone()),
                    Ok(Some(holder)) => {
                        held.get_or_insert((t.clone(), holder));
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                self.unlock_all(&taken, id).await;
                return Err(e);
            }
            let Some((target, holder)) = held else {
                return Ok(());
            };
            self.unlock_all(&taken, id).await;
            if std::mem::take(&mut at_once) {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= give_up {
                return Err(self.locked(&target, holder).await);
            }
            tokio::time::sleep((give_up - now).min(Duration::from_secs(1))).await;
        }
    }

    /// The refusal for a process `holder` holds: with the holder's initiator and start time
    /// from its record, read once here (so every store gives them). A holder whose record is
    /// not written yet (it writes it just after taking its locks) or a failed read leaves
    /// them unknown; the refusal stands either way.
    async fn locked(&self, target: &Target, holder: DeploymentId) -> Error {
        let record = match self.inner.store.get(&holder).await {
            Ok(record) => record,
            Err(e) => {
                warn!(error = %e, deployment.id = %holder, "could not read the lock holder's record");
                None
            }
        };
        Error::Locked {
            app: target.app.to_string(),
            process: target.process.to_string(),
            holder,
            initiator: record.as_ref().map(|r| r.initiator.to_string()),
            started_at: record.map(|r| r.created_at),
        }
    }

    async fn unlock_all(&self, targets: &[Target], id: &DeploymentId) {
        // At once: a store with group commit releases them in a few transactions.
        let released =
            futures::future::join_all(targets.iter().map(|t| self.inner.store.unlock(t, id))).await;
        for (t, r) in targets.iter().zip(released) {
            if let Err(e) = r {
                warn!(error = %e, target = %t, "could not release a process lock; it expires with its lease");
            }
        }
    }

    /// The app's most recent deployment, with every step.
    pub async fn latest(&self, app: &AppName) -> Result<Option<DeploymentRecord>> {
        self.inner.store.latest(app).await
    }

    /// The app's deployments, newest first.
    pub async fn list(&self, app: &AppName, limit: usize) -> Result<Vec<DeploymentRecord>> {
        self.inner.store.list(app, limit).await
    }

    /// One deployment with every step, or [`Error::NotFound`].
    pub async fn get(&self, id: &DeploymentId) -> Result<DeploymentRecord> {
        self.inner.store.get(id).await?.ok_or_else(|| {
            Error::not_found(
                Resource::Deployment,
                id.to_string(),
                "list the app's deployments for their ids",
            )
        })
    }
}
