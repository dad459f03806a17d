use std::ops::Bound;

use super::record::Bad;
use super::*;
use crate::types::Entry;

fn id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(openraft::CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: id(term, index),
        payload: openraft::EntryPayload::Blank,
    }
}

fn entries(term: u64, range: std::ops::Range<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

const ALL: (Bound<u64>, Bound<u64>) = (Bound::Unbounded, Bound::Unbounded);

fn ids(wal: &Wal) -> Vec<(u64, u64)> {
    wal.read(ALL)
        .expect("read")
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
    disk: Disk,
}

fn dir() -> Dir {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("wal");
    std::fs::create_dir(&path).expect("mkdir");
    Dir {
        _tmp: tmp,
        path,
        disk: Disk::default(),
    }
}

impl Dir {
    fn create(&self, segment_bytes: u64) -> Wal {
        Wal::create(&self.path, &self.disk, segment_bytes, 0).expect("create")
    }
    fn open(&self, segment_bytes: u64, first: u64, purged: Option<u64>) -> Result<Wal, WalError> {
        Wal::open(&self.path, &self.disk, segment_bytes, first, purged, None)
    }
    fn segments(&self) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(&self.path)
            .expect("ls")
            .map(|e| {
                let name = e.expect("entry").file_name();
                let name = name.to_string_lossy();
                name.trim_end_matches(".seg").parse().expect("number")
            })
            .collect();
        v.sort_unstable();
        v
    }
    fn poke(&self, seq: u64, offset: u64, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_path(&self.path, seq))
            .expect("open");
        std::os::unix::fs::FileExt::write_all_at(&f, bytes, offset).expect("write");
    }
}

#[test]
fn a_record_reads_back_and_a_flipped_bit_or_a_short_read_is_torn() {
    let mut buf = Vec::new();
    let e = entry(3, 7);
    let n = put(&mut buf, &RecordRef::Entry(&e)).expect("put") as usize;
    assert_eq!(n, buf.len());
    let body = frame(&buf).expect("frame");
    match decode(0, 0, &buf[FRAME..FRAME + body]).expect("decode") {
        Record::Entry(got) => assert_eq!(got.log_id, e.log_id),
        _ => panic!("not an entry"),
    }
    for at in 0..buf.len() {
        let mut bad = buf.clone();
        bad[at] ^= 0x10;
        assert!(frame(&bad).is_err(), "flip at {at} went unnoticed");
    }
    assert_eq!(frame(&buf[..buf.len() - 1]), Err(Bad::Torn));
    assert_eq!(frame(&[0; 16]), Err(Bad::End));
}

#[test]
fn entries_survive_a_reopen_and_the_reopen_starts_a_segment() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    wal.append(entries(1, 0..5), Some(Some(id(1, 3))))
        .expect("append");
    wal.append(entries(1, 5..8), None).expect("append");
    drop(wal);
    let wal = d.open(SEGMENT_BYTES, 0, None).expect("open");
    assert_eq!(ids(&wal), (0..8).map(|i| (1, i)).collect::<Vec<_>>());
    assert_eq!(wal.committed(), Some(id(1, 3)));
    assert_eq!(d.segments(), vec![0, 1]);
    wal.append(entries(1, 8..9), None).expect("append");
    drop(wal);
    let wal = d.open(SEGMENT_BYTES, 0, None).expect("open");
    assert_eq!(wal.last(), Some(id(1, 8)));
    assert_eq!(d.segments(), vec![0, 1, 2]);
}

#[test]
fn a_torn_tail_is_cut_off_and_what_followed_it_is_never_read_again() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    wal.append(entries(1, 0..3), None).expect("append");
    let end = lock(&wal.writer).pos;
    wal.append(entries(1, 3..5), None).expect("append");
    drop(wal);
    // Entry 3 torn, entry 4 after it intact: as a cut may leave a batch's pages.
    d.poke(0, end + FRAME as u64 + 1, &[0xff]);
    let wal = d.open(SEGMENT_BYTES, 0, None).expect("open");
    assert_eq!(wal.last(), Some(id(1, 2)));
    // Index 3 again, the same size: were it written where the torn one was, the old entry 4
    // would follow it on the next replay (a term going backwards).
    wal.append(entries(2, 3..4), None).expect("append");
    drop(wal);
    let wal = d.open(SEGMENT_BYTES, 0, None).expect("open");
    assert_eq!(ids(&wal), vec![(1, 0), (1, 1), (1, 2), (2, 3)]);
}

