//! `tapit show deploy` and `tapit list deploys`: read from the history store only, so they
//! follow a deployment run by any other `tapit` sharing the store.

use tapitalee::{AppName, DeploymentId, DeploymentStore, DeploymentStoreExt, ProcessName};

use super::Ctx;
use crate::exit::CliError;
use crate::platform::open_store;
use crate::render;
use crate::words::Words;

/// `tapit show deploy [id=…]`.
pub async fn show(ctx: &Ctx, words: &[String]) -> Result<(), CliError> {
    let words = Words::parse("show deploy", &["id"], words)?;
    let id: Option<DeploymentId> = words.parsed("id", |s: &str| s.parse())?;
    let (config, app) = ctx.app()?;
    let store = open_store(&app)?;
    let name = AppName::new(&app.name)?;
    let record = match id {
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
    let store = open_store(&app)?;
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
