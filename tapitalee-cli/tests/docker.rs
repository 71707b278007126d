//! `tapit` on `platform = "docker"`, end to end against the real engine: `image build` (the
//! workspace's one builder, here with the real docker CLI), `create deploy`, `show deploy`,
//! `list images`, `show image` and `image deploy` with the demo app's `FROM scratch` images,
//! traffic checked through the app's proxy; then the same with a registry on loopback
//! (Debian's `docker-registry`): images pushed, removed from the engine, and deployed from
//! the registry.
//!
//! Without an engine these tests say they skip; with `CI=true` they fail instead.
#![allow(clippy::print_stderr)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::Project;
use tapitalee::docker::{KIT_DOCKERFILE_PROXY, build_kit_binary, build_kit_image, demo_dockerfile};

const PROXY_IMAGE: &str = "tapitalee-test/proxy:latest";

fn engine_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "{test}: no Docker engine answers `docker info`, and CI=true: start dockerd \
             (scripts/docker-engine)"
        );
        eprintln!("{test}: SKIPPED, no Docker engine (set CI=true to make this a failure)");
    }
    ok
}

/// The statically linked kit binary (demo app and proxy), built once per test binary.
fn kit_binary() -> PathBuf {
    static KIT: OnceLock<PathBuf> = OnceLock::new();
    KIT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        let kit = build_kit_binary(&root, &target).expect("build the kit");
        build_kit_image(&kit, KIT_DOCKERFILE_PROXY, PROXY_IMAGE).expect("proxy image");
        kit
    })
    .clone()
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A project for a Docker app: the kit binary in the build context, a tapit.toml, and
/// cleanup of everything the app left in the engine.
struct DockerProject {
    project: Project,
    app: String,
    repository: String,
}

impl DockerProject {
    fn new(prefix: &str, registry: Option<&str>) -> DockerProject {
        DockerProject::with_docker_settings(prefix, registry, "")
    }

    /// A project whose `[apps.NAME.docker]` table has these extra lines.
    fn with_docker_settings(prefix: &str, registry: Option<&str>, docker: &str) -> DockerProject {
        let unique = ulid::Ulid::new().to_string().to_lowercase();
        let app = format!("{prefix}-{}", &unique[18..]);
        let repository = match registry {
            Some(r) => format!("{r}/tapit-test/{app}"),
            None => format!("tapit-test/{app}"),
        };
        let config = format!(
            r#"
[apps.{app}]
platform = "docker"
repository = "{repository}"
[apps.{app}.docker]
proxy_image = "{PROXY_IMAGE}"
stop_timeout = "3s"
drain_timeout = "3s"
{docker}
[apps.{app}.gate]
min_healthy_time = "1s"
poll_interval = "200ms"
progress_deadline = "60s"
[apps.{app}.processes.default]
instances = 2
command = ["demo"]
port = 8080
health_path = "/health"
environment = {{ GREETING = "hello from tapit.toml" }}
[apps.{app}.processes.worker]
instances = 2
command = ["demo"]
[apps.{app}.processes.scheduler]
instances = 1
command = ["demo"]
"#
        );
        let project = Project::new(&config);
        std::fs::copy(kit_binary(), project.path().join("tapit-kit")).expect("copy the kit");
        DockerProject {
            project,
            app,
            repository,
        }
    }

    /// Writes the Dockerfile of a demo version (`env`: e.g. the worker crash-looping).
    fn dockerfile(&self, version: &str, env: &[(&str, &str)]) {
        std::fs::write(
            self.project.path().join("Dockerfile"),
            demo_dockerfile(version, env),
        )
        .expect("Dockerfile");
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_env(args, &[])
    }

