//! The small files of a data dir besides the redb stores: `node_id` (which node the dir
//! belongs to) and `cluster_id` (which cluster it joined). They are written with
//! [`Disk::write_atomic`], like the snapshot meta and the `incarnation` file.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::disk::Disk;
use crate::error::StartError;
use crate::types::NodeId;

const NODE_ID_FILE: &str = "node_id";
const CLUSTER_ID_FILE: &str = "cluster_id";

/// Makes the directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The text of the small file `path`, `None` if it does not exist.
pub(crate) fn read_text(disk: &Disk, path: &Path) -> std::io::Result<Option<String>> {
    match disk.read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records the node id in the data dir, or checks it against the recorded one.
pub(crate) fn check_node_id(disk: &Disk, dir: &Path, id: NodeId) -> Result<(), StartError> {
    let path = dir.join(NODE_ID_FILE);
    let io = |source| StartError::Io {
        path: path.clone(),
        source,
    };
    match read_text(disk, &path).map_err(io)? {
        Some(s) => {
            let recorded: u64 = s.trim().parse().map_err(|_| StartError::Corrupt {
                path: path.clone(),
                content: s.clone(),
            })?;
            if recorded != id {
                return Err(StartError::NodeIdMismatch {
                    dir: dir.display().to_string(),
                    recorded,
                    configured: id,
                });
            }
            Ok(())
        }
        None => disk
            .write_atomic(&path, id.to_string().as_bytes())
            .map_err(io),
    }
}

/// Where the cluster id of the data dir `dir` is recorded.
pub(crate) fn cluster_id_path(dir: &Path) -> PathBuf {
    dir.join(CLUSTER_ID_FILE)
}

/// The cluster id recorded at `path`, if any.
pub(crate) fn read_cluster_id(disk: &Disk, path: &Path) -> std::io::Result<Option<String>> {
    Ok(read_text(disk, path)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// A fresh cluster id: 128 bits from the process's randomly keyed hasher, time and node id.
pub(crate) fn new_cluster_id(node: NodeId) -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u64(node);
        h.write_usize(i);
        *part = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        Disk::default().write_atomic(&path, b"one").unwrap();
        Disk::default().write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_data_dir_keeps_its_node_id() {
        let dir = tempfile::tempdir().unwrap();
        check_node_id(&Disk::default(), dir.path(), 3).unwrap();
        check_node_id(&Disk::default(), dir.path(), 3).unwrap();
        assert!(matches!(
            check_node_id(&Disk::default(), dir.path(), 4),
            Err(StartError::NodeIdMismatch {
                recorded: 3,
                configured: 4,
                ..
            })
        ));
        std::fs::write(dir.path().join(NODE_ID_FILE), "x").unwrap();
        assert!(matches!(
            check_node_id(&Disk::default(), dir.path(), 3),
            Err(StartError::Corrupt { .. })
        ));
    }
}
