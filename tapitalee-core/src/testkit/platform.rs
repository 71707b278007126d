//! [`InMemoryPlatform`]: a simulated platform with scripted behaviour per image.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::domain::{AppName, Digest, DockerTag, ImageRef, ProcessName};
use crate::error::{Error, Resource, Result};
use crate::fleet::{
    Fleet, FleetId, FleetStatus, InstanceStatus, ProcessSpec, Release, Revision, RolloutControl,
    RolloutKind, Target, TrafficWeight,
};
use crate::traits::deployer::{DeployContext, Deployer};
use crate::traits::health::{DynHealthProbe, HealthProbe, HealthReport};
use crate::traits::registry::{ImageInfo, ImageRegistry, RegistryCredentials, Secret};

use super::behavior::Behavior;
use super::sim::SimFleet;

/// A platform operation, for fault injection and call recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Op {
    Processes,
    Current,
    Prepare,
    Launch,
    Scale,
    Route,
    MakePrimary,
    Retire,
    Status,
    Discover,
    Resolve,
    ListImages,
    DescribeImage,
    Login,
    Probe,
}

/// An injected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// [`Error::Throttled`].
    Throttle,
    /// [`Error::Transient`].
    Transient,
    /// [`Error::Platform`] with this message.
    Fail(String),
}

/// One recorded platform call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The operation.
    pub op: Op,
    /// The process it was about, if any.
    pub process: Option<ProcessName>,
    /// Its arguments, in words (e.g. "fleet-3 -> 4").
    pub detail: String,
    /// When it was made (tokio's clock).
    pub at: Instant,
}

/// A fleet as the simulation sees it (for assertions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetView {
    /// Its id.
    pub id: FleetId,
    /// The image tag it runs.
    pub tag: DockerTag,
    /// Instances asked for.
    pub desired: u32,
    /// Instances running now.
    pub running: u32,
    /// Instances running and passing health now.
    pub healthy: u32,
}

#[derive(Debug)]
struct SimProcess {
    spec: ProcessSpec,
    primary: Option<FleetId>,
    fleets: BTreeMap<FleetId, SimFleet>,
    traffic: Vec<TrafficWeight>,
    revisions: u32,
}

#[derive(Debug, Clone)]
struct SimImage {
    tags: Vec<DockerTag>,
    digest: Digest,
    behavior: Behavior,
    overrides: HashMap<ProcessName, Behavior>,
    pushed_at: SystemTime,
    size: u64,
}

#[derive(Debug, Default)]
struct State {
    // Processes by name in a hash map: apps of thousands of processes look one up per call.
    apps: BTreeMap<AppName, foldhash::HashMap<ProcessName, SimProcess>>,
    images: HashMap<AppName, Vec<SimImage>>,
    faults: Vec<(Op, Option<ProcessName>, Fault, u32)>,
    calls: Vec<Call>,
    record_calls: bool,
    next_fleet: u64,
    next_digest: u64,
    latency: Duration,
}

/// A simulated platform: apps, processes, fleets of instances with scripted behaviour per
/// image, traffic weights, an image registry, injected API faults and latency. Time is
/// tokio's clock, so tests run on a paused clock in microseconds.
///
/// It implements [`Deployer`], [`ImageRegistry`] and [`HealthProbe`] (as a load-balancer
/// target-health probe).
#[derive(Debug, Clone)]
pub struct InMemoryPlatform {
    state: Arc<Mutex<State>>,
}

