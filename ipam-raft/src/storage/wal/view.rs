//! What readers see of the log (where each live entry's record is), and how replaying the
//! records of a segment rebuilds it: the same steps an append, a truncate or a purge take.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::StorageBackend;

use super::record::{decode, Bad, Record, Scanner};
use super::WalError;
use crate::types::{Entry, LogId};

/// Bytes of recently appended entries kept decoded for readers, counted by their record
/// length. Small: replication reads the last few entries, and a decoded command takes several
/// times its encoded size (a 4 MiB cap cost ~30 MB of heap per node with 1,000-command
/// batch entries).
pub(super) const RECENT_BYTES: usize = 512 << 10;

/// Where an entry's record is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Loc {
    pub(super) log_id: LogId,
    pub(super) seq: u64,
    pub(super) offset: u64,
    pub(super) len: u32,
}

pub(super) struct Segment {
    pub(super) file: Arc<dyn StorageBackend>,
    /// Highest index of any entry record in it (live or truncated since).
    pub(super) max_index: Option<u64>,
}

/// The live entries and the open segments.
pub(super) struct View {
    pub(super) segs: BTreeMap<u64, Segment>,
    /// By index. openraft never leaves a hole, but its storage suite appends with one, and
    /// the redb store accepted that.
    pub(super) locs: BTreeMap<u64, Loc>,
    /// The newest committed id recorded.
    pub(super) committed: Option<LogId>,
    /// The newest appended entries, decoded, with their record lengths: the leader's
    /// replication reads what it just appended, and would otherwise read and decode it back
    /// from the segment. A subset of `locs`, kept so by `place`, `truncate` and `purge`.
    recent: BTreeMap<u64, (Entry, u32)>,
    recent_bytes: usize,
    /// [`RECENT_BYTES`]; tests lower it to make readers mix kept and read-back entries.
    pub(super) recent_cap: usize,
}

impl View {
    pub(super) fn empty() -> View {
        View {
            segs: BTreeMap::new(),
            locs: BTreeMap::new(),
            committed: None,
            recent: BTreeMap::new(),
            recent_bytes: 0,
            recent_cap: RECENT_BYTES,
        }
    }

    /// Keeps `entry`, just placed, for readers; the oldest kept ones go beyond
    /// [`RECENT_BYTES`].
    pub(super) fn remember(&mut self, entry: Entry, len: u32) {
        self.recent_bytes += len as usize;
        self.recent.insert(entry.log_id.index, (entry, len));
        while self.recent_bytes > self.recent_cap {
            let Some((_, (_, len))) = self.recent.pop_first() else {
                break;
            };
            self.recent_bytes -= len as usize;
        }
    }

    /// The entry at `loc`, if it is kept decoded.
    pub(super) fn recent(&self, loc: &Loc) -> Option<Entry> {
        self.recent
            .get(&loc.log_id.index)
            .filter(|(e, _)| e.log_id == loc.log_id)
            .map(|(e, _)| e.clone())
    }

    fn forget(&mut self, dropped: BTreeMap<u64, (Entry, u32)>) {
        self.recent_bytes -= dropped.values().map(|(_, l)| *l as usize).sum::<usize>();
    }

    /// Puts an entry at its index, dropping any at or after it (what an append after a
    /// truncate, or a leader's overwrite, means).
    pub(super) fn place(&mut self, loc: Loc) {
        self.truncate(loc.log_id.index);
        self.locs.insert(loc.log_id.index, loc);
    }

    pub(super) fn truncate(&mut self, from: u64) {
        drop(self.locs.split_off(&from));
        let dropped = self.recent.split_off(&from);
        self.forget(dropped);
    }

    /// Drops entries at or below `index`.
    pub(super) fn purge(&mut self, index: u64) {
        let (locs, recent) = match index.checked_add(1) {
            Some(next) => (self.locs.split_off(&next), self.recent.split_off(&next)),
            None => (BTreeMap::new(), BTreeMap::new()),
        };
        self.locs = locs;
        let dropped = std::mem::replace(&mut self.recent, recent);
        self.forget(dropped);
    }

    /// The first hole in the live entries, as (the index before it, the index after it): the
    /// entries run from `purged + 1` to the last without a gap. With nothing purged, where
    /// they start is not checked (openraft starts at 0; tests start at 1).
    pub(super) fn first_hole(&self, purged: Option<u64>) -> Option<(u64, u64)> {
        let mut keys = self
            .locs
            .keys()
            .copied()
            .filter(|&k| purged.is_none_or(|p| k > p));
        let mut before = match purged {
            Some(p) => p,
            None => keys.next()?,
        };
        for index in keys {
            if index != before + 1 {
                return Some((before, index));
            }
            before = index;
        }
        None
    }

    pub(super) fn note_max(&mut self, seq: u64, index: u64) {
        if let Some(s) = self.segs.get_mut(&seq) {
            s.max_index = Some(s.max_index.map_or(index, |m| m.max(index)));
        }
    }
}

/// Replays the records of segment `seq` from `start` into `view`; `end` is where they must end
/// (the next segment's `prev_end`), `None` for the last segment. Returns where they end.
pub(super) fn replay(
    seq: u64,
    file: &dyn StorageBackend,
    start: u64,
    end: Option<u64>,
    purged: Option<u64>,
    view: &mut View,
) -> Result<u64, WalError> {
    let mut sc = Scanner::new(file)?;
    let mut pos = start;
    loop {
        if end.is_some_and(|e| pos >= e) {
            break;
        }
        let corrupt = |reason| WalError::Corrupt {
            seq,
            offset: pos,
            reason,
        };
        let (body, n) = match sc.record(pos)? {
            Ok(r) => r,
            Err(_) if end.is_none() => break,
            Err(Bad::End) => return Err(corrupt("the records end before the next segment")),
            Err(Bad::Torn) => return Err(corrupt("bad record in a segment followed by another")),
        };
        match decode(seq, pos, body)? {
            Record::Header { .. } => return Err(corrupt("a header inside a segment")),
            Record::Entry(e) => {
                let index = e.log_id.index;
                view.note_max(seq, index);
                if purged.is_none_or(|p| index > p) {
                    let loc = Loc {
                        log_id: e.log_id,
                        seq,
                        offset: pos,
                        len: n as u32,
                    };
                    view.place(loc);
                } else {
                    // Purged itself, but still an overwrite: what followed it at higher
                    // indexes was cut when it was appended and must stay cut (an entry of
                    // an older term would otherwise come back after the purge point).
                    view.truncate(index);
                }
            }
            Record::Committed(c) => view.committed = view.committed.max(c),
            Record::Truncate(from) => view.truncate(from),
        }
        pos += n;
    }
    if end.is_some_and(|e| pos != e) {
        return Err(WalError::Corrupt {
            seq,
            offset: pos,
            reason: "the records run past the next segment's start",
        });
    }
    Ok(pos)
}
