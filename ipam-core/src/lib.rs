//! `ipam-core` is the pure domain of raft-ipam: pools, CIDR validation (IPv4 and IPv6),
//! overlap detection, reserved addresses, the allocator, replicated commands and their
//! results, and the deterministic `apply` that turns a list of commands into redb state.
//!
//! It has no clock, no network and no async runtime: time enters only as the [`Stamp`] the
//! leader put on a log entry, and the caller (the raft layer) owns the redb transaction.
//!
//! # Layout
//!
//! - [`types`] — plain values: [`Stamp`], [`Cidr`], [`Reserved`], [`PoolSpec`], [`PoolInfo`],
//!   [`Allocation`], pages and stats.
//! - [`command`] — [`Command`], [`Op`], [`CommandResult`], [`OpOutput`]: what the log carries.
//! - [`error`] — one error enum per operation family, and the contract's [`ErrorCode`].
//! - [`validate`] — stateless input checks and parsers (names, owners, labels, CIDRs,
//!   reserved entries, pool specs, whole ops), run at the edge and again in `apply`.
//! - [`alloc`] — the free-interval index of one pool (`BTreeMap<u128, u128>`).
//! - [`pools`] — second-round pool settings (network config, updates, ranges, freeze) and
//!   the multi-range [`pools::PoolShape`].
//! - [`layout`] — which addresses of a pool are allocatable (network, broadcast, anycast,
//!   gateway, reserved) and its capacity.
//! - [`select`] — choosing the pool: exact score and cap comparison, the label and owner
//!   indexes of selection and (`select/order.rs`) the score order of the pools that can take
//!   an address (`state/select_ops.rs` applies it).
//! - [`state`] — [`State`]: the derived in-memory index plus `apply` over redb tables.
//! - [`query`] — read-only queries over a redb read transaction, and the state digest.
//! - [`tables`] — redb table definitions and key/value encodings.
//! - [`lease`] — lease and cooldown settings of a pool, TTL rules, the cooling index.
//! - `expire` — log time, expiry of due leases and end of cooldowns at the start of each entry.
//! - [`drift`] — drift between the allocations and an observed inventory, and the reconcile
//!   plan (pure; `state/reconcile.rs` applies a real run).
//! - [`feature`] — feature levels: [`feature::required_level`] of a command, this release's
//!   [`feature::FEATURE_LEVEL`].
//! - [`events`] — the event log's records and keys; `state/events.rs` writes and prunes it in
//!   `apply`, `query/events.rs` lists it and an address's history.
//! - [`requests`] — exactly-once: recent request ids and idempotency keys with their
//!   recorded results, and their retention.
//! - [`check`] — the integrity check of the tables and the in-memory index (`src/check.rs`,
//!   a child of `state` so it can read the index).
#![deny(missing_docs)]

pub mod alloc;
pub mod command;
pub mod drift;
pub mod error;
pub mod events;
pub mod feature;
pub mod layout;
pub mod lease;
pub mod pools;
pub mod query;
pub mod requests;
pub mod select;
pub mod state;
pub mod tables;
pub mod types;
pub mod validate;

pub use command::{BatchError, Command, CommandResult, Op, OpOutput};
pub use error::{
    AllocateError, CreatePoolError, DeletePoolError, ErrorCode, InputError, OpError, QueryError,
    ReleaseError, StorageError, Unallocatable,
};
pub use error::{ReconcileError, UpdatePoolError};
pub use events::{Event, EventKind, EventPage};
pub use lease::PoolLifecycle;
pub use pools::{
    NetworkConfig, PoolSettings, PoolSpecV2, PoolSpecV3, PoolUpdate, RangeSpec, Route,
};
pub use state::check;
pub use state::State;
pub use types::{
    AddressInfo, Allocation, AllocationPage, Cidr, Family, GatewayChoice, Labels, PoolId, PoolInfo,
    PoolSpec, PoolStats, Reserved, Stamp,
};
