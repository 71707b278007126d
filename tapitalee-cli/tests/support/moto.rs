//! One moto server (the AWS emulator) per test binary on 127.0.0.1, and fixtures in it. Never
//! real AWS: every call goes to the local endpoint with fake credentials.

/// The endpoint of the test binary's moto server, started on first use (shared with the
/// AWS backend's suites: `tapitalee_ecs_model::testbed`).
pub fn endpoint() -> &'static str {
    tapitalee_ecs_model::testbed::moto_endpoint()
}

/// The resources the fixture created, as JSON: the app `prefix` with its worker service
/// scaled to zero (moto starts no tasks: a deployment of it makes every API call of a real
/// one with no instance to wait for).
pub fn fixture(prefix: &str) -> serde_json::Value {
    tapitalee_ecs_model::testbed::run_fixture(
        &tapitalee_ecs_model::testbed::moto_fixture(),
        &[endpoint(), prefix, "idle-worker"],
    )
}

/// A tapit.toml for the fixture's app `prefix`: `default` (EXTERNAL controller, behind the
/// listener) and `worker` (ECS controller).
pub fn config(prefix: &str, f: &serde_json::Value) -> String {
    let s = |k: &str| f[k].as_str().unwrap().to_owned();
    let list = |k: &str| {
        f[k].as_array()
            .unwrap()
            .iter()
            .map(|v| format!("{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[apps.{prefix}]
platform = "aws"
repository = "{repo}"
region = "us-east-1"
[apps.{prefix}.gate]
poll_interval = "200ms"
min_healthy_time = "200ms"
progress_deadline = "30s"
[apps.{prefix}.processes.default]
cluster = "{cluster}"
service = "{web}"
log_group = "{log_group}"
subnets = [{subnets}]
security_groups = [{sgs}]
load_balancer = {{ listener = "{listener}", target_groups = [{tgs}], port = 8080 }}
[apps.{prefix}.processes.worker]
cluster = "{cluster}"
service = "{worker}"
"#,
        repo = s("repository"),
        cluster = s("cluster"),
        web = s("web_service"),
        worker = s("worker_service"),
        log_group = s("log_group"),
        listener = s("listener"),
        subnets = list("subnets"),
        sgs = list("security_groups"),
        tgs = list("target_groups"),
    )
}
