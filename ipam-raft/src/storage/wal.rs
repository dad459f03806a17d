//! The raft log's entries in segment files, `<data>/wal/<seq:020>.seg`.
//!
//! A segment is preallocated (`set_len`) so that an append's `fdatasync` does not also update
//! the file size, and is a run of records: `len` (u32 LE), `crc32` of `len` and the body (u32
//! LE), then `len` bytes of postcard. The first record of every segment is a header naming its
//! number and where the records of the previous segment end (`prev_end`); then come entries,
//! "committed" updates and "truncate from index" markers. Reopening replays the records in
//! order, skipping entries at or below the purged index recorded in `log.redb`.
//!
//! Where a segment's records end:
//! - a segment followed by another ends exactly at the next one's `prev_end`; any bad record
//!   before it is corruption (its bytes were synced before the next segment was made);
//! - the last segment ends at the first zero length, bad crc or short read: a torn tail after
//!   a power cut is expected there, and holds nothing that was acknowledged.
//!
//! Durability: an append is written and synced before it returns ([`Wal::append`]), except a
//! leader's own ([`Wal::append_unsynced`]), which a later [`Wal::sync_written`] covers; the
//! [`LogDurable`] watermark says how far the log is on disk either way. A segment is synced before
//! the next one is started, so "every segment followed by another is whole" holds for both.
//!
//! Every open starts a new segment (`prev_end` = where the replay stopped) instead of
//! appending after a torn tail: bytes of unsynced writes may have survived past the tear, and
//! a later scan that ran past new records into them could resurrect entries that were never
//! acknowledged. A segment is always written into a freshly created file for the same reason:
//! a file whose header is torn is removed before its number is used again.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::StorageBackend;
use tokio::sync::watch;

use self::record::{decode, frame, put, Record, RecordRef, Scanner, FRAME};
use self::view::{replay, Loc, Segment, View};
use crate::disk::Disk;
use crate::poison::lock;

mod record;
mod view;
use crate::types::{Entry, LogId};

/// Size of a new segment; a batch larger than that gets a segment of its own size.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

/// Why the log's segment files could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A record that was synced does not read back (not a torn tail: the segment is followed
    /// by another, or the record's checksum is right and its body does not decode).
    #[error("log segment {seq} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The segment's number.
        seq: u64,
        /// Where in it the bad record starts.
        offset: u64,
        /// What is wrong there.
        reason: &'static str,
    },
    /// `log.redb` names a first segment that is not there.
    #[error("log segment {seq} is missing")]
    Missing {
        /// The segment's number.
        seq: u64,
    },
    /// `log.redb` was written by a newer build.
    #[error("log.redb has log format {found}; this build reads formats up to {known}")]
    UnknownFormat {
        /// The format recorded.
        found: u64,
        /// The newest format this build reads.
        known: u64,
    },
    /// The log skips entries between its purge point and its last entry, and the current
    /// snapshot does not cover them (an earlier release could leave such a hole after a
    /// snapshot install and a power cut; one the snapshot covers is repaired at start).
    #[error(
        "the log holds no entries between index {before} and index {after}, and the current snapshot ({snapshot:?}) does not cover them"
    )]
    Hole {
        /// The last index before the hole (the purge point, or an entry).
        before: u64,
        /// The first entry after it.
        after: u64,
        /// The current snapshot's last index.
        snapshot: Option<u64>,
    },
    /// An earlier write or sync failed: what reached the disk is unknown until a reopen.
    #[error("the log store failed an earlier write and takes no more")]
    Poisoned,
    /// Reading, writing or syncing a segment failed.
    #[error("log file I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A record could not be encoded.
    #[error("encoding a log record: {0}")]
    Encode(#[from] postcard::Error),
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// How far the log is on disk: every entry up to `last` (after a power cut the log holds at
/// least those), or `failed` once a write or sync failed (nothing more will become durable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogDurable {
    pub(crate) last: Option<LogId>,
    pub(crate) failed: bool,
}

impl LogDurable {
    /// Whether the entry at `index` is on disk, or nothing will be any more.
    pub(crate) fn covers(&self, index: u64) -> bool {
        self.failed || self.last.is_some_and(|l| l.index >= index)
    }
}

