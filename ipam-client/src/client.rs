//! [`Client`]: typed async calls for every endpoint of the HTTP API v1.
//!
//! One `Client` holds one `reqwest::Client`, so connections are pooled and reused across
//! calls; clone it freely (clones share the pool).

#[path = "ops.rs"]
pub mod ops;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{header, Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use endpoints::Endpoints;
pub use endpoints::REFRESH;

mod cluster;
mod drift;
mod endpoints;
mod events;
mod pools;
mod select;
use crate::types::{
    AddressInfo, AllocateRequest, Allocation, AllocationList, BatchOp, BatchRequest, BatchResponse,
    CreatePoolRequest, ErrorBody, Pool, PoolList, Released,
};
use crate::types::{RenewOwnerRequest, RenewRequest, Renewed};
pub use events::EventStream;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before it, on any node (the default).
    #[default]
    Linearizable,
    /// Answered from the contacted node's replica at once, possibly stale
    /// (`?consistency=local`).
    Local,
}

/// Query of `GET /api/v1/pools/{name}/allocations`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocationQuery {
    /// Only this owner's allocation.
    pub owner: Option<String>,
    /// Start after this address (exclusive): the previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1–1000 (the node's default: 100).
    pub limit: Option<u32>,
}

/// The default timeout for establishing a TCP connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A typed client of one node's HTTP API. Its `Debug` leaves out the token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The nodes this client knows and the one it talks to (`client/endpoints.rs`).
    endpoints: Arc<Endpoints>,
    token: Option<String>,
    consistency: Consistency,
    timeout: Option<Duration>,
    /// `Idempotency-Key` of every write (`retry.rs`).
    pub(crate) idempotency_key: Option<String>,
    /// Resends of a keyed write after a 503 or a failed connection (`retry.rs`).
    pub(crate) write_retries: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint())
            .field("endpoints", &self.endpoints.len())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("consistency", &self.consistency)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the node at `endpoint` (`http://127.0.0.1:7470`; a bare `host:port` means
    /// `http://host:port`), sending `token` as `Authorization: Bearer` when given.
    ///
    /// `endpoint` may list several nodes of one cluster separated by commas
    /// (`http://a:7470,http://b:7470,http://c:7470`): the client then fails over between them
    /// and sends its requests to the one that leads (`client/endpoints.rs`).
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Client, ClientError> {
        Client::with_endpoints(&[endpoint], token)
    }

    /// A client of the nodes at `endpoints` (each as [`Client::new`] takes it): it fails over
    /// between them and sends its requests to the one that leads.
    pub fn with_endpoints<S: AsRef<str>>(
        endpoints: &[S],
        token: Option<String>,
    ) -> Result<Client, ClientError> {
        let endpoints = Endpoints::parse(endpoints)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(ClientError::Request)?;
        Ok(Client::over(endpoints, token, http))
    }

    /// Like [`Client::new`] over a caller's `reqwest::Client` (to share one connection pool
    /// between clients of several nodes, or to set TLS roots and proxies).
    pub fn with_http_client(
        endpoint: &str,
        token: Option<String>,
        http: reqwest::Client,
    ) -> Result<Client, ClientError> {
        Ok(Client::over(Endpoints::parse(&[endpoint])?, token, http))
    }

    pub(crate) fn over(
        endpoints: Endpoints,
        token: Option<String>,
        http: reqwest::Client,
    ) -> Client {
        Client {
            http,
            endpoints: Arc::new(endpoints),
            token,
            consistency: Consistency::Linearizable,
            timeout: None,
            idempotency_key: None,
            write_retries: 0,
        }
    }

    /// This client with reads at `consistency` (default: linearizable).
    pub fn with_consistency(mut self, consistency: Consistency) -> Client {
        self.consistency = consistency;
        self
    }

    /// This client with a timeout on every whole request (default: none, since adding a
    /// learner waits until it has caught up). A timed-out write may still apply.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = Some(timeout);
        self
    }

    /// The endpoint requests go to now, normalised (`http://127.0.0.1:7470`): the only one,
    /// or of several the one that leads as far as this client knows.
    pub fn endpoint(&self) -> &str {
        &self.endpoints.get(self.endpoints.current()).name
    }

    /// Every endpoint of this client, normalised, in the order given.
    pub fn endpoints(&self) -> Vec<&str> {
        self.endpoints
            .all()
            .iter()
            .map(|e| e.name.as_str())
            .collect()
    }

    /// The read consistency of this client.
    pub fn consistency(&self) -> Consistency {
        self.consistency
    }

    // ---- pools ----

    /// `POST /api/v1/pools`: creates a pool.
    pub async fn create_pool(&self, req: &CreatePoolRequest) -> Result<Pool, ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "pools"])
            .json(req);
        self.json(rb).await
    }

    /// `GET /api/v1/pools`: pools by name whose labels include every `labels` pair.
    pub async fn list_pools(&self, labels: &[(String, String)]) -> Result<Vec<Pool>, ClientError> {
        let query: Vec<(&str, String)> = labels
            .iter()
            .map(|(k, v)| ("label", format!("{k}={v}")))
            .collect();
        let rb = self.read(&["api", "v1", "pools"]).query(&query);
        let list: PoolList = self.json(rb).await?;
        Ok(list.pools)
    }

    /// `GET /api/v1/pools/{name}`.
    pub async fn get_pool(&self, name: &str) -> Result<Pool, ClientError> {
        let rb = self.read(&["api", "v1", "pools", name]);
        self.json(rb).await
    }

    /// `DELETE /api/v1/pools/{name}`; `force` also drops its allocations.
    pub async fn delete_pool(&self, name: &str, force: bool) -> Result<(), ClientError> {
        let mut rb = self.request(Method::DELETE, &["api", "v1", "pools", name]);
        if force {
            rb = rb.query(&[("force", "true")]);
        }
        self.ignore_body(rb).await
    }

    // ---- allocations ----

    /// `POST /api/v1/pools/{pool}/allocations`: the allocation and whether it is new (201)
    /// rather than the owner's existing one (200).
    pub async fn allocate(
        &self,
        pool: &str,
        req: &AllocateRequest,
    ) -> Result<(Allocation, bool), ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "pools", pool, "allocations"])
            .json(req);
        let (status, allocation) = self.json_with_status(rb).await?;
        Ok((allocation, status == StatusCode::CREATED))
    }

    /// `GET /api/v1/pools/{pool}/allocations`: one page, in address order.
    pub async fn list_allocations(
        &self,
        pool: &str,
        query: &AllocationQuery,
    ) -> Result<AllocationList, ClientError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(owner) = &query.owner {
            params.push(("owner", owner.clone()));
        }
        if let Some(after) = &query.after {
            params.push(("after", after.clone()));
        }
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        let rb = self
            .read(&["api", "v1", "pools", pool, "allocations"])
            .query(&params);
        self.json(rb).await
    }

    /// Every allocation of `pool` matching `query` (its `after` is the starting point),
    /// following `next` page by page. Pages are separate reads: an allocation made or released
    /// while paging may or may not appear, but none appears twice.
    pub async fn list_all_allocations(
        &self,
        pool: &str,
        query: &AllocationQuery,
    ) -> Result<Vec<Allocation>, ClientError> {
        let mut query = query.clone();
        let mut all = Vec::new();
        loop {
            let page = self.list_allocations(pool, &query).await?;
            all.extend(page.allocations);
            match page.next {
                // A `next` that does not advance would loop forever on a faulty node.
                Some(next) if query.after.as_deref() != Some(next.as_str()) => {
                    query.after = Some(next)
                }
                Some(next) => {
                    return Err(ClientError::Decode {
                        endpoint: self.endpoint().to_string(),
                        status: StatusCode::OK,
                        detail: format!("paging did not advance past {next}"),
                    })
                }
                None => return Ok(all),
            }
        }
    }

    /// `DELETE /api/v1/pools/{pool}/allocations/{ip}`, fenced by `generation` when given.
    pub async fn release(
        &self,
        pool: &str,
        ip: &str,
        generation: Option<u64>,
    ) -> Result<(), ClientError> {
        let mut rb = self.request(
            Method::DELETE,
            &["api", "v1", "pools", pool, "allocations", ip],
        );
        if let Some(generation) = generation {
            rb = rb.query(&[("generation", generation)]);
        }
        self.ignore_body(rb).await
    }

    /// `DELETE /api/v1/pools/{pool}/allocations?owner=X`: the released addresses (empty when
    /// the owner held none).
    pub async fn release_owner(&self, pool: &str, owner: &str) -> Result<Released, ClientError> {
        let rb = self
            .request(Method::DELETE, &["api", "v1", "pools", pool, "allocations"])
            .query(&[("owner", owner)]);
        self.json(rb).await
    }

    /// `POST /api/v1/pools/{pool}/allocations/{ip}/renew`: the renewed allocation.
    pub async fn renew(
        &self,
        pool: &str,
        ip: &str,
        req: &RenewRequest,
    ) -> Result<Allocation, ClientError> {
        let rb = self
            .request(
                Method::POST,
                &["api", "v1", "pools", pool, "allocations", ip, "renew"],
            )
            .json(req);
        self.json(rb).await
    }

    /// `POST /api/v1/leases/renew`: every lease `owner` holds, renewed (a heartbeat).
    pub async fn renew_owner(&self, owner: &str) -> Result<Vec<Allocation>, ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "leases", "renew"])
            .json(&RenewOwnerRequest {
                owner: owner.to_string(),
            });
        let renewed: Renewed = self.json(rb).await?;
        Ok(renewed.renewed)
    }

    /// `GET /api/v1/addresses/{ip}`: the pool containing `ip` and its allocation, if any.
    pub async fn address(&self, ip: &str) -> Result<AddressInfo, ClientError> {
        let rb = self.read(&["api", "v1", "addresses", ip]);
        self.json(rb).await
    }

    /// `GET /api/v1/allocations?owner=X`: the owner's allocations in every pool.
    pub async fn owner_allocations(&self, owner: &str) -> Result<Vec<Allocation>, ClientError> {
        let rb = self
            .read(&["api", "v1", "allocations"])
            .query(&[("owner", owner)]);
        let list: AllocationList = self.json(rb).await?;
        Ok(list.allocations)
    }

    /// `POST /api/v1/batch`: applies `ops` in order, all or none. On failure the error's
    /// `index` names the failing op.
    pub async fn batch(&self, ops: Vec<BatchOp>) -> Result<BatchResponse, ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "batch"])
            .json(&BatchRequest { ops });
        self.json(rb).await
    }

    // ---- operations ----

    /// `GET /healthz`: `Ok` while the process serves.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        let rb = self.request(Method::GET, &["healthz"]);
        self.ignore_body(rb).await
    }

    /// `GET /readyz`: `true` on 200, `false` on 503 (no leader known, or applying).
    pub async fn readyz(&self) -> Result<bool, ClientError> {
        let rb = self.request(Method::GET, &["readyz"]);
        let resp = self.send(rb).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::SERVICE_UNAVAILABLE => Ok(false),
            _ => Err(self.error_from(resp).await),
        }
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let rb = self.request(Method::GET, &["metrics"]);
        let resp = self.checked(rb).await?;
        let status = resp.status();
        resp.text().await.map_err(|e| self.body_error(status, e))
    }

    // ---- plumbing ----

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.endpoints.get(self.endpoints.current()).base.clone();
        // The base always has a path (checked in `Endpoints::parse`), so this cannot fail.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut rb = self
            .http
            .request(method, self.url(segments))
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            rb = rb.bearer_auth(token);
        }
        if let Some(timeout) = self.timeout {
            rb = rb.timeout(timeout);
        }
        rb
    }

    fn read(&self, segments: &[&str]) -> RequestBuilder {
        let rb = self.request(Method::GET, segments);
        match self.consistency {
            Consistency::Linearizable => rb,
            Consistency::Local => rb.query(&[("consistency", "local")]),
        }
    }

    async fn send(&self, rb: RequestBuilder) -> Result<Response, ClientError> {
        let mut req = rb.build().map_err(ClientError::Request)?;
        let retries = self.add_key(&mut req);
        self.execute_keyed(req, retries).await
    }

    pub(crate) fn current_endpoint(&self) -> usize {
        self.endpoints.current()
    }

    /// Sends later requests to the node after endpoint `at` (`retry.rs`, after a failure
    /// there); nothing changes for a client of one endpoint.
    pub(crate) fn move_on_from(&self, at: usize) {
        if self.endpoints.len() > 1 {
            self.endpoints.advance(at);
        }
    }

    pub(crate) async fn execute_once(
        &self,
        req: reqwest::Request,
    ) -> Result<Response, ClientError> {
        if self.endpoints.len() == 1 {
            return self
                .http
                .execute(req)
                .await
                .map_err(|e| ClientError::transport(self.endpoint(), e));
        }
        self.look_up_leader_if_due();
        let mut req = req;
        let mut at = self.endpoints.current();
        let mut tried = 1;
        loop {
            if let Some(url) = self.endpoints.aim(req.url(), at) {
                *req.url_mut() = url;
            }
            // Nothing was sent over a connection that could not be made: any request may go to
            // the next node at once.
            let spare = (tried < self.endpoints.len())
                .then(|| req.try_clone())
                .flatten();
            match self.http.execute(req).await {
                Ok(resp) => return Ok(resp),
                Err(e) => match spare {
                    Some(next) if e.is_connect() => {
                        at = self.endpoints.advance(at);
                        req = next;
                        tried += 1;
                    }
                    _ => return Err(ClientError::transport(&self.endpoints.get(at).name, e)),
                },
            }
        }
    }

    pub(crate) async fn error_of(&self, resp: Response) -> ClientError {
        self.error_from(resp).await
    }

    /// Sends and turns a non-2xx answer into an error.
    async fn checked(&self, rb: RequestBuilder) -> Result<Response, ClientError> {
        let resp = self.send(rb).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.error_from(resp).await)
        }
    }

    async fn json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, ClientError> {
        Ok(self.json_with_status(rb).await?.1)
    }

    async fn json_with_status<T: DeserializeOwned>(
        &self,
        rb: RequestBuilder,
    ) -> Result<(StatusCode, T), ClientError> {
        let resp = self.checked(rb).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.body_error(status, e))?;
        let value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            endpoint: self.endpoint().to_string(),
            status,
            detail: format!("{e}; body: {}", snippet(&bytes)),
        })?;
        Ok((status, value))
    }

    /// A call whose success body carries nothing the caller needs (204, or a health text).
    async fn ignore_body(&self, rb: RequestBuilder) -> Result<(), ClientError> {
        let resp = self.checked(rb).await?;
        let status = resp.status();
        // Read to the end so the connection goes back to the pool.
        resp.bytes().await.map_err(|e| self.body_error(status, e))?;
        Ok(())
    }

    fn body_error(&self, status: StatusCode, e: reqwest::Error) -> ClientError {
        if e.is_timeout() || e.is_body() || e.is_request() {
            ClientError::transport(self.endpoint(), e)
        } else {
            ClientError::Decode {
                endpoint: self.endpoint().to_string(),
                status,
                detail: e.to_string(),
            }
        }
    }

    async fn error_from(&self, resp: Response) -> ClientError {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return self.body_error(status, e),
        };
        decode_error(self.endpoint(), status, retry_after, &bytes)
    }
}

