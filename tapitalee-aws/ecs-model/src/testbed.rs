//! What every test suite that talks to the AWS emulators shares: one moto server per test
//! process on 127.0.0.1, and the Python fixture scripts that create apps in it (boto3 comes
//! with moto). Never real AWS: the scripts refuse any endpoint but loopback.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static MOTO: OnceLock<String> = OnceLock::new();

/// `fixtures/moto.py`: creates an app's resources in moto (ECR images, a cluster, an
/// EXTERNAL web service with a live task set behind a listener and two target groups, an
/// ECS-controller worker, a log group with lines); prints their ids as JSON.
pub fn moto_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/moto.py")
}

/// `fixtures/model.py`: creates apps through the model (which passes what it does not model
/// on to moto); prints their ids as JSON.
pub fn model_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/model.py")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port on loopback")
        .local_addr()
        .expect("a bound port")
        .port()
}

/// The endpoint (`http://127.0.0.1:PORT`) of this process's moto server, started on first
/// use and stopped when the process exits (a watcher shell kills it once our pid is gone).
///
/// # Panics
/// When `moto_server` is not installed (the message says how to install it), or does not
/// answer within 60 s.
pub fn moto_endpoint() -> &'static str {
    MOTO.get_or_init(|| {
        let found = Command::new("sh")
            .args(["-c", "command -v moto_server"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "moto_server is not installed; these tests need the AWS emulator: install it: \
             pip install 'moto[server]'"
        );
        let port = free_port();
        let script = format!(
            "moto_server -H 127.0.0.1 -p {port} >{log} 2>&1 & m=$!; \
             while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $m",
            pid = std::process::id(),
            log = std::env::temp_dir()
                .join(format!("tapitalee-moto-{port}.log"))
                .display()
        );
        let mut watcher = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        // Reap the watcher when it ends (after this process has gone, in practice).
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

/// Runs a fixture script with `args`; returns what it printed, as JSON.
///
/// # Panics
/// When the script fails (its stderr is in the message) or prints no JSON.
pub fn run_fixture(script: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run python3 {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the fixture prints JSON")
}
