//! The HTTP transport between nodes: openraft's `RaftNetwork` over one shared
//! `reqwest::Client`, and the `/raft/*` axum routes that serve it, plus the forwarding routes
//! (`/raft/propose`, `/raft/read-index`, `/raft/admin`). Bodies are postcard.
//!
//! Every request carries the bearer token (when configured) and the sender's cluster id; a
//! receiver without a cluster id adopts the first it sees, and refuses a different one, so a
//! node cannot be talked into joining two clusters.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use openraft::error::{NetworkError, PayloadTooLarge, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::IpamError;
use crate::node::Core;
use crate::types::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, Node, NodeId, RPCError, RaftError, TypeConfig, VoteRequest,
    VoteResponse,
};

/// Header carrying the sender's cluster id.
pub const CLUSTER_HEADER: &str = "x-ipam-cluster";
/// Largest `/raft/*` body accepted.
pub const RAFT_BODY_LIMIT: usize = 64 << 20;
const CONTENT_TYPE: &str = "application/x-postcard";
const CLUSTER_ID_FILE: &str = "cluster_id";

/// Cluster-level errors as they travel between nodes. Domain errors travel inside the
/// command results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum WireError {
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("no leader")]
    NoLeader,
    #[error("overloaded")]
    Overloaded,
    #[error("deadline exceeded after {waited_ms} ms")]
    DeadlineExceeded { waited_ms: u64 },
    #[error("already initialized")]
    AlreadyInitialized,
    #[error("membership: {0}")]
    Membership(String),
    #[error("unknown node {0}")]
    UnknownNode(u64),
    #[error("shutting down")]
    ShuttingDown,
    #[error("internal: {0}")]
    Internal(String),
}

impl From<WireError> for IpamError {
    fn from(e: WireError) -> Self {
        match e {
            // Callers of the public API only see NotLeader when retries ran out.
            WireError::NotLeader { .. } | WireError::NoLeader => IpamError::NoLeader,
            WireError::Overloaded => IpamError::Overloaded,
            WireError::DeadlineExceeded { waited_ms } => IpamError::DeadlineExceeded { waited_ms },
            WireError::AlreadyInitialized => IpamError::AlreadyInitialized,
            WireError::Membership(m) => IpamError::Membership(m),
            WireError::UnknownNode(id) => IpamError::UnknownNode(id),
            WireError::ShuttingDown => IpamError::ShuttingDown,
            WireError::Internal(m) => IpamError::Internal(m),
        }
    }
}

/// A follower's coalesced commands for the leader.
#[derive(Serialize, Deserialize)]
pub(crate) struct ProposeRequest {
    pub(crate) commands: Vec<ipam_core::Command>,
}

/// Membership changes, forwarded to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum AdminRequest {
    AddLearner { id: NodeId, addr: String },
    PromoteVoter(NodeId),
    ChangeVoters(std::collections::BTreeSet<NodeId>),
    RemoveMember(NodeId),
}

/// Why an outgoing request failed before producing a decoded answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostError {
    #[error("this node is isolated (fault injection)")]
    Isolated,
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: reqwest::Error,
    },
    #[error("request to {addr} timed out")]
    Timeout { addr: String },
    #[error("{addr} answered {status}: {message}")]
    Status {
        addr: String,
        status: u16,
        message: String,
    },
    #[error("request to {addr} failed: {source}")]
    Other {
        addr: String,
        source: reqwest::Error,
    },
    #[error("undecodable answer from {addr}: {source}")]
    Decode {
        addr: String,
        source: postcard::Error,
    },
    #[error("cannot encode request: {0}")]
    Encode(postcard::Error),
}

/// The `Authorization` value carrying `token`; a token that cannot travel in a header (a line
/// break, a control character) is refused here rather than failing every RPC later.
pub(crate) fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, String> {
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token is not a valid HTTP header value".to_string())?;
    v.set_sensitive(true);
    Ok(v)
}

/// Transport state shared by the network factory, its clients and the routes.
pub(crate) struct NetShared {
    client: reqwest::Client,
    scheme: &'static str,
    token: Option<String>,
    /// `Bearer <token>`, built once: every RPC sends it.
    authorization: Option<reqwest::header::HeaderValue>,
    cluster_id: RwLock<Option<String>>,
    cluster_id_path: PathBuf,
    isolated: AtomicBool,
}

