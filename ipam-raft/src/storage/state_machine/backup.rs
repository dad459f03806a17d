//! Backups: a consistent copy of the state as of one applied index, written from one redb read
//! transaction while applies go on, and the restore that turns one into the data dir of a new
//! single-voter cluster.
//!
//! A backup file is the snapshot stream's framing (4-byte little-endian length, postcard
//! record) with its own header:
//!
//! ```text
//! "IPAMBKUP"                                 8 bytes, magic
//! BackupHeader { format, cluster_id, applied, stamp_hint }
//! SnapRecord::Table / Row ... / End { rows } the core tables, as in a snapshot
//! SHA-256 of every byte above               32 bytes
//! ```
//!
//! A restored node keeps the backup's state and applied index, but under a new cluster id and
//! a membership of itself alone; its log starts after that index, so log time and allocation
//! generations continue from the backup's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use openraft::{CommittedLeaderId, Membership};
use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::storage::snapshot::{read_record, write_record, SnapRecord};
use crate::storage::state_db::{
    applied_of, sm_read, write_meta, SmShared, KEY_APPLIED, KEY_MEMBERSHIP, SM_META, STATE_FILE,
};
use crate::types::{LogId, Node, NodeId, StorageError, StoredMembership};

/// First bytes of every backup file.
pub const BACKUP_MAGIC: &[u8; 8] = b"IPAMBKUP";
/// Format version of the backups this release writes (and the newest it reads).
pub const BACKUP_FORMAT: u16 = 1;
/// Length of the trailing checksum.
const CHECKSUM_LEN: u64 = 32;

/// The first record of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// [`BACKUP_FORMAT`] of the writer.
    pub format: u16,
    /// The cluster the backup was taken from.
    pub cluster_id: String,
    /// The last applied log id of the copied state.
    pub applied: Option<LogId>,
}

impl BackupHeader {
    /// The applied index (0 before the first entry).
    pub fn applied_index(&self) -> u64 {
        self.applied.map_or(0, |l| l.index)
    }
}

/// Why a backup cannot be restored. Nothing is written in any of these cases, except
/// [`RestoreError::Write`], after which the partial data dir is removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The data dir holds files already.
    #[error("refusing to restore into {dir}: it is not empty")]
    DataDirNotEmpty {
        /// The data dir.
        dir: String,
    },
    /// The backup file cannot be read.
    #[error("cannot read the backup {file}: {reason}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The checksum does not match: the file is damaged or truncated.
    #[error("backup {file} is damaged: its checksum does not match")]
    BadChecksum {
        /// The file.
        file: String,
    },
    /// Not a backup, or one this release cannot read.
    #[error("backup {file}: {reason}")]
    Format {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// Writing the new data dir failed.
    #[error("restoring into {dir} failed: {reason}")]
    Write {
        /// The data dir.
        dir: String,
        /// Why.
        reason: String,
    },
}

/// Frames one postcard value like [`write_record`] does.
fn write_value<W: Write, T: Serialize>(w: &mut W, value: &T) -> std::io::Result<()> {
    let bytes = postcard::to_stdvec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&bytes)
}

/// Hashes everything written through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a backup of `rtx` to `out`; returns its header.
pub(crate) fn write_backup<W: Write>(
    rtx: &ReadTransaction,
    cluster_id: &str,
    out: W,
) -> Result<BackupHeader, StorageError> {
    let io = |e: std::io::Error| sm_read(e);
    let (applied, _) = applied_of(rtx)?;
    let header = BackupHeader {
        format: BACKUP_FORMAT,
        cluster_id: cluster_id.to_string(),
        applied,
    };
    let mut w = Hashing {
        inner: BufWriter::with_capacity(1 << 16, out),
        hasher: Sha256::new(),
    };
    w.write_all(BACKUP_MAGIC).map_err(io)?;
    write_value(&mut w, &header).map_err(io)?;
    let mut buf = Vec::new();
    let mut rows = 0u64;
    for def in ipam_core::tables::TABLES {
        let table = match rtx.open_table(*def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(sm_read(e)),
        };
        write_record(
            &mut w,
            &SnapRecord::Table(redb::TableHandle::name(def)),
            &mut buf,
        )
        .map_err(io)?;
        for row in table.iter().map_err(sm_read)? {
            let (k, v) = row.map_err(sm_read)?;
            write_record(&mut w, &SnapRecord::Row(k.value(), v.value()), &mut buf).map_err(io)?;
            rows += 1;
        }
    }
    write_record(&mut w, &SnapRecord::End { rows }, &mut buf).map_err(io)?;
    let digest = w.hasher.finalize();
    let mut inner = w.inner;
    inner.write_all(&digest).map_err(io)?;
    inner.flush().map_err(io)?;
    Ok(header)
}

