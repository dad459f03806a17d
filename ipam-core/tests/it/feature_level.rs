//! The replicated feature level: the event log starts at the entry that raised the level to
//! 2, on every replica, so a replica that replays entries written before it (by release
//! 0.1.0, which kept no events) ends with the same state — events, ids and digest — as one
//! that applied them as they came.

use crate::common::{allocate, release, spec, Db};
use ipam_core::feature::FEATURE_LEVEL;
use ipam_core::{query, BatchError, Command, Op, OpError, OpOutput};

/// Events as (id, kind, owner), oldest first.
fn events(db: &Db) -> Vec<(u64, String, Option<String>)> {
    query::events(&db.rtx(), None, None, 1_000)
        .expect("events")
        .events
        .into_iter()
        .map(|e| (e.id, format!("{:?}", e.kind), e.owner))
        .collect()
}

/// A log as release 0.1.0 wrote it, then the entries of an upgraded leader.
fn log() -> Vec<Vec<Command>> {
    let op = |op: Op| Command::Op(op);
    vec![
        vec![op(Op::CreatePool(spec("p", "10.0.0.0/24")))],
        vec![op(allocate("p", "a", None)), op(allocate("p", "b", None))],
        vec![op(release("p", "10.0.0.2", None))],
        // The upgraded leader's first entry raises the level before its own commands.
        vec![
            op(Op::SetFeatureLevel(FEATURE_LEVEL)),
            op(allocate("p", "c", None)),
        ],
        vec![op(release("p", "10.0.0.3", None))],
    ]
}

#[test]
fn events_start_at_the_entry_that_raised_the_level() {
    let mut db = Db::mem_at_level_1();
    assert_eq!(db.state.feature_level(), 1);
    let log = log();
    for entry in &log[..3] {
        db.apply(entry);
    }
    assert_eq!(events(&db), [], "no events below level 2");
    for entry in &log[3..] {
        db.apply(entry);
    }
    assert_eq!(db.state.feature_level(), FEATURE_LEVEL);
    assert_eq!(
        events(&db),
        [
            (1, "Allocated".to_string(), Some("c".to_string())),
            (2, "Released".to_string(), Some("b".to_string())),
        ]
    );

    // A replica that replays the whole log from nothing, and one that reopens its files
    // between entries, end equal.
    let mut replay = Db::mem_at_level_1();
    for (i, entry) in log.iter().enumerate() {
        replay.apply(entry);
        if i == 2 {
            replay.reopen();
            assert_eq!(replay.state.feature_level(), 1);
        }
    }
    replay.reopen();
    assert_eq!(replay.state.feature_level(), FEATURE_LEVEL, "persisted");
    assert_eq!(events(&replay), events(&db));
    assert_eq!(replay.digest(), db.digest());
}

#[test]
fn the_level_never_goes_down_and_is_not_a_batch_op() {
    let mut db = Db::mem();
    assert_eq!(db.state.feature_level(), FEATURE_LEVEL);
    assert_eq!(
        db.op(Op::SetFeatureLevel(1)),
        Ok(OpOutput::FeatureLevel(FEATURE_LEVEL))
    );
    assert_eq!(db.state.feature_level(), FEATURE_LEVEL);
    assert!(matches!(
        db.op(Op::SetFeatureLevel(0)),
        Err(OpError::Input(_))
    ));
    let digest = db.digest();
    assert!(matches!(
        db.batch(vec![Op::SetFeatureLevel(FEATURE_LEVEL)]),
        Err(BatchError { index: 0, .. })
    ));
    assert_eq!(db.digest(), digest, "a refused op changes nothing");
}