#[test]
fn a_bad_record_in_a_segment_followed_by_another_is_corruption() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    wal.append(entries(1, 0..3), None).expect("append");
    drop(wal);
    // Reopening starts segment 1: segment 0 is no longer the tail.
    drop(d.open(SEGMENT_BYTES, 0, None).expect("open"));
    d.poke(0, 40, &[0xff; 4]);
    match d.open(SEGMENT_BYTES, 0, None) {
        Err(WalError::Corrupt { seq: 0, .. }) => {}
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_full_segment_rolls_over_and_reads_span_segments() {
    let d = dir();
    let wal = d.create(256);
    for i in 0..40 {
        wal.append(entries(1, i..i + 1), None).expect("append");
    }
    // A batch larger than a segment gets one of its own size.
    wal.append(entries(1, 40..60), None).expect("append");
    assert!(d.segments().len() >= 4, "{:?}", d.segments());
    assert_eq!(ids(&wal), (0..60).map(|i| (1, i)).collect::<Vec<_>>());
    drop(wal);
    let wal = d.open(256, 0, None).expect("open");
    assert_eq!(ids(&wal), (0..60).map(|i| (1, i)).collect::<Vec<_>>());
    let some = wal
        .read((Bound::Included(17), Bound::Excluded(23)))
        .expect("read");
    assert_eq!(some.first().map(|e| e.log_id.index), Some(17));
    assert_eq!(some.len(), 6);
}

#[test]
fn truncate_then_append_replaces_the_tail_across_a_reopen() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    wal.append(entries(1, 0..6), None).expect("append");
    wal.truncate(3).expect("truncate");
    assert_eq!(wal.last(), Some(id(1, 2)));
    wal.append(entries(2, 3..5), None).expect("append");
    // A leader's overwrite without a truncate first replaces what follows too.
    wal.append(entries(3, 4..5), None).expect("append");
    let want = vec![(1, 0), (1, 1), (1, 2), (2, 3), (3, 4)];
    assert_eq!(ids(&wal), want);
    drop(wal);
    let wal = d.open(SEGMENT_BYTES, 0, None).expect("open");
    assert_eq!(ids(&wal), want);
}

#[test]
fn purge_removes_whole_segments_below_the_purged_index_only() {
    let d = dir();
    let wal = d.create(256);
    for i in 0..30 {
        wal.append(entries(1, i..i + 1), None).expect("append");
    }
    let before = d.segments();
    let keep = {
        let mut p = wal.pause();
        let keep = p.first_kept(20);
        p.purge(20, keep).expect("purge");
        keep
    };
    assert!(keep > 0);
    assert_eq!(d.segments().first(), Some(&keep));
    assert!(d.segments().len() < before.len());
    assert_eq!(ids(&wal), (21..30).map(|i| (1, i)).collect::<Vec<_>>());
    drop(wal);
    let wal = d.open(256, keep, Some(20)).expect("open");
    assert_eq!(ids(&wal), (21..30).map(|i| (1, i)).collect::<Vec<_>>());
    // A purge past the last entry leaves an empty log that continues after it.
    {
        let mut p = wal.pause();
        let keep = p.first_kept(40);
        p.purge(40, keep).expect("purge");
    }
    assert_eq!(wal.last(), None);
    wal.append(entries(2, 41..42), None).expect("append");
    assert_eq!(ids(&wal), vec![(2, 41)]);
}

