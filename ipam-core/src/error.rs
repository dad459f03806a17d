//! Typed errors, one enum per operation family.
//!
//! Op errors are results, not failures: they are committed, replicated and returned to the
//! caller, so they are serde-serialisable (postcard, append-only variants) and carry the values
//! a caller needs. [`ErrorCode`] is the contract's `code`; adapters map it to a status once.
//! [`StorageError`] is the only error that stops the state machine.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::Cidr;

mod code;
mod reconcile;
pub use code::ErrorCode;
pub use reconcile::ReconcileError;

/// Why an address cannot be allocated in a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Unallocatable {
    /// Outside the pool's CIDR.
    OutsideCidr,
    /// The IPv4 network address.
    Network,
    /// The IPv4 broadcast address.
    Broadcast,
    /// The IPv6 subnet-router anycast address (all host bits zero).
    SubnetRouterAnycast,
    /// The pool's gateway.
    Gateway,
    /// Inside a reserved entry.
    Reserved,
    /// An address of the other family.
    WrongFamily,
    /// Not the first address of an aligned block of a prefix pool.
    Misaligned,
}

impl std::fmt::Display for Unallocatable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unallocatable::OutsideCidr => "outside the pool's CIDR",
            Unallocatable::Network => "the network address",
            Unallocatable::Broadcast => "the broadcast address",
            Unallocatable::SubnetRouterAnycast => "the subnet-router anycast address",
            Unallocatable::Gateway => "the gateway",
            Unallocatable::Reserved => "reserved",
            Unallocatable::WrongFamily => "of the other address family",
            Unallocatable::Misaligned => "not aligned to the pool's delegated prefix length",
        })
    }
}

