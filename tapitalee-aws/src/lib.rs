//! Tapitalee's AWS backend: ECS (Fargate), ECR, ELBv2 and CloudWatch behind the core traits.
//!
//! - [`EcsDeployer`] is the [`Deployer`](tapitalee_core::Deployer). Services on the
//!   `EXTERNAL` deployment controller give strategies full control: a fleet is a task set and
//!   traffic is the ALB listener's weighted forward between a pair of target groups. Services
//!   on the default `ECS` controller are deployed with `UpdateService` and judged by their
//!   deployment's own rollout state (see [`ecs_native`]); ECS runs the rollout itself, rolling
//!   or the blue-green / linear / canary [`EcsStrategy`] set on the process. Such processes are
//!   [`RolloutControl::Platform`](tapitalee_core::RolloutControl::Platform): the engine
//!   launches once, gates, and rolls a failure back new-fleet-first
//!   (`StopServiceDeployment(ROLLBACK)`, else the previous task definition, which every call
//!   receives in its [`DeployContext`](tapitalee_core::DeployContext)).
//! - [`EcrRegistry`] is the [`ImageRegistry`](tapitalee_core::ImageRegistry).
//! - [`TargetHealth`] is a [`HealthProbe`](tapitalee_core::HealthProbe) on ELB target health.
//! - [`AlarmAnalysis`] and [`MetricAnalysis`] are [`Analysis`](tapitalee_core::Analysis)
//!   gates on CloudWatch.
//! - [`CloudWatchLogs`] reads a process's logs.
//! - [`DynamoStore`] is a [`DeploymentStore`](tapitalee_core::DeploymentStore) on DynamoDB:
//!   the history and process locks of a team and its CI runners, in one table.
//!
//! Everything goes through one [`AwsBackend`]: one set of SDK clients, a client-side rate
//! limiter under ECS's documented rates, bounded jittered retries of throttling and 5xx, one
//! batched poller shared by all deployments in flight (`DescribeServices` 10 services a call,
//! `DescribeTasks` 100 tasks a call), and an interceptor counting every call
//! ([`AwsBackend::api_calls`]). No AWS SDK type appears in this API.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tapitalee_aws::{AppConfig, AwsBackend, AwsConfig, LoadBalancerConfig, ProcessConfig};
//! use tapitalee_core::{AppName, ProcessName};
//!
//! # async fn run() -> tapitalee_core::Result<()> {
//! let app = AppConfig::new(AppName::new("myapp")?, "myapp")
//!     .process(
//!         ProcessConfig::new(ProcessName::new("default")?, "prod", "myapp-web").load_balancer(
//!             LoadBalancerConfig::new("arn:…:listener/…", "arn:…:targetgroup/blue/…",
//!                 "arn:…:targetgroup/green/…", 8080),
//!         ),
//!     )
//!     .process(ProcessConfig::new(ProcessName::new("worker")?, "prod", "myapp-worker"));
//! let backend = AwsBackend::connect(AwsConfig::from_env().app(app).build()?).await?;
//! let deployer: tapitalee_core::DynDeployer = Arc::new(backend.deployer());
//! let registry: tapitalee_core::DynImageRegistry = Arc::new(backend.registry());
//! # let _ = (deployer, registry);
//! # Ok(())
//! # }
//! ```

mod backend;
mod cloudwatch;
mod config;
mod dynamo;
mod ecr;
mod ecs;
pub mod ecs_native;
mod ecs_strategy;
mod elb;
mod error;
mod logs;
mod metrics;
mod model;
mod poller;
mod retry;
mod taskdef;
mod throttle;

#[cfg(test)]
mod tests;

pub use backend::AwsBackend;
pub use cloudwatch::{
    AlarmAnalysis, CANDIDATE_TARGET_GROUP, FailWhen, MetricAnalysis, MetricQuery,
};
pub use config::{
    AppConfig, AssumeRole, AwsConfig, AwsConfigBuilder, DEFAULT_CALL_TIMEOUT, LoadBalancerConfig,
    NetworkConfig, ProcessConfig, Route, StaticCredentials,
};
pub use dynamo::{ControlMessage, DynamoStore, DynamoStoreBuilder};
pub use ecr::EcrRegistry;
pub use ecs::EcsDeployer;
pub use ecs_strategy::EcsStrategy;
pub use elb::TargetHealth;
pub use logs::{CloudWatchLogs, LogLine, LogQuery};
pub use metrics::ApiCalls;
pub use retry::RetryPolicy;
pub use throttle::{Rate, RateLimits};
