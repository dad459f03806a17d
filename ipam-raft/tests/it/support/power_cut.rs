//! A simulated disk that loses power: every file keeps its durable bytes plus the writes and
//! length changes made since its last `sync_data`; directory entries (creations, renames,
//! removals) are durable only after a `sync_dir` of their directory. [`PowerCutDisk::cut`]
//! drops what was not synced — all of it, or (with [`Cut::RandomPages`]) a random subset of the
//! pending writes' 4 KiB pages survives, as a real disk may persist some unsynced writes in any
//! order. Handles opened before a cut fail every call; a reopen sees the surviving bytes.
//!
//! It holds every file of a data dir: the redb stores, the log's segments (`wal/`), the
//! snapshot files and `snapshots/current.meta`, the `node_id`, `cluster_id` and `incarnation`
//! files. Directories are not modelled (the real ones exist); a file's directory is its
//! path's parent.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipam_raft::{Disk, DiskIo};

const PAGE: u64 = 4096;

/// Which paths an armed cut or gate watches.
pub type PathPred = fn(&Path) -> bool;

/// What survives a cut of the pending (unsynced) writes.
#[derive(Clone, Copy, Debug)]
pub enum Cut {
    /// Nothing that was not synced.
    AllPendingLost,
    /// Each pending 4 KiB page (and each pending length change) survives with probability 1/2.
    RandomPages,
}

/// A path of the snapshot dir (`snapshots/` or a file in it).
pub fn is_snapshot(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "snapshots")
        || p.parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "snapshots")
}

/// A path of one of the small files of a data dir (or its `.tmp` sibling).
pub fn is_small_file(p: &Path) -> bool {
    p.file_stem()
        .is_some_and(|n| n == "node_id" || n == "cluster_id" || n == "incarnation")
}

/// A path of the log's segment dir (`wal/` or a segment in it).
pub fn is_wal(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "wal")
        || p.parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "wal")
}

/// What a cut hit, for the tests' coverage figures: `wal` (a log segment), `log` (`log.redb`),
/// `state`, `snapshot`, `small file` or `data dir` (a directory fsync of the data dir).
pub fn kind(p: &Path) -> &'static str {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if is_snapshot(p) {
        "snapshot"
    } else if is_wal(p) {
        "wal"
    } else if is_small_file(p) {
        "small file"
    } else if name.starts_with("log.redb") {
        "log"
    } else if name.starts_with("state.redb") {
        "state"
    } else {
        "data dir"
    }
}

/// A small seeded generator (splitmix64): tests print the seed to replay a failure.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Default)]
struct SimFile {
    durable: Vec<u8>,
    live: Vec<u8>,
    pending: Vec<Pending>,
}

fn apply(buf: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write(off, data) => {
            let off = *off as usize;
            if buf.len() < off + data.len() {
                buf.resize(off + data.len(), 0);
            }
            buf[off..off + data.len()].copy_from_slice(data);
        }
        Pending::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

#[derive(Default)]
struct State {
    /// Bumped by every cut: handles of an older power cycle are dead.
    epoch: u64,
    /// The power is off until [`PowerCutDisk::power_on`].
    off: bool,
    /// Mutating calls (write, set_len, sync_data, rename, remove, sync_dir) so far.
    ops: u64,
    /// Cut the power when `ops` reaches this.
    cut_at: Option<(u64, Cut)>,
    /// Cut the power at the n-th mutating call on a path that matches.
    cut_on: Option<(PathPred, u64, Cut)>,
    /// The path of the call each cut hit.
    cut_paths: Vec<PathBuf>,
    rng: Option<Rng>,
    files: Vec<SimFile>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    cuts: u64,
}

impl State {
    fn cut(&mut self, how: Cut) {
        let mut rng = self.rng.take().unwrap_or_else(|| Rng::new(self.epoch));
        for f in &mut self.files {
            for op in std::mem::take(&mut f.pending) {
                match (how, op) {
                    (Cut::AllPendingLost, _) => {}
                    (Cut::RandomPages, Pending::SetLen(len)) => {
                        if rng.coin() {
                            apply(&mut f.durable, &Pending::SetLen(len));
                        }
                    }
                    (Cut::RandomPages, Pending::Write(off, data)) => {
                        // Page by page, as a disk may persist any of them.
                        let mut at = off;
                        let end = off + data.len() as u64;
                        while at < end {
                            let next = ((at / PAGE) + 1) * PAGE;
                            let stop = next.min(end);
                            if rng.coin() {
                                let s = (at - off) as usize;
                                let e = (stop - off) as usize;
                                apply(&mut f.durable, &Pending::Write(at, data[s..e].to_vec()));
                            }
                            at = stop;
                        }
                    }
                }
            }
            f.live = f.durable.clone();
        }
        self.rng = Some(rng);
        self.names = self.durable_names.clone();
        self.epoch += 1;
        self.off = true;
        self.cut_at = None;
        self.cut_on = None;
        self.cuts += 1;
    }

    /// Counts one mutating call on `path`; cuts the power when an armed count is reached.
    fn tick(&mut self, epoch: u64, path: &Path) -> io::Result<()> {
        self.alive(epoch)?;
        self.ops += 1;
        let mut how = self.cut_at.filter(|(at, _)| self.ops >= *at).map(|c| c.1);
        if let Some((pred, left, on_how)) = &mut self.cut_on {
            if pred(path) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    how = Some(*on_how);
                }
            }
        }
        if let Some(how) = how {
            self.cut_paths.push(path.to_path_buf());
            self.cut(how);
            return Err(power_off());
        }
        Ok(())
    }

    fn alive(&self, epoch: u64) -> io::Result<()> {
        if self.off || epoch != self.epoch {
            Err(power_off())
        } else {
            Ok(())
        }
    }
}

