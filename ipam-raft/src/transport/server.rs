//! The incoming side of the transport: the `/raft/*` axum routes — openraft's append, vote and
//! snapshot, and the forwarding routes (propose, read-index, admin, hello) — behind one guard
//! that checks isolation, the bearer token (in constant time) and the cluster id; and
//! `/raft/stream`, which upgrades to a peer stream carrying the same calls. Both ways end in
//! one dispatch (`ServerState`'s [`stream::Dispatch`]).
//!
//! A receiver without a cluster id adopts the first it sees, and refuses a different one, so a
//! node cannot be talked into joining two clusters.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument as _;

use super::client::NetShared;
use super::frame::{self, Kind};
use super::rpc::{
    AdminRequest, ProposeRequest, WireError, ADMIN, APPEND, CLUSTER_HEADER, CONTENT_TYPE, HELLO,
    PROPOSE, RAFT_BODY_LIMIT, READ_INDEX, SNAPSHOT, STREAM, VOTE,
};
use super::stream::{self, Dispatch as _};
use crate::proposer::Proposer;
use crate::shared::Shared;
use crate::types::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

/// What the routes need: the node's shared state and its proposer.
#[derive(Clone)]
pub(crate) struct ServerState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) proposer: Proposer,
    /// Ends the node's peer streams when it stops.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Checks an incoming `/raft/*` request: isolation, token, cluster id.
