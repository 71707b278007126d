//! The demo app: serves its version on every path and its health on the health path.
//!
//! Behaviour comes from the environment (set by the image's `ENV` lines or the process's
//! configuration): `DEMO_VERSION`, `PORT` (8080), `DEMO_HEALTH_PATH` (`/health`),
//! `DEMO_CRASH_AT_START=1` (exit 2 at once), `DEMO_CRASH_AFTER=<seconds>` (exit 3 then),
//! `DEMO_UNHEALTHY=1` (the health path answers 503), and `DEMO_ONLY_PROCESS=<name>` (the crash
//! and health settings apply only when `TAPIT_PROCESS` is that name). It logs one line on
//! stderr when it starts listening and one before it exits on purpose, so its logs say what
//! happened (`tapit show logs`).

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::http;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// One line on stderr (the container's log).
fn log(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub fn run() -> ! {
    let version = env("DEMO_VERSION").unwrap_or_else(|| "unknown".into());
    let port = env("PORT").unwrap_or_else(|| "8080".into());
    let health = env("DEMO_HEALTH_PATH").unwrap_or_else(|| "/health".into());
    let applies = match env("DEMO_ONLY_PROCESS") {
        Some(only) => env("TAPIT_PROCESS").as_deref() == Some(only.as_str()),
        None => true,
    };
    let flag = |name: &str| applies && env(name).is_some_and(|v| v != "0");
    if flag("DEMO_CRASH_AT_START") {
        log(&format!(
            "demo {version}: crashing at start (DEMO_CRASH_AT_START), exit 2"
        ));
        std::process::exit(2);
    }
    if applies && let Some(secs) = env("DEMO_CRASH_AFTER").and_then(|s| s.parse::<f64>().ok()) {
        let version = version.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs));
            log(&format!(
                "demo {version}: crashing after {secs} s (DEMO_CRASH_AFTER), exit 3"
            ));
            std::process::exit(3);
        });
    }
    let unhealthy = flag("DEMO_UNHEALTHY");
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            log(&format!(
                "demo {version}: cannot listen on port {port}: {e}, exit 4"
            ));
            std::process::exit(4)
        }
    };
    log(&format!("demo {version} listening on port {port}"));
    for stream in listener.incoming().flatten() {
        let (version, health) = (version.clone(), health.clone());
        std::thread::spawn(move || serve(stream, &version, &health, unhealthy));
    }
    std::process::exit(5)
}

fn serve(stream: TcpStream, version: &str, health: &str, unhealthy: bool) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(&stream);
    let mut w = &stream;
    while let Ok(Some(req)) = http::read_message(&mut reader) {
        let (_, path) = req.method_path();
        let keep = req.keep_alive();
        let (status, body) = if path == health {
            if unhealthy {
                (503, "unhealthy\n".to_owned())
            } else {
                (200, "ok\n".to_owned())
            }
        } else {
            (200, format!("{version}\n"))
        };
        let headers = [("X-Version".to_owned(), version.to_owned())];
        if http::respond(&mut w, status, &headers, body.as_bytes(), keep).is_err() || !keep {
            break;
        }
    }
}

/// `tapit-kit check`: the image's Docker health check (exit 0 when the health path answers 200).
pub fn check() -> ! {
    let port = env("PORT").unwrap_or_else(|| "8080".into());
    let health = env("DEMO_HEALTH_PATH").unwrap_or_else(|| "/health".into());
    let ok = format!("127.0.0.1:{port}")
        .parse()
        .ok()
        .and_then(|addr| http::request(addr, "GET", &health, &[], &[], Duration::from_secs(2)).ok())
        .is_some_and(|r| r.status() == 200);
    std::process::exit(if ok { 0 } else { 1 })
}
