//! `tapit.toml`: the apps (environments) `tapit` deploys, their platform, history store,
//! processes, strategies and gates. The whole file is validated on load; every problem is
//! reported with its key path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::exit::CliError;
use crate::words::closest;

/// The file name looked for upward from the working directory.
pub const FILE_NAME: &str = "tapit.toml";

/// A loaded, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// `default_app`.
    pub default_app: Option<String>,
    /// The apps, by name.
    pub apps: BTreeMap<String, AppConfig>,
}

/// The platform an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// The in-memory platform (per-image behaviour from the config), for trying tapit out.
    Simulated,
    /// AWS ECS Fargate, ECR, ELBv2, CloudWatch.
    Aws,
    /// A local Docker engine: containers, a weighted proxy on 127.0.0.1, the engine's image
    /// store (and a registry when the repository names one).
    Docker,
}

/// The Docker platform's settings (`[apps.NAME.docker]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerSettings {
    /// `host`: the engine, as `DOCKER_HOST` writes it (default: `DOCKER_HOST`, else the
    /// local socket).
    pub host: Option<String>,
    /// `proxy_port`: the app's proxy on 127.0.0.1 (0 or unset: the engine picks one).
    pub proxy_port: u16,
    /// `proxy_image`: the proxy's image (default `tapitalee/proxy:latest`).
    pub proxy_image: Option<String>,
    /// `stop_timeout`: between SIGTERM and SIGKILL.
    pub stop_timeout: Option<Duration>,
    /// `drain_timeout`: how long a retired instance's requests may take.
    pub drain_timeout: Option<Duration>,
    /// `registry_username`: the user name for the registry the repository names (with
    /// `registry_password_env`).
    pub registry_username: Option<String>,
    /// `registry_password_env`: the environment variable holding that user's password (the
    /// password itself is never in the file).
    pub registry_password_env: Option<String>,
}

/// Where the history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum History {
    /// The SQLite file in the user's data directory (shared by every tapit on the machine).
    DefaultSqlite,
    /// A SQLite file at this path.
    Sqlite(PathBuf),
    /// `dynamodb:TABLE`: a DynamoDB table shared by a team's machines and CI runners.
    DynamoDb(String),
}

/// A deployment strategy by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StrategyKind {
    /// Rolling (the default).
    Rolling,
    /// Blue-green.
    BlueGreen,
    /// Canary.
    Canary,
}

impl StrategyKind {
    /// The names accepted in the config and on the command line.
    pub const NAMES: &'static [&'static str] = &["rolling", "blue-green", "canary"];

    /// From its name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rolling" => Some(StrategyKind::Rolling),
            "blue-green" => Some(StrategyKind::BlueGreen),
            "canary" => Some(StrategyKind::Canary),
            _ => None,
        }
    }
}

/// Health gate settings (unset ones keep the library's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateConfig {
    /// `min_healthy_time`.
    pub min_healthy_time: Option<Duration>,
    /// `poll_interval`.
    pub poll_interval: Option<Duration>,
    /// `progress_deadline`.
    pub progress_deadline: Option<Duration>,
    /// `failure_threshold`.
    pub failure_threshold: Option<u32>,
}

/// Canary steps: `"25%"` (traffic weight), `"pause 30s"`, `"pause"` (until promoted),
/// `"scale 2"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryStepConfig {
    /// Set the traffic weight.
    Weight(u8),
    /// Pause for a while, or until promoted.
    Pause(Option<Duration>),
    /// Scale the canary fleet.
    Scale(u32),
}

/// Per-strategy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyConfig {
    /// The default strategy.
    pub kind: StrategyKind,
    /// `canary.steps`.
    pub canary_steps: Vec<CanaryStepConfig>,
    /// `blue_green.auto_promote`.
    pub blue_green_auto_promote: bool,
    /// `blue_green.bake_time`.
    pub blue_green_bake_time: Option<Duration>,
    /// `blue_green.scale_down_delay`: how long the old fleet stays up after the switch.
    pub blue_green_scale_down_delay: Option<Duration>,
    /// `rolling.watch`: how long the new fleet is watched after the last batch, with the old
    /// fleet's last instances on standby.
    pub rolling_watch: Option<Duration>,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig {
            kind: StrategyKind::Rolling,
            canary_steps: vec![
                CanaryStepConfig::Weight(25),
                CanaryStepConfig::Pause(Some(Duration::from_secs(10))),
                CanaryStepConfig::Weight(50),
                CanaryStepConfig::Pause(Some(Duration::from_secs(10))),
            ],
            blue_green_auto_promote: true,
            blue_green_bake_time: None,
            blue_green_scale_down_delay: None,
            rolling_watch: None,
        }
    }
}

/// A load balancer in front of an AWS process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// `listener` ARN.
    pub listener: String,
    /// `rule` ARN.
    pub rule: Option<String>,
    /// `target_groups`: two ARNs.
    pub target_groups: [String; 2],
    /// `container`.
    pub container: Option<String>,
    /// `port`.
    pub port: i32,
}

