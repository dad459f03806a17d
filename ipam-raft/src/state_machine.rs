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
//! A snapshot is a file: a length-prefixed postcard stream of records — a header with last
//! applied id and membership, then every row of every core table — so neither building nor
//! installing holds the state in memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ipam_core::State;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::log_store::DropSignal;
use crate::types::{
    decode, encode, Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, TypeConfig,
};

/// The raft layer's own rows in `state.redb`: last applied log id and membership.
pub(crate) const SM_META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_sm_meta");
const KEY_APPLIED: &str = "last_applied";
const KEY_MEMBERSHIP: &str = "membership";

const STATE_FILE: &str = "state.redb";
const STATE_TMP: &str = "state.redb.tmp";
const SNAP_DIR: &str = "snapshots";
const SNAP_EXT: &str = ".snap";
const SNAP_META: &str = "current.meta";
/// Rows per intermediate (non-durable) commit while installing a snapshot, to bound the size of
/// one redb transaction.
const INSTALL_ROWS_PER_TXN: u64 = 50_000;
/// Upper bound of one snapshot record; a larger length prefix means a corrupt stream.
const MAX_RECORD: usize = 64 << 20;

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

/// One record of a snapshot stream.
#[derive(Serialize, Deserialize)]
enum SnapRecord<'a> {
    /// First record.
    Header {
        last_applied: Option<LogId>,
        membership: StoredMembership,
    },
    /// The rows that follow belong to this core table.
    Table(&'a str),
    /// One row of the current table.
    Row(&'a [u8], &'a [u8]),
    /// Last record: the number of rows, to detect truncation.
    End { rows: u64 },
}

/// An open `state.redb`. Dropping it makes pending applies durable.
pub(crate) struct StateDb {
    pub(crate) db: Database,
    _closing: Option<DropSignal>,
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
    dir: PathBuf,
    /// Swapped when a snapshot is installed; `None` after shutdown.
    db: RwLock<Option<Arc<StateDb>>>,
    durable_tx: watch::Sender<Option<u64>>,
    durable: Durable,
    pending: Mutex<Pending>,
    snapshot_lock: Mutex<()>,
    snapshot_seq: AtomicU64,
    /// Leases this node's state machine released on expiry since start, by pool.
    pub(crate) expirations: Mutex<std::collections::BTreeMap<String, u64>>,
}

#[derive(Default)]
struct Pending {
    entries: u64,
    since: Option<Instant>,
}

/// The state machine store handed to openraft.
pub struct StateMachineStore {
    shared: Arc<SmShared>,
    /// The core's derived index; only openraft's state machine worker touches it.
    state: State,
}

/// Builds a snapshot from the read transaction taken when openraft asked for the builder.
pub struct SnapshotBuilder {
    shared: Arc<SmShared>,
    rtx: Option<ReadTransaction>,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}
fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}
fn snap_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}
fn snap_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, &e).into()
}
fn corrupt(msg: &str) -> StorageError {
    snap_read(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        msg.to_string(),
    ))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_meta<T: serde::de::DeserializeOwned>(
    rtx: &ReadTransaction,
    key: &str,
) -> Result<Option<T>, StorageError> {
    let table = match rtx.open_table(SM_META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(sm_read(e)),
    };
    match table.get(key).map_err(sm_read)? {
        Some(v) => Ok(Some(decode(v.value()).map_err(sm_read)?)),
        None => Ok(None),
    }
}

fn write_meta<T: Serialize>(
    txn: &redb::WriteTransaction,
    key: &str,
    value: &T,
) -> Result<(), StorageError> {
    let bytes = encode(value).map_err(sm_write)?;
    let mut table = txn.open_table(SM_META).map_err(sm_write)?;
    table.insert(key, bytes.as_slice()).map_err(sm_write)?;
    Ok(())
}

fn open_db(path: &Path) -> Result<Database, StorageError> {
    Database::builder().create(path).map_err(sm_write)
}