fn power_off() -> io::Error {
    io::Error::other("power is off")
}

/// The simulated disk; share it (`Arc`) between the node's config and the test.
#[derive(Default)]
pub struct PowerCutDisk {
    state: Arc<Mutex<State>>,
    gate: Arc<Gate>,
    hold: Arc<SyncHold>,
}

/// Holds every `sync_data` of a file whose path matches until released: a slow disk on demand.
#[derive(Default)]
pub struct SyncHold {
    state: Mutex<HoldState>,
    cv: std::sync::Condvar,
}

#[derive(Default)]
struct HoldState {
    on: Option<PathPred>,
    /// Syncs waiting now.
    waiting: u64,
}

impl SyncHold {
    fn lock(&self) -> std::sync::MutexGuard<'_, HoldState> {
        unpoisoned(&self.state)
    }
    fn pass(&self, path: &Path) {
        let mut g = self.lock();
        while g.on.is_some_and(|on| on(path)) {
            g.waiting += 1;
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
            g.waiting -= 1;
        }
    }
    /// How many syncs are held now.
    pub fn waiting(&self) -> u64 {
        self.lock().waiting
    }
    /// Lets every held (and later) sync through.
    pub fn release(&self) {
        self.lock().on = None;
        self.cv.notify_all();
    }
}

