//! A simulated disk that loses power: every file keeps its durable bytes plus the writes and
//! length changes made since its last `sync_data`; directory entries (creations, renames,
//! removals) are durable only after a `sync_dir` of their directory. [`PowerCutDisk::cut`]
//! drops what was not synced — all of it, or (with [`Cut::RandomPages`]) a random subset of the
//! pending writes' 4 KiB pages survives, as a real disk may persist some unsynced writes in any
//! order. Handles opened before a cut fail every call; a reopen sees the surviving bytes.
//!
//! Snapshot stream files (`snapshots/`) stay on the real file system: this models only the
//! redb stores (`log.redb`, `state.redb`, an install's `state.redb.tmp`) and the log's
//! segments (`wal/`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipam_raft::{Disk, DiskIo};

const PAGE: u64 = 4096;

/// What survives a cut of the pending (unsynced) writes.
#[derive(Clone, Copy, Debug)]
pub enum Cut {
    /// Nothing that was not synced.
    AllPendingLost,
    /// Each pending 4 KiB page (and each pending length change) survives with probability 1/2.
    RandomPages,
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
        self.cuts += 1;
    }

    /// Counts one mutating call; cuts the power when the armed count is reached.
    fn tick(&mut self, epoch: u64) -> io::Result<()> {
        self.alive(epoch)?;
        self.ops += 1;
        if let Some((at, how)) = self.cut_at {
            if self.ops >= at {
                self.cut(how);
                return Err(power_off());
            }
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
}

/// Holds the next `sync_dir` until released (slow file I/O on demand).
#[derive(Default)]
pub struct Gate {
    /// (armed, entered, released)
    state: Mutex<(bool, bool, bool)>,
    cv: std::sync::Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, bool, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Whether a `sync_dir` is waiting at the gate.
    pub fn entered(&self) -> bool {
        self.lock().1
    }
    /// Lets the waiting (or next) `sync_dir` through.
    pub fn release(&self) {
        self.lock().2 = true;
        self.cv.notify_all();
    }
    fn pass(&self) {
        let mut g = self.lock();
        if !g.0 {
            return;
        }
        g.0 = false;
        g.1 = true;
        while !g.2 {
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
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Makes the next `sync_dir` wait until the returned gate is released.
    pub fn gate_next_sync_dir(&self) -> Arc<Gate> {
        *self.gate.lock() = (true, false, false);
        self.gate.clone()
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
            file,
            epoch,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let epoch = s.epoch;
        s.tick(epoch)?;
        let f = s
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.names.insert(to.to_path_buf(), f);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let epoch = s.epoch;
        s.tick(epoch)?;
        s.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.gate.pass();
        let mut s = self.lock();
        let epoch = s.epoch;
        s.tick(epoch)?;
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
    file: usize,
    epoch: u64,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("file", &self.file).finish()
    }
}

impl Backend {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        s.tick(self.epoch)?;
        let f = &mut s.files[self.file];
        let op = Pending::SetLen(len);
        apply(&mut f.live, &op);
        f.pending.push(op);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.lock();
        s.tick(self.epoch)?;
        let f = &mut s.files[self.file];
        for op in std::mem::take(&mut f.pending) {
            apply(&mut f.durable, &op);
        }
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.tick(self.epoch)?;
        let f = &mut s.files[self.file];
        let op = Pending::Write(offset, data.to_vec());
        apply(&mut f.live, &op);
        f.pending.push(op);
        Ok(())
    }
}
