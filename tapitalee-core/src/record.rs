//! The audit trail: what a deployment was asked to do, what each process went through, and how
//! it ended. The engine writes these to a [`DeploymentStore`](crate::store::DeploymentStore) as
//! they happen.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::domain::{AppName, DeploymentId, ImageRef, Initiator, ProcessName};
use crate::error::Error;
use crate::fleet::{Fleet, Revision};

/// What to do with processes that succeeded when another failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RollbackPolicy {
    /// A failed process rolls back alone; the others stay on the new version (the default).
    #[default]
    Independent,
    /// Any failure rolls every process back, so the app never runs mixed versions.
    AllOrNothing,
}

impl RollbackPolicy {
    /// Every policy, in the order of their names' documentation.
    pub const ALL: [RollbackPolicy; 2] =
        [RollbackPolicy::Independent, RollbackPolicy::AllOrNothing];

    /// Its name, as shown and as stored: `independent` or `all-or-nothing`.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackPolicy::Independent => "independent",
            RollbackPolicy::AllOrNothing => "all-or-nothing",
        }
    }
}

impl fmt::Display for RollbackPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for RollbackPolicy {
    type Err = Error;

    /// Parses a name [`as_str`](Self::as_str) gives.
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_name(s, "rollback policy", &Self::ALL, |p| p.as_str())
    }
}

/// The value among `all` whose name is `s`, or an error naming the valid ones.
fn parse_name<T: Copy>(
    s: &str,
    what: &'static str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, Error> {
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
        Error::invalid(what, s, format!("use one of: {}", names.join(", ")))
    })
}

/// Where a process's deployment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessStatus {
    /// Waiting for a concurrency slot.
    Pending,
    /// Being deployed.
    Running,
    /// Runs the new version.
    Succeeded,
    /// Failed and runs its previous version again.
    RolledBack {
        /// Why it failed.
        reason: String,
    },
    /// Failed, and restoring the previous version failed too: needs attention.
    RollbackFailed {
        /// Why.
        reason: String,
    },
    /// Its deployer stopped (crashed) mid-way; resume or roll back.
    Interrupted,
    /// Left untouched: cancelled or failed before anything changed.
    NotStarted {
        /// Why.
        reason: String,
    },
}

impl ProcessStatus {
    /// Whether the process's deployment has ended.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ProcessStatus::Succeeded
                | ProcessStatus::RolledBack { .. }
                | ProcessStatus::RollbackFailed { .. }
                | ProcessStatus::NotStarted { .. }
        )
    }
}

impl fmt::Display for ProcessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessStatus::Pending => f.write_str("pending"),
            ProcessStatus::Running => f.write_str("running"),
            ProcessStatus::Succeeded => f.write_str("succeeded"),
            ProcessStatus::RolledBack { reason } => write!(f, "rolled back ({reason})"),
            ProcessStatus::RollbackFailed { reason } => write!(f, "ROLLBACK FAILED ({reason})"),
            ProcessStatus::Interrupted => f.write_str("interrupted"),
            ProcessStatus::NotStarted { reason } => write!(f, "not started ({reason})"),
        }
    }
}

/// Where a whole deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeploymentStatus {
    /// In progress.
    Running,
    /// Every process runs the new version.
    Succeeded,
    /// Some processes run the new version, others their previous one (mixed versions).
    Partial,
    /// No process runs the new version.
    Failed,
    /// The deployer stopped mid-way; resume or roll back.
    Interrupted,
}

