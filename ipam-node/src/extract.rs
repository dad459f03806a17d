//! Extractors whose rejections are [`ApiError`]s, so malformed JSON, a wrong `Content-Type`,
//! an oversized body or a bad query string get the contract's error body instead of axum's
//! plain-text 400/413/415/422.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; `Content-Type: application/json` required.
pub struct ApiJson<T>(pub T);

/// A JSON body that may be absent: an empty body is `T::default()`.
pub struct OptionalJson<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > "application/+json".len()
            && essence[.."application/".len()].eq_ignore_ascii_case("application/")
            && essence.to_ascii_lowercase().ends_with("+json"))
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than the limit of {} bytes",
                crate::api::API_BODY_LIMIT
            ))
        } else {
            ApiError::InvalidArgument(rejection.body_text())
        }
    })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_data() {
            "invalid request body"
        } else {
            "invalid JSON body"
        };
        ApiError::InvalidArgument(format!("{what}: {e}"))
    })
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The body is read (up to the limit) before the type is judged: 413 comes before 400.
        let json = is_json(req.headers());
        let bytes = body_bytes(req, state).await?;
        if !json {
            return Err(ApiError::InvalidArgument(
                "expected a JSON body with Content-Type: application/json".to_string(),
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(ApiError::InvalidArgument(
                "expected a JSON body with Content-Type: application/json".to_string(),
            ));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e| ApiError::InvalidArgument(e.body_text()))
    }
}

/// The query string as `key=value` pairs, consumed parameter by parameter; parameters left
/// unconsumed are refused (a misspelt `?forse=true` must not silently do nothing).
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::InvalidArgument(e.body_text()))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// Builds from pairs (tests, and callers that parsed the query themselves).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    /// The value of `key` given at most once.
    pub fn take(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        let mut values = self.take_all(key);
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(ApiError::InvalidArgument(format!(
                "query parameter {key:?} given more than once"
            ))),
        }
    }

    /// The value of a required `key`.
    pub fn require(&mut self, key: &str) -> Result<String, ApiError> {
        self.take(key)?.ok_or_else(|| {
            ApiError::InvalidArgument(format!("query parameter {key:?} is required"))
        })
    }

    /// Every value of a repeatable `key`.
    pub fn take_all(&mut self, key: &str) -> Vec<String> {
        let (taken, rest) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(k, _)| k == key);
        self.0 = rest;
        taken.into_iter().map(|(_, v)| v).collect()
    }

    /// A `u64` parameter.
    pub fn take_u64(&mut self, key: &str) -> Result<Option<u64>, ApiError> {
        self.take(key)?
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::InvalidArgument(format!(
                        "query parameter {key:?} must be a non-negative integer, got {v:?}"
                    ))
                })
            })
            .transpose()
    }

    /// A boolean parameter (`true` / `false`).
    pub fn take_bool(&mut self, key: &str) -> Result<bool, ApiError> {
        match self.take(key)?.as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(ApiError::InvalidArgument(format!(
                "query parameter {key:?} must be true or false, got {v:?}"
            ))),
        }
    }

    /// `?consistency=linearizable|local`.
    pub fn consistency(&mut self) -> Result<ipam_raft::Consistency, ApiError> {
        match self.take("consistency")?.as_deref() {
            None | Some("linearizable") => Ok(ipam_raft::Consistency::Linearizable),
            Some("local") => Ok(ipam_raft::Consistency::Local),
            Some(v) => Err(ApiError::InvalidArgument(format!(
                "query parameter \"consistency\" must be linearizable or local, got {v:?}"
            ))),
        }
    }

    /// Refuses parameters nobody consumed.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::InvalidArgument(format!(
                "unknown query parameter {k:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("application/jsonx", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_json(&h), ok, "{v}");
        }
    }

    #[test]
    fn params_are_consumed_once() {
        let pairs = |v: &[(&str, &str)]| {
            Params::from_pairs(
                v.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            )
        };
        let mut p = pairs(&[("label", "a=b"), ("label", "c=d"), ("limit", "5")]);
        assert_eq!(p.take_all("label"), vec!["a=b", "c=d"]);
        assert_eq!(p.take_u64("limit").unwrap(), Some(5));
        assert!(p.finish().is_ok());
        assert!(pairs(&[("x", "1")]).finish().is_err());
        assert!(pairs(&[("limit", "1"), ("limit", "2")])
            .take("limit")
            .is_err());
        assert!(pairs(&[("limit", "-1")]).take_u64("limit").is_err());
        assert!(pairs(&[("force", "yes")]).take_bool("force").is_err());
        assert!(pairs(&[("consistency", "stale")]).consistency().is_err());
    }
}
