//! Shared setup for the tests against a real Docker engine: the engine check (fails loudly in
//! CI), the kit images (built once per test binary), unique apps and their cleanup.
#![allow(dead_code, clippy::print_stderr)]

pub mod load;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tapitalee_core::{
    AppName, DeployContext, Deployer, DeploymentId, DockerTag, ImageRegistry, Initiator,
    ProcessName, RegistryCredentials, Secret, Target, TrafficWeight,
};
use tapitalee_docker::{
    AppConfig, DockerBackend, KIT_DOCKERFILE_PROXY, ProcessConfig, build_kit_binary,
    build_kit_image, demo_dockerfile,
};

pub const PROXY_IMAGE: &str = "tapitalee-test/proxy:latest";

/// Whether the engine answers. Outside CI a missing engine skips the test with one line; in CI
/// (`CI=true`) it fails the test.
pub fn engine_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{test}: no Docker engine answers `docker info`, and CI=true: start dockerd");
        }
        eprintln!("{test}: SKIPPED, no Docker engine (set CI=true to make this a failure)");
    }
    ok
}

/// The statically linked kit binary, built once per test binary in its own target dir.
pub fn kit_binary() -> PathBuf {
    static KIT: OnceLock<PathBuf> = OnceLock::new();
    KIT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        build_kit_binary(&root, &target).expect("build the kit")
    })
    .clone()
}

/// Builds an image from the kit binary and a Dockerfile.
pub fn kit_image(dockerfile: &str, tag: &str) -> String {
    build_kit_image(&kit_binary(), dockerfile, tag).expect("docker build")
}

/// The proxy image, built once per test binary.
pub fn proxy_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        kit_image(KIT_DOCKERFILE_PROXY, PROXY_IMAGE);
    });
    PROXY_IMAGE
}

/// A demo version: its tag and extra `ENV` lines (e.g. `DEMO_CRASH_AT_START=1`).
pub fn demo_image(repository: &str, tag: &str, env: &[(&str, &str)]) -> String {
    kit_image(&demo_dockerfile(tag, env), &format!("{repository}:{tag}"))
}

/// A uniquely named app, removed (containers, network, images) when dropped.
pub struct TestApp {
    pub name: AppName,
    pub repository: String,
}

impl TestApp {
    pub fn new(prefix: &str) -> Self {
        let unique = ulid::Ulid::new().to_string().to_lowercase();
        let name = AppName::new(format!("{prefix}-{}", &unique[16..])).expect("app name");
        let repository = format!("tapit-test/{name}");
        TestApp { name, repository }
    }

    pub fn containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=tapit.app={}", self.name),
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let ids = self.containers();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("tapit-{}", self.name)])
            .output();
        let _ = Command::new("docker")
            .args(["volume", "rm", &format!("tapit-{}-proxy", self.name)])
            .output();
        let out = Command::new("docker")
            .args(["images", "-q", &self.repository])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rmi", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

/// The demo app's configuration: `default` (web, `web` instances), `worker` (×`workers`).
pub fn demo_config(app: &TestApp, web: u32, workers: u32) -> AppConfig {
    let mut config = AppConfig::new(app.repository.clone()).process(
        ProcessConfig::new(ProcessName::default_process(), web)
            .command(["demo"])
            .web(8080, "/health"),
    );
    if workers > 0 {
        config = config.process(
            ProcessConfig::new(ProcessName::new("worker").expect("name"), workers)
                .command(["demo"]),
        );
    }
    config
}

pub fn backend(app: &TestApp, config: AppConfig) -> DockerBackend {
    DockerBackend::builder()
        .app(app.name.clone(), config)
        .proxy_image(proxy_image())
        .stop_timeout(Duration::from_secs(5))
        .drain_timeout(Duration::from_secs(5))
        .registry(RegistryCredentials {
            endpoint: "http://127.0.0.1:5000".into(),
            username: "tapit".into(),
            password: Secret::new("test-registry-password"),
            expires_at: None,
        })
        .build()
        .expect("backend")
}

pub fn ctx(app: &AppName, process: &ProcessName) -> DeployContext {
    DeployContext::new(
        DeploymentId::new(),
        Initiator::new("seed").expect("initiator"),
        Target::new(app.clone(), process.clone()),
    )
}

/// Makes every process run `tag` (healthy, primary, all traffic), as if deployed long ago.
pub async fn seed(backend: &DockerBackend, app: &AppName, tag: &str) {
    let tag = DockerTag::new(tag).expect("tag");
    let image = backend.resolve(app, &tag).await.expect("resolve");
    for spec in backend.processes(app).await.expect("processes") {
        let c = ctx(app, &spec.name);
        let revision = backend.prepare(&c, &image).await.expect("prepare");
        let fleet = backend
            .launch(&c, &revision, spec.desired)
            .await
            .expect("launch");
        if spec.load_balanced {
            backend
                .route(
                    &c,
                    &[TrafficWeight {
                        fleet: fleet.id.clone(),
                        percent: 100,
                    }],
                )
                .await
                .expect("route");
        }
        backend.make_primary(&c, &fleet).await.expect("primary");
        let probe = backend.target_health().expect("probe");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = backend.status(&c, &fleet).await.expect("status");
            let report = probe.check(&fleet, &status).await.expect("probe");
            if report.healthy >= spec.desired && status.running() >= spec.desired {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seed never healthy: {report:?} {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Shares a backend as the conformance suite's crash case wants it.
pub fn fresh(config: AppConfig, app: &TestApp) -> tapitalee_core::testkit::conformance::Backend {
    let name = app.name.clone();
    let repository = app.repository.clone();
    Arc::new(move || {
        let b = backend(
            &TestApp::borrowed(name.clone(), repository.clone()),
            config.clone(),
        );
        (Arc::new(b.clone()) as _, Arc::new(b) as _)
    })
}

impl TestApp {
    /// A handle with no cleanup (the owner cleans up).
    fn borrowed(name: AppName, repository: String) -> std::mem::ManuallyDrop<TestApp> {
        std::mem::ManuallyDrop::new(TestApp { name, repository })
    }
}

impl TestApp {
    /// Containers of the app carrying a label value (e.g. `tapit.image.tag=v2`).
    pub fn containers_with(&self, label: &str) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=tapit.app={}", self.name),
            ])
            .args(["--filter", &format!("label={label}")])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}
