//! `tapit show logs [process=…] [since=…] [-f]`: a process's CloudWatch logs (AWS), or its
//! containers' logs (Docker).

use std::time::{Duration, SystemTime};

use tapitalee::aws::LogQuery;
use tapitalee::{ProcessName, Target};

use super::Ctx;
use crate::cli::LogsArgs;
use crate::config::Platform;
use crate::exit::CliError;
use crate::render::time;
use crate::words::Words;

/// One line of a process's logs, whichever platform kept it.
struct Line {
    at: SystemTime,
    /// The log stream (AWS) or container (Docker).
    stream: String,
    message: String,
}

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
    if app.platform == Platform::Simulated {
        return Err(CliError::usage(format!(
            "app {} runs on the simulated platform, which keeps no logs; `tapit show logs` \
             reads CloudWatch Logs of an aws app",
            app.name
        )));
    }
    let backend = ctx.backend(&app).await?;
    let target = Target::new(backend.app.clone(), ProcessName::new(&process)?);
    let mut from = SystemTime::now() - since;
    let mut seen = std::collections::HashSet::new();
    loop {
        let query = LogQuery {
            since: from,
            ..LogQuery::default()
        };
        let lines: Vec<Line> = match (&backend.aws, &backend.docker) {
            (Some(aws), _) => aws
                .logs()
                .fetch(&target, &query)
                .await?
                .into_iter()
                .map(|l| Line {
                    at: l.at,
                    stream: l.stream,
                    message: l.message,
                })
                .collect(),
            (None, Some(docker)) => docker
                .logs(&target, from)
                .await?
                .into_iter()
                .map(|l| Line {
                    at: l.at,
                    stream: l.container,
                    message: l.message,
                })
                .collect(),
            (None, None) => return Err(CliError::other("this platform keeps no logs")),
        };
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
