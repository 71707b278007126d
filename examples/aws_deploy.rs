//! Wiring the AWS backend into the engine.
//!
//! ```text
//! cargo run --example aws_deploy --features aws -- \
//!     --endpoint http://127.0.0.1:5000 --app myapp --repository myapp \
//!     --cluster prod --service myapp-web --tag v2
//! ```
//!
//! `--endpoint` points every AWS call at an emulator (moto); without it the default chain
//! (environment, profile, role) and `AWS_REGION` decide. The process here has no load
//! balancer; add a `LoadBalancerConfig` for a web service on the EXTERNAL controller.

use std::sync::Arc;

use tapitalee::aws::{AppConfig, AwsBackend, AwsConfig, ProcessConfig, StaticCredentials};
use tapitalee::{
    AppName, ContainerHealth, DeployRequest, DockerTag, Engine, HealthProbeExt, Initiator,
    ProcessName, Secret,
};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().collect();
    let need = |name: &str| {
        arg(&args, name).ok_or_else(|| format!("missing {name} (see the example's header)"))
    };
    let app = AppName::new(need("--app")?)?;
    let process = ProcessConfig::new(
        ProcessName::default_process(),
        need("--cluster")?,
        need("--service")?,
    );
    let mut config = AwsConfig::from_env()
        .app(AppConfig::new(app.clone(), need("--repository")?).process(process));
    if let Some(endpoint) = arg(&args, "--endpoint") {
        // An emulator: fake credentials, a fixed region.
        config = config
            .endpoint_url(endpoint)
            .region("us-east-1")
            .credentials(StaticCredentials::new("testing", Secret::new("testing")));
    }
    let backend = AwsBackend::connect(config.build()?).await?;

    let engine = Engine::builder()
        .deployer(Arc::new(backend.deployer()))
        .registry(Arc::new(backend.registry()))
        .probe(Arc::new(ContainerHealth.and(backend.target_health())))
        .default_strategy(Arc::new(tapitalee::strategies::Rolling::default()))
        .build()?;
    let tag = DockerTag::new(arg(&args, "--tag").unwrap_or_else(|| "latest".into()))?;
    let handle = engine
        .deploy(
            &app,
            DeployRequest::new()
                .docker_tag(tag)
                .initiator(Initiator::new("aws_deploy example")?),
        )
        .await?;
    let record = handle.wait().await?;
    tracing::info!(status = ?record.status, "deployment finished");
    for (op, n) in backend.api_calls().by_operation() {
        tracing::info!(operation = %op, calls = n, "AWS API calls");
    }
    Ok(())
}
