//! [`HealthProbe`]: is a fleet healthy? Probes compose with [`all_of`] / [`any_of`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fleet::{Fleet, FleetStatus, InstanceStatus};

/// A probe's verdict on one fleet at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// How many instances pass this probe now.
    pub healthy: u32,
    /// Why the others do not, in words (one line each; empty when all pass).
    pub problems: Vec<String>,
}

/// Judges a fleet's health from its status (and whatever else it consults: load balancer target
/// health, metrics, alarms).
///
/// The engine fetches the [`FleetStatus`] once per poll and hands it to the probe, so a probe
/// that needs only instance states makes no platform call.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync + fmt::Debug + 'static {
    /// A short name for events and reasons ("container", "load-balancer", …).
    fn name(&self) -> &str;

    /// How healthy the fleet is now.
    async fn check(&self, fleet: &Fleet, status: &FleetStatus) -> Result<HealthReport>;
}

/// A shared probe, as the engine holds it.
pub type DynHealthProbe = Arc<dyn HealthProbe>;

/// Container health: an instance is healthy when it runs and its health check (if any) passes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerHealth;

#[async_trait]
impl HealthProbe for ContainerHealth {
    fn name(&self) -> &str {
        "container"
    }

    async fn check(&self, _fleet: &Fleet, status: &FleetStatus) -> Result<HealthReport> {
        let mut report = HealthReport::default();
        for i in &status.instances {
            match &i.status {
                InstanceStatus::Running {
                    healthy: Some(true) | None,
                } => report.healthy += 1,
                InstanceStatus::Running {
                    healthy: Some(false),
                } => report
                    .problems
                    .push(format!("instance {} fails its health check", i.id)),
                InstanceStatus::Pending => {}
                InstanceStatus::Stopped { reason, exit_code } => {
                    report.problems.push(match exit_code {
                        Some(code) => {
                            format!("instance {} stopped: {reason} (exit code {code})", i.id)
                        }
                        None => format!("instance {} stopped: {reason}", i.id),
                    })
                }
            }
        }
        Ok(report)
    }
}

/// A probe passing an instance only when every inner probe does: the healthy count is the
/// smallest of theirs.
#[derive(Debug, Clone)]
pub struct AllOf {
    name: String,
    probes: Vec<DynHealthProbe>,
}

/// A probe passing an instance when any inner probe does: the healthy count is the largest.
#[derive(Debug, Clone)]
pub struct AnyOf {
    name: String,
    probes: Vec<DynHealthProbe>,
}

/// All of these probes must pass.
pub fn all_of(probes: Vec<DynHealthProbe>) -> AllOf {
    let name = join_names(&probes, " and ");
    AllOf { name, probes }
}

/// Any of these probes may pass.
pub fn any_of(probes: Vec<DynHealthProbe>) -> AnyOf {
    let name = join_names(&probes, " or ");
    AnyOf { name, probes }
}

fn join_names(probes: &[DynHealthProbe], sep: &str) -> String {
    probes
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(sep)
}

async fn check_all(
    probes: &[DynHealthProbe],
    fleet: &Fleet,
    status: &FleetStatus,
) -> Result<Vec<HealthReport>> {
    futures::future::try_join_all(probes.iter().map(|p| p.check(fleet, status))).await
}

#[async_trait]
impl HealthProbe for AllOf {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, fleet: &Fleet, status: &FleetStatus) -> Result<HealthReport> {
        let reports = check_all(&self.probes, fleet, status).await?;
        Ok(HealthReport {
            healthy: reports
                .iter()
                .map(|r| r.healthy)
                .min()
                .unwrap_or(status.desired),
            problems: reports.into_iter().flat_map(|r| r.problems).collect(),
        })
    }
}

#[async_trait]
impl HealthProbe for AnyOf {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, fleet: &Fleet, status: &FleetStatus) -> Result<HealthReport> {
        let reports = check_all(&self.probes, fleet, status).await?;
        let best = reports.iter().map(|r| r.healthy).max().unwrap_or(0);
        Ok(HealthReport {
            healthy: best,
            problems: if best >= status.desired {
                Vec::new()
            } else {
                reports.into_iter().flat_map(|r| r.problems).collect()
            },
        })
    }
}

/// Conveniences on every probe.
pub trait HealthProbeExt: HealthProbe + Sized {
    /// This probe and another must both pass.
    fn and(self, other: impl HealthProbe) -> AllOf {
        all_of(vec![Arc::new(self), Arc::new(other)])
    }

    /// This probe or another must pass.
    fn or(self, other: impl HealthProbe) -> AnyOf {
        any_of(vec![Arc::new(self), Arc::new(other)])
    }
}

impl<P: HealthProbe> HealthProbeExt for P {}
