//! [`Ipam::check`]: this replica's integrity check (see `storage/state_machine/check.rs`).

use crate::error::{InternalError, IpamError};
use crate::handle::Ipam;
use crate::storage::state_machine::CheckReport;

impl Ipam {
    /// Checks this replica's state: allocation rows, owner index, counters and the in-memory
    /// free index, with the state digest at the applied index checked. With `repair`, a free
    /// index that disagrees with the tables is rebuilt from them. Local: no read barrier, so
    /// replicas are compared by digest at equal applied indexes. Applies wait while it scans.
    pub async fn check(&self, repair: bool) -> Result<CheckReport, IpamError> {
        let sm = self.core.sm.clone();
        tokio::task::spawn_blocking(move || sm.integrity_check(repair))
            .await
            .map_err(|e| IpamError::Internal(InternalError::Task(e)))?
            .map_err(|e| IpamError::Internal(InternalError::Storage(Box::new(e))))
    }

    /// Test hook: corrupts the in-memory free index of `pool` so the check finds it.
    #[cfg(feature = "testing")]
    pub fn corrupt_index_for_tests(&self, pool: &str) -> bool {
        self.core.sm.corrupt_index_for_tests(pool)
    }
}
