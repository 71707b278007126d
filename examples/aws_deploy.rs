//! Wiring the AWS backend into the engine: deploy one ECS service to a new image tag.
//!
//! ```text
//! cargo run --example aws_deploy --features aws -- \
//!     --endpoint http://127.0.0.1:5000 --app myapp --repository myapp \
//!     --cluster prod --service myapp-worker --tag v2
//! ```
//!
//! `--endpoint` points every AWS call at an emulator (moto); without it the default chain
//! (environment, profile, role) and `AWS_REGION` decide. The process here has no load
//! balancer: an ECS-controller service is updated in place by ECS (judged by its deployment's
//! rollout state), an EXTERNAL-controller one gets a new task set. Add a `LoadBalancerConfig`
//! for a web service with weighted traffic, or `ProcessConfig::ecs_strategy` for ECS's own
//! blue-green / linear / canary.
//!
//! `--progress-deadline 30s` bounds how long a fleet may go without getting healthier.
//!
//! The AWS backend's tests run this example's [`deploy`] against moto
//! (`tapitalee-aws/tests/moto_example.rs`).

use std::sync::Arc;
use std::time::Duration;

use tapitalee::aws::{
    AppConfig, AwsBackend, AwsConfig, EcsStrategy, ProcessConfig, StaticCredentials,
};
use tapitalee::{
    AppName, ContainerHealth, DeployRequest, DeploymentRecord, DockerTag, Engine, HealthGate,
    HealthProbeExt, Initiator, ProcessName, Secret,
};

/// What to deploy, from the command line.
#[derive(Debug, Clone)]
pub struct Args {
    /// An emulator's endpoint (`--endpoint`), else real AWS from the environment.
    pub endpoint: Option<String>,
    /// The app (`--app`).
    pub app: String,
    /// Its ECR repository name (`--repository`).
    pub repository: String,
    /// The ECS cluster (`--cluster`).
    pub cluster: String,
    /// The ECS service of its one process (`--service`).
    pub service: String,
    /// The image tag to deploy (`--tag`, default `latest`).
    pub tag: String,
    /// ECS's own strategy for an ECS-controller service (`--ecs-strategy rolling`).
    pub ecs_strategy: Option<EcsStrategy>,
    /// The health gate's progress deadline (`--progress-deadline 30s`).
    pub progress_deadline: Option<Duration>,
}

impl Args {
    /// Parses `--flag value` pairs.
    pub fn parse(args: &[String]) -> Result<Self, Box<dyn std::error::Error>> {
        let arg = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let need = |name: &str| {
            arg(name).ok_or_else(|| format!("missing {name} (see the example's header)"))
        };
        let ecs_strategy = match arg("--ecs-strategy").as_deref() {
            None => None,
            Some("rolling") => Some(EcsStrategy::Rolling),
            Some(other) => {
                return Err(format!(
                    "--ecs-strategy {other:?}: this example knows \"rolling\"; set blue-green, \
                     linear or canary (with their times) in ProcessConfig::ecs_strategy"
                )
                .into());
            }
        };
        let progress_deadline = match arg("--progress-deadline") {
            Some(d) => Some(parse_duration(&d)?),
            None => None,
        };
        Ok(Args {
            endpoint: arg("--endpoint"),
            app: need("--app")?,
            repository: need("--repository")?,
            cluster: need("--cluster")?,
            service: need("--service")?,
            tag: arg("--tag").unwrap_or_else(|| "latest".into()),
            ecs_strategy,
            progress_deadline,
        })
    }
}

/// `30s`, `5m` or `1h`.
fn parse_duration(s: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    let bad = || format!("--progress-deadline {s:?}: expected e.g. 30s, 5m or 1h");
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad().into()),
    };
    Ok(Duration::from_secs(secs))
}

/// Connects the backend, builds the engine on it and deploys `args.tag` to the process.
/// Returns the deployment's record and the backend (for its API call counts).
pub async fn deploy(
    args: &Args,
) -> Result<(DeploymentRecord, AwsBackend), Box<dyn std::error::Error>> {
    let app = AppName::new(&args.app)?;
    let mut process =
        ProcessConfig::new(ProcessName::default_process(), &args.cluster, &args.service);
    if let Some(strategy) = args.ecs_strategy {
        process = process.ecs_strategy(strategy);
    }
    let mut config =
        AwsConfig::from_env().app(AppConfig::new(app.clone(), &args.repository).process(process));
    if let Some(endpoint) = &args.endpoint {
        // An emulator: fake credentials, a fixed region.
        config = config
            .endpoint_url(endpoint)
            .region("us-east-1")
            .credentials(StaticCredentials::new("testing", Secret::new("testing")));
    }
    let backend = AwsBackend::connect(config.build()?).await?;

    let mut gate = HealthGate::default();
    if let Some(deadline) = args.progress_deadline {
        gate.progress_deadline = deadline;
    }
    let engine = Engine::builder()
        .deployer(Arc::new(backend.deployer()))
        .registry(Arc::new(backend.registry()))
        .probe(Arc::new(ContainerHealth.and(backend.target_health())))
        .default_strategy(Arc::new(tapitalee::strategies::Rolling::default()))
        .health_gate(gate)
        .build()?;
    let handle = engine
        .deploy(
            &app,
            DeployRequest::new()
                .docker_tag(DockerTag::new(&args.tag)?)
                .initiator(Initiator::new("aws_deploy example")?),
        )
        .await?;
    let record = handle.wait().await?;
    Ok((record, backend))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse(&std::env::args().collect::<Vec<_>>())?;
    let (record, backend) = deploy(&args).await?;
    tracing::info!(status = %record.status, "deployment finished");
    for p in &record.processes {
        tracing::info!(process = %p.process, status = %p.status, "process");
    }
    for (op, n) in backend.api_calls().by_operation() {
        tracing::info!(operation = %op, calls = n, "AWS API calls");
    }
    Ok(())
}
