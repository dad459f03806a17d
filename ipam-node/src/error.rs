//! [`ApiError`]: every way an API call can fail, and the ONE place that maps each of them to
//! an HTTP status, a contract `code` and the `{"error": {...}}` body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipam_client::types::{ErrorBody, ErrorDetail};
use ipam_client::ErrorCode as ApiCode;
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
    /// HTTP status (the contract's status of `code`).
    pub status: StatusCode,
    /// The contract's code.
    pub code: ApiCode,
    /// Batch op index.
    pub index: Option<usize>,
    /// The write may still apply (`deadline_exceeded`).
    pub may_have_committed: bool,
}

/// The API code of a domain code: the two enums share their texts. A code the core adds
/// before `ipam-client` lists it is a state conflict until it is listed.
fn domain(code: ErrorCode) -> ApiCode {
    ApiCode::parse(code.as_str())
}

impl ApiError {
    /// The contract's code of this error: the one mapping from errors to codes.
    pub fn code(&self) -> ApiCode {
        match self {
            ApiError::Ipam(e) => match e {
                IpamError::Op(e) => domain(e.code()),
                IpamError::Batch(e) => domain(e.error.code()),
                IpamError::Query(e) => e.code().map_or(ApiCode::Internal, domain),
                IpamError::NoLeader => ApiCode::NoLeader,
                IpamError::Overloaded => ApiCode::Overloaded,
                IpamError::DeadlineExceeded { .. } => ApiCode::DeadlineExceeded,
                IpamError::ShuttingDown => ApiCode::ShuttingDown,
                IpamError::AlreadyInitialized => ApiCode::AlreadyInitialized,
                IpamError::Membership(_) => ApiCode::MembershipChangeRefused,
                IpamError::UnknownNode(_) => ApiCode::NodeNotFound,
                IpamError::Internal(_) => ApiCode::Internal,
                IpamError::NodeIdInUse { .. } => ApiCode::NodeIdInUse,
                IpamError::LearnerNotCaughtUp { .. } => ApiCode::LearnerNotCaughtUp,
                IpamError::IdempotencyKeyReused { .. } => ApiCode::IdempotencyKeyReused,
                _ => ApiCode::Internal,
            },
            ApiError::Op(e) => domain(e.code()),
            ApiError::Batch(e) => domain(e.error.code()),
            ApiError::Input(e) => domain(e.code()),
            ApiError::InvalidArgument(_) => ApiCode::InvalidArgument,
            ApiError::Unauthorized => ApiCode::Unauthorized,
            ApiError::PayloadTooLarge(_) => ApiCode::PayloadTooLarge,
            ApiError::NotFound(_) => ApiCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ApiCode::MethodNotAllowed,
            ApiError::RequestTimeout { .. } => ApiCode::DeadlineExceeded,
        }
    }

    /// Status, code and extra fields of this error.
    pub fn parts(&self) -> ErrorParts {
        let code = self.code();
        let index = match self {
            ApiError::Batch(e) | ApiError::Ipam(IpamError::Batch(e)) => Some(e.index),
            _ => None,
        };
        ErrorParts {
            status: code.status().unwrap_or(StatusCode::CONFLICT),
            may_have_committed: code == ApiCode::DeadlineExceeded,
            code,
            index,
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

/// The text of a server error (5xx other than 503), carried on its response to the API
/// middleware (`middleware.rs`), which logs it at error level with the request's method, URI
/// and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = self.parts();
        let server_error = (parts.status.is_server_error()
            && parts.status != StatusCode::SERVICE_UNAVAILABLE)
            .then(|| ServerError(self.to_string()));
        let body = ErrorBody {
            error: ErrorDetail {
                code: parts.code,
                message: self.message(),
                index: parts.index,
                may_have_committed: parts.may_have_committed.then_some(true),
            },
        };
        let mut response = (parts.status, Json(body)).into_response();
        if let Some(e) = server_error {
            response.extensions_mut().insert(e);
        }
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
            (
                IpamError::Internal(ipam_raft::InternalError::CloseTimeout { secs: 10 }),
                500,
                "internal",
            ),
        ];
        for (e, status, code) in cases {
            let p = ApiError::Ipam(e).parts();
            assert_eq!((p.status.as_u16(), p.code.as_str()), (status, code));
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
            (ErrorCode::PlanStale, 409),
            (ErrorCode::FeatureUnavailable, 503),
        ];
        for (code, status) in cases {
            let p = domain(code);
            assert_eq!(p.as_str(), code.as_str());
            assert_eq!(p.status().map(|s| s.as_u16()), Some(status));
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
        assert_eq!(body.error.code, ApiCode::DeadlineExceeded);
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
        assert_eq!(body.error.code, ApiCode::InvalidArgument);
        assert!(body.error.may_have_committed.is_none());
    }
}
