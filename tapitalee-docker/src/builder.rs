//! The workspace's one image builder: the Docker CLI, driven with argument vectors (never a
//! shell string). `docker buildx build` when buildx is installed (a registry cache in the
//! app's repository with [`Cache::Registry`], the GitHub Actions cache with [`Cache::Gha`]),
//! else plain `docker build` with the classic builder (`Cache::Gha` refused with the reason).
//! `tapit image build|deploy` and the Docker backend's kit images both build through
//! [`DockerCli::build`]. The CLI reaches the engine `DOCKER_HOST` names, as always.
//!
//! Nothing here prints: the CLI's output is captured (and its last lines put in the error
//! when it fails), unless the caller asks for it on its own stderr with
//! [`DockerCli::show_output`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Build cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// A registry cache in the app's repository (`REPO:buildcache`), e.g. ECR's.
    Registry,
    /// The GitHub Actions cache (buildx only).
    Gha,
}

const GHA_NEEDS_BUILDX: &str = "cache=gha needs docker buildx (the GitHub Actions cache is a \
    buildx cache backend) and `docker buildx version` failed here; install buildx (e.g. \
    docker/setup-buildx-action) or use cache=ecr";

/// Why an image could not be built or pushed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// What was asked cannot be done with this Docker (a usage error: change the request).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The docker CLI is missing, or no engine answers it. One line.
    #[error("{0}")]
    NoEngine(String),
    /// A docker command failed; the message names it and ends with its last output lines.
    #[error("{0}")]
    Failed(String),
}

impl From<BuildError> for tapitalee_core::Error {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Unsupported(why) => {
                tapitalee_core::Error::invalid("build cache", "gha", why)
            }
            other => tapitalee_core::Error::platform("image build", other.to_string()),
        }
    }
}

/// Why a cache cannot be used with this Docker, if it cannot.
pub fn unsupported(cache: Option<Cache>, buildx: bool) -> Option<&'static str> {
    (cache == Some(Cache::Gha) && !buildx).then_some(GHA_NEEDS_BUILDX)
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The image repository, with its registry host when it is pushed
    /// (`123.dkr.ecr.us-east-1.amazonaws.com/shop`, `127.0.0.1:5000/demo`).
    pub repository: String,
    /// The tag to give it.
    pub docker_tag: String,
    /// The Dockerfile, relative to the directory the build runs in.
    pub dockerfile: PathBuf,
    /// The build context, relative to the directory the build runs in.
    pub context: PathBuf,
    /// Cache, if any.
    pub cache: Option<Cache>,
    /// Labels (`org.opencontainers.image.revision`, …).
    pub labels: Vec<(String, String)>,
    /// Push the result to the repository's registry.
    pub push: bool,
}

impl Build {
    /// A build of `repository:docker_tag` from `./Dockerfile` in `.`, no cache, no labels,
    /// not pushed.
    pub fn new(repository: impl Into<String>, docker_tag: impl Into<String>) -> Build {
        Build {
            repository: repository.into(),
            docker_tag: docker_tag.into(),
            dockerfile: PathBuf::from("Dockerfile"),
            context: PathBuf::from("."),
            cache: None,
            labels: Vec::new(),
            push: false,
        }
    }

