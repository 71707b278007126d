//! Test harness: the in-memory platform behind a wrapper that snapshots fleets and traffic after
//! every platform change (so invariants are checked at every state the strategy creates, not
//! at sampled times) and can fail the k-th change.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tapitalee_core::testkit::{Behavior, FleetView, InMemoryPlatform};
use tapitalee_core::*;
use tokio::time::Instant;

/// The fleets and traffic of the process under test right after one platform change.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub op: &'static str,
    pub fleets: Vec<FleetView>,
    pub traffic: Vec<TrafficWeight>,
    pub at: Instant,
}

impl Snapshot {
    /// Healthy instances over all fleets.
    pub fn healthy(&self) -> u32 {
        self.fleets.iter().map(|f| f.healthy).sum()
    }

    /// Instances asked for over all fleets.
    pub fn total(&self) -> u32 {
        self.fleets.iter().map(|f| f.desired).sum()
    }

    /// Running-or-starting instances over all fleets (what costs capacity).
    pub fn fleet(&self, tag: &str) -> Option<&FleetView> {
        self.fleets.iter().find(|f| f.tag.as_str() == tag)
    }

    /// Percent of traffic on fleets running `tag`.
    pub fn weight(&self, tag: &str) -> u32 {
        self.traffic
            .iter()
            .filter(|w| {
                self.fleets
                    .iter()
                    .any(|f| f.id == w.fleet && f.tag.as_str() == tag)
            })
            .map(|w| u32::from(w.percent))
            .sum()
    }
}

#[derive(Debug, Default)]
struct CheckState {
    mutations: usize,
    fail_at: Option<usize>,
    failed_at: Option<Instant>,
    snapshots: Vec<Snapshot>,
}

/// A deployer over the in-memory platform that snapshots the watched process after every
/// change and can fail the k-th change (1-based) with a platform error.
#[derive(Debug, Clone)]
pub struct Checked {
    pub platform: InMemoryPlatform,
    app: AppName,
    watch: String,
    state: Arc<Mutex<CheckState>>,
}

impl Checked {
    fn lock(&self) -> std::sync::MutexGuard<'_, CheckState> {
        self.state.lock().unwrap()
    }

    /// Fails the k-th platform change (launch, scale, route, make primary) of the run.
    pub fn fail_change(&self, k: usize) {
        self.lock().fail_at = Some(k);
    }

    /// Platform changes so far.
    pub fn changes(&self) -> usize {
        self.lock().mutations
    }

    /// When the injected failure happened.
    pub fn failed_at(&self) -> Option<Instant> {
        self.lock().failed_at
    }

    /// Every snapshot so far.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.lock().snapshots.clone()
    }

    fn before(&self, target: &Target) -> Result<()> {
        if target.process.as_str() != self.watch {
            return Ok(());
        }
        let mut s = self.lock();
        s.mutations += 1;
        if s.fail_at == Some(s.mutations) {
            s.failed_at = Some(Instant::now());
            return Err(Error::platform(
                "injected",
                format!("change {} fails", s.mutations),
            ));
        }
        Ok(())
    }

    fn after(&self, target: &Target, op: &'static str) {
        if target.process.as_str() != self.watch {
            return;
        }
        let snapshot = Snapshot {
            op,
            fleets: self.platform.fleets(&self.app, &self.watch),
            traffic: self.platform.traffic(&self.app, &self.watch),
            at: Instant::now(),
        };
        self.lock().snapshots.push(snapshot);
    }
}