/// Malformed input that is not specific to one operation: names, owners, labels, CIDRs,
/// addresses, ranges. Always 400 `invalid_argument`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Pool name does not match `[a-z0-9][a-z0-9-]{0,62}`.
    #[error("invalid pool name {name:?}: must match [a-z0-9][a-z0-9-]{{0,62}}")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// Owner empty or over 253 bytes.
    #[error("invalid owner: must be 1 to 253 bytes, got {len}")]
    InvalidOwner {
        /// Its length in bytes.
        len: usize,
    },
    /// Not parseable as a CIDR.
    #[error("invalid CIDR {input:?}: {reason}")]
    InvalidCidr {
        /// The text given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A CIDR with host bits set.
    #[error("CIDR {input:?} has host bits set; did you mean {network}?")]
    HostBitsSet {
        /// The text given.
        input: String,
        /// The network that was probably meant.
        network: Cidr,
    },
    /// Not parseable as an IP address.
    #[error("invalid IP address {input:?}")]
    InvalidAddress {
        /// The text given.
        input: String,
    },
    /// Not a valid reserved entry (address, `a-b` range with a ≤ b of one family, or CIDR).
    #[error("invalid reserved entry {input:?}: {reason}")]
    InvalidReserved {
        /// The text given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// More than 64 labels.
    #[error("too many labels: {count} (at most 64)")]
    TooManyLabels {
        /// How many were given.
        count: usize,
    },
    /// A label key empty or over 63 bytes.
    #[error("invalid label key {key:?}: must be 1 to 63 bytes")]
    InvalidLabelKey {
        /// The key.
        key: String,
    },
    /// A label value over 253 bytes.
    #[error("label {key:?} value is {len} bytes (at most 253)")]
    LabelValueTooLong {
        /// The key.
        key: String,
        /// Value length in bytes.
        len: usize,
    },
    /// Description over 1 KiB.
    #[error("description is {len} bytes (at most 1024)")]
    DescriptionTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// More than 1,000 reserved entries.
    #[error("too many reserved entries: {count} (at most 1000)")]
    TooManyReserved {
        /// How many were given.
        count: usize,
    },
    /// A page limit outside 1..=1000.
    #[error("limit must be 1 to 1000, got {limit}")]
    InvalidLimit {
        /// The limit given.
        limit: u64,
    },
    /// A batch with no op or more than 1,000.
    #[error("a batch holds 1 to 1000 ops, got {count}")]
    BatchSize {
        /// How many were given.
        count: usize,
    },
    /// A page cursor (`after`) of the other address family than the pool's.
    #[error("cursor {after} is not of the address family of {cidr}")]
    CursorFamily {
        /// The cursor given.
        after: IpAddr,
        /// The pool's CIDR.
        cidr: Cidr,
    },
    /// A lease length outside 0 and 10..=31,536,000 seconds.
    #[error("ttl_seconds must be 0 (permanent) or 10 to 31536000, got {ttl}")]
    InvalidTtl {
        /// The value given.
        ttl: u32,
    },
    /// A pool setting out of its bounds.
    #[error("invalid {field}: {reason}")]
    InvalidSetting {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// An `Idempotency-Key` that is not 1..=128 visible ASCII characters.
    #[error("an idempotency key must be 1 to 128 visible ASCII characters")]
    InvalidIdempotencyKey,
}

/// Errors of pool creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CreatePoolError {
    /// Malformed spec field.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The gateway is outside the CIDR or on an address that can never be allocated.
    #[error("gateway {gateway} is not usable in {cidr}: it is {reason}")]
    InvalidGateway {
        /// The gateway given.
        gateway: IpAddr,
        /// The pool's CIDR.
        cidr: Cidr,
        /// Why.
        reason: Unallocatable,
    },
    /// A reserved entry is not inside the CIDR.
    #[error("reserved entry {entry} is not inside {cidr}")]
    ReservedOutsideCidr {
        /// The entry, rendered.
        entry: String,
        /// The pool's CIDR.
        cidr: Cidr,
    },
    /// Nothing would be allocatable.
    #[error("pool {cidr} would have no allocatable address")]
    NoAllocatableAddress {
        /// The pool's CIDR.
        cidr: Cidr,
    },
    /// A pool of that name exists.
    #[error("pool {name:?} already exists")]
    Exists {
        /// The name.
        name: String,
    },
    /// The CIDR overlaps an existing pool.
    #[error("{cidr} overlaps pool {existing:?} ({existing_cidr})")]
    Overlap {
        /// The requested CIDR.
        cidr: Cidr,
        /// The existing pool's name.
        existing: String,
        /// The existing pool's CIDR.
        existing_cidr: Cidr,
    },
    /// Every pool id (2^32) has been used; ids are never reused.
    #[error("no pool id left: 2^32 pools have been created")]
    PoolIdsExhausted,
    /// A child pool names a parent that does not exist.
    #[error("parent pool {parent:?} not found")]
    ParentNotFound {
        /// The parent's name.
        parent: String,
    },
}

/// Errors of pool deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum DeletePoolError {
    /// No such pool.
    #[error("pool {pool:?} not found")]
    PoolNotFound {
        /// The name.
        pool: String,
    },
    /// The pool has allocations and `force` was not given.
    #[error("pool {pool:?} has {allocated} allocations; release them or delete with force")]
    NotEmpty {
        /// The name.
        pool: String,
        /// How many allocations it holds.
        allocated: u128,
    },
    /// The pool is frozen.
    #[error("pool {pool:?} is frozen; unfreeze it before deleting it")]
    Frozen {
        /// The name.
        pool: String,
    },
    /// A child pool lives in one of the prefix pool's blocks (even `force` keeps it).
    #[error("pool {pool:?} has child pool {child:?}; delete the child first")]
    PrefixInUse {
        /// The prefix pool.
        pool: String,
        /// A child pool in one of its blocks.
        child: String,
    },
}

