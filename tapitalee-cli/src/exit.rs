//! The one place where outcomes and errors become exit codes (documented in `tapit --help`).

use tapitalee::{DeploymentStatus, Error, Resource};

/// Exit codes.
pub mod code {
    /// Succeeded (or started, without `--wait`).
    pub const OK: i32 = 0;
    /// An error before or outside the deployment (platform, credentials, history).
    pub const ERROR: i32 = 1;
    /// Usage or configuration error; nothing was changed.
    pub const USAGE: i32 = 2;
    /// The deployment failed: every process rolled back.
    pub const FAILED: i32 = 3;
    /// Partial: some processes run the new version, others their previous one.
    pub const PARTIAL: i32 = 4;
    /// Locked by another deployment.
    pub const LOCKED: i32 = 5;
    /// Interrupted (Ctrl-C).
    pub const INTERRUPTED: i32 = 130;
}

/// The exit-code table, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    succeeded (or started, without --wait)
  1    error before or outside the deployment (platform, credentials, history)
  2    usage or configuration error; nothing was changed
  3    deployment failed: every process rolled back
  4    partial: mixed versions, some processes rolled back (see the printed commands)
  5    locked by another deployment (use --lock-wait to queue behind it)
  130  interrupted (Ctrl-C)";

/// Everything `tapit` can fail with.
#[derive(Debug)]
pub enum CliError {
    /// A usage error (bad word, flag, value).
    Usage(String),
    /// The configuration file is missing or invalid: every problem found.
    Config(Vec<String>),
    /// The library refused or failed.
    Lib(Error),
    /// Anything else outside a deployment (I/O, a child process), with context.
    Other(String),
    /// A deployment ended (or was followed to its end) with this status. Not an error when
    /// it succeeded; the message was already rendered.
    Outcome(DeploymentStatus),
    /// Ctrl-C.
    Interrupted,
    /// An error another `tapit` process (the background deployer) reported, with its code.
    Relayed {
        /// Its exit code.
        code: i32,
        /// Its message.
        message: String,
    },
}

impl CliError {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    /// An error outside a deployment.
    pub fn other(message: impl Into<String>) -> Self {
        CliError::Other(message.into())
    }

    /// The exit code.
    pub fn code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => code::USAGE,
            CliError::Lib(e) => lib_code(e),
            CliError::Other(_) => code::ERROR,
            CliError::Outcome(status) => outcome_code(*status),
            CliError::Interrupted => code::INTERRUPTED,
            CliError::Relayed { code, .. } => *code,
        }
    }
}

/// The exit code of a deployment that ended with `status`.
pub fn outcome_code(status: DeploymentStatus) -> i32 {
    match status {
        DeploymentStatus::Succeeded | DeploymentStatus::Running => code::OK,
        DeploymentStatus::Failed => code::FAILED,
        DeploymentStatus::Partial => code::PARTIAL,
        DeploymentStatus::Interrupted => code::INTERRUPTED,
    }
}

fn lib_code(e: &Error) -> i32 {
    match e {
        Error::InvalidInput { .. } => code::USAGE,
        Error::NotFound {
            resource: Resource::App | Resource::Process | Resource::Deployment,
            ..
        } => code::USAGE,
        Error::Locked { .. } => code::LOCKED,
        _ => code::ERROR,
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Other(m) | CliError::Relayed { message: m, .. } => {
                f.write_str(m)
            }
            CliError::Config(problems) => {
                write!(f, "invalid configuration:")?;
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
            CliError::Lib(e) => {
                write!(f, "{e}")?;
                // The causes, where they add something ("the request could not be sent"
                // says nothing without the "no credentials" under it).
                let mut shown = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    let text = cause.to_string();
                    if !shown.contains(&text) {
                        write!(f, "\n  caused by: {text}")?;
                        shown.push_str(&text);
                    }
                    source = cause.source();
                }
                // Library errors do not know the command line; the hints that name a command
                // are added here.
                match e {
                    Error::Locked { .. } => write!(
                        f,
                        "\nhint: `tapit show deploy` follows it; `tapit abort deploy` stops it; \
                         --lock-wait 10m queues behind it"
                    ),
                    Error::NotFound {
                        resource: Resource::Deployment,
                        ..
                    } => write!(
                        f,
                        "\nhint: `tapit list deploys` lists the app's deployments"
                    ),
                    Error::Store { .. }
                        if shown.contains("DynamoDB table") && shown.contains("not found") =>
                    {
                        write!(f, "\nhint: `tapit init history` creates it")
                    }
                    Error::Transient { .. } | Error::Throttled { .. } => write!(
                        f,
                        "\nhint: the platform could not be reached or kept failing; check the \
                         credentials (--profile, AWS_PROFILE, AWS_ACCESS_KEY_ID), the region \
                         (--region, AWS_REGION) and the endpoint (--endpoint-url)"
                    ),
                    _ => Ok(()),
                }
            }
            CliError::Outcome(status) => write!(f, "deployment {status}"),
            CliError::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Lib(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(CliError::usage("x").code(), 2);
        assert_eq!(CliError::Config(vec![]).code(), 2);
        assert_eq!(CliError::other("x").code(), 1);
        assert_eq!(CliError::Interrupted.code(), 130);
        assert_eq!(CliError::Outcome(DeploymentStatus::Succeeded).code(), 0);
        assert_eq!(CliError::Outcome(DeploymentStatus::Failed).code(), 3);
        assert_eq!(CliError::Outcome(DeploymentStatus::Partial).code(), 4);
        let locked = Error::Locked {
            app: "a".into(),
            process: "p".into(),
            holder: tapitalee::DeploymentId::new(),
            initiator: Some("alice".into()),
            started_at: Some(std::time::SystemTime::UNIX_EPOCH),
        };
        assert!(
            locked
                .to_string()
                .contains("started by alice at 1970-01-01T00:00:00Z"),
            "{locked}"
        );
        assert_eq!(CliError::from(locked).code(), 5);
        assert_eq!(CliError::from(Error::platform("x", "y")).code(), 1);
        assert_eq!(
            CliError::from(Error::invalid("docker tag", "a b", "no spaces")).code(),
            2
        );
    }
}
