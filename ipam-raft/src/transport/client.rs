//! The outgoing side of the transport: one shared `reqwest::Client` with the bearer token and
//! cluster id on every request, openraft's `RaftNetwork` over it, and [`NetShared::post`] for
//! the forwarding calls. Also holds this node's cluster id and its fault-injection switch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::error::{NetworkError, PayloadTooLarge, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::frame::{self, Kind};
use super::rpc::{APPEND, CLUSTER_HEADER, CONTENT_TYPE, RAFT_BODY_LIMIT, SNAPSHOT, STREAM, VOTE};
use super::stream::{self, CallError, Streams};
use crate::error::StartError;
use crate::files;
use crate::types::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, LogId, Node, NodeId, RPCError, RaftError, TypeConfig, VoteRequest,
    VoteResponse,
};

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
    #[error("call to {addr} failed: {source}")]
    Stream {
        addr: String,
        source: super::stream::CallError,
    },
}

/// The `Authorization` value carrying `token`; a token that cannot travel in a header (a line
/// break, a control character) is refused here rather than failing every RPC later.
pub(crate) fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, StartError> {
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| StartError::Config("the token is not a valid HTTP header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Transport state shared by the network factory, its clients and the routes.
pub(crate) struct NetShared {
    client: reqwest::Client,
    /// `http` or `https`.
    scheme: &'static str,
    /// Required on incoming `/raft/*` requests (checked by the server).
    pub(crate) token: Option<String>,
    /// `Bearer <token>`, built once: every RPC sends it.
    authorization: Option<reqwest::header::HeaderValue>,
    cluster_id: RwLock<Option<String>>,
    cluster_id_path: PathBuf,
    /// The data dir's disk, where the cluster id is recorded.
    disk: crate::disk::Disk,
    isolated: AtomicBool,
    /// Feature level each peer address last reported (see `feature.rs`).
    levels: RwLock<std::collections::BTreeMap<String, u32>>,
    /// This node's advertised address and feature level, sent on every request.
    identity: RwLock<Option<(reqwest::header::HeaderValue, reqwest::header::HeaderValue)>>,
    /// Idle peer streams (each with whether it was opened with a cluster id), and peers that
    /// take none.
    streams: Streams<(stream::ClientConn, bool)>,
    /// Calls made over streams and over HTTP, and streams opened (see `PeerCalls`).
    stream_calls: AtomicU64,
    http_calls: AtomicU64,
    streams_opened: AtomicU64,
    /// How far this node's log is on disk (set at start): the commit index sent to followers
    /// never passes it ([`commit_to_send`]).
    log_durable: std::sync::OnceLock<tokio::sync::watch::Receiver<crate::storage::wal::LogDurable>>,
    /// Commit indexes cut for that reason, owed to each follower until sent.
    pub(crate) held: super::held::HeldCommits,
    /// Snapshots sent, by receiver (`crate::purge` keeps the log after them).
    pub(crate) snapshots_sent: super::sent::SnapshotsSent,
    /// Counts changes of `levels`: a leader waiting for a member's first report wakes on it.
    levels_version: tokio::sync::watch::Sender<u64>,
}

/// The commit index a leader may tell its followers: openraft's, but never past what its own
/// log holds on disk. A leader acknowledges its own appends before their sync
/// (`storage::log`), so openraft may count its copy toward a commit that only one follower has
/// on disk; a follower that applied such an entry could not take it back if the leader lost
/// power and the other two elected a leader without it. Held back here, the entry applies
/// nowhere until a majority has it on disk.
pub(crate) fn commit_to_send(
    leader_commit: Option<LogId>,
    on_disk: Option<LogId>,
) -> Option<LogId> {
    leader_commit.min(on_disk)
}

impl NetShared {
    /// `authorization` is [`bearer`] of `token`, built by the caller before anything opens.
    pub(crate) fn new(
        token: Option<String>,
        authorization: Option<reqwest::header::HeaderValue>,
        data_dir: &Path,
        disk: crate::disk::Disk,
        connect_timeout: Duration,
        client: Option<reqwest::Client>,
        scheme: &'static str,
    ) -> Result<NetShared, StartError> {
        let client = match client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .map_err(StartError::HttpClient)?,
        };
        let cluster_id_path = files::cluster_id_path(data_dir);
        let cluster_id =
            files::read_cluster_id(&disk, &cluster_id_path).map_err(|source| StartError::Io {
                path: cluster_id_path.clone(),
                source,
            })?;
        Ok(NetShared {
            client,
            scheme,
            token,
            authorization,
            cluster_id: RwLock::new(cluster_id),
            cluster_id_path,
            disk,
            isolated: AtomicBool::new(false),
            levels: RwLock::new(std::collections::BTreeMap::new()),
            identity: RwLock::new(None),
            streams: Streams::default(),
            stream_calls: AtomicU64::new(0),
            http_calls: AtomicU64::new(0),
            streams_opened: AtomicU64::new(0),
            log_durable: std::sync::OnceLock::new(),
            held: super::held::HeldCommits::default(),
            snapshots_sent: super::sent::SnapshotsSent::default(),
            levels_version: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The feature level `addr` last reported, if it ever answered or called.
    pub(crate) fn level_of(&self, addr: &str) -> Option<u32> {
        self.levels.read().ok()?.get(addr).copied()
    }

    /// Records the feature level `addr` reported.
    pub(crate) fn record_level(&self, addr: &str, level: u32) {
        let changed = self.levels.write().is_ok_and(|mut levels| {
            levels.get(addr) != Some(&level) && {
                levels.insert(addr.to_string(), level);
                true
            }
        });
        if changed {
            self.levels_version.send_modify(|v| *v += 1);
        }
    }

    /// Changes whenever a peer reports a level it had not reported before.
    pub(crate) fn levels_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.levels_version.subscribe()
    }

    /// Sets what every request tells its receiver about this node: its advertised address and
    /// feature level (so a follower knows its leader's level before it ever calls it).
    pub(crate) fn set_identity(&self, advertise: &str, level: u32) {
        let addr = reqwest::header::HeaderValue::from_str(advertise).ok();
        if let (Some(addr), Ok(mut identity)) = (addr, self.identity.write()) {
            *identity = Some((addr, reqwest::header::HeaderValue::from(level)));
        }
    }

    pub(crate) fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().ok().and_then(|g| g.clone())
    }

    /// Records the cluster id durably (before any RPC relies on it).
    pub(crate) fn set_cluster_id(&self, id: &str) -> std::io::Result<()> {
        self.disk
            .write_atomic(&self.cluster_id_path, id.as_bytes())?;
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

    /// Clamps append requests' commit index to what `durable` says is on disk.
    pub(crate) fn set_log_durable(
        &self,
        durable: tokio::sync::watch::Receiver<crate::storage::wal::LogDurable>,
    ) {
        let _ = self.log_durable.set(durable);
    }

    pub(crate) fn log_durable(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<crate::storage::wal::LogDurable>> {
        self.log_durable.get().cloned()
    }

    /// The commit to send with an append request (what the log has on disk of `leader_commit`).
    fn clamp_commit(&self, leader_commit: Option<LogId>) -> Option<LogId> {
        match self.log_durable.get() {
            Some(durable) => commit_to_send(leader_commit, durable.borrow().last),
            None => leader_commit,
        }
    }

    /// Sends a follower the commit index it is owed (see [`super::held`]): a commit-only
    /// append request, as openraft's heartbeat is. Its answer changes nothing here: refused
    /// (a newer leader) or lost, openraft's next request to that follower carries the commit.
    pub(crate) async fn pay(&self, owed: super::held::Owed, timeout: Duration) {
        let req = AppendEntriesRequest {
            vote: owed.vote,
            prev_log_id: owed.last,
            leader_commit: Some(owed.commit),
            entries: Vec::new(),
        };
        let res: Result<Result<AppendEntriesResponse, RaftError>, PostError> =
            self.post(&owed.addr, APPEND, &req, timeout).await;
        if let Err(e) = res {
            tracing::debug!(addr = %owed.addr, error = %e, "sending a held-back commit failed");
        }
    }

    pub(crate) fn peer_calls(&self) -> crate::status::PeerCalls {
        crate::status::PeerCalls {
            stream: self.stream_calls.load(Ordering::Relaxed),
            http: self.http_calls.load(Ordering::Relaxed),
            streams_opened: self.streams_opened.load(Ordering::Relaxed),
        }
    }

    /// Calls the `/raft/*` route at `path` on `addr` with `req` and decodes the postcard
    /// answer: over a peer stream when the peer takes one (see [`super::stream`]), else as
    /// an HTTP POST to `{scheme}://{addr}{path}`.
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
        let mut trace = reqwest::header::HeaderMap::new();
        crate::trace::inject_current(&mut trace);
        let deadline = tokio::time::Instant::now() + timeout;
        let answer = match Kind::of_path(path) {
            Some(kind) if self.streams.usable(addr, Instant::now()) => {
                let traceparent = trace.get("traceparent").and_then(|v| v.to_str().ok());
                let call = frame::encode_call(kind, traceparent, &body);
                match self.call_stream(addr, &call, deadline).await? {
                    Some(answer) => answer,
                    None => self.post_http(addr, path, trace, body, deadline).await?,
                }
            }
            _ => self.post_http(addr, path, trace, body, deadline).await?,
        };
        let (status, bytes) = answer;
        if !(200..300).contains(&status) {
            return Err(PostError::Status {
                addr: addr.to_string(),
                status,
                message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        postcard::from_bytes(&bytes).map_err(|source| PostError::Decode {
            addr: addr.to_string(),
            source,
        })
    }

    /// A request to `addr` with the headers every `/raft/*` request carries: the token, the
    /// cluster id and this node's identity.
    fn request(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let mut builder = self
            .client
            .request(method, format!("{}://{addr}{path}", self.scheme))
            .timeout(timeout);
        if let Some(auth) = &self.authorization {
            builder = builder.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        if let Some(c) = self.cluster_id() {
            builder = builder.header(CLUSTER_HEADER, c);
        }
        if let Some((from, level)) = self.identity.read().ok().and_then(|i| i.clone()) {
            builder = builder
                .header(crate::feature::FROM_HEADER, from)
                .header(crate::feature::LEVEL_HEADER, level);
        }
        builder
    }

    /// One call as an HTTP POST: its status and body.
    async fn post_http(
        &self,
        addr: &str,
        path: &str,
        trace: reqwest::header::HeaderMap,
        body: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> Result<(u16, axum::body::Bytes), PostError> {
        self.http_calls.fetch_add(1, Ordering::Relaxed);
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let resp = self
            .request(reqwest::Method::POST, addr, path, timeout)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .headers(trace)
            .body(body)
            .send()
            .await
            .map_err(|e| classify(addr, e))?;
        let status = resp.status().as_u16();
        let level = crate::feature::parse_level(resp.headers().get(crate::feature::LEVEL_HEADER));
        self.record_level(addr, level);
        let bytes = resp.bytes().await.map_err(|e| classify(addr, e))?;
        Ok((status, bytes))
    }

    /// One call on a stream to `addr`: an idle one, else a new one. `None` when `addr`
    /// refused the upgrade (an older release): the caller goes by HTTP.
    ///
    /// A reused stream that fails before any byte of its answer is replaced once and the
    /// call resent (see [`CallError::NotTaken`]). A stream opened before this node had a
    /// cluster id is not reused once it has one: the receiver checks the id at the upgrade
    /// only, where an HTTP call carries it every time.
    async fn call_stream(
        &self,
        addr: &str,
        call: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<Option<(u16, axum::body::Bytes)>, PostError> {
        let mut reused_failed = false;
        loop {
            let has_id = self.cluster_id().is_some();
            let idle = self
                .streams
                .checkout(addr, Instant::now())
                .filter(|(_, opened_with_id)| *opened_with_id || !has_id);
            let (mut conn, reused) = match idle {
                Some((conn, _)) if !reused_failed => (conn, true),
                _ => match self.open_stream(addr, deadline).await? {
                    Some(conn) => (conn, false),
                    None => return Ok(None),
                },
            };
            self.stream_calls.fetch_add(1, Ordering::Relaxed);
            let exchanged = tokio::time::timeout_at(deadline, stream::exchange(&mut conn, call))
                .await
                .map_err(|_| PostError::Timeout {
                    addr: addr.to_string(),
                })?;
            match exchanged {
                Ok((status, body)) => {
                    // After a 413 the server closes the stream (the frame's end is unknown).
                    if status != 413 {
                        self.streams.checkin(addr, (conn, has_id), Instant::now());
                    }
                    return Ok(Some((status, body.into())));
                }
                Err(CallError::NotTaken(_)) if reused && !reused_failed => reused_failed = true,
                Err(e) => {
                    return Err(PostError::Stream {
                        addr: addr.to_string(),
                        source: e,
                    })
                }
            }
        }
    }

    /// Opens a stream to `addr`; `None` when it refused the upgrade as a route it does not
    /// know, and is then called over HTTP for a while.
    async fn open_stream(
        &self,
        addr: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<stream::ClientConn>, PostError> {
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let resp = self
            .request(reqwest::Method::GET, addr, STREAM, timeout)
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, frame::PROTOCOL)
            .send()
            .await
            .map_err(|e| classify(addr, e))?;
        let status = resp.status();
        let level = crate::feature::parse_level(resp.headers().get(crate::feature::LEVEL_HEADER));
        if status == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            self.streams_opened.fetch_add(1, Ordering::Relaxed);
            self.record_level(addr, level);
            let upgraded = tokio::time::timeout_at(deadline, resp.upgrade())
                .await
                .map_err(|_| PostError::Timeout {
                    addr: addr.to_string(),
                })?
                .map_err(|e| classify(addr, e))?;
            return Ok(Some(tokio::io::BufReader::new(upgraded)));
        }
        if stream::refused_as_unknown(status.as_u16()) {
            tracing::debug!(addr, %status, "peer takes no stream; calling it over HTTP");
            self.streams.refused(addr, Instant::now());
            return Ok(None);
        }
        // Refused as a call would be (token, cluster id, isolation): the same error.
        self.record_level(addr, level);
        let message = resp.text().await.unwrap_or_default();
        Err(PostError::Status {
            addr: addr.to_string(),
            status: status.as_u16(),
            message: message.chars().take(500).collect(),
        })
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
        mut rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError> {
        let wanted = rpc.leader_commit;
        rpc.leader_commit = self.net.clamp_commit(wanted);
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
        let _inflight = self.net.held.start(self.target);
        let res = self.call(APPEND, &rpc, &option).await;
        if let Ok(AppendEntriesResponse::Success) = res {
            let last = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
            let answered = super::held::Answered {
                addr: &self.addr,
                vote: rpc.vote,
                last,
                wanted,
                sent: rpc.leader_commit,
            };
            self.net.held.answered(self.target, &answered);
        }
        match res {
            Err(openraft::error::RPCError::PayloadTooLarge(_)) => too_large(),
            other => other,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RPCError<InstallSnapshotError>> {
        if let Some(last) = rpc.meta.last_log_id {
            self.net
                .snapshots_sent
                .chunk(self.target, last.index, Instant::now());
        }
        self.call(SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError> {
        self.call(VOTE, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests;
