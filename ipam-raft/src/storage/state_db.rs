//! `state.redb` and the state shared by the state machine store, its snapshot builders, the
//! background flusher and the node's readers: the open database, the raft layer's own meta
//! rows (last applied log id, membership) and when pending applies become durable.
//!
//! Applies commit without fsync; an `Immediate` commit every `durable_every_entries` entries,
//! every `durable_interval` (background flusher), before each snapshot build and when the store
//! is dropped bounds what a crash loses, and the durable applied index is published for the log
//! store's purge limit so the log always holds what a restart must re-apply.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadTransaction, ReadableTable, TableDefinition};
use serde::Serialize;
use tokio::sync::watch;

use super::log::DropSignal;
use ipam_core::tables::{decode_value as decode, encode_value as encode};

use crate::types::{LogId, StorageError, StorageIOError, StoredMembership};

/// The raft layer's own rows in `state.redb`: last applied log id and membership.
pub(crate) const SM_META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_sm_meta");
pub(super) const KEY_APPLIED: &str = "last_applied";
pub(super) const KEY_MEMBERSHIP: &str = "membership";

pub(super) const STATE_FILE: &str = "state.redb";
pub(super) const STATE_TMP: &str = "state.redb.tmp";

/// When the state machine makes its applies durable.
#[derive(Clone, Copy, Debug)]
pub struct Durable {
    /// An `Immediate` commit after at most this many applied entries.
    pub every_entries: u64,
    /// And at least this often while anything is pending (background flusher).
    pub interval: Duration,
}

impl Default for Durable {
    fn default() -> Self {
        Durable {
            every_entries: 1_000,
            interval: Duration::from_secs(1),
        }
    }
}

/// An open `state.redb`. Dropping it makes pending applies durable.
pub(crate) struct StateDb {
    pub(crate) db: Database,
    pub(super) _closing: Option<DropSignal>,
}

impl Drop for StateDb {
    fn drop(&mut self) {
        // A clean close keeps every non-durable apply, so an in-process restart resumes exactly.
        if let Ok(mut txn) = self.db.begin_write() {
            let _ = txn.set_durability(Durability::Immediate);
            txn.set_quick_repair(true);
            let _ = txn.commit();
        }
    }
}

/// State shared between the state machine store, its snapshot builders, the background flusher
/// and the node's readers.
pub(crate) struct SmShared {
    pub(super) dir: PathBuf,
    /// Where `state.redb` (and an install's temporary copy) keep their bytes.
    pub(super) disk: crate::disk::Disk,
    /// Page cache of `state.redb` and of a snapshot being installed.
    pub(super) cache_bytes: usize,
    /// Swapped when a snapshot is installed; `None` after shutdown.
    pub(super) db: RwLock<Option<Arc<StateDb>>>,
    /// The log's purge limit (see [`PurgeBounds`]).
    pub(super) durable_tx: watch::Sender<Option<u64>>,
    pub(super) bounds: Mutex<PurgeBounds>,
    pub(super) durable: Durable,
    pub(super) pending: Mutex<Pending>,
    pub(super) snapshot_lock: Mutex<()>,
    pub(super) snapshot_seq: AtomicU64,
    /// Snapshots installed from a leader since start.
    pub(crate) installs: AtomicU64,
    /// The last snapshot this node built: the log purge (`crate::purge`) acts on each at once,
    /// as openraft's own purge did.
    pub(crate) built: watch::Sender<Option<LogId>>,
    /// The core's derived index. Applies hold it for their whole transaction, so whoever
    /// holds it sees it and the committed tables at the same log position (the integrity
    /// check, `state_machine/check.rs`).
    pub(super) index: Mutex<ipam_core::State>,
    /// Leases this node's state machine released on expiry since start, by pool.
    pub(crate) expirations: Mutex<std::collections::BTreeMap<String, u64>>,
    /// When recent entries were applied, for their trace spans (`crate::trace`).
    pub(crate) applies: crate::trace::ApplyLog,
    /// The replicated feature level of the applied state (`ipam_core::State::feature_level`),
    /// for the leader's decision to raise it.
    pub(crate) applied_level: std::sync::atomic::AtomicU32,
    /// Writes waiting on this node for their entry's apply (`crate::answers`).
    pub(crate) early: crate::answers::EarlyAnswers,
    /// Events the state keeps (`ipam_core::events::DEFAULT_RETENTION` unless a test lowers it).
    pub(crate) event_retention: AtomicU64,
    /// How far the log is on disk (set by the node's start): an entry is applied only once it
    /// is, because a leader acknowledges its own appends before their sync.
    pub(crate) log_durable: std::sync::OnceLock<watch::Receiver<super::wal::LogDurable>>,
}

/// What bounds the log's purge: the log keeps every entry the state has not made durable
/// (a cut loses non-durable applies, which are re-applied from the log) and every entry after
/// the current snapshot (openraft's start requires a snapshot at least as far as the log's
/// purge point). The limit is the lower of the two; `None` (nothing purged) until both exist.
///
/// Bounding by the snapshot matters when one is installed: openraft asks the log to purge up
/// to the received snapshot before the install has published it, and the durable applied
/// index of the state it replaces can be past the current snapshot. A cut there used to leave
/// the log purged past `current.meta` (found by `power_loss_cluster`'s install round).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PurgeBounds {
    pub(crate) durable: Option<u64>,
    pub(crate) snapshot: Option<u64>,
}