/// Errors of allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum AllocateError {
    /// Malformed owner or labels.
    #[error(transparent)]
    Input(#[from] InputError),
    /// No such pool.
    #[error("pool {pool:?} not found")]
    PoolNotFound {
        /// The name.
        pool: String,
    },
    /// The requested address can never be allocated in this pool.
    #[error("{ip} is not allocatable in pool {pool:?}: it is {reason}")]
    NotAllocatable {
        /// The pool.
        pool: String,
        /// The address.
        ip: IpAddr,
        /// Why.
        reason: Unallocatable,
    },
    /// The requested address is held by another owner.
    #[error("{ip} in pool {pool:?} is already allocated to {owner:?}")]
    AddressInUse {
        /// The pool.
        pool: String,
        /// The address.
        ip: IpAddr,
        /// Its current owner.
        owner: String,
    },
    /// The owner already holds a different address in the pool.
    #[error("owner {owner:?} already holds {held} in pool {pool:?}, not {requested}")]
    OwnerConflict {
        /// The pool.
        pool: String,
        /// The owner.
        owner: String,
        /// The address it holds.
        held: IpAddr,
        /// The address requested.
        requested: IpAddr,
    },
    /// No free address left.
    #[error("pool {pool:?} is exhausted")]
    Exhausted {
        /// The pool.
        pool: String,
    },
    /// The requested address cools down after its release and is kept for its last owner.
    #[error("{ip} in pool {pool:?} is cooling down after its release (kept for {last_owner:?})")]
    CoolingDown {
        /// The pool.
        pool: String,
        /// The address.
        ip: IpAddr,
        /// Who held it last.
        last_owner: String,
    },
    /// The pool is frozen: only allocations naming their address are accepted.
    #[error("pool {pool:?} is frozen: only allocations that name an address are accepted")]
    Frozen {
        /// The pool.
        pool: String,
    },
    /// No address pool matches a selection's selector (and family).
    #[error("no pool matches selector {selector}")]
    NoMatchingPool {
        /// The selector as `k=v,k=v` (and `family=ipv4|ipv6` when one was given).
        selector: String,
    },
    /// Pools match a selection, but every one is frozen, full or at its utilization cap.
    #[error("{matching} pools match selector {selector}, but none can take an address (frozen, full or at max_utilization)")]
    NoPoolAvailable {
        /// The selector, rendered as for [`AllocateError::NoMatchingPool`].
        selector: String,
        /// How many pools matched.
        matching: u64,
    },
}

/// Errors of pool updates (fields, ranges).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum UpdatePoolError {
    /// A malformed field, or a range, gateway or reserved entry refused by the layout rules
    /// (overlap with another pool included).
    #[error(transparent)]
    Layout(#[from] CreatePoolError),
    /// No such pool.
    #[error("pool {pool:?} not found")]
    PoolNotFound {
        /// The name.
        pool: String,
    },
    /// The pool's revision differs from the fence.
    #[error("pool {pool:?} is at revision {actual}, not {expected}")]
    RevisionMismatch {
        /// The pool.
        pool: String,
        /// The revision the caller gave.
        expected: u64,
        /// The pool's revision.
        actual: u64,
    },
    /// The new gateway or a reserved entry covers an allocated address.
    #[error("{ip} in pool {pool:?} is allocated to {owner:?}; it cannot become {what}")]
    AddressInUse {
        /// The pool.
        pool: String,
        /// The address.
        ip: IpAddr,
        /// Its owner.
        owner: String,
        /// `"the gateway"` or `"reserved"`.
        what: String,
    },
    /// A range to add is of the other family than the pool.
    #[error("range {cidr} is not of the address family of pool {pool:?}")]
    RangeFamily {
        /// The pool.
        pool: String,
        /// The range.
        cidr: Cidr,
    },
    /// The pool already has the most ranges.
    #[error("pool {pool:?} already has {max} ranges")]
    TooManyRanges {
        /// The pool.
        pool: String,
        /// The limit.
        max: usize,
    },
    /// The pool has no such range.
    #[error("pool {pool:?} has no range {cidr}")]
    NoSuchRange {
        /// The pool.
        pool: String,
        /// The range.
        cidr: Cidr,
    },
    /// The first range is the pool's CIDR and cannot be removed.
    #[error("{cidr} is the first range of pool {pool:?} and cannot be removed")]
    FirstRange {
        /// The pool.
        pool: String,
        /// The range.
        cidr: Cidr,
    },
    /// An allocation lies in the range to remove.
    #[error("range {cidr} of pool {pool:?} still holds {ip} ({owner:?})")]
    RangeNotEmpty {
        /// The pool.
        pool: String,
        /// The range.
        cidr: Cidr,
        /// The lowest allocated address in it.
        ip: IpAddr,
        /// Its owner.
        owner: String,
    },
}