#[async_trait]
impl Deployer for Checked {
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>> {
        self.platform.processes(app).await
    }
    async fn current(&self, ctx: &DeployContext) -> Result<Release> {
        self.platform.current(ctx).await
    }
    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision> {
        self.platform.prepare(ctx, image).await
    }
    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet> {
        self.before(&ctx.target)?;
        let f = self.platform.launch(ctx, revision, count).await?;
        self.after(&ctx.target, "launch");
        Ok(f)
    }
    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()> {
        self.before(&fleet.target)?;
        self.platform.scale(ctx, fleet, count).await?;
        self.after(&fleet.target, "scale");
        Ok(())
    }
    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()> {
        self.before(&ctx.target)?;
        self.platform.route(ctx, weights).await?;
        self.after(&ctx.target, "route");
        Ok(())
    }
    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.before(&fleet.target)?;
        self.platform.make_primary(ctx, fleet).await?;
        self.after(&fleet.target, "primary");
        Ok(())
    }
    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.platform.retire(ctx, fleet).await?;
        self.after(&fleet.target, "retire");
        Ok(())
    }
    async fn status(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus> {
        self.platform.status(ctx, fleet).await
    }
}

/// A health gate fast enough for tests but with a real minimum healthy time.
pub fn gate() -> HealthGate {
    HealthGate {
        min_healthy_time: Duration::from_secs(3),
        failure_threshold: None,
        progress_deadline: Duration::from_secs(60),
        poll_interval: Duration::from_secs(1),
        max_poll_errors: 5,
    }
}

/// An app with one process `web` (`desired` instances, load-balanced or not) running `v1`,
/// and `v2` pushed with `behavior`.
pub struct World {
    pub platform: InMemoryPlatform,
    pub checked: Checked,
    pub app: AppName,
    pub engine: Engine,
    pub desired: u32,
}

pub fn world(desired: u32, lb: bool, behavior: Behavior) -> World {
    world_with(desired, lb, behavior, true)
}

pub fn world_with(desired: u32, lb: bool, behavior: Behavior, seeded: bool) -> World {
    let platform = InMemoryPlatform::new();
    let app = platform.add_app("shop", &[("web", desired, lb)]);
    platform.push_image(&app, "v1", Behavior::healthy());
    if seeded {
        platform.seed_release(&app, "v1");
    }
    platform.push_image(&app, "v2", behavior);
    let checked = Checked {
        platform: platform.clone(),
        app: app.clone(),
        watch: "web".into(),
        state: Arc::default(),
    };
    let probe: DynHealthProbe = Arc::new(ContainerHealth.and(platform.clone()));
    let engine = Engine::builder()
        .deployer(Arc::new(checked.clone()))
        .registry(Arc::new(platform.clone()))
        .probe(probe)
        .health_gate(gate())
        .default_strategy(Arc::new(testkit::AllAtOnce))
        .build()
        .unwrap();
    World {
        platform,
        checked,
        app,
        engine,
        desired,
    }
}

impl World {
    pub async fn start(&self, strategy: DynStrategy) -> DeploymentHandle {
        self.engine
            .deploy(
                &self.app,
                DeployRequest::new()
                    .docker_tag("v2".parse().unwrap())
                    .strategy(strategy),
            )
            .await
            .unwrap()
    }

    pub async fn deploy(&self, strategy: DynStrategy) -> ProcessRecord {
        let rec = self.start(strategy).await.wait().await.unwrap();
        rec.processes.into_iter().next().unwrap()
    }

    pub fn live(&self) -> String {
        self.platform
            .live_tag(&self.app, "web")
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default()
    }

    pub fn fleets(&self) -> Vec<FleetView> {
        self.platform.fleets(&self.app, "web")
    }

    pub fn traffic_on(&self, tag: &str) -> u32 {
        let fleets = self.fleets();
        self.platform
            .traffic(&self.app, "web")
            .iter()
            .filter(|w| {
                fleets
                    .iter()
                    .any(|f| f.id == w.fleet && f.tag.as_str() == tag)
            })
            .map(|w| u32::from(w.percent))
            .sum()
    }

