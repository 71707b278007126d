//! `tapit show deploy` and `tapit list deploys`: read from the history store only, so they
//! follow a deployment run by any other `tapit` sharing the store.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tapitalee::{
    AppName, DeploymentId, DeploymentRecord, DeploymentStatus, DeploymentStoreExt, ProcessName,
    StepRecord,
};

use super::Ctx;
use crate::exit::CliError;
use crate::render;
use crate::store;
use crate::words::Words;

/// `tapit show deploy [id=…] [-f]`.
pub async fn show(ctx: &Ctx, words: &[String], follow: bool) -> Result<(), CliError> {
    let words = Words::parse("show deploy", &["id"], words)?;
    let id: Option<DeploymentId> = words.deployment_id()?;
    let (config, app) = ctx.app()?;
    let store = store::open(&app, &ctx.global).await?.store;
    let name = AppName::new(&app.name)?;
    let mut record = match id {
        Some(id) => store
            .get(&id)
            .await?
            .filter(|d| d.app == name)
            .ok_or_else(|| {
                CliError::Lib(tapitalee::Error::not_found(
                    tapitalee::Resource::Deployment,
                    id.to_string(),
                    format!("app {} has no such deployment", app.name),
                ))
            })?,
        None => store.latest(&name).await?.ok_or_else(|| {
            CliError::other(format!(
                "app {} has no deployments yet; start one with `tapit{} create deploy`",
                app.name,
                ctx.app_flag(&config, &app)
            ))
        })?,
    };
    if follow && !record.status.is_final() {
        record = follow_record(ctx, &store, record).await?;
        let app_flag = ctx.app_flag(&config, &app);
        crate::commands::deploy::report(&ctx.out, &record, &app_flag);
        return crate::commands::deploy::outcome(&record);
    }
    if ctx.out.json() {
        ctx.out.json_value(
            &serde_json::to_value(&record).map_err(|e| CliError::other(e.to_string()))?,
        );
    } else {
        ctx.out
            .result(&render::deploy_details(&ctx.out, &record, true));
        if let Some(help) = render::mixed_state_help(&record, &ctx.app_flag(&config, &app)) {
            ctx.out.result(&help);
        }
    }
    Ok(())
}

/// `tapit list deploys [process=…] [limit=…]`.
pub async fn list(ctx: &Ctx, words: &[String]) -> Result<(), CliError> {
    let words = Words::parse("list deploys", &["process", "limit"], words)?;
    let limit: usize = words
        .parsed("limit", |s| match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(format!("{s:?} is not a number from 1 to 1000")),
        })?
        .unwrap_or(20);
    let (_, app) = ctx.app()?;
    let process = words
        .get("process")
        .map(|p| {
            app.resolve_process(p)
                .and_then(|p| Ok(ProcessName::new(p)?))
        })
        .transpose()?;
    let store = store::open(&app, &ctx.global).await?.store;
    let name = AppName::new(&app.name)?;
    let fetch = if process.is_some() { 1000 } else { limit };
    let records: Vec<_> = store
        .list(&name, fetch)
        .await?
        .into_iter()
        .filter(|d| process.as_ref().is_none_or(|p| d.process(p).is_some()))
        .take(limit)
        .collect();
    if ctx.out.json() {
        ctx.out.json_value(
            &serde_json::to_value(&records).map_err(|e| CliError::other(e.to_string()))?,
        );
    } else if records.is_empty() {
        ctx.out
            .note(&format!("app {} has no deployments yet", app.name));
    } else {
        ctx.out.result(render::deploy_table(&records).trim_end());
    }
    Ok(())
}

/// Prints a running deployment's steps as they are recorded (stderr, one timestamped line
/// each, or NDJSON with `--output json`) until it ends; returns its final record.
async fn follow_record(
    ctx: &Ctx,
    store: &tapitalee::DynDeploymentStore,
    mut record: DeploymentRecord,
) -> Result<DeploymentRecord, CliError> {
    let mut seen: HashSet<(Option<String>, SystemTime, String)> = HashSet::new();
    let mut polls = 0u32;
    loop {
        let mut steps: Vec<&StepRecord> = record.steps.iter().collect();
        steps.extend(record.processes.iter().flat_map(|p| &p.steps));
        steps.sort_by_key(|s| s.at);
        for s in steps {
            let key = (
                s.process.as_ref().map(ToString::to_string),
                s.at,
                s.message.clone(),
            );
            if !seen.insert(key) {
                continue;
            }
            if ctx.out.json() {
                ctx.out
                    .json_value(&serde_json::json!({ "type": "step", "step": s }));
            } else {
                let who = s.process.as_ref().map_or("-", |p| p.as_str());
                ctx.out
                    .note(&format!("{} {who:<10} {}", render::time(s.at), s.message));
            }
        }
        if record.status.is_final() {
            return Ok(record);
        }
        if record.status == DeploymentStatus::Interrupted {
            return Err(CliError::other(format!(
                "deployment {} was interrupted; `tapit recover` resumes or rolls it back",
                record.id
            )));
        }
        polls += 1;
        // Every few seconds: is anyone still running it? (A dead deployer's record stays
        // "running" until `tapit recover`.)
        if polls.is_multiple_of(10)
            && !crate::commands::control_cmds::deployer_alive(store, &record.app, &record).await?
        {
            return Err(CliError::other(format!(
                "deployment {} is recorded as running but its deployer is gone; `tapit \
                 recover` resumes or rolls it back",
                record.id
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        record = store.get(&record.id).await?.ok_or_else(|| {
            CliError::other(format!(
                "deployment {} vanished from the history",
                record.id
            ))
        })?;
    }
}