/// Errors of release by address or by owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// Malformed owner.
    #[error(transparent)]
    Input(#[from] InputError),
    /// No such pool.
    #[error("pool {pool:?} not found")]
    PoolNotFound {
        /// The name.
        pool: String,
    },
    /// The address is not inside the pool's CIDR (400).
    #[error("{ip} is outside pool {pool:?} ({cidr})")]
    OutsidePool {
        /// The pool.
        pool: String,
        /// The address.
        ip: IpAddr,
        /// The pool's CIDR.
        cidr: Cidr,
    },
    /// The address is inside the pool but not allocated (404).
    #[error("{ip} is not allocated in pool {pool:?}")]
    NotAllocated {
        /// The pool.
        pool: String,
        /// The address.
        ip: IpAddr,
    },
    /// The allocation's generation differs from the fence.
    #[error("{ip} in pool {pool:?} has generation {actual}, not {expected}")]
    GenerationMismatch {
        /// The pool.
        pool: String,
        /// The address.
        ip: IpAddr,
        /// The generation the caller gave.
        expected: u64,
        /// The allocation's generation.
        actual: u64,
    },
    /// The block is the CIDR of a child pool: delete the child before releasing it.
    #[error("block {ip} of pool {pool:?} holds child pool {child:?}; delete the child first")]
    PrefixInUse {
        /// The prefix pool.
        pool: String,
        /// The block's first address.
        ip: IpAddr,
        /// The child pool.
        child: String,
    },
}

/// Errors of read queries that can be the caller's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// No such pool.
    #[error("pool {pool:?} not found")]
    PoolNotFound {
        /// The name.
        pool: String,
    },
    /// Bad query value (for example a page limit outside 1..=1000).
    #[error("{0}")]
    Input(#[from] InputError),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Events after `after` were pruned: the oldest kept is `oldest`.
    #[error("events after {after} are no longer kept (the oldest kept is {oldest})")]
    HistoryTruncated {
        /// The id asked for.
        after: u64,
        /// The oldest event id still kept.
        oldest: u64,
    },
}

/// The error of one op, as carried in a [`crate::CommandResult`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// Creating a pool failed.
    #[error(transparent)]
    CreatePool(#[from] CreatePoolError),
    /// Deleting a pool failed.
    #[error(transparent)]
    DeletePool(#[from] DeletePoolError),
    /// Allocating failed.
    #[error(transparent)]
    Allocate(#[from] AllocateError),
    /// Releasing failed.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The command itself is malformed (for example a batch size out of range).
    #[error(transparent)]
    Input(#[from] InputError),
    /// Updating a pool (fields or ranges) failed.
    #[error(transparent)]
    UpdatePool(#[from] UpdatePoolError),
    /// A reconcile was refused.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// The command needs a feature level that not every member of the cluster knows yet
    /// (decided by the leader before proposing; nothing was written).
    #[error("this operation needs feature level {required}; the cluster's members all know only {cluster} (finish the rolling upgrade)")]
    FeatureUnavailable {
        /// Level the command needs.
        required: u32,
        /// Lowest level among the members.
        cluster: u32,
    },
}

/// Storage failure: the only error that stops the state machine. Never caused by input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// redb failed.
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// A stored row could not be decoded (corruption or an unknown format version).
    #[error("corrupt row in table {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Redb(e.into())
            }
        }
    )*};
}
storage_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

impl InputError {
    /// Always [`ErrorCode::InvalidArgument`].
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }
}

