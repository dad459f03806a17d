//! [`Ipam::backup`] and [`restore`]: the node-level entry points of
//! `storage/state_machine/backup.rs`.

use std::io::Write;
use std::path::Path;

use crate::error::{InternalError, IpamError};
use crate::files::new_cluster_id;
use crate::handle::Ipam;
use crate::storage::state_machine::{BackupHeader, RestoreError, Restored};
use crate::types::NodeId;

impl Ipam {
    /// Writes a backup of this replica's state to `out`: one read transaction, so a consistent
    /// copy as of one applied index while writes continue. Blocking writes to `out` run on a
    /// blocking thread.
    pub async fn backup<W: Write + Send + 'static>(
        &self,
        out: W,
    ) -> Result<BackupHeader, IpamError> {
        let cluster_id = self.core.net.cluster_id().unwrap_or_default();
        let sm = self.core.sm.clone();
        tokio::task::spawn_blocking(move || sm.backup(&cluster_id, out))
            .await
            .map_err(|e| IpamError::Internal(InternalError::Task(e)))?
            .map_err(|e| IpamError::Internal(InternalError::Storage(Box::new(e))))
    }
}

/// Restores the backup `file` into the empty (or missing) `data_dir` as a new single-voter
/// cluster (a new cluster id) of node `id` reachable at `advertise`. Refuses a non-empty dir
/// and a damaged file without writing anything. Then [`Ipam::start`] on that dir serves it.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    id: NodeId,
    advertise: &str,
) -> Result<Restored, RestoreError> {
    crate::storage::state_machine::restore_backup(
        file,
        data_dir,
        id,
        advertise,
        &new_cluster_id(id),
    )
}
