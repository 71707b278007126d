//! Building the engine for an app from its configuration: the platform (AWS, a local Docker
//! engine, or the simulated one), the history store, strategies and the health gate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tapitalee::aws::{
    AppConfig as AwsApp, AssumeRole, AwsBackend, AwsConfig, AwsConfigBuilder, LoadBalancerConfig,
    NetworkConfig, ProcessConfig as AwsProcess,
};
use tapitalee::docker::{AppConfig as DockerApp, DockerBackend, ProcessConfig as DockerProcess};
use tapitalee::strategies::{BlueGreen, Canary, Rolling};
use tapitalee::testkit::{Behavior as SimBehavior, InMemoryPlatform};
use tapitalee::{
    AppName, DeployContext, Deployer, DeploymentStatus, DynDeploymentStore, DynHealthProbe,
    DynImageRegistry, DynStrategy, Engine, Fleet, FleetStatus, HealthGate, HealthProbe,
    HealthReport, ImageRef, ProcessName, ProcessSpec, ProcessStatus, Release, Result, Revision,
    TrafficWeight,
};

use crate::cli::Global;
use crate::config::{
    AppConfig, Behavior, CanaryStepConfig, Platform, StrategyConfig, StrategyKind,
};
use crate::control::Channel;
use crate::exit::CliError;

/// What commands work with: the engine, its registry and (on AWS) the backend.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The app's name.
    pub app: AppName,
    /// The engine.
    pub engine: Engine,
    /// The app's image registry.
    pub registry: DynImageRegistry,
    /// The AWS backend (logs, …), on AWS.
    pub aws: Option<AwsBackend>,
    /// How promote and abort requests reach the `tapit` running a deployment.
    pub control: Channel,
    /// The Docker backend (logs, the proxy), on Docker.
    pub docker: Option<DockerBackend>,
}

/// Connects to the app's platform and builds its engine.
pub async fn connect(app: &AppConfig, global: &Global) -> Result<Backend, CliError> {
    let name = AppName::new(&app.name)?;
    let history = crate::store::open(app, global).await?;
    let control = history.control.clone();
    let store: DynDeploymentStore = history.store;
    let mut gate = HealthGate::default();
    if let Some(d) = app.gate.min_healthy_time {
        gate.min_healthy_time = d;
    }
    if let Some(d) = app.gate.poll_interval {
        gate.poll_interval = d;
    }
    if let Some(d) = app.gate.progress_deadline {
        gate.progress_deadline = d;
    }
    if app.gate.failure_threshold.is_some() {
        gate.failure_threshold = app.gate.failure_threshold;
    }
    let mut builder = Engine::builder();
    if let Some(lease) = app.lock_lease {
        builder = builder.lock_lease(lease);
    }
    let builder = builder
        .store(store.clone())
        .health_gate(gate)
        .default_strategy(strategy(&app.strategy, app.strategy.kind, true)?);
    match app.platform {
        Platform::Simulated => {
            let sim = SimPlatform::from_history(app, &name, &store).await?;
            let registry: DynImageRegistry = Arc::new(sim.groups[0].clone());
            let engine = builder
                .deployer(Arc::new(sim.clone()))
                .registry(registry.clone())
                .build()?;
            Ok(Backend {
                app: name,
                engine,
                registry,
                aws: None,
                control,
                docker: None,
            })
        }
        Platform::Docker => {
            let backend = connect_docker(app, &name)?;
            let registry: DynImageRegistry = Arc::new(backend.clone());
            let engine = builder
                .deployer(Arc::new(backend.clone()))
                .registry(registry.clone())
                .build()?;
            Ok(Backend {
                app: name,
                engine,
                registry,
                aws: None,
                control,
                docker: Some(backend),
            })
        }
        Platform::Aws => {
            let backend = connect_aws(app, &name, global).await?;
            let registry: DynImageRegistry = Arc::new(backend.registry());
            let engine = builder
                .deployer(Arc::new(backend.deployer()))
                .registry(registry.clone())
                .build()?;
            Ok(Backend {
                app: name,
                engine,
                registry,
                aws: Some(backend),
                control,
                docker: None,
            })
        }
    }
}

