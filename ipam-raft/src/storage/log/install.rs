//! What the log does when openraft appends past the end of what it holds: after a snapshot
//! install. openraft 0.9.25 hands the install to the state machine's task and, without waiting
//! for it (`PurgeLog` has no condition), asks the log to purge up to the snapshot; it answers
//! the leader once the install is done, and the entries after the snapshot follow. The purge
//! is held back until the state has the snapshot durably (`PurgeLimit`: a cut before that must
//! find the entries the old state still needs), and the append used to finish it only after it
//! had written the new entries: a power cut in between left the old entries, then the new ones
//! past the snapshot — a hole on disk — and openraft refused the next start (`LogIndexNotFound`
//! between the recorded purge point and the last entry). So such an append finishes the purge,
//! durably, before it writes, first waiting for the install in case it is not done yet (an
//! append of another leader may come sooner); and a start repairs a hole an earlier release
//! left on disk, when the current snapshot covers it.
//! The decisions are plain functions; the `LogStore` methods here do the waiting and the I/O.

use std::time::Duration;

use super::{lock, read_err, write_err, LogStore, WalError};
use crate::types::{Entry, LogId, StorageError};

/// How long an append waits for the install it follows (the state machine's task writing the
/// snapshot into a new state file). Past it the append fails, which stops the node: an install
/// that never finishes leaves nothing to append to.
pub(super) const INSTALL_WAIT: Duration = Duration::from_secs(300);

/// The purge an append starting at `first` must finish first, if it would leave a hole after
/// `end` (the last entry the log holds, or its purge point): the held-back purge `pending`,
/// when it reaches the entry before `first`. A hole no purge explains (openraft's storage
/// suite appends with one) is written as asked.
pub(super) fn purge_before_append(end: Option<u64>, first: u64, pending: LogId) -> Option<LogId> {
    let next = end.map_or(0, |e| e + 1);
    (first > next && pending.index + 1 >= first).then_some(pending)
}

/// Whether the current snapshot `snapshot` covers a hole that ends before `after`: then
/// purging up to it closes the hole (what the install the hole follows would have done).
pub(super) fn covers_hole(after: u64, snapshot: Option<LogId>) -> Option<LogId> {
    snapshot.filter(|s| s.index + 1 >= after)
}

