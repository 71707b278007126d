//! A stateful model of Amazon ECS for tests, served on 127.0.0.1 in ECS's own JSON protocol
//! (`awsJson1_1`, `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>`), so the real AWS
//! SDK (and `tapit`) talk to it through an ordinary endpoint setting.
//!
//! # What it models
//! - **Services** on the `ECS` and `EXTERNAL` deployment controllers, with `desiredCount`.
//! - **ECS-controller deployments**: `UpdateService` with a new task definition starts a
//!   deployment (`PENDING` for a moment, then `IN_PROGRESS`) run as ECS runs it: rolling
//!   within `minimumHealthyPercent` / `maximumPercent`, or blue-green / linear / canary (the
//!   whole new fleet first, then the traffic shift time and the bake, then the old fleet
//!   stops). `rolloutState` goes `IN_PROGRESS` → `COMPLETED` or `FAILED`; the deployment
//!   circuit breaker fails a deployment at `max(3, min(200, ceil(0.5 × desired)))` failed
//!   tasks and, with rollback on, starts a deployment of the last completed revision.
//!   `ListServiceDeployments`, `DescribeServiceDeployments` and `StopServiceDeployment`
//!   (`ROLLBACK`, `ABORT`) follow the service deployment statuses.
//! - **Task sets** (`EXTERNAL`): `scale` percent → `computedDesiredCount` rounded up,
//!   `stabilityStatus` (`STABILIZING` / `STEADY_STATE`), the primary task set,
//!   `clientToken` idempotency, `DeleteTaskSet` draining.
//! - **Tasks** that provision, run, pass or fail container health checks (essential
//!   containers only), and stop with `stopCode`, `stoppedReason` and per-container exit
//!   codes. What a task does is scripted per image ([`Behavior`]): good, crash loop, never
//!   healthy, failing some time after it became healthy, or never placed (no task, a
//!   "was unable to place a task" service event). The service scheduler replaces
//!   failed tasks and stops tasks that fail container or load balancer health checks.
//! - **Target health** (ELBv2 `DescribeTargetHealth`): tasks register their IP in the target
//!   groups of their task set (or service); a target is `initial`, then `healthy` or
//!   `unhealthy` after [`Timing::healthy_after`], `draining` while it deregisters, and
//!   `unused` when no listener or rule forwards to its target group (ELB never
//!   health-checks those). Which groups are in use is read from the listener and rule
//!   changes passing through to moto.
//! - **Service events** as ECS words them (tasks started and stopped, steady state,
//!   deployment completed or failed, the circuit breaker's rollback, placement failures), and
//!   `currentServiceDeployment`.
//! - **Eventual consistency**: for [`Timing::describe_lag`] after an `UpdateService` that
//!   started a deployment, `DescribeServices` shows the service as it was (the update's own
//!   answer is current).
//! - **Throttling** per operation at ECS's documented sustained rates (token buckets, on the
//!   model's clock): `ThrottlingException: Rate exceeded`.
//!
//! Everything else (task definitions, clusters, ECR, ELBv2 load balancers, listeners and
//! rules, CloudWatch Logs, …) is forwarded as is to a moto server (`upstream`), which does
//! those well; the model reads task definitions back from it.
//!
//! # Time
//! The model runs on its own clock, [`ModelConfig::time_scale`] model seconds per real
//! second, advanced in one-second steps whenever a request arrives: with a scale of 100, a
//! task that takes 30 s to become healthy does so in 0.3 s, and a 10-minute bake takes 6 s.
//! Timestamps in answers are model time. Callers scale their own timing (poll intervals,
//! gates) by the same factor; [`EcsModel::real`] converts.

mod ecs;
mod elb;
mod http;
mod state;
pub mod testbed;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use state::{Behavior, Timing};

/// How to start the model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The moto server everything not modelled is forwarded to, e.g. `http://127.0.0.1:5000`.
    /// Must be on loopback.
    pub upstream: String,
    /// Model seconds per real second (default 100).
    pub time_scale: f64,
    /// How long tasks take to do things, in model time.
    pub timing: Timing,
    /// Whether ECS calls are throttled at the documented rates (default on).
    pub throttle: bool,
    /// The region in ARNs (default `us-east-1`).
    pub region: String,
    /// The account id in ARNs (default moto's `123456789012`).
    pub account: String,
}

impl ModelConfig {
    /// A model forwarding to `upstream`, with the defaults.
    pub fn new(upstream: impl Into<String>) -> Self {
        ModelConfig {
            upstream: upstream.into(),
            time_scale: 100.0,
            timing: Timing::default(),
            throttle: true,
            region: "us-east-1".into(),
            account: "123456789012".into(),
        }
    }
}

/// Calls the model answered or forwarded, per operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallReport {
    /// Calls per operation (`"DescribeServices"`, `"DescribeTargetHealth"`, …).
    pub calls: BTreeMap<String, u64>,
    /// The most calls of each operation within one model second.
    pub peak_per_second: BTreeMap<String, u64>,
    /// Calls refused with `ThrottlingException`, per operation.
    pub throttled: BTreeMap<String, u64>,
}

/// A running model. Dropping it stops the server.
#[derive(Debug)]
pub struct EcsModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    shipper: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ModelConfig,
    pub(crate) state: Mutex<state::State>,
    pub(crate) clock: Clock,
    pub(crate) upstream: http::Upstream,
}

/// The model's clock: model seconds (Unix epoch based) from the real monotonic clock.
#[derive(Debug)]
pub(crate) struct Clock {
    origin: std::time::Instant,
    origin_model: f64,
    scale: f64,
}