/// The segment being appended to. Only the writer lock's holder writes.
struct Writer {
    seq: u64,
    file: Arc<dyn StorageBackend>,
    /// Where the next record goes.
    pos: u64,
    /// The segment's preallocated size.
    cap: u64,
    poisoned: bool,
    buf: Vec<u8>,
    /// Bytes were written to `file` since its last sync.
    unsynced: bool,
    /// Bumped by every truncation: a sync that started before one must not publish what it
    /// captured (those entries may be gone).
    gen: u64,
}

/// The open segment files. Writes are serialized by the writer lock (taken before the view
/// lock); readers take only the view lock, briefly, and read the files outside it.
pub(crate) struct Wal {
    dir: PathBuf,
    disk: Disk,
    segment_bytes: u64,
    writer: Mutex<Writer>,
    view: Mutex<View>,
    /// Published under the writer lock.
    durable: watch::Sender<LogDurable>,
}

impl Wal {
    /// Removes segments from `from` upward (leftovers of a migration that did not commit).
    pub(crate) fn remove_from(dir: &Path, disk: &Disk, from: u64) -> Result<(), WalError> {
        let mut seq = from;
        while disk.exists(&segment_path(dir, seq))? {
            disk.remove(&segment_path(dir, seq))?;
            seq += 1;
        }
        if seq > from {
            disk.sync_dir(dir)?;
        }
        Ok(())
    }

    /// Creates an empty log whose first segment is `seq`: the segment is durable (file and
    /// directory entry) when this returns.
    pub(crate) fn create(
        dir: &Path,
        disk: &Disk,
        segment_bytes: u64,
        seq: u64,
    ) -> Result<Wal, WalError> {
        let (file, pos, cap) = Self::new_segment(dir, disk, segment_bytes, seq, 0, 0)?;
        file.sync_data()?;
        disk.sync_dir(dir)?;
        let w = Writer::new(seq, file, pos, cap);
        Ok(Self::assemble(dir, disk, segment_bytes, w, View::empty()))
    }

    fn assemble(dir: &Path, disk: &Disk, segment_bytes: u64, w: Writer, mut view: View) -> Wal {
        view.segs.insert(
            w.seq,
            Segment {
                file: w.file.clone(),
                max_index: None,
            },
        );
        // Whatever the log holds at open is on disk: `create` and `open` sync it first.
        let last = view.locs.last_key_value().map(|(_, l)| l.log_id);
        Wal {
            dir: dir.to_path_buf(),
            disk: disk.clone(),
            segment_bytes,
            writer: Mutex::new(w),
            view: Mutex::new(view),
            durable: watch::channel(LogDurable {
                last,
                failed: false,
            })
            .0,
        }
    }

    /// A fresh segment file holding only its header (not synced); returns it, where its first
    /// record goes and its size.
    fn new_segment(
        dir: &Path,
        disk: &Disk,
        segment_bytes: u64,
        seq: u64,
        prev_end: u64,
        need: u64,
    ) -> Result<(Arc<dyn StorageBackend>, u64, u64), WalError> {
        let path = segment_path(dir, seq);
        // A file of this name can only be one whose header was torn: start from an empty one.
        disk.remove(&path)?;
        let file = disk.open_file(&path)?;
        let mut head = Vec::new();
        let n = put(&mut head, &RecordRef::Header { seq, prev_end })?;
        let cap = segment_bytes.max(u64::from(n) + need);
        file.set_len(cap)?;
        file.write(0, &head)?;
        Ok((file, u64::from(n), cap))
    }

