//! The raft log: entries in segment files (`wal/`, see [`wal`](super::wal)), and `log.redb`
//! for the small rows (vote, purge point, committed id, log format, first live segment).
//!
//! openraft 0.9.25's leader waits for each append's flush before the next, so an append is one
//! write and one `fdatasync` of the current segment before the flush callback runs: a redb
//! transaction per append cost about twice the CPU of the sync itself (page allocator,
//! checksums, table tree). Purging never passes the state machine's durable applied index (a
//! `watch` channel): the state machine may commit applies without fsync, and after a crash it
//! re-applies from its durable point, which needs those log entries.
//!
//! The committed id is not written on its own: it rides the next append's write.
//!
//! A leader's own appends are written without waiting for their sync (`docs/architecture.md`,
//! "The leader's append"): openraft 0.9.25 awaits the flush callback before it replicates, so
//! the callback runs after the write and a background task syncs. Nothing may act on such an
//! entry before it is on disk: [`LogStore::durable`] is the watermark the state machine waits
//! for before applying and the transport clamps the commit index it sends to. A follower's
//! appends are synced before the callback, since its answer counts toward the quorum.
//!
//! Format: `format` absent in META means entries in redb's `raft_log` table (release 0.1.0 and
//! later builds before the WAL). Opening such a store copies the entries into a fresh WAL,
//! syncs it, and then sets `format`, `wal_first` and empties `raft_log` in one redb commit, so
//! a cut leaves either format whole; segments left by a cut migration are rewritten.
//!
//! Small operations (reading the few entries a replication round sends: a `pread` of cached
//! pages) run on the calling task: a `spawn_blocking` round trip costs more than they do.
//! Anything that fsyncs or may read many entries goes to the blocking pool.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use ipam_core::tables::decode_value as decode;

pub use super::wal::WalError;
use super::wal::{LogDurable, Wal};
use crate::disk::Disk;
use crate::poison::lock;
use crate::types::{Entry, LogId, NodeId, StorageError, StorageIOError, TypeConfig, Vote};
use leader::{committed_within, own_leader_append, restart_vote};

mod install;
mod leader;

/// Log entries by index (format 1; empty once migrated).
const LOG: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("raft_log");
/// Vote, committed id, last purged id, format, first segment.
const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_log_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const KEY_FORMAT: &str = "format";
const KEY_WAL_FIRST: &str = "wal_first";

/// Entries in segment files.
const FORMAT_WAL: u64 = 2;
/// Entries copied per write while migrating.
const MIGRATE_BATCH_BYTES: usize = 1 << 20;

/// Highest log index the log store may purge: the state machine's durable applied index.
/// `None` means nothing may be purged yet.
pub type PurgeLimit = watch::Receiver<Option<u64>>;

/// Held by every owner of an open redb file; the receiver of its channel sees `None` once all
/// of them are dropped, which is how `shutdown` knows the files are closed.
#[derive(Clone, Debug)]
pub(crate) struct DropSignal(#[allow(dead_code)] pub(crate) tokio::sync::mpsc::Sender<()>);

/// The raft log store. Cheap to clone; clones share the files.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<LogInner>,
}

