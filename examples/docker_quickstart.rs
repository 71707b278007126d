//! The quickstart on real containers: a local Docker engine, real HTTP traffic.
//!
//! Builds the demo app's v1 and v2 (`FROM scratch` images around the statically linked
//! `tapit-kit`, so nothing is downloaded), deploys v1 (`default` ×2 behind the app's proxy,
//! `worker` ×2, `scheduler` ×1), then v2, whose worker crash-loops, while four keep-alive
//! clients send requests through the proxy the whole time. It ends in the product document's
//! mixed state on real containers (`default` and `scheduler` on v2, `worker` back on v1) and
//! prints the request count and the failed-request count.
//!
//! ```text
//! cargo run --example docker_quickstart --features docker
//! ```
//!
//! Needs a Docker engine (`DOCKER_HOST`, or the default socket); without one it says so in one
//! line. The containers keep running afterwards; remove them with
//! `docker rm -f $(docker ps -aq --filter label=tapit.app=quickstart)`.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tapitalee::docker::{
    AppConfig, DockerBackend, KIT_DOCKERFILE_PROXY, ProcessConfig, build_kit_binary,
    build_kit_image, demo_dockerfile,
};
use tapitalee::*;

const REPOSITORY: &str = "tapitalee-demo/quickstart";
const PROXY_IMAGE: &str = "tapitalee-demo/proxy:latest";

#[tokio::main]
async fn main() -> Result<()> {
    let app = AppName::new("quickstart")?;
    let name = |n: &str| ProcessName::new(n);
    let config = AppConfig::new(REPOSITORY)
        .process(
            ProcessConfig::new(ProcessName::default_process(), 2)
                .command(["demo"])
                .web(8080, "/health"),
        )
        .process(ProcessConfig::new(name("worker")?, 2).command(["demo"]))
        .process(ProcessConfig::new(name("scheduler")?, 1).command(["demo"]));
    let backend = DockerBackend::builder()
        .app(app.clone(), config)
        .proxy_image(PROXY_IMAGE)
        .stop_timeout(Duration::from_secs(5))
        .drain_timeout(Duration::from_secs(5))
        .build()?;
    if let Err(e) = backend.ping().await {
        println!("No Docker engine is reachable (DOCKER_HOST or /var/run/docker.sock): {e}");
        return Ok(());
    }
    backend.remove_app(&app).await?; // what an earlier run left

    println!("Building the kit (proxy + demo app) and the images v1, v2 (worker crash-loops)...");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    let kit = build_kit_binary(&root, &target)?;
    build_kit_image(&kit, KIT_DOCKERFILE_PROXY, PROXY_IMAGE)?;
    build_kit_image(
        &kit,
        &demo_dockerfile("v1", &[]),
        &format!("{REPOSITORY}:v1"),
    )?;
    let crash = [
        ("DEMO_CRASH_AT_START", "1"),
        ("DEMO_ONLY_PROCESS", "worker"),
    ];
    build_kit_image(
        &kit,
        &demo_dockerfile("v2", &crash),
        &format!("{REPOSITORY}:v2"),
    )?;

    let shared = Arc::new(backend.clone());
    let engine = tapitalee::engine()
        .deployer(shared.clone())
        .registry(shared)
        .store(Arc::new(MemoryStore::new()))
        .health_gate(HealthGate {
            min_healthy_time: Duration::from_secs(2),
            poll_interval: Duration::from_millis(250),
            progress_deadline: Duration::from_secs(30),
            ..HealthGate::default()
        })
        .build()?;

    let started = Instant::now();
    deploy(&engine, &app, "v1").await?;
    let proxy = backend
        .proxy_address(&app)
        .await?
        .ok_or_else(|| Error::platform("quickstart", "the app's proxy is not running"))?;
    println!("The app's proxy listens on http://{proxy}/ ; load starts (4 keep-alive clients)");
    let load = Load::start(proxy, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let record = deploy(&engine, &app, "v2").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (requests, failed) = load.stop();

    println!("\nThe app is now in a mixed deployment state, on real containers:");
    for p in &record.processes {
        let ctx = DeployContext::new(
            record.id,
            record.initiator.clone(),
            Target::new(app.clone(), p.process.clone()),
        );
        let live = backend
            .current(&ctx)
            .await?
            .fleet
            .map(|f| f.revision.image.tag.to_string())
            .unwrap_or_default();
        println!(
            "  {:<10} {:<30} live: {live}",
            p.process,
            p.status.to_string()
        );
    }
    println!(
        "\nThrough the proxy: {requests} requests, {failed} failed, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("Remove it all with: docker rm -f $(docker ps -aq --filter label=tapit.app={app})");
    Ok(())
}

async fn deploy(engine: &Engine, app: &AppName, tag: &str) -> Result<DeploymentRecord> {
    let t = Instant::now();
    let request = DeployRequest::new()
        .docker_tag(DockerTag::new(tag)?)
        .initiator(Initiator::new("docker-quickstart")?);
    let record = engine.deploy(app, request).await?.wait().await?;
    println!(
        "deploy {tag}: {:?} in {:.1} s",
        record.status,
        t.elapsed().as_secs_f64()
    );
    for p in &record.processes {
        println!("  {:<10} {}", p.process, p.status);
    }
    Ok(record)
}

/// Keep-alive clients sending `GET /` through the proxy until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, requests, failed) = (stop.clone(), requests.clone(), failed.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(300);
                    let mut conn: Option<BufReader<TcpStream>> = None;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        requests.fetch_add(1, Ordering::Relaxed);
                        if get(&mut conn, addr).is_none() {
                            failed.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Load {
            stop,
            requests,
            failed,
            threads,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        (
            self.requests.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// One request on a kept-alive connection; `None` on a connection error or a 5xx.
fn get(conn: &mut Option<BufReader<TcpStream>>, addr: SocketAddr) -> Option<String> {
    if conn.is_none() {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        *conn = Some(BufReader::new(stream));
    }
    let c = conn.as_mut()?;
    c.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: quickstart\r\n\r\n")
        .ok()?;
    let mut status = String::new();
    c.read_line(&mut status).ok()?;
    let code: u16 = status.split(' ').nth(1)?.parse().ok()?;
    let mut len = 0;
    loop {
        let mut line = String::new();
        c.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    std::io::Read::read_exact(c, &mut body).ok()?;
    (code < 500).then(|| String::from_utf8_lossy(&body).trim().to_owned())
}
