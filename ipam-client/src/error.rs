//! [`ClientError`]: what can go wrong between a caller and a node.

use std::time::Duration;

use reqwest::StatusCode;

use crate::ErrorCode;

/// An error of a [`crate::Client`] call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node answered with a non-2xx status and the contract's error body
    /// `{"error": {"code", "message", ...}}`.
    #[error("{code}: {message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The contract's code.
        code: ErrorCode,
        /// The node's human text.
        message: String,
        /// The failing op of a batch (0-based).
        index: Option<usize>,
        /// `deadline_exceeded` only: the write may still apply.
        may_have_committed: bool,
        /// The `Retry-After` header (503 answers), in seconds.
        retry_after: Option<Duration>,
    },
    /// No connection could be made or the connection broke before a response arrived
    /// (connection refused, DNS failure, reset).
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// The endpoint the client was built with.
        endpoint: String,
        /// The innermost cause, in a few words (`connection refused`).
        reason: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The request timed out (see [`crate::Client::with_timeout`]). A write may still apply.
    #[error("request to {endpoint} timed out")]
    Timeout {
        /// The endpoint the client was built with.
        endpoint: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A response arrived whose body is not what the contract says for its status.
    #[error("unexpected response from {endpoint} (HTTP {status}): {detail}")]
    Decode {
        /// The endpoint the client was built with.
        endpoint: String,
        /// HTTP status of the response.
        status: StatusCode,
        /// What did not decode, with the start of the body.
        detail: String,
    },
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// Building the HTTP client or a request failed (for example a token that is not a valid
    /// header value).
    #[error("cannot build request: {0}")]
    Request(#[source] reqwest::Error),
}

impl ClientError {
    /// HTTP status of an [`ClientError::Api`] or [`ClientError::Decode`] error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The contract's error code of an [`ClientError::Api`] error.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// 404 from the node (unknown pool, allocation or route).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// 409 from the node (overlap, address in use, exhausted pool, ...).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }

    /// The node could not be reached, timed out, or answered 503 (no leader, overloaded,
    /// deadline exceeded): trying again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::Timeout { .. } => true,
            _ => self.status() == Some(StatusCode::SERVICE_UNAVAILABLE),
        }
    }

    /// A write whose outcome is unknown: it timed out, the connection broke after it was sent,
    /// or the node said `may_have_committed`.
    pub fn may_have_committed(&self) -> bool {
        match self {
            ClientError::Api {
                may_have_committed, ..
            } => *may_have_committed,
            ClientError::Timeout { .. } => true,
            // A refused connection never carried the request; anything else might have.
            ClientError::Unreachable { source, .. } => !source.is_connect(),
            _ => false,
        }
    }

    pub(crate) fn transport(endpoint: &str, source: reqwest::Error) -> ClientError {
        if source.is_timeout() {
            return ClientError::Timeout {
                endpoint: endpoint.to_string(),
                source,
            };
        }
        if source.is_builder() {
            return ClientError::Request(source);
        }
        ClientError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: innermost_reason(&source),
            source,
        }
    }
}

/// The innermost cause of a transport error in a few words: `connection refused` rather than
/// reqwest's and hyper's wrapping layers, so a CLI can print one line.
fn innermost_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut io_kind = None;
    let mut last: &(dyn std::error::Error + 'static) = err;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        last = e;
        cur = e.source();
    }
    match io_kind {
        Some(kind) if kind != std::io::ErrorKind::Other => kind.to_string(),
        _ => last.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn innermost_reason_names_the_io_error_kind() {
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(innermost_reason(&e), "connection refused");
    }

    #[test]
    fn innermost_reason_falls_back_to_the_last_message() {
        let e = Outer(std::io::Error::other("dns error: no such host"));
        assert_eq!(innermost_reason(&e), "dns error: no such host");
    }
}
