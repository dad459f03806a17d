//! Errors of the embeddable handle: domain errors from `ipam-core` wrapped with cluster errors.

use ipam_core::{BatchError, OpError, QueryError};

/// Error of any [`crate::Ipam`] call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// The operation was refused by the domain (bad input, not found, conflict).
    #[error(transparent)]
    Op(#[from] OpError),
    /// An atomic batch failed at `index`; nothing of it applied.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A read was refused by the domain.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// No leader is known (election under way, or this node is cut off). Retry later.
    #[error("no leader is known; retry later")]
    NoLeader,
    /// The write queue is full. Retry later.
    #[error("the write queue is full; retry later")]
    Overloaded,
    /// The deadline passed before the write was acknowledged; it may still commit.
    #[error("deadline exceeded after {waited_ms} ms; the write may still apply")]
    DeadlineExceeded {
        /// How long the call waited.
        waited_ms: u64,
    },
    /// `init` on a node that is already part of a cluster.
    #[error("this node is already initialized")]
    AlreadyInitialized,
    /// A membership change names an unknown node, or would leave no voter, etc.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A node id is not a member / learner of the cluster.
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(u64),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Storage or another internal failure (a bug or a broken disk, never bad input).
    #[error("internal error: {0}")]
    Internal(#[source] InternalError),
    /// A learner was to be added with an id that a live member already uses at another
    /// address; adding it would evict that member.
    #[error("node id {id} is in use by the member at {addr}")]
    NodeIdInUse {
        /// The id.
        id: u64,
        /// The address the member answers at.
        addr: String,
    },
    /// A learner to promote has not replicated the log up to the commit index of the call
    /// within the wait; promoting it would stall every write until it answers.
    #[error(
        "learner {id} has not caught up (matched {matched:?}, needs {target}); nothing changed"
    )]
    LearnerNotCaughtUp {
        /// The learner.
        id: u64,
        /// Its matched log index as the leader last saw it.
        matched: Option<u64>,
        /// The commit index it had to reach.
        target: u64,
    },
    /// The idempotency key was recorded with a different request (method, path, query or
    /// body); nothing was executed.
    #[error("idempotency key {key:?} was used with a different request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
}

impl From<InternalError> for IpamError {
    fn from(e: InternalError) -> Self {
        IpamError::Internal(e)
    }
}

/// What went wrong inside a node (a bug or a broken disk, never bad input): the source of
/// [`IpamError::Internal`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InternalError {
    /// The state machine answered an operation with another operation's result.
    #[error("{op} got the result of another operation")]
    WrongResult {
        /// The operation asked for.
        op: &'static str,
    },
    /// The proposer answered a different number of results than commands were sent.
    #[error("{results} results for {commands} commands")]
    ResultCount {
        /// Results received.
        results: usize,
        /// Commands sent.
        commands: usize,
    },
    /// A read transaction on the local replica could not start.
    #[error("reading the local replica")]
    StateRead(#[source] redb::TransactionError),
    /// A blocking task panicked or was cancelled.
    #[error("a blocking task failed")]
    Task(#[source] tokio::task::JoinError),
    /// Recording the cluster id in the data dir failed.
    #[error("recording the cluster id")]
    ClusterId(#[source] std::io::Error),
    /// openraft failed while shutting down.
    #[error("shutting raft down")]
    RaftShutdown(#[source] tokio::task::JoinError),
    /// The stores were still open some time after shutdown.
    #[error("the stores were not closed within {secs} s of shutdown")]
    CloseTimeout {
        /// How long shutdown waited.
        secs: u64,
    },
    /// The node that ran the request (the leader) failed internally; its description.
    #[error("on the leader: {0}")]
    Remote(String),
    /// The state machine's storage failed (a check, a backup). Boxed: openraft's storage
    /// error would make every `IpamError` several times larger.
    #[error("state machine storage")]
    Storage(#[source] Box<crate::types::StorageError>),
}

/// Error of [`crate::Ipam::start`]. openraft's errors are boxed: they are large, and this
/// error travels up through the node's own error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data dir belongs to another node id.
    #[error("data dir {dir} belongs to node {recorded}, not {configured}; use --id {recorded} or another data dir")]
    NodeIdMismatch {
        /// The data dir.
        dir: String,
        /// The id recorded there.
        recorded: u64,
        /// The id configured.
        configured: u64,
    },
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// openraft refused the derived raft configuration.
    #[error("invalid raft configuration")]
    RaftConfig(#[source] Box<openraft::ConfigError>),
    /// A file of the data dir could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the data dir holds something this release cannot read.
    #[error("{} is corrupt: {content:?}", path.display())]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What it holds.
        content: String,
    },
    /// Opening or recovering the raft stores failed.
    #[error("opening the raft stores")]
    Storage(#[source] Box<crate::types::StorageError>),
    /// openraft failed to start on the opened stores.
    #[error("starting raft")]
    Raft(#[source] Box<openraft::error::Fatal<crate::types::NodeId>>),
    /// The transport's HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A blocking start-up task panicked or was cancelled.
    #[error("a start-up task failed")]
    Task(#[source] tokio::task::JoinError),
}
