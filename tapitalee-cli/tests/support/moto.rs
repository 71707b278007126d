//! One moto server (the AWS emulator) per test binary on 127.0.0.1, and fixtures in it. Never
//! real AWS: every call goes to the local endpoint with fake credentials.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static MOTO: OnceLock<String> = OnceLock::new();

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port on loopback")
        .local_addr()
        .unwrap()
        .port()
}

/// The endpoint of the test binary's moto server, started on first use and stopped when the
/// test process exits (a watcher shell kills it once our pid is gone).
pub fn endpoint() -> &'static str {
    MOTO.get_or_init(|| {
        let found = Command::new("sh")
            .args(["-c", "command -v moto_server"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "moto_server is not installed; these tests need the AWS emulator: pip install 'moto[server]'"
        );
        let port = free_port();
        let script = format!(
            "moto_server -H 127.0.0.1 -p {port} >{log} 2>&1 & m=$!; \
             while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $m",
            pid = std::process::id(),
            log = std::env::temp_dir()
                .join(format!("tapit-cli-moto-{port}.log"))
                .display()
        );
        let mut watcher = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        std::thread::spawn(move || watcher.wait());
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on 127.0.0.1:{port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("http://127.0.0.1:{port}")
    })
}

/// The resources the fixture created, as JSON.
pub fn fixture(prefix: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fixture.py");
    let out = Command::new("python3")
        .arg(script)
        .args([endpoint(), prefix])
        .output()
        .expect("run python3 tests/support/fixture.py");
    assert!(
        out.status.success(),
        "fixture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fixture prints JSON")
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
