//! Snapshots as files: a length-prefixed postcard stream of records — a header with last
//! applied id and membership, then every row of every core table — so neither building nor
//! installing holds the state in memory. `snapshots/current.meta` names the current file.

use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ipam_core::tables::{decode_value as decode, encode_value as encode};
use openraft::RaftSnapshotBuilder;
use redb::{Durability, ReadTransaction, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::state_db::{applied_of, write_meta, SmShared, KEY_APPLIED, KEY_MEMBERSHIP};
use crate::disk::{Disk, DiskFile};
use crate::types::{
    LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, TypeConfig,
};

pub(super) const SNAP_DIR: &str = "snapshots";
const SNAP_EXT: &str = ".snap";
const SNAP_META: &str = "current.meta";
/// Rows per intermediate (non-durable) commit while installing a snapshot, to bound the size of
/// one redb transaction.
const INSTALL_ROWS_PER_TXN: u64 = 50_000;
/// Upper bound of one snapshot record; a larger length prefix means a corrupt stream.
const MAX_RECORD: usize = 64 << 20;

/// One record of a snapshot stream.
#[derive(Serialize, Deserialize)]
pub(super) enum SnapRecord<'a> {
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

/// Builds a snapshot from the read transaction taken when openraft asked for the builder.
pub struct SnapshotBuilder {
    pub(super) shared: Arc<SmShared>,
    pub(super) rtx: Option<ReadTransaction>,
}

pub(super) fn snap_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}
pub(super) fn snap_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, &e).into()
}
fn corrupt(msg: &str) -> StorageError {
    snap_read(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        msg.to_string(),
    ))
}

impl SmShared {
    pub(super) fn snap_dir(&self) -> PathBuf {
        self.dir.join(SNAP_DIR)
    }

    pub(super) fn current_snapshot(
        &self,
    ) -> Result<Option<(SnapshotMeta, DiskFile)>, StorageError> {
        let _g = self
            .snapshot_lock
            .lock()
            .map_err(|_| corrupt("poisoned lock"))?;
        let Some(current) = read_current(&self.disk, &self.snap_dir())? else {
            return Ok(None);
        };
        let file = self
            .disk
            .open_read(&self.snap_dir().join(&current.file))
            .map_err(snap_read)?;
        Ok(Some((current.meta, file)))
    }

    /// Makes the snapshot file `tmp` the current snapshot with `meta`, and returns a fresh read
    /// handle to it — unless the current snapshot is newer (a build started before an install
    /// of a later snapshot finished after it): the current one stays, and the handle reads
    /// `tmp`'s data from an unlinked file.
    pub(super) fn publish_snapshot(
        &self,
        tmp: &Path,
        meta: &SnapshotMeta,
    ) -> Result<DiskFile, StorageError> {
        let _g = self
            .snapshot_lock
            .lock()
            .map_err(|_| corrupt("poisoned lock"))?;
        let disk = &self.disk;
        let dir = self.snap_dir();
        if let Some(current) = read_current(disk, &dir)? {
            if current.meta.last_log_id > meta.last_log_id {
                tracing::info!(
                    current = %current.meta,
                    older = %meta,
                    "kept the current snapshot over an older one"
                );
                let handle = disk.open_read(tmp).map_err(snap_read)?;
                let _ = disk.remove(tmp);
                return Ok(handle);
            }
        }
        // Each snapshot keeps its own file name and the meta names it, so a crash at any step
        // leaves a meta that matches its data.
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        // Never the snapshot id: an installed snapshot's id comes from a peer.
        let file_name = format!("snapshot-{seq}{SNAP_EXT}");
        disk.rename(tmp, &dir.join(&file_name))
            .map_err(snap_write)?;
        disk.sync_dir(&dir).map_err(snap_write)?;
        let current = CurrentSnapshot {
            meta: meta.clone(),
            file: file_name.clone(),
        };
        let bytes = encode(&current).map_err(snap_write)?;
        disk.write_atomic(&dir.join(SNAP_META), &bytes)
            .map_err(snap_write)?;
        self.publish_snapshot_bound(meta.last_log_id.map(|l| l.index));
        let handle = disk.open_read(&dir.join(&file_name)).map_err(snap_read)?;
        // Older snapshots are no longer named; open handles (a transfer under way) stay valid.
        remove_other_snapshots(disk, &dir, &file_name);
        Ok(handle)
    }
}

