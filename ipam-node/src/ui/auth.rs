//! The dashboard's login: on a node with a token, `POST /ui/login` checks the token and sets a
//! cookie, and every other `/ui` page needs that cookie.
//!
//! The cookie holds a digest of the token, not the token: a leaked cookie opens the read-only
//! dashboard but is no bearer token for `/api/v1/*` or `/raft/*`. It is `HttpOnly` (no script
//! reads it), `SameSite=Strict` (no other site's page sends it) and `Path=/ui` (the browser sends
//! it nowhere else); the API's authentication only looks at the `Authorization` header, so the
//! cookie is accepted on `/ui` paths only.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::AppState;

/// Name of the session cookie.
pub const COOKIE: &str = "ipam_ui";

/// The cookie value for `token`: hex SHA-256 of a fixed context string and the token.
pub fn cookie_value(token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"raft-ipam ui session v1\0")
        .chain_update(token.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Set-Cookie` that logs in with `token`.
pub fn login_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict",
        cookie_value(token)
    )
}

/// `Set-Cookie` that logs out.
pub fn logout_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether the request carries the session cookie for `token`, compared in constant time.
pub fn has_session(headers: &HeaderMap, token: &str) -> bool {
    let expected = cookie_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| {
            name == COOKIE && bool::from(value.as_bytes().ct_eq(expected.as_bytes()))
        })
}

/// Whether `given` is the node's token, in constant time.
pub fn token_matches(given: &str, token: &str) -> bool {
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

/// Proof that a dashboard request may see the page: the node has no token, or the request
/// carries the session cookie (or the bearer token). Its rejection is the login page (401).
pub struct Session {
    /// Whether the node has a token (pages then offer a logout button).
    pub protected: bool,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Session, Response> {
        match &state.token {
            None => Ok(Session { protected: false }),
            // A script may use the bearer header, as on the API.
            Some(token)
                if has_session(&parts.headers, token)
                    || crate::api::bearer_matches(
                        parts.headers.get(header::AUTHORIZATION),
                        token,
                    ) =>
            {
                Ok(Session { protected: true })
            }
            Some(_) => Err(
                super::html(StatusCode::UNAUTHORIZED, super::pages::login(None)).into_response(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_cookie_is_a_digest_and_only_the_right_one_passes() {
        let value = cookie_value("s3cret");
        assert_eq!(value.len(), 64);
        assert!(!value.contains("s3cret"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={value}; c=d")).unwrap(),
        );
        assert!(has_session(&h, "s3cret"));
        assert!(!has_session(&h, "other"));
        let mut wrong = HeaderMap::new();
        wrong.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}=s3cret")).unwrap(),
        );
        assert!(!has_session(&wrong, "s3cret"));
        assert!(!has_session(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn the_login_cookie_has_the_contract_attributes() {
        let c = login_cookie("t");
        assert!(c.contains("HttpOnly"));
        assert!(c.contains("SameSite=Strict"));
        assert!(c.contains("Path=/ui"));
        assert!(logout_cookie().contains("Max-Age=0"));
    }
}
