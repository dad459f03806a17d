//! The raft log on `log.redb`: entries, vote, committed id and purge point.
//!
//! openraft 0.9.25's leader waits for each append's flush before the next, so an append is one
//! redb transaction committed with `Durability::Immediate` before the flush callback runs.
//! Purging never passes the state machine's durable applied index (a `watch` channel): the
//! state machine may commit applies without fsync, and after a crash it re-applies from its
//! durable point, which needs those log entries.
//!
//! Commits do not ask for redb's quick repair: it writes the allocator state with every commit,
//! which made each append markedly dearer and was the largest single latency gain when dropped
//! (figures in `docs/performance.md`). After a crash redb instead rebuilds that state by
//! walking the file on open, which stays short because the log is purged behind snapshots.
//!
//! The committed id is not written on its own: it rides the next append's transaction.
//!
//! Small, cached operations (reading the few entries a replication round sends) run on the
//! calling task: a `spawn_blocking` round trip costs more
//! than they do. Anything that fsyncs or may read many entries goes to the blocking pool.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use ipam_core::tables::{decode_value as decode, encode_value as encode};

use crate::types::{Entry, LogId, StorageError, StorageIOError, TypeConfig, Vote};

/// Log entries by index.
const LOG: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("raft_log");
/// Vote, committed id, last purged id.
const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_log_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// Highest log index the log store may purge: the state machine's durable applied index.
/// `None` means nothing may be purged yet.
pub type PurgeLimit = watch::Receiver<Option<u64>>;

/// Held by every owner of an open redb file; the receiver of its channel sees `None` once all
/// of them are dropped, which is how `shutdown` knows the files are closed.
#[derive(Clone, Debug)]
pub(crate) struct DropSignal(#[allow(dead_code)] pub(crate) tokio::sync::mpsc::Sender<()>);

/// The redb-backed raft log. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<LogInner>,
}

struct LogInner {
    db: Database,
    purge_limit: PurgeLimit,
    /// A purge that the limit held back, finished by a later append.
    pending_purge: Mutex<Option<LogId>>,
    /// The committed id openraft last saved, not yet written: it rides the next append's
    /// transaction instead of a transaction of its own per entry on every replica.
    pending_committed: Mutex<Option<Option<LogId>>>,
    _closing: Option<DropSignal>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn join_err(e: tokio::task::JoinError) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// Opens (or creates) `log.redb` at `path`.
    pub fn open(path: &Path, purge_limit: PurgeLimit) -> Result<LogStore, StorageError> {
        Self::open_with(path, purge_limit, None, &crate::disk::Disk::default())
    }

    pub(crate) fn open_with(
        path: &Path,
        purge_limit: PurgeLimit,
        closing: Option<DropSignal>,
        disk: &crate::disk::Disk,
    ) -> Result<LogStore, StorageError> {
        let db = disk
            .create_db(path, crate::disk::LOG_CACHE_BYTES)
            .map_err(write_err)?;
        let txn = db.begin_write().map_err(write_err)?;
        {
            txn.open_table(LOG).map_err(write_err)?;
            txn.open_table(META).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)?;
        Ok(LogStore {
            inner: Arc::new(LogInner {
                db,
                purge_limit,
                pending_purge: Mutex::new(None),
                pending_committed: Mutex::new(None),
                _closing: closing,
            }),
        })
    }

    /// Reads at most this many entries on the calling task; more go to the blocking pool.
    const INLINE_READ_ENTRIES: u64 = 64;

    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&LogInner) -> Result<T, StorageError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(join_err)?
    }

    /// The last purged log id as recorded (what was actually purged).
    pub async fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|inner| Ok(inner.read_meta::<Option<LogId>>(KEY_PURGED)?.flatten()))
            .await
    }
}

