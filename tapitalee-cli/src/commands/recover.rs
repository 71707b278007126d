//! `tapit recover`: deployments whose deployer died (recorded as running, holding no live
//! lock) are marked interrupted; `action=rollback` restores their processes, `action=resume`
//! restores and deploys them again.

use tapitalee::{AppName, DeploymentId, DeploymentStatus};

use super::Ctx;
use super::deploy;
use crate::cli::RecoverArgs;
use crate::exit::CliError;
use crate::words::Words;

/// `tapit recover [action=resume|rollback] [id=…] [-w]`.
pub async fn run(ctx: &Ctx, args: &RecoverArgs) -> Result<(), CliError> {
    let words = Words::parse("recover", &["action", "id"], &args.words)?;
    let action = words.choice("action", &["resume", "rollback"])?;
    let id: Option<DeploymentId> = words.deployment_id()?;
    let (config, app) = ctx.app()?;
    let app_flag = ctx.app_flag(&config, &app);
    let backend = ctx.backend(&app).await?;
    let name = AppName::new(&app.name)?;
    let found = backend.engine.recover(&name).await?;
    for f in &found {
        ctx.out.note(&format!(
            "deployment {f} was interrupted (its deployer stopped mid-way)"
        ));
    }
    let interrupted: Vec<DeploymentId> = backend
        .engine
        .store()
        .list(&name, 100)
        .await?
        .into_iter()
        .filter(|d| d.status == DeploymentStatus::Interrupted)
        .map(|d| d.id)
        .collect();
    let target = match id {
        Some(id) => {
            if !interrupted.contains(&id) {
                return Err(CliError::usage(format!(
                    "deployment {id} is not interrupted (interrupted: {})",
                    list(&interrupted)
                )));
            }
            id
        }
        None => match interrupted.first() {
            Some(id) => *id,
            None => {
                ctx.out.result(&format!(
                    "nothing to recover: app {} has no interrupted deployment",
                    app.name
                ));
                return Ok(());
            }
        },
    };
    let Some(action) = action else {
        ctx.out.result(&format!(
            "interrupted: {}\nchoose for {target}:\n  tapit{app_flag} recover action=rollback id={target}   # restore what ran before\n  tapit{app_flag} recover action=resume id={target} --wait   # restore, then deploy it again",
            list(&interrupted)
        ));
        return Ok(());
    };
    if action == "rollback" {
        let record = backend.engine.rollback(&target).await?;
        deploy::report(&ctx.out, &record, &app_flag);
        return deploy::outcome(&record);
    }
    let handle = backend.engine.resume(&target).await?;
    ctx.out
        .note(&format!("deployment {} resumes {target}", handle.id()));
    if !args.wait {
        ctx.out
            .note("following it here (resumed deployments always run in the foreground)");
    }
    let (record, interrupted) = deploy::follow(&backend, handle, Some(&ctx.out)).await?;
    deploy::report(&ctx.out, &record, &app_flag);
    if interrupted {
        return Err(CliError::Interrupted);
    }
    deploy::outcome(&record)
}

fn list(ids: &[DeploymentId]) -> String {
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