impl DeploymentStatus {
    /// The overall status implied by per-process outcomes.
    pub fn from_processes<'a>(statuses: impl IntoIterator<Item = &'a ProcessStatus>) -> Self {
        let (mut ok, mut bad, mut open) = (0, 0, 0);
        for s in statuses {
            match s {
                ProcessStatus::Succeeded => ok += 1,
                ProcessStatus::RolledBack { .. }
                | ProcessStatus::RollbackFailed { .. }
                | ProcessStatus::NotStarted { .. } => bad += 1,
                ProcessStatus::Interrupted => return DeploymentStatus::Interrupted,
                ProcessStatus::Pending | ProcessStatus::Running => open += 1,
            }
        }
        match (ok, bad, open) {
            (_, _, o) if o > 0 => DeploymentStatus::Running,
            (_, 0, _) => DeploymentStatus::Succeeded,
            (0, _, _) => DeploymentStatus::Failed,
            _ => DeploymentStatus::Partial,
        }
    }

    /// Whether the deployment has ended.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            DeploymentStatus::Running | DeploymentStatus::Interrupted
        )
    }
}

impl DeploymentStatus {
    /// Every status.
    pub const ALL: [DeploymentStatus; 5] = [
        DeploymentStatus::Running,
        DeploymentStatus::Succeeded,
        DeploymentStatus::Partial,
        DeploymentStatus::Failed,
        DeploymentStatus::Interrupted,
    ];

    /// Its name, as shown and as stored (`running`, `succeeded`, `partial`, `failed`,
    /// `interrupted`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Running => "running",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Partial => "partial",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for DeploymentStatus {
    type Err = Error;

    /// Parses a name [`as_str`](Self::as_str) gives.
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_name(s, "deployment status", &Self::ALL, |v| v.as_str())
    }
}

/// The platform state a process's rollout has reached, persisted after every change so a
/// rollback (even after a crash, by another process) knows exactly what to undo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RolloutState {
    /// How many instances the process runs when the deployment is done.
    pub desired: u32,
    /// Whether a load balancer fronts the process (its traffic can be split between fleets).
    pub load_balanced: bool,
    /// Whether the platform runs the rollout itself
    /// ([`RolloutControl::Platform`](crate::RolloutControl::Platform)): a rollback then
    /// retires the new fleet first, and the platform brings the old one back.
    pub platform_run: bool,
    /// How long the platform's own rollout waits on purpose (its bakes): added to the
    /// progress deadline of the new fleet's health gate.
    pub platform_bake: std::time::Duration,
    /// The fleet live before the deployment (the rollback target), if any.
    pub stable: Option<Fleet>,
    /// Instances the stable fleet ran before the deployment.
    pub stable_desired: u32,
    /// Instances the stable fleet is asked to run now.
    pub stable_count: u32,
    /// The new fleet, once launched.
    pub candidate: Option<Fleet>,
    /// Instances the new fleet is asked to run now.
    pub candidate_count: u32,
    /// Percent of traffic routed to the new fleet.
    pub candidate_weight: u8,
    /// Whether the new fleet was made the live (primary) one.
    pub candidate_primary: bool,
    /// Whether the stable fleet was retired (the deployment can no longer be undone in place).
    pub stable_retired: bool,
    /// Whether a launch of the new revision was sent and its fleet is not recorded yet
    /// (written before the launch, cleared with the fleet it returns). A deployer that dies
    /// in between leaves it set: recovery then asks the platform for the fleet
    /// ([`Deployer::discover`](crate::Deployer::discover)) before rolling back or resuming.
    /// Records written before this field existed read it as `false`.
    pub launching: bool,
    /// Steps taken so far.
    pub steps_done: u32,
}

impl RolloutState {
    /// The old fleet, while it still exists (not retired).
    pub fn live_stable(&self) -> Option<&Fleet> {
        self.stable.as_ref().filter(|_| !self.stable_retired)
    }

    /// Whether the new fleet is the process's live release: primary, and taking all the
    /// traffic when load-balanced.
    pub fn candidate_live(&self) -> bool {
        self.candidate.is_some()
            && self.candidate_primary
            && (!self.load_balanced || self.candidate_weight == 100)
    }
}

/// One line of a deployment's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// When.
    pub at: SystemTime,
    /// The process, or `None` for deployment-level steps.
    pub process: Option<ProcessName>,
    /// What happened, in words.
    pub message: String,
}