impl Default for InMemoryPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryPlatform {
    /// An empty platform that records calls.
    pub fn new() -> Self {
        InMemoryPlatform {
            state: Arc::new(Mutex::new(State {
                record_calls: true,
                ..State::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from this module's own bugs; the state
        // is still usable for a simulation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an app with processes `(name, desired instances, load balanced)`.
    ///
    /// # Panics
    /// On an invalid app or process name (this is test setup).
    pub fn add_app(&self, app: &str, processes: &[(&str, u32, bool)]) -> AppName {
        let app = AppName::new(app).expect("valid app name");
        let mut state = self.lock();
        let procs = state.apps.entry(app.clone()).or_default();
        for (name, desired, lb) in processes {
            let name = ProcessName::new(name).expect("valid process name");
            procs.insert(
                name.clone(),
                SimProcess {
                    spec: ProcessSpec::new(name, *desired, *lb),
                    primary: None,
                    fleets: BTreeMap::new(),
                    traffic: Vec::new(),
                    revisions: 0,
                },
            );
        }
        app
    }

    /// Pushes an image tag to the app's registry with a behaviour; returns its digest. Pushing
    /// an existing tag moves it to a new digest.
    ///
    /// # Panics
    /// On an invalid tag (this is test setup).
    pub fn push_image(&self, app: &AppName, tag: &str, behavior: Behavior) -> Digest {
        let tag = DockerTag::new(tag).expect("valid tag");
        let mut state = self.lock();
        state.next_digest += 1;
        let digest = Digest::new(format!("sha256:{:064x}", state.next_digest)).expect("digest");
        let images = state.images.entry(app.clone()).or_default();
        for image in images.iter_mut() {
            image.tags.retain(|t| t != &tag);
        }
        images.push(SimImage {
            tags: vec![tag],
            digest: digest.clone(),
            behavior,
            overrides: HashMap::new(),
            pushed_at: SystemTime::now(),
            size: 50_000_000 + u64::try_from(images.len()).unwrap_or(0) * 1_000,
        });
        digest
    }

    /// Makes one process behave differently from the others when it runs `tag` (e.g. only
    /// the worker crash-loops on a version).
    ///
    /// # Panics
    /// If the app or tag is unknown (this is test setup).
    pub fn set_behavior(&self, app: &AppName, tag: &str, process: &str, behavior: Behavior) {
        let tag = DockerTag::new(tag).expect("valid tag");
        let process = ProcessName::new(process).expect("valid process name");
        let mut state = self.lock();
        let image = state
            .images
            .get_mut(app)
            .and_then(|imgs| imgs.iter_mut().find(|i| i.tags.contains(&tag)))
            .expect("pushed image");
        image.overrides.insert(process, behavior);
    }

    /// Makes every process of the app run `tag` already (healthy, primary, all traffic), as if
    /// deployed long ago: the "old version" of a test.
    ///
    /// # Panics
    /// If the app or tag is unknown (this is test setup).
    pub fn seed_release(&self, app: &AppName, tag: &str) {
        let tag = DockerTag::new(tag).expect("valid tag");
        let mut state = self.lock();
        let image = state
            .images
            .get(app)
            .and_then(|imgs| imgs.iter().find(|i| i.tags.contains(&tag)))
            .cloned()
            .expect("pushed image");
        let repository = repository(app);
        let now = Instant::now();
        let names: Vec<ProcessName> = state.apps.get(app).expect("app").keys().cloned().collect();
        for name in names {
            state.next_fleet += 1;
            let fleet_id = FleetId(format!("fleet-{}", state.next_fleet));
            let proc = state
                .apps
                .get_mut(app)
                .and_then(|p| p.get_mut(&name))
                .expect("process");
            proc.revisions += 1;
            let fleet = Fleet {
                id: fleet_id.clone(),
                target: Target::new(app.clone(), name.clone()),
                revision: Revision {
                    id: format!("{app}-{name}:{}", proc.revisions),
                    image: ImageRef::new(repository.clone(), tag.clone())
                        .expect("repository")
                        .with_digest(image.digest.clone()),
                },
            };
            let desired = proc.spec.desired;
            let mut sim = SimFleet {
                fleet,
                behavior: Behavior {
                    start_delay: Duration::ZERO,
                    ..image.behavior_for(&name)
                },
                desired: 0,
                instances: Vec::new(),
                next_instance: 0,
            };
            sim.scale_to(desired, now);
            if proc.spec.load_balanced {
                proc.traffic = vec![TrafficWeight {
                    fleet: fleet_id.clone(),
                    percent: 100,
                }];
            }
            proc.primary = Some(fleet_id.clone());
            proc.fleets.insert(fleet_id, sim);
        }
    }

    /// Makes the platform run a process's rollouts itself, as ECS does for a service on the
    /// ECS deployment controller ([`RolloutControl::Platform`]): launching a fleet starts the
    /// platform's rollout; making it primary drains the old fleet; retiring the new fleet
    /// while the deployment's stable fleet exists rolls back to it (as
    /// `StopServiceDeployment(ROLLBACK)` does); scaling a fleet is refused.
    ///
    /// # Panics
    /// On an unknown app or process (this is test setup).
    pub fn set_platform_rollout(&self, app: &AppName, process: &str, native: RolloutKind) {
        self.set_platform_rollout_with_bake(app, process, native, Duration::ZERO);
    }

    /// [`set_platform_rollout`](Self::set_platform_rollout), declaring that the platform's
    /// rollout bakes for `bake` (time without visible progress, as an ECS blue-green bake).
    ///
    /// # Panics
    /// On an unknown app or process (this is test setup).
    pub fn set_platform_rollout_with_bake(
        &self,
        app: &AppName,
        process: &str,
        native: RolloutKind,
        bake: Duration,
    ) {
        let process = ProcessName::new(process).expect("valid process name");
        let mut state = self.lock();
        let proc = state
            .apps
            .get_mut(app)
            .and_then(|p| p.get_mut(&process))
            .expect("known process");
        proc.spec.rollout = RolloutControl::Platform {
            native,
            by: "the in-memory platform's own rollout".into(),
            bake,
        };
    }

    /// Adds latency to every platform call.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Turns call recording on or off (on by default; off for benchmarks).
    pub fn record_calls(&self, on: bool) {
        self.lock().record_calls = on;
    }

    /// Makes the next `times` calls of `op` (for `process`, or any) fail with `fault`.
    pub fn inject(&self, op: Op, process: Option<&str>, fault: Fault, times: u32) {
        let process = process.map(|p| ProcessName::new(p).expect("valid process name"));
        self.lock().faults.push((op, process, fault, times));
    }

    /// Every call recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Recorded calls of one process.
    pub fn calls_for(&self, process: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.process.as_ref().is_some_and(|p| p.as_str() == process))
            .collect()
    }

    /// The tag a process's primary fleet runs.
    pub fn live_tag(&self, app: &AppName, process: &str) -> Option<DockerTag> {
        let state = self.lock();
        let proc = state.apps.get(app)?.get(&ProcessName::new(process).ok()?)?;
        let primary = proc.primary.as_ref()?;
        Some(proc.fleets.get(primary)?.fleet.revision.image.tag.clone())
    }

    /// The fleets of a process now.
    pub fn fleets(&self, app: &AppName, process: &str) -> Vec<FleetView> {
        let mut state = self.lock();
        let now = Instant::now();
        let Some(proc) = ProcessName::new(process)
            .ok()
            .and_then(|p| state.apps.get_mut(app)?.get_mut(&p))
        else {
            return Vec::new();
        };
        proc.fleets
            .values_mut()
            .map(|f| {
                f.advance(now);
                let status = f.status(now);
                FleetView {
                    id: f.fleet.id.clone(),
                    tag: f.fleet.revision.image.tag.clone(),
                    desired: f.desired,
                    running: status.running(),
                    healthy: u32::try_from(
                        status
                            .instances
                            .iter()
                            .filter(|i| {
                                matches!(
                                    i.status,
                                    InstanceStatus::Running {
                                        healthy: Some(true)
                                    }
                                )
                            })
                            .count(),
                    )
                    .unwrap_or(u32::MAX),
                }
            })
            .collect()
    }

    /// The traffic weights of a process now.
    pub fn traffic(&self, app: &AppName, process: &str) -> Vec<TrafficWeight> {
        let state = self.lock();
        ProcessName::new(process)
            .ok()
            .and_then(|p| Some(state.apps.get(app)?.get(&p)?.traffic.clone()))
            .unwrap_or_default()
    }

    /// Records the call, applies latency and any injected fault.
    async fn enter(
        &self,
        op: Op,
        process: Option<&ProcessName>,
        detail: impl FnOnce() -> String,
    ) -> Result<()> {
        let (latency, fault) =
            {
                let mut state = self.lock();
                if state.record_calls {
                    let call = Call {
                        op,
                        process: process.cloned(),
                        detail: detail(),
                        at: Instant::now(),
                    };
                    state.calls.push(call);
                }
                let mut fault = None;
                if let Some(slot) = state.faults.iter_mut().find(|(o, p, _, n)| {
                    *o == op && *n > 0 && (p.is_none() || p.as_ref() == process)
                }) {
                    slot.3 -= 1;
                    fault = Some(slot.2.clone());
                }
                state.faults.retain(|f| f.3 > 0);
                (state.latency, fault)
            };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let Some(fault) = fault else { return Ok(()) };
        let operation = format!("{op:?}");
        match fault {
            Fault::Throttle => Err(Error::Throttled {
                operation,
                source: "Rate exceeded (injected)".into(),
            }),
            Fault::Transient => Err(Error::Transient {
                operation,
                source: "503 Service Unavailable (injected)".into(),
            }),
            Fault::Fail(message) => Err(Error::platform(operation, message)),
        }
    }
}

impl SimImage {
    fn behavior_for(&self, process: &ProcessName) -> Behavior {
        self.overrides
            .get(process)
            .unwrap_or(&self.behavior)
            .clone()
    }
}

fn repository(app: &AppName) -> String {
    format!("registry.local/{app}")
}

fn unknown_app(app: &AppName) -> Error {
    Error::not_found(Resource::App, app.as_str(), "add it to the platform first")
}

fn process_mut<'a>(state: &'a mut State, target: &Target) -> Result<&'a mut SimProcess> {
    let procs = state
        .apps
        .get_mut(&target.app)
        .ok_or_else(|| unknown_app(&target.app))?;
    // Looked up twice (the borrow checker cannot return a borrow from one branch and use the
    // map in the other); a hash of a short name with foldhash is cheap.
    if !procs.contains_key(&target.process) {
        let mut names: Vec<&str> = procs.keys().map(ProcessName::as_str).collect();
        names.sort_unstable();
        let hint = format!("app {} has: {}", target.app, names.join(", "));
        return Err(Error::not_found(
            Resource::Process,
            target.process.as_str(),
            hint,
        ));
    }
    procs
        .get_mut(&target.process)
        .ok_or_else(|| Error::not_found(Resource::Process, target.process.as_str(), ""))
}

fn fleet_mut<'a>(state: &'a mut State, fleet: &Fleet) -> Result<&'a mut SimFleet> {
    process_mut(state, &fleet.target)?
        .fleets
        .get_mut(&fleet.id)
        .ok_or_else(|| Error::not_found(Resource::Fleet, fleet.id.to_string(), "it was retired"))
}

