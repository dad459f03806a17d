//! What travels between nodes besides openraft's own messages: the forwarded proposals, read
//! barriers and membership changes, their cluster-level error, and the headers and limits of
//! the `/raft/*` routes. A leaf: the client and the server both build on it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{InternalError, IpamError};
use crate::types::NodeId;

/// Header carrying the sender's cluster id.
pub const CLUSTER_HEADER: &str = "x-ipam-cluster";
/// Largest `/raft/*` body accepted.
pub const RAFT_BODY_LIMIT: usize = 64 << 20;
/// Content type of every `/raft/*` body (postcard).
pub(crate) const CONTENT_TYPE: &str = "application/x-postcard";

/// openraft's AppendEntries.
pub(crate) const APPEND: &str = "/raft/append";
/// openraft's Vote.
pub(crate) const VOTE: &str = "/raft/vote";
/// openraft's InstallSnapshot (one chunk).
pub(crate) const SNAPSHOT: &str = "/raft/snapshot";
/// A follower's coalesced commands for the leader ([`ProposeRequest`]).
pub(crate) const PROPOSE: &str = "/raft/propose";
/// A follower's read barrier: the leader's read index.
pub(crate) const READ_INDEX: &str = "/raft/read-index";
/// A membership change forwarded to the leader ([`AdminRequest`]).
pub(crate) const ADMIN: &str = "/raft/admin";
/// Who answers at an address: its node id.
pub(crate) const HELLO: &str = "/raft/hello";
/// Upgrades to a peer stream that carries the routes above (see `stream.rs`).
pub(crate) const STREAM: &str = "/raft/stream";

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
    // New variants go last: this enum travels between nodes of different releases.
    #[error("node {id} is a member at {addr}")]
    NodeIdInUse { id: u64, addr: String },
    #[error("learner {id} matched {matched:?}, not {target}")]
    LearnerNotCaughtUp {
        id: u64,
        matched: Option<u64>,
        target: u64,
    },
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
            WireError::Internal(m) => IpamError::Internal(InternalError::Remote(m)),
            WireError::NodeIdInUse { id, addr } => IpamError::NodeIdInUse { id, addr },
            WireError::LearnerNotCaughtUp {
                id,
                matched,
                target,
            } => IpamError::LearnerNotCaughtUp {
                id,
                matched,
                target,
            },
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
    ChangeVoters(BTreeSet<NodeId>),
    RemoveMember(NodeId),
}
