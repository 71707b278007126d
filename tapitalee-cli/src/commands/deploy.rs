//! `tapit create deploy`: start a deployment and either follow it (`--wait`) or hand it to a
//! detached background `tapit` (the hidden `__deployer` command) that runs it to its end,
//! recording every step in the shared history.
//!
//! The detached protocol: the parent writes a [`Job`] as JSON to the child's stdin; the child
//! (in its own process group, so Ctrl-C in the terminal does not reach it) starts the
//! deployment and answers one JSON line on stdout, `{"started":"ID"}` or
//! `{"error":"…","exit_code":N}`; the parent prints the id (or the error) and returns. The
//! child then follows the deployment, applying control requests (see [`crate::control`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tapitalee::{
    DeployRequest, DeploymentHandle, DeploymentId, DeploymentRecord, DeploymentStatus, DockerTag,
    Initiator, ProcessName, RollbackPolicy,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::Ctx;
use crate::cli::{DeployArgs, Output};
use crate::config::{AppConfig, Config, StrategyKind};
use crate::exit::CliError;
use crate::platform::{self, Backend};
use crate::render::{self, LiveView, Out};
use crate::words::Words;

/// The parameters of `create deploy`.
pub const KEYS: &[&str] = &["docker_tag", "initiator", "process", "strategy", "rollback"];

/// A deployment to start, as the detached deployer receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The configuration file.
    pub config: PathBuf,
    /// The app.
    pub app: String,
    /// The tag.
    pub docker_tag: String,
    /// Who.
    pub initiator: String,
    /// One process (resolved), or the whole app.
    pub process: Option<String>,
    /// A strategy for every process deployed.
    pub strategy: Option<StrategyKind>,
    /// Roll every process back on any failure.
    pub rollback_all: bool,
    /// `--lock-wait`.
    pub lock_wait: Option<Duration>,
    /// `--region`.
    pub region: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
}