fn applied_of(rtx: &ReadTransaction) -> Result<(Option<LogId>, StoredMembership), StorageError> {
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

    /// Closes the database handle held here (readers holding a clone keep it until they end).
    pub(crate) fn close(&self) {
        if let Ok(mut g) = self.db.write() {
            *g = None;
        }
    }

    fn publish_durable(&self, index: Option<u64>) {
        self.durable_tx.send_if_modified(|cur| {
            if index > *cur {
                *cur = index;
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
                Some(v) => decode::<Option<LogId>>(v.value()).map_err(sm_read)?,
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

    fn snap_dir(&self) -> PathBuf {
        self.dir.join(SNAP_DIR)
    }

    fn current_snapshot(&self) -> Result<Option<(SnapshotMeta, File)>, StorageError> {
        let _g = self
            .snapshot_lock
            .lock()
            .map_err(|_| corrupt("poisoned lock"))?;
        let meta_path = self.snap_dir().join(SNAP_META);
        let bytes = match std::fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(snap_read(e)),
        };
        let current: CurrentSnapshot = decode(&bytes).map_err(snap_read)?;
        let file = File::open(self.snap_dir().join(&current.file)).map_err(snap_read)?;
        Ok(Some((current.meta, file)))
    }

    /// Makes the snapshot file `tmp` the current snapshot with `meta`, and returns a fresh read
    /// handle to it.
    fn publish_snapshot(&self, tmp: &Path, meta: &SnapshotMeta) -> Result<File, StorageError> {
        let _g = self
            .snapshot_lock
            .lock()
            .map_err(|_| corrupt("poisoned lock"))?;
        let dir = self.snap_dir();
        // Each snapshot keeps its own file name and the meta names it, so a crash at any step
        // leaves a meta that matches its data.
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let file_name = format!("{}-{seq}{SNAP_EXT}", meta.snapshot_id);
        std::fs::rename(tmp, dir.join(&file_name)).map_err(snap_write)?;
        sync_dir(&dir).map_err(snap_write)?;
        let current = CurrentSnapshot {
            meta: meta.clone(),
            file: file_name.clone(),
        };
        let meta_tmp = dir.join("current.meta.tmp");
        let mut f = File::create(&meta_tmp).map_err(snap_write)?;
        f.write_all(&encode(&current).map_err(snap_write)?)
            .map_err(snap_write)?;
        f.sync_all().map_err(snap_write)?;
        std::fs::rename(&meta_tmp, dir.join(SNAP_META)).map_err(snap_write)?;
        sync_dir(&dir).map_err(snap_write)?;
        let handle = File::open(dir.join(&file_name)).map_err(snap_read)?;
        // Older snapshots are no longer named; open handles (a transfer under way) stay valid.
        remove_other_snapshots(&dir, &file_name);
        Ok(handle)
    }
}

/// Removes every snapshot file in `dir` but `keep`.
fn remove_other_snapshots(dir: &Path, keep: &str) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(SNAP_EXT) && name != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// What `current.meta` records: the current snapshot's meta and its file in `snapshots/`.
#[derive(Serialize, Deserialize)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    file: String,
}

impl StateMachineStore {
    /// Opens (or creates) `state.redb` in `dir`. `durable_tx` receives the durable applied
    /// index, the log store's purge limit.
    pub fn open(
        dir: &Path,
        durable: Durable,
        durable_tx: watch::Sender<Option<u64>>,
    ) -> Result<StateMachineStore, StorageError> {
        Self::open_with(dir, durable, durable_tx, None)
    }

    pub(crate) fn open_with(
        dir: &Path,
        durable: Durable,
        durable_tx: watch::Sender<Option<u64>>,
        closing: Option<DropSignal>,
    ) -> Result<StateMachineStore, StorageError> {
        std::fs::create_dir_all(dir.join(SNAP_DIR)).map_err(sm_write)?;
        // Leftovers of an interrupted install or snapshot transfer.
        let _ = std::fs::remove_file(dir.join(STATE_TMP));
        if let Ok(rd) = std::fs::read_dir(dir.join(SNAP_DIR)) {
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".tmp") || name.ends_with(".part") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let db = open_db(&dir.join(STATE_FILE))?;
        let txn = db.begin_write().map_err(sm_write)?;
        txn.open_table(SM_META).map_err(sm_write)?;
        txn.commit().map_err(sm_write)?;
        let state = State::open(&db).map_err(sm_read)?;
        let applied = {
            let rtx = db.begin_read().map_err(sm_read)?;
            applied_of(&rtx)?.0
        };
        // What is on disk at open is durable.
        durable_tx.send_replace(applied.map(|l| l.index));
        let shared = Arc::new(SmShared {
            dir: dir.to_path_buf(),
            db: RwLock::new(Some(Arc::new(StateDb {
                db,
                _closing: closing,
            }))),
            durable_tx,
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
            expirations: Mutex::default(),
        });
        Ok(StateMachineStore { shared, state })
    }

    /// A read transaction on the current `state.redb` (for the core's queries).
    pub fn begin_read(&self) -> Result<ReadTransaction, StorageError> {
        self.shared.db()?.db.begin_read().map_err(sm_read)
    }

    pub(crate) fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }

    async fn blocking<T, F>(&mut self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&SmShared, &mut State) -> Result<T, StorageError> + Send + 'static,
    {
        let shared = self.shared.clone();
        let mut state = std::mem::take(&mut self.state);
        let (state, res) = tokio::task::spawn_blocking(move || {
            let res = f(&shared, &mut state);
            (state, res)
        })
        .await
        .map_err(sm_write)?;
        self.state = state;
        res
    }
}

fn apply_batch(
    shared: &SmShared,
    state: &mut State,
    entries: &[Entry],
) -> Result<Vec<Response>, StorageError> {
    let db = shared.db()?;
    let mut txn = db.db.begin_write().map_err(sm_write)?;
    let mut out = Vec::with_capacity(entries.len());
    let mut membership = None;
    let mut last = None;
    for entry in entries {
        let resp = match &entry.payload {
            EntryPayload::Blank => Vec::new(),
            EntryPayload::Normal(req) => match state.apply(&txn, req.stamp, &req.commands) {
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
            },
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
    Ok(out)
}

fn write_record<W: Write>(
    w: &mut W,
    rec: &SnapRecord<'_>,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.clear();
    let bytes = postcard::to_extend(rec, std::mem::take(buf)).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&bytes)?;
    *buf = bytes;
    Ok(())
}

/// Reads one record's bytes into `buf`; `false` at a clean end of file.
fn read_record<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<bool, StorageError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(snap_read(e)),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_RECORD {
        return Err(corrupt("snapshot record too large"));
    }
    buf.resize(len, 0);
    r.read_exact(buf).map_err(snap_read)?;
    Ok(true)
}

/// Writes a snapshot of `rtx` to `path`, returning its last applied id and membership.
fn write_snapshot(
    rtx: &ReadTransaction,
    path: &Path,
) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let (last_applied, membership) = applied_of(rtx)?;
    let file = File::create(path).map_err(snap_write)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    write_record(
        &mut w,
        &SnapRecord::Header {
            last_applied,
            membership: membership.clone(),
        },
        &mut buf,
    )
    .map_err(snap_write)?;
    let mut rows = 0u64;
    for def in ipam_core::tables::TABLES {
        let table = match rtx.open_table(*def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(snap_read(e)),
        };
        write_record(
            &mut w,
            &SnapRecord::Table(redb::TableHandle::name(def)),
            &mut buf,
        )
        .map_err(snap_write)?;
        for row in table.iter().map_err(snap_read)? {
            let (k, v) = row.map_err(snap_read)?;
            write_record(&mut w, &SnapRecord::Row(k.value(), v.value()), &mut buf)
                .map_err(snap_write)?;
            rows += 1;
        }
    }
    write_record(&mut w, &SnapRecord::End { rows }, &mut buf).map_err(snap_write)?;
    let file = w.into_inner().map_err(|e| snap_write(e.into_error()))?;
    file.sync_all().map_err(snap_write)?;
    Ok((last_applied, membership))
}

