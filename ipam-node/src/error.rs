//! [`ApiError`]: every way an API call can fail, and the ONE place that maps each of them to
//! an HTTP status, a contract `code` and the `{"error": {...}}` body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipam_client::types::{ErrorBody, ErrorDetail};
use ipam_core::{BatchError, ErrorCode, InputError, OpError};
use ipam_raft::IpamError;

/// Seconds a client is told to wait before retrying a 503.
const RETRY_AFTER_SECS: u64 = 1;

/// An API call's failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Refused or failed by the raft layer or the domain behind it.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// Refused by the domain's stateless checks before anything was proposed.
    #[error(transparent)]
    Op(#[from] OpError),
    /// An op of a batch was refused before anything was proposed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Malformed input found by the domain's parsers.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Malformed request outside the domain: JSON syntax, field types, `Content-Type`, query
    /// parameters, path segments.
    #[error("{0}")]
    InvalidArgument(String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// No route matches the path.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
    },
    /// The whole request exceeded the node's request timeout. A write may still apply.
    #[error("the request did not finish within {waited_ms} ms; a write may still apply")]
    RequestTimeout {
        /// The timeout.
        waited_ms: u64,
    },
}

/// The pieces of an error response.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorParts {
    /// HTTP status.
    pub status: StatusCode,
    /// The contract's snake_case code.
    pub code: &'static str,
    /// Batch op index.
    pub index: Option<usize>,
    /// The write may still apply (`deadline_exceeded`).
    pub may_have_committed: bool,
}

impl ErrorParts {
    fn new(status: StatusCode, code: &'static str) -> ErrorParts {
        ErrorParts {
            status,
            code,
            index: None,
            may_have_committed: false,
        }
    }
}

fn domain(code: ErrorCode) -> ErrorParts {
    let status = match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::PoolNotFound | ErrorCode::AllocationNotFound => StatusCode::NOT_FOUND,
        ErrorCode::PoolExists
        | ErrorCode::PoolOverlap
        | ErrorCode::AddressInUse
        | ErrorCode::OwnerConflict
        | ErrorCode::PoolNotEmpty
        | ErrorCode::GenerationMismatch
        | ErrorCode::PoolExhausted
        | ErrorCode::AddressCoolingDown => StatusCode::CONFLICT,
        // Codes the core adds later are state conflicts until mapped otherwise here.
        _ => StatusCode::CONFLICT,
    };
    ErrorParts::new(status, code.as_str())
}

fn batch(e: &BatchError) -> ErrorParts {
    ErrorParts {
        index: Some(e.index),
        ..domain(e.error.code())
    }
}

const INTERNAL: ErrorParts = ErrorParts {
    status: StatusCode::INTERNAL_SERVER_ERROR,
    code: "internal",
    index: None,
    may_have_committed: false,
};

