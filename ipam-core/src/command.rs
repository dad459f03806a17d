//! Replicated commands and their results.
//!
//! A raft log entry carries a [`Stamp`](crate::Stamp) and a list of independent [`Command`]s. Each command
//! gets exactly one [`CommandResult`]. postcard encodes enum variants by position, so these
//! enums are append-only: new variants go last, existing ones never change shape.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::drift::{ReconcileReport, ReconcileSpec};
use crate::error::OpError;
use crate::pools::{PoolSpecV2, PoolSpecV3, PoolUpdate};
use crate::types::{Allocation, Cidr, Family, GatewayChoice, Labels, PoolInfo, PoolSpec};

/// One operation on the state. Every operation is also a batch op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create a pool.
    CreatePool(PoolSpec),
    /// Delete a pool; refused while it has allocations unless `force`, which drops them.
    DeletePool {
        /// Pool name.
        pool: String,
        /// Also drop the pool's allocations.
        force: bool,
    },
    /// Allocate an address for `owner`: the lowest free one, or `ip` if given. Idempotent by
    /// owner: an owner that already holds an address in the pool gets that allocation back.
    Allocate {
        /// Pool name.
        pool: String,
        /// Opaque owner, 1..=253 bytes.
        owner: String,
        /// A specific address, or `None` for the lowest free one.
        ip: Option<IpAddr>,
        /// Labels of the allocation.
        labels: Labels,
    },
    /// Release an address, optionally fenced by the allocation's generation.
    Release {
        /// Pool name.
        pool: String,
        /// The allocated address.
        ip: IpAddr,
        /// When given, release only if the allocation's generation equals it.
        generation: Option<u64>,
    },
    /// Release every address `owner` holds in the pool (at most one).
    ReleaseOwner {
        /// Pool name.
        pool: String,
        /// Owner.
        owner: String,
    },
    /// [`Op::Allocate`] with a lease: `ttl_seconds` `None` = the pool's default, `Some(0)` =
    /// permanent. Answered by [`OpOutput::AllocatedV2`].
    AllocateV2 {
        /// Pool name.
        pool: String,
        /// Opaque owner, 1..=253 bytes.
        owner: String,
        /// A specific address, or `None` for the lowest free one.
        ip: Option<IpAddr>,
        /// Labels of the allocation.
        labels: Labels,
        /// Lease length (10..=31,536,000 s, or 0 for permanent).
        ttl_seconds: Option<u32>,
    },
    /// Renew one allocation: `expires_at` = now + ttl (default: its own).
    Renew {
        /// Pool name.
        pool: String,
        /// The allocated address.
        ip: IpAddr,
        /// When given, renew only if the allocation's generation equals it.
        generation: Option<u64>,
        /// New lease length (0 makes it permanent).
        ttl_seconds: Option<u32>,
    },
    /// Renew every lease `owner` holds, in every pool (an agent's heartbeat).
    RenewOwner {
        /// Owner.
        owner: String,
    },
    /// Create a pool with the second-round settings.
    CreatePoolV2(Box<PoolSpecV2>),
    /// Change a pool's fields, optionally fenced by its revision.
    UpdatePool {
        /// Pool name.
        pool: String,
        /// When given, update only if the pool's revision equals it.
        revision: Option<u64>,
        /// The fields to change.
        update: Box<PoolUpdate>,
    },
    /// Add a range to a pool.
    AddRange {
        /// Pool name.
        pool: String,
        /// The range.
        cidr: Cidr,
        /// Its gateway.
        gateway: GatewayChoice,
    },
    /// Remove an empty range (not the first) from a pool.
    RemoveRange {
        /// Pool name.
        pool: String,
        /// The range.
        cidr: Cidr,
    },
    /// Fix drift against an observed inventory, every change in this one op (the plan is
    /// recomputed in `apply`, never taken from the client). Not allowed inside a batch.
    Reconcile(Box<ReconcileSpec>),
    /// Allocate for `owner` in a pool chosen by `apply` among the address pools whose labels
    /// contain every `selector` pair (of `family` if given): the owner's held address, else
    /// its cooling one, else the least loaded pool by `(allocated / capacity) / weight`
    /// under its `max_utilization` ([`crate::select`]). Answered by [`OpOutput::AllocatedV2`].
    AllocateAny {
        /// Opaque owner, 1..=253 bytes.
        owner: String,
        /// Label pairs a pool must carry (empty: every address pool).
        selector: Labels,
        /// Only pools of this family.
        family: Option<Family>,
        /// Labels of the allocation.
        labels: Labels,
        /// Lease length (10..=31,536,000 s, or 0 for permanent); `None`: the pool's default.
        ttl_seconds: Option<u32>,
    },
    /// Create a pool with every field, a prefix pool's delegation included.
    CreatePoolV3(Box<PoolSpecV3>),
    /// Raise the replicated feature level (never lowers it). The leader puts it first in the
    /// first entry it proposes once every member runs a release that knows the level, so a
    /// behaviour that older releases did not have (the event log) starts at one log index on
    /// every replica. Not allowed inside a batch.
    SetFeatureLevel(u32),
}