/// The Docker backend for the app: its processes from the configuration (command,
/// instances, environment; the web process's port and health path).
fn connect_docker(app: &AppConfig, name: &AppName) -> Result<DockerBackend, CliError> {
    let mut config = DockerApp::new(&app.repository).proxy_port(app.docker.proxy_port);
    for p in &app.processes {
        let mut pc = DockerProcess::new(ProcessName::new(&p.name)?, p.instances);
        if !p.command.is_empty() {
            pc = pc.command(p.command.iter().cloned());
        }
        for (k, v) in &p.environment {
            pc = pc.env(k, v);
        }
        if let (Some(port), Some(path)) = (p.port, &p.health_path) {
            pc = pc.web(port, path);
        }
        config = config.process(pc);
    }
    let mut builder = DockerBackend::builder().app(name.clone(), config);
    if let Some(h) = &app.docker.host {
        builder = builder.docker_host(h);
    }
    if let Some(i) = &app.docker.proxy_image {
        builder = builder.proxy_image(i);
    }
    if let Some(t) = app.docker.stop_timeout {
        builder = builder.stop_timeout(t);
    }
    if let Some(t) = app.docker.drain_timeout {
        builder = builder.drain_timeout(t);
    }
    if let (Some(username), Some(var)) = (
        &app.docker.registry_username,
        &app.docker.registry_password_env,
    ) && let Some(host) = tapitalee::docker::builder::repository_registry(&app.repository)
    {
        let password = std::env::var(var)
            .ok()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "apps.{name}.docker.registry_password_env: the environment variable {var} is \
                 not set; export it with the password of {username} on {host}"
                ))
            })?;
        builder = builder.registry(tapitalee::RegistryCredentials {
            endpoint: host.to_owned(),
            username: username.clone(),
            password: tapitalee::Secret::new(password),
            expires_at: None,
        });
    } else if let Some(host) = tapitalee::docker::builder::repository_registry(&app.repository)
        && let Some(login) = tapitalee::docker::builder::docker_cli_login(host)
    {
        // Without settings, the docker CLI's own login to the registry (`docker login`,
        // `tapit image login`): pulls and listings then use what pushes already do.
        builder = builder.registry(login);
    }
    Ok(builder.build()?)
}

async fn connect_aws(
    app: &AppConfig,
    name: &AppName,
    global: &Global,
) -> Result<AwsBackend, CliError> {
    let mut aws_app = AwsApp::new(name.clone(), &app.repository);
    if let Some(id) = &app.registry_id {
        aws_app = aws_app.registry_id(id);
    }
    aws_app = aws_app.deregister_rolled_back(app.deregister_rolled_back);
    for p in &app.processes {
        let mut pc = AwsProcess::new(
            ProcessName::new(&p.name)?,
            p.cluster.clone().unwrap_or_default(),
            p.service.clone().unwrap_or_default(),
        );
        if let Some(c) = &p.container {
            pc = pc.container(c);
        }
        if let Some(lb) = &p.load_balancer {
            let mut l = LoadBalancerConfig::new(
                &lb.listener,
                &lb.target_groups[0],
                &lb.target_groups[1],
                lb.port,
            );
            if let Some(r) = &lb.rule {
                l = l.rule(r);
            }
            if let Some(c) = &lb.container {
                l = l.container_name(c);
            }
            pc = pc.load_balancer(l);
        }
        if !p.subnets.is_empty() {
            pc = pc.network(NetworkConfig {
                subnets: p.subnets.clone(),
                security_groups: p.security_groups.clone(),
                assign_public_ip: p.assign_public_ip,
            });
        }
        aws_app = aws_app.process(pc);
    }
    let config = aws_config(app, global).app(aws_app);
    Ok(AwsBackend::connect(config.build()?).await?)
}

/// The AWS settings of an app (its platform, and a DynamoDB history): `--region` /
/// `--endpoint-url` over the app's `region` / `endpoint_url`, over the environment. The
/// credentials come from the standard chain; `--profile` reaches it as `AWS_PROFILE` (set by
/// main when it re-executes itself).
pub fn aws_config(app: &AppConfig, global: &Global) -> AwsConfigBuilder {
    let mut config = AwsConfig::from_env();
    if let Some(r) = global.region.as_ref().or(app.region.as_ref()) {
        config = config.region(r);
    }
    if let Some(u) = global.endpoint_url.as_ref().or(app.endpoint_url.as_ref()) {
        config = config.endpoint_url(u);
    }
    if let Some(arn) = &app.role_arn {
        config = config.assume_role(AssumeRole::new(arn).session_name("tapit"));
    }
    config
}

