//! `tapit show logs [process=…] [since=…] [-f]`: a process's CloudWatch logs (AWS).

use std::time::{Duration, SystemTime};

use tapitalee::aws::LogQuery;
use tapitalee::{ProcessName, Target};

use super::Ctx;
use crate::cli::LogsArgs;
use crate::config::Platform;
use crate::exit::CliError;
use crate::render::time;
use crate::words::Words;

/// `tapit show logs`.
pub async fn show(ctx: &Ctx, args: &LogsArgs) -> Result<(), CliError> {
    let words = Words::parse("show logs", &["process", "since"], &args.words)?;
    let since = words
        .parsed("since", |s| {
            humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 10m, 1h)"))
        })?
        .unwrap_or(Duration::from_secs(3600));
    let (_, app) = ctx.app()?;
    let process = app.resolve_process(words.get("process").unwrap_or("default"))?;
    if app.platform != Platform::Aws {
        return Err(CliError::usage(format!(
            "app {} runs on the simulated platform, which keeps no logs; `tapit show logs` \
             reads CloudWatch Logs of an aws app",
            app.name
        )));
    }
    let backend = ctx.backend(&app).await?;
    let logs = backend
        .aws
        .as_ref()
        .ok_or_else(|| CliError::other("no AWS backend"))?
        .logs();
    let target = Target::new(backend.app.clone(), ProcessName::new(&process)?);
    let mut from = SystemTime::now() - since;
    let mut seen = std::collections::HashSet::new();
    loop {
        let query = LogQuery {
            since: from,
            ..LogQuery::default()
        };
        let lines = logs.fetch(&target, &query).await?;
        for l in &lines {
            // Lines at the window's edge come again on the next poll.
            if !seen.insert((l.at, l.stream.clone(), l.message.clone())) {
                continue;
            }
            if ctx.out.json() {
                ctx.out.json_value(&serde_json::json!({
                    "at": time(l.at), "stream": l.stream, "message": l.message,
                }));
            } else {
                ctx.out.result(&format!("{} {}", time(l.at), l.message));
            }
        }
        if !args.follow {
            return Ok(());
        }
        if let Some(last) = lines.last() {
            from = last.at;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