#[async_trait]
impl Deployer for InMemoryPlatform {
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>> {
        self.enter(Op::Processes, None, || app.to_string()).await?;
        let state = self.lock();
        let procs = state.apps.get(app).ok_or_else(|| unknown_app(app))?;
        let mut specs: Vec<ProcessSpec> = procs.values().map(|p| p.spec.clone()).collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(specs)
    }

    async fn current(&self, ctx: &DeployContext) -> Result<Release> {
        let target = &ctx.target;
        self.enter(Op::Current, Some(&target.process), String::new)
            .await?;
        let mut state = self.lock();
        let proc = process_mut(&mut state, target)?;
        let fleet = proc
            .primary
            .as_ref()
            .and_then(|id| proc.fleets.get(id))
            .map(|f| f.fleet.clone());
        let desired = match &proc.primary {
            Some(id) => proc
                .fleets
                .get(id)
                .map_or(proc.spec.desired, |f| f.desired.max(proc.spec.desired)),
            None => proc.spec.desired,
        };
        Ok(Release { fleet, desired })
    }

    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision> {
        let target = &ctx.target;
        self.enter(Op::Prepare, Some(&target.process), || image.to_string())
            .await?;
        let mut state = self.lock();
        let digest = image.digest.clone().ok_or_else(|| {
            Error::invalid(
                "image",
                image.to_string(),
                "must be pinned by digest; resolve it first",
            )
        })?;
        let known = state
            .images
            .get(&target.app)
            .is_some_and(|imgs| imgs.iter().any(|i| i.digest == digest));
        if !known {
            return Err(Error::not_found(
                Resource::Image,
                image.to_string(),
                "push it first",
            ));
        }
        let proc = process_mut(&mut state, target)?;
        proc.revisions += 1;
        Ok(Revision {
            id: format!("{}-{}:{}", target.app, target.process, proc.revisions),
            image: image.clone(),
        })
    }

    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet> {
        let target = &ctx.target;
        self.enter(Op::Launch, Some(&target.process), || {
            format!("{} x{count}", revision.id)
        })
        .await?;
        let now = Instant::now();
        let mut state = self.lock();
        let behavior = revision
            .image
            .digest
            .as_ref()
            .and_then(|d| {
                state
                    .images
                    .get(&target.app)?
                    .iter()
                    .find(|i| &i.digest == d)
                    .map(|i| i.behavior_for(&target.process))
            })
            .ok_or_else(|| {
                Error::not_found(Resource::Revision, revision.id.clone(), "prepare it first")
            })?;
        state.next_fleet += 1;
        let id = FleetId(format!("fleet-{}", state.next_fleet));
        let proc = process_mut(&mut state, target)?;
        let fleet = Fleet {
            id: id.clone(),
            target: target.clone(),
            revision: revision.clone(),
        };
        let mut sim = SimFleet {
            fleet: fleet.clone(),
            behavior,
            desired: 0,
            instances: Vec::new(),
            next_instance: 0,
        };
        sim.scale_to(count, now);
        proc.fleets.insert(id, sim);
        Ok(fleet)
    }

    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()> {
        self.enter(Op::Scale, Some(&ctx.target.process), || {
            format!("{} -> {count}", fleet.id)
        })
        .await?;
        let now = Instant::now();
        let mut state = self.lock();
        if platform_run(process_mut(&mut state, &fleet.target)?) {
            return Err(Error::invalid(
                "instance count",
                count.to_string(),
                format!(
                    "the platform runs the rollouts of {} and sizes its fleets itself",
                    fleet.target
                ),
            ));
        }
        fleet_mut(&mut state, fleet)?.scale_to(count, now);
        Ok(())
    }

    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()> {
        let target = &ctx.target;
        self.enter(Op::Route, Some(&target.process), || {
            weights
                .iter()
                .map(|w| format!("{}={}%", w.fleet, w.percent))
                .collect::<Vec<_>>()
                .join(",")
        })
        .await?;
        let mut state = self.lock();
        let proc = process_mut(&mut state, target)?;
        if !proc.spec.load_balanced {
            return Err(Error::invalid(
                "traffic weights",
                target.to_string(),
                "the process has no load balancer",
            ));
        }
        let total: u32 = weights.iter().map(|w| u32::from(w.percent)).sum();
        if total != 100 {
            return Err(Error::invalid(
                "traffic weights",
                format!("{weights:?}"),
                format!("must sum to 100, not {total}"),
            ));
        }
        if let Some(w) = weights.iter().find(|w| !proc.fleets.contains_key(&w.fleet)) {
            return Err(Error::not_found(
                Resource::Fleet,
                w.fleet.to_string(),
                "launch it first",
            ));
        }
        proc.traffic = weights.to_vec();
        Ok(())
    }

    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.enter(Op::MakePrimary, Some(&ctx.target.process), || {
            fleet.id.to_string()
        })
        .await?;
        let now = Instant::now();
        let mut state = self.lock();
        let proc = process_mut(&mut state, &fleet.target)?;
        if !proc.fleets.contains_key(&fleet.id) {
            return Err(Error::not_found(
                Resource::Fleet,
                fleet.id.to_string(),
                "it was retired",
            ));
        }
        if platform_run(proc) {
            // The platform moves capacity with primacy: the new primary runs the process's
            // count, the others drain.
            let desired = proc.spec.desired;
            for (id, sim) in &mut proc.fleets {
                sim.scale_to(if id == &fleet.id { desired } else { 0 }, now);
            }
        }
        proc.primary = Some(fleet.id.clone());
        Ok(())
    }

    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.enter(Op::Retire, Some(&ctx.target.process), || {
            fleet.id.to_string()
        })
        .await?;
        let now = Instant::now();
        let mut state = self.lock();
        let proc = process_mut(&mut state, &fleet.target)?;
        let is_stable = ctx.stable.as_ref().is_some_and(|s| s.id == fleet.id);
        if platform_run(proc) && !is_stable && proc.fleets.contains_key(&fleet.id) {
            platform_rollback(proc, ctx, fleet, now)?;
        }
        if proc.primary.as_ref() == Some(&fleet.id) && proc.fleets.len() > 1 {
            return Err(Error::invalid(
                "fleet",
                fleet.id.to_string(),
                "is the primary fleet; make another fleet primary before retiring it",
            ));
        }
        if proc
            .traffic
            .iter()
            .any(|w| w.fleet == fleet.id && w.percent > 0)
        {
            return Err(Error::invalid(
                "fleet",
                fleet.id.to_string(),
                "still takes traffic; route its traffic away before retiring it",
            ));
        }
        proc.fleets.remove(&fleet.id);
        proc.traffic.retain(|w| w.fleet != fleet.id);
        if proc.primary.as_ref() == Some(&fleet.id) {
            proc.primary = None;
        }
        Ok(())
    }

    async fn status(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus> {
        self.enter(Op::Status, Some(&ctx.target.process), || {
            fleet.id.to_string()
        })
        .await?;
        let now = Instant::now();
        let mut state = self.lock();
        let sim = fleet_mut(&mut state, fleet)?;
        sim.advance(now);
        Ok(sim.status(now))
    }

    async fn discover(&self, ctx: &DeployContext, revision: &Revision) -> Result<Option<Fleet>> {
        self.enter(Op::Discover, Some(&ctx.target.process), || {
            revision.id.clone()
        })
        .await?;
        let mut state = self.lock();
        let proc = process_mut(&mut state, &ctx.target)?;
        // A revision is prepared once per deployment here, so its fleets are this one's.
        let stable = ctx.stable.as_ref().map(|f| &f.id);
        Ok(proc
            .fleets
            .values()
            .map(|sim| &sim.fleet)
            .find(|f| f.revision.id == revision.id && Some(&f.id) != stable)
            .cloned())
    }

    fn target_health(&self) -> Option<DynHealthProbe> {
        Some(Arc::new(self.clone()))
    }
}

