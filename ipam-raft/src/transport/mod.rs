//! The HTTP transport between nodes (postcard bodies).
//!
//! - [`rpc`] — wire types of the forwarding calls, their error, headers and paths (a leaf).
//! - [`client`] — the outgoing side: openraft's `RaftNetwork` and the forwarding client.
//! - [`server`] — the incoming side: the `/raft/*` routes and their guard.

pub(crate) mod client;
pub(crate) mod rpc;
pub(crate) mod server;
