//! One module per command, each thin over the library.

use std::path::PathBuf;

use crate::cli::{
    AbortCmd, Cli, Command, CreateCmd, Global, ImageCmd, InitCmd, ListCmd, PromoteCmd, RollbackCmd,
    ShowCmd,
};
use crate::config::{AppConfig, Config};
use crate::exit::CliError;
use crate::platform::{self, Backend};
use crate::render::Out;

pub mod control_cmds;
pub mod deploy;
pub mod history;
pub mod images;
pub mod init;
pub mod logs;
pub mod recover;
pub mod rollback;

/// What every command gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The global flags.
    pub global: Global,
    /// Output.
    pub out: Out,
    /// The working directory.
    pub cwd: PathBuf,
}

impl Ctx {
    /// The configuration file, loaded and validated.
    pub fn config(&self) -> Result<Config, CliError> {
        Config::find_and_load(self.global.config.as_deref(), &self.cwd)
    }

    /// The configuration and the selected app.
    pub fn app(&self) -> Result<(Config, AppConfig), CliError> {
        let config = self.config()?;
        let app = config.app(self.global.app.as_deref())?.clone();
        Ok((config, app))
    }

    /// ` -a NAME` when commands printed for people must name the app (the file has several
    /// apps), else empty.
    pub fn app_flag(&self, config: &Config, app: &AppConfig) -> String {
        if config.apps.len() > 1 || self.global.app.is_some() {
            format!(" -a {}", app.name)
        } else {
            String::new()
        }
    }

    /// Connects to the app's platform.
    pub async fn backend(&self, app: &AppConfig) -> Result<Backend, CliError> {
        platform::connect(app, &self.global).await
    }
}

/// Runs the command.
pub async fn run(cli: Cli, out: Out) -> Result<(), CliError> {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::other(format!("cannot read the working directory: {e}")))?;
    if !matches!(cli.command, Command::Deployer) {
        // The library's warnings (e.g. a lock it could not release) on stderr; TAPIT_LOG
        // (tracing's filter syntax) shows more.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TAPIT_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_ansi(out.colour)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let ctx = Ctx {
        global: cli.global,
        out,
        cwd,
    };
    match cli.command {
        Command::Create(CreateCmd::Deploy(args)) => deploy::create(&ctx, &args).await,
        Command::Show(ShowCmd::Deploy(args)) => history::show(&ctx, &args.words, args.follow).await,
        Command::Show(ShowCmd::Image(args)) => images::show(&ctx, &args.words).await,
        Command::Show(ShowCmd::Logs(args)) => logs::show(&ctx, &args).await,
        Command::List(ListCmd::Deploys(args)) => history::list(&ctx, &args.words).await,
        Command::List(ListCmd::Images(args)) => images::list(&ctx, &args.words).await,
        Command::Rollback(RollbackCmd::Deploy(args)) => rollback::run(&ctx, &args).await,
        Command::Promote(PromoteCmd::Deploy(args)) => {
            control_cmds::promote(&ctx, args.full, &args.words).await
        }
        Command::Abort(AbortCmd::Deploy(args)) => control_cmds::abort(&ctx, &args.words).await,
        Command::Recover(args) => recover::run(&ctx, &args).await,
        Command::Image(ImageCmd::Build(args)) => images::build(&ctx, &args).await.map(|_| ()),
        Command::Image(ImageCmd::Login(args)) => images::login(&ctx, &args.words).await,
        Command::Image(ImageCmd::Deploy(args)) => images::deploy(&ctx, &args).await,
        Command::Init(args) => match args.what {
            Some(InitCmd::History(h)) => init::history(&ctx, &h.words).await,
            None => init::run(&ctx, &args.words),
        },
        Command::Deployer => deploy::detached_main().await,
    }
}

/// `--profile` reaches the AWS SDK's default chain as `AWS_PROFILE`. Setting the environment
/// of a running (threaded) process is unsound, so when the profile differs from the
/// environment's, `tapit` runs itself again with it set and returns the child's exit code.
pub fn reexec_for_profile(global: &Global) -> Option<i32> {
    let profile = global.profile.as_ref()?;
    if std::env::var("AWS_PROFILE").ok().as_ref() == Some(profile) {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("AWS_PROFILE", profile)
        .status()
        .ok()?;
    Some(status.code().unwrap_or(crate::exit::code::INTERRUPTED))
}