fn admit(net: &NetShared, headers: &HeaderMap) -> Result<(), Response> {
    if net.is_isolated() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "node isolated (fault injection)",
        )
            .into_response());
    }
    if let Some(token) = &net.token {
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
        match net.cluster_id() {
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
                if let Err(e) = net.set_cluster_id(theirs) {
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

/// A route's answer: an HTTP status and its body (postcard on 200, a message otherwise).
type Answer = (u16, Vec<u8>);

fn postcard_answer<T: Serialize>(value: &T) -> Answer {
    match postcard::to_allocvec(value) {
        Ok(bytes) => (200, bytes),
        Err(e) => (500, format!("encode: {e}").into_bytes()),
    }
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Answer> {
    postcard::from_bytes(body)
        .map_err(|e| (400, format!("invalid postcard body: {e}").into_bytes()))
}

/// An answer as an HTTP response.
fn http_answer((status, body): Answer) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::OK {
        ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
    } else {
        (status, body).into_response()
    }
}

/// The `/raft/*` routes of a node.
pub(crate) fn router(state: ServerState) -> Router {
    Router::new()
        .route(APPEND, post(append))
        .route(VOTE, post(vote))
        .route(SNAPSHOT, post(snapshot))
        .route(PROPOSE, post(propose))
        .route(READ_INDEX, post(read_index))
        .route(ADMIN, post(admin))
        .route(HELLO, post(hello))
        .route(STREAM, get(stream))
        // Runs before the body is read, so a refused caller gets 401 even for an oversized body.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT))
        .with_state(state)
}

/// Isolation, token and cluster-id checks of every `/raft/*` request (and of a stream's
/// upgrade, once for all the calls on it).
async fn guard(
    State(s): State<ServerState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let from = req
        .headers()
        .get(crate::feature::FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let level = crate::feature::parse_level(req.headers().get(crate::feature::LEVEL_HEADER));
    let admitted = admit(&s.shared.net, req.headers());
    if let (Some(from), Ok(())) = (from, &admitted) {
        s.shared.net.record_level(&from, level);
    }
    let mut response = match admitted {
        Err(r) => r,
        Ok(()) => next.run(req).await,
    };
    response.headers_mut().insert(
        crate::feature::LEVEL_HEADER,
        axum::http::HeaderValue::from(s.shared.config.feature_level),
    );
    response
}

async fn append(State(s): State<ServerState>, body: Bytes) -> Response {
    http_answer(s.call(Kind::Append, &body, None).await)
}

async fn vote(State(s): State<ServerState>, body: Bytes) -> Response {
    http_answer(s.call(Kind::Vote, &body, None).await)
}

async fn snapshot(State(s): State<ServerState>, body: Bytes) -> Response {
    http_answer(s.call(Kind::Snapshot, &body, None).await)
}

async fn propose(State(s): State<ServerState>, headers: HeaderMap, body: Bytes) -> Response {
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    http_answer(s.call(Kind::Propose, &body, traceparent).await)
}

async fn read_index(State(s): State<ServerState>, body: Bytes) -> Response {
    http_answer(s.call(Kind::ReadIndex, &body, None).await)
}

async fn admin(State(s): State<ServerState>, body: Bytes) -> Response {
    http_answer(s.call(Kind::Admin, &body, None).await)
}

/// Answers this node's id: the leader checks who answers at an address (and that it accepts
/// this cluster's token and id) before adding it as a learner.
async fn hello(State(s): State<ServerState>) -> Response {
    http_answer(s.call(Kind::Hello, &[], None).await)
}

/// Upgrades the connection to a peer stream (the guard has admitted the caller) and serves
/// calls on it from a task of its own.
async fn stream(State(s): State<ServerState>, mut req: axum::extract::Request) -> Response {
    let upgrade = req.headers().get(axum::http::header::UPGRADE);
    if upgrade.and_then(|v| v.to_str().ok()) != Some(frame::PROTOCOL) {
        return (
            StatusCode::BAD_REQUEST,
            format!("expected Upgrade: {}", frame::PROTOCOL),
        )
            .into_response();
    }
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        // Served without upgrade support (a test's `oneshot`): the caller goes by HTTP.
        return (StatusCode::NOT_IMPLEMENTED, "this server does not upgrade").into_response();
    };
    let shutdown = s.shutdown.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                stream::serve(s, hyper_util::rt::TokioIo::new(upgraded), shutdown).await;
            }
            Err(e) => tracing::debug!(error = %e, "peer stream upgrade failed"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (axum::http::header::CONNECTION, "upgrade"),
            (axum::http::header::UPGRADE, frame::PROTOCOL),
        ],
    )
        .into_response()
}

impl stream::Dispatch for ServerState {
    fn refusal(&self) -> Option<(u16, &'static str)> {
        self.shared
            .net
            .is_isolated()
            .then_some((503, "node isolated (fault injection)"))
    }

    /// One call, whichever way it came: the route's status and body.
    async fn call(&self, kind: Kind, body: &[u8], traceparent: Option<String>) -> Answer {
        let s = self;
        match kind {
            Kind::Append => match decode_body::<AppendEntriesRequest>(body) {
                Ok(req) => postcard_answer(&s.shared.raft.append_entries(req).await),
                Err(a) => a,
            },
            Kind::Vote => match decode_body::<VoteRequest>(body) {
                Ok(req) => postcard_answer(&s.shared.raft.vote(req).await),
                Err(a) => a,
            },
            Kind::Snapshot => match decode_body::<InstallSnapshotRequest>(body) {
                Ok(req) => postcard_answer(&s.shared.raft.install_snapshot(req).await),
                Err(a) => a,
            },
            Kind::Propose => {
                let req: ProposeRequest = match decode_body(body) {
                    Ok(r) => r,
                    Err(a) => return a,
                };
                // A follower's forwarded write: its trace continues here.
                let span = tracing::info_span!("raft.propose", commands = req.commands.len());
                if let Some(tp) = traceparent.and_then(|t| HeaderValue::from_str(&t).ok()) {
                    let mut headers = HeaderMap::new();
                    headers.insert("traceparent", tp);
                    crate::trace::adopt_remote_parent(&span, &headers);
                }
                let res: Result<Vec<ipam_core::CommandResult>, WireError> = s
                    .proposer
                    .propose(req.commands, true)
                    .instrument(span)
                    .await;
                postcard_answer(&res.map_err(not_processed))
            }
            Kind::ReadIndex => {
                if let Err(a) = decode_body::<()>(body) {
                    return a;
                }
                let res: Result<Option<u64>, WireError> = s.proposer.read_index(true).await;
                postcard_answer(&res.map_err(not_processed))
            }
            Kind::Admin => {
                let req: AdminRequest = match decode_body(body) {
                    Ok(r) => r,
                    Err(a) => return a,
                };
                let res: Result<(), WireError> = s.shared.admin(req, true).await;
                postcard_answer(&res.map_err(not_processed))
            }
            Kind::Hello => postcard_answer(&s.shared.id),
        }
    }
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
