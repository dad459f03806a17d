//! Where a data dir keeps its bytes: real files, or (tests, `testing` feature) a [`DiskIo`]
//! that can model a power cut. Every file operation whose durability matters — of `log.redb`,
//! the log's segment files (`wal/`) and `state.redb`, of the snapshot files and
//! `snapshots/current.meta`, of the `node_id`, `cluster_id` and `incarnation` files (open or
//! create, read, rename over, remove, list, whether a name exists, directory fsync) — goes
//! through [`Disk`], so a simulated disk sees the order of writes and syncs. Offline restore
//! (`restore_backup`) writes a fresh data dir with real files only.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, StorageBackend};

mod file;
pub(crate) use file::DiskFile;
pub use file::SnapshotFile;

/// The file operations of a data dir, for a disk that is not the real file system.
pub trait DiskIo: Send + Sync + 'static {
    /// A handle to the file at `path`, created empty (not yet durable as a directory entry)
    /// if it does not exist.
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageBackend>>;
    /// A handle to the existing file at `path` (`NotFound` if there is none).
    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn StorageBackend>>;
    /// The paths of the files directly in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Renames `from` over `to` (durable only after [`DiskIo::sync_dir`] of the directory).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes `path`; a missing file is not an error.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries (creations, renames, removals) of directory `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether a file exists at `path` (the log finds its segments by probing names).
    fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// Default page cache of `state.redb` (and of a snapshot being installed;
/// [`crate::Config::state_cache_bytes`]). redb's default is 1 GiB per database, which a node
/// holding a million allocations filled: 680 MB resident after loading them, 340 MB after a
/// restart (the load reads every row once). The OS page cache still holds the file; a miss
/// costs a `pread` of a cached page. Under 1,000 clients (a quarter of a million allocations)
/// 256 MiB was no faster (`docs/performance.md`, "Session 9").
pub(crate) const DEFAULT_STATE_CACHE_BYTES: usize = 64 << 20;
/// Page cache of `log.redb`. Since the entries moved to `wal/` it holds a few rows (vote,
/// purge point, committed id, format) and, once, a format-1 log's entries while they are
/// copied; redb fills the cache only with pages it reads, so this is a ceiling, not memory
/// spent, and not a setting: nothing an operator tunes depends on it.
pub(crate) const LOG_CACHE_BYTES: usize = 16 << 20;

/// The disk the stores use: real files unless a test installed a [`DiskIo`].
#[derive(Clone, Default)]
pub struct Disk(Option<Arc<dyn DiskIo>>);

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Disk(custom)"
        } else {
            "Disk(files)"
        })
    }
}

impl Disk {
    /// A disk backed by `io` instead of real files (tests: the `testing` feature exports it).
    #[cfg(feature = "testing")]
    pub fn custom(io: Arc<dyn DiskIo>) -> Disk {
        Disk(Some(io))
    }

    /// Opens (or creates) the database at `path`, with a page cache of `cache_bytes`.
    pub(crate) fn create_db(
        &self,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<Database, DatabaseError> {
        let mut builder = Database::builder();
        builder.set_cache_size(cache_bytes);
        match &self.0 {
            None => builder.create(path),
            Some(io) => {
                let backend = io.open(path).map_err(redb::StorageError::from)?;
                builder.create_with_backend(Boxed(backend))
            }
        }
    }

    /// Opens `path` for reading and writing, created if missing and truncated.
    pub(crate) fn create(&self, path: &Path) -> io::Result<DiskFile> {
        match &self.0 {
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map(DiskFile::Real),
            Some(io) => {
                let backend = io.open(path)?;
                if backend.len()? > 0 {
                    backend.set_len(0)?;
                }
                Ok(DiskFile::sim(backend))
            }
        }
    }

    /// Opens the existing file `path` for reading.
    pub(crate) fn open_read(&self, path: &Path) -> io::Result<DiskFile> {
        match &self.0 {
            None => std::fs::File::open(path).map(DiskFile::Real),
            Some(io) => io.open_existing(path).map(DiskFile::sim),
        }
    }

    /// The whole content of the (small) file `path`.
    pub(crate) fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match &self.0 {
            None => std::fs::read(path),
            Some(io) => {
                let backend = io.open_existing(path)?;
                let len = usize::try_from(backend.len()?).map_err(io::Error::other)?;
                let mut out = vec![0; len];
                backend.read(0, &mut out)?;
                Ok(out)
            }
        }
    }

    /// The names of the files directly in `dir`.
    pub(crate) fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        match &self.0 {
            None => Ok(std::fs::read_dir(dir)?
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Some(io) => Ok(io
                .list(dir)?
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect()),
        }
    }

    /// Replaces `path` with `bytes` so that a crash leaves either the old or the new content:
    /// write a sibling `.tmp`, fsync it, rename it over `path`, fsync the directory.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut f = self.create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        self.rename(&tmp, path)?;
        self.sync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    /// Opens (or creates, empty) a plain file at `path`, such as a log segment.
    pub(crate) fn open_file(&self, path: &Path) -> io::Result<Arc<dyn StorageBackend>> {
        match &self.0 {
            None => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)?;
                Ok(Arc::new(PlainFile(file)))
            }
            Some(io) => Ok(Arc::from(io.open(path)?)),
        }
    }

    pub(crate) fn exists(&self, path: &Path) -> io::Result<bool> {
        match &self.0 {
            None => path.try_exists(),
            Some(io) => io.exists(path),
        }
    }

    /// Creates directory `dir` (durable once its parent is synced). A custom disk has no
    /// directories: its names are whole paths.
    pub(crate) fn create_dir(&self, dir: &Path) -> io::Result<()> {
        match &self.0 {
            None => std::fs::create_dir_all(dir),
            Some(_) => Ok(()),
        }
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match &self.0 {
            None => std::fs::rename(from, to),
            Some(io) => io.rename(from, to),
        }
    }

    pub(crate) fn remove(&self, path: &Path) -> io::Result<()> {
        let res = match &self.0 {
            None => std::fs::remove_file(path),
            Some(io) => io.remove(path),
        };
        match res {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match &self.0 {
            None => crate::files::sync_dir(dir),
            Some(io) => io.sync_dir(dir),
        }
    }
}

/// redb wants a sized backend; this forwards to a boxed one (also what tests open a
/// [`DiskIo`] file as a redb database with: the `testing` feature exports it).
#[derive(Debug)]
pub struct Boxed(pub Box<dyn StorageBackend>);

impl StorageBackend for Boxed {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
}

/// A real file as a backend: positioned reads and writes, no lock (the data dir's owner
/// holds `log.redb`, which redb locks).
#[derive(Debug)]
struct PlainFile(std::fs::File);

impl StorageBackend for PlainFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, out, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, data, offset)
    }
    fn close(&self) -> io::Result<()> {
        Ok(())
    }
}
