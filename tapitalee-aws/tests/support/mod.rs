//! Test support: one moto server per test binary on 127.0.0.1, and fixtures in it.
//!
//! Never real AWS: every client points at the local moto endpoint with fake credentials.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use tapitalee_aws::{
    AppConfig, AwsBackend, AwsConfig, LoadBalancerConfig, NetworkConfig, ProcessConfig, RateLimits,
    RetryPolicy, StaticCredentials,
};
use tapitalee_core::{AppName, ProcessName, Secret};

pub mod model;

/// A running moto server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The test binary's moto server, started on first use (shared with the other suites:
/// `tapitalee_ecs_model::testbed`).
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| Moto {
        endpoint: tapitalee_ecs_model::testbed::moto_endpoint().to_owned(),
    })
}

/// What the fixture created.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub prefix: String,
    pub json: serde_json::Value,
}

impl Fixture {
    pub fn s(&self, key: &str) -> String {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("fixture has no {key}"))
            .to_owned()
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        self.json[key]
            .as_array()
            .unwrap_or_else(|| panic!("fixture has no {key}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    pub fn app(&self) -> AppName {
        AppName::new(&self.prefix).unwrap()
    }
}

/// Creates an app's resources (ECR images, a cluster, an EXTERNAL web service with a live task
/// set behind a listener and two target groups, an ECS-controller worker, a log group) under
/// `prefix`, with the Python fixture script (boto3 comes with moto).
pub fn fixture(prefix: &str) -> Fixture {
    let m = moto();
    let json = tapitalee_ecs_model::testbed::run_fixture(
        &tapitalee_ecs_model::testbed::moto_fixture(),
        &[&m.endpoint, prefix],
    );
    Fixture {
        prefix: prefix.to_owned(),
        json,
    }
}

/// The configuration of the fixture's app against moto.
pub fn config(f: &Fixture) -> AwsConfig {
    config_of(app(f))
}

/// The fixture's app: `default` (EXTERNAL, load-balanced) and `worker` (ECS controller).
pub fn app(f: &Fixture) -> AppConfig {
    let tgs = f.list("target_groups");
    AppConfig::new(f.app(), f.s("repository"))
        .process(
            ProcessConfig::new(
                ProcessName::new("default").unwrap(),
                f.s("cluster"),
                f.s("web_service"),
            )
            .load_balancer(LoadBalancerConfig::new(
                f.s("listener"),
                &tgs[0],
                &tgs[1],
                8080,
            ))
            .network(NetworkConfig {
                subnets: f.list("subnets"),
                security_groups: f.list("security_groups"),
                assign_public_ip: false,
            }),
        )
        .process(ProcessConfig::new(
            ProcessName::new("worker").unwrap(),
            f.s("cluster"),
            f.s("worker_service"),
        ))
}

/// A configuration of `app` against moto.
pub fn config_of(app: AppConfig) -> AwsConfig {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(&moto().endpoint)
        .credentials(StaticCredentials::new("testing", Secret::new("testing")))
        .rate_limits(RateLimits::unlimited())
        .retry(RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        })
        .poll_batch_window(Duration::from_millis(5))
        .app(app)
        .build()
        .unwrap()
}

pub async fn backend(f: &Fixture) -> AwsBackend {
    AwsBackend::connect(config(f)).await.unwrap()
}

/// A raw SDK configuration against moto, for checking what the backend did.
pub async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto().endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}
