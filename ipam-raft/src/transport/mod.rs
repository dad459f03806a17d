//! The transport between nodes: `/raft/*` routes with postcard bodies, over HTTP or over
//! peer streams upgraded from it.
//!
//! - [`rpc`] — wire types of the forwarding calls, their error, headers and paths (a leaf).
//! - [`client`] — the outgoing side: openraft's `RaftNetwork` and the forwarding client.
//! - [`server`] — the incoming side: the `/raft/*` routes and their guard.
//! - [`stream`] — peer streams: the same calls over connections upgraded from `/raft/stream`,
//!   and the client's pool of them.
//! - [`frame`] — a peer stream's framing (a leaf).
//! - [`held`] — commit indexes cut from append requests and owed to followers (a leaf).
//! - [`sent`] — snapshots sent, by receiver, for the log purge (a leaf).

pub(crate) mod client;
pub(crate) mod frame;
pub(crate) mod held;
pub(crate) mod rpc;
pub(crate) mod sent;
pub(crate) mod server;
pub(crate) mod stream;