impl LogStore {
    /// Before an append that starts past the log's end: waits for the snapshot install it
    /// follows, then finishes the held-back purge durably.
    pub(super) async fn close_hole_before(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first().map(|e| e.log_id.index) else {
            return Ok(());
        };
        // Nearly every append: no purge held back, one lock.
        let Some(pending) = *lock(&self.inner.pending_purge) else {
            return Ok(());
        };
        let end = self.inner.wal.last().or(*lock(&self.inner.purged));
        let Some(want) = purge_before_append(end.map(|e| e.index), first, pending) else {
            return Ok(());
        };
        let mut limit = self.inner.purge_limit.clone();
        if !limit.borrow().is_some_and(|l| l >= want.index) {
            tracing::info!(snapshot = %want, first, "an append waits for the snapshot install it follows");
        }
        let installed = limit.wait_for(|l| l.is_some_and(|l| l >= want.index));
        let mut stopping = self.inner.stopping.get().cloned();
        let stopped = async {
            match stopping.as_mut() {
                Some(rx) => {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
                None => std::future::pending().await,
            }
        };
        let failed = tokio::select! {
            res = tokio::time::timeout(INSTALL_WAIT, installed) => match res {
                Ok(Ok(_)) => None,
                Ok(Err(_)) => Some("the state machine closed before its install finished".to_string()),
                Err(_) => Some(format!("its install did not finish in {} s", INSTALL_WAIT.as_secs())),
            },
            () = stopped => Some("the node is stopping".to_string()),
        };
        if let Some(why) = failed {
            return Err(write_err(std::io::Error::other(format!(
                "an append after the snapshot at {want} cannot go ahead: {why}"
            ))));
        }
        self.blocking(move |inner| inner.finish_purge(want, true))
            .await
    }

    /// Closes, at start, a hole an earlier release could leave on disk (an append after an
    /// install whose held-back purge a power cut then lost): the current snapshot covers it,
    /// so the log is purged up to the snapshot, durably. A hole nothing covers is refused with
    /// [`WalError::Hole`] rather than handed to openraft, which would refuse it less clearly.
    pub(crate) async fn close_hole_at_start(
        &self,
        snapshot: Option<LogId>,
    ) -> Result<(), StorageError> {
        let purged = *lock(&self.inner.purged);
        let Some((before, after)) = self.inner.wal.first_hole(purged.map(|p| p.index)) else {
            return Ok(());
        };
        let hole = || WalError::Hole {
            before,
            after,
            snapshot: snapshot.map(|s| s.index),
        };
        let Some(upto) = covers_hole(after, snapshot) else {
            return Err(read_err(hole()));
        };
        tracing::warn!(before, after, snapshot = %upto, "the log has a hole the current snapshot covers: purging up to the snapshot");
        let done = self.blocking(move |inner| inner.purge(upto, true)).await?;
        if done {
            Ok(())
        } else {
            Err(read_err(hole()))
        }
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
        assert_eq!(purge_before_append(Some(456), 556, id(555)), Some(id(555)));
        // Appends that continue the log, or overwrite its tail, never wait.
        assert_eq!(purge_before_append(Some(456), 457, id(555)), None);
        assert_eq!(purge_before_append(Some(456), 300, id(555)), None);
        // An empty log continues at 0.
        assert_eq!(purge_before_append(None, 0, id(555)), None);
        assert_eq!(purge_before_append(None, 556, id(555)), Some(id(555)));
        // A held-back purge that stops short of the append: nothing to wait for.
        assert_eq!(purge_before_append(Some(456), 556, id(500)), None);
    }

    #[test]
    fn a_hole_is_covered_by_a_snapshot_that_reaches_the_entry_before_it_or_further() {
        assert_eq!(covers_hole(603, Some(id(602))), Some(id(602)));
        assert_eq!(covers_hole(603, Some(id(610))), Some(id(610)));
        assert_eq!(covers_hole(603, Some(id(601))), None);
        assert_eq!(covers_hole(603, None), None);
    }

    fn entry(index: u64) -> crate::types::Entry {
        crate::types::Entry {
            log_id: id(index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    /// A data dir of an earlier release: entries 1..=12, then 21 after an install at 20 whose
    /// purge a power cut lost. Returns the dir (kept while it lives) and the log's path.
    async fn log_with_a_hole() -> (tempfile::TempDir, std::path::PathBuf) {
        use openraft::storage::RaftLogStorageExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("log.redb");
        let (_tx, limit) = tokio::sync::watch::channel(None);
        let mut log = LogStore::open(&path, limit).expect("open");
        log.blocking_append((1..=12).map(entry))
            .await
            .expect("append");
        // No purge held back: written as asked, as the earlier release did.
        log.blocking_append([entry(21)]).await.expect("append");
        (dir, path)
    }

    #[tokio::test]
    async fn a_start_closes_a_hole_the_snapshot_covers_and_refuses_one_it_does_not() {
        use openraft::storage::RaftLogStorage;
        let (_dir, path) = log_with_a_hole().await;
        let (_tx, limit) = tokio::sync::watch::channel(Some(20));
        {
            let log = LogStore::open(&path, limit.clone()).expect("open");
            let err = log
                .close_hole_at_start(Some(id(15)))
                .await
                .expect_err("a snapshot short of the hole");
            assert!(
                err.to_string().contains("between index 12 and index 21"),
                "{err}"
            );
            assert!(log.close_hole_at_start(None).await.is_err());
            log.close_hole_at_start(Some(id(20))).await.expect("repair");
        }
        // Durable: the next start finds no hole.
        let mut log = LogStore::open(&path, limit).expect("reopen");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(id(20)));
        assert_eq!(state.last_log_id, Some(id(21)));
        log.close_hole_at_start(Some(id(20)))
            .await
            .expect("nothing to do");
    }

    #[tokio::test]
    async fn a_hole_stays_refused_while_the_state_is_behind_the_snapshot() {
        let (_dir, path) = log_with_a_hole().await;
        // The purge limit (the state's durable index) stops short of the snapshot.
        let (_tx, limit) = tokio::sync::watch::channel(Some(12));
        let log = LogStore::open(&path, limit).expect("open");
        assert!(log.close_hole_at_start(Some(id(20))).await.is_err());
    }

    /// An append waiting for an install gives up when the node stops, instead of holding
    /// openraft's shutdown for as long as the install might take.
    #[tokio::test(start_paused = true)]
    async fn a_waiting_append_gives_up_when_the_node_stops() {
        use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
        let dir = tempfile::tempdir().expect("tmp");
        let (_limit_tx, limit) = tokio::sync::watch::channel(Some(5));
        let mut log = LogStore::open(&dir.path().join("log.redb"), limit).expect("open");
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        log.set_stopping(stop);
        log.blocking_append((1..=12).map(entry))
            .await
            .expect("append");
        log.purge(id(20)).await.expect("purge");
        let mut appender = log.clone();
        let append = tokio::spawn(async move { appender.blocking_append([entry(21)]).await });
        stop_tx.send_replace(true);
        let err = append
            .await
            .expect("task")
            .expect_err("the append must not go ahead");
        assert!(err.to_string().contains("the node is stopping"), "{err}");
    }
}