impl CreatePoolError {
    /// The contract's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CreatePoolError::Exists { .. } => ErrorCode::PoolExists,
            CreatePoolError::Overlap { .. } => ErrorCode::PoolOverlap,
            CreatePoolError::ParentNotFound { .. } => ErrorCode::PoolNotFound,
            _ => ErrorCode::InvalidArgument,
        }
    }
}

impl DeletePoolError {
    /// The contract's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            DeletePoolError::PoolNotFound { .. } => ErrorCode::PoolNotFound,
            DeletePoolError::NotEmpty { .. } => ErrorCode::PoolNotEmpty,
            DeletePoolError::Frozen { .. } => ErrorCode::PoolFrozen,
            DeletePoolError::PrefixInUse { .. } => ErrorCode::PrefixInUse,
        }
    }
}

impl AllocateError {
    /// The contract's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AllocateError::Input(_) | AllocateError::NotAllocatable { .. } => {
                ErrorCode::InvalidArgument
            }
            AllocateError::PoolNotFound { .. } => ErrorCode::PoolNotFound,
            AllocateError::AddressInUse { .. } => ErrorCode::AddressInUse,
            AllocateError::OwnerConflict { .. } => ErrorCode::OwnerConflict,
            AllocateError::Exhausted { .. } => ErrorCode::PoolExhausted,
            AllocateError::CoolingDown { .. } => ErrorCode::AddressCoolingDown,
            AllocateError::Frozen { .. } => ErrorCode::PoolFrozen,
            AllocateError::NoMatchingPool { .. } => ErrorCode::NoMatchingPool,
            AllocateError::NoPoolAvailable { .. } => ErrorCode::PoolExhausted,
        }
    }
}

impl ReleaseError {
    /// The contract's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReleaseError::Input(_) | ReleaseError::OutsidePool { .. } => ErrorCode::InvalidArgument,
            ReleaseError::PoolNotFound { .. } => ErrorCode::PoolNotFound,
            ReleaseError::NotAllocated { .. } => ErrorCode::AllocationNotFound,
            ReleaseError::GenerationMismatch { .. } => ErrorCode::GenerationMismatch,
            ReleaseError::PrefixInUse { .. } => ErrorCode::PrefixInUse,
        }
    }
}

impl QueryError {
    /// The contract's code; `None` for a storage failure (500).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            QueryError::PoolNotFound { .. } => Some(ErrorCode::PoolNotFound),
            QueryError::Input(_) => Some(ErrorCode::InvalidArgument),
            QueryError::Storage(_) => None,
            QueryError::HistoryTruncated { .. } => Some(ErrorCode::HistoryTruncated),
        }
    }
}

impl OpError {
    /// The contract's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            OpError::CreatePool(e) => e.code(),
            OpError::DeletePool(e) => e.code(),
            OpError::Allocate(e) => e.code(),
            OpError::Release(e) => e.code(),
            OpError::Input(e) => e.code(),
            OpError::UpdatePool(e) => e.code(),
            OpError::Reconcile(e) => e.code(),
            OpError::FeatureUnavailable { .. } => ErrorCode::FeatureUnavailable,
        }
    }
}

impl UpdatePoolError {
    /// The contract's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            UpdatePoolError::Layout(e) => e.code(),
            UpdatePoolError::PoolNotFound { .. } => ErrorCode::PoolNotFound,
            UpdatePoolError::RevisionMismatch { .. } => ErrorCode::RevisionMismatch,
            UpdatePoolError::AddressInUse { .. } => ErrorCode::AddressInUse,
            UpdatePoolError::RangeNotEmpty { .. } => ErrorCode::RangeNotEmpty,
            UpdatePoolError::RangeFamily { .. }
            | UpdatePoolError::TooManyRanges { .. }
            | UpdatePoolError::NoSuchRange { .. }
            | UpdatePoolError::FirstRange { .. } => ErrorCode::InvalidArgument,
        }
    }
}
