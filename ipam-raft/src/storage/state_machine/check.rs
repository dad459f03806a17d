//! The integrity check of this replica: the core's check (`ipam_core::check`) of the
//! in-memory index against `state.redb`, at the applied log position both are at, with the
//! state digest of that position.

use ipam_core::check::Problem;
use redb::ReadableDatabase;

use crate::storage::state_db::{applied_of, sm_read, SmShared};
use crate::types::StorageError;

/// What one replica's integrity check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The log index the checked state has applied (0 before the first entry).
    pub applied_index: u64,
    /// SHA-256 of the core tables at that index ([`ipam_core::query::digest`]).
    pub digest: [u8; 32],
    /// Broken invariants found before any repair.
    pub problems: Vec<Problem>,
    /// Whether the in-memory index was rebuilt from the tables (and then checked clean).
    pub repaired: bool,
}

impl SmShared {
    /// Runs the check. Holds the index lock, so applies wait for it (a full scan of the
    /// tables); blocking — call from a blocking thread. With `repair`, problems that a reload
    /// of the index fixes are repaired by rebuilding it from the tables.
    pub(crate) fn integrity_check(&self, repair: bool) -> Result<CheckReport, StorageError> {
        let mut index = self
            .index
            .lock()
            .map_err(|_| sm_read(std::io::Error::other("poisoned index lock")))?;
        let db = self.db()?;
        let rtx = db.db.begin_read().map_err(sm_read)?;
        let applied_index = applied_of(&rtx)?.0.map_or(0, |l| l.index);
        let digest = ipam_core::query::digest(&rtx).map_err(sm_read)?;
        let problems = ipam_core::check::check(&index, &rtx).map_err(sm_read)?;
        let mut repaired = false;
        if repair && problems.iter().any(Problem::repaired_by_reload) {
            // A reload that fails (tables inconsistent among themselves) keeps the old index:
            // the problems stay reported and need an operator.
            if index.reload_free_indexes(&rtx).is_ok() {
                repaired = ipam_core::check::check(&index, &rtx)
                    .map_err(sm_read)?
                    .is_empty();
            }
        }
        Ok(CheckReport {
            applied_index,
            digest,
            problems,
            repaired,
        })
    }

    /// Test hook: corrupts the in-memory free index of `pool` (see
    /// `State::corrupt_free_index_for_tests`).
    #[cfg(feature = "testing")]
    pub(crate) fn corrupt_index_for_tests(&self, pool: &str) -> bool {
        self.index
            .lock()
            .is_ok_and(|mut index| index.corrupt_free_index_for_tests(pool))
    }
}
