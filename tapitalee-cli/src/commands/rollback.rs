//! `tapit rollback deploy [process=…]`: deploy each process's previous successful release
//! again (what it ran before its last successful deployment, from the history). Processes
//! going back to the same tag share one deployment; with `--wait` the deployments run one
//! after the other and the worst outcome is the exit code.

use std::collections::BTreeMap;

use tapitalee::{AppName, DeploymentStatus, ProcessStatus};

use super::Ctx;
use super::deploy::{self, Job};
use crate::cli::DeployArgs;
use crate::exit::CliError;
use crate::store;
use crate::words::Words;

/// `tapit rollback deploy`.
pub async fn run(ctx: &Ctx, args: &DeployArgs) -> Result<(), CliError> {
    let words = Words::parse("rollback deploy", &["process", "initiator"], &args.words)?;
    let (config, app) = ctx.app()?;
    let app_flag = ctx.app_flag(&config, &app);
    let only = words
        .get("process")
        .map(|p| app.resolve_process(p))
        .transpose()?;
    let store = store::open(&app, &ctx.global).await?.store;
    let name = AppName::new(&app.name)?;
    let history = store.list(&name, 1000).await?;
    // Previous tag per process: what it ran before its latest successful deployment.
    let mut previous: BTreeMap<String, String> = BTreeMap::new();
    let mut missing = Vec::new();
    for p in &app.processes {
        if only.as_ref().is_some_and(|o| o != &p.name) {
            continue;
        }
        let found = history
            .iter()
            .filter(|d| d.status != DeploymentStatus::Running)
            .find_map(|d| {
                d.processes
                    .iter()
                    .find(|r| r.process.as_str() == p.name && r.status == ProcessStatus::Succeeded)
            })
            .and_then(|r| r.from.as_ref())
            .map(|rev| rev.image.tag.to_string());
        match found {
            Some(tag) => {
                previous.insert(p.name.clone(), tag);
            }
            None => missing.push(p.name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(CliError::other(format!(
            "no previous successful release in the history for: {} (roll back by hand with \
             `tapit{app_flag} create deploy process=NAME docker_tag=PREVIOUS`)",
            missing.join(", ")
        )));
    }
    let mut by_tag: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, tag) in &previous {
        by_tag.entry(tag.clone()).or_default().push(p.clone());
    }
    let mut jobs = Vec::new();
    for (tag, processes) in &by_tag {
        let whole_app = only.is_none() && by_tag.len() == 1;
        let targets: Vec<Option<String>> = if whole_app {
            vec![None]
        } else {
            processes.iter().cloned().map(Some).collect()
        };
        for process in targets {
            let mut w = vec![format!("docker_tag={tag}")];
            if let Some(p) = &process {
                w.push(format!("process={p}"));
            }
            if let Some(i) = words.get("initiator") {
                w.push(format!("initiator={i}"));
            }
            let w = Words::parse("create deploy", deploy::KEYS, &w)?;
            let job: Job = deploy::job_from_words(ctx, &config, &app, &w)?;
            ctx.out.note(&format!(
                "rolling {} back to {tag}",
                process.as_deref().unwrap_or("every process")
            ));
            jobs.push(job);
        }
    }
    let mut worst: Result<(), CliError> = Ok(());
    for job in &jobs {
        if args.wait {
            let r = deploy::run_and_wait(ctx, &app, job, &app_flag).await;
            match r {
                Err(CliError::Outcome(s)) => {
                    let keep = matches!(&worst, Err(CliError::Outcome(w)) if *w == DeploymentStatus::Failed);
                    if !keep {
                        worst = Err(CliError::Outcome(s));
                    }
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        } else {
            let id = deploy::spawn_detached(job, &app).await?;
            deploy::announce_detached(&ctx.out, &id, &app_flag);
        }
    }
    worst
}
