//! Test support: a temporary project with a tapit.toml and its own data directory, and the
//! `tapit` binary run in it as a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;

pub mod moto;

/// A simulated app `shop` (default ×2 behind a load balancer, worker, scheduler), fast:
/// instances start in 100 ms, fleets must stay healthy 300 ms.
pub const SIMULATED: &str = r#"
[apps.shop]
platform = "simulated"
lock_lease = "1s"
[apps.shop.gate]
min_healthy_time = "300ms"
poll_interval = "100ms"
progress_deadline = "20s"
[apps.shop.canary]
steps = ["50%", "pause"]
[apps.shop.blue_green]
scale_down_delay = "200ms"
[apps.shop.processes.default]
instances = 2
[apps.shop.processes.worker]
[apps.shop.processes.scheduler]
[apps.shop.simulated]
initial = "v1.2.2"
start_delay = "100ms"
images = { "latest" = "good", "v1.2.2" = "good", "v1.2.3" = "good", "v1.2.4" = { all = "good", worker = "crash-loop" }, "v9" = "crash-loop", "v10" = "never-healthy" }
"#;

/// A temporary project directory.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project with `config` as its tapit.toml.
    pub fn new(config: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tapit.toml"), config).unwrap();
        Project { dir }
    }

    /// A project without a tapit.toml.
    pub fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `tapit ARGS` in the project, with its own data directory and a clean environment.
    pub fn std_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("tapit"));
        cmd.current_dir(self.path())
            .env("TAPIT_DATA_DIR", self.data_dir())
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .env_remove("TAPIT_APP")
            .env_remove("TAPIT_CONFIG")
            .env_remove("TAPIT_INITIATOR")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_ACTOR")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("AWS_PROFILE")
            .args(args);
        cmd
    }

    /// The same, as an assert_cmd command with a timeout.
    pub fn tapit(&self, args: &[&str]) -> Command {
        let mut cmd = Command::from_std(self.std_command(args));
        cmd.timeout(Duration::from_secs(120));
        cmd
    }

    /// Runs `tapit ARGS`; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.tapit(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `show deploy --output json` of a deployment.
    pub fn record(&self, id: &str) -> serde_json::Value {
        let (code, out, err) =
            self.run(&["--output", "json", "show", "deploy", &format!("id={id}")]);
        assert_eq!(code, 0, "show deploy failed: {err}");
        serde_json::from_str(&out).unwrap()
    }

    /// Waits until the deployment's status satisfies `done`, returning its record.
    pub fn wait_for(
        &self,
        id: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.record(id);
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "deployment {id} never got there: {r:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits like [`wait_for`](Self::wait_for), reading records with `run` (extra flags).
    pub fn wait_for_with(
        &self,
        id: &str,
        run: impl Fn(&[&str]) -> (i32, String, String),
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, out, err) =
                run(&["--output", "json", "show", "deploy", &format!("id={id}")]);
            assert_eq!(code, 0, "{err}");
            let r: serde_json::Value = serde_json::from_str(&out).unwrap();
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "deployment {id} never got there: {r:#}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits until a step message containing `text` is recorded for the deployment.
    pub fn wait_for_step(&self, id: &str, text: &str) -> serde_json::Value {
        self.wait_for(id, |r| {
            r["processes"].as_array().unwrap().iter().any(|p| {
                p["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["message"].as_str().unwrap().contains(text))
            })
        })
    }
}

/// Replaces RFC 3339 times to the second (`2026-11-27T08:40:01Z`) with `[TIME]`.
fn redact_times(text: &str) -> String {
    let shape = b"dddd-dd-ddTdd:dd:ddZ";
    let bytes = text.as_bytes();
    let fits = |at: usize| {
        bytes.len() >= at + shape.len()
            && shape
                .iter()
                .zip(&bytes[at..])
                .all(|(want, got)| match want {
                    b'd' => got.is_ascii_digit(),
                    other => other == got,
                })
    };
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        if fits(i) {
            out.push_str("[TIME]");
            i += shape.len();
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Replaces what changes between runs (temp paths, ids, times, digests) with placeholders.
pub fn redact(text: &str, project: &Project) -> String {
    let text = redact_times(text);
    let mut s = text.replace(&project.path().display().to_string(), "[DIR]");
    if let Ok(canon) = std::fs::canonicalize(project.path()) {
        s = s.replace(&canon.display().to_string(), "[DIR]");
    }
    let mut out = String::new();
    for word in s.split_inclusive(|c: char| c.is_whitespace() || c == '`' || c == '"') {
        let trimmed = word.trim_end_matches(|c: char| c.is_whitespace() || c == '`' || c == '"');
        let rest = &word[trimmed.len()..];
        if let Some(id) = trimmed
            .strip_prefix("id=")
            .filter(|i| i.starts_with("dep-"))
        {
            let _ = id;
            out.push_str("id=[ID]");
        } else if trimmed.starts_with("dep-") && trimmed.len() >= 30 {
            out.push_str("[ID]");
            out.push_str(&trimmed[30..]);
        } else {
            out.push_str(trimmed);
        }
        out.push_str(rest);
    }
    out
}

/// The deployment status in a record.
pub fn status(r: &serde_json::Value) -> &str {
    r["status"].as_str().unwrap()
}

/// The status of one process in a record (`"Succeeded"`, `"RolledBack"`, …).
pub fn process_status<'a>(r: &'a serde_json::Value, process: &str) -> &'a str {
    let p = r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["process"] == process)
        .unwrap();
    match &p["status"] {
        serde_json::Value::String(s) => s,
        serde_json::Value::Object(o) => o.keys().next().unwrap(),
        other => panic!("unexpected status {other}"),
    }
}