impl Clock {
    pub(crate) fn now(&self) -> f64 {
        self.origin_model + self.origin.elapsed().as_secs_f64() * self.scale
    }
}

impl Shared {
    /// The state, advanced to the model's present.
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, state::State> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.advance_to(self.clock.now());
        s
    }
}

impl EcsModel {
    /// Starts the model on a random port of 127.0.0.1, on the current tokio runtime.
    pub async fn start(config: ModelConfig) -> std::io::Result<EcsModel> {
        if !config.upstream.starts_with("http://127.0.0.1:") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "upstream {:?} must be a moto server on loopback (http://127.0.0.1:PORT)",
                    config.upstream
                ),
            ));
        }
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("time scale {} must be a positive number", config.time_scale),
            ));
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let origin_model = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(&config, origin_model)),
            clock: Clock {
                origin: std::time::Instant::now(),
                origin_model,
                scale: config.time_scale,
            },
            upstream: http::Upstream::new(&config.upstream),
            config,
        });
        let server = tokio::spawn(http::serve(listener, shared.clone()));
        let shipper = tokio::spawn(http::ship_logs_forever(shared.clone()));
        Ok(EcsModel {
            addr,
            shared,
            server,
            shipper,
        })
    }

    /// `http://127.0.0.1:PORT`: the endpoint to give the SDK (for every service: what the
    /// model does not answer goes on to moto).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tasks whose image (as in the task definition: URI with tag or digest) contains
    /// `image_contains` behave as `behavior` (later scripts win). Unscripted images are good.
    pub fn script(&self, image_contains: &str, behavior: Behavior) {
        self.shared
            .state()
            .scripts
            .push((image_contains.to_owned(), behavior));
    }

    /// The real time a model duration takes.
    pub fn real(&self, model: Duration) -> Duration {
        model.div_f64(self.shared.config.time_scale)
    }

    /// The model's present, in seconds since the Unix epoch.
    pub fn now(&self) -> f64 {
        self.shared.clock.now()
    }

    /// Every call so far.
    pub fn calls(&self) -> CallReport {
        self.shared.state().calls.clone()
    }

    /// Forgets the calls counted so far.
    pub fn reset_calls(&self) {
        self.shared.state().calls = CallReport::default();
    }

    /// The task definition ARNs of a service's tasks that run (desired and last status
    /// RUNNING), one entry per task: what the service really serves.
    pub fn running_task_definitions(&self, cluster: &str, service: &str) -> Vec<String> {
        self.shared
            .state()
            .running_task_definitions(cluster, service)
    }

    /// A service as `DescribeServices` shows it, plus a line per task (status, health, stop
    /// reason): for test failure messages.
    pub fn describe(&self, cluster: &str, service: &str) -> String {
        let s = self.shared.state();
        crate::ecs::debug(&s, cluster, service)
    }

    /// Whether a service has settled: every task set `STEADY_STATE` (EXTERNAL), or one
    /// deployment `COMPLETED` (ECS), with all tasks running.
    pub fn steady(&self, cluster: &str, service: &str) -> bool {
        self.shared.state().steady(cluster, service)
    }
}

impl Drop for EcsModel {
    fn drop(&mut self) {
        self.server.abort();
        self.shipper.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ContainerDef, TaskDef};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One ECS call over plain HTTP/1.1; the status line and body.
    async fn call(endpoint: &std::net::SocketAddr, op: &str, body: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(endpoint).await.unwrap();
        let req = format!(
            "POST / HTTP/1.1\r\nhost: model\r\nconnection: close\r\n\
             x-amz-target: AmazonEC2ContainerServiceV20141113.{op}\r\n\
             content-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// A moto that never answers must not hold the model's answers: crashed containers' log
    /// lines are shipped off the request path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_do_not_wait_for_log_shipping() {
        // Accepts and never answers.
        let hung = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let upstream = format!("http://{}", hung.local_addr().unwrap());
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = hung.accept().await {
                held.push(socket);
            }
        });
        let mut config = ModelConfig::new(upstream);
        config.time_scale = 1000.0;
        config.throttle = false;
        let model = EcsModel::start(config).await.unwrap();
        let td = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1";
        {
            let mut s = model.shared.state();
            s.task_defs.insert(
                td.to_owned(),
                TaskDef {
                    arn: td.to_owned(),
                    containers: vec![ContainerDef {
                        name: "web".into(),
                        image: "repo/web:crash".into(),
                        essential: true,
                        health_check: false,
                        awslogs: Some(("/ecs/web".into(), "ecs".into())),
                    }],
                    cpu: None,
                    memory: None,
                },
            );
        }
        model.script("crash", Behavior::CrashLoop);
        let created = call(
            &model.addr,
            "CreateService",
            &format!(
                r#"{{"cluster": "c", "serviceName": "web", "desiredCount": 2, "taskDefinition": "{td}"}}"#
            ),
        )
        .await;
        assert!(created.starts_with("HTTP/1.1 200"), "{created}");
        // 100 ms real = 100 model seconds: several crashes, each with a log line to ship.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let described = tokio::time::timeout(
            Duration::from_secs(5),
            call(
                &model.addr,
                "DescribeServices",
                r#"{"cluster": "c", "services": ["web"]}"#,
            ),
        )
        .await
        .expect("the answer waited for the log lines to reach an upstream that never answers");
        assert!(described.starts_with("HTTP/1.1 200"), "{described}");
        assert!(
            described.contains("Essential container in task exited")
                || described.contains("has started"),
            "{described}"
        );
        holder.abort();
    }
}
