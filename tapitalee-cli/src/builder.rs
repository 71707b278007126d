//! Building and pushing images with the Docker CLI: argument vectors, never shell strings.
//! `docker buildx build` when buildx is installed (registry cache `cache=ecr`, GitHub Actions
//! cache `cache=gha`), else plain `docker build` (`cache=gha` refused). Small and free of the
//! rest of the CLI so a Docker platform can reuse it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Build cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// A registry cache in the app's repository (`REPO:buildcache`).
    Ecr,
    /// The GitHub Actions cache (buildx only).
    Gha,
}

const GHA_NEEDS_BUILDX: &str = "cache=gha needs docker buildx (the GitHub Actions cache is a \
    buildx cache backend) and `docker buildx version` failed here; install buildx (e.g. \
    docker/setup-buildx-action) or use cache=ecr";

/// Why a cache cannot be used with this Docker, if it cannot.
pub fn unsupported(cache: Option<Cache>, buildx: bool) -> Option<&'static str> {
    (cache == Some(Cache::Gha) && !buildx).then_some(GHA_NEEDS_BUILDX)
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The image repository with its registry host, e.g. `123.dkr.ecr.us-east-1.amazonaws.com/shop`.
    pub repository: String,
    /// The tag to give it.
    pub docker_tag: String,
    /// The Dockerfile.
    pub dockerfile: PathBuf,
    /// The build context.
    pub context: PathBuf,
    /// Cache, if any.
    pub cache: Option<Cache>,
    /// OCI labels (`org.opencontainers.image.revision`, …).
    pub labels: Vec<(String, String)>,
    /// Push the result.
    pub push: bool,
}

impl Build {
    /// `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.docker_tag)
    }

    /// The commands to run, in order, as argument vectors (without the `docker` program).
    pub fn commands(&self, buildx: bool) -> Result<Vec<Vec<String>>, String> {
        let reference = self.reference();
        let mut build: Vec<String> = if buildx {
            vec!["buildx".into(), "build".into()]
        } else {
            vec!["build".into()]
        };
        build.extend([
            "--file".into(),
            self.dockerfile.display().to_string(),
            "--tag".into(),
            reference.clone(),
        ]);
        for (k, v) in &self.labels {
            build.extend(["--label".into(), format!("{k}={v}")]);
        }
        let cache_ref = format!("{}:buildcache", self.repository);
        match (self.cache, buildx) {
            (None, _) => {}
            (Some(Cache::Ecr), true) => build.extend([
                "--cache-from".into(),
                format!("type=registry,ref={cache_ref}"),
                "--cache-to".into(),
                format!(
                    "type=registry,ref={cache_ref},mode=max,image-manifest=true,oci-mediatypes=true"
                ),
            ]),
            (Some(Cache::Ecr), false) => build.extend([
                "--build-arg".into(),
                "BUILDKIT_INLINE_CACHE=1".into(),
                "--cache-from".into(),
                format!("{}:latest", self.repository),
            ]),
            (Some(Cache::Gha), true) => build.extend([
                "--cache-from".into(),
                "type=gha".into(),
                "--cache-to".into(),
                "type=gha,mode=max".into(),
            ]),
            (Some(Cache::Gha), false) => return Err(GHA_NEEDS_BUILDX.into()),
        }
        if buildx && self.push {
            build.push("--push".into());
        } else if buildx {
            build.push("--load".into());
        }
        build.push(self.context.display().to_string());
        let mut commands = vec![build];
        if self.push && !buildx {
            commands.push(vec!["push".into(), reference]);
        }
        Ok(commands)
    }
}

/// The Docker CLI.
#[derive(Debug, Clone)]
pub struct Docker {
    program: PathBuf,
}

impl Default for Docker {
    fn default() -> Self {
        Docker {
            program: PathBuf::from("docker"),
        }
    }
}

