//! `tapit promote deploy` and `tapit abort deploy`: requests to the `tapit` process running
//! the deployment, through the history's control channel (see [`crate::control`]): a file on
//! this machine with a SQLite history, the deployment's mailbox in the table (any machine)
//! with a DynamoDB history.

use tapitalee::{
    AppName, DeploymentId, DeploymentRecord, DeploymentStatus, DynDeploymentStore, Target,
};

use super::Ctx;
use crate::config::AppConfig;
use crate::control::Request;
use crate::exit::CliError;
use crate::store::{self, HistoryStore};
use crate::words::Words;

/// The deployment to steer: `id=…`, else the app's running one. It must be running and its
/// deployer alive (holding its locks).
async fn running(
    ctx: &Ctx,
    app: &AppConfig,
    words: &Words,
) -> Result<(HistoryStore, DeploymentRecord), CliError> {
    let history = store::open(app, &ctx.global).await?;
    let store = &history.store;
    let name = AppName::new(&app.name)?;
    let id: Option<DeploymentId> = words.deployment_id()?;
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
        None => store
            .list(&name, 50)
            .await?
            .into_iter()
            .find(|d| d.status == DeploymentStatus::Running)
            .ok_or_else(|| {
                CliError::other(format!(
                    "app {} has no running deployment (see `tapit show deploy`)",
                    app.name
                ))
            })?,
    };
    if record.status != DeploymentStatus::Running {
        return Err(CliError::other(format!(
            "deployment {} is {}, not running",
            record.id, record.status
        )));
    }
    let alive = deployer_alive(store, &name, &record).await?;
    if !alive {
        return Err(CliError::other(format!(
            "deployment {} is recorded as running but its deployer is gone; `tapit{} recover` \
             resumes or rolls it back",
            record.id,
            if ctx.global.app.is_some() {
                format!(" -a {}", app.name)
            } else {
                String::new()
            }
        )));
    }
    Ok((history, record))
}

/// `tapit promote deploy [--full] [id=…]`.
pub async fn promote(ctx: &Ctx, full: bool, words: &[String]) -> Result<(), CliError> {
    let words = Words::parse("promote deploy", &["id"], words)?;
    let (_, app) = ctx.app()?;
    let (history, record) = running(ctx, &app, &words).await?;
    let request = if full {
        Request::PromoteFull
    } else {
        Request::Promote
    };
    history.control.send(&record.id, &request).await?;
    done(ctx, &record, if full { "promote fully" } else { "promote" });
    Ok(())
}

/// `tapit abort deploy [id=…] [reason=…]`.
pub async fn abort(ctx: &Ctx, words: &[String]) -> Result<(), CliError> {
    let words = Words::parse("abort deploy", &["id", "reason"], words)?;
    let (_, app) = ctx.app()?;
    let (history, record) = running(ctx, &app, &words).await?;
    let reason = words.get("reason").map_or_else(
        || "aborted with `tapit abort deploy`".to_owned(),
        |r| format!("aborted: {r}"),
    );
    history
        .control
        .send(&record.id, &Request::Abort(reason))
        .await?;
    done(ctx, &record, "abort (every process rolls back)");
    Ok(())
}

fn done(ctx: &Ctx, record: &DeploymentRecord, what: &str) {
    if ctx.out.json() {
        ctx.out
            .json_value(&serde_json::json!({ "id": record.id.to_string(), "requested": what }));
    } else {
        ctx.out
            .result(&format!("asked deployment {} to {what}", record.id));
        ctx.out.note(&format!(
            "follow it with `tapit show deploy id={}`",
            record.id
        ));
    }
}

/// Whether the `tapit` running a deployment is alive: it holds (and renews) the lock of some
/// process it has not finished.
pub async fn deployer_alive(
    store: &DynDeploymentStore,
    app: &AppName,
    record: &DeploymentRecord,
) -> Result<bool, CliError> {
    for p in record.processes.iter().filter(|p| !p.status.is_final()) {
        let target = Target::new(app.clone(), p.process.clone());
        if store.lock_holder(&target).await? == Some(record.id) {
            return Ok(true);
        }
    }
    Ok(false)
}