fn platform_run(proc: &SimProcess) -> bool {
    matches!(proc.spec.rollout, RolloutControl::Platform { .. })
}

/// Retiring a platform-run process's new fleet: the platform returns to the deployment's
/// stable fleet (which the call's context names), as ECS's `ROLLBACK` does. Without one
/// there is nothing to return to: refused, as ECS would leave the service as it is.
fn platform_rollback(
    proc: &mut SimProcess,
    ctx: &DeployContext,
    fleet: &Fleet,
    now: Instant,
) -> Result<()> {
    let Some(stable) = &ctx.stable else {
        if proc.fleets.len() == 1 {
            return Ok(()); // the only fleet: a first deploy rolled back to nothing
        }
        return Err(Error::platform(
            "retire",
            format!(
                "{} is the new revision of {} and there is no previous one to return to",
                fleet.id, fleet.target
            ),
        ));
    };
    let desired = proc.spec.desired;
    let Some(old) = proc.fleets.get_mut(&stable.id) else {
        return Err(Error::not_found(
            Resource::Fleet,
            stable.id.to_string(),
            "the previous fleet is gone; deploy the previous tag again",
        ));
    };
    old.scale_to(old.desired.max(desired), now);
    proc.primary = Some(stable.id.clone());
    Ok(())
}

