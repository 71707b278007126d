//! The one place engine errors become core errors.

use tapitalee_core::Error;

/// Whether the engine said "no such thing".
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether the engine said "already exists" / "already in that state".
pub(crate) fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304 | 409,
            ..
        }
    )
}

/// Maps an engine error: server errors and connection failures are transient (retrying can
/// help), refusals are platform errors naming the operation.
pub(crate) fn map(operation: &str, e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code,
            message,
        } if status_code >= 500 => Error::Transient {
            operation: operation.to_owned(),
            source: format!("Docker engine answered {status_code}: {message}").into(),
        },
        B::DockerResponseServerError {
            status_code,
            message,
        } => Error::platform(
            operation,
            format!("the Docker engine refused ({status_code}): {message}"),
        ),
        B::HyperResponseError { .. }
        | B::IOError { .. }
        | B::RequestTimeoutError
        | B::HyperLegacyError { .. } => Error::Transient {
            operation: operation.to_owned(),
            source: Box::new(e),
        },
        other => Error::Platform {
            operation: operation.to_owned(),
            message: other.to_string(),
            source: Some(Box::new(other)),
        },
    }
}

/// A failure talking to the app's proxy (it may be restarting): transient.
pub(crate) fn proxy(operation: &str, message: impl Into<String>) -> Error {
    Error::Transient {
        operation: operation.to_owned(),
        source: message.into().into(),
    }
}
