//! `ipam-raft` replicates `ipam-core` with openraft 0.9.25. It is the only crate that knows
//! openraft.
//!
//! # Layout
//!
//! - [`types`] — the one `TypeConfig`, the log payload and aliases for openraft's generic types.
//! - [`log_store`] — the raft log on `log.redb`.
//! - [`state_machine`] — the state machine on `state.redb`, snapshots.
//! - `network` — the HTTP transport (one shared `reqwest::Client`) and the `/raft/*` router.
//! - `proposer` — coalesces concurrent commands into one log entry.
//! - [`node`] — [`Ipam`], the embeddable handle: config, start, typed reads and writes,
//!   read-through cache, leader forwarding, membership.
//! - [`error`] — [`IpamError`], [`StartError`].

// openraft fixes its (large) error types in the traits this crate implements, and axum's
// `Response` is the natural rejection of a route guard: boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod error;
pub mod log_store;
mod network;
pub mod node;
mod proposer;
pub mod state_machine;
pub mod types;

pub use error::{IpamError, StartError};
pub use node::{ClusterStatus, Config, Consistency, Ipam, Member, MemberRole};
