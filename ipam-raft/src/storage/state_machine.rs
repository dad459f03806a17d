//! The state machine on `state.redb`, and its snapshots.
//!
//! One redb write transaction per applied batch runs the core's `apply` for every command and
//! records the last applied log id and membership in the raft layer's own `raft_sm_meta`
//! table, so state and raft position can never disagree. Applies commit without fsync; an
//! `Immediate` commit every `durable_every_entries` entries, every `durable_interval`
//! (background flusher), before each snapshot build and when the store is dropped bounds what a
//! crash loses, and the durable applied index is published for the log store's purge limit so
//! the log always holds what a restart must re-apply.
//!
//! Snapshot files are built and loaded in `storage/snapshot.rs`; the shared database handle
//! and the durability bookkeeping are in `storage/state_db.rs`.
//! The integrity check is in `storage/state_machine/check.rs`, backups and restore in
//! `storage/state_machine/backup.rs`.

use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use ipam_core::State;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use redb::{Durability, ReadTransaction, ReadableDatabase};
use tokio::sync::watch;

mod backup;
mod check;
pub(crate) use backup::restore_backup;
pub use backup::{verify_backup, BackupHeader, RestoreError, Restored, BACKUP_FORMAT};
pub use check::CheckReport;

use super::log::DropSignal;
use super::snapshot::{
    current_index, load_snapshot, snap_read, snap_write, SnapshotBuilder, SNAP_DIR,
};
pub use super::state_db::Durable;
use super::state_db::{
    applied_of, open_db, sm_read, sm_write, write_meta, Pending, PurgeBounds, SmShared, StateDb,
    KEY_APPLIED, KEY_MEMBERSHIP, SM_META, STATE_FILE, STATE_TMP,
};
use crate::disk::SnapshotFile;
use crate::types::{
    Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    TypeConfig,
};

/// The state machine store handed to openraft.
pub struct StateMachineStore {
    shared: Arc<SmShared>,
}

impl StateMachineStore {
    /// Opens (or creates) `state.redb` in `dir`. `durable_tx` receives the log store's purge
    /// limit ([`PurgeBounds`]: the durable applied index, at most the current snapshot's).
    pub fn open(
        dir: &Path,
        durable: Durable,
        durable_tx: watch::Sender<Option<u64>>,
    ) -> Result<StateMachineStore, StorageError> {
        Self::open_with(
            dir,
            durable,
            durable_tx,
            None,
            crate::disk::Disk::default(),
            crate::disk::DEFAULT_STATE_CACHE_BYTES,
        )
    }

