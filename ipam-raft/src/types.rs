//! The one openraft `TypeConfig` of raft-ipam, the log payload, and aliases for openraft's
//! generic types so the rest of the crate names them once.

use serde::{Deserialize, Serialize};

/// The log payload: the leader's wall-clock stamp and the independent commands coalesced into
/// this entry. Every replica applies the commands with this stamp, so time is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Milliseconds since the Unix epoch on the leader when the entry was proposed.
    pub stamp: ipam_core::Stamp,
    /// Commands, each with its own result.
    pub commands: Vec<ipam_core::Command>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Request(stamp={}, commands={})",
            self.stamp.0,
            self.commands.len()
        )
    }
}

/// The applied result of an entry: one result per command (empty for blank and membership
/// entries).
pub type Response = Vec<ipam_core::CommandResult>;

/// Node id.
pub type NodeId = u64;

/// A member's address: `host:port` of its `/raft/*` routes.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// raft-ipam's openraft type configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::disk::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// Membership as stored with its log id.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot and its data handle.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// openraft's storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// openraft's storage I/O error.
pub type StorageIOError = openraft::StorageIOError<NodeId>;
/// A raft API error carrying `E`.
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
/// An RPC error as the network returns it to openraft.
pub type RPCError<E = openraft::error::Infallible> =
    openraft::error::RPCError<NodeId, Node, RaftError<E>>;
/// Error of `client_write` and membership changes.
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
/// Error of a read barrier.
pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, Node>;
/// Error of `initialize`.
pub type InitializeError = openraft::error::InitializeError<NodeId, Node>;
/// Error of a snapshot chunk install.
pub type InstallSnapshotError = openraft::error::InstallSnapshotError;
/// "Not the leader; try this one".
pub type ForwardToLeader = openraft::error::ForwardToLeader<NodeId, Node>;
/// Response of `client_write`.
pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
/// AppendEntries request.
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
/// AppendEntries response.
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
/// Vote request.
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
/// Vote response.
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
/// Snapshot chunk request.
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
/// Snapshot chunk response.
pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
