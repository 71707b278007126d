//! `tapit image build|login|deploy` against a stand-in `docker` on PATH that records each
//! argument vector (one line per call, each argument in brackets) and what it got on stdin.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use support::{Project, SIMULATED, redact};

const STANDIN: &str = r#"#!/bin/sh
log="$DOCKER_STANDIN_LOG"
printf 'docker' >> "$log"
for a in "$@"; do printf ' [%s]' "$a" >> "$log"; done
printf '\n' >> "$log"
case "$1" in
  version)
    if [ -n "$STANDIN_NO_ENGINE" ]; then
      echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
      exit 1
    fi
    echo 27.3.1 ;;
  buildx)
    if [ "$2" = version ]; then
      [ -n "$STANDIN_BUILDX" ] || { echo "docker: 'buildx' is not a docker command." >&2; exit 1; }
      echo "github.com/docker/buildx v0.17.1"
    fi ;;
  login) cat > "$log.stdin"; echo "Login Succeeded" ;;
esac
exit 0
"#;

struct Docker {
    project: Project,
    bin: PathBuf,
}

impl Docker {
    fn new() -> Docker {
        let project = Project::new(SIMULATED);
        let bin = project.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let docker = bin.join("docker");
        std::fs::write(&docker, STANDIN).unwrap();
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(project.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        Docker { project, bin }
    }

    fn log(&self) -> PathBuf {
        self.project.path().join("docker.log")
    }

    /// Runs tapit with the stand-in first on PATH; returns (code, stdout, stderr, recorded
    /// docker calls).
    fn run(
        &self,
        args: &[&str],
        buildx: bool,
        env: &[(&str, &str)],
    ) -> (i32, String, String, String) {
        let _ = std::fs::remove_file(self.log());
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap());
        let mut cmd = self.project.tapit(args);
        cmd.env("PATH", path).env("DOCKER_STANDIN_LOG", self.log());
        if buildx {
            cmd.env("STANDIN_BUILDX", "1");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let calls = std::fs::read_to_string(self.log()).unwrap_or_default();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            redact(&calls, &self.project),
        )
    }
}

#[test]
fn buildx_with_the_ecr_registry_cache() {
    let d = Docker::new();
    let (code, out, err, calls) = d.run(
        &[
            "image",
            "build",
            "cache=ecr",
            "tag=v1.2.3",
            "git_hash=abc1234def5678",
            "initiator=github-actions",
        ],
        true,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "v1.2.3-abc1234",
        "the tag defaults to <tag>-<short hash>"
    );
    insta::assert_snapshot!("buildx_ecr", calls);
}

#[test]
fn buildx_with_the_github_actions_cache_and_a_dockerfile() {
    let d = Docker::new();
    std::fs::create_dir_all(d.project.path().join("docker")).unwrap();
    std::fs::write(
        d.project.path().join("docker/production.Dockerfile"),
        "FROM scratch\n",
    )
    .unwrap();
    let (code, _, err, calls) = d.run(
        &[
            "image",
            "build",
            "cache=gha",
            "docker_tag=v1.2.3-rc1",
            "dockerfile=docker/production.Dockerfile",
        ],
        true,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("buildx_gha", calls);
}

#[test]
fn plain_docker_build_then_push() {
    let d = Docker::new();
    let (code, out, err, calls) = d.run(&["image", "build", "git_hash=0123456789"], false, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "0123456", "without tag=, the short hash alone");
    assert!(err.contains("buildx not installed"), "{err}");
    insta::assert_snapshot!("plain", calls);
    let (code, _, err, calls) = d.run(
        &["image", "build", "git_hash=0123456789", "cache=ecr"],
        false,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("plain_ecr", calls);
}

#[test]
fn gha_cache_is_refused_without_buildx() {
    let d = Docker::new();
    let (code, _, err, calls) = d.run(
        &["image", "build", "git_hash=0123456789", "cache=gha"],
        false,
        &[],
    );
    assert_eq!(code, 2, "{err}");
    insta::assert_snapshot!("gha_without_buildx", redact(&err, &d.project));
    assert!(!calls.contains("[build]"), "nothing was built: {calls}");
}

#[test]
fn the_short_hash_is_read_from_the_repository() {
    let d = Docker::new();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(d.project.path())
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        String::from_utf8_lossy(&ok.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "Dockerfile"]);
    git(&["commit", "-q", "-m", "first"]);
    let hash = git(&["rev-parse", "--short=7", "HEAD"]);
    let (code, out, err, calls) = d.run(&["image", "build", "tag=v2"], true, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("v2-{hash}"));
    assert!(
        calls.contains(&format!("[org.opencontainers.image.revision={hash}]")),
        "{calls}"
    );
    // Outside a repository without git_hash= or docker_tag=: refused, with the fix.
    let other = Docker::new();
    let (code, _, err, _) = other.run(&["image", "build", "tag=v2"], true, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("pass git_hash=HASH or docker_tag=TAG"),
        "{err}"
    );
}

#[test]
fn no_docker_engine_is_said_in_one_line() {
    let d = Docker::new();
    let (code, _, err, _) = d.run(
        &["image", "build", "git_hash=0123456"],
        true,
        &[("STANDIN_NO_ENGINE", "1")],
    );
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no Docker engine is reachable: Cannot connect to the Docker daemon"),
        "{err}"
    );
    // A missing Dockerfile is a usage error, before Docker is asked anything.
    let (code, _, err, calls) = d.run(
        &[
            "image",
            "build",
            "git_hash=0123456",
            "dockerfile=nope.Dockerfile",
        ],
        true,
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(calls.is_empty(), "{calls}");
}

#[test]
fn image_login_passes_the_token_on_stdin_only() {
    let d = Docker::new();
    let (code, out, err, calls) = d.run(&["image", "login"], false, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("logged Docker in to registry.local"), "{out}");
    insta::assert_snapshot!("login", calls);
    let token = "in-memory-token-for-shop";
    assert!(
        !calls.contains(token),
        "the token is never on a command line"
    );
    assert!(
        !out.contains(token) && !err.contains(token),
        "nor in our output"
    );
    let stdin = std::fs::read_to_string(d.log().with_extension("log.stdin")).unwrap();
    assert_eq!(stdin, token);
}

#[test]
fn image_deploy_builds_pushes_and_deploys() {
    let d = Docker::new();
    let (code, out, err, calls) = d.run(
        &[
            "image",
            "deploy",
            "docker_tag=v1.2.3",
            "git_hash=abc1234",
            "process=worker",
            "initiator=ci",
            "--wait",
        ],
        true,
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(calls.contains("[--push]"), "{calls}");
    assert!(
        out.contains("process worker     succeeded    v1.2.2 -> v1.2.3"),
        "{out}"
    );
    assert!(out.contains("initiator  ci"), "{out}");
}