/// One process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Its name.
    pub name: String,
    /// `instances` (simulated).
    pub instances: u32,
    /// `load_balanced` (simulated; on AWS, whether `load_balancer` is set).
    pub load_balanced: bool,
    /// `cluster` (aws).
    pub cluster: Option<String>,
    /// `service` (aws).
    pub service: Option<String>,
    /// `container` (aws).
    pub container: Option<String>,
    /// `log_group` (aws; informational: logs are read from the task definition's awslogs
    /// settings).
    pub log_group: Option<String>,
    /// `load_balancer` (aws).
    pub load_balancer: Option<LoadBalancer>,
    /// `subnets` (aws).
    pub subnets: Vec<String>,
    /// `security_groups` (aws).
    pub security_groups: Vec<String>,
    /// `assign_public_ip` (aws).
    pub assign_public_ip: bool,
    /// `strategy`: this process's own.
    pub strategy: Option<StrategyKind>,
    /// `command` (docker): replaces the image's `CMD`.
    pub command: Vec<String>,
    /// `environment` (docker).
    pub environment: BTreeMap<String, String>,
    /// `port` (docker): the web process's port in its container; it takes the app's traffic.
    pub port: Option<u16>,
    /// `health_path` (docker, with `port`): answers 200 when the instance is healthy.
    pub health_path: Option<String>,
}

/// How a simulated image behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Starts and stays healthy.
    Good,
    /// Exits shortly after starting, every time.
    CrashLoop,
    /// Runs but never passes its health check.
    NeverHealthy,
    /// Passes container health, fails the load balancer's.
    LbUnhealthy,
}

impl Behavior {
    /// The names accepted in the config.
    pub const NAMES: &'static [&'static str] =
        &["good", "crash-loop", "never-healthy", "lb-unhealthy"];

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "good" => Some(Behavior::Good),
            "crash-loop" => Some(Behavior::CrashLoop),
            "never-healthy" => Some(Behavior::NeverHealthy),
            "lb-unhealthy" => Some(Behavior::LbUnhealthy),
            _ => None,
        }
    }
}

/// One simulated image: its behaviour, and per-process exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimImage {
    /// For every process without an exception.
    pub all: Behavior,
    /// Exceptions by process.
    pub processes: BTreeMap<String, Behavior>,
}

/// The simulated platform's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The tag every process runs before its first deployment.
    pub initial: String,
    /// How long an instance takes to start.
    pub start_delay: Duration,
    /// How long every platform call takes (as a real platform's API round trip would).
    pub latency: Duration,
    /// The images in the simulated registry, by tag.
    pub images: BTreeMap<String, SimImage>,
}

/// One app (environment).
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Its name.
    pub name: String,
    /// `platform`.
    pub platform: Platform,
    /// `history`.
    pub history: History,
    /// `repository` (aws: the ECR repository name; docker: the image repository, with a
    /// registry host to push to one, e.g. `127.0.0.1:5000/shop`).
    pub repository: String,
    /// `region` (aws).
    pub region: Option<String>,
    /// `endpoint_url` (aws, an emulator).
    pub endpoint_url: Option<String>,
    /// `registry_id` (aws): the account whose ECR registry holds the repository.
    pub registry_id: Option<String>,
    /// `role_arn` (aws, and a DynamoDB history): the IAM role every call is made as.
    pub role_arn: Option<String>,
    /// `deregister_rolled_back` (aws): deregister the task definition revision of a rolled-back
    /// deployment. Default false.
    pub deregister_rolled_back: bool,
    /// `rollback`: whether any failure rolls every process back.
    pub rollback_all: bool,
    /// `strategy` and its settings.
    pub strategy: StrategyConfig,
    /// `gate`.
    pub gate: GateConfig,
    /// `lock_lease`: how long a process lock lives without renewal (a dead deployer's locks
    /// expire after it, then `tapit recover` can act).
    pub lock_lease: Option<Duration>,
    /// `processes`, in file order.
    pub processes: Vec<ProcessConfig>,
    /// `simulated`.
    pub simulated: Option<SimConfig>,
    /// `docker`.
    pub docker: DockerSettings,
}

impl AppConfig {
    /// The process named `name`; `web` names `default` unless a process is called `web`.
    pub fn resolve_process(&self, name: &str) -> Result<String, CliError> {
        if self.processes.iter().any(|p| p.name == name) {
            return Ok(name.to_owned());
        }
        if name == "web" && self.processes.iter().any(|p| p.name == "default") {
            return Ok("default".to_owned());
        }
        let names: Vec<&str> = self.processes.iter().map(|p| p.name.as_str()).collect();
        let hint = closest(name, &names)
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        Err(CliError::usage(format!(
            "unknown process {name:?} (app {} has: {}){hint}",
            self.name,
            names.join(", ")
        )))
    }