#[async_trait]
impl HealthProbe for InMemoryPlatform {
    fn name(&self) -> &str {
        "load-balancer"
    }

    async fn check(&self, fleet: &Fleet, status: &FleetStatus) -> Result<HealthReport> {
        let lb = process_mut(&mut self.lock(), &fleet.target)?
            .spec
            .load_balanced;
        if !lb {
            // No load balancer, no target health to ask for: every running instance passes
            // (as the AWS probe makes no call for such a process).
            return Ok(HealthReport {
                healthy: status.running(),
                problems: Vec::new(),
            });
        }
        self.enter(Op::Probe, Some(&fleet.target.process), || {
            fleet.id.to_string()
        })
        .await?;
        let mut state = self.lock();
        let proc = process_mut(&mut state, &fleet.target)?;
        let lb_healthy = proc
            .fleets
            .get(&fleet.id)
            .is_none_or(|f| f.behavior.lb_healthy);
        let running = status
            .instances
            .iter()
            .filter(|i| matches!(i.status, InstanceStatus::Running { .. }));
        let mut report = HealthReport::default();
        for i in running {
            if lb_healthy {
                report.healthy += 1;
            } else {
                report.problems.push(format!(
                    "target {} fails the load balancer health check",
                    i.id
                ));
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl ImageRegistry for InMemoryPlatform {
    async fn resolve(&self, app: &AppName, tag: &DockerTag) -> Result<ImageRef> {
        self.enter(Op::Resolve, None, || format!("{app}:{tag}"))
            .await?;
        let state = self.lock();
        let images = state.images.get(app);
        let found = images.and_then(|imgs| imgs.iter().find(|i| i.tags.contains(tag)));
        match found {
            Some(image) => {
                Ok(ImageRef::new(repository(app), tag.clone())?.with_digest(image.digest.clone()))
            }
            None => {
                let mut tags: Vec<&str> = images
                    .into_iter()
                    .flatten()
                    .rev()
                    .flat_map(|i| i.tags.iter().map(DockerTag::as_str))
                    .take(5)
                    .collect();
                tags.sort_unstable();
                let hint = if tags.is_empty() {
                    format!("the repository of app {app} is empty; push an image first")
                } else {
                    format!(
                        "recent tags: {}; list the app's images for the others",
                        tags.join(", ")
                    )
                };
                Err(Error::not_found(
                    Resource::Image,
                    format!("{}:{tag}", repository(app)),
                    hint,
                ))
            }
        }
    }

    async fn list(&self, app: &AppName) -> Result<Vec<ImageInfo>> {
        self.enter(Op::ListImages, None, || app.to_string()).await?;
        let state = self.lock();
        let images = state.images.get(app).map(Vec::as_slice).unwrap_or_default();
        Ok(images.iter().rev().map(|i| info(app, i)).collect())
    }

    async fn describe(&self, app: &AppName, tag: &DockerTag) -> Result<ImageInfo> {
        self.enter(Op::DescribeImage, None, || format!("{app}:{tag}"))
            .await?;
        let state = self.lock();
        let image = state
            .images
            .get(app)
            .and_then(|imgs| imgs.iter().find(|i| i.tags.contains(tag)))
            .ok_or_else(|| {
                Error::not_found(
                    Resource::Image,
                    format!("{}:{tag}", repository(app)),
                    "list the app's images for the tags it has",
                )
            })?;
        Ok(info(app, image))
    }

    async fn login(&self, app: &AppName) -> Result<RegistryCredentials> {
        self.enter(Op::Login, None, || app.to_string()).await?;
        Ok(RegistryCredentials {
            endpoint: "https://registry.local".into(),
            username: "tapit".into(),
            password: Secret::new(format!("in-memory-token-for-{app}")),
            expires_at: Some(SystemTime::now() + Duration::from_secs(12 * 3600)),
        })
    }
}

fn info(app: &AppName, image: &SimImage) -> ImageInfo {
    ImageInfo {
        repository: repository(app),
        digest: Some(image.digest.clone()),
        tags: image.tags.clone(),
        size_bytes: Some(image.size),
        pushed_at: Some(image.pushed_at),
    }
}
