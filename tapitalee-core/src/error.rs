//! The one error type of Tapitalee.
//!
//! Every backend maps its own failures into these kinds in one place, so a caller can match on
//! what happened (not found, locked, throttled, …) whatever platform produced it.

use std::time::{Duration, SystemTime};

use crate::domain::DeploymentId;

/// A boxed error source that can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with Tapitalee's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What was not found, for [`Error::NotFound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// An application.
    App,
    /// A process of an application.
    Process,
    /// A Docker image (tag or digest) in the app's registry.
    Image,
    /// A deployment in the history.
    Deployment,
    /// A fleet (ECS: task set) of a process.
    Fleet,
    /// A revision (ECS: task definition).
    Revision,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::App => "app",
            Resource::Process => "process",
            Resource::Image => "image",
            Resource::Deployment => "deployment",
            Resource::Fleet => "fleet",
            Resource::Revision => "revision",
        })
    }
}

/// Everything that can go wrong in Tapitalee.
///
/// Messages name the bad value and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given by the caller is not valid. Nothing was changed.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        /// What kind of value (e.g. "docker tag").
        what: &'static str,
        /// The offending value, as given (already escaped by `Debug` formatting).
        value: String,
        /// Why it is refused and how to fix it.
        reason: String,
    },

    /// Something the request names does not exist. Nothing was changed.
    #[error("{resource} {name:?} not found{}", hint_suffix(.hint))]
    NotFound {
        /// What kind of thing.
        resource: Resource,
        /// Its name as given.
        name: String,
        /// What exists instead, or how to fix it (may be empty).
        hint: String,
    },

    /// The process is being deployed by another deployment.
    #[error(
        "process {process:?} of app {app:?} is locked by deployment {holder}{}; wait for it \
         to finish, or abort it",
        holder_details(.initiator.as_deref(), .started_at.as_ref())
    )]
    Locked {
        /// The app.
        app: String,
        /// The locked process.
        process: String,
        /// The deployment holding the lock.
        holder: DeploymentId,
        /// Who started the holding deployment, read from its record (`None` if the record
        /// could not be read: the holder had not written it yet, or the store failed).
        initiator: Option<String>,
        /// When the holding deployment started, by its record's creation time (`None` as for
        /// `initiator`).
        started_at: Option<SystemTime>,
    },

    /// The platform asked us to slow down. Retrying later can help.
    #[error("throttled by the platform during {operation}: {source}")]
    Throttled {
        /// What we were doing.
        operation: String,
        /// The platform's error.
        #[source]
        source: BoxError,
    },

    /// A passing failure (5xx, timeout, connection reset). Retrying can help.
    #[error("transient platform failure during {operation}: {source}")]
    Transient {
        /// What we were doing.
        operation: String,
        /// The platform's error.
        #[source]
        source: BoxError,
    },

    /// A fleet failed its health gate (crash loop, failing checks, failed analysis).
    #[error("health check failed for process {process:?}: {reason}")]
    HealthFailed {
        /// The process.
        process: String,
        /// What failed, in words (stop reasons, exit codes, failing probes).
        reason: String,
    },

    /// A fleet did not become healthy before the progress deadline.
    #[error(
        "process {process:?} made no progress within {}: {detail}",
        humantime::format_duration(*.after)
    )]
    DeadlineExceeded {
        /// The process.
        process: String,
        /// The deadline that passed.
        after: Duration,
        /// Where it stood when the deadline passed.
        detail: String,
    },

    /// The deployment was aborted by a caller.
    #[error("aborted: {reason}")]
    Aborted {
        /// Who or what aborted it.
        reason: String,
    },

    /// The platform refused or failed an operation in a way retrying will not fix.
    #[error("platform error during {operation}: {message}")]
    Platform {
        /// What we were doing.
        operation: String,
        /// What the platform said.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// The deployment history could not be read or written.
    #[error("deployment store error: {message}")]
    Store {
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// The most characters of a bad value an error message quotes.
pub const MAX_QUOTED_CHARS: usize = 80;

/// `value`, cut to [`MAX_QUOTED_CHARS`] characters with a note of what was left out, so a
/// 10,000-character input does not make a 10,000-character message.
fn quote(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        None => value.to_owned(),
        Some((cut, _)) => {
            let rest = value[cut..].chars().count();
            format!("{}… ({rest} more characters)", &value[..cut])
        }
    }
}

/// `", started by alice at 2026-11-27T08:40:01Z"` for a lock holder, as far as known.
fn holder_details(initiator: Option<&str>, started_at: Option<&SystemTime>) -> String {
    match (initiator, started_at) {
        (Some(who), Some(at)) => format!(
            ", started by {who} at {}",
            humantime::format_rfc3339_seconds(*at)
        ),
        (Some(who), None) => format!(", started by {who}"),
        (None, Some(at)) => format!(", started at {}", humantime::format_rfc3339_seconds(*at)),
        (None, None) => String::new(),
    }
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

impl Error {
    /// Whether this says a fleet does not exist (retired, or never launched).
    pub(crate) fn is_fleet_not_found(&self) -> bool {
        matches!(
            self,
            Error::NotFound {
                resource: Resource::Fleet,
                ..
            }
        )
    }

    /// Whether retrying the same operation later can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Throttled { .. } | Error::Transient { .. })
    }

    /// Shorthand for [`Error::InvalidInput`]. A long value is quoted cut to
    /// [`MAX_QUOTED_CHARS`] characters, with how much was left out.
    pub fn invalid(what: &'static str, value: impl AsRef<str>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what,
            value: quote(value.as_ref()),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`]. A long name is cut as in [`invalid`](Self::invalid).
    pub fn not_found(resource: Resource, name: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::NotFound {
            resource,
            name: quote(&name.into()),
            hint: hint.into(),
        }
    }

    /// Shorthand for [`Error::Platform`] without a source.
    pub fn platform(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Platform {
            operation: operation.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for [`Error::Store`].
    pub fn store(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Store {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_value_and_fix() {
        let e = Error::not_found(
            Resource::Process,
            "wrker",
            "app myapp has: default, worker, scheduler",
        );
        assert_eq!(
            e.to_string(),
            "process \"wrker\" not found (app myapp has: default, worker, scheduler)"
        );
        let e = Error::invalid("docker tag", "v1 2", "must not contain spaces");
        assert_eq!(
            e.to_string(),
            "invalid docker tag \"v1 2\": must not contain spaces"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn long_values_are_quoted_cut() {
        let e = Error::invalid("initiator", "x".repeat(10_000), "too long");
        let msg = e.to_string();
        assert!(msg.len() < 200, "{} characters: {msg}", msg.len());
        assert!(msg.contains("(9920 more characters)"), "{msg}");
        let e = Error::not_found(Resource::Process, "é".repeat(81), "");
        assert!(e.to_string().contains("(1 more characters)"));
        assert_eq!(quote("short"), "short");
    }

    #[test]
    fn throttled_is_retryable() {
        let e = Error::Throttled {
            operation: "DescribeServices".into(),
            source: "Rate exceeded".into(),
        };
        assert!(e.is_retryable());
    }
}