/// One entry of a log entry's command list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A single operation.
    Op(Op),
    /// Operations applied in order as one unit: later ops see earlier ones; all apply or none.
    Batch(Vec<Op>),
    /// `command` with the id of its proposal and the client's idempotency key: a repeat of a
    /// recorded id or key is answered with the recorded result and executes nothing
    /// ([`crate::requests`]).
    Tagged {
        /// The proposal's id.
        id: crate::requests::RequestId,
        /// The client's idempotency key with its request's fingerprint.
        key: Option<crate::requests::KeyedRequest>,
        /// The command.
        command: Box<Command>,
    },
}

/// What a successful operation produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpOutput {
    /// The pool that was created.
    PoolCreated(PoolInfo),
    /// The pool was deleted; `released` allocations were dropped with it (force).
    PoolDeleted {
        /// Number of allocations dropped.
        released: u64,
    },
    /// An allocation. `existing` is true when the owner already held it (HTTP 200, not 201).
    Allocated {
        /// The allocation.
        allocation: Allocation,
        /// True when this is the owner's existing allocation, not a new one.
        existing: bool,
    },
    /// The allocation that was released.
    Released(Allocation),
    /// Addresses released for an owner (empty when it held none).
    ReleasedOwner {
        /// Released addresses.
        released: Vec<IpAddr>,
    },
    /// Answer of [`Op::AllocateV2`]: the allocation with its lease.
    AllocatedV2 {
        /// The allocation.
        allocation: Allocation,
        /// True when this is the owner's existing allocation (renewed if a lease).
        existing: bool,
    },
    /// The renewed allocation.
    Renewed(Allocation),
    /// Every lease of an owner, renewed.
    RenewedOwner {
        /// The renewed allocations.
        renewed: Vec<Allocation>,
    },
    /// The pool after an update or a range change.
    PoolUpdated(PoolInfo),
    /// What a reconcile changed and skipped.
    Reconciled(Box<ReconcileReport>),
    /// Answer of [`Op::SetFeatureLevel`]: the level after it.
    FeatureLevel(u32),
}

/// A failed op of an atomic batch: its 0-based position and its error. Nothing of the batch
/// was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("batch op {index} failed: {error}")]
pub struct BatchError {
    /// 0-based index of the failing op.
    pub index: usize,
    /// Its error.
    pub error: OpError,
}

/// The result of one [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Result of [`Command::Op`].
    Op(Result<OpOutput, OpError>),
    /// Result of [`Command::Batch`]: one output per op, or the first failure.
    Batch(Result<Vec<OpOutput>, BatchError>),
    /// A [`Command::Tagged`] whose idempotency key was recorded with another request's
    /// fingerprint; nothing was executed. (A tagged command otherwise gets its inner
    /// command's result.)
    IdempotencyKeyReused,
}

impl Command {
    /// Number of ops this command carries; the proposer caps an entry by this count.
    pub fn op_count(&self) -> usize {
        match self {
            Command::Op(_) => 1,
            Command::Batch(ops) => ops.len(),
            Command::Tagged { command, .. } => command.op_count(),
        }
    }
}
