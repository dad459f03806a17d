//! The `Idempotency-Key` header: a middleware that turns it into the raft layer's key scope.
//!
//! Every write under `/api/v1/` (POST, PATCH, PUT, DELETE) except `/api/v1/cluster/*` may carry
//! `Idempotency-Key:` with 1–128 visible ASCII characters (else 400 `invalid_argument`). The
//! middleware reads the body (up to the API limit: 413 beyond it), fingerprints the request
//! (SHA-256 of method, path, query and body) and runs the handler inside
//! [`ipam_raft::with_idempotency_key_scope`], so the handler's write carries the key into the
//! log. The state machine records the result it decides with the key; a repeat with the same
//! fingerprint gets that result back — and the handler renders it exactly as the first time —
//! while another request with the key is 422 `idempotency_key_reused`. Answers decided before
//! the log (401, 413, 400 on syntax, 503) are not recorded: a retry executes.
//!
//! One middleware rather than an extractor per handler: every write route, including ones
//! added later, honours the header without each handler passing the key along.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipam_raft::KeyedRequest;
use sha2::{Digest, Sha256};

use crate::api::API_BODY_LIMIT;
use crate::error::ApiError;

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether a request to `path` with `method` may carry a key.
pub fn keyed_route(method: &Method, path: &str) -> bool {
    let write = matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    );
    let api = path.starts_with("/api/v1/");
    let cluster = path == "/api/v1/cluster" || path.starts_with("/api/v1/cluster/");
    write && api && !cluster
}

/// The key of `headers`, if any: 400 when it is malformed or given twice.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || {
        ApiError::InvalidArgument(
            "Idempotency-Key must be given once, with 1 to 128 visible ASCII characters"
                .to_string(),
        )
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let key = value.to_str().map_err(|_| bad())?;
    if !ipam_core::requests::check_key(key) {
        return Err(bad());
    }
    Ok(Some(key.to_string()))
}

/// SHA-256 of a request: method, path, query and body, each length-prefixed so no two
/// requests share a fingerprint by moving bytes between the parts.
pub fn fingerprint(method: &Method, path: &str, query: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        method.as_str().as_bytes(),
        path.as_bytes(),
        query.as_bytes(),
        body,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The middleware (run by `middleware::api` after authentication and the body-size check,
/// inside the request timeout).
pub async fn idempotency(req: Request, next: Next) -> Response {
    if !keyed_route(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let key = match key_of(req.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, API_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::PayloadTooLarge(format!(
                "request body is larger than the limit of {API_BODY_LIMIT} bytes"
            ))
            .into_response()
        }
    };
    let fingerprint = fingerprint(
        &parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &bytes,
    );
    let req = Request::from_parts(parts, Body::from(bytes));
    ipam_raft::with_idempotency_key_scope(KeyedRequest { key, fingerprint }, next.run(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_writes_outside_cluster_take_a_key() {
        assert!(keyed_route(&Method::POST, "/api/v1/pools"));
        assert!(keyed_route(
            &Method::DELETE,
            "/api/v1/pools/a/allocations/10.0.0.2"
        ));
        assert!(keyed_route(&Method::PATCH, "/api/v1/pools/a"));
        assert!(!keyed_route(&Method::GET, "/api/v1/pools"));
        assert!(!keyed_route(&Method::POST, "/api/v1/cluster/learners"));
        assert!(!keyed_route(&Method::POST, "/raft/propose"));
    }

    #[test]
    fn keys_are_checked() {
        let mut h = HeaderMap::new();
        assert!(matches!(key_of(&h), Ok(None)));
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("abc-1"));
        assert_eq!(key_of(&h).ok().flatten().as_deref(), Some("abc-1"));
        h.append(IDEMPOTENCY_KEY, HeaderValue::from_static("abc-2"));
        assert!(key_of(&h).is_err(), "twice");
        for bad in ["", "a b", &"x".repeat(129)] {
            let mut h = HeaderMap::new();
            h.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(bad).expect("header"));
            assert!(key_of(&h).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_part_changes_the_fingerprint() {
        let base = fingerprint(&Method::POST, "/a", "x=1", b"{}");
        assert_eq!(base, fingerprint(&Method::POST, "/a", "x=1", b"{}"));
        assert_ne!(base, fingerprint(&Method::DELETE, "/a", "x=1", b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/b", "x=1", b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/a", "x=2", b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/a", "x=1", b"{ }"));
        assert_ne!(base, fingerprint(&Method::POST, "/a", "x=1{}", b""));
    }
}