struct LogInner {
    db: Database,
    wal: Wal,
    purge_limit: PurgeLimit,
    /// What `log.redb` records as purged (written only under the WAL's writer lock).
    purged: Mutex<Option<LogId>>,
    /// A purge that the limit held back, finished by a later append.
    pending_purge: Mutex<Option<LogId>>,
    /// The committed id openraft last saved, not yet written: it rides the next append.
    pending_committed: Mutex<Option<Option<LogId>>>,
    /// The highest commit index openraft saved (or the log recorded at open), for the node's
    /// status: openraft 0.9.25's metrics carry none, and its core saves every commit here
    /// before applying it.
    committed_index: Arc<AtomicU64>,
    /// This node's id, once known: only then are its own leader appends left unsynced.
    own_id: std::sync::OnceLock<NodeId>,
    /// The node's stop signal, once known: it ends an append's wait for an install.
    stopping: std::sync::OnceLock<watch::Receiver<bool>>,
    /// The vote last saved (or read at open): whose term the entries being appended are.
    vote: Mutex<Option<Vote>>,
    /// A background sync is running (it picks up what is written meanwhile).
    syncing: AtomicBool,
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

/// The version byte of every `raft_log_meta` value a format-2 store writes. Format 1 wrote
/// version 1 (ipam-core's `encode_value`). A release that knows only format 1 does not look at
/// `format`: it would read the emptied `raft_log` as an empty log (a lost vote, lost entries)
/// and go on. Its value decoder refuses version 2 instead, naming both versions, so such a
/// release stops at start on a migrated data dir rather than misreading it.
const META_VERSION: u8 = 2;

fn get_meta<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StorageError> {
    let Some(v) = table.get(key).map_err(read_err)? else {
        return Ok(None);
    };
    let value = match v.value().split_first() {
        Some((&(1 | META_VERSION), body)) => ipam_core::tables::decode_body("raft_log_meta", body),
        _ => decode("raft_log_meta", v.value()),
    };
    value.map(Some).map_err(read_err)
}

fn put_meta<T: serde::Serialize>(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), StorageError> {
    let bytes = postcard::to_extend(value, vec![META_VERSION]).map_err(write_err)?;
    table.insert(key, bytes.as_slice()).map_err(write_err)?;
    Ok(())
}

/// Where the segments of the log at `path` (`log.redb`) live.
fn wal_dir(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).join("wal")
}

impl LogStore {
    /// Opens (or creates) `log.redb` at `path` and its segments in `wal/` beside it.
    pub fn open(path: &Path, purge_limit: PurgeLimit) -> Result<LogStore, StorageError> {
        Self::open_with(
            path,
            purge_limit,
            None,
            &Disk::default(),
            super::wal::SEGMENT_BYTES,
        )
    }

    /// Opens the log at `path` on `disk`, with new segments of `segment_bytes` (power-loss
    /// tests of the log store alone).
    #[cfg(feature = "testing")]
    pub fn open_on(
        path: &Path,
        purge_limit: PurgeLimit,
        disk: &Disk,
        segment_bytes: u64,
    ) -> Result<LogStore, StorageError> {
        Self::open_with(path, purge_limit, None, disk, segment_bytes)
    }