    pub(crate) fn open_with(
        dir: &Path,
        durable: Durable,
        durable_tx: watch::Sender<Option<u64>>,
        closing: Option<DropSignal>,
        disk: crate::disk::Disk,
        cache_bytes: usize,
    ) -> Result<StateMachineStore, StorageError> {
        let snap_dir = dir.join(SNAP_DIR);
        std::fs::create_dir_all(&snap_dir).map_err(sm_write)?;
        // Leftovers of an interrupted install or snapshot transfer.
        let _ = disk.remove(&dir.join(STATE_TMP));
        for name in disk.list(&snap_dir).unwrap_or_default() {
            if name.ends_with(".tmp") || name.ends_with(".part") {
                let _ = disk.remove(&snap_dir.join(name));
            }
        }
        let db = open_db(&disk, &dir.join(STATE_FILE), cache_bytes)?;
        let txn = db.begin_write().map_err(sm_write)?;
        txn.open_table(SM_META).map_err(sm_write)?;
        txn.commit().map_err(sm_write)?;
        let state = State::open(&db).map_err(sm_read)?;
        let level = state.feature_level();
        let applied = {
            let rtx = db.begin_read().map_err(sm_read)?;
            applied_of(&rtx)?.0
        };
        // What is on disk at open is durable.
        let bounds = PurgeBounds {
            durable: applied.map(|l| l.index),
            snapshot: current_index(&disk, &snap_dir)?,
        };
        durable_tx.send_replace(bounds.limit());
        let shared = Arc::new(SmShared {
            dir: dir.to_path_buf(),
            disk,
            cache_bytes,
            db: RwLock::new(Some(Arc::new(StateDb {
                db,
                _closing: closing,
            }))),
            durable_tx,
            bounds: Mutex::new(bounds),
            durable,
            pending: Mutex::new(Pending::default()),
            snapshot_lock: Mutex::new(()),
            // Seeded from the clock so file names and snapshot ids never repeat across restarts.
            snapshot_seq: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(0))
                    .unwrap_or(0),
            ),
            installs: AtomicU64::new(0),
            built: tokio::sync::watch::Sender::new(None),
            index: Mutex::new(state),
            expirations: Mutex::default(),
            applies: crate::trace::ApplyLog::default(),
            applied_level: std::sync::atomic::AtomicU32::new(level),
            event_retention: AtomicU64::new(ipam_core::events::DEFAULT_RETENTION),
            log_durable: std::sync::OnceLock::new(),
            early: crate::answers::EarlyAnswers::default(),
        });
        Ok(StateMachineStore { shared })
    }

    /// A read transaction on the current `state.redb` (for the core's queries).
    pub fn begin_read(&self) -> Result<ReadTransaction, StorageError> {
        self.shared.db()?.db.begin_read().map_err(sm_read)
    }

    pub(crate) fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }

    /// Finishes a snapshot install that a crash cut between moving `state.redb` to the
    /// snapshot and publishing it as the current snapshot. The state is then ahead of the
    /// current snapshot, and either ahead of the log's last entry `log_last` (openraft's start
    /// purges the log up to the applied id) or behind a purge the log already made
    /// (`log_purged`: an install's purge may land before its `current.meta`). openraft requires
    /// a snapshot at least as far as its purge point at start, or it panics
    /// (`purge_upto <= snapshot_last_log_id`); a snapshot of the state is the one the install
    /// was publishing. The log never purges past the state's durable applied id, so the state
    /// covers `log_purged`. Returns the current snapshot's last log id, after the repair.
    pub(crate) async fn finish_interrupted_install(
        &mut self,
        log_last: Option<LogId>,
        log_purged: Option<LogId>,
    ) -> Result<Option<LogId>, StorageError> {
        let (applied, _) = self.applied_state().await?;
        let current = self
            .get_current_snapshot()
            .await?
            .and_then(|s| s.meta.last_log_id);
        if !needs_snapshot_at_start(applied, log_last, log_purged, current) {
            return Ok(current);
        }
        tracing::warn!(
            applied = ?applied,
            log_last = ?log_last,
            log_purged = ?log_purged,
            snapshot = ?current,
            "state ahead of the current snapshot (an interrupted install): publishing a snapshot of it"
        );
        let built = self.get_snapshot_builder().await.build_snapshot().await?;
        Ok(built.meta.last_log_id)
    }

    /// Waits until the log holds `entries` on disk. openraft commits a leader's entry once a
    /// majority counting the leader has appended it, and the leader's own append is
    /// acknowledged before its sync (`storage::log`): applying, and so answering, only after
    /// the leader's copy is durable too keeps every answered write on a majority's disks.
    /// A follower syncs before it acknowledges, so there this returns at once.
    async fn wait_on_disk(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let (Some(rx), Some(last)) = (self.shared.log_durable.get(), entries.last()) else {
            return Ok(());
        };
        let index = last.log_id.index;
        let now = *rx.borrow();
        if now.covers(index) && !now.failed {
            return Ok(());
        }
        let mut rx = rx.clone();
        let on_disk = rx
            .wait_for(|d| d.covers(index))
            .await
            .map(|d| !d.failed)
            .unwrap_or(false);
        if on_disk {
            Ok(())
        } else {
            Err(StorageIOError::apply(
                last.log_id,
                &std::io::Error::other("the log failed to sync this entry"),
            )
            .into())
        }
    }

    async fn blocking<T, F>(&mut self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&SmShared, &mut State) -> Result<T, StorageError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = shared
                .index
                .lock()
                .map_err(|_| sm_write(std::io::Error::other("poisoned index lock")))?;
            f(&shared, &mut state)
        })
        .await
        .map_err(sm_write)?
    }
}

/// Whether start must publish a snapshot of the state before openraft starts: openraft purges
/// the log up to `applied` when the log ends before it, and needs the current snapshot to
/// reach its purge point (the log's, or `applied` in that case).
fn needs_snapshot_at_start(
    applied: Option<LogId>,
    log_last: Option<LogId>,
    log_purged: Option<LogId>,
    current: Option<LogId>,
) -> bool {
    let purge_point = if applied > log_last {
        applied
    } else {
        log_purged
    };
    current < purge_point
}

