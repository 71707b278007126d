//! The ECS model (`tapitalee-ecs-model`) in front of the test binary's moto server, apps
//! created in it, and a backend configured for its clock.

use std::time::{Duration, Instant};

use serde_json::Value;
use tapitalee_aws::{
    AppConfig, AwsConfig, EcsStrategy, LoadBalancerConfig, NetworkConfig, ProcessConfig,
    RateLimits, RetryPolicy, StaticCredentials,
};
use tapitalee_core::{AppName, HealthGate, ProcessName, Secret};
pub use tapitalee_ecs_model::{Behavior, EcsModel, ModelConfig};

/// Model seconds per real second in these tests.
pub const SCALE: f64 = 100.0;

/// How long a release that "fails after taking traffic" runs before its container exits
/// (model time, from RUNNING; it turns healthy after 30 s).
pub const LATE_FAILURE: Duration = Duration::from_secs(60);

/// The deployment controller of a test service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// Task sets, a load balancer: the engine's strategies.
    External,
    /// ECS runs the rollout (no load balancer).
    Ecs,
}

/// A service to create: its app's name, controller and desired count.
#[derive(Debug, Clone)]
pub struct Svc {
    pub app: String,
    pub controller: Ctl,
    pub desired: u32,
}

/// The model with apps in it.
pub struct Env {
    pub model: EcsModel,
    pub json: Value,
}

/// Starts a model (time scale [`SCALE`]) in front of moto, scripts the fixture's bad images
/// (`crash`: crash loop, `sick`: never healthy, `late`: fails [`LATE_FAILURE`] after starting),
/// creates `services`, and waits until every one is steady.
pub async fn start(prefix: &str, services: &[Svc]) -> Env {
    start_with(prefix, services, |_| {}).await
}

/// [`start`], with the model's configuration adjusted by `adjust` first.
pub async fn start_with(
    prefix: &str,
    services: &[Svc],
    adjust: impl FnOnce(&mut ModelConfig),
) -> Env {
    let moto = super::moto();
    let mut config = ModelConfig::new(&moto.endpoint);
    config.time_scale = SCALE;
    adjust(&mut config);
    let model = EcsModel::start(config).await.expect("start the ECS model");
    let spec = serde_json::json!({
        "prefix": prefix,
        "services": services.iter().map(|s| serde_json::json!({
            "app": s.app,
            "controller": match s.controller { Ctl::External => "EXTERNAL", Ctl::Ecs => "ECS" },
            "desired": s.desired,
        })).collect::<Vec<_>>(),
    });
    let endpoint = model.endpoint();
    let json: Value = tokio::task::spawn_blocking(move || {
        tapitalee_ecs_model::testbed::run_fixture(
            &tapitalee_ecs_model::testbed::model_fixture(),
            &[&endpoint, &spec.to_string()],
        )
    })
    .await
    .unwrap();
    let env = Env { model, json };
    for (tag, behavior) in [
        ("crash", Behavior::CrashLoop),
        ("sick", Behavior::NeverHealthy),
        ("late", Behavior::FailsAfter(LATE_FAILURE)),
    ] {
        env.model.script(&env.digest(tag), behavior);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for s in services {
        let name = env.service(&s.app);
        while !env.model.steady(&env.cluster(), &name) {
            assert!(Instant::now() < deadline, "{name} never became steady");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    env
}

impl Env {
    pub fn cluster(&self) -> String {
        self.json["cluster"].as_str().unwrap().to_owned()
    }

    pub fn digest(&self, tag: &str) -> String {
        self.json["digests"][tag].as_str().unwrap().to_owned()
    }

    fn app_json(&self, app: &str) -> &Value {
        &self.json["apps"][app]
    }

    pub fn service(&self, app: &str) -> String {
        self.app_json(app)["service"].as_str().unwrap().to_owned()
    }

    /// The task definition the app's service started with.
    pub fn first_task_definition(&self, app: &str) -> String {
        self.app_json(app)["task_definition"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn app_name(&self, app: &str) -> AppName {
        AppName::new(app).unwrap()
    }

    /// The process name of an app's only process: `default` (EXTERNAL) or `worker` (ECS).
    pub fn process(&self, app: &str) -> ProcessName {
        if self.app_json(app)["listener"].is_string() {
            ProcessName::default_process()
        } else {
            ProcessName::new("worker").unwrap()
        }
    }

    /// The configuration of one app (its ECS strategy for an ECS-controller service).
    pub fn app(&self, app: &str, ecs_strategy: Option<EcsStrategy>) -> AppConfig {
        let j = self.app_json(app);
        let mut p = ProcessConfig::new(self.process(app), self.cluster(), self.service(app))
            .container("app")
            .network(NetworkConfig {
                subnets: list(&self.json["subnets"]),
                security_groups: list(&self.json["security_groups"]),
                assign_public_ip: false,
            });
        if let Some(listener) = j["listener"].as_str() {
            let tgs = list(&j["target_groups"]);
            p = p.load_balancer(LoadBalancerConfig::new(listener, &tgs[0], &tgs[1], 8080));
        }
        if let Some(s) = ecs_strategy {
            p = p.ecs_strategy(s);
        }
        AppConfig::new(
            self.app_name(app),
            self.json["repository"].as_str().unwrap(),
        )
        .process(p)
    }

    /// A backend configuration for `apps` against the model (everything else reaches moto
    /// through it): no client-side rate limit (the model throttles at ECS's rates on its own
    /// clock), quick retries, a short poll window.
    pub fn config(&self, apps: Vec<AppConfig>) -> AwsConfig {
        self.config_with(apps, RateLimits::unlimited())
    }

    /// [`config`](Self::config) with client-side rate limits.
    pub fn config_with(&self, apps: Vec<AppConfig>, rates: RateLimits) -> AwsConfig {
        let mut b = AwsConfig::builder()
            .region("us-east-1")
            .endpoint_url(self.model.endpoint())
            .credentials(StaticCredentials::new("testing", Secret::new("testing")))
            .rate_limits(rates)
            .retry(RetryPolicy {
                max_attempts: 6,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(50),
            })
            .poll_batch_window(Duration::from_millis(5));
        for a in apps {
            b = b.app(a);
        }
        b.build().unwrap()
    }

    /// The real time a model duration takes.
    pub fn real(&self, model: Duration) -> Duration {
        self.model.real(model)
    }

    /// The product's default health gate (10 s healthy, 10 min deadline, 5 s polls) on the
    /// model's clock.
    pub fn gate(&self) -> HealthGate {
        let d = HealthGate::default();
        HealthGate {
            min_healthy_time: self.real(d.min_healthy_time),
            progress_deadline: self.real(d.progress_deadline),
            poll_interval: self.real(d.poll_interval),
            ..d
        }
    }

    /// The task definitions of the app's running tasks, one per task.
    pub fn running(&self, app: &str) -> Vec<String> {
        self.model
            .running_task_definitions(&self.cluster(), &self.service(app))
    }

    /// Waits (model time) until the app's service is steady; false if it never is.
    pub async fn settle(&self, app: &str, model_time: Duration) -> bool {
        let deadline = Instant::now() + self.real(model_time);
        loop {
            if self.model.steady(&self.cluster(), &self.service(app)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}