    pub(crate) fn open_with(
        path: &Path,
        purge_limit: PurgeLimit,
        closing: Option<DropSignal>,
        disk: &Disk,
        segment_bytes: u64,
    ) -> Result<LogStore, StorageError> {
        let db = disk
            .create_db(path, crate::disk::LOG_CACHE_BYTES)
            .map_err(write_err)?;
        let txn = db.begin_write().map_err(write_err)?;
        let (format, wal_first, purged, committed) = {
            txn.open_table(LOG).map_err(write_err)?;
            let meta = txn.open_table(META).map_err(write_err)?;
            (
                get_meta::<u64>(&meta, KEY_FORMAT)?,
                get_meta::<u64>(&meta, KEY_WAL_FIRST)?,
                get_meta::<Option<LogId>>(&meta, KEY_PURGED)?.flatten(),
                get_meta::<Option<LogId>>(&meta, KEY_COMMITTED)?.flatten(),
            )
        };
        txn.commit().map_err(write_err)?;
        let dir = wal_dir(path);
        let wal_first = match format {
            None => migrate(&db, &dir, disk, segment_bytes)?,
            Some(FORMAT_WAL) => wal_first.unwrap_or(0),
            Some(found) => {
                return Err(read_err(WalError::UnknownFormat {
                    found,
                    known: FORMAT_WAL,
                }))
            }
        };
        let wal = Wal::open(
            &dir,
            disk,
            segment_bytes,
            wal_first,
            purged.map(|p| p.index),
            committed,
        )
        .map_err(read_err)?;
        let committed_index = Arc::new(AtomicU64::new(wal.committed().map_or(0, |c| c.index)));
        let vote = {
            let rtx = db.begin_read().map_err(read_err)?;
            let meta = rtx.open_table(META).map_err(read_err)?;
            get_meta::<Vote>(&meta, KEY_VOTE)?
        };
        Ok(LogStore {
            inner: Arc::new(LogInner {
                db,
                wal,
                purge_limit,
                purged: Mutex::new(purged),
                pending_purge: Mutex::new(None),
                pending_committed: Mutex::new(None),
                committed_index,
                own_id: std::sync::OnceLock::new(),
                stopping: std::sync::OnceLock::new(),
                vote: Mutex::new(vote),
                syncing: AtomicBool::new(false),
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

    /// Runs `f` — an append: one write and one `fdatasync` — on this task, telling the runtime
    /// first (`block_in_place`) so the worker's other tasks move to another thread. The
    /// core awaits the append before anything else anyway; a `spawn_blocking` round trip
    /// adds two thread hand-offs to the serial path of every write, on leader and follower.
    /// A current-thread runtime (an embedder's, a test's) cannot do that: the blocking pool.
    async fn sync_io<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&LogInner) -> Result<T, StorageError> + Send + 'static,
    {
        let flavor = tokio::runtime::Handle::current().runtime_flavor();
        if flavor == tokio::runtime::RuntimeFlavor::MultiThread {
            let inner = self.inner.clone();
            tokio::task::block_in_place(move || f(&inner))
        } else {
            self.blocking(f).await
        }
    }

    /// Leaves this node's own appends as leader unsynced when written (the node's start does
    /// this; a store without it syncs every append, as openraft's storage suite expects).
    pub(crate) fn set_own_id(&self, id: NodeId) {
        let _ = self.inner.own_id.set(id);
    }

    /// The node's stop signal: an append waiting for a snapshot install gives up when it
    /// fires, so that stopping the node does not wait for an install that failed.
    pub(crate) fn set_stopping(&self, stopping: watch::Receiver<bool>) {
        let _ = self.inner.stopping.set(stopping);
    }

    /// How far the log is on disk.
    pub(crate) fn durable(&self) -> watch::Receiver<LogDurable> {
        self.inner.wal.durable()
    }

    /// Syncs what a leader append left unsynced, on the blocking pool, unless a sync is already
    /// running: it loops until nothing written is left unsynced, so no append waits for one.
    fn sync_in_background(&self) {
        if self.inner.syncing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || loop {
            let res = inner.wal.sync_written();
            inner.syncing.store(false, Ordering::Release);
            if let Err(e) = res {
                // The watermark says `failed`: the state machine stops applying, and the next
                // append fails, which stops openraft.
                tracing::error!(error = %e, "syncing the log failed");
                return;
            }
            // An append that wrote after the sync began and saw `syncing` set left its bytes
            // to this loop: take them, unless a new sync took the flag first.
            if !inner.wal.has_unsynced() || inner.syncing.swap(true, Ordering::AcqRel) {
                return;
            }
        });
    }

    /// The commit index as openraft saves it, shared: it rises as commits happen.
    pub(crate) fn committed_index(&self) -> Arc<AtomicU64> {
        self.inner.committed_index.clone()
    }

    /// The last purged log id as recorded (what was actually purged).
    pub async fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        Ok(*lock(&self.inner.purged))
    }
}

/// Copies the entries of format 1 (`raft_log`) into a new WAL and switches `log.redb` to it in
/// one commit; returns the first segment's number.
fn migrate(
    db: &Database,
    dir: &Path,
    disk: &Disk,
    segment_bytes: u64,
) -> Result<u64, StorageError> {
    const FIRST: u64 = 0;
    disk.create_dir(dir).map_err(write_err)?;
    // The directory's own name must be durable before anything in it counts.
    disk.sync_dir(dir.parent().unwrap_or(Path::new(".")))
        .map_err(write_err)?;
    Wal::remove_from(dir, disk, FIRST).map_err(write_err)?;
    let wal = Wal::create(dir, disk, segment_bytes, FIRST).map_err(write_err)?;
    {
        let rtx = db.begin_read().map_err(read_err)?;
        let table = rtx.open_table(LOG).map_err(read_err)?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        for row in table.iter().map_err(read_err)? {
            let (_, v) = row.map_err(read_err)?;
            bytes += v.value().len();
            batch.push(decode::<Entry>("raft_log", v.value()).map_err(read_err)?);
            if bytes >= MIGRATE_BATCH_BYTES {
                wal.append(std::mem::take(&mut batch), None)
                    .map_err(write_err)?;
                bytes = 0;
            }
        }
        wal.append(batch, None).map_err(write_err)?;
    }
    drop(wal);
    let mut txn = db.begin_write().map_err(write_err)?;
    txn.set_durability(Durability::Immediate)
        .map_err(write_err)?;
    {
        let mut meta = txn.open_table(META).map_err(write_err)?;
        put_meta(&mut meta, KEY_FORMAT, &FORMAT_WAL)?;
        put_meta(&mut meta, KEY_WAL_FIRST, &FIRST)?;
        // Rewritten in version 2, so that a format-1 release refuses the data dir.
        if let Some(vote) = get_meta::<Vote>(&meta, KEY_VOTE)? {
            put_meta(&mut meta, KEY_VOTE, &vote)?;
        }
        for key in [KEY_COMMITTED, KEY_PURGED] {
            if let Some(id) = get_meta::<Option<LogId>>(&meta, key)? {
                put_meta(&mut meta, key, &id)?;
            }
        }
        let mut log = txn.open_table(LOG).map_err(write_err)?;
        log.retain(|_, _| false).map_err(write_err)?;
    }
    txn.commit().map_err(write_err)?;
    Ok(FIRST)
}

impl LogInner {
    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let rtx = self.db.begin_read().map_err(read_err)?;
        let table = rtx.open_table(META).map_err(read_err)?;
        get_meta(&table, key)
    }

    fn read_entries(&self, bounds: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, StorageError> {
        self.wal.read(bounds).map_err(read_err)
    }

    /// Finishes the held-back purge `want` as far as the limit allows; it stops being held back
    /// once all of it is done (unless a newer one replaced it meanwhile).
    fn finish_purge(&self, want: LogId, sync: bool) -> Result<(), StorageError> {
        if self.purge(want, sync)? {
            let mut p = lock(&self.pending_purge);
            if *p == Some(want) {
                *p = None;
            }
        }
        Ok(())
    }

    /// Purges entries up to `want` within the durable limit, durably if `sync` (otherwise
    /// only when segments go). Returns whether the whole request was done.
    fn purge(&self, want: LogId, sync: bool) -> Result<bool, StorageError> {
        let Some(limit) = *self.purge_limit.borrow() else {
            return Ok(false);
        };
        let mut paused = self.wal.pause();
        let upto = if want.index <= limit {
            want
        } else {
            // Only part of the request is allowed: record the id of the entry actually purged.
            match self.wal.log_id(limit) {
                Some(id) => id,
                None => return Ok(false),
            }
        };
        let previous = *lock(&self.purged);
        if previous.is_some_and(|p| p.index >= upto.index) {
            return Ok(upto == want);
        }
        let first = paused.first_seq();
        let keep = paused.first_kept(upto.index);
        let mut txn = self.db.begin_write().map_err(write_err)?;
        // Segments are removed only once `log.redb` durably names a later first one; a purge
        // that removes none may be lost in a crash, which only leaves entries the next purge
        // removes.
        let durability = if sync || keep > first {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).map_err(write_err)?;
        {
            let mut meta = txn.open_table(META).map_err(write_err)?;
            put_meta(&mut meta, KEY_PURGED, &Some(upto))?;
            put_meta(&mut meta, KEY_WAL_FIRST, &keep)?;
            // The committed records in the removed segments are gone: keep the newest here.
            if let Some(c) = self.wal.committed() {
                put_meta(&mut meta, KEY_COMMITTED, &Some(c))?;
            }
        }
        txn.commit().map_err(write_err)?;
        *lock(&self.purged) = Some(upto);
        paused.purge(upto.index, keep).map_err(write_err)?;
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
        let last_purged = *lock(&self.inner.purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: self.inner.wal.last().or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |inner| {
            *lock(&inner.vote) = Some(vote);
            let res = (|| {
                let mut txn = inner.db.begin_write().map_err(write_err)?;
                txn.set_durability(Durability::Immediate)
                    .map_err(write_err)?;
                {
                    let mut meta = txn.open_table(META).map_err(write_err)?;
                    put_meta(&mut meta, KEY_VOTE, &vote)?;
                }
                txn.commit().map_err(write_err)
            })();
            res.map_err(|e| StorageIOError::write_vote(&e).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let own = self.inner.own_id.get().copied();
        self.blocking(move |inner| {
            let vote: Option<Vote> = inner.read_meta(KEY_VOTE)?;
            Ok(vote.map(|v| restart_vote(own, v)))
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Kept in memory and written by the next append: a stored committed id that lags only
        // means applying fewer entries at start-up and hearing the rest from the leader, while
        // a transaction of its own (even without fsync) per entry on every replica cost a redb
        // commit and a blocking-pool hop on the serial path.
        if let Ok(mut p) = self.inner.pending_committed.lock() {
            *p = Some(committed);
        }
        if let Some(c) = committed {
            self.inner
                .committed_index
                .fetch_max(c.index, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let pending = self.inner.pending_committed.lock().ok().and_then(|p| *p);
        if let Some(committed) = pending {
            return Ok(committed);
        }
        let end = self.inner.wal.last().or(*lock(&self.inner.purged));
        Ok(committed_within(self.inner.wal.committed(), end))
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
        if let Err(e) = self.close_hole_before(&entries).await {
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(e);
        }
        let own =
            self.inner.own_id.get().is_some_and(|&id| {
                own_leader_append(id, lock(&self.inner.vote).as_ref(), &entries)
            });
        let write = move |inner: &LogInner| {
            let committed = lock(&inner.pending_committed).take();
            let res = if own {
                inner.wal.append_unsynced(entries, committed)
            } else {
                inner.wal.append(entries, committed)
            };
            if let Err(e) = res {
                if let Some(c) = committed {
                    lock(&inner.pending_committed).get_or_insert(c);
                }
                return Err(write_err(e));
            }
            Ok(())
        };
        let res = if own {
            // A write into the page cache (a segment roll aside): on this task, then the sync
            // in the background.
            let res = write(&self.inner);
            if res.is_ok() {
                self.sync_in_background();
            }
            res
        } else {
            self.sync_io(write).await
        };
        // Finish a purge the durable limit held back, once the limit allows all of it (a
        // partial one is a `log.redb` commit per append for little gain).
        let pending = *lock(&self.inner.pending_purge);
        if let Some(want) = pending {
            let limit = *self.inner.purge_limit.borrow();
            if res.is_ok() && limit.is_some_and(|l| l >= want.index) {
                callback.log_io_completed(Ok(()));
                return self
                    .blocking(move |inner| inner.finish_purge(want, false))
                    .await;
            }
        }
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
        self.blocking(move |inner| inner.wal.truncate(log_id.index).map_err(write_err))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| {
            let done = inner.purge(log_id, false)?;
            *lock(&inner.pending_purge) = if done { None } else { Some(log_id) };
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