    /// The SQLite history file, or `None` when the history is in DynamoDB.
    pub fn history_path(&self) -> Result<Option<PathBuf>, CliError> {
        match &self.history {
            History::Sqlite(p) => Ok(Some(p.clone())),
            History::DefaultSqlite => Ok(Some(data_dir()?.join("history.db"))),
            History::DynamoDb(_) => Ok(None),
        }
    }

    /// Where this machine's own state goes (the background deployers' log; the control
    /// requests with a SQLite history): next to the SQLite history file, else the data
    /// directory.
    pub fn local_dir(&self) -> Result<PathBuf, CliError> {
        match self.history_path()? {
            Some(file) => Ok(file.parent().unwrap_or(Path::new(".")).to_path_buf()),
            None => data_dir(),
        }
    }
}

/// The directory `tapit` keeps its shared state in: `TAPIT_DATA_DIR`, else the user's data
/// directory (`~/.local/share/tapitalee` on Linux).
pub fn data_dir() -> Result<PathBuf, CliError> {
    if let Some(d) = std::env::var_os("TAPIT_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    dirs::data_dir()
        .map(|d| d.join("tapitalee"))
        .ok_or_else(|| {
            CliError::other(
                "cannot find the user's data directory for the history; set TAPIT_DATA_DIR or \
                 history = \"path/to/history.db\" in tapit.toml",
            )
        })
}

impl Config {
    /// Finds the file (`explicit`, else upward from `cwd`) and loads it.
    pub fn find_and_load(explicit: Option<&Path>, cwd: &Path) -> Result<Config, CliError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => cwd
                .ancestors()
                .map(|d| d.join(FILE_NAME))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    CliError::Config(vec![format!(
                        "no {FILE_NAME} in {} or any directory above it; run `tapit init` to \
                         write one, or pass --config PATH (or set TAPIT_CONFIG)",
                        cwd.display()
                    )])
                })?,
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::Config(vec![format!("cannot read {}: {e}", path.display())]))?;
        Config::parse(&text, &path)
    }

    /// Parses and validates `text`, read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, CliError> {
        let root: Table = text.parse().map_err(|e: toml::de::Error| {
            CliError::Config(vec![format!("{}: {}", path.display(), e.message())])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut c = Check::default();
        c.keys(&root, "", &["default_app", "history", "apps"]);
        let default_app = c.string(&root, "", "default_app");
        let history = c.history(&root, "", base).unwrap_or(History::DefaultSqlite);
        let mut apps = BTreeMap::new();
        match root.get("apps") {
            None => c.problem("apps", "missing: add at least one [apps.NAME] table"),
            Some(v) => {
                if let Some(t) = c.table(v, "apps") {
                    if t.is_empty() {
                        c.problem("apps", "empty: add at least one [apps.NAME] table");
                    }
                    for (name, v) in t {
                        let p = format!("apps.{name}");
                        if let Some(t) = c.table(v, &p)
                            && let Some(app) = c.app(name, t, &p, &history, base)
                        {
                            apps.insert(name.clone(), app);
                        }
                    }
                }
            }
        }
        let declared: Vec<&str> = match root.get("apps") {
            Some(Value::Table(t)) => t.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(d) = &default_app
            && !declared.contains(&d.as_str())
            && !declared.is_empty()
        {
            let names = declared;
            c.problem(
                "default_app",
                format!(
                    "{d:?} is not an app of this file (apps: {})",
                    names.join(", ")
                ),
            );
        }
        if c.problems.is_empty() {
            Ok(Config {
                path: path.to_path_buf(),
                default_app,
                apps,
            })
        } else {
            Err(CliError::Config(
                c.problems
                    .into_iter()
                    .map(|p| format!("{}: {p}", path.display()))
                    .collect(),
            ))
        }
    }

    /// The app to work on: `-a`/`TAPIT_APP`, else `default_app`, else the only one.
    pub fn app(&self, asked: Option<&str>) -> Result<&AppConfig, CliError> {
        let names: Vec<&str> = self.apps.keys().map(String::as_str).collect();
        let name = match asked.or(self.default_app.as_deref()) {
            Some(n) => n,
            None if names.len() == 1 => names[0],
            None => {
                return Err(CliError::usage(format!(
                    "{} describes several apps ({}); choose one with -a NAME (or TAPIT_APP, or \
                     default_app in the file)",
                    self.path.display(),
                    names.join(", ")
                )));
            }
        };
        self.apps.get(name).ok_or_else(|| {
            let hint = closest(name, &names)
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            CliError::usage(format!(
                "unknown app {name:?} ({} has: {}){hint}",
                self.path.display(),
                names.join(", ")
            ))
        })
    }
}

mod check;

use check::Check;
#[cfg(test)]
use check::parse_canary_step;

#[cfg(test)]
mod tests;
