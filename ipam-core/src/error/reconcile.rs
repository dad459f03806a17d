//! [`ReconcileError`]: why a reconcile was refused (its own file, so `error.rs` stays small).

use serde::{Deserialize, Serialize};

use super::{ErrorCode, InputError};

/// Why a reconcile was refused (nothing of it applied).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// Bad input.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A named pool does not exist.
    #[error("pool {pool:?} not found")]
    PoolNotFound {
        /// Pool name.
        pool: String,
    },
    /// A pool changed after the reviewed dry run.
    #[error("pool {pool:?} changed at log index {changed_at}, after the plan's index {as_of}: run the dry run again")]
    PlanStale {
        /// The pool.
        pool: String,
        /// Log index of its latest change.
        changed_at: u64,
        /// The plan's index.
        as_of: u64,
    },
}

impl ReconcileError {
    /// The contract's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReconcileError::Input(_) => ErrorCode::InvalidArgument,
            ReconcileError::PoolNotFound { .. } => ErrorCode::PoolNotFound,
            ReconcileError::PlanStale { .. } => ErrorCode::PlanStale,
        }
    }
}
