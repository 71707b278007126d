//! The command line's grammar (clap derive). Parameters of the product document are
//! `key=value` words, parsed per command by [`crate::words`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;

/// tapit: zero-downtime, per-process deployments of multi-process apps.
#[derive(Debug, Parser)]
#[command(
    name = "tapit",
    version,
    about = "Zero-downtime, per-process deployments of multi-process apps",
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The app (an environment such as myapp-staging) in tapit.toml.
    #[arg(short = 'a', long = "app", env = "TAPIT_APP", global = true)]
    pub app: Option<String>,
    /// The configuration file (default: tapit.toml in this directory or above).
    #[arg(long, env = "TAPIT_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Output format: human (default) or json (NDJSON events while waiting).
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    pub output: Output,
    /// AWS profile (aws platform).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// AWS region (aws platform).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Send every AWS call to this endpoint (an emulator), e.g. http://127.0.0.1:5000.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Queue behind a running deployment of the same processes for up to this long
    /// (e.g. 10m) instead of failing with exit code 5.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_wait: Option<Duration>,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Output {
    /// For people.
    Human,
    /// For programs: one JSON document, NDJSON events while waiting.
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 30s, 10m, 1h)"))
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a deployment.
    #[command(subcommand)]
    Create(CreateCmd),
    /// Show a deployment, an image or logs.
    #[command(subcommand)]
    Show(ShowCmd),
    /// List deployments or images.
    #[command(subcommand)]
    List(ListCmd),
    /// Roll processes back to their previous successful release.
    #[command(subcommand)]
    Rollback(RollbackCmd),
    /// Release a paused deployment (a manual gate).
    #[command(subcommand)]
    Promote(PromoteCmd),
    /// Abort a running deployment: every process rolls back.
    #[command(subcommand)]
    Abort(AbortCmd),
    /// Find deployments whose deployer died, and resume or roll them back.
    Recover(RecoverArgs),
    /// Build, push and deploy images; log Docker in to the app's repository.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Write a commented tapit.toml in the current directory (`init history`: create the
    /// app's history store).
    Init(InitArgs),
    /// Runs a detached deployment (started by `create deploy` without --wait).
    #[command(name = "__deployer", hide = true)]
    Deployer,
}

/// Parameters as key=value words.
#[derive(Debug, Clone, Args)]
pub struct WordArgs {
    /// key=value parameters.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
}

/// `tapit init [app=NAME]` or `tapit init history`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InitArgs {
    /// What else to set up.
    #[command(subcommand)]
    pub what: Option<InitCmd>,
    /// key=value parameters: app=NAME.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
}

/// `tapit init …`
#[derive(Debug, Clone, Subcommand)]
pub enum InitCmd {
    /// Create the app's history store: the DynamoDB table of history = "dynamodb:TABLE"
    /// (keys pk and sk, on-demand billing; waits until it is active), or the SQLite file.
    /// Running it again changes nothing.
    History(WordArgs),
}

/// Flags and words of commands that deploy.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Wait for the deployment to end, showing progress; exit with its outcome.
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// key=value parameters.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
}

/// `tapit create …`
#[derive(Debug, Subcommand)]
pub enum CreateCmd {
    /// Deploy an image tag to every process (or one).
    ///
    /// Parameters: docker_tag=TAG (default latest), initiator=NAME, process=NAME (web names
    /// the default process), strategy=rolling|blue-green|canary,
    /// rollback=per-process|all.
    Deploy(DeployArgs),
}

/// `tapit show …`
#[derive(Debug, Subcommand)]
pub enum ShowCmd {
    /// A deployment (the latest by default): status, timing, per process, steps.
    ///
    /// Parameters: id=DEPLOYMENT_ID.
    Deploy(ShowDeployArgs),
    /// An image of the app's repository: digest, size, pushed at, tags.
    ///
    /// Parameters: docker_tag=TAG (required).
    Image(WordArgs),
    /// A process's logs.
    ///
    /// Parameters: process=NAME (default: default), since=DURATION (default 1h).
    Logs(LogsArgs),
}

/// `tapit show deploy`.
#[derive(Debug, Clone, Args)]
pub struct ShowDeployArgs {
    /// Follow a running deployment (from any terminal): print its steps as they are recorded,
    /// then exit with its outcome, as `create deploy --wait` would.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// key=value parameters.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
}

/// `tapit show logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Keep printing new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// key=value parameters.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
}

/// `tapit list …`
#[derive(Debug, Subcommand)]
pub enum ListCmd {
    /// The app's deployments, newest first.
    ///
    /// Parameters: process=NAME, limit=N (default 20).
    Deploys(WordArgs),
    /// The images of the app's repository.
    Images(WordArgs),
}

/// `tapit rollback …`
#[derive(Debug, Subcommand)]
pub enum RollbackCmd {
    /// Deploy each process's previous successful release again.
    ///
    /// Parameters: process=NAME, initiator=NAME.
    Deploy(DeployArgs),
}

/// `tapit promote …`
#[derive(Debug, Subcommand)]
pub enum PromoteCmd {
    /// Release the running deployment's pause (one step), or every pause with --full.
    ///
    /// Parameters: id=DEPLOYMENT_ID (default: the running one).
    Deploy(PromoteArgs),
}

/// `tapit promote deploy`.
#[derive(Debug, Clone, Args)]
pub struct PromoteArgs {
    /// Skip the remaining steps and analyses: promote fully now.
    #[arg(long)]
    pub full: bool,
    /// key=value parameters.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
}

/// `tapit abort …`
#[derive(Debug, Subcommand)]
pub enum AbortCmd {
    /// Abort the running deployment: every process rolls back.
    ///
    /// Parameters: id=DEPLOYMENT_ID (default: the running one), reason=TEXT.
    Deploy(WordArgs),
}

/// `tapit recover`.
#[derive(Debug, Clone, Args)]
pub struct RecoverArgs {
    /// With action=resume: wait for the resumed deployment and exit with its outcome.
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// key=value parameters: action=resume|rollback, id=DEPLOYMENT_ID.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
}

/// `tapit image …`
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Build the app's image with Docker (buildx when installed) and push it.
    ///
    /// Parameters: tag=TAG, docker_tag=TAG (default TAG-SHORTHASH), git_hash=HASH,
    /// initiator=NAME, dockerfile=PATH (default ./Dockerfile), cache=ecr|gha.
    Build(ImageBuildArgs),
    /// Log Docker in to the app's repository (token on stdin, never on a command line).
    Login(WordArgs),
    /// Build, push and deploy in one step.
    ///
    /// Parameters: those of image build, and process=NAME.
    Deploy(DeployArgs),
}

/// `tapit image build`.
#[derive(Debug, Clone, Args)]
pub struct ImageBuildArgs {
    /// Build only; do not push.
    #[arg(long)]
    pub no_push: bool,
    /// key=value parameters.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
}