    /// Opens the log whose first segment is `first_seq`, replays it (entries at or below
    /// `purged` are gone) and starts a new segment for what comes next.
    pub(crate) fn open(
        dir: &Path,
        disk: &Disk,
        segment_bytes: u64,
        first_seq: u64,
        purged: Option<u64>,
        committed: Option<LogId>,
    ) -> Result<Wal, WalError> {
        let mut files = Vec::new();
        while disk.exists(&segment_path(dir, first_seq + files.len() as u64))? {
            let seq = first_seq + files.len() as u64;
            files.push((seq, disk.open_file(&segment_path(dir, seq))?));
        }
        if files.is_empty() {
            return Err(WalError::Missing { seq: first_seq });
        }
        // The header of each segment; a torn one is only allowed on the last (made by a roll
        // that a cut interrupted before anything in it was acknowledged).
        let mut headers = Vec::new();
        for (i, (seq, file)) in files.iter().enumerate() {
            let mut sc = Scanner::new(file.as_ref())?;
            let header = match sc.record(0)? {
                Ok((body, n)) => match decode(*seq, 0, body)? {
                    Record::Header { seq: s, prev_end } if s == *seq => Some((prev_end, n)),
                    _ => None,
                },
                Err(_) => None,
            };
            match header {
                Some(h) => headers.push(h),
                None if i + 1 == files.len() && i > 0 => break,
                None => {
                    return Err(WalError::Corrupt {
                        seq: *seq,
                        offset: 0,
                        reason: "no valid segment header",
                    })
                }
            }
        }
        files.truncate(headers.len());

        let mut view = View::empty();
        view.committed = committed;
        let mut tail_end = 0;
        for (i, (seq, file)) in files.iter().enumerate() {
            view.segs.insert(
                *seq,
                Segment {
                    file: file.clone(),
                    max_index: None,
                },
            );
            let end = headers.get(i + 1).map(|h| h.0);
            tail_end = replay(*seq, file.as_ref(), headers[i].1, end, purged, &mut view)?;
        }
        let (last_seq, last_file) = &files[files.len() - 1];
        // A process that stopped between an unsynced append and its sync left those bytes in
        // the page cache only: replayed, they count as durable from here, so sync them now.
        last_file.sync_data()?;
        let seq = last_seq + 1;
        let (file, pos, cap) = Self::new_segment(dir, disk, segment_bytes, seq, tail_end, 0)?;
        file.sync_data()?;
        disk.sync_dir(dir)?;
        let w = Writer::new(seq, file, pos, cap);
        Ok(Self::assemble(dir, disk, segment_bytes, w, view))
    }

    /// Writes `entries` (then `committed`, if given) in one write and one sync, and makes them
    /// readable. An entry replaces any at or after its index.
    pub(crate) fn append(
        &self,
        entries: Vec<Entry>,
        committed: Option<Option<LogId>>,
    ) -> Result<(), WalError> {
        self.append_with(entries, committed, true)
    }

    /// [`Wal::append`] without the sync: readable at once, durable after the next
    /// [`Wal::sync_written`] (or any synced write) returns.
    pub(crate) fn append_unsynced(
        &self,
        entries: Vec<Entry>,
        committed: Option<Option<LogId>>,
    ) -> Result<(), WalError> {
        self.append_with(entries, committed, false)
    }

    /// The durable watermark; it only rises, except when a truncation removes entries.
    pub(crate) fn durable(&self) -> watch::Receiver<LogDurable> {
        self.durable.subscribe()
    }

    /// Whether something was written that no sync has covered yet.
    pub(crate) fn has_unsynced(&self) -> bool {
        lock(&self.writer).unsynced
    }

    /// Syncs what was written so far, outside the writer lock (appends go on meanwhile), and
    /// raises the durable watermark to the last entry written before it started.
    pub(crate) fn sync_written(&self) -> Result<(), WalError> {
        let (file, last, gen) = {
            let mut w = lock(&self.writer);
            if w.poisoned {
                return Err(WalError::Poisoned);
            }
            if !w.unsynced {
                return Ok(());
            }
            w.unsynced = false;
            (w.file.clone(), self.last(), w.gen)
        };
        let res = file.sync_data();
        let mut w = lock(&self.writer);
        if let Err(e) = res {
            self.poison(&mut w);
            return Err(e.into());
        }
        if w.gen == gen {
            self.raise(last);
        }
        Ok(())
    }

    /// Marks the log failed: no write is taken and nothing more becomes durable.
    fn poison(&self, w: &mut Writer) {
        w.poisoned = true;
        self.durable.send_modify(|d| d.failed = true);
    }

    /// Raises the watermark to `last` (under the writer lock).
    fn raise(&self, last: Option<LogId>) {
        self.durable.send_if_modified(|d| {
            let up = last > d.last;
            if up {
                d.last = last;
            }
            up
        });
    }