impl SmShared {
    /// Writes a backup of the current state (one read transaction; applies continue).
    pub(crate) fn backup<W: Write>(
        &self,
        cluster_id: &str,
        out: W,
    ) -> Result<BackupHeader, StorageError> {
        let db = self.db()?;
        let rtx = db.db.begin_read().map_err(sm_read)?;
        write_backup(&rtx, cluster_id, out)
    }
}

/// Checks the magic, checksum and header of a backup file without writing anything.
pub fn verify_backup(file: &Path) -> Result<BackupHeader, RestoreError> {
    let name = file.display().to_string();
    let read = |e: std::io::Error| RestoreError::Read {
        file: name.clone(),
        reason: e.to_string(),
    };
    let format = |reason: &str| RestoreError::Format {
        file: name.clone(),
        reason: reason.to_string(),
    };
    let mut f = File::open(file).map_err(read)?;
    let len = f.metadata().map_err(read)?.len();
    if len < BACKUP_MAGIC.len() as u64 + CHECKSUM_LEN {
        return Err(format("too short to be a backup"));
    }
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).map_err(read)?;
    if &magic != BACKUP_MAGIC {
        return Err(format("not a raft-ipam backup (wrong magic bytes)"));
    }
    f.seek(SeekFrom::Start(0)).map_err(read)?;
    let mut hasher = Sha256::new();
    let mut body = BufReader::with_capacity(1 << 16, (&mut f).take(len - CHECKSUM_LEN));
    std::io::copy(&mut body, &mut hasher).map_err(read)?;
    let mut expected = [0u8; 32];
    f.read_exact(&mut expected).map_err(read)?;
    if hasher.finalize().as_slice() != expected {
        return Err(RestoreError::BadChecksum { file: name });
    }
    f.seek(SeekFrom::Start(BACKUP_MAGIC.len() as u64))
        .map_err(read)?;
    let mut buf = Vec::new();
    if !read_record(&mut f, &mut buf).map_err(|e| format(&e.to_string()))? {
        return Err(format("no header"));
    }
    // The format comes first in the header, so a newer one is named even when the rest of
    // its header would not decode here.
    let (found, _) = postcard::take_from_bytes::<u16>(&buf).map_err(|e| format(&e.to_string()))?;
    if found > BACKUP_FORMAT {
        return Err(format(&format!(
            "format version {found} is newer than this release reads (at most {BACKUP_FORMAT})"
        )));
    }
    postcard::from_bytes(&buf).map_err(|e| format(&format!("header: {e}")))
}

/// What a restore created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The backup's header.
    pub header: BackupHeader,
    /// The new cluster's id.
    pub cluster_id: String,
}

