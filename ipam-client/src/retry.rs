//! Idempotency keys and write retries of [`Client`].
//!
//! A client made with [`Client::with_write_retries`] gives every write under `/api/v1/` (not
//! `/api/v1/cluster/*`) a fresh `Idempotency-Key` and resends the same request with the same
//! key when the node answers 503 or the connection fails: the node records the answer its
//! state machine decides with the key, so a resend of a write that did apply gets that answer
//! back and executes nothing. [`Client::with_idempotency_key`] fixes the key instead (one
//! logical write per key).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, Request, Response};

use crate::client::Client;
use crate::error::ClientError;

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Longest pause between two attempts (a 503's `Retry-After` is honoured up to it).
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A fresh key: 128 bits from the process's randomly keyed hasher, the time and a counter.
pub fn new_key() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u64(n);
        h.write_u32(std::process::id());
        h.write_usize(i);
        *part = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

/// Whether a request with `method` to `path` may carry a key (the contract's keyed writes).
pub(crate) fn keyed_write(method: &Method, path: &str) -> bool {
    let write = matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    );
    let cluster = path == "/api/v1/cluster" || path.starts_with("/api/v1/cluster/");
    write && path.starts_with("/api/v1/") && !cluster
}

/// Whether another attempt of a keyed write may help.
fn retryable(e: &ClientError) -> bool {
    e.is_unavailable()
}

/// Whether a client of several endpoints should send the next attempt to another node: this
/// one could not be reached, did not answer in time, or knows no leader (it may be cut off
/// from the majority). An overloaded node's neighbours would forward to the same leader.
fn moves_on(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Unreachable { .. } | ClientError::Timeout { .. }
    ) || e.code() == Some(&crate::ErrorCode::NoLeader)
}

impl Client {
    /// This client with `key` as the `Idempotency-Key` of every write: use it for one logical
    /// write (and its retries); a different write with the same key is refused with 422
    /// `idempotency_key_reused`.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Client {
        self.idempotency_key = Some(key.into());
        self
    }

    /// This client retrying each write up to `retries` more times after a 503 or a failed
    /// connection, with one `Idempotency-Key` per logical write (its own, or the one of
    /// [`Client::with_idempotency_key`]), so a retried write applies at most once.
    pub fn with_write_retries(mut self, retries: u32) -> Client {
        self.write_retries = retries;
        self
    }

    /// Adds the key to a keyed write; returns how many retries it gets.
    pub(crate) fn add_key(&self, req: &mut Request) -> u32 {
        if !keyed_write(req.method(), req.url().path()) {
            return 0;
        }
        let key = match &self.idempotency_key {
            Some(k) => k.clone(),
            None if self.write_retries > 0 => new_key(),
            None => return 0,
        };
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&key) {
            req.headers_mut().insert(IDEMPOTENCY_KEY, v);
        }
        self.write_retries
    }

    /// Executes `req`, resending it (same key) while the answer is retryable.
    pub(crate) async fn execute_keyed(
        &self,
        req: Request,
        retries: u32,
    ) -> Result<Response, ClientError> {
        let mut attempt = 0u32;
        loop {
            let copy = if attempt < retries {
                req.try_clone()
            } else {
                None
            };
            let this = match copy {
                Some(c) => c,
                None => return self.execute_once(req).await,
            };
            let at = self.current_endpoint();
            let res = match self.execute_once(this).await {
                Ok(resp) if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    Err(self.error_of(resp).await)
                }
                other => other,
            };
            match res {
                Err(e) if retryable(&e) => {
                    if moves_on(&e) {
                        self.move_on_from(at);
                    }
                    let backoff = Duration::from_millis(100u64 << attempt.min(4));
                    let pause = match &e {
                        ClientError::Api {
                            retry_after: Some(after),
                            ..
                        } => (*after).min(MAX_PAUSE),
                        _ => backoff.min(MAX_PAUSE),
                    };
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_valid() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn only_an_unreachable_or_leaderless_node_is_left() {
        let api = |code| ClientError::Api {
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            code,
            message: String::new(),
            index: None,
            may_have_committed: false,
            retry_after: None,
        };
        assert!(moves_on(&api(crate::ErrorCode::NoLeader)));
        assert!(!moves_on(&api(crate::ErrorCode::Overloaded)));
        assert!(!moves_on(&api(crate::ErrorCode::DeadlineExceeded)));
    }

    #[test]
    fn only_api_writes_outside_cluster_are_keyed() {
        assert!(keyed_write(&Method::POST, "/api/v1/pools/a/allocations"));
        assert!(keyed_write(&Method::DELETE, "/api/v1/pools/a"));
        assert!(!keyed_write(&Method::GET, "/api/v1/pools"));
        assert!(!keyed_write(&Method::POST, "/api/v1/cluster/learners"));
    }
}