impl NetShared {
    /// `authorization` is [`bearer`] of `token`, built by the caller before anything opens.
    pub(crate) fn new(
        token: Option<String>,
        authorization: Option<reqwest::header::HeaderValue>,
        data_dir: &std::path::Path,
        connect_timeout: Duration,
        client: Option<reqwest::Client>,
        scheme: &'static str,
    ) -> Result<NetShared, String> {
        let client = match client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| format!("http client: {e}"))?,
        };
        let cluster_id_path = data_dir.join(CLUSTER_ID_FILE);
        let cluster_id = match std::fs::read_to_string(&cluster_id_path) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("reading {}: {e}", cluster_id_path.display())),
        };
        Ok(NetShared {
            client,
            scheme,
            token,
            authorization,
            cluster_id: RwLock::new(cluster_id),
            cluster_id_path,
            isolated: AtomicBool::new(false),
        })
    }

    pub(crate) fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().ok().and_then(|g| g.clone())
    }

    /// Records the cluster id durably (before any RPC relies on it).
    pub(crate) fn set_cluster_id(&self, id: &str) -> std::io::Result<()> {
        let tmp = self.cluster_id_path.with_extension("tmp");
        std::fs::write(&tmp, id)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.cluster_id_path)?;
        if let Some(dir) = self.cluster_id_path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        if let Ok(mut g) = self.cluster_id.write() {
            *g = Some(id.to_string());
        }
        Ok(())
    }

    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn set_isolated(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::SeqCst);
    }

    pub(crate) fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }

    /// POSTs `req` to `{scheme}://{addr}{path}` and decodes the postcard answer.
    pub(crate) async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PostError> {
        if self.is_isolated() {
            return Err(PostError::Isolated);
        }
        let body = postcard::to_allocvec(req).map_err(PostError::Encode)?;
        let mut builder = self
            .client
            .post(format!("{}://{addr}{path}", self.scheme))
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body);
        if let Some(auth) = &self.authorization {
            builder = builder.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        if let Some(c) = self.cluster_id() {
            builder = builder.header(CLUSTER_HEADER, c);
        }
        let addr_s = || addr.to_string();
        let resp = builder.send().await.map_err(|e| classify(addr, e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| classify(addr, e))?;
        if !status.is_success() {
            return Err(PostError::Status {
                addr: addr_s(),
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        postcard::from_bytes(&bytes).map_err(|source| PostError::Decode {
            addr: addr_s(),
            source,
        })
    }

    /// Checks an incoming `/raft/*` request: isolation, token, cluster id.
    fn admit(&self, headers: &HeaderMap) -> Result<(), Response> {
        if self.is_isolated() {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "node isolated (fault injection)",
            )
                .into_response());
        }
        if let Some(token) = &self.token {
            let given = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // Constant time: the comparison must not tell a prober how much of a guess matched.
            let matches = given.is_some_and(|g| {
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    g.as_bytes(),
                    token.as_bytes(),
                ))
            });
            if !matches {
                return Err((
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: missing or wrong bearer token",
                )
                    .into_response());
            }
        }
        if let Some(theirs) = headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()) {
            match self.cluster_id() {
                Some(ours) if ours != theirs => {
                    tracing::warn!(ours = %ours, theirs = %theirs, "refused a raft RPC from another cluster");
                    return Err((
                        StatusCode::CONFLICT,
                        format!("cluster id mismatch: this node belongs to cluster {ours}, the request comes from cluster {theirs}"),
                    )
                        .into_response());
                }
                Some(_) => {}
                None => {
                    tracing::info!(cluster = %theirs, "adopting the cluster id of the first raft RPC");
                    if let Err(e) = self.set_cluster_id(theirs) {
                        return Err((
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot record cluster id: {e}"),
                        )
                            .into_response());
                    }
                }
            }
        }
        Ok(())
    }
}

fn classify(addr: &str, e: reqwest::Error) -> PostError {
    let addr = addr.to_string();
    if e.is_connect() {
        PostError::Connect { addr, source: e }
    } else if e.is_timeout() {
        PostError::Timeout { addr }
    } else {
        PostError::Other { addr, source: e }
    }
}