/// Restores `file` into the empty (or missing) `data_dir` as the state of a new single-voter
/// cluster whose only member is `id` at `advertise`. `Ipam::start` on that dir then serves it.
pub fn restore_backup(
    file: &Path,
    data_dir: &Path,
    id: NodeId,
    advertise: &str,
    cluster_id: &str,
) -> Result<Restored, RestoreError> {
    let dir_name = data_dir.display().to_string();
    let existed = data_dir.exists();
    if existed {
        let mut entries = std::fs::read_dir(data_dir).map_err(|e| RestoreError::Read {
            file: dir_name.clone(),
            reason: e.to_string(),
        })?;
        if entries.next().is_some() {
            return Err(RestoreError::DataDirNotEmpty { dir: dir_name });
        }
    }
    let header = verify_backup(file)?;
    let result = write_restored(file, data_dir, id, advertise, cluster_id, &header);
    if let Err(reason) = result {
        // Leave the dir as it was found: empty, or absent.
        if existed {
            if let Ok(rd) = std::fs::read_dir(data_dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(data_dir);
        }
        return Err(RestoreError::Write {
            dir: dir_name,
            reason,
        });
    }
    Ok(Restored {
        header,
        cluster_id: cluster_id.to_string(),
    })
}

fn write_restored(
    file: &Path,
    data_dir: &Path,
    id: NodeId,
    advertise: &str,
    cluster_id: &str,
    header: &BackupHeader,
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    std::fs::create_dir_all(data_dir).map_err(|x| e(&x))?;
    let mut f = File::open(file).map_err(|x| e(&x))?;
    let len = f.metadata().map_err(|x| e(&x))?.len();
    f.seek(SeekFrom::Start(BACKUP_MAGIC.len() as u64))
        .map_err(|x| e(&x))?;
    let mut r = BufReader::with_capacity(1 << 20, f.take(len - CHECKSUM_LEN - 8));
    let mut buf = Vec::new();
    // The header, verified already.
    read_record(&mut r, &mut buf).map_err(|x| e(&x))?;

    let path: PathBuf = data_dir.join(STATE_FILE);
    let db = Database::builder().create(&path).map_err(|x| e(&x))?;
    let mut txn = db.begin_write().map_err(|x| e(&x))?;
    txn.set_durability(Durability::None).map_err(|x| e(&x))?;
    let mut current = None;
    let mut rows = 0u64;
    let mut ended = false;
    while read_record(&mut r, &mut buf).map_err(|x| e(&x))? {
        let rec: SnapRecord<'_> = postcard::from_bytes(&buf).map_err(|x| e(&x))?;
        match rec {
            SnapRecord::Table(name) => {
                current = ipam_core::tables::TABLES
                    .iter()
                    .find(|d| redb::TableHandle::name(*d) == name);
                if current.is_none() {
                    return Err(format!("unknown table {name:?}"));
                }
            }
            SnapRecord::Row(k, v) => {
                let def = current.ok_or("a row before any table")?;
                txn.open_table(*def)
                    .and_then(|mut t| t.insert(k, v).map(|_| ()).map_err(Into::into))
                    .map_err(|x| e(&x))?;
                rows += 1;
            }
            SnapRecord::End { rows: expected } => {
                if expected != rows {
                    return Err(format!("{rows} rows, the backup counts {expected}"));
                }
                ended = true;
                break;
            }
            SnapRecord::Header { .. } => return Err("a snapshot header inside a backup".into()),
        }
    }
    if !ended {
        return Err("the table stream is truncated".into());
    }
    for def in ipam_core::tables::TABLES {
        txn.open_table(*def).map_err(|x| e(&x))?;
    }
    txn.open_table(SM_META).map_err(|x| e(&x))?;
    // Term 0 of this node: below every term the new cluster will elect, so its first entries
    // follow the restored position in log order.
    let applied = LogId::new(CommittedLeaderId::new(0, id), header.applied_index());
    let membership = StoredMembership::new(
        Some(applied),
        Membership::new(
            vec![BTreeSet::from([id])],
            BTreeMap::from([(id, Node::new(advertise))]),
        ),
    );
    write_meta(&txn, KEY_APPLIED, &Some(applied)).map_err(|x| e(&x))?;
    write_meta(&txn, KEY_MEMBERSHIP, &membership).map_err(|x| e(&x))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|x| e(&x))?;
    txn.commit().map_err(|x| e(&x))?;
    drop(db);
    // The new cluster's id, where the transport reads it (`files.rs`).
    let id_path = crate::files::cluster_id_path(data_dir);
    std::fs::write(&id_path, cluster_id).map_err(|x| e(&x))?;
    File::open(&id_path)
        .and_then(|f| f.sync_all())
        .map_err(|x| e(&x))?;
    File::open(data_dir)
        .and_then(|f| f.sync_all())
        .map_err(|x| e(&x))?;
    Ok(())
}
