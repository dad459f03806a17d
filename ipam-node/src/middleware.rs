//! The middleware around every route: the `request` span, and one function for
//! the API's own checks (metrics, authentication, declared body size, request timeout,
//! `Idempotency-Key`).
//!
//! The checks are one `from_fn` rather than one layer each: axum clones a route's whole
//! layer stack, and every `from_fn` layer boxes its `Next` and its future, on every request.
//! Folded, a request pays that once, and the path is classified once ([`scope`]).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::api::{AppState, API_BODY_LIMIT};
use crate::error::{ApiError, ServerError};

/// The header carrying the request id.
pub const X_REQUEST_ID: &str = "x-request-id";

/// Target of the `request` span. The span is at debug level so that the default log level
/// (`info`) neither creates nor formats a span per request; the trace filter
/// (`telemetry.rs`) enables this target at debug, so exported traces keep the span.
pub const REQUEST_SPAN_TARGET: &str = "ipam_node::http";

/// Which of the API's checks a path gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `/api/v1/*`: token, declared body size, timeout (unless `timed` is false), idempotency.
    Api {
        /// Whether the request timeout applies (`/api/v1/cluster*` has its membership
        /// deadline instead: a new learner may take long to catch up).
        timed: bool,
        /// The largest body accepted.
        body_limit: usize,
    },
    /// `/raft/*`: the token only (ipam-raft limits bodies and times out itself).
    Raft,
    /// `/healthz`, `/readyz`, `/metrics`, `/ui`, …: none.
    Open,
}

/// The checks `path` gets.
pub fn scope(path: &str) -> Scope {
    if path == "/api/v1" || path.starts_with("/api/v1/") {
        let body_limit = match path {
            "/api/v1/drift" | "/api/v1/reconcile" => crate::drift::DRIFT_BODY_LIMIT,
            _ => API_BODY_LIMIT,
        };
        Scope::Api {
            timed: !path.starts_with("/api/v1/cluster"),
            body_limit,
        }
    } else if path == "/raft" || path.starts_with("/raft/") {
        Scope::Raft
    } else {
        Scope::Open
    }
}

/// Whether `Authorization` is `Bearer <token>`, compared in constant time.
pub fn bearer_matches(value: Option<&HeaderValue>, token: &str) -> bool {
    let Some(given) = value.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")) else {
        return false;
    };
    given.ct_eq(token.as_bytes()).into()
}

/// Whether a declared `Content-Length` is over `limit` (an absent or unreadable one is not:
/// such bodies are cut at the same limit when they are read).
pub fn declared_too_large(value: Option<&HeaderValue>, limit: usize) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// What an error line needs from a request the handler consumed.
struct Context {
    method: axum::http::Method,
    uri: axum::http::Uri,
    request_id: Option<HeaderValue>,
}

/// The API middleware: records `ipam_http_request_duration_seconds{route,status}` around the
/// checks and the handler, and logs a server error with its request's method, URI and id (the
/// `request` span carrying them is not recorded at the default log level).
pub async fn api(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The route template, never the raw path, keeps the label set bounded.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let context = Context {
        method: req.method().clone(),
        uri: req.uri().clone(),
        request_id: req.headers().get(X_REQUEST_ID).cloned(),
    };
    let started = Instant::now();
    let response = checked(&state, req, next).await;
    state.metrics.observe_http(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status(),
        started.elapsed(),
    );
    log_server_error(&context, &response);
    response
}

fn log_server_error(context: &Context, response: &Response) {
    if let Some(ServerError(error)) = response.extensions().get::<ServerError>() {
        let id = context.request_id.as_ref().and_then(|v| v.to_str().ok());
        tracing::error!(
            error = %error,
            method = %context.method,
            uri = %context.uri,
            request_id = %id.unwrap_or(""),
            "internal error"
        );
    }
}

