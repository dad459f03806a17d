//! The contract's error codes: one per `{"error": {"code"}}` the API can answer.

use serde::{Deserialize, Serialize};

/// The API contract's error codes that the domain can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400 `invalid_argument`.
    InvalidArgument,
    /// 404 `pool_not_found`.
    PoolNotFound,
    /// 404 `allocation_not_found`.
    AllocationNotFound,
    /// 409 `pool_exists`.
    PoolExists,
    /// 409 `pool_overlap`.
    PoolOverlap,
    /// 409 `address_in_use`.
    AddressInUse,
    /// 409 `owner_conflict`.
    OwnerConflict,
    /// 409 `pool_not_empty`.
    PoolNotEmpty,
    /// 409 `generation_mismatch`.
    GenerationMismatch,
    /// 409 `pool_exhausted`.
    PoolExhausted,
    /// 409 `address_cooling_down`.
    AddressCoolingDown,
    /// 409 `revision_mismatch`.
    RevisionMismatch,
    /// 409 `range_not_empty`.
    RangeNotEmpty,
    /// 409 `pool_frozen`.
    PoolFrozen,
    /// 409 `plan_stale`.
    PlanStale,
    /// 503 `feature_unavailable`.
    FeatureUnavailable,
    /// 410 `history_truncated`.
    HistoryTruncated,
    /// 404 `no_matching_pool`: no pool matches a selection's selector and family.
    NoMatchingPool,
    /// 409 `prefix_in_use`: a delegated block still has a child pool.
    PrefixInUse,
    /// 422 `idempotency_key_reused`: an `Idempotency-Key` recorded with another request.
    IdempotencyKeyReused,
}

impl ErrorCode {
    /// The snake_case code of the API contract.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::PoolNotFound => "pool_not_found",
            ErrorCode::AllocationNotFound => "allocation_not_found",
            ErrorCode::PoolExists => "pool_exists",
            ErrorCode::PoolOverlap => "pool_overlap",
            ErrorCode::AddressInUse => "address_in_use",
            ErrorCode::OwnerConflict => "owner_conflict",
            ErrorCode::PoolNotEmpty => "pool_not_empty",
            ErrorCode::GenerationMismatch => "generation_mismatch",
            ErrorCode::PoolExhausted => "pool_exhausted",
            ErrorCode::AddressCoolingDown => "address_cooling_down",
            ErrorCode::RevisionMismatch => "revision_mismatch",
            ErrorCode::RangeNotEmpty => "range_not_empty",
            ErrorCode::PoolFrozen => "pool_frozen",
            ErrorCode::PlanStale => "plan_stale",
            ErrorCode::FeatureUnavailable => "feature_unavailable",
            ErrorCode::HistoryTruncated => "history_truncated",
            ErrorCode::NoMatchingPool => "no_matching_pool",
            ErrorCode::PrefixInUse => "prefix_in_use",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
        }
    }
}
