//! `ipam-raft` replicates `ipam-core` with openraft 0.9.25: it is the only crate that knows
//! openraft. An orchestrator (or `ipam-node`) starts an [`Ipam`] on a data dir, mounts
//! [`Ipam::raft_router`] on its own listener, and calls typed reads and writes on any node:
//! writes are coalesced into log entries and forwarded to the leader, reads come from the local
//! replica behind a read barrier.
//!
//! # Layout
//!
//! - [`types`] — the one `TypeConfig`, the log payload ([`types::Request`]) and aliases for
//!   openraft's generic types and errors.
//! - [`log_store`] — the raft log on `log.redb`: durable appends, vote, committed id, purge
//!   bounded by the state machine's durable applied index.
//! - [`state_machine`] — the state machine on `state.redb` (one redb transaction per applied
//!   batch), streamed file snapshots, snapshot install by file swap.
//! - `network` — the HTTP transport (one shared `reqwest::Client`, postcard bodies) and the
//!   `/raft/*` routes: append, vote, snapshot, propose, read-index, admin, hello; token and
//!   cluster-id checks.
//! - `proposer` — coalesces concurrent commands into one log entry and concurrent read
//!   barriers into one leadership check, on the leader or forwarded to it.
//! - [`node`] — [`Ipam`], the embeddable handle: config, start/shutdown, typed reads and
//!   writes, read-through cache, leader forwarding, membership, status.
//! - [`error`] — [`IpamError`], [`StartError`].
//! - [`clock`] — [`StampClock`], the leader's stamp source, and [`ManualClock`] for tests.
//! - `leases` — `Ipam`'s lease operations: allocate with a ttl, renew, renew by owner, pool
//!   lease settings, cooling counts, log time.
//! - `tick` — the leader's expiry tick: an entry with no command when a lease is due.
//!
//! The `testing` feature adds `Ipam::set_isolated` (fault injection for partition tests).

// openraft fixes its (large) error types in the traits this crate implements, and axum's
// `Response` is the natural rejection of a route guard: boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod clock;
pub mod error;
mod leases;
pub mod log_store;
mod network;
pub mod node;
mod proposer;
pub mod state_machine;
mod tick;
pub mod types;

pub use clock::{ManualClock, StampClock};
pub use error::{IpamError, StartError};
pub use node::{ClusterStatus, Config, Consistency, Ipam, Member, MemberRole};
