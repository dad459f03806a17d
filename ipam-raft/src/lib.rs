//! `ipam-raft` replicates `ipam-core` with openraft 0.9.25: it is the only crate that knows
//! openraft. An orchestrator (or `ipam-node`) starts an [`Ipam`] on a data dir, mounts
//! [`Ipam::raft_router`] on its own listener, and calls typed reads and writes on any node:
//! writes are coalesced into log entries and forwarded to the leader, reads come from the local
//! replica behind a read barrier.
//!
//! # Layout
//!
//! Modules depend only on those listed before them (no cycle), except that `ops`, `reads` and
//! `status` add `impl Ipam` blocks on top of `handle`.
//!
//! - [`error`] — [`IpamError`], [`StartError`].
//! - [`types`] — the one `TypeConfig`, the log payload ([`types::Request`]) and aliases for
//!   openraft's generic types and errors.
//! - [`config`] — [`Config`] with its defaults, [`Consistency`].
//! - `disk` — where a data dir keeps its bytes (stores, snapshot files, small files): real
//!   files, or a test's simulated disk (`testing` feature: [`Disk`], [`DiskIo`], for the
//!   power-loss tests); [`SnapshotFile`], openraft's snapshot data on that disk.
//! - `files` — the data dir's `node_id` and `cluster_id` files.
//! - `poison` — locking a mutex whose last holder panicked (one helper for the crate).
//! - [`clock`] — the leader's stamp clock (the only wall-clock read for the log): its source
//!   [`StampClock`], and [`ManualClock`] for tests.
//! - `route` — leader knowledge to a target, and the retry policy shared by writes, read
//!   barriers and membership changes (pure, unit-tested).
//! - [`storage`] — the openraft stores on redb: `log` (`log.redb`), `state_db`, `snapshot`,
//!   `state_machine` (`state.redb`). Also reachable as [`log_store`] and [`state_machine`].
//! - `transport` — between nodes: `rpc` (wire types, a leaf), `client` (openraft's
//!   `RaftNetwork`, forwarding), `server` (the `/raft/*` routes and their guard), `stream`
//!   and `frame` (peer streams: the same calls over connections upgraded from
//!   `/raft/stream`, with HTTP for peers that take none), `held` (commit indexes cut from
//!   append requests and owed to followers), `sent` (snapshots sent, by receiver).
//! - `trace` — the `traceparent` of forwarded calls and the `apply` span of an entry.
//! - `shared` — what every part of a running node shares: raft, transport, readers, leader
//!   knowledge, the clock, the commit index.
//! - `feature` — the cluster-wide feature level: peers' reported levels, the leader's gate
//!   on commands that not every member can apply.
//! - `proposer` — coalesces concurrent commands into one log entry and (`proposer::barrier`)
//!   concurrent read barriers into one leadership check, on the leader or forwarded to it.
//! - `membership` — membership changes on the leader, forwarded from any node.
//! - `tick` — the leader's expiry tick: an entry with no command when a lease is due.
//! - `tasks` — background tasks: commit-index tracking, periodic state flush, the expiry tick.
//! - `purge` — the log purge behind the snapshot, held for a member a snapshot was sent to.
//! - `handle` — [`Ipam`]: start, shutdown, identity, init and membership calls.
//! - `ops` — the typed writes; `reads` — the typed reads; `status` — [`ClusterStatus`].
//! - `pools` — pool updates, ranges and the next-free preview on [`Ipam`].
//! - [`replication`] — `Ipam::replication`: the leader's view of each member's matched index.
//! - `integrity` — [`Ipam::check`], the replica's integrity check
//!   (`storage/state_machine/check.rs`); `backup` — [`Ipam::backup`] and [`restore`]
//!   (`storage/state_machine/backup.rs`).
//! - `reconcile` — [`Ipam::drift`] and [`Ipam::reconcile`] (dry run as a read, real run as
//!   one `Op::Reconcile` decided in `apply`).
//! - [`events`] — `Ipam::events`, `Ipam::history` and `Ipam::watch` ([`events::EventWatch`]):
//!   the event log, read behind the read barrier, and a watch that follows the local replica.
//! - `prefixes` — `Ipam::create_pool_v3`: prefix pools (delegation).
//! - `select` — `Ipam::allocate_any`: an address from the pool `apply` chooses.
//! - `requests` — request ids of this node's proposals (incarnation file) and
//!   `Ipam::with_idempotency_key`.
//! - `leases` — `Ipam`'s lease operations: allocate with a ttl, renew, renew by owner,
//!   cooling counts, log time.
//!
//! The `testing` feature adds `Ipam::set_isolated` (fault injection for partition tests).

// openraft fixes its (large) error types in the traits this crate implements, and axum's
// `Response` is the natural rejection of a route guard: boxing them would only add noise.
#![allow(clippy::result_large_err)]
// The crate is embedded by orchestrators: every public item says what it is for.
#![warn(missing_docs)]

pub mod error;
pub mod types;

pub mod config;
mod disk;
mod files;
mod poison;

pub mod clock;
mod route;
pub mod storage;
mod transport;

mod shared;
mod trace;

mod feature;

mod answers;
mod proposer;
mod purge;

mod membership;
mod tasks;
mod tick;

mod backup;
pub mod events;
mod handle;
mod integrity;
mod leases;
mod ops;
mod pools;
mod prefixes;
mod reads;
mod reconcile;
pub mod replication;
mod requests;
mod select;
mod status;

pub use backup::restore;
pub use clock::{ManualClock, StampClock};
pub use config::{Config, Consistency};
pub use disk::SnapshotFile;
#[cfg(feature = "testing")]
pub use disk::{Boxed as BoxedBackend, Disk, DiskIo};
pub use error::{InternalError, IpamError, StartError};
pub use handle::Ipam;
pub use ipam_core::requests::KeyedRequest;
pub use reconcile::ReconcileRequest;
pub use requests::with_idempotency_key_scope;
pub use status::{ClusterStatus, Member, MemberRole, PeerCalls};
pub use storage::log as log_store;
pub use storage::state_machine;
pub use storage::state_machine::{BackupHeader, CheckReport, RestoreError, Restored};
pub use trace::adopt_remote_parent;
