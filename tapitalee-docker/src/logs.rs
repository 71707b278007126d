//! A process's logs: what its instance containers (running or stopped, every restart)
//! wrote on stdout and stderr, read from the engine.

use std::time::{Duration, SystemTime};

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::StreamExt;
use tapitalee_core::{Result, Target};

use crate::backend::DockerBackend;
use crate::error::{is_not_found, map};
use crate::labels;

/// One line a container logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLogLine {
    /// When the engine received it.
    pub at: SystemTime,
    /// The container's name.
    pub container: String,
    /// The line, without its newline.
    pub message: String,
}

impl DockerBackend {
    /// The lines the process's instances logged since `since` (whole seconds, as the engine
    /// counts), oldest first. Containers already removed (retired fleets) are gone with their
    /// logs.
    ///
    /// # Errors
    /// An unknown app or process; the engine unreachable.
    pub async fn logs(&self, target: &Target, since: SystemTime) -> Result<Vec<ContainerLogLine>> {
        self.process(target)?;
        let instances = self
            .containers(&[
                (labels::APP, target.app.as_str()),
                (labels::PROCESS, target.process.as_str()),
                (labels::ROLE, labels::role::INSTANCE),
            ])
            .await?;
        let since_secs = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let mut lines = Vec::new();
        for c in instances {
            let opts = LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .timestamps(true)
                .since(i32::try_from(since_secs).unwrap_or(i32::MAX))
                .build();
            let mut stream = self.docker.logs(&c.id, Some(opts));
            while let Some(chunk) = stream.next().await {
                let bytes = match chunk {
                    Ok(
                        LogOutput::StdOut { message }
                        | LogOutput::StdErr { message }
                        | LogOutput::Console { message },
                    ) => message,
                    Ok(LogOutput::StdIn { .. }) => continue,
                    Err(e) if is_not_found(&e) => break, // removed meanwhile
                    Err(e) => return Err(map("container logs", e)),
                };
                for raw in String::from_utf8_lossy(&bytes).lines() {
                    if let Some(line) = parse(&c.name, raw)
                        && line.at >= since
                    {
                        lines.push(line);
                    }
                }
            }
        }
        lines.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.container.cmp(&b.container)));
        Ok(lines)
    }
}

impl DockerBackend {
    /// A container's last `n` non-empty log lines (stdout and stderr), oldest first; none
    /// when they cannot be read (it is gone, or the engine refused: best effort).
    pub(crate) async fn last_lines(&self, id: &str, n: usize) -> Vec<String> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut lines = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message },
                ) => lines.extend(
                    String::from_utf8_lossy(&message)
                        .lines()
                        .map(str::trim_end)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                ),
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => {
                    tracing::debug!(container = id, error = %e, "cannot read its last log lines");
                    break;
                }
            }
        }
        let skip = lines.len().saturating_sub(n);
        lines.split_off(skip)
    }
}

/// `2026-11-27T09:00:00.123456789Z message` (the engine's timestamps) → a line.
fn parse(container: &str, raw: &str) -> Option<ContainerLogLine> {
    let (stamp, message) = raw.split_once(' ').unwrap_or((raw, ""));
    Some(ContainerLogLine {
        at: humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z'))
            .or_else(|_| humantime::parse_rfc3339(stamp))
            .ok()?,
        container: container.to_owned(),
        message: message.trim_end().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn engine_timestamps() {
        let l = parse(
            "c1",
            "2026-11-27T09:00:00.123456789Z demo v1 listening on port 8080",
        )
        .expect("a line");
        assert_eq!(l.message, "demo v1 listening on port 8080");
        assert_eq!(
            humantime::format_rfc3339_seconds(l.at).to_string(),
            "2026-11-27T09:00:00Z"
        );
        assert!(parse("c1", "no timestamp here").is_none());
    }
}