/// One process's part in a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The process.
    pub process: ProcessName,
    /// The strategy's name.
    pub strategy: String,
    /// Where it stands.
    pub status: ProcessStatus,
    /// The revision it ran before.
    pub from: Option<Revision>,
    /// The revision it is moving to, once prepared.
    pub to: Option<Revision>,
    /// When its deployment started.
    pub started_at: Option<SystemTime>,
    /// When its deployment ended.
    pub finished_at: Option<SystemTime>,
    /// The platform state reached.
    pub state: RolloutState,
    /// Its steps, oldest first (filled by [`DeploymentStore::get`](crate::store::DeploymentStore::get)).
    pub steps: Vec<StepRecord>,
}

impl ProcessRecord {
    /// A process not started yet.
    pub fn pending(process: ProcessName, strategy: impl Into<String>) -> Self {
        ProcessRecord {
            process,
            strategy: strategy.into(),
            status: ProcessStatus::Pending,
            from: None,
            to: None,
            started_at: None,
            finished_at: None,
            state: RolloutState::default(),
            steps: Vec::new(),
        }
    }

    /// How long it took (or has taken so far, if `now` is given and it is still running).
    pub fn duration(&self) -> Option<Duration> {
        let start = self.started_at?;
        let end = self.finished_at?;
        end.duration_since(start).ok()
    }
}

/// One deployment: request, per-process records and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// Its id.
    pub id: DeploymentId,
    /// The app.
    pub app: AppName,
    /// Who started it.
    pub initiator: Initiator,
    /// The image, pinned by digest.
    pub image: ImageRef,
    /// The single process asked for, or `None` for the whole app.
    pub only_process: Option<ProcessName>,
    /// The rollback policy.
    pub policy: RollbackPolicy,
    /// Where it stands.
    pub status: DeploymentStatus,
    /// When it started.
    pub created_at: SystemTime,
    /// When it ended.
    pub finished_at: Option<SystemTime>,
    /// The deployment this one resumes, if any.
    pub resumes: Option<DeploymentId>,
    /// Deployment-level steps (per-process steps are on each process).
    pub steps: Vec<StepRecord>,
    /// One record per process.
    pub processes: Vec<ProcessRecord>,
}

impl DeploymentRecord {
    /// The record of one process.
    pub fn process(&self, name: &ProcessName) -> Option<&ProcessRecord> {
        self.processes.iter().find(|p| &p.process == name)
    }

    /// How long it took, once finished.
    pub fn duration(&self) -> Option<Duration> {
        self.finished_at?.duration_since(self.created_at).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for s in DeploymentStatus::ALL {
            assert_eq!(s.as_str().parse::<DeploymentStatus>().unwrap(), s);
            assert_eq!(s.to_string(), s.as_str());
        }
        for p in RollbackPolicy::ALL {
            assert_eq!(p.as_str().parse::<RollbackPolicy>().unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
        }
        let e = "all_or_nothing"
            .parse::<RollbackPolicy>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("all_or_nothing") && e.contains("independent, all-or-nothing"),
            "{e}"
        );
        let e = "done".parse::<DeploymentStatus>().unwrap_err().to_string();
        assert!(e.contains("done") && e.contains("interrupted"), "{e}");
    }

    #[test]
    fn a_rollout_state_written_before_launching_existed_reads_as_not_launching() {
        let old = r#"{"desired":2,"load_balanced":true,"platform_run":false,
            "platform_bake":{"secs":0,"nanos":0},"stable":null,"stable_desired":2,
            "stable_count":2,"candidate":null,"candidate_count":0,"candidate_weight":0,
            "candidate_primary":false,"stable_retired":false,"steps_done":1}"#;
        let state: RolloutState = serde_json::from_str(old).unwrap();
        assert!(!state.launching);
        assert_eq!(state.desired, 2);
        let mut state = state;
        state.launching = true;
        let back: RolloutState =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert!(back.launching);
    }
}