impl LogInner {
    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let rtx = self.db.begin_read().map_err(read_err)?;
        let table = rtx.open_table(META).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(v) => Ok(Some(decode("raft_log_meta", v.value()).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(write_err)?;
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(durability).map_err(write_err)?;
        {
            let mut table = txn.open_table(META).map_err(write_err)?;
            table.insert(key, bytes.as_slice()).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }

    fn read_entries(&self, bounds: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, StorageError> {
        let rtx = self.db.begin_read().map_err(read_err)?;
        let table = rtx.open_table(LOG).map_err(read_err)?;
        let mut out = Vec::new();
        for row in table.range::<u64>(bounds).map_err(read_err)? {
            let (_, v) = row.map_err(read_err)?;
            out.push(decode::<Entry>("raft_log", v.value()).map_err(read_err)?);
        }
        Ok(out)
    }

    /// Purges entries up to `want` within the durable limit, inside `txn`. Returns whether the
    /// whole request was done.
    fn purge_in(&self, txn: &redb::WriteTransaction, want: LogId) -> Result<bool, StorageError> {
        let limit = *self.purge_limit.borrow();
        let Some(limit) = limit else {
            return Ok(false);
        };
        let mut log = txn.open_table(LOG).map_err(write_err)?;
        let upto = if want.index <= limit {
            want
        } else {
            // Only part of the request is allowed: record the id of the entry actually purged.
            match log.get(limit).map_err(read_err)? {
                Some(v) => {
                    decode::<Entry>("raft_log", v.value())
                        .map_err(read_err)?
                        .log_id
                }
                None => return Ok(false),
            }
        };
        let mut meta = txn.open_table(META).map_err(write_err)?;
        let previous: Option<LogId> = match meta.get(KEY_PURGED).map_err(read_err)? {
            Some(v) => decode("raft_log_meta", v.value()).map_err(read_err)?,
            None => None,
        };
        if previous.is_some_and(|p| p.index >= upto.index) {
            return Ok(upto == want);
        }
        log.retain_in(..=upto.index, |_, _| false)
            .map_err(write_err)?;
        let bytes = encode(&Some(upto)).map_err(write_err)?;
        meta.insert(KEY_PURGED, bytes.as_slice())
            .map_err(write_err)?;
        Ok(upto == want)
    }
}

/// How many indexes `bounds` spans, when both ends are bounded.
fn bounded_len((start, end): (Bound<u64>, Bound<u64>)) -> Option<u64> {
    let first = match start {
        Bound::Included(i) => i,
        Bound::Excluded(i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let past = match end {
        Bound::Included(i) => i.checked_add(1)?,
        Bound::Excluded(i) => i,
        Bound::Unbounded => return None,
    };
    Some(past.saturating_sub(first))
}

fn to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = to_bounds(&range);
        if bounded_len(bounds).is_some_and(|n| n <= Self::INLINE_READ_ENTRIES) {
            // A replication round of a follower that keeps up: recent entries, cached pages.
            return self.inner.read_entries(bounds);
        }
        self.blocking(move |inner| inner.read_entries(bounds)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|inner| {
            let last_purged: Option<LogId> = inner.read_meta(KEY_PURGED)?.flatten();
            let rtx = inner.db.begin_read().map_err(read_err)?;
            let table = rtx.open_table(LOG).map_err(read_err)?;
            let last = match table.last().map_err(read_err)? {
                Some((_, v)) => Some(
                    decode::<Entry>("raft_log", v.value())
                        .map_err(read_err)?
                        .log_id,
                ),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |inner| {
            inner
                .write_meta(KEY_VOTE, &vote, Durability::Immediate)
                .map_err(|e| StorageIOError::write_vote(&e).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|inner| inner.read_meta(KEY_VOTE)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Kept in memory and written by the next append: a stored committed id that lags only
        // means applying fewer entries at start-up and hearing the rest from the leader, while
        // a transaction of its own (even without fsync) per entry on every replica cost a redb
        // commit and a blocking-pool hop on the serial path.
        if let Ok(mut p) = self.inner.pending_committed.lock() {
            *p = Some(committed);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let pending = self.inner.pending_committed.lock().ok().and_then(|p| *p);
        if let Some(committed) = pending {
            return Ok(committed);
        }
        self.blocking(|inner| Ok(inner.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten()))
            .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let res = self
            .blocking(move |inner| {
                let mut txn = inner.db.begin_write().map_err(write_err)?;
                txn.set_durability(Durability::Immediate)
                    .map_err(write_err)?;
                {
                    let mut table = txn.open_table(LOG).map_err(write_err)?;
                    for entry in &entries {
                        let bytes = encode(entry)
                            .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
                        table
                            .insert(entry.log_id.index, bytes.as_slice())
                            .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
                    }
                }
                let committed = inner.pending_committed.lock().ok().and_then(|p| *p);
                if let Some(committed) = committed {
                    let bytes = encode(&committed).map_err(write_err)?;
                    let mut meta = txn.open_table(META).map_err(write_err)?;
                    meta.insert(KEY_COMMITTED, bytes.as_slice())
                        .map_err(write_err)?;
                }
                // Finish a purge the durable limit held back, now that it may have moved.
                let pending = inner.pending_purge.lock().ok().and_then(|p| *p);
                let mut done = false;
                if let Some(want) = pending {
                    done = inner.purge_in(&txn, want)?;
                }
                txn.commit().map_err(write_err)?;
                if done {
                    if let Ok(mut p) = inner.pending_purge.lock() {
                        if *p == pending {
                            *p = None;
                        }
                    }
                }
                Ok(())
            })
            .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| {
            let mut txn = inner.db.begin_write().map_err(write_err)?;
            txn.set_durability(Durability::Immediate)
                .map_err(write_err)?;
            {
                let mut table = txn.open_table(LOG).map_err(write_err)?;
                table
                    .retain_in(log_id.index.., |_, _| false)
                    .map_err(write_err)?;
            }
            txn.commit().map_err(write_err)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| {
            let mut txn = inner.db.begin_write().map_err(write_err)?;
            // A lost purge only leaves entries that the next purge removes.
            txn.set_durability(Durability::None).map_err(write_err)?;
            let done = inner.purge_in(&txn, log_id)?;
            txn.commit().map_err(write_err)?;
            if let Ok(mut p) = inner.pending_purge.lock() {
                *p = if done { None } else { Some(log_id) };
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_len_counts_indexes_of_every_bound_kind() {
        use Bound::{Excluded, Included, Unbounded};
        assert_eq!(bounded_len((Included(5), Excluded(9))), Some(4));
        assert_eq!(bounded_len((Included(5), Included(9))), Some(5));
        assert_eq!(bounded_len((Excluded(5), Included(9))), Some(4));
        assert_eq!(bounded_len((Unbounded, Excluded(3))), Some(3));
        assert_eq!(bounded_len((Included(9), Excluded(5))), Some(0));
        // An open end is never read on the calling task.
        assert_eq!(bounded_len((Included(5), Unbounded)), None);
        // Bounds at the edge of u64 must not overflow.
        assert_eq!(bounded_len((Excluded(u64::MAX), Included(u64::MAX))), None);
        assert_eq!(bounded_len((Included(0), Included(u64::MAX))), None);
    }
}
