//! What the log does when openraft appends past the end of what it holds: after a snapshot
//! install. openraft 0.9.25 hands the install to the state machine's task and, without waiting
//! for it (`PurgeLog` has no condition), asks the log to purge up to the snapshot and then
//! appends the entries after it. The purge is held back until the state has the snapshot
//! durably (`PurgeLimit`: a cut before that must find the entries the old state still needs),
//! so the append would leave a hole: the old entries, then the new ones past the snapshot. A
//! power cut in that window left the hole on disk, and openraft refused the next start
//! (`LogIndexNotFound` between the recorded purge point and the last entry). So such an
//! append waits for the install and purges durably before it writes.
//! Plain decisions here; `LogStore::append` does the waiting and the I/O.

use std::time::Duration;

use super::{lock, write_err, LogStore};
use crate::types::{Entry, LogId, StorageError};

/// How long an append waits for the install it follows (the state machine's task writing the
/// snapshot into a new state file). Past it the append fails, which stops the node: an install
/// that never finishes leaves nothing to append to.
pub(super) const INSTALL_WAIT: Duration = Duration::from_secs(300);

/// The purge an append starting at `first` must finish first, if it would leave a hole after
/// `end` (the last entry the log holds, or its purge point): the held-back purge `pending`,
/// when it reaches the entry before `first`. A hole no purge explains (openraft's storage
/// suite appends with one) is written as asked.
pub(super) fn purge_before_append(
    end: Option<u64>,
    first: u64,
    pending: Option<LogId>,
) -> Option<LogId> {
    let next = end.map_or(0, |e| e + 1);
    if first <= next {
        return None;
    }
    pending.filter(|p| p.index + 1 >= first)
}

impl LogStore {
    /// Before an append that starts past the log's end: waits for the snapshot install it
    /// follows, then finishes the held-back purge durably.
    pub(super) async fn close_hole_before(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first().map(|e| e.log_id.index) else {
            return Ok(());
        };
        let end = self.inner.wal.last().or(*lock(&self.inner.purged));
        let pending = *lock(&self.inner.pending_purge);
        let Some(want) = purge_before_append(end.map(|e| e.index), first, pending) else {
            return Ok(());
        };
        let mut limit = self.inner.purge_limit.clone();
        if !limit.borrow().is_some_and(|l| l >= want.index) {
            tracing::info!(snapshot = %want, first, "an append waits for the snapshot install it follows");
        }
        let installed = limit.wait_for(|l| l.is_some_and(|l| l >= want.index));
        match tokio::time::timeout(INSTALL_WAIT, installed).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => {
                return Err(write_err(std::io::Error::other(format!(
                    "an append after the snapshot at {want} waited {} s for its install to finish",
                    INSTALL_WAIT.as_secs()
                ))))
            }
        }
        self.blocking(move |inner| {
            if inner.purge(want, true)? {
                let mut p = lock(&inner.pending_purge);
                if *p == Some(want) {
                    *p = None;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(6, 2), index)
    }

    #[test]
    fn only_an_append_past_the_end_waits_and_only_for_a_purge_that_closes_the_hole() {
        // The case of the power-loss test: log 436..=456, install at 555, append from 556.
        assert_eq!(
            purge_before_append(Some(456), 556, Some(id(555))),
            Some(id(555))
        );
        // Appends that continue the log, or overwrite its tail, never wait.
        assert_eq!(purge_before_append(Some(456), 457, Some(id(555))), None);
        assert_eq!(purge_before_append(Some(456), 300, Some(id(555))), None);
        // An empty log continues at 0.
        assert_eq!(purge_before_append(None, 0, Some(id(555))), None);
        assert_eq!(purge_before_append(None, 556, Some(id(555))), Some(id(555)));
        // No purge held back, or one that stops short of the append: nothing to wait for.
        assert_eq!(purge_before_append(Some(456), 556, None), None);
        assert_eq!(purge_before_append(Some(456), 556, Some(id(500))), None);
    }
}
