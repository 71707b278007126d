//! The crate's private error type, and its mapping into core [`Error`] kinds — in ONE place.
//!
//! Every SDK failure becomes an [`AwsError`] right where the call returns; the retry layer
//! asks it [`is_retryable`](AwsError::is_retryable); everything leaving the crate goes through
//! `From<AwsError> for Error`. Messages carry the operation, the AWS error code and the
//! service's message: never a request, a credential or a token.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tapitalee_core::{Error, Resource};

/// What kind of failure, as far as retrying and the caller are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The thing named does not exist.
    NotFound,
    /// AWS asked us to slow down.
    Throttled,
    /// 5xx, timeout, connection failure.
    Transient,
    /// A request parameter was refused.
    InvalidInput,
    /// Anything else: access denied, a conflict, an unexpected answer.
    Platform,
}

/// What a not-found error is about, supplied by the call site that knows.
#[derive(Debug, Clone)]
pub(crate) struct NotFoundContext {
    pub(crate) resource: Resource,
    pub(crate) name: String,
    pub(crate) hint: String,
}

/// A failed AWS call, classified.
#[derive(Debug, Clone)]
pub(crate) struct AwsError {
    pub(crate) operation: &'static str,
    pub(crate) kind: Kind,
    pub(crate) code: Option<String>,
    pub(crate) message: String,
    pub(crate) status: Option<u16>,
    pub(crate) not_found: Option<NotFoundContext>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.status) {
            (Some(code), _) => write!(f, "{code}: {}", self.message),
            (None, Some(status)) => write!(f, "HTTP {status}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AwsError {}

const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
];

const TRANSIENT_CODES: &[&str] = &[
    "ServerException",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    // DynamoDB: another transaction touched one of the items; the same request can succeed.
    "TransactionConflictException",
    "TransactionInProgressException",
    // A transaction cancelled for a reason other than a failed condition (those are answered
    // before this classification): a conflict with another transaction, throttling.
    "TransactionCanceledException",
];

const NOT_FOUND_CODES: &[&str] = &[
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "ServiceNotActiveException",
    "TaskSetNotFoundException",
    "RepositoryNotFoundException",
    "ImageNotFoundException",
    "ListenerNotFound",
    "RuleNotFound",
    "TargetGroupNotFound",
    "LoadBalancerNotFound",
    "ResourceNotFoundException",
    "ResourceNotFound",
];

const INVALID_CODES: &[&str] = &[
    "InvalidParameterException",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "ValidationError",
    "ValidationException",
    "InvalidConfigurationRequest",
];

impl AwsError {
    /// Classifies an SDK error from `operation`.
    pub(crate) fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let kind = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Kind::Transient,
            SdkError::ConstructionFailure(_) => Kind::InvalidInput,
            _ => classify(code.as_deref(), status),
        };
        let message = match &err {
            SdkError::ServiceError(_) => err.message().unwrap_or("no message").to_owned(),
            SdkError::TimeoutError(_) => "the request timed out".to_owned(),
            SdkError::DispatchFailure(d) => {
                if d.is_timeout() {
                    "the request timed out".to_owned()
                } else if d.is_io() {
                    "connection failed (is the endpoint reachable?)".to_owned()
                } else {
                    "the request could not be sent".to_owned()
                }
            }
            SdkError::ResponseError(_) => "the response could not be read".to_owned(),
            SdkError::ConstructionFailure(_) => "the request could not be built".to_owned(),
            _ => "unknown SDK failure".to_owned(),
        };
        AwsError {
            operation,
            kind,
            code,
            message,
            status,
            not_found: None,
        }
    }

    /// An answer that does not hold what we asked about (e.g. a described service missing).
    pub(crate) fn missing(
        operation: &'static str,
        resource: Resource,
        name: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        let name = name.into();
        AwsError {
            operation,
            kind: Kind::NotFound,
            code: None,
            message: format!("{resource} {name} is missing from the answer"),
            status: None,
            not_found: Some(NotFoundContext {
                resource,
                name,
                hint: hint.into(),
            }),
        }
    }

    /// Names what a not-found error is about.
    #[must_use]
    pub(crate) fn not_found_as(
        mut self,
        resource: Resource,
        name: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        if self.kind == Kind::NotFound {
            self.not_found = Some(NotFoundContext {
                resource,
                name: name.into(),
                hint: hint.into(),
            });
        }
        self
    }

    /// Whether the same call may succeed later.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self.kind, Kind::Throttled | Kind::Transient)
    }
}

