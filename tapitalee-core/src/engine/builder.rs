//! [`EngineBuilder`].

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::rollout::HealthGate;
use crate::store::{DynDeploymentStore, MemoryStore};
use crate::strategy::DynStrategy;
use crate::traits::deployer::DynDeployer;
use crate::traits::health::{ContainerHealth, DynHealthProbe, all_of};
use crate::traits::registry::DynImageRegistry;

use super::{Engine, Inner};

/// Builds an [`Engine`].
#[derive(Debug, Default)]
#[must_use]
pub struct EngineBuilder {
    deployer: Option<DynDeployer>,
    registry: Option<DynImageRegistry>,
    probe: Option<DynHealthProbe>,
    store: Option<DynDeploymentStore>,
    strategy: Option<DynStrategy>,
    gate: HealthGate,
    concurrency: Option<usize>,
    lease: Option<Duration>,
}

impl EngineBuilder {
    /// The platform (required).
    pub fn deployer(mut self, deployer: DynDeployer) -> Self {
        self.deployer = Some(deployer);
        self
    }

    /// The image registry (required).
    pub fn registry(mut self, registry: DynImageRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The health probe (default: [`ContainerHealth`], and the platform's load balancer
    /// target health where it has one: [`Deployer::target_health`](crate::Deployer::target_health)).
    pub fn probe(mut self, probe: DynHealthProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The history and lock store (default: a [`MemoryStore`]).
    pub fn store(mut self, store: DynDeploymentStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The strategy for processes a request does not give one (required).
    pub fn default_strategy(mut self, strategy: DynStrategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// The health gate (default: [`HealthGate::default`]).
    pub fn health_gate(mut self, gate: HealthGate) -> Self {
        self.gate = gate;
        self
    }

    /// How many processes deploy at once (default 16).
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// How long a process lock lives without renewal (default 60 s). A crashed deployer's
    /// locks expire after this.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The engine, or [`Error::InvalidInput`] naming what is missing.
    pub fn build(self) -> Result<Engine> {
        fn required<T>(v: Option<T>, what: &'static str) -> Result<T> {
            v.ok_or_else(|| {
                Error::invalid(
                    "engine configuration",
                    what,
                    format!("is required; call EngineBuilder::{what}(...)"),
                )
            })
        }
        let concurrency = self.concurrency.unwrap_or(16);
        if concurrency == 0 {
            return Err(Error::invalid(
                "concurrency",
                "0",
                "must be at least 1 process at a time",
            ));
        }
        let lease = self.lease.unwrap_or(Duration::from_secs(60));
        if lease < Duration::from_millis(100) {
            return Err(Error::invalid(
                "lock lease",
                format!("{lease:?}"),
                "must be at least 100ms so renewals can keep up",
            ));
        }
        if self.gate.poll_interval.is_zero() {
            return Err(Error::invalid(
                "health gate poll interval",
                "0s",
                "must be above zero, or the gate would poll the platform in a tight loop; \
                 the default is 5s",
            ));
        }
        if self.gate.progress_deadline.is_zero() {
            return Err(Error::invalid(
                "health gate progress deadline",
                "0s",
                "must be above zero, or no fleet could ever become healthy; the default is 10m",
            ));
        }
        if self.gate.failure_threshold == Some(0) {
            return Err(Error::invalid(
                "health gate failure threshold",
                "0",
                "must be at least 1 instance failure; None uses ECS's rule (half the desired \
                 count, 3 to 200)",
            ));
        }
        let deployer = required(self.deployer, "deployer")?;
        let probe = self
            .probe
            .unwrap_or_else(|| match deployer.target_health() {
                Some(lb) => Arc::new(all_of(vec![Arc::new(ContainerHealth), lb])),
                None => Arc::new(ContainerHealth),
            });
        Ok(Engine {
            inner: Arc::new(Inner {
                deployer,
                registry: required(self.registry, "registry")?,
                probe,
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                strategy: required(self.strategy, "default_strategy")?,
                gate: self.gate,
                concurrency,
                lease,
            }),
        })
    }
}