    fn append_with(
        &self,
        entries: Vec<Entry>,
        committed: Option<Option<LogId>>,
        sync: bool,
    ) -> Result<(), WalError> {
        let mut w = lock(&self.writer);
        if w.poisoned {
            return Err(WalError::Poisoned);
        }
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        let mut lens = Vec::with_capacity(entries.len());
        for e in &entries {
            lens.push(put(&mut buf, &RecordRef::Entry(e))?);
        }
        if let Some(c) = committed {
            put(&mut buf, &RecordRef::Committed(c))?;
        }
        if buf.is_empty() {
            w.buf = buf;
            return Ok(());
        }
        let res = self.write(&mut w, &buf, sync);
        let at = match res {
            Ok(at) => at,
            Err(e) => {
                self.poison(&mut w);
                w.buf = buf;
                return Err(e);
            }
        };
        let last = entries.last().map(|e| e.log_id);
        let seq = w.seq;
        w.buf = buf;
        let mut v = lock(&self.view);
        let mut offset = at;
        for (e, len) in entries.into_iter().zip(lens) {
            let loc = Loc {
                log_id: e.log_id,
                seq,
                offset,
                len,
            };
            offset += u64::from(len);
            v.note_max(seq, e.log_id.index);
            v.place(loc);
            v.remember(e, len);
        }
        if let Some(c) = committed {
            v.committed = v.committed.max(c);
        }
        drop(v);
        if sync && last.is_some() {
            self.raise(last);
        }
        Ok(())
    }

    /// Removes the entries from index `from` on, durably.
    pub(crate) fn truncate(&self, from: u64) -> Result<(), WalError> {
        let mut w = lock(&self.writer);
        if w.poisoned {
            return Err(WalError::Poisoned);
        }
        let mut buf = Vec::new();
        put(&mut buf, &RecordRef::Truncate(from))?;
        if let Err(e) = self.write(&mut w, &buf, true) {
            self.poison(&mut w);
            return Err(e);
        }
        lock(&self.view).truncate(from);
        // The sync covered everything before the marker: what is left is durable, and a sync
        // that captured a removed entry must not publish it.
        w.gen += 1;
        let last = self.last();
        self.durable.send_modify(|d| d.last = last);
        Ok(())
    }

    /// Writes `buf` at the end of the log (rolling to a new segment if it does not fit) and,
    /// with `sync`, syncs it; returns the offset it went to, in the writer's (possibly new)
    /// segment.
    fn write(&self, w: &mut Writer, buf: &[u8], sync: bool) -> Result<u64, WalError> {
        let need = buf.len() as u64;
        let rolled = w.pos + need > w.cap;
        if rolled {
            // A segment followed by another must be whole on disk (`open` reads a bad record
            // before the next segment's start as corruption, not as a torn tail).
            if w.unsynced {
                w.file.sync_data()?;
                w.unsynced = false;
            }
            let seq = w.seq + 1;
            let (file, pos, cap) =
                Self::new_segment(&self.dir, &self.disk, self.segment_bytes, seq, w.pos, need)?;
            lock(&self.view).segs.insert(
                seq,
                Segment {
                    file: file.clone(),
                    max_index: None,
                },
            );
            w.seq = seq;
            w.file = file;
            w.pos = pos;
            w.cap = cap;
        }
        let at = w.pos;
        w.file.write(at, buf)?;
        if sync {
            w.file.sync_data()?;
            w.unsynced = false;
        } else {
            w.unsynced = true;
        }
        if rolled {
            // Nothing in a new segment is acknowledged before its name is durable.
            self.disk.sync_dir(&self.dir)?;
        }
        w.pos += need;
        Ok(at)
    }