/// The error of a non-2xx answer: the contract's body, or [`ClientError::Decode`] naming the
/// status when the body is something else (a proxy's HTML page, say).
fn decode_error(
    endpoint: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ClientError::Api {
            status,
            code: error.code,
            message: error.message,
            index: error.index,
            may_have_committed: error.may_have_committed.unwrap_or(false),
            retry_after,
        },
        Err(_) => ClientError::Decode {
            endpoint: endpoint.to_string(),
            status,
            detail: if body.is_empty() {
                "no error body".to_string()
            } else {
                format!("not an error body: {}", snippet(body))
            },
        },
    }
}

/// The start of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        let c = Client::new("127.0.0.1:7470", None).unwrap();
        assert_eq!(c.endpoint(), "http://127.0.0.1:7470");
        let c = Client::new("http://127.0.0.1:7470/", None).unwrap();
        assert_eq!(c.endpoint(), "http://127.0.0.1:7470");
        let c = Client::new("https://ipam.example/prefix/", None).unwrap();
        assert_eq!(
            c.url(&["api", "v1", "pools"]).as_str(),
            "https://ipam.example/prefix/api/v1/pools"
        );
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for bad in ["ftp://x", "http://", "http://h/?q=1", "::::"] {
            assert!(
                matches!(
                    Client::new(bad, None),
                    Err(ClientError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_segments_are_escaped() {
        let c = Client::new("http://h:1", None).unwrap();
        assert_eq!(
            c.url(&["api", "v1", "pools", "a/b?c"]).as_str(),
            "http://h:1/api/v1/pools/a%2Fb%3Fc"
        );
        assert_eq!(
            c.url(&["api", "v1", "addresses", "fd00::7"]).as_str(),
            "http://h:1/api/v1/addresses/fd00::7"
        );
    }

    #[test]
    fn error_bodies_decode() {
        let body = br#"{"error":{"code":"pool_exhausted","message":"pool vms is full","index":3,"may_have_committed":true,"extra":1}}"#;
        let e = decode_error(
            "http://h",
            StatusCode::CONFLICT,
            Some(Duration::from_secs(1)),
            body,
        );
        match &e {
            ClientError::Api {
                status,
                code,
                message,
                index,
                may_have_committed,
                retry_after,
            } => {
                assert_eq!(*status, StatusCode::CONFLICT);
                assert_eq!(*code, crate::ErrorCode::PoolExhausted);
                assert_eq!(message, "pool vms is full");
                assert_eq!(*index, Some(3));
                assert!(*may_have_committed);
                assert_eq!(*retry_after, Some(Duration::from_secs(1)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.to_string(), "pool_exhausted: pool vms is full");
        assert!(e.is_conflict());
    }

    #[test]
    fn foreign_error_bodies_are_decode_errors() {
        let e = decode_error(
            "http://h",
            StatusCode::BAD_GATEWAY,
            None,
            b"<html>bad</html>",
        );
        assert!(
            matches!(e, ClientError::Decode { status, .. } if status == StatusCode::BAD_GATEWAY)
        );
        assert!(e.to_string().contains("<html>bad</html>"), "{e}");
        let e = decode_error("http://h", StatusCode::UNAUTHORIZED, None, b"");
        assert!(e.to_string().contains("no error body"), "{e}");
    }
}