    /// After a rollback: only v1 remains, at full size and healthy, with all traffic.
    pub fn assert_restored(&self, lb: bool) {
        let fleets = self.fleets();
        assert_eq!(fleets.len(), 1, "only the old fleet remains: {fleets:?}");
        assert_eq!(fleets[0].tag.as_str(), "v1");
        assert_eq!(fleets[0].desired, self.desired, "{fleets:?}");
        assert_eq!(fleets[0].healthy, self.desired, "{fleets:?}");
        assert_eq!(self.live(), "v1");
        if lb {
            assert_eq!(self.traffic_on("v1"), 100);
        }
    }

    /// After success: v2 at full size with all traffic, v1 gone.
    pub fn assert_promoted(&self, lb: bool) {
        let fleets = self.fleets();
        assert_eq!(fleets.len(), 1, "only the new fleet remains: {fleets:?}");
        assert_eq!(fleets[0].tag.as_str(), "v2");
        assert_eq!(fleets[0].desired, self.desired);
        assert_eq!(self.live(), "v2");
        if lb {
            assert_eq!(self.traffic_on("v2"), 100);
        }
    }
}

/// Calls `f` on the handle's control when the process reports a step whose message contains
/// `needle` (the n-th such step, 1-based).
pub fn on_step(
    handle: &mut DeploymentHandle,
    needle: &'static str,
    nth: usize,
    f: impl FnOnce(&DeploymentControl) + Send + 'static,
) {
    let control = handle.control();
    let events = handle.events();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        let mut seen = 0;
        while let Some(e) = events.next().await {
            if let EventKind::Step { message } = &e.kind
                && message.contains(needle)
            {
                seen += 1;
                if seen == nth {
                    f(&control);
                    return;
                }
            }
        }
    });
}

/// Messages of the process's steps in the history.
pub async fn step_messages(w: &World) -> Vec<String> {
    let rec = w.engine.latest(&w.app).await.unwrap().unwrap();
    rec.processes[0]
        .steps
        .iter()
        .map(|s| s.message.clone())
        .collect()
}

pub fn is_rolled_back(p: &ProcessRecord) -> bool {
    matches!(p.status, ProcessStatus::RolledBack { .. })
}

/// An analysis that replays measurements (then repeats the last one), counting calls.
#[derive(Debug)]
pub struct Scripted {
    script: Mutex<std::collections::VecDeque<Measurement>>,
    last: Mutex<Measurement>,
    pub calls: std::sync::atomic::AtomicU32,
}

impl Scripted {
    pub fn new(script: &[&str]) -> Arc<Self> {
        let parse = |s: &&str| match *s {
            "pass" => Measurement::Pass {
                detail: "ok".into(),
            },
            "fail" => Measurement::Fail {
                detail: "error rate 9%".into(),
            },
            _ => Measurement::Inconclusive {
                detail: "no data".into(),
            },
        };
        let script: std::collections::VecDeque<Measurement> = script.iter().map(parse).collect();
        let last = script.back().cloned().unwrap_or(Measurement::Pass {
            detail: "ok".into(),
        });
        Arc::new(Scripted {
            script: Mutex::new(script),
            last: Mutex::new(last),
            calls: Default::default(),
        })
    }
}

#[async_trait]
impl Analysis for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn measure(&self, _target: &AnalysisTarget) -> Result<Measurement> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let next = self.script.lock().unwrap().pop_front();
        Ok(next.unwrap_or_else(|| self.last.lock().unwrap().clone()))
    }
}

/// At every traffic change, traffic points only at fleets with healthy instances at that moment
/// (a fleet may crash later while holding traffic; the health gate then catches it).
pub fn assert_traffic_on_healthy(w: &World) {
    for s in w
        .checked
        .snapshots()
        .into_iter()
        .filter(|s| s.op == "route")
    {
        for t in &s.traffic {
            if t.percent > 0 {
                let f = s
                    .fleets
                    .iter()
                    .find(|f| f.id == t.fleet)
                    .expect("routed fleet exists");
                assert!(
                    f.healthy > 0,
                    "{}% of traffic on an unhealthy fleet after {}: {s:?}",
                    t.percent,
                    s.op
                );
            }
        }
    }
}