fn apply_batch(
    shared: &SmShared,
    state: &mut State,
    entries: &[Entry],
) -> Result<Vec<Response>, StorageError> {
    let started = shared.applies.enabled().then(std::time::SystemTime::now);
    let db = shared.db()?;
    let mut txn = db.db.begin_write().map_err(sm_write)?;
    let mut out = Vec::with_capacity(entries.len());
    // Set on every batch: the state is rebuilt after a snapshot install or a failed apply.
    state.set_event_retention(
        shared
            .event_retention
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let mut membership = None;
    let mut last = None;
    for entry in entries {
        let resp = match &entry.payload {
            EntryPayload::Blank => Vec::new(),
            EntryPayload::Normal(req) => {
                match state.apply_at(&txn, entry.log_id.index, req.stamp, &req.commands) {
                    Ok(r) => {
                        crate::leases::count_expired(shared, state.expired());
                        r
                    }
                    Err(e) => {
                        // The index may hold changes of the aborted transaction: rebuild it.
                        drop(txn);
                        if let Ok(s) = State::open(&db.db) {
                            *state = s;
                        }
                        return Err(StorageIOError::apply(entry.log_id, &e).into());
                    }
                }
            }
            EntryPayload::Membership(m) => {
                membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                Vec::new()
            }
        };
        out.push(resp);
        last = Some(entry.log_id);
    }
    let Some(last) = last else {
        return Ok(out);
    };
    write_meta(&txn, KEY_APPLIED, &Some(last))?;
    if let Some(m) = &membership {
        write_meta(&txn, KEY_MEMBERSHIP, m)?;
    }
    let durable = {
        let mut p = shared
            .pending
            .lock()
            .map_err(|_| sm_write(std::io::Error::other("poisoned")))?;
        p.entries += entries.len() as u64;
        let since = *p.since.get_or_insert_with(Instant::now);
        if p.entries >= shared.durable.every_entries || since.elapsed() >= shared.durable.interval {
            *p = Pending::default();
            true
        } else {
            false
        }
    };
    if durable {
        txn.set_durability(Durability::Immediate)
            .map_err(sm_write)?;
        txn.set_quick_repair(true);
    } else {
        txn.set_durability(Durability::None).map_err(sm_write)?;
    }
    if let Err(e) = txn.commit() {
        if let Ok(s) = State::open(&db.db) {
            *state = s;
        }
        return Err(sm_write(e));
    }
    if durable {
        shared.publish_durable(Some(last.index));
    }
    if let Some(start) = started {
        record_applies(shared, entries, start);
    }
    shared
        .applied_level
        .store(state.feature_level(), Ordering::Relaxed);
    Ok(out)
}

/// Notes the entries of one applied batch (one transaction, so one time span) for their
/// trace spans.
fn record_applies(shared: &SmShared, entries: &[Entry], start: std::time::SystemTime) {
    let end = std::time::SystemTime::now();
    shared
        .applies
        .record(entries.iter().filter_map(|e| match &e.payload {
            EntryPayload::Normal(req) => Some(crate::trace::Applied {
                index: e.log_id.index,
                ops: req.commands.iter().map(ipam_core::Command::op_count).sum(),
                start,
                end,
            }),
            _ => None,
        }));
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.blocking(|shared, _| {
            let db = shared.db()?;
            let rtx = db.db.begin_read().map_err(sm_read)?;
            applied_of(&rtx)
        })
        .await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.wait_on_disk(&entries).await?;
        let (out, entries) = self
            .blocking(move |shared, state| Ok((apply_batch(shared, state, &entries)?, entries)))
            .await?;
        // Committed: the writers waiting here hear their results now (`crate::answers`), from
        // this task — a wake from the blocking pool's thread costs each waiter a trip through
        // the runtime's shared queue.
        for (entry, results) in entries.iter().zip(&out) {
            if let EntryPayload::Normal(req) = &entry.payload {
                self.shared.early.answer(&req.commands, results);
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The read transaction is taken now, on openraft's serial path, so the snapshot covers
        // exactly what was applied when openraft asked, while applies continue.
        let rtx = self.shared.db().ok().and_then(|db| db.db.begin_read().ok());
        SnapshotBuilder {
            shared: self.shared.clone(),
            rtx,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.shared.snap_dir().join(format!("recv-{seq}.part"));
        let disk = self.shared.disk.clone();
        let file = tokio::task::spawn_blocking(move || disk.create(&path))
            .await
            .map_err(snap_write)?
            .map_err(snap_write)?;
        Ok(Box::new(file.into()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let mut src = snapshot.into_disk_file().await;
        let meta = meta.clone();
        self.blocking(move |shared, state| {
            let tmp = shared.dir.join(STATE_TMP);
            if let Err(e) = load_snapshot(&shared.disk, &mut src, &tmp, &meta, shared.cache_bytes) {
                let _ = shared.disk.remove(&tmp);
                return Err(e);
            }
            // The new file replaces the old one on disk while readers keep the old handle (its
            // inode lives until they drop it); applies cannot run (this task holds the index
            // lock). The database is opened and the index rebuilt before the handle swap, so
            // the write lock is held for the swap alone: readers on executor threads never
            // wait for file I/O (defect 6).
            let closing = shared
                .db
                .read()
                .map_err(|_| sm_write(std::io::Error::other("poisoned")))?
                .as_ref()
                .and_then(|d| d._closing.clone());
            let path = shared.dir.join(STATE_FILE);
            shared.disk.rename(&tmp, &path).map_err(sm_write)?;
            shared.disk.sync_dir(&shared.dir).map_err(sm_write)?;
            let db = open_db(&shared.disk, &path, shared.cache_bytes)?;
            let new_state = State::open(&db).map_err(sm_read)?;
            // The new handle inherits the old one's close signal; none is kept elsewhere, so
            // shutdown can tell when every handle is gone.
            let new = Some(Arc::new(StateDb {
                db,
                _closing: closing,
            }));
            let old = {
                let mut slot = shared
                    .db
                    .write()
                    .map_err(|_| sm_write(std::io::Error::other("poisoned")))?;
                std::mem::replace(&mut *slot, new)
            };
            *state = new_state;
            shared
                .applied_level
                .store(state.feature_level(), Ordering::Relaxed);
            // Dropping the old handle commits (an fsync): after the lock is released.
            drop(old);
            if let Ok(mut p) = shared.pending.lock() {
                *p = Pending::default();
            }
            tracing::info!(snapshot = %meta, "installed snapshot");
            // Keep what was installed as this node's current snapshot, so it can serve it on.
            let seq = shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let copy = shared.snap_dir().join(format!("installed-{seq}.tmp"));
            src.seek(SeekFrom::Start(0)).map_err(snap_read)?;
            let mut out = shared.disk.create(&copy).map_err(snap_write)?;
            src.copy_to(&mut out).map_err(snap_write)?;
            out.sync_all().map_err(snap_write)?;
            shared.publish_snapshot(&copy, &meta)?;
            // The log may now be purged up to the snapshot (`PurgeBounds`: publishing it raised
            // the snapshot bound): a crash before this point restarts with a current snapshot
            // that covers everything the log lacks (defect 5).
            shared.publish_durable(meta.last_log_id.map(|l| l.index));
            shared.installs.fetch_add(1, Ordering::Relaxed);
            // Received transfer files are no longer needed (open handles stay valid).
            let snap_dir = shared.snap_dir();
            for name in shared.disk.list(&snap_dir).unwrap_or_default() {
                if name.ends_with(".part") {
                    let _ = shared.disk.remove(&snap_dir.join(name));
                }
            }
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let shared = self.shared.clone();
        let cur = tokio::task::spawn_blocking(move || shared.current_snapshot())
            .await
            .map_err(snap_read)??;
        Ok(cur.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(file.into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::needs_snapshot_at_start;
    use crate::types::LogId;

    fn id(index: u64) -> Option<LogId> {
        Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index))
    }

    #[test]
    fn start_publishes_a_snapshot_only_when_openraft_would_purge_past_the_current_one() {
        // A normal start: state, log and snapshot agree.
        assert!(!needs_snapshot_at_start(id(50), id(60), id(40), id(40)));
        assert!(!needs_snapshot_at_start(None, None, None, None));
        // The state ahead of the log's end: openraft purges to the state.
        assert!(needs_snapshot_at_start(id(70), id(60), id(40), id(40)));
        assert!(!needs_snapshot_at_start(id(70), id(60), id(40), id(70)));
        // An install's purge landed, its current.meta did not (the log ends at the purge).
        assert!(needs_snapshot_at_start(id(639), id(639), id(639), id(601)));
        assert!(needs_snapshot_at_start(id(650), id(660), id(639), id(601)));
        assert!(!needs_snapshot_at_start(id(650), id(660), id(639), id(639)));
    }
}