#[test]
fn a_torn_header_of_the_last_segment_is_dropped_and_its_number_reused() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    wal.append(entries(1, 0..2), None).expect("append");
    drop(wal);
    let wal = d.open(SEGMENT_BYTES, 0, None).expect("open");
    drop(wal);
    d.poke(1, 0, &[0xff; 8]);
    let wal = d.open(SEGMENT_BYTES, 0, None).expect("open");
    assert_eq!(ids(&wal), vec![(1, 0), (1, 1)]);
    drop(wal);
    drop(d.open(SEGMENT_BYTES, 0, None).expect("open"));
    // A torn header anywhere but last is corruption; so is a missing first segment.
    d.poke(1, 0, &[0xff; 8]);
    assert!(matches!(
        d.open(SEGMENT_BYTES, 0, None),
        Err(WalError::Corrupt { seq: 1, .. })
    ));
    assert!(matches!(
        d.open(SEGMENT_BYTES, 7, None),
        Err(WalError::Missing { seq: 7 })
    ));
}

/// One step of the recent-entries model test.
#[derive(Clone, Debug)]
enum Step {
    /// Append `n` entries of `term` right after the last (or over the tail from `back`
    /// entries before the end: a new leader's overwrite).
    Append {
        back: u64,
        n: u64,
        term: u64,
    },
    Truncate {
        back: u64,
    },
    Purge {
        upto: u64,
    },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..3u64, 1..5u64, 1..4u64).prop_map(|(back, n, term)| Step::Append { back, n, term }),
        1 => (0..4u64).prop_map(|back| Step::Truncate { back }),
        1 => (0..30u64).prop_map(|upto| Step::Purge { upto }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Reads served from the decoded recent entries (of a tiny cap, so reads mix them with
    /// entries read back from the segments) always equal a plain model of the log, and a
    /// reopened log (nothing kept) reads the same.
    #[test]
    fn recent_entries_never_change_what_a_read_returns(steps in proptest::collection::vec(step(), 1..40)) {
        let d = dir();
        let wal = d.create(SEGMENT_BYTES);
        lock(&wal.view).recent_cap = 3 * 40;
        let mut model: Vec<(u64, u64)> = Vec::new(); // (term, index), contiguous
        let mut purged: Option<u64> = None;
        let mut last_term = 1;
        for s in steps {
            let next = model.last().map_or(purged.map_or(0, |p| p + 1), |&(_, i)| i + 1);
            match s {
                Step::Append { back, n, term } => {
                    let back = back.min(model.len() as u64);
                    let from = next - back;
                    let term = last_term.max(term);
                    last_term = term;
                    model.retain(|&(_, i)| i < from);
                    wal.append(entries(term, from..from + n), None).expect("append");
                    model.extend((from..from + n).map(|i| (term, i)));
                }
                Step::Truncate { back } => {
                    let back = back.min(model.len() as u64);
                    let from = next - back;
                    wal.truncate(from).expect("truncate");
                    model.retain(|&(_, i)| i < from);
                }
                Step::Purge { upto } => {
                    let Some(&(_, last)) = model.last() else { continue };
                    let upto = upto.min(last);
                    let mut paused = wal.pause();
                    let keep = paused.first_kept(upto);
                    paused.purge(upto, keep).expect("purge");
                    drop(paused);
                    model.retain(|&(_, i)| i > upto);
                    purged = Some(purged.map_or(upto, |p| p.max(upto)));
                }
            }
            proptest::prop_assert_eq!(ids(&wal), model.clone());
            // A range in the middle, too (a replication round's read).
            if let (Some(&(_, a)), Some(&(_, b))) = (model.first(), model.last()) {
                let mid = (Bound::Included(a + (b - a) / 2), Bound::Included(b));
                let got: Vec<(u64, u64)> = wal.read(mid).expect("read").iter()
                    .map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect();
                let want: Vec<(u64, u64)> = model.iter().copied()
                    .filter(|&(_, i)| i >= a + (b - a) / 2).collect();
                proptest::prop_assert_eq!(got, want);
            }
        }
        let first = lock(&wal.view).segs.keys().next().copied().unwrap_or(0);
        drop(wal);
        let reopened = d.open(SEGMENT_BYTES, first, purged).expect("open");
        proptest::prop_assert_eq!(ids(&reopened), model);
    }
}

/// Found by the model test above: an overwrite at an index the purge later covered must keep
/// cutting the entries it cut when it was appended, also when a reopen replays it.
#[test]
fn an_overwrite_below_the_purge_point_still_cuts_what_followed_it() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    wal.append(entries(1, 0..2), None).expect("append");
    wal.append(entries(2, 0..1), None).expect("overwrite");
    let mut paused = wal.pause();
    let keep = paused.first_kept(0);
    paused.purge(0, keep).expect("purge");
    drop(paused);
    assert_eq!(ids(&wal), vec![]);
    drop(wal);
    let reopened = d.open(SEGMENT_BYTES, 0, Some(0)).expect("open");
    assert_eq!(ids(&reopened), vec![], "entry 1 of term 1 came back");
}