impl Docker {
    /// Whether `docker buildx` is installed.
    pub fn has_buildx(&self) -> bool {
        Command::new(&self.program)
            .args(["buildx", "version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Checks that the CLI is installed and an engine answers; the error is one line.
    pub fn check_engine(&self) -> Result<(), String> {
        let out = Command::new(&self.program)
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("docker is not installed or not on PATH ({e})"))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no answer");
        Err(format!("no Docker engine is reachable: {}", line.trim()))
    }

    /// Runs `docker ARGS` in `dir`, its output going to our stderr (progress).
    pub fn run(&self, args: &[String], dir: &Path) -> Result<(), String> {
        let status = Command::new(&self.program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr().as_fd_owned()?))
            .status()
            .map_err(|e| format!("cannot run docker: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "`docker {}` failed ({status})",
                args.first().map(String::as_str).unwrap_or("")
            ))
        }
    }

    /// `docker login --username USER --password-stdin HOST`, the password written to its
    /// stdin: never on a command line, never in a log.
    pub fn login(&self, host: &str, username: &str, password: &str) -> Result<(), String> {
        let mut child = Command::new(&self.program)
            .args(["login", "--username", username, "--password-stdin", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(std::io::stderr().as_fd_owned()?))
            .spawn()
            .map_err(|e| format!("cannot run docker: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(password.as_bytes())
                .map_err(|e| format!("cannot pass the token to docker login: {e}"))?;
        }
        let status = child.wait().map_err(|e| format!("docker login: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`docker login {host}` failed ({status})"))
        }
    }
}

/// A dup of our stderr, so child output shows as progress without touching our stdout.
trait StderrFd {
    fn as_fd_owned(&self) -> Result<std::os::fd::OwnedFd, String>;
}

impl StderrFd for std::io::Stderr {
    fn as_fd_owned(&self) -> Result<std::os::fd::OwnedFd, String> {
        use std::os::fd::AsFd;
        self.as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot share stderr with docker: {e}"))
    }
}

/// The registry host of an endpoint URL (`https://host/` → `host`).
pub fn registry_host(endpoint: &str) -> &str {
    endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
}

/// The short hash of the repository's HEAD.
pub fn git_short_hash(dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The default tag: `<tag>-<short hash>`, or the short hash alone without a tag.
pub fn default_tag(tag: Option<&str>, git_hash: &str) -> String {
    let short: String = git_hash.chars().take(7).collect();
    match tag {
        Some(t) => format!("{t}-{short}"),
        None => short,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(cache: Option<Cache>) -> Build {
        Build {
            repository: "registry.local/shop".into(),
            docker_tag: "v1-abc1234".into(),
            dockerfile: "Dockerfile".into(),
            context: ".".into(),
            cache,
            labels: vec![("org.opencontainers.image.revision".into(), "abc1234".into())],
            push: true,
        }
    }

    #[test]
    fn buildx_pushes_in_one_command() {
        let c = build(Some(Cache::Gha)).commands(true).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0][..2], ["buildx", "build"]);
        assert!(c[0].contains(&"type=gha,mode=max".to_owned()));
        assert_eq!(c[0].last().unwrap(), ".");
        assert!(c[0].contains(&"--push".to_owned()));
    }

    #[test]
    fn plain_build_then_push_and_no_gha() {
        let c = build(None).commands(false).unwrap();
        assert_eq!(c[1], ["push", "registry.local/shop:v1-abc1234"]);
        let e = build(Some(Cache::Gha)).commands(false).unwrap_err();
        assert!(e.contains("needs docker buildx"), "{e}");
    }

    #[test]
    fn tags() {
        assert_eq!(default_tag(Some("v1.2.3"), "abc1234def"), "v1.2.3-abc1234");
        assert_eq!(default_tag(None, "abc1234def"), "abc1234");
        assert_eq!(
            registry_host("https://123.dkr.ecr.us-east-1.amazonaws.com"),
            "123.dkr.ecr.us-east-1.amazonaws.com"
        );
    }
}