    /// `tapit ARGS` with these environment variables set.
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = self.project.tapit(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .timeout(Duration::from_secs(240))
            .output()
            .expect("tapit");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Running instance containers of a process with a tag.
    fn running(&self, process: &str, tag: &str) -> usize {
        docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=tapit.app={}", self.app),
            "--filter",
            &format!("label=tapit.process={process}"),
            "--filter",
            &format!("label=tapit.image.tag={tag}"),
            "--filter",
            "label=tapit.role=instance",
        ])
        .split_whitespace()
        .count()
    }

    /// The proxy's address on 127.0.0.1.
    fn proxy(&self) -> String {
        let out = docker(&["port", &format!("tapit-{}-proxy", self.app), "80/tcp"]);
        out.lines()
            .find(|l| l.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("proxy not published on 127.0.0.1: {out}"))
            .to_owned()
    }

    /// The versions `n` requests through the proxy were served by.
    fn served(&self, n: usize) -> Vec<String> {
        let addr = self.proxy();
        (0..n)
            .map(|_| get(&addr, "/").1.trim().to_owned())
            .collect()
    }
}

impl Drop for DockerProject {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=tapit.app={}", self.app),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("tapit-{}", self.app)])
            .output();
        let _ = Command::new("docker")
            .args(["volume", "rm", &format!("tapit-{}-proxy", self.app)])
            .output();
        if let Ok(out) = Command::new("docker")
            .args(["images", "-q", &self.repository])
            .output()
        {
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rmi", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    get_as(addr, path, None)
}

/// A GET (HTTP/1.0: a body the length of the connection), with basic authentication.
fn get_as(addr: &str, path: &str, login: Option<(&str, &str)>) -> (u16, String) {
    use base64::Engine as _;
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = login.map_or(String::new(), |(u, p)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn docker_platform_builds_deploys_and_shows_images() {
    if !engine_or_skip("docker_platform_builds_deploys_and_shows_images") {
        return;
    }
    let p = DockerProject::new("cli", None);

    // image build with the real docker CLI, into the engine's store (no registry: no push).
    p.dockerfile("v1", &[]);
    let (code, out, err) = p.run(&["image", "build", "docker_tag=v1", "git_hash=abc1234"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.trim(), "v1");
    let id_v1 = docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        &format!("{}:v1", p.repository),
    ]);
    let revision = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.opencontainers.image.revision\"}}",
        &format!("{}:v1", p.repository),
    ]);
    assert_eq!(revision, "abc1234", "the build's labels reach the image");
    p.dockerfile(
        "v2",
        &[
            ("DEMO_CRASH_AT_START", "1"),
            ("DEMO_ONLY_PROCESS", "worker"),
        ],
    );
    let (code, _, err) = p.run(&["image", "build", "docker_tag=v2", "git_hash=abc1234"]);
    assert_eq!(code, 0, "{err}");