impl PurgeBounds {
    pub(crate) fn limit(self) -> Option<u64> {
        self.durable.zip(self.snapshot).map(|(d, s)| d.min(s))
    }
}

#[derive(Default)]
pub(super) struct Pending {
    pub(super) entries: u64,
    pub(super) since: Option<Instant>,
}

pub(super) fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}
pub(crate) fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

pub(super) fn read_meta<T: serde::de::DeserializeOwned>(
    rtx: &ReadTransaction,
    key: &str,
) -> Result<Option<T>, StorageError> {
    let table = match rtx.open_table(SM_META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(sm_read(e)),
    };
    match table.get(key).map_err(sm_read)? {
        Some(v) => Ok(Some(decode("raft_sm_meta", v.value()).map_err(sm_read)?)),
        None => Ok(None),
    }
}

pub(super) fn write_meta<T: Serialize>(
    txn: &redb::WriteTransaction,
    key: &str,
    value: &T,
) -> Result<(), StorageError> {
    let bytes = encode(value).map_err(sm_write)?;
    let mut table = txn.open_table(SM_META).map_err(sm_write)?;
    table.insert(key, bytes.as_slice()).map_err(sm_write)?;
    Ok(())
}

pub(super) fn open_db(
    disk: &crate::disk::Disk,
    path: &Path,
    cache_bytes: usize,
) -> Result<Database, StorageError> {
    disk.create_db(path, cache_bytes).map_err(sm_write)
}

pub(crate) fn applied_of(
    rtx: &ReadTransaction,
) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let applied = read_meta::<Option<LogId>>(rtx, KEY_APPLIED)?.flatten();
    let membership = read_meta::<StoredMembership>(rtx, KEY_MEMBERSHIP)?.unwrap_or_default();
    Ok((applied, membership))
}

impl SmShared {
    /// The current database, or `Internal` after shutdown.
    pub(crate) fn db(&self) -> Result<Arc<StateDb>, StorageError> {
        let guard = self
            .db
            .read()
            .map_err(|_| sm_read(std::io::Error::other("poisoned lock")))?;
        guard
            .clone()
            .ok_or_else(|| sm_read(std::io::Error::other("the state machine is closed")))
    }

    /// Whether `owner` may hold an address in `pool` by the in-memory index
    /// ([`ipam_core::State::owner_may_hold`]: a hint). An apply in progress holds the index,
    /// so then (and on a poisoned lock) the answer is `true`: the caller looks in the tables
    /// instead of waiting.
    pub(crate) fn owner_may_hold(&self, pool: &str, owner: &str) -> bool {
        match self.index.try_lock() {
            Ok(state) => state.owner_may_hold(pool, owner),
            Err(_) => true,
        }
    }

    /// Closes the database handle held here (readers holding a clone keep it until they end).
    pub(crate) fn close(&self) {
        if let Ok(mut g) = self.db.write() {
            *g = None;
        }
    }

    /// Raises the durable applied index (never lowers it) and with it the purge limit.
    pub(super) fn publish_durable(&self, index: Option<u64>) {
        self.raise_bound(|b| b.durable = b.durable.max(index));
    }

    /// Raises the current snapshot's last index (never lowers it) and with it the purge limit.
    pub(super) fn publish_snapshot_bound(&self, index: Option<u64>) {
        self.raise_bound(|b| b.snapshot = b.snapshot.max(index));
    }

    fn raise_bound(&self, change: impl FnOnce(&mut PurgeBounds)) {
        let Ok(mut bounds) = self.bounds.lock() else {
            return;
        };
        change(&mut bounds);
        let limit = bounds.limit();
        // Under the lock: two raises cannot publish their limits out of order.
        self.durable_tx.send_if_modified(|cur| {
            if limit > *cur {
                *cur = limit;
                true
            } else {
                false
            }
        });
    }

    /// An empty `Immediate` commit: makes every earlier apply durable and publishes the applied
    /// index it covers.
    pub(crate) fn make_durable(&self) -> Result<(), StorageError> {
        let db = self.db()?;
        let mut txn = db.db.begin_write().map_err(sm_write)?;
        txn.set_durability(Durability::Immediate)
            .map_err(sm_write)?;
        txn.set_quick_repair(true);
        let applied = {
            let table = txn.open_table(SM_META).map_err(sm_write)?;
            let v = table.get(KEY_APPLIED).map_err(sm_read)?;
            match v {
                Some(v) => decode::<Option<LogId>>("raft_sm_meta", v.value()).map_err(sm_read)?,
                None => None,
            }
        };
        if let Ok(mut p) = self.pending.lock() {
            *p = Pending::default();
        }
        txn.commit().map_err(sm_write)?;
        self.publish_durable(applied.map(|l| l.index));
        Ok(())
    }

    /// Whether non-durable applies have been pending for at least the durable interval.
    pub(crate) fn flush_due(&self) -> bool {
        self.pending
            .lock()
            .ok()
            .and_then(|p| p.since)
            .is_some_and(|s| s.elapsed() >= self.durable.interval)
    }

    pub(crate) fn durable_interval(&self) -> Duration {
        self.durable.interval
    }
}
