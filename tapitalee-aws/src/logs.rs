//! A process's logs from CloudWatch Logs (the `awslogs` configuration of its live task
//! definition), for `tapit show logs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tapitalee_core::{DeployContext, Deployer, DeploymentId, Error, Initiator, Result, Target};

use crate::backend::Shared;
use crate::ecs::EcsDeployer;

/// Which log lines to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// From (inclusive). Default: an hour ago.
    pub since: SystemTime,
    /// Until (exclusive). Default: none (now).
    pub until: Option<SystemTime>,
    /// A CloudWatch Logs filter pattern (e.g. `ERROR`, `"request id"`), if any.
    pub filter: Option<String>,
    /// At most this many lines (default 1000).
    pub limit: usize,
}

impl Default for LogQuery {
    fn default() -> Self {
        LogQuery {
            since: SystemTime::now() - Duration::from_secs(3600),
            until: None,
            filter: None,
            limit: 1000,
        }
    }
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was logged.
    pub at: SystemTime,
    /// The log stream (one per task and container).
    pub stream: String,
    /// The line.
    pub message: String,
}

/// Reads processes' logs. Get one from [`AwsBackend::logs`](crate::AwsBackend::logs).
#[derive(Clone)]
pub struct CloudWatchLogs {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CloudWatchLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchLogs").finish_non_exhaustive()
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl CloudWatchLogs {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        CloudWatchLogs { shared }
    }

    /// The process's log lines in the query's window, oldest first.
    pub async fn fetch(&self, target: &Target, query: &LogQuery) -> Result<Vec<LogLine>> {
        if query.until.is_some_and(|u| u <= query.since) {
            return Err(Error::invalid(
                "log window",
                format!("{:?}..{:?}", query.since, query.until),
                "the end must come after the start",
            ));
        }
        let deployer = EcsDeployer::new(self.shared.clone());
        let p = deployer.process(target)?;
        // A read outside any deployment: its calls are counted under an id of their own.
        let ctx = DeployContext::new(DeploymentId::new(), Initiator::unknown(), target.clone());
        let release = deployer.current(&ctx).await?;
        let revision = release.revision().ok_or_else(|| {
            Error::platform(
                "find the process's logs",
                format!("{target} runs nothing yet, so it has no logs; deploy it first"),
            )
        })?;
        let def = self
            .shared
            .task_def(&target.app, &revision.id, None)
            .await?;
        let (group, prefix, container) = def.awslogs(p.container.as_deref())?;
        // awslogs names streams prefix/container/task-id.
        let stream_prefix = prefix.map(|pre| format!("{pre}/{container}/"));
        let logs = &self.shared.clients(&target.app).logs;
        let mut lines = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .shared
                .layer
                .call("FilterLogEvents", None, || {
                    logs.filter_log_events()
                        .log_group_name(&group)
                        .set_log_stream_name_prefix(stream_prefix.clone())
                        .start_time(millis(query.since))
                        .set_end_time(query.until.map(millis))
                        .set_filter_pattern(query.filter.clone())
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|e| {
                    e.not_found_as(
                        tapitalee_core::Resource::Process,
                        &group,
                        format!("log group {group:?} does not exist (has the process ever run?)"),
                    )
                })?;
            for e in out.events() {
                lines.push(LogLine {
                    at: UNIX_EPOCH
                        + Duration::from_millis(
                            u64::try_from(e.timestamp().unwrap_or(0)).unwrap_or(0),
                        ),
                    stream: e.log_stream_name().unwrap_or_default().to_owned(),
                    message: e.message().unwrap_or_default().to_owned(),
                });
            }
            if lines.len() >= query.limit {
                lines.truncate(query.limit);
                break;
            }
            match out.next_token() {
                Some(t) if !t.is_empty() && Some(t) != token.as_deref() => {
                    token = Some(t.to_owned())
                }
                _ => break,
            }
        }
        lines.sort_by_key(|l| l.at);
        Ok(lines)
    }
}