    // list images / show image: from the engine's store.
    let (code, out, err) = p.run(&["list", "images"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("v1") && out.contains("v2"), "{out}");
    let (code, out, err) = p.run(&["--output", "json", "show", "image", "docker_tag=v1"]);
    assert_eq!(code, 0, "{err}");
    let image: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(image["digest"], id_v1.as_str(), "{image:#}");
    assert!(image["size_bytes"].as_u64().unwrap() > 100_000, "{image:#}");
    let (code, _, err) = p.run(&["show", "image", "docker_tag=v7"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("recent tags: v1, v2"), "{err}");

    // create deploy of v1 onto an empty engine: every process from the config.
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v1", "--wait"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        (
            p.running("default", "v1"),
            p.running("worker", "v1"),
            p.running("scheduler", "v1")
        ),
        (2, 2, 1)
    );
    assert!(p.served(6).iter().all(|v| v == "v1"), "{:?}", p.served(6));
    assert!(
        err.contains(&format!("the app's proxy serves http://{}/", p.proxy())),
        "{err}"
    );
    // The config's command and environment reach the containers.
    let web = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=tapit.app={}", p.app),
        "--filter",
        "label=tapit.process=default",
        "--filter",
        "label=tapit.role=instance",
    ]);
    let first = web.split_whitespace().next().unwrap();
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", first]);
    assert!(env.contains("GREETING=hello from tapit.toml"), "{env}");
    assert_eq!(
        docker(&["inspect", "-f", "{{json .Config.Cmd}}", first]),
        "[\"demo\"]"
    );

    // v2's worker crash-loops: the document's mixed state on real containers, exit 4.
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v2", "--wait"]);
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(out.contains("The app now runs mixed versions"), "{out}");
    // What the crashed workers said last, although the rollback removed them.
    let said = "demo v2: crashing at start (DEMO_CRASH_AT_START), exit 2";
    assert!(
        out.contains(said) || err.contains(said),
        "the failed instances' last log line is shown: {out}\n{err}"
    );
    assert_eq!(
        (
            p.running("default", "v2"),
            p.running("worker", "v1"),
            p.running("worker", "v2"),
            p.running("scheduler", "v2")
        ),
        (2, 2, 0, 1),
        "default and scheduler on v2, the worker back on v1 and no v2 worker left"
    );
    assert!(p.served(6).iter().all(|v| v == "v2"));
    let (code, out, err) = p.run(&["show", "deploy"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("worker"), "{out}");
    assert!(out.contains("rolled back"), "{out}");
    assert!(out.contains(said), "and kept in the record: {out}");
    // show logs: the containers' own lines (the rolled-back v2 workers are gone with theirs).
    let (code, out, err) = p.run(&["show", "logs", "process=web", "since=10m"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.matches("demo v2 listening on port 8080").count(),
        2,
        "both v2 web instances: {out}"
    );
    let (code, out, err) = p.run(&["--output", "json", "show", "logs", "process=worker"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in &lines {
        assert_eq!(l["message"], "demo v1 listening on port 8080", "{l}");
        assert!(
            l["stream"].as_str().unwrap().contains(&p.app),
            "the container's name: {l}"
        );
    }

    // image deploy: build v3 (good) and deploy it, in one command.
    p.dockerfile("v3", &[]);
    let (code, out, err) = p.run(&[
        "image",
        "deploy",
        "docker_tag=v3",
        "git_hash=abc1234",
        "initiator=ci",
        "--wait",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        (
            p.running("default", "v3"),
            p.running("worker", "v3"),
            p.running("scheduler", "v3"),
            p.running("worker", "v1"),
            p.running("default", "v2")
        ),
        (2, 2, 1, 0, 0),
        "everything on v3, the old containers gone"
    );
    assert!(p.served(6).iter().all(|v| v == "v3"));
    let (code, out, _) = p.run(&["image", "login"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
}

/// Debian's docker-registry on a free loopback port, with its storage in a temporary
/// directory; stopped when dropped.
struct Registry {
    child: Child,
    addr: String,
    /// The user and password it requires, if any.
    login: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// The registry, or `None` (having said so) when `docker-registry` is not installed
    /// outside CI; in CI (`CI=true`) that is a failure.
    fn start_or_skip(test: &str) -> Option<Registry> {
        Registry::start_or_skip_as(test, None)
    }

    /// With `login` (user, password): HTTP basic authentication from an htpasswd file.
    fn start_or_skip_as(test: &str, login: Option<(&str, &str)>) -> Option<Registry> {
        let Some(program) = ["/usr/bin/docker-registry", "docker-registry"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
        else {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "{test}: no docker-registry, and CI=true: install Debian's package (apt-get \
                 install -y docker-registry; scripts/docker-engine does it)"
            );
            eprintln!("{test}: SKIPPED, docker-registry is not installed (scripts/docker-engine)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: \
             {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let htpasswd = dir.path().join("htpasswd");
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: tapit-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new(program)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Registry {
            child,
            addr,
            login: login.map(|(u, p)| (u.to_owned(), p.to_owned())),
            _dir: dir,
        })
    }

    /// The tags the registry holds for a repository (its HTTP API v2).
    fn tags(&self, name: &str) -> Vec<String> {
        let (status, body) = get_as(
            &self.addr,
            &format!("/v2/{name}/tags/list"),
            self.login.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        );
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("tags JSON");
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn images_are_pushed_to_a_configured_registry_and_deployed_from_it() {
    if !engine_or_skip("images_are_pushed_to_a_configured_registry_and_deployed_from_it") {
        return;
    }
    let Some(registry) =
        Registry::start_or_skip("images_are_pushed_to_a_configured_registry_and_deployed_from_it")
    else {
        return;
    };
    let p = DockerProject::new("reg", Some(&registry.addr));
    let name = p.repository.split_once('/').unwrap().1.to_owned();

    p.dockerfile("v1", &[]);
    let (code, out, err) = p.run(&["image", "build", "docker_tag=v1", "git_hash=abc1234"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(registry.tags(&name), ["v1"], "image build pushed v1");
    // Gone from the engine: the deployment must pull it from the registry.
    docker(&["rmi", &format!("{}:v1", p.repository)]);
    // ...and the images are read from the registry (tags, manifest, config blob).
    let (code, out, err) = p.run(&["--output", "json", "list", "images"]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let first = &listed.as_array().expect("a list")[0];
    assert_eq!(first["tags"], serde_json::json!(["v1"]), "{out}");
    assert!(first["size_bytes"].as_u64().unwrap_or(0) > 100_000, "{out}");
    assert!(
        first["pushed_at"].is_string(),
        "the image's created time: {out}"
    );
    let digest = first["digest"].as_str().expect("digest").to_owned();
    let (code, out, err) = p.run(&["show", "image", "docker_tag=v1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&digest), "{out}");
    let (code, _, err) = p.run(&["show", "image", "docker_tag=v7"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("has: v1"),
        "the registry's tags are named: {err}"
    );
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v1", "--wait"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The registry's view names the image the engine pulled.
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            &format!("{}:v1", p.repository)
        ]),
        digest
    );
    assert_eq!(
        (
            p.running("default", "v1"),
            p.running("worker", "v1"),
            p.running("scheduler", "v1")
        ),
        (2, 2, 1)
    );
    assert!(p.served(4).iter().all(|v| v == "v1"));

    // A tag the registry lacks is refused before anything changes, naming the registry.
    let (code, _, err) = p.run(&["create", "deploy", "docker_tag=v9", "--wait"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&registry.addr) && err.contains("push it first"),
        "{err}"
    );
    assert_eq!(p.running("default", "v1"), 2);

    // image deploy: build, push, and deploy from the registry in a detached tapit, followed
    // from another one to its outcome.
    p.dockerfile("v2", &[]);
    let (code, out, err) = p.run(&["image", "deploy", "docker_tag=v2", "git_hash=abc1234"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(registry.tags(&name), ["v1", "v2"]);
    let id = out
        .lines()
        .last()
        .expect("the deployment id")
        .trim()
        .to_owned();
    let (code, out, err) = p.run(&["show", "deploy", &format!("id={id}"), "-f"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(
        (p.running("default", "v2"), p.running("worker", "v2")),
        (2, 2)
    );
    assert!(p.served(4).iter().all(|v| v == "v2"));
}

#[test]
fn a_registry_with_a_login_is_used_with_the_configured_credentials_only() {
    const TEST: &str = "a_registry_with_a_login_is_used_with_the_configured_credentials_only";
    const PASSWORD: &str = "s3cret-registry-pw-4471";
    const WRONG: &str = "not-the-password-9183";
    if !engine_or_skip(TEST) {
        return;
    }
    let Some(registry) = Registry::start_or_skip_as(TEST, Some(("tapit", PASSWORD))) else {
        return;
    };
    // The docker CLI's own logins (`docker login` writes them) in a directory of the test's,
    // so none of the user's apply and none is left behind.
    let docker_config = tempfile::tempdir().unwrap();
    let config_dir = docker_config.path().to_str().unwrap();
    let build = ["image", "build", "docker_tag=v1", "git_hash=abc1234"];

    // Without credentials: the push and the pull are refused, naming the settings to add.
    let open = DockerProject::new("noauth", Some(&registry.addr));
    open.dockerfile("v1", &[]);
    let (code, out, err) = open.run_env(&build, &[("DOCKER_CONFIG", config_dir)]);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("requires a login")
            && err.contains("registry_username")
            && err.contains("registry_password_env"),
        "the push names the fix: {err}"
    );
    let (code, _, err) = open.run_env(
        &["create", "deploy", "docker_tag=v1", "--wait"],
        &[("DOCKER_CONFIG", config_dir)],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("requires a login") && err.contains("registry_password_env"),
        "the pull names the fix: {err}"
    );
    let (code, _, err) = open.run_env(&["list", "images"], &[("DOCKER_CONFIG", config_dir)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("requires a login"), "{err}");

    let p = DockerProject::with_docker_settings(
        "auth",
        Some(&registry.addr),
        "registry_username = \"tapit\"\nregistry_password_env = \"TEST_REGISTRY_PASSWORD\"",
    );
    let name = p.repository.split_once('/').unwrap().1.to_owned();
    p.dockerfile("v1", &[]);
    // The variable unset: a configuration error naming it, before anything is built.
    let (code, _, err) = p.run_env(&build, &[("DOCKER_CONFIG", config_dir)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("TEST_REGISTRY_PASSWORD") && err.contains("not set"),
        "{err}"
    );

    let env = [
        ("DOCKER_CONFIG", config_dir),
        ("TEST_REGISTRY_PASSWORD", PASSWORD),
    ];
    let mut seen = String::new();
    let (code, out, err) = p.run_env(&build, &env);
    seen.push_str(&out);
    seen.push_str(&err);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        registry.tags(&name),
        ["v1"],
        "pushed with the configured login"
    );

    // Gone from the engine: images are listed from the registry, and deployed from it.
    docker(&["rmi", &format!("{}:v1", p.repository)]);
    let (code, out, err) = p.run_env(&["list", "images"], &env);
    seen.push_str(&out);
    seen.push_str(&err);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("v1"), "the registry's tag is listed: {out}");
    let (code, out, err) = p.run_env(&["create", "deploy", "docker_tag=v1", "--wait"], &env);
    seen.push_str(&out);
    seen.push_str(&err);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.running("default", "v1"), 2);

    // tapit logged the docker CLI in for the push: without settings of its own, an app of
    // that registry now lists (and pulls) with that login.
    let (code, out, err) = open.run_env(&["list", "images"], &[("DOCKER_CONFIG", config_dir)]);
    assert_eq!(code, 0, "the docker CLI's login is used: {out}\n{err}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));

    // A wrong password: refused, naming the user, never the password.
    let (code, out, err) = p.run_env(
        &["list", "images"],
        &[
            ("DOCKER_CONFIG", config_dir),
            ("TEST_REGISTRY_PASSWORD", WRONG),
        ],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("refused the configured user tapit"), "{err}");
    assert!(!out.contains(WRONG) && !err.contains(WRONG), "{out}\n{err}");
    assert!(
        !seen.contains(PASSWORD),
        "the password never reaches the output: {seen}"
    );
}

#[test]
fn a_bad_docker_host_is_a_configuration_error() {
    let p = Project::new(
        r#"
[apps.web]
platform = "docker"
repository = "web"
[apps.web.docker]
host = "ssh://me@build-box"
[apps.web.processes.default]
port = 8080
[apps.web.processes.worker]
port = 9090
health_path = "health"
"#,
    );
    let (code, _, err) = p.run(&["list", "images"]);
    assert_eq!(code, 2, "{err}");
    for says in [
        "apps.web.docker.host: ssh:// is not supported",
        "apps.web.processes: default, worker set a port",
        "apps.web.processes.worker.health_path: \"health\" must start with /",
    ] {
        assert!(err.contains(says), "{says}: {err}");
    }
}