    /// The entries in `bounds` that the log holds, in order.
    pub(crate) fn read(&self, bounds: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, WalError> {
        // Each wanted entry: decoded already (recent), or where to read it.
        let mut want = Vec::new();
        {
            let v = lock(&self.view);
            for loc in v.locs.range(bounds).map(|(_, l)| l) {
                if let Some(e) = v.recent(loc) {
                    want.push(Err(e));
                    continue;
                }
                let seg = v
                    .segs
                    .get(&loc.seq)
                    .ok_or(WalError::Missing { seq: loc.seq })?;
                want.push(Ok((seg.file.clone(), *loc)));
            }
        }
        let mut out = Vec::with_capacity(want.len());
        let mut i = 0;
        let mut buf = Vec::new();
        while i < want.len() {
            let (file, first) = match &want[i] {
                Err(e) => {
                    out.push(e.clone());
                    i += 1;
                    continue;
                }
                Ok((file, first)) => (file.clone(), *first),
            };
            // One read for a run of records that lie back to back in one segment.
            let mut run = vec![first];
            let mut end = first.offset + u64::from(first.len);
            let mut j = i + 1;
            while let Some(Ok((_, loc))) = want.get(j) {
                if loc.seq != first.seq || loc.offset != end {
                    break;
                }
                end += u64::from(loc.len);
                run.push(*loc);
                j += 1;
            }
            buf.resize((end - first.offset) as usize, 0);
            file.read(first.offset, &mut buf)?;
            for loc in &run {
                let at = (loc.offset - first.offset) as usize;
                let rec = &buf[at..at + loc.len as usize];
                let corrupt = |reason| WalError::Corrupt {
                    seq: loc.seq,
                    offset: loc.offset,
                    reason,
                };
                let n = frame(rec).map_err(|_| corrupt("an appended record reads back wrong"))?;
                match decode(loc.seq, loc.offset, &rec[FRAME..FRAME + n])? {
                    Record::Entry(e) if e.log_id == loc.log_id => out.push(e),
                    _ => return Err(corrupt("the record is not the indexed entry")),
                }
            }
            i = j;
        }
        Ok(out)
    }

    /// The last entry's id, if any.
    pub(crate) fn last(&self) -> Option<LogId> {
        lock(&self.view)
            .locs
            .last_key_value()
            .map(|(_, l)| l.log_id)
    }

    /// The id of the entry at `index`, if the log holds it.
    pub(crate) fn log_id(&self, index: u64) -> Option<LogId> {
        lock(&self.view).locs.get(&index).map(|l| l.log_id)
    }

    /// The first gap between the purge point and the last entry, if any ([`View::first_hole`]).
    pub(crate) fn first_hole(&self, purged: Option<u64>) -> Option<(u64, u64)> {
        lock(&self.view).first_hole(purged)
    }

    /// The newest committed id recorded in the segments (or given at open).
    pub(crate) fn committed(&self) -> Option<LogId> {
        lock(&self.view).committed
    }

    /// Holds off writes while a purge is recorded.
    pub(crate) fn pause(&self) -> Paused<'_> {
        Paused {
            wal: self,
            w: lock(&self.writer),
        }
    }
}

/// Writes are held off while this lives (a purge records itself in `log.redb` meanwhile).
pub(crate) struct Paused<'a> {
    wal: &'a Wal,
    w: MutexGuard<'a, Writer>,
}

impl Paused<'_> {
    /// The first live segment.
    pub(crate) fn first_seq(&self) -> u64 {
        let v = lock(&self.wal.view);
        v.segs.keys().next().copied().unwrap_or(self.w.seq)
    }

    /// The first segment to keep once entries up to `index` are purged: every earlier one
    /// holds only purged entries. The segment being written is always kept.
    pub(crate) fn first_kept(&self, index: u64) -> u64 {
        let v = lock(&self.wal.view);
        for (seq, s) in &v.segs {
            if *seq == self.w.seq || s.max_index.is_some_and(|m| m > index) {
                return *seq;
            }
        }
        self.w.seq
    }

    /// Drops entries up to `index` and removes the segments below `keep_from` (call once the
    /// new first segment is durable in `log.redb`).
    pub(crate) fn purge(&mut self, index: u64, keep_from: u64) -> Result<(), WalError> {
        let removed: Vec<u64> = {
            let mut v = lock(&self.wal.view);
            v.purge(index);
            let gone: Vec<u64> = v.segs.range(..keep_from).map(|(s, _)| *s).collect();
            for s in &gone {
                v.segs.remove(s);
            }
            gone
        };
        for seq in &removed {
            self.wal.disk.remove(&segment_path(&self.wal.dir, *seq))?;
        }
        if !removed.is_empty() {
            self.wal.disk.sync_dir(&self.wal.dir)?;
        }
        Ok(())
    }
}

impl Writer {
    fn new(seq: u64, file: Arc<dyn StorageBackend>, pos: u64, cap: u64) -> Writer {
        Writer {
            seq,
            file,
            pos,
            cap,
            poisoned: false,
            buf: Vec::new(),
            unsynced: false,
            gen: 0,
        }
    }
}

#[cfg(test)]
mod tests;