/// Creates one [`Peer`] per target; all share the node's HTTP client.
pub struct NetworkFactory {
    pub(crate) net: Arc<NetShared>,
}

/// openraft's connection to one peer.
pub struct Peer {
    net: Arc<NetShared>,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            net: self.net.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let res: Result<Result<Resp, RaftError<E>>, PostError> = self
            .net
            .post(&self.addr, path, req, option.hard_ttl())
            .await;
        match res {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(openraft::error::RPCError::RemoteError(RemoteError::new(
                self.target,
                e,
            ))),
            Err(PostError::Status { status: 413, .. }) => Err(
                openraft::error::RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(1)),
            ),
            // openraft backs off from an unreachable peer instead of retrying at once.
            Err(
                e @ (PostError::Isolated | PostError::Connect { .. } | PostError::Status { .. }),
            ) => Err(openraft::error::RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(openraft::error::RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError> {
        let entries = rpc.entries.len() as u64;
        let too_large = || {
            // openraft retries with fewer entries per request.
            Err(openraft::error::RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2).max(1)),
            ))
        };
        if entries > 1 {
            let size =
                postcard::serialize_with_flavor(&rpc, postcard::ser_flavors::Size::default())
                    .unwrap_or(0);
            if size > RAFT_BODY_LIMIT {
                return too_large();
            }
        }
        match self.call("/raft/append", &rpc, &option).await {
            Err(openraft::error::RPCError::PayloadTooLarge(_)) => too_large(),
            other => other,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RPCError<InstallSnapshotError>> {
        self.call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError> {
        self.call("/raft/vote", &rpc, &option).await
    }
}

fn postcard_response<T: Serialize>(value: &T) -> Response {
    match postcard::to_allocvec(value) {
        Ok(bytes) => ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encode: {e}")).into_response(),
    }
}

fn decode_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    postcard::from_bytes(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid postcard body: {e}"),
        )
            .into_response()
    })
}

/// The `/raft/*` routes of a node.
pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/propose", post(propose))
        .route("/raft/read-index", post(read_index))
        .route("/raft/admin", post(admin))
        .route("/raft/hello", post(hello))
        // Runs before the body is read, so a refused caller gets 401 even for an oversized body.
        .route_layer(axum::middleware::from_fn_with_state(core.clone(), guard))
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT))
        .with_state(core)
}

/// Isolation, token and cluster-id checks of every `/raft/*` request.
async fn guard(
    State(core): State<Arc<Core>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(r) = core.net.admit(req.headers()) {
        return r;
    }
    next.run(req).await
}

async fn append(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    let req: AppendEntriesRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    postcard_response(&core.raft.append_entries(req).await)
}

async fn vote(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    let req: VoteRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    postcard_response(&core.raft.vote(req).await)
}

async fn snapshot(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    let req: InstallSnapshotRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    postcard_response(&core.raft.install_snapshot(req).await)
}

async fn propose(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    let req: ProposeRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let res: Result<Vec<ipam_core::CommandResult>, WireError> =
        core.propose(req.commands, true).await;
    postcard_response(&res.map_err(not_processed))
}

async fn read_index(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    if let Err(r) = decode_body::<()>(&body) {
        return r;
    }
    let res: Result<Option<u64>, WireError> = core.read_index(true).await;
    postcard_response(&res.map_err(not_processed))
}

async fn admin(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    let req: AdminRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let res: Result<(), WireError> = core.admin(req, true).await;
    postcard_response(&res.map_err(not_processed))
}

/// A forwarded request this node did not process because it is stopping: to the sender that
/// is the same as "no leader here", which it retries against the next leader. (A write this
/// node may already have appended answers `DeadlineExceeded` instead.)
fn not_processed(e: WireError) -> WireError {
    match e {
        WireError::ShuttingDown => WireError::NoLeader,
        other => other,
    }
}

/// Answers this node's id: the leader checks who answers at an address (and that it accepts
/// this cluster's token and id) before adding it as a learner.
async fn hello(State(core): State<Arc<Core>>) -> Response {
    postcard_response(&core.id)
}