/// The checks in the contract's order: 401 before 413 before anything that reads the body
/// (400s); then the timeout around the idempotency scope and the handler.
async fn checked(state: &AppState, req: Request, next: Next) -> Response {
    let scope = scope(req.uri().path());
    if let (Some(token), Scope::Api { .. } | Scope::Raft) = (&state.token, scope) {
        // ipam-raft checks `/raft/*` again itself; this check adds the constant-time
        // comparison and the contract's error body.
        if !bearer_matches(req.headers().get(header::AUTHORIZATION), token) {
            return ApiError::Unauthorized.into_response();
        }
    }
    let Scope::Api { timed, body_limit } = scope else {
        return next.run(req).await;
    };
    if declared_too_large(req.headers().get(header::CONTENT_LENGTH), body_limit) {
        return ApiError::PayloadTooLarge(format!(
            "request body is larger than the limit of {body_limit} bytes"
        ))
        .into_response();
    }
    if !timed {
        return crate::idempotency::idempotency(req, next).await;
    }
    let limit = state.request_timeout;
    match tokio::time::timeout(limit, crate::idempotency::idempotency(req, next)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout {
            waited_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }
        .into_response(),
    }
}

/// The `request` span of one request (see [`REQUEST_SPAN_TARGET`]); a caller that traces its
/// own requests gets this one in its trace.
pub fn request_span(req: &Request) -> tracing::Span {
    let span = tracing::debug_span!(
        target: REQUEST_SPAN_TARGET,
        "request",
        method = %req.method(),
        uri = %req.uri(),
        request_id = req
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    ipam_raft::adopt_remote_parent(&span, req.headers());
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_compare_exactly() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(bearer_matches(Some(&v("Bearer s3cret")), "s3cret"));
        assert!(!bearer_matches(Some(&v("Bearer s3cre")), "s3cret"));
        assert!(!bearer_matches(Some(&v("Bearer s3cret2")), "s3cret"));
        assert!(!bearer_matches(Some(&v("bearer s3cret")), "s3cret"));
        assert!(!bearer_matches(Some(&v("s3cret")), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn paths_get_their_checks() {
        let api = |timed, body_limit| Scope::Api { timed, body_limit };
        assert_eq!(scope("/api/v1/pools"), api(true, API_BODY_LIMIT));
        assert_eq!(scope("/api/v1"), api(true, API_BODY_LIMIT));
        assert_eq!(
            scope("/api/v1/drift"),
            api(true, crate::drift::DRIFT_BODY_LIMIT)
        );
        assert_eq!(
            scope("/api/v1/reconcile"),
            api(true, crate::drift::DRIFT_BODY_LIMIT)
        );
        assert_eq!(scope("/api/v1/cluster"), api(false, API_BODY_LIMIT));
        assert_eq!(
            scope("/api/v1/cluster/learners"),
            api(false, API_BODY_LIMIT)
        );
        assert_eq!(scope("/raft/append"), Scope::Raft);
        assert_eq!(scope("/raft"), Scope::Raft);
        assert_eq!(scope("/raftx"), Scope::Open);
        assert_eq!(scope("/api/v1x"), Scope::Open);
        assert_eq!(scope("/healthz"), Scope::Open);
        assert_eq!(scope("/metrics"), Scope::Open);
        assert_eq!(scope("/ui/pools"), Scope::Open);
    }

    #[test]
    fn declared_lengths_over_the_limit_are_refused() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(declared_too_large(Some(&v("11")), 10));
        assert!(!declared_too_large(Some(&v("10")), 10));
        assert!(!declared_too_large(Some(&v("x")), 10));
        assert!(!declared_too_large(None, 10));
    }

    /// A writer for the fmt subscriber that keeps what it is given.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn server_errors_are_logged_with_their_request() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let context = Context {
            method: axum::http::Method::POST,
            uri: "/api/v1/pools?x=1".parse().expect("uri"),
            request_id: Some(HeaderValue::from_static("abc-123")),
        };
        let failed = ApiError::Ipam(ipam_raft::IpamError::Internal(
            ipam_raft::InternalError::ResultCount {
                results: 0,
                commands: 1,
            },
        ))
        .into_response();
        assert_eq!(
            failed.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        let refused = ApiError::Unauthorized.into_response();
        tracing::subscriber::with_default(subscriber, || {
            log_server_error(&context, &refused);
            log_server_error(&context, &failed);
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("ERROR"), "{text}");
        assert!(text.contains("request_id=abc-123"), "{text}");
        assert!(text.contains("uri=/api/v1/pools?x=1"), "{text}");
        assert!(text.contains("method=POST"), "{text}");
        assert!(text.contains("internal error"), "{text}");
        assert!(text.contains("0 results for 1 commands"), "{text}");
    }
}
