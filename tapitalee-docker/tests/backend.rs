//! The backend's own behaviour on a real engine: a first deployment of several processes at
//! once, configuration errors, login without a registry, state read back by a fresh backend.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tapitalee_core::{
    AppName, DeployRequest, Deployer, DeploymentStatus, DockerTag, Engine, Error, HealthGate,
    ImageRegistry, MemoryStore, ProcessName,
};
use tapitalee_docker::{AppConfig, DockerBackend, ProcessConfig};
use tapitalee_strategies::Rolling;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_deploy_of_three_processes_at_once() {
    if !engine_or_skip("first_deploy_of_three_processes_at_once") {
        return;
    }
    let app = TestApp::new("first");
    demo_image(&app.repository, "v1", &[]);
    let config = demo_config(&app, 2, 1)
        .process(ProcessConfig::new(ProcessName::new("scheduler").unwrap(), 1).command(["demo"]));
    let backend = backend(&app, config.clone());
    let engine = Engine::builder()
        .deployer(Arc::new(backend.clone()))
        .registry(Arc::new(backend.clone()))
        .store(Arc::new(MemoryStore::new()))
        .default_strategy(Arc::new(Rolling::new()))
        .health_gate(HealthGate {
            min_healthy_time: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            progress_deadline: Duration::from_secs(20),
            ..HealthGate::default()
        })
        .build()
        .unwrap();
    let record = engine
        .deploy(
            &app.name,
            DeployRequest::new().docker_tag(DockerTag::new("v1").unwrap()),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(
        record.status,
        DeploymentStatus::Succeeded,
        "{:?}",
        record.processes
    );
    let networks = std::process::Command::new("docker")
        .args(["network", "ls", "-q", "--filter"])
        .arg(format!("label=tapit.app={}", app.name))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&networks.stdout).lines().count(),
        1,
        "one network for the app even when its processes launch at once"
    );
    // A fresh backend reads the same releases back from the engine alone.
    let fresh = common::backend(&app, config);
    for p in ["default", "worker", "scheduler"] {
        let c = ctx(&app.name, &ProcessName::new(p).unwrap());
        let release = fresh.current(&c).await.unwrap();
        let fleet = release.fleet.expect("a live fleet");
        assert_eq!(fleet.revision.image.tag.as_str(), "v1");
        let status = fresh.status(&c, &fleet).await.unwrap();
        assert_eq!(status.desired, release.desired, "{p}");
    }
    // The proxy answers with v1.
    let addr = fresh.proxy_address(&app.name).await.unwrap().unwrap();
    let load = common::load::start(addr, 1, Duration::ZERO, Duration::from_secs(5), 20);
    let report = load.stop_after_all().await;
    assert!(report.failures().is_empty());
    assert_eq!(report.count("v1"), report.requests());

    // The proxy keeps its weights and backends across a restart of its container.
    let proxy = format!("tapit-{}-proxy", app.name);
    let restarted = std::process::Command::new("docker")
        .args(["restart", "-t", "1", &proxy])
        .output()
        .unwrap();
    assert!(restarted.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let addr = fresh.proxy_address(&app.name).await.unwrap();
        if let Some(addr) = addr {
            let report = common::load::start(addr, 1, Duration::ZERO, Duration::from_secs(2), 1)
                .stop_after_all()
                .await;
            if report.count("v1") == 1 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted proxy serves v1 again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn configuration_errors_name_the_fix() {
    let app = AppName::new("cfg").unwrap();
    let no_process = DockerBackend::builder()
        .app(app.clone(), AppConfig::new("repo/app"))
        .build()
        .unwrap_err();
    assert!(
        no_process.to_string().contains("has no process"),
        "{no_process}"
    );
    let web = |n: &str| ProcessConfig::new(ProcessName::new(n).unwrap(), 1).web(8080, "/health");
    let two_webs = DockerBackend::builder()
        .app(
            app.clone(),
            AppConfig::new("repo/app")
                .process(web("a"))
                .process(web("b")),
        )
        .build()
        .unwrap_err();
    assert!(
        two_webs.to_string().contains("2 web processes"),
        "{two_webs}"
    );
    for (host, says) in [
        ("ssh://me@build-box", "ssh:// is not supported"),
        (
            "https://127.0.0.1:2376",
            "TLS connections to the engine are not supported",
        ),
        ("127.0.0.1:2375", "has no scheme"),
    ] {
        let e = DockerBackend::builder()
            .docker_host(host)
            .app(app.clone(), AppConfig::new("repo/app").process(web("a")))
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.contains(&format!("{host:?}")) && m.contains(says), "{m}");
    }
}

/// Forwards TCP connections on 127.0.0.1 to the engine's unix socket, counting them: an
/// engine reached over `tcp://`, as `dockerd -H tcp://…` would serve it.
async fn tcp_to_engine() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_over_tcp_as_docker_host_names_it() {
    if !engine_or_skip("an_engine_over_tcp_as_docker_host_names_it") {
        return;
    }
    let app = TestApp::new("tcp");
    demo_image(&app.repository, "v1", &[]);
    let (addr, connections) = tcp_to_engine().await;
    let backend = DockerBackend::builder()
        .docker_host(format!("tcp://{addr}"))
        .app(app.name.clone(), demo_config(&app, 2, 1))
        .proxy_image(proxy_image())
        .stop_timeout(Duration::from_secs(3))
        .drain_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    backend.ping().await.unwrap();
    let engine = Engine::builder()
        .deployer(Arc::new(backend.clone()))
        .registry(Arc::new(backend.clone()))
        .store(Arc::new(MemoryStore::new()))
        .default_strategy(Arc::new(Rolling::new()))
        .health_gate(HealthGate {
            min_healthy_time: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            progress_deadline: Duration::from_secs(30),
            ..HealthGate::default()
        })
        .build()
        .unwrap();
    let record = engine
        .deploy(
            &app.name,
            DeployRequest::new().docker_tag(DockerTag::new("v1").unwrap()),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(
        record.status,
        DeploymentStatus::Succeeded,
        "{:?}",
        record.processes
    );
    assert_eq!(app.containers_with("tapit.role=instance").len(), 3);
    assert!(
        connections.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "every call went over tcp://{addr}"
    );
    // An engine that does not answer there is a transient error, not a hang.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nobody = DockerBackend::builder()
        .docker_host(format!("tcp://{dead}"))
        .app(app.name.clone(), demo_config(&app, 1, 0))
        .build()
        .unwrap();
    let e = nobody.ping().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn unknown_apps_and_login_without_a_registry() {
    let app = AppName::new("solo").unwrap();
    let backend = DockerBackend::builder()
        .app(
            app.clone(),
            AppConfig::new("repo/solo")
                .process(ProcessConfig::new(ProcessName::default_process(), 1)),
        )
        .build()
        .unwrap();
    match backend.login(&app).await {
        Err(Error::Platform { message, .. }) => {
            assert!(message.contains("no registry is configured"), "{message}");
        }
        other => panic!("login without a registry must say so, got {other:?}"),
    }
    match backend.processes(&AppName::new("other").unwrap()).await {
        Err(Error::NotFound { hint, .. }) => assert!(hint.contains("solo"), "{hint}"),
        other => panic!("unknown app: {other:?}"),
    }
}

/// The proxy comes up while the first web fleet's instances do; when it cannot (its image is
/// missing), the launch fails naming the fix and leaves no container behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_proxy_cannot_start_leaves_nothing() {
    if !engine_or_skip("a_launch_whose_proxy_cannot_start_leaves_nothing") {
        return;
    }
    let app = TestApp::new("noproxy");
    demo_image(&app.repository, "v1", &[]);
    let backend = DockerBackend::builder()
        .app(app.name.clone(), demo_config(&app, 2, 0))
        .proxy_image("tapit-test/no-such-proxy:none")
        .build()
        .unwrap();
    let image = backend
        .resolve(&app.name, &DockerTag::new("v1").unwrap())
        .await
        .unwrap();
    let c = ctx(&app.name, &ProcessName::default_process());
    let revision = backend.prepare(&c, &image).await.unwrap();
    let e = backend.launch(&c, &revision, 2).await.unwrap_err();
    assert!(e.to_string().contains("build the proxy image first"), "{e}");
    assert!(app.containers().is_empty(), "{:?}", app.containers());
}