#[test]
fn an_unsynced_append_is_read_at_once_and_durable_only_after_a_sync() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    let durable = wal.durable();
    wal.append(entries(1, 0..2), None).expect("append");
    assert_eq!(durable.borrow().last, Some(id(1, 1)));
    wal.append_unsynced(entries(1, 2..5), None).expect("append");
    assert_eq!(ids(&wal), (0..5).map(|i| (1, i)).collect::<Vec<_>>());
    assert!(wal.has_unsynced());
    assert_eq!(durable.borrow().last, Some(id(1, 1)), "not on disk yet");
    assert!(!durable.borrow().covers(2));
    wal.sync_written().expect("sync");
    assert!(!wal.has_unsynced());
    assert_eq!(durable.borrow().last, Some(id(1, 4)));
    // A synced append covers the unsynced ones written before it.
    wal.append_unsynced(entries(1, 5..6), None).expect("append");
    wal.append(entries(1, 6..7), None).expect("append");
    assert!(!wal.has_unsynced());
    assert_eq!(durable.borrow().last, Some(id(1, 6)));
}

#[test]
fn a_truncation_lowers_the_watermark_to_what_is_left() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    let durable = wal.durable();
    wal.append(entries(1, 0..3), None).expect("append");
    wal.append_unsynced(entries(1, 3..6), None).expect("append");
    wal.truncate(4).expect("truncate");
    // The marker's sync covered the unsynced entry 3 as well.
    assert_eq!(durable.borrow().last, Some(id(1, 3)));
    assert!(!wal.has_unsynced());
    wal.append(entries(2, 4..5), None).expect("append");
    assert_eq!(durable.borrow().last, Some(id(2, 4)));
}

#[test]
fn unsynced_appends_across_a_segment_roll_read_back_after_a_reopen() {
    let d = dir();
    // Room for the header and a few entries per segment.
    let wal = d.create(256);
    let durable = wal.durable();
    wal.append_unsynced(entries(1, 0..1), None).expect("append");
    assert!(wal.has_unsynced());
    // Too large for what is left: a roll, which syncs the first segment.
    wal.append_unsynced(entries(1, 1..20), None)
        .expect("append");
    assert!(d.segments().len() >= 2);
    wal.sync_written().expect("sync");
    assert_eq!(durable.borrow().last, Some(id(1, 19)));
    drop(wal);
    let wal = d.open(256, 0, None).expect("reopen");
    assert_eq!(ids(&wal).len(), 20);
    assert_eq!(wal.durable().borrow().last, Some(id(1, 19)));
}

#[test]
fn first_hole_finds_a_gap_after_the_purge_point_or_between_entries() {
    let d = dir();
    let wal = d.create(SEGMENT_BYTES);
    assert_eq!(wal.first_hole(None), None, "empty");
    wal.append(entries(1, 0..5), None).expect("append");
    assert_eq!(wal.first_hole(None), None);
    assert_eq!(wal.first_hole(Some(0)), None);
    // The entries must start right after the purge point.
    assert_eq!(wal.first_hole(Some(2)), None, "2 is purged, 3 and 4 follow");
    // An append past the end (what an install's append did before session 10).
    wal.append(entries(2, 10..12), None).expect("append");
    assert_eq!(wal.first_hole(None), Some((4, 10)));
    drop(wal);
    // The same on disk, seen by a replay with a purge point below the first entry kept.
    let wal = d.open(SEGMENT_BYTES, 0, Some(2)).expect("open");
    assert_eq!(wal.first_hole(Some(2)), Some((4, 10)));
    let wal2 = d.open(SEGMENT_BYTES, 0, Some(7)).expect("open");
    assert_eq!(wal2.first_hole(Some(7)), Some((7, 10)));
}