/// The last log index of the current snapshot in the snapshot dir `dir`, if there is one.
pub(super) fn current_index(disk: &Disk, dir: &Path) -> Result<Option<u64>, StorageError> {
    Ok(read_current(disk, dir)?.and_then(|c| c.meta.last_log_id.map(|l| l.index)))
}

/// What `current.meta` in the snapshot dir `dir` records, if anything.
fn read_current(disk: &Disk, dir: &Path) -> Result<Option<CurrentSnapshot>, StorageError> {
    match disk.read(&dir.join(SNAP_META)) {
        Ok(bytes) => Ok(Some(decode(SNAP_META, &bytes).map_err(snap_read)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(snap_read(e)),
    }
}

/// Removes every snapshot file in `dir` but `keep`.
fn remove_other_snapshots(disk: &Disk, dir: &Path, keep: &str) {
    for name in disk.list(dir).unwrap_or_default() {
        if name.ends_with(SNAP_EXT) && name != keep {
            let _ = disk.remove(&dir.join(name));
        }
    }
}

/// What `current.meta` records: the current snapshot's meta and its file in `snapshots/`.
#[derive(Serialize, Deserialize)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    file: String,
}

pub(super) fn write_record<W: Write>(
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
pub(super) fn read_record<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<bool, StorageError> {
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
    disk: &Disk,
    rtx: &ReadTransaction,
    path: &Path,
) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let (last_applied, membership) = applied_of(rtx)?;
    let file = disk.create(path).map_err(snap_write)?;
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
pub(super) fn load_snapshot(
    disk: &Disk,
    src: &mut DiskFile,
    path: &Path,
    meta: &SnapshotMeta,
    cache_bytes: usize,
) -> Result<(), StorageError> {
    src.seek(SeekFrom::Start(0)).map_err(snap_read)?;
    let mut r = BufReader::with_capacity(1 << 20, src);
    disk.remove(path).map_err(snap_write)?;
    let db = disk.create_db(path, cache_bytes).map_err(snap_write)?;
    let mut buf = Vec::new();
    let mut at = InstallPosition::default();
    let mut txn = loop {
        let mut txn = db.begin_write().map_err(snap_write)?;
        txn.set_durability(Durability::None).map_err(snap_write)?;
        if install_rows(&txn, &mut r, &mut buf, &mut at)? {
            break txn;
        }
        txn.commit().map_err(snap_write)?;
    };
    let InstallPosition { header, .. } = at;
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

/// Where a snapshot install is in its stream, across the transactions it commits.
#[derive(Default)]
struct InstallPosition {
    current: Option<&'static redb::TableDefinition<'static, &'static [u8], &'static [u8]>>,
    rows: u64,
    header: Option<(Option<LogId>, StoredMembership)>,
}

/// Inserts the stream's rows into `txn` until `INSTALL_ROWS_PER_TXN` rows (false: commit and
/// call again) or the end record (true). The table stays open across its rows: opening it per
/// row (a table-tree lookup and a root write-back each) made an install of a million
/// allocations take 9 s.
fn install_rows(
    txn: &redb::WriteTransaction,
    r: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    at: &mut InstallPosition,
) -> Result<bool, StorageError> {
    let mut table = match at.current {
        Some(def) => Some(txn.open_table(*def).map_err(snap_write)?),
        None => None,
    };
    let mut in_txn = 0u64;
    while read_record(r, buf)? {
        let rec: SnapRecord<'_> = postcard::from_bytes(buf).map_err(snap_read)?;
        match rec {
            SnapRecord::Header {
                last_applied,
                membership,
            } => {
                if at.header.is_some() {
                    return Err(corrupt("two snapshot headers"));
                }
                at.header = Some((last_applied, membership));
            }
            SnapRecord::Table(name) => {
                at.current = ipam_core::tables::TABLES
                    .iter()
                    .find(|d| redb::TableHandle::name(*d) == name);
                let Some(def) = at.current else {
                    return Err(corrupt(&format!("unknown table {name:?} in snapshot")));
                };
                // Closed before the next opens: a table named twice must not be open twice.
                drop(table.take());
                table = Some(txn.open_table(*def).map_err(snap_write)?);
            }
            SnapRecord::Row(k, v) => {
                let t = table
                    .as_mut()
                    .ok_or_else(|| corrupt("row before any table"))?;
                t.insert(k, v).map_err(snap_write)?;
                at.rows += 1;
                in_txn += 1;
                if in_txn >= INSTALL_ROWS_PER_TXN {
                    return Ok(false);
                }
            }
            SnapRecord::End { rows: expected } => {
                if expected != at.rows {
                    return Err(corrupt("snapshot row count mismatch"));
                }
                return Ok(true);
            }
        }
    }
    Err(corrupt("snapshot stream truncated"))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let shared = self.shared.clone();
        let rtx = self.rtx.take();
        let (meta, file) = tokio::task::spawn_blocking(move || {
            // Held until the snapshot is published: its close signal keeps `shutdown` waiting,
            // so a build never publishes into a data dir that a restarted node already uses.
            let db = shared.db()?;
            let rtx = match rtx {
                Some(r) => r,
                None => db.db.begin_read().map_err(snap_read)?,
            };
            // Logs up to this snapshot may be purged once it exists: the state it covers must
            // be on disk first.
            shared.make_durable()?;
            let seq = shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let tmp = shared.snap_dir().join(format!("build-{seq}.tmp"));
            let res = write_snapshot(&shared.disk, &rtx, &tmp);
            let (last_applied, membership) = match res {
                Ok(v) => v,
                Err(e) => {
                    let _ = shared.disk.remove(&tmp);
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
            drop(db);
            tracing::info!(snapshot = %meta, "built snapshot");
            shared.built.send_replace(meta.last_log_id);
            Ok::<_, StorageError>((meta, file))
        })
        .await
        .map_err(snap_write)??;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::state_machine::{Durable, StateMachineStore};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s-{index}"),
        }
    }

    fn snapshot_file(shared: &SmShared, name: &str, content: &[u8]) -> PathBuf {
        let path = shared.snap_dir().join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    /// Defect 5: a build started at X that finishes after the install of Y > X must not make
    /// X current again (a restart would then load the older state and miss Y's entries,
    /// already purged from the log).
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _rx) = tokio::sync::watch::channel(None);
        let sm = StateMachineStore::open(dir.path(), Durable::default(), tx).expect("open");
        let shared = sm.shared();
        let newer = snapshot_file(&shared, "installed.tmp", b"newer");
        shared.publish_snapshot(&newer, &meta(20)).expect("install");
        let older = snapshot_file(&shared, "build.tmp", b"older");
        let mut handle = shared
            .publish_snapshot(&older, &meta(10))
            .expect("late build");
        let mut data = Vec::new();
        handle.read_to_end(&mut data).expect("read");
        assert_eq!(data, b"older", "the builder still gets what it built");
        assert!(!older.exists(), "the late build's file is not left behind");
        let (current, mut file) = shared.current_snapshot().expect("read").expect("some");
        assert_eq!(current.last_log_id.map(|l| l.index), Some(20));
        let mut data = Vec::new();
        file.read_to_end(&mut data).expect("read");
        assert_eq!(data, b"newer");
        // A newer one still replaces it.
        let newest = snapshot_file(&shared, "b2.tmp", b"newest");
        shared
            .publish_snapshot(&newest, &meta(30))
            .expect("publish");
        let (current, _) = shared.current_snapshot().expect("read").expect("some");
        assert_eq!(current.last_log_id.map(|l| l.index), Some(30));
    }
}