/// Loads a snapshot stream into a fresh database at `path`, ending with an `Immediate` commit.
fn load_snapshot(src: &mut File, path: &Path, meta: &SnapshotMeta) -> Result<(), StorageError> {
    src.seek(SeekFrom::Start(0)).map_err(snap_read)?;
    let mut r = BufReader::with_capacity(1 << 20, src);
    let _ = std::fs::remove_file(path);
    let db = Database::builder().create(path).map_err(snap_write)?;
    let mut txn = db.begin_write().map_err(snap_write)?;
    txn.set_durability(Durability::None).map_err(snap_write)?;
    let mut buf = Vec::new();
    let mut current: Option<&'static redb::TableDefinition<'static, &'static [u8], &'static [u8]>> =
        None;
    let mut rows = 0u64;
    let mut in_txn = 0u64;
    let mut header = None;
    let mut ended = false;
    while read_record(&mut r, &mut buf)? {
        let rec: SnapRecord<'_> = postcard::from_bytes(&buf).map_err(snap_read)?;
        match rec {
            SnapRecord::Header {
                last_applied,
                membership,
            } => {
                if header.is_some() {
                    return Err(corrupt("two snapshot headers"));
                }
                header = Some((last_applied, membership));
            }
            SnapRecord::Table(name) => {
                current = ipam_core::tables::TABLES
                    .iter()
                    .find(|d| redb::TableHandle::name(*d) == name);
                if current.is_none() {
                    return Err(corrupt(&format!("unknown table {name:?} in snapshot")));
                }
            }
            SnapRecord::Row(k, v) => {
                let def = current.ok_or_else(|| corrupt("row before any table"))?;
                let mut table = txn.open_table(*def).map_err(snap_write)?;
                table.insert(k, v).map_err(snap_write)?;
                rows += 1;
                in_txn += 1;
                if in_txn >= INSTALL_ROWS_PER_TXN {
                    drop(table);
                    txn.commit().map_err(snap_write)?;
                    txn = db.begin_write().map_err(snap_write)?;
                    txn.set_durability(Durability::None).map_err(snap_write)?;
                    in_txn = 0;
                }
            }
            SnapRecord::End { rows: expected } => {
                if expected != rows {
                    return Err(corrupt("snapshot row count mismatch"));
                }
                ended = true;
                break;
            }
        }
    }
    if !ended {
        return Err(corrupt("snapshot stream truncated"));
    }
    let (last_applied, membership) = header.ok_or_else(|| corrupt("snapshot without header"))?;
    if last_applied != meta.last_log_id {
        return Err(corrupt("snapshot header does not match its meta"));
    }
    // Core tables that were empty at build time must still exist.
    for def in ipam_core::tables::TABLES {
        txn.open_table(*def).map_err(snap_write)?;
    }
    write_meta(&txn, KEY_APPLIED, &last_applied)?;
    write_meta(&txn, KEY_MEMBERSHIP, &membership)?;
    txn.set_durability(Durability::Immediate)
        .map_err(snap_write)?;
    txn.set_quick_repair(true);
    txn.commit().map_err(snap_write)?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let shared = self.shared.clone();
        let rtx = self.rtx.take();
        let (meta, file) = tokio::task::spawn_blocking(move || {
            let rtx = match rtx {
                Some(r) => r,
                None => shared.db()?.db.begin_read().map_err(snap_read)?,
            };
            // Logs up to this snapshot may be purged once it exists: the state it covers must
            // be on disk first.
            shared.make_durable()?;
            let seq = shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let tmp = shared.snap_dir().join(format!("build-{seq}.tmp"));
            let res = write_snapshot(&rtx, &tmp);
            let (last_applied, membership) = match res {
                Ok(v) => v,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            let snapshot_id = match last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, seq),
                None => format!("0-0-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            };
            let file = shared.publish_snapshot(&tmp, &meta)?;
            tracing::info!(snapshot = %meta, "built snapshot");
            Ok::<_, StorageError>((meta, file))
        })
        .await
        .map_err(snap_write)??;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
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
        self.blocking(move |shared, state| apply_batch(shared, state, &entries))
            .await
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.shared.snap_dir().join(format!("recv-{seq}.part"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(snap_write)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let mut src = snapshot.into_std().await;
        let meta = meta.clone();
        self.blocking(move |shared, state| {
            let tmp = shared.dir.join(STATE_TMP);
            if let Err(e) = load_snapshot(&mut src, &tmp, &meta) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            // Swap: no handle to the old file may be used for writes past this point.
            {
                let mut slot = shared
                    .db
                    .write()
                    .map_err(|_| sm_write(std::io::Error::other("poisoned")))?;
                // The new handle inherits the old one's close signal; none is kept elsewhere,
                // so shutdown can tell when every handle is gone.
                let closing = slot.as_ref().and_then(|d| d._closing.clone());
                *slot = None;
                let path = shared.dir.join(STATE_FILE);
                std::fs::rename(&tmp, &path).map_err(sm_write)?;
                sync_dir(&shared.dir).map_err(sm_write)?;
                let db = open_db(&path)?;
                *state = State::open(&db).map_err(sm_read)?;
                *slot = Some(Arc::new(StateDb {
                    db,
                    _closing: closing,
                }));
            }
            if let Ok(mut p) = shared.pending.lock() {
                *p = Pending::default();
            }
            shared.publish_durable(meta.last_log_id.map(|l| l.index));
            tracing::info!(snapshot = %meta, "installed snapshot");
            // Keep what was installed as this node's current snapshot, so it can serve it on.
            let seq = shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let copy = shared.snap_dir().join(format!("installed-{seq}.tmp"));
            src.seek(SeekFrom::Start(0)).map_err(snap_read)?;
            let mut out = File::create(&copy).map_err(snap_write)?;
            std::io::copy(&mut src, &mut out).map_err(snap_write)?;
            out.sync_all().map_err(snap_write)?;
            shared.publish_snapshot(&copy, &meta)?;
            // Received transfer files are no longer needed (open handles stay valid).
            if let Ok(rd) = std::fs::read_dir(shared.snap_dir()) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().ends_with(".part") {
                        let _ = std::fs::remove_file(e.path());
                    }
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
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}