/// The initiator when none is given: `$TAPIT_INITIATOR`, `$GITHUB_ACTOR`, `$USER`, else
/// `unknown`.
fn default_initiator() -> String {
    ["TAPIT_INITIATOR", "GITHUB_ACTOR", "USER"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| Initiator::new(v).is_ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Validates the words of a deploying command into a job (everything refused here is refused
/// before any change, with exit code 2).
pub fn job_from_words(
    ctx: &Ctx,
    config: &Config,
    app: &AppConfig,
    words: &Words,
) -> Result<Job, CliError> {
    let docker_tag = words
        .parsed("docker_tag", |s: &str| DockerTag::new(s))?
        .map_or_else(|| "latest".to_owned(), |t| t.to_string());
    let initiator = words
        .parsed("initiator", |s: &str| Initiator::new(s))?
        .map_or_else(default_initiator, |i| i.to_string());
    let process = words
        .get("process")
        .map(|p| app.resolve_process(p))
        .transpose()?;
    let strategy = words
        .choice("strategy", StrategyKind::NAMES)?
        .and_then(StrategyKind::from_name);
    let rollback_all = match words.choice("rollback", &["per-process", "all"])? {
        Some("all") => true,
        Some(_) => false,
        None => app.rollback_all,
    };
    let config_path = std::fs::canonicalize(&config.path).unwrap_or_else(|_| config.path.clone());
    Ok(Job {
        config: config_path,
        app: app.name.clone(),
        docker_tag,
        initiator,
        process,
        strategy,
        rollback_all,
        lock_wait: ctx.global.lock_wait,
        region: ctx.global.region.clone(),
        endpoint_url: ctx.global.endpoint_url.clone(),
    })
}

/// `tapit create deploy`.
pub async fn create(ctx: &Ctx, args: &DeployArgs) -> Result<(), CliError> {
    let words = Words::parse("create deploy", KEYS, &args.words)?;
    let (config, app) = ctx.app()?;
    let job = job_from_words(ctx, &config, &app, &words)?;
    let app_flag = ctx.app_flag(&config, &app);
    if args.wait {
        run_and_wait(ctx, &app, &job, &app_flag).await
    } else {
        let id = spawn_detached(&job, &app).await?;
        announce_detached(&ctx.out, &id, &app_flag);
        Ok(())
    }
}

/// Prints the id of a deployment started in the background.
pub fn announce_detached(out: &Out, id: &DeploymentId, app_flag: &str) {
    if out.json() {
        out.json_value(&serde_json::json!({ "id": id.to_string(), "status": "running" }));
    } else {
        out.result(&id.to_string());
        out.note(&format!(
            "deployment {id} started in the background; follow it with `tapit{app_flag} show \
             deploy id={id}`"
        ));
    }
}

/// Starts the job's deployment in this process.
pub async fn start(
    backend: &Backend,
    app: &AppConfig,
    job: &Job,
) -> Result<DeploymentHandle, CliError> {
    let mut request = DeployRequest::new()
        .docker_tag(DockerTag::new(&job.docker_tag)?)
        .initiator(Initiator::new(&job.initiator)?)
        .rollback_policy(if job.rollback_all {
            RollbackPolicy::AllOrNothing
        } else {
            RollbackPolicy::Independent
        });
    if let Some(p) = &job.process {
        request = request.process(ProcessName::new(p)?);
    }
    if let Some(w) = job.lock_wait {
        request = request.lock_wait(w);
    }
    for p in &app.processes {
        if job.process.as_ref().is_some_and(|only| only != &p.name) {
            continue;
        }
        let kind = job.strategy.or(p.strategy).unwrap_or(app.strategy.kind);
        request = request.strategy_for(
            ProcessName::new(&p.name)?,
            platform::strategy(&app.strategy, kind, p.load_balanced)?,
        );
    }
    Ok(backend.engine.deploy(&backend.app, request).await?)
}

/// Loads the configuration a job names and connects to its app.
async fn job_backend(job: &Job) -> Result<(AppConfig, Backend), CliError> {
    let config = Config::find_and_load(Some(&job.config), Path::new("."))?;
    let app = config.app(Some(&job.app))?.clone();
    let global = crate::cli::Global {
        app: Some(job.app.clone()),
        config: Some(job.config.clone()),
        output: Output::Human,
        profile: None,
        region: job.region.clone(),
        endpoint_url: job.endpoint_url.clone(),
        lock_wait: job.lock_wait,
    };
    wait_before_simulating(&app, &global, job).await?;
    let backend = platform::connect(&app, &global).await?;
    Ok((app, backend))
}

/// On the simulated platform, a deployment that queues behind another (`--lock-wait`) waits
/// for its locks before the platform is built: each `tapit` builds it from the history, so
/// building it after the holder finished sees the release the holder left. The engine still
/// takes the locks (and waits what is left of `--lock-wait` for them) as on any platform.
async fn wait_before_simulating(
    app: &AppConfig,
    global: &crate::cli::Global,
    job: &Job,
) -> Result<(), CliError> {
    let (crate::config::Platform::Simulated, Some(wait)) = (app.platform, job.lock_wait) else {
        return Ok(());
    };
    let history = crate::store::open(app, global).await?;
    let name = tapitalee::AppName::new(&app.name)?;
    let mut targets = Vec::new();
    for p in &app.processes {
        if job.process.as_ref().is_none_or(|only| only == &p.name) {
            targets.push(tapitalee::Target::new(
                name.clone(),
                ProcessName::new(&p.name)?,
            ));
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut held = false;
        for t in &targets {
            held |= history.store.lock_holder(t).await?.is_some();
        }
        if !held || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `create deploy --wait`: start, follow with progress, exit with the outcome.
pub async fn run_and_wait(
    ctx: &Ctx,
    app: &AppConfig,
    job: &Job,
    app_flag: &str,
) -> Result<(), CliError> {
    wait_before_simulating(app, &ctx.global, job).await?;
    let backend = ctx.backend(app).await?;
    let handle = start(&backend, app, job).await?;
    let record = follow(&backend, handle, Some(&ctx.out)).await?;
    report(&ctx.out, &record.0, app_flag);
    failed_logs(&ctx.out, &backend, &record.0).await;
    proxy_note(&ctx.out, &backend).await;
    if record.1 {
        return Err(CliError::Interrupted);
    }
    outcome(&record.0)
}

/// On AWS, the last log lines of each failed process since its deployment started (what the
/// failed tasks said before they stopped). Best effort: a failure to read them is only noted.
async fn failed_logs(out: &Out, backend: &Backend, record: &DeploymentRecord) {
    let Some(aws) = &backend.aws else { return };
    if out.json() {
        return;
    }
    for p in &record.processes {
        if render::reason(&p.status).is_none() {
            continue;
        }
        let target = tapitalee::Target::new(record.app.clone(), p.process.clone());
        let query = tapitalee::aws::LogQuery {
            since: p.started_at.unwrap_or(record.created_at),
            ..tapitalee::aws::LogQuery::default()
        };
        match aws.logs().fetch(&target, &query).await {
            Ok(lines) if !lines.is_empty() => {
                let last: Vec<String> = lines
                    .iter()
                    .rev()
                    .take(LAST_LOG_LINES)
                    .rev()
                    .map(|l| format!("    {} {}", render::time(l.at), l.message))
                    .collect();
                out.result(&format!(
                    "last log lines of {} (tapit show logs process={}):\n{}",
                    p.process,
                    p.process,
                    last.join("\n")
                ));
            }
            Ok(_) => {}
            Err(e) => out.note(&format!("(cannot read the logs of {}: {e})", p.process)),
        }
    }
}

/// On Docker, where the app's traffic goes in: its proxy on 127.0.0.1.
async fn proxy_note(out: &Out, backend: &Backend) {
    let Some(docker) = &backend.docker else {
        return;
    };
    match docker.proxy_address(&backend.app).await {
        Ok(Some(addr)) => out.note(&format!("the app's proxy serves http://{addr}/")),
        Ok(None) => {}
        Err(e) => out.note(&format!("(cannot find the app's proxy: {e})")),
    }
}

/// How many log lines of a failed process are shown.
const LAST_LOG_LINES: usize = 10;

/// The exit status of a finished deployment.
pub fn outcome(record: &DeploymentRecord) -> Result<(), CliError> {
    match record.status {
        DeploymentStatus::Succeeded => Ok(()),
        other => Err(CliError::Outcome(other)),
    }
}

/// Prints a finished deployment's outcome: the record (stdout), why each failed process
/// failed, the commands that line a mixed app up again, and the GitHub Actions outputs.
pub fn report(out: &Out, record: &DeploymentRecord, app_flag: &str) {
    if out.json() {
        out.json_value(&serde_json::json!({ "type": "result", "deployment": record }));
    } else {
        out.result(&render::deploy_details(out, record, false));
        if let Some(help) = render::mixed_state_help(record, app_flag) {
            out.result(&help);
        }
    }
    render::github_actions(record, app_flag);
}

/// Follows a deployment to its end: renders events (when `out` is given), applies control
/// requests from other `tapit` processes, and handles Ctrl-C (the first aborts and rolls back,
/// a second leaves at once). Returns the full record and whether Ctrl-C was pressed.
pub async fn follow(
    backend: &Backend,
    mut handle: DeploymentHandle,
    out: Option<&Out>,
) -> Result<(DeploymentRecord, bool), CliError> {
    let id = handle.id();
    let watcher = tokio::spawn(backend.control.clone().watch(id, handle.control()));
    let control = handle.control();
    let mut events = handle.events();
    let wait = handle.wait();
    tokio::pin!(wait);
    let mut view = LiveView::for_terminal();
    let mut interrupted = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut events_done = false;
    // One SIGINT stream for the whole wait, so no Ctrl-C falls between two polls.
    let mut sigint = match out {
        Some(_) => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| CliError::other(format!("cannot handle Ctrl-C: {e}")))?,
        ),
        None => None,
    };
    let render = |view: &mut LiveView, e: &tapitalee::DeployEvent| {
        let Some(out) = out else { return };
        if out.json() {
            out.json_value(&serde_json::json!({ "type": "event", "event": e }));
        } else if out.live {
            view.update(e);
            view.draw(out);
        } else {
            out.note(&render::event_line(e));
        }
    };
    let result = loop {
        tokio::select! {
            e = events.next(), if !events_done => match e {
                Some(e) => render(&mut view, &e),
                None => events_done = true,
            },
            r = &mut wait => break r,
            _ = ticker.tick(), if out.is_some_and(|o| o.live) => {
                if let Some(out) = out { view.draw(out) }
            }
            Some(()) = async { sigint.as_mut()?.recv().await }, if sigint.is_some() => {
                if interrupted {
                    // A second Ctrl-C: leave now. The record stays "running"; once its locks
                    // expire, `tapit recover` finishes it.
                    watcher.abort();
                    if let Some(out) = out {
                        out.note(&format!(
                            "leaving deployment {id} as it is; `tapit recover` resumes or rolls \
                             it back once its locks expire (about a minute)"
                        ));
                    }
                    return Err(CliError::Interrupted);
                }
                interrupted = true;
                control.abort("interrupted (Ctrl-C)");
                if let Some(out) = out {
                    out.note("aborting: every process rolls back to its previous version \
                              (press Ctrl-C again to leave at once)");
                }
            }
        }
    };
    // Events sent just before the end.
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), events.next()).await {
        render(&mut view, &e);
    }
    watcher.abort();
    backend.control.cleanup(&id);
    let summary = result?;
    let record = backend.engine.get(&summary.id).await.unwrap_or(summary);
    Ok((record, interrupted))
}

/// The log of background deployers: `deployer.log` next to the SQLite history file, or in
/// the data directory (a DynamoDB history).
pub fn deployer_log(app: &AppConfig) -> Result<PathBuf, CliError> {
    let dir = app.local_dir()?;
    let dir = dir.as_path();
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::other(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir.join("deployer.log"))
}

/// Starts the job in a detached `tapit __deployer`; returns the deployment's id once it has
/// started (or the reason it was refused, with its exit code).
pub async fn spawn_detached(job: &Job, app: &AppConfig) -> Result<DeploymentId, CliError> {
    // The background deployer's own messages (tracing) go to a log on this machine.
    let log_path = deployer_log(app)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| CliError::other(format!("cannot open {}: {e}", log_path.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::other(format!("cannot find the tapit executable: {e}")))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("__deployer")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // Its own process group: Ctrl-C in this terminal does not reach it.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::other(format!("cannot start the background deployer: {e}")))?;
    let job_json = serde_json::to_vec(job).map_err(|e| CliError::other(e.to_string()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| CliError::other("the background deployer has no stdin"))?;
    stdin.write_all(&job_json).await.map_err(|e| {
        CliError::other(format!(
            "cannot hand the job to the background deployer: {e}"
        ))
    })?;
    drop(stdin);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CliError::other("the background deployer has no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .map_err(|e| CliError::other(format!("no answer from the background deployer: {e}")))?;
    let answer: serde_json::Value = serde_json::from_str(&line).map_err(|_| {
        CliError::other(format!(
            "the background deployer exited without starting the deployment; see {}",
            log_path.display()
        ))
    })?;
    if let Some(id) = answer["started"].as_str() {
        return id.parse().map_err(CliError::Lib);
    }
    let message = answer["error"]
        .as_str()
        .unwrap_or("unknown error")
        .to_owned();
    let code = answer["exit_code"].as_i64().unwrap_or(1);
    Err(CliError::Relayed {
        code: i32::try_from(code).unwrap_or(crate::exit::code::ERROR),
        message,
    })
}

/// The hidden `tapit __deployer`: runs one job handed over on stdin.
pub async fn detached_main() -> Result<(), CliError> {
    // stderr is the deployer log; RUST_LOG refines what goes there.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let mut input = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut input)
        .await
        .map_err(|e| CliError::other(format!("reading the job: {e}")))?;
    let mut stdout = tokio::io::stdout();
    let started = async {
        let job: Job = serde_json::from_slice(&input)
            .map_err(|e| CliError::other(format!("bad job from the parent tapit: {e}")))?;
        let (app, backend) = job_backend(&job).await?;
        let handle = start(&backend, &app, &job).await?;
        Ok::<_, CliError>((app, backend, handle))
    }
    .await;
    let (app, backend, handle) = match started {
        Ok(s) => s,
        Err(e) => {
            let line = serde_json::json!({ "error": e.to_string(), "exit_code": e.code() });
            let _ = stdout.write_all(format!("{line}\n").as_bytes()).await;
            let _ = stdout.flush().await;
            return Ok(());
        }
    };
    let line = serde_json::json!({ "started": handle.id().to_string() });
    let _ = stdout.write_all(format!("{line}\n").as_bytes()).await;
    let _ = stdout.flush().await;
    drop(stdout);
    // A closed terminal must not stop the deployment.
    let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let id = handle.id();
    tracing::info!(deployment.id = %id, app = %app.name, "detached deployer following");
    let (record, _) = follow(&backend, handle, None).await?;
    tracing::info!(deployment.id = %id, status = %record.status, "deployment ended");
    outcome(&record)
}