/// Holds a `sync_dir` until released (slow file I/O on demand): the first one after a rename
/// onto a path the gate was armed for.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    cv: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    armed: Option<PathPred>,
    /// A rename onto an armed path happened: the next `sync_dir` waits.
    primed: bool,
    entered: bool,
    released: bool,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        unpoisoned(&self.state)
    }
    /// Whether a `sync_dir` is waiting at the gate.
    pub fn entered(&self) -> bool {
        self.lock().entered
    }
    /// Lets the waiting (or next) `sync_dir` through.
    pub fn release(&self) {
        self.lock().released = true;
        self.cv.notify_all();
    }
    fn renamed(&self, to: &Path) {
        let mut g = self.lock();
        if g.armed.is_some_and(|on| on(to)) {
            g.armed = None;
            g.primed = true;
        }
    }
    fn pass(&self) {
        let mut g = self.lock();
        if !g.primed {
            return;
        }
        g.primed = false;
        g.entered = true;
        while !g.released {
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl PowerCutDisk {
    pub fn new(seed: u64) -> Arc<PowerCutDisk> {
        let d = PowerCutDisk::default();
        d.lock().rng = Some(Rng::new(seed));
        Arc::new(d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        unpoisoned(&self.state)
    }

    /// The [`Disk`] to put in a node's config.
    pub fn disk(self: &Arc<Self>) -> Disk {
        Disk::custom(self.clone())
    }

    /// Cuts the power after `k` more mutating calls.
    pub fn arm(&self, k: u64, how: Cut) {
        let mut s = self.lock();
        s.cut_at = Some((s.ops + k.max(1), how));
    }

    /// Cuts the power at the `k`-th next mutating call on a path for which `on` holds (a
    /// write, length change or sync of a file opened at such a path, a rename from or to one,
    /// its removal, a sync of such a directory).
    pub fn arm_on(&self, on: fn(&Path) -> bool, k: u64, how: Cut) {
        self.lock().cut_on = Some((on, k.max(1), how));
    }

    /// The path of the call each armed cut so far hit.
    pub fn cut_paths(&self) -> Vec<PathBuf> {
        self.lock().cut_paths.clone()
    }

    /// Cuts the power now (if it is on).
    pub fn cut(&self, how: Cut) {
        let mut s = self.lock();
        if !s.off {
            s.cut(how);
        }
    }

    pub fn is_off(&self) -> bool {
        self.lock().off
    }

    /// Mutating calls so far (for calibrating cut points).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Makes the first `sync_dir` after a rename onto a path for which `on` holds wait until
    /// the returned gate is released.
    pub fn gate_sync_dir_after_rename(&self, on: fn(&Path) -> bool) -> Arc<Gate> {
        *self.gate.lock() = GateState {
            armed: Some(on),
            ..GateState::default()
        };
        self.gate.clone()
    }

    /// Holds the `sync_data` calls on files whose path matches `on` until the returned hold is
    /// released (writes go on; they stay pending, as in a slow disk's queue).
    pub fn hold_syncs(&self, on: PathPred) -> Arc<SyncHold> {
        self.hold.lock().on = Some(on);
        self.hold.clone()
    }

    /// Turns the power back on: new opens see the bytes that survived.
    pub fn power_on(&self) {
        let mut s = self.lock();
        s.off = false;
        s.cut_at = None;
    }
}

impl DiskIo for PowerCutDisk {
    fn open(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        let mut s = self.lock();
        let epoch = s.epoch;
        s.alive(epoch)?;
        let file = match s.names.get(path) {
            Some(f) => *f,
            None => {
                // A new, empty file: its directory entry is pending until a `sync_dir`.
                s.files.push(SimFile::default());
                let f = s.files.len() - 1;
                s.names.insert(path.to_path_buf(), f);
                f
            }
        };
        Ok(Box::new(Backend {
            state: self.state.clone(),
            hold: self.hold.clone(),
            file,
            epoch,
            path: path.to_path_buf(),
        }))
    }
    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        let s = self.lock();
        let epoch = s.epoch;
        s.alive(epoch)?;
        let file = *s
            .names
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Box::new(Backend {
            state: self.state.clone(),
            hold: self.hold.clone(),
            file,
            epoch,
            path: path.to_path_buf(),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = self.lock();
        s.alive(s.epoch)?;
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let epoch = s.epoch;
        let on = if s.cut_on.is_some_and(|(pred, ..)| pred(from)) {
            from
        } else {
            to
        };
        s.tick(epoch, on)?;
        let f = s
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.names.insert(to.to_path_buf(), f);
        drop(s);
        self.gate.renamed(to);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let epoch = s.epoch;
        s.tick(epoch, path)?;
        s.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.gate.pass();
        let mut s = self.lock();
        let epoch = s.epoch;
        s.tick(epoch, dir)?;
        let in_dir = |p: &Path| p.parent() == Some(dir);
        s.durable_names.retain(|p, _| !in_dir(p));
        let live: Vec<(PathBuf, usize)> = s
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, f)| (p.clone(), *f))
            .collect();
        s.durable_names.extend(live);
        Ok(())
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.lock();
        s.alive(s.epoch)?;
        Ok(s.names.contains_key(path))
    }
}

/// One open file of the simulated disk, valid for the power cycle it was opened in.
struct Backend {
    state: Arc<Mutex<State>>,
    hold: Arc<SyncHold>,
    file: usize,
    epoch: u64,
    /// Where it was opened (the file may have been renamed since).
    path: PathBuf,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("file", &self.file)
            .field("path", &self.path)
            .finish()
    }
}

impl Backend {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        unpoisoned(&self.state)
    }
}

impl redb::StorageBackend for Backend {
    fn len(&self) -> io::Result<u64> {
        let s = self.lock();
        s.alive(self.epoch)?;
        Ok(s.files[self.file].live.len() as u64)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let s = self.lock();
        s.alive(self.epoch)?;
        let live = &s.files[self.file].live;
        let start = offset as usize;
        let src = live
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(src);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        s.tick(self.epoch, &self.path)?;
        let f = &mut s.files[self.file];
        let op = Pending::SetLen(len);
        apply(&mut f.live, &op);
        f.pending.push(op);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.hold.pass(&self.path);
        let mut s = self.lock();
        s.tick(self.epoch, &self.path)?;
        let f = &mut s.files[self.file];
        for op in std::mem::take(&mut f.pending) {
            apply(&mut f.durable, &op);
        }
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.tick(self.epoch, &self.path)?;
        let f = &mut s.files[self.file];
        let op = Pending::Write(offset, data.to_vec());
        apply(&mut f.live, &op);
        f.pending.push(op);
        Ok(())
    }
}

/// The disk's state as the last holder left it, even if that holder panicked (a failing test's
/// node task), so the rest of the test still sees the cuts and counts.
fn unpoisoned<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
