//! The incoming side of the transport: the `/raft/*` axum routes — openraft's append, vote and
//! snapshot, and the forwarding routes (propose, read-index, admin, hello) — behind one guard
//! that checks isolation, the bearer token (in constant time) and the cluster id.
//!
//! A receiver without a cluster id adopts the first it sees, and refuses a different one, so a
//! node cannot be talked into joining two clusters.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument as _;

use super::client::NetShared;
use super::rpc::{
    AdminRequest, ProposeRequest, WireError, ADMIN, APPEND, CLUSTER_HEADER, CONTENT_TYPE, HELLO,
    PROPOSE, RAFT_BODY_LIMIT, READ_INDEX, SNAPSHOT, VOTE,
};
use crate::proposer::Proposer;
use crate::shared::Shared;
use crate::types::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

/// What the routes need: the node's shared state and its proposer.
#[derive(Clone)]
pub(crate) struct ServerState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) proposer: Proposer,
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
pub(crate) fn router(state: ServerState) -> Router {
    Router::new()
        .route(APPEND, post(append))
        .route(VOTE, post(vote))
        .route(SNAPSHOT, post(snapshot))
        .route(PROPOSE, post(propose))
        .route(READ_INDEX, post(read_index))
        .route(ADMIN, post(admin))
        .route(HELLO, post(hello))
        // Runs before the body is read, so a refused caller gets 401 even for an oversized body.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT))
        .with_state(state)
}

/// Isolation, token and cluster-id checks of every `/raft/*` request.
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
    let req: AppendEntriesRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    postcard_response(&s.shared.raft.append_entries(req).await)
}

async fn vote(State(s): State<ServerState>, body: Bytes) -> Response {
    let req: VoteRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    postcard_response(&s.shared.raft.vote(req).await)
}

async fn snapshot(State(s): State<ServerState>, body: Bytes) -> Response {
    let req: InstallSnapshotRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    postcard_response(&s.shared.raft.install_snapshot(req).await)
}

async fn propose(State(s): State<ServerState>, headers: HeaderMap, body: Bytes) -> Response {
    let req: ProposeRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    // A follower's forwarded write: its trace continues here.
    let span = tracing::info_span!("raft.propose", commands = req.commands.len());
    crate::trace::adopt_remote_parent(&span, &headers);
    let res: Result<Vec<ipam_core::CommandResult>, WireError> = s
        .proposer
        .propose(req.commands, true)
        .instrument(span)
        .await;
    postcard_response(&res.map_err(not_processed))
}

async fn read_index(State(s): State<ServerState>, body: Bytes) -> Response {
    if let Err(r) = decode_body::<()>(&body) {
        return r;
    }
    let res: Result<Option<u64>, WireError> = s.proposer.read_index(true).await;
    postcard_response(&res.map_err(not_processed))
}

async fn admin(State(s): State<ServerState>, body: Bytes) -> Response {
    let req: AdminRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let res: Result<(), WireError> = s.shared.admin(req, true).await;
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
async fn hello(State(s): State<ServerState>) -> Response {
    postcard_response(&s.shared.id)
}