    /// `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.docker_tag)
    }

    /// The commands to run, in order, as argument vectors (without the `docker` program).
    /// With buildx the result is loaded into the engine (`--load`) or pushed (`--push`);
    /// without it, `docker build` then `docker push`.
    ///
    /// # Errors
    /// [`BuildError::Unsupported`] for the GitHub Actions cache without buildx.
    pub fn commands(&self, buildx: bool) -> Result<Vec<Vec<String>>, BuildError> {
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
            (Some(Cache::Registry), true) => build.extend([
                "--cache-from".into(),
                format!("type=registry,ref={cache_ref}"),
                "--cache-to".into(),
                format!(
                    "type=registry,ref={cache_ref},mode=max,image-manifest=true,oci-mediatypes=true"
                ),
            ]),
            (Some(Cache::Registry), false) => build.extend([
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
            (Some(Cache::Gha), false) => return Err(BuildError::Unsupported(GHA_NEEDS_BUILDX)),
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
pub struct DockerCli {
    program: PathBuf,
    show_output: bool,
    /// Whether buildx is installed, asked once.
    buildx: std::sync::OnceLock<bool>,
}

impl Default for DockerCli {
    fn default() -> Self {
        DockerCli {
            program: PathBuf::from("docker"),
            show_output: false,
            buildx: std::sync::OnceLock::new(),
        }
    }
}

/// How many of a failed command's last output lines its error carries.
const TAIL_LINES: usize = 15;

impl DockerCli {
    /// `docker` from `PATH`, its output captured.
    pub fn new() -> DockerCli {
        DockerCli::default()
    }

    /// Another program than `docker` from `PATH`.
    #[must_use]
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self.buildx = std::sync::OnceLock::new();
        self
    }

    /// Let the commands' output go to this process's stderr (progress for a person), instead
    /// of capturing it.
    #[must_use]
    pub fn show_output(mut self, show: bool) -> Self {
        self.show_output = show;
        self
    }

    /// Whether `docker buildx` is installed (asked once per `DockerCli`).
    pub fn has_buildx(&self) -> bool {
        *self.buildx.get_or_init(|| {
            Command::new(&self.program)
                .args(["buildx", "version"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// Checks that the CLI is installed and an engine answers.
    ///
    /// # Errors
    /// [`BuildError::NoEngine`], one line saying why.
    pub fn check_engine(&self) -> Result<(), BuildError> {
        let out = Command::new(&self.program)
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                BuildError::NoEngine(format!("docker is not installed or not on PATH ({e})"))
            })?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no answer");
        Err(BuildError::NoEngine(format!(
            "no Docker engine is reachable: {}",
            line.trim()
        )))
    }

    /// Runs every command of `build` in `dir`: the classic builder
    /// (`DOCKER_BUILDKIT=0`) unless buildx is installed. Returns the commands run.
    ///
    /// # Errors
    /// [`BuildError::Unsupported`] before anything runs, or the first command's failure.
    pub fn build(&self, build: &Build, dir: &Path) -> Result<Vec<Vec<String>>, BuildError> {
        let buildx = self.has_buildx();
        let commands = build.commands(buildx)?;
        for c in &commands {
            self.run_with(c, dir, buildx)?;
        }
        Ok(commands)
    }

    /// Runs `docker ARGS` in `dir`.
    ///
    /// # Errors
    /// [`BuildError::Failed`] naming the command, with its last output lines when captured.
    pub fn run(&self, args: &[String], dir: &Path) -> Result<(), BuildError> {
        self.run_with(args, dir, true)
    }

    fn run_with(&self, args: &[String], dir: &Path, buildkit: bool) -> Result<(), BuildError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(args).current_dir(dir).stdin(Stdio::null());
        if !buildkit {
            cmd.env("DOCKER_BUILDKIT", "0");
        }
        let what = args.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
        let run_error = |e: std::io::Error| BuildError::NoEngine(format!("cannot run docker: {e}"));
        if self.show_output {
            let status = cmd
                .stdout(Stdio::from(stderr_fd()?))
                .status()
                .map_err(run_error)?;
            return if status.success() {
                Ok(())
            } else {
                Err(BuildError::Failed(format!(
                    "`docker {what}` failed ({status})"
                )))
            };
        }
        let out = cmd.output().map_err(run_error)?;
        if out.status.success() {
            return Ok(());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        Err(BuildError::Failed(format!(
            "`docker {what}` failed ({}): {tail}",
            out.status
        )))
    }

    /// The id (`sha256:…`) of a local image.
    ///
    /// # Errors
    /// [`BuildError::Failed`] when the engine has no such image.
    pub fn image_id(&self, reference: &str) -> Result<String, BuildError> {
        let out = Command::new(&self.program)
            .args(["image", "inspect", "--format", "{{.Id}}", reference])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BuildError::NoEngine(format!("cannot run docker: {e}")))?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !id.is_empty() {
            Ok(id)
        } else {
            Err(BuildError::Failed(format!(
                "`docker image inspect {reference}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// `docker login --username USER --password-stdin HOST`, the password written to its
    /// stdin: never on a command line, never in a log.
    ///
    /// # Errors
    /// [`BuildError::Failed`] when the registry refuses.
    pub fn login(&self, host: &str, username: &str, password: &str) -> Result<(), BuildError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(["login", "--username", username, "--password-stdin", host])
            .stdin(Stdio::piped());
        if self.show_output {
            cmd.stdout(Stdio::from(stderr_fd()?));
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| BuildError::NoEngine(format!("cannot run docker: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(password.as_bytes()).map_err(|e| {
                BuildError::Failed(format!("cannot pass the token to docker login: {e}"))
            })?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| BuildError::Failed(format!("docker login: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(BuildError::Failed(format!(
                "`docker login {host}` failed ({}){}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| format!(": {}", l.trim()))
                    .unwrap_or_default()
            )))
        }
    }
}

/// A dup of our stderr, so child output shows as progress without touching our stdout.
fn stderr_fd() -> Result<std::os::fd::OwnedFd, BuildError> {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| BuildError::Failed(format!("cannot share stderr with docker: {e}")))
}

/// The registry host of an endpoint URL (`https://host/` → `host`).
pub fn registry_host(endpoint: &str) -> &str {
    endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
}

/// The registry host a repository names, as Docker reads it: a first path component with a
/// `.` or a `:`, or `localhost` (`127.0.0.1:5000/demo` → `127.0.0.1:5000`; `demo/web` → none).
pub fn repository_registry(repository: &str) -> Option<&str> {
    let (first, _) = repository.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// The login the docker CLI keeps for a registry host (`docker login HOST`): the `auths`
/// entry of its `config.json` (in `$DOCKER_CONFIG`, else `~/.docker`), as `auth`
/// (base64 `user:password`) or `username` and `password`. `None` when there is none, or the
/// CLI keeps it in a credential helper instead (`credsStore`, `credHelpers`), which this does
/// not run.
pub fn docker_cli_login(host: &str) -> Option<tapitalee_core::RegistryCredentials> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    docker_cli_login_in(&dir, host)
}

/// [`docker_cli_login`] from the docker CLI's configuration directory `dir`.
fn docker_cli_login_in(dir: &Path, host: &str) -> Option<tapitalee_core::RegistryCredentials> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths
        .iter()
        .find(|(k, _)| registry_host(k) == host)
        .map(|(_, v)| v)?;
    let (username, password) = match entry.get("auth").and_then(|a| a.as_str()) {
        Some(auth) if !auth.is_empty() => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (u, p) = decoded.split_once(':')?;
            (u.to_owned(), p.to_owned())
        }
        _ => (
            entry.get("username")?.as_str()?.to_owned(),
            entry.get("password")?.as_str()?.to_owned(),
        ),
    };
    Some(tapitalee_core::RegistryCredentials {
        endpoint: host.to_owned(),
        username,
        password: tapitalee_core::Secret::new(password),
        expires_at: None,
    })
}

/// Whether a registry's, the engine's or the docker CLI's message says a request lacked
/// valid credentials.
pub fn is_auth_refusal(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "no basic auth credentials",
        "unauthorized",
        "authentication required",
    ]
    .iter()
    .any(|m| lower.contains(m))
}

/// Whether a loopback registry (`127.0.0.1:5000`, `localhost:5000`) refuses anonymous
/// requests: its API root (`GET /v2/`, Registry HTTP API v2) answers 401. `false` when it
/// answers otherwise, cannot be reached, or is not on loopback (not asked). For saying why a
/// push failed.
pub fn registry_requires_login(host: &str) -> bool {
    use std::io::{Read, Write};
    if !crate::registry_api::readable(host) {
        return false;
    }
    let timeout = std::time::Duration::from_secs(5);
    let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(host) else {
        return false;
    };
    for addr in addrs {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(timeout));
        if s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .is_err()
        {
            continue;
        }
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_ok() {
            return head.starts_with(b"HTTP/") && &head[9..12] == b"401";
        }
    }
    false
}

/// The short hash of the repository's HEAD in `dir`.
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

    #[test]
    fn the_docker_cli_login_of_a_host_is_read_from_its_config() {
        let dir = std::env::temp_dir().join(format!("tapit-docker-config-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths": {
                "127.0.0.1:5000": {"auth": "Y2k6cHctb25lOndpdGgtY29sb24="},
                "https://registry.example.com/": {"username": "bob", "password": "pw-two"},
                "helper.example.com": {}
            }, "credHelpers": {"helper.example.com": "pass"}}"#,
        )
        .unwrap();
        let one = docker_cli_login_in(&dir, "127.0.0.1:5000").expect("auth entry");
        assert_eq!(
            (one.username.as_str(), one.password.expose()),
            ("ci", "pw-one:with-colon")
        );
        let two = docker_cli_login_in(&dir, "registry.example.com").expect("user entry");
        assert_eq!(
            (two.username.as_str(), two.password.expose()),
            ("bob", "pw-two")
        );
        assert!(docker_cli_login_in(&dir, "helper.example.com").is_none());
        assert!(docker_cli_login_in(&dir, "127.0.0.1:5001").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

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
    fn buildx_loads_what_it_does_not_push() {
        let mut b = build(None);
        b.push = false;
        let c = b.commands(true).unwrap();
        assert_eq!(c.len(), 1);
        assert!(c[0].contains(&"--load".to_owned()), "{c:?}");
        assert!(!c[0].contains(&"--push".to_owned()), "{c:?}");
        let c = b.commands(false).unwrap();
        assert_eq!(c.len(), 1, "no push without buildx either: {c:?}");
    }

    #[test]
    fn plain_build_then_push_and_no_gha() {
        let c = build(None).commands(false).unwrap();
        assert_eq!(c[1], ["push", "registry.local/shop:v1-abc1234"]);
        let e = build(Some(Cache::Gha)).commands(false).unwrap_err();
        assert!(e.to_string().contains("needs docker buildx"), "{e}");
        assert!(matches!(e, BuildError::Unsupported(_)));
    }

    #[test]
    fn tags_and_hosts() {
        assert_eq!(default_tag(Some("v1.2.3"), "abc1234def"), "v1.2.3-abc1234");
        assert_eq!(default_tag(None, "abc1234def"), "abc1234");
        assert_eq!(
            registry_host("https://123.dkr.ecr.us-east-1.amazonaws.com"),
            "123.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(
            repository_registry("127.0.0.1:5000/demo"),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            repository_registry("localhost/team/demo"),
            Some("localhost")
        );
        assert_eq!(repository_registry("tapitalee-demo/app"), None);
        assert_eq!(repository_registry("demo"), None);
    }

    #[test]
    fn a_missing_program_is_one_line() {
        let cli = DockerCli::new().program("/nonexistent/docker");
        let e = cli.check_engine().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("docker is not installed or not on PATH"),
            "{e}"
        );
        assert_eq!(e.to_string().lines().count(), 1);
        assert!(!cli.has_buildx());
    }
}