impl ApiError {
    /// Status, code and extra fields of this error.
    pub fn parts(&self) -> ErrorParts {
        use StatusCode as S;
        match self {
            ApiError::Ipam(e) => match e {
                IpamError::Op(e) => domain(e.code()),
                IpamError::Batch(e) => batch(e),
                IpamError::Query(e) => e.code().map_or(INTERNAL, domain),
                IpamError::NoLeader => ErrorParts::new(S::SERVICE_UNAVAILABLE, "no_leader"),
                IpamError::Overloaded => ErrorParts::new(S::SERVICE_UNAVAILABLE, "overloaded"),
                IpamError::DeadlineExceeded { .. } => ErrorParts {
                    may_have_committed: true,
                    ..ErrorParts::new(S::SERVICE_UNAVAILABLE, "deadline_exceeded")
                },
                IpamError::ShuttingDown => ErrorParts::new(S::SERVICE_UNAVAILABLE, "shutting_down"),
                IpamError::AlreadyInitialized => {
                    ErrorParts::new(S::CONFLICT, "already_initialized")
                }
                IpamError::Membership(_) => {
                    ErrorParts::new(S::CONFLICT, "membership_change_refused")
                }
                IpamError::UnknownNode(_) => ErrorParts::new(S::NOT_FOUND, "node_not_found"),
                IpamError::Internal(_) => INTERNAL,
                _ => INTERNAL,
            },
            ApiError::Op(e) => domain(e.code()),
            ApiError::Batch(e) => batch(e),
            ApiError::Input(e) => domain(e.code()),
            ApiError::InvalidArgument(_) => ErrorParts::new(S::BAD_REQUEST, "invalid_argument"),
            ApiError::Unauthorized => ErrorParts::new(S::UNAUTHORIZED, "unauthorized"),
            ApiError::PayloadTooLarge(_) => {
                ErrorParts::new(S::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::NotFound(_) => ErrorParts::new(S::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed { .. } => {
                ErrorParts::new(S::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::RequestTimeout { .. } => ErrorParts {
                may_have_committed: true,
                ..ErrorParts::new(S::SERVICE_UNAVAILABLE, "deadline_exceeded")
            },
        }
    }

    /// The human message: the error's own text, without the batch prefix for batch errors
    /// (the index travels in its own field).
    fn message(&self) -> String {
        match self {
            ApiError::Batch(e) | ApiError::Ipam(IpamError::Batch(e)) => {
                format!("op {}: {}", e.index, e.error)
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = self.parts();
        if parts.status.is_server_error() && parts.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: parts.code.to_string(),
                message: self.message(),
                index: parts.index,
                may_have_committed: parts.may_have_committed.then_some(true),
            },
        };
        let mut response = (parts.status, Json(body)).into_response();
        if parts.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if parts.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cluster_error_has_its_status_and_code() {
        let cases: Vec<(IpamError, u16, &str)> = vec![
            (IpamError::NoLeader, 503, "no_leader"),
            (IpamError::Overloaded, 503, "overloaded"),
            (
                IpamError::DeadlineExceeded { waited_ms: 5 },
                503,
                "deadline_exceeded",
            ),
            (IpamError::ShuttingDown, 503, "shutting_down"),
            (IpamError::AlreadyInitialized, 409, "already_initialized"),
            (IpamError::UnknownNode(4), 404, "node_not_found"),
            (IpamError::Internal("disk".into()), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let p = ApiError::Ipam(e).parts();
            assert_eq!((p.status.as_u16(), p.code), (status, code));
        }
    }

    #[test]
    fn domain_codes_map_to_statuses() {
        let cases = [
            (ErrorCode::InvalidArgument, 400),
            (ErrorCode::PoolNotFound, 404),
            (ErrorCode::AllocationNotFound, 404),
            (ErrorCode::PoolExists, 409),
            (ErrorCode::PoolOverlap, 409),
            (ErrorCode::AddressInUse, 409),
            (ErrorCode::OwnerConflict, 409),
            (ErrorCode::PoolNotEmpty, 409),
            (ErrorCode::GenerationMismatch, 409),
            (ErrorCode::PoolExhausted, 409),
            (ErrorCode::AddressCoolingDown, 409),
        ];
        for (code, status) in cases {
            let p = domain(code);
            assert_eq!((p.status.as_u16(), p.code), (status, code.as_str()));
        }
    }

    #[tokio::test]
    async fn body_carries_extra_fields_and_retry_after() {
        let response =
            ApiError::Ipam(IpamError::DeadlineExceeded { waited_ms: 10 }).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.error.code, "deadline_exceeded");
        assert_eq!(body.error.may_have_committed, Some(true));

        let e = BatchError {
            index: 3,
            error: OpError::Input(InputError::InvalidOwner { len: 0 }),
        };
        let response = ApiError::Batch(e).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.error.index, Some(3));
        assert_eq!(body.error.code, "invalid_argument");
        assert!(body.error.may_have_committed.is_none());
    }
}
