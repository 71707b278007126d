//! Deploying the 3-process demo app on a local Docker engine, against the physical limit.
//!
//! - `docker_demo/physical_limit`: the same five containers (`default` ×2, `worker` ×2,
//!   `scheduler` ×1) created and started directly with the docker CLI, all at once, timed from
//!   the first create until Docker reports every one healthy.
//! - `docker_demo/deploy`: a first deploy of the same app with the default strategy (rolling),
//!   the health gate's minimum healthy time at zero and a 100 ms poll, timed until the engine
//!   records it succeeded.
//!
//! After the group, the medians of both (without the warm-up run) and their ratio (the target
//! is at most 1.2×) are printed. Without an engine it says so in one line and measures nothing.
//!
//! Run: `cargo bench --features docker --bench docker_deploy`

#![allow(clippy::print_stdout, missing_docs)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use tapitalee::docker::{
    AppConfig, DockerBackend, KIT_DOCKERFILE_PROXY, ProcessConfig, build_kit_binary,
    build_kit_image, demo_dockerfile,
};
use tapitalee::*;

const REPOSITORY: &str = "tapitalee-demo/bench";
const PROXY_IMAGE: &str = "tapitalee-demo/proxy:latest";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Five containers started directly, timed from the first create to the last healthy.
fn physical_limit(run: usize) -> Duration {
    let net = format!("tapit-bench-direct-{run}");
    docker(&["network", "create", &net]);
    let image = format!("{REPOSITORY}:v1");
    let started = Instant::now();
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let (net, image) = (net.clone(), image.clone());
            std::thread::spawn(move || {
                docker(&[
                    "run",
                    "-d",
                    "--init",
                    "--network",
                    &net,
                    "--label",
                    "tapit-bench=direct",
                    "--name",
                    &format!("{net}-{i}"),
                    &image,
                    "demo",
                ])
            })
        })
        .collect();
    let ids: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("docker run"))
        .collect();
    loop {
        let mut args = vec!["inspect", "-f", "{{.State.Health.Status}}"];
        args.extend(ids.iter().map(String::as_str));
        if docker(&args).lines().all(|l| l == "healthy") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    docker(&args);
    docker(&["network", "rm", &net]);
    took
}

async fn deployment(run: usize) -> Result<Duration> {
    let app = AppName::new(format!("bench-{run}"))?;
    let config = AppConfig::new(REPOSITORY)
        .process(
            ProcessConfig::new(ProcessName::default_process(), 2)
                .command(["demo"])
                .web(8080, "/health"),
        )
        .process(ProcessConfig::new(ProcessName::new("worker")?, 2).command(["demo"]))
        .process(ProcessConfig::new(ProcessName::new("scheduler")?, 1).command(["demo"]));
    let backend = DockerBackend::builder()
        .app(app.clone(), config)
        .proxy_image(PROXY_IMAGE)
        .stop_timeout(Duration::from_secs(2))
        .build()?;
    backend.remove_app(&app).await?;
    let shared = Arc::new(backend.clone());
    let engine = tapitalee::engine()
        .deployer(shared.clone())
        .registry(shared)
        .store(Arc::new(MemoryStore::new()))
        .health_gate(HealthGate {
            min_healthy_time: Duration::ZERO,
            poll_interval: Duration::from_millis(100),
            progress_deadline: Duration::from_secs(60),
            ..HealthGate::default()
        })
        .build()?;
    let started = Instant::now();
    let record = engine
        .deploy(&app, DeployRequest::new().docker_tag(DockerTag::new("v1")?))
        .await?
        .wait()
        .await?;
    let took = started.elapsed();
    assert_eq!(
        record.status,
        DeploymentStatus::Succeeded,
        "{:?}",
        record.processes
    );
    backend.remove_app(&app).await?;
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    if Command::new("docker")
        .arg("info")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        println!("No Docker engine is reachable (DOCKER_HOST or /var/run/docker.sock).");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    let kit = build_kit_binary(&root, &target).expect("build the kit");
    build_kit_image(&kit, KIT_DOCKERFILE_PROXY, PROXY_IMAGE).expect("proxy image");
    build_kit_image(
        &kit,
        &demo_dockerfile("v1", &[]),
        &format!("{REPOSITORY}:v1"),
    )
    .expect("demo image");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut limits = Vec::new();
    let mut deploys = Vec::new();
    let mut run = 0;
    let mut group = c.benchmark_group("docker_demo");
    // One run per sample: each run takes seconds.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("physical_limit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let took = physical_limit(run);
                limits.push(took);
                total += took;
            }
            total
        });
    });
    group.bench_function("deploy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let took = runtime.block_on(deployment(run)).expect("deployment");
                deploys.push(took);
                total += took;
            }
            total
        });
    });
    group.finish();
    // The first run of each is criterion's warm-up.
    if limits.len() < 2 || deploys.len() < 2 {
        return; // filtered out
    }
    limits.remove(0);
    deploys.remove(0);
    println!(
        "{} runs each; physical limit {limits:?}; deployment {deploys:?}",
        limits.len()
    );
    let (limit, deploy) = (median(limits), median(deploys));
    println!(
        "median: physical limit {:.2} s, deployment {:.2} s, ratio {:.2}x (target <= 1.2x)",
        limit.as_secs_f64(),
        deploy.as_secs_f64(),
        deploy.as_secs_f64() / limit.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