/// The strategy of a kind, with the app's settings. `load_balanced` decides whether a canary
/// splits traffic or instances.
pub fn strategy(
    settings: &StrategyConfig,
    kind: StrategyKind,
    load_balanced: bool,
) -> Result<DynStrategy, CliError> {
    Ok(match kind {
        StrategyKind::Rolling => {
            let mut b = Rolling::builder();
            if let Some(d) = settings.rolling_watch {
                b = b.watch(d);
            }
            Arc::new(b.build()?)
        }
        StrategyKind::BlueGreen => {
            let mut b = BlueGreen::builder().auto_promote(settings.blue_green_auto_promote);
            if let Some(d) = settings.blue_green_bake_time {
                b = b.bake_time(d);
            }
            if let Some(d) = settings.blue_green_scale_down_delay {
                b = b.scale_down_delay(d);
            }
            Arc::new(b.build()?)
        }
        StrategyKind::Canary => {
            let mut b = Canary::builder().split_by_instances(!load_balanced);
            for step in &settings.canary_steps {
                b = match step {
                    CanaryStepConfig::Weight(w) => b.set_weight(*w),
                    CanaryStepConfig::Pause(Some(d)) => b.pause(*d),
                    CanaryStepConfig::Pause(None) => b.pause_until_promoted(),
                    CanaryStepConfig::Scale(n) => b.set_scale(*n),
                };
            }
            Arc::new(b.build()?)
        }
    })
}

/// The simulated platform, rebuilt by every `tapit` from the configuration and the history:
/// each process runs the tag of its last successful deployment (or the configured initial
/// one). Each process lives in its own in-memory platform, seeded with its tag, and calls are
/// routed by process: processes can run different tags, and a process's fleet ids are the same
/// in every `tapit` (its live fleet is always `fleet-1`), so a deployment whose deployer died
/// can be rolled back by another `tapit` from what it recorded. Every platform holds the same
/// images pushed in the same order, so digests agree.
#[derive(Debug, Clone)]
pub struct SimPlatform {
    groups: Vec<InMemoryPlatform>,
    by_process: HashMap<ProcessName, usize>,
    order: Vec<ProcessName>,
}

impl SimPlatform {
    async fn from_history(
        app: &AppConfig,
        name: &AppName,
        store: &DynDeploymentStore,
    ) -> Result<SimPlatform, CliError> {
        let sim = app
            .simulated
            .as_ref()
            .ok_or_else(|| CliError::usage(format!("app {} has no [simulated] table", app.name)))?;
        let live = live_tags(store, name).await?;
        let mut groups = Vec::new();
        let mut by_process = HashMap::new();
        for p in &app.processes {
            let tag = live
                .get(&p.name)
                .filter(|t| sim.images.contains_key(*t))
                .unwrap_or(&sim.initial);
            let platform = InMemoryPlatform::new();
            platform.record_calls(false);
            platform.add_app(
                name.as_str(),
                &[(p.name.as_str(), p.instances, p.load_balanced)],
            );
            for (image_tag, image) in &sim.images {
                platform.push_image(name, image_tag, behavior(image.all, sim.start_delay));
                if let Some(b) = image.processes.get(&p.name) {
                    platform.set_behavior(name, image_tag, &p.name, behavior(*b, sim.start_delay));
                }
            }
            platform.seed_release(name, tag);
            platform.set_latency(sim.latency);
            by_process.insert(ProcessName::new(&p.name)?, groups.len());
            groups.push(platform);
        }
        let order = app
            .processes
            .iter()
            .map(|p| ProcessName::new(&p.name))
            .collect::<Result<Vec<_>>>()?;
        Ok(SimPlatform {
            groups,
            by_process,
            order,
        })
    }

    fn group(&self, process: &ProcessName) -> Result<&InMemoryPlatform> {
        self.by_process
            .get(process)
            .map(|i| &self.groups[*i])
            .ok_or_else(|| {
                tapitalee::Error::not_found(tapitalee::Resource::Process, process.as_str(), "")
            })
    }
}