fn classify(code: Option<&str>, status: Option<u16>) -> Kind {
    match code {
        Some(c) if THROTTLING_CODES.contains(&c) => return Kind::Throttled,
        Some(c) if TRANSIENT_CODES.contains(&c) => return Kind::Transient,
        Some(c) if NOT_FOUND_CODES.contains(&c) => return Kind::NotFound,
        Some(c) if INVALID_CODES.contains(&c) => return Kind::InvalidInput,
        _ => {}
    }
    match status {
        Some(429) => Kind::Throttled,
        Some(500..=599) => Kind::Transient,
        Some(404) => Kind::NotFound,
        _ => Kind::Platform,
    }
}

impl From<AwsError> for Error {
    fn from(e: AwsError) -> Self {
        let operation = e.operation.to_owned();
        match e.kind {
            Kind::NotFound => match e.not_found.clone() {
                Some(ctx) => {
                    let hint = if ctx.hint.is_empty() {
                        e.to_string()
                    } else {
                        format!("{}; {}", ctx.hint, e)
                    };
                    Error::not_found(ctx.resource, ctx.name, hint)
                }
                None => Error::Platform {
                    message: format!("{e} (check the names in the tapitalee-aws configuration)"),
                    operation,
                    source: Some(Box::new(e)),
                },
            },
            Kind::Throttled => Error::Throttled {
                operation,
                source: Box::new(e),
            },
            Kind::Transient => Error::Transient {
                operation,
                source: Box::new(e),
            },
            Kind::InvalidInput => Error::InvalidInput {
                what: "AWS request",
                value: operation,
                reason: format!(
                    "{e}; check the process configuration (cluster, service, listener, target \
                     groups, network) against the AWS account"
                ),
            },
            Kind::Platform => {
                let message = if matches!(
                    e.code.as_deref(),
                    Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
                ) {
                    format!("{e} (grant the IAM permission for {})", e.operation)
                } else {
                    e.to_string()
                };
                Error::Platform {
                    operation,
                    message,
                    source: Some(Box::new(e)),
                }
            }
        }
    }
}

impl AwsError {
    /// The core error of a failed call of the DynamoDB store on `table`: throttling and
    /// transient failures keep their kinds (so retry wrappers see them), a missing table says
    /// how to create it, everything else is a store error naming the operation.
    pub(crate) fn into_store(self, table: &str) -> Error {
        match self.kind {
            Kind::Throttled | Kind::Transient => self.into(),
            Kind::NotFound => Error::store(
                format!(
                    "DynamoDB table {table:?} not found (in this region and account); create it \
                     first with its key schema (DynamoStore::create_table)"
                ),
                self,
            ),
            _ if matches!(
                self.code.as_deref(),
                Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
            ) =>
            {
                Error::store(
                    format!(
                        "DynamoDB {} on table {table:?} was refused: {self}; grant \
                         dynamodb:{} on the table (see the README's IAM policy)",
                        self.operation, self.operation
                    ),
                    self,
                )
            }
            _ => Error::store(
                format!(
                    "DynamoDB {} on table {table:?} failed: {self}",
                    self.operation
                ),
                self,
            ),
        }
    }
}

/// Shorthand for an answer AWS should not have given (a field we rely on is empty).
pub(crate) fn unexpected(operation: &'static str, what: impl Into<String>) -> Error {
    Error::platform(operation, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_classify() {
        assert_eq!(
            classify(Some("ThrottlingException"), Some(400)),
            Kind::Throttled
        );
        assert_eq!(
            classify(Some("ServerException"), Some(500)),
            Kind::Transient
        );
        assert_eq!(classify(None, Some(503)), Kind::Transient);
        assert_eq!(classify(None, Some(429)), Kind::Throttled);
        assert_eq!(
            classify(Some("ImageNotFoundException"), Some(400)),
            Kind::NotFound
        );
        assert_eq!(
            classify(Some("InvalidParameterException"), Some(400)),
            Kind::InvalidInput
        );
        assert_eq!(classify(Some("ClientException"), Some(400)), Kind::Platform);
    }

    #[test]
    fn mapping_keeps_kind_and_context() {
        let e = AwsError {
            operation: "DescribeImages",
            kind: Kind::NotFound,
            code: Some("ImageNotFoundException".into()),
            message: "The image with imageId {imageTag:'v9'} does not exist".into(),
            status: Some(400),
            not_found: None,
        }
        .not_found_as(Resource::Image, "myapp:v9", "push it first");
        let core: Error = e.into();
        assert!(matches!(
            &core,
            Error::NotFound {
                resource: Resource::Image,
                name,
                ..
            } if name == "myapp:v9"
        ));
        assert!(core.to_string().contains("push it first"), "{core}");

        let throttled: Error = AwsError {
            operation: "DescribeServices",
            kind: Kind::Throttled,
            code: Some("ThrottlingException".into()),
            message: "Rate exceeded".into(),
            status: Some(400),
            not_found: None,
        }
        .into();
        assert!(throttled.is_retryable());
        assert!(throttled.to_string().contains("DescribeServices"));
    }
}