fn behavior(b: Behavior, start_delay: Duration) -> SimBehavior {
    match b {
        Behavior::Good => SimBehavior::healthy(),
        Behavior::CrashLoop => SimBehavior::crash_loop(start_delay.max(Duration::from_millis(300))),
        Behavior::NeverHealthy => SimBehavior::never_healthy(),
        Behavior::LbUnhealthy => SimBehavior::lb_unhealthy(),
    }
    .start_delay(start_delay)
}

/// The tag each process of the app runs according to the history: that of its last
/// deployment that succeeded for it (a rolled-back process runs what it ran before).
pub async fn live_tags(
    store: &DynDeploymentStore,
    app: &AppName,
) -> Result<HashMap<String, String>, CliError> {
    let mut live = HashMap::new();
    // Oldest first, so later deployments win.
    let mut list = store.list(app, 1000).await?;
    list.reverse();
    for d in list {
        if d.status == DeploymentStatus::Running {
            continue;
        }
        for p in &d.processes {
            if p.status == ProcessStatus::Succeeded {
                live.insert(p.process.to_string(), d.image.tag.to_string());
            }
        }
    }
    Ok(live)
}

/// Whether an error says a fleet does not exist. On the simulated platform, fleets live in
/// the memory of the `tapit` that launched them: after that process died, another `tapit`
/// (`recover`) finds them gone, which for scaling to zero or routing no traffic is success.
fn gone(e: &tapitalee::Error) -> bool {
    matches!(
        e,
        tapitalee::Error::NotFound {
            resource: tapitalee::Resource::Fleet,
            ..
        }
    )
}

#[async_trait]
impl Deployer for SimPlatform {
    async fn processes(&self, app: &AppName) -> Result<Vec<ProcessSpec>> {
        let mut all = Vec::new();
        for g in &self.groups {
            all.extend(g.processes(app).await?);
        }
        all.sort_by_key(|s| self.order.iter().position(|p| *p == s.name));
        Ok(all)
    }
    async fn current(&self, ctx: &DeployContext) -> Result<Release> {
        self.group(&ctx.target.process)?.current(ctx).await
    }
    async fn prepare(&self, ctx: &DeployContext, image: &ImageRef) -> Result<Revision> {
        self.group(&ctx.target.process)?.prepare(ctx, image).await
    }
    async fn launch(&self, ctx: &DeployContext, revision: &Revision, count: u32) -> Result<Fleet> {
        self.group(&ctx.target.process)?
            .launch(ctx, revision, count)
            .await
    }
    async fn scale(&self, ctx: &DeployContext, fleet: &Fleet, count: u32) -> Result<()> {
        match self
            .group(&fleet.target.process)?
            .scale(ctx, fleet, count)
            .await
        {
            Err(e) if gone(&e) && count == 0 => Ok(()),
            other => other,
        }
    }
    async fn route(&self, ctx: &DeployContext, weights: &[TrafficWeight]) -> Result<()> {
        let group = self.group(&ctx.target.process)?;
        match group.route(ctx, weights).await {
            // A fleet that lived only in a dead deployer's memory takes no traffic anyway.
            Err(e) if gone(&e) => {
                let kept: Vec<TrafficWeight> =
                    weights.iter().filter(|w| w.percent > 0).cloned().collect();
                group.route(ctx, &kept).await
            }
            other => other,
        }
    }
    async fn make_primary(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.group(&fleet.target.process)?
            .make_primary(ctx, fleet)
            .await
    }
    async fn retire(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<()> {
        self.group(&fleet.target.process)?.retire(ctx, fleet).await
    }
    async fn status(&self, ctx: &DeployContext, fleet: &Fleet) -> Result<FleetStatus> {
        self.group(&fleet.target.process)?.status(ctx, fleet).await
    }
    async fn discover(&self, ctx: &DeployContext, revision: &Revision) -> Result<Option<Fleet>> {
        self.group(&ctx.target.process)?
            .discover(ctx, revision)
            .await
    }
    fn target_health(&self) -> Option<DynHealthProbe> {
        Some(Arc::new(self.clone()))
    }
}

#[async_trait]
impl HealthProbe for SimPlatform {
    fn name(&self) -> &str {
        "load-balancer"
    }
    async fn check(&self, fleet: &Fleet, status: &FleetStatus) -> Result<HealthReport> {
        self.group(&fleet.target.process)?
            .check(fleet, status)
            .await
    }
}
