//! The event log's storage across block boundaries: one `apply` that writes more events than a
//! block holds (a forced delete of 1,500 allocations), paging and histories across blocks,
//! pruning that cuts a block in two, and the integrity check after each step.

use crate::common;

use common::{allocate, ip, Db};
use ipam_core::events::BLOCK_EVENTS;
use ipam_core::{query, EventKind, Op, QueryError};

fn all(db: &Db) -> Vec<ipam_core::Event> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = query::events(&db.rtx(), after, None, 333).unwrap();
        out.extend(page.events);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

fn assert_consistent(db: &Db) {
    let problems = ipam_core::check::check(&db.state, &db.rtx()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn events_span_blocks_and_prune_inside_one() {
    let mut db = Db::mem();
    db.create("big", "10.0.0.0/20");
    for chunk in 0..3 {
        let ops: Vec<Op> = (0..500)
            .map(|i| allocate("big", &format!("o{}", chunk * 500 + i), None))
            .collect();
        db.batch(ops).expect("batch");
    }
    db.op(Op::DeletePool {
        pool: "big".into(),
        force: true,
    })
    .expect("force delete");
    assert_consistent(&db);
    // 1 created + 1,500 allocated + 1,500 released + 1 deleted; the delete's apply wrote
    // 1,501 events, more than one block holds.
    const { assert!(1_501 > BLOCK_EVENTS) };
    let events = all(&db);
    assert_eq!(events.len(), 3_002);
    assert!(events.iter().enumerate().all(|(i, e)| e.id == i as u64 + 1));
    assert_eq!(events[3_001].kind, EventKind::PoolDeleted);
    assert_eq!(db.state.last_event_id(), 3_002);
    // A page that starts inside the second block of the delete.
    let page = query::events(&db.rtx(), Some(2_600), None, 5).unwrap();
    assert_eq!(page.events[0].id, 2_601);
    assert_eq!(page.next, Some(2_605));

    let h = query::history(&db.rtx(), ip("10.0.0.2"), 10).unwrap();
    let kinds: Vec<EventKind> = h.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Released, EventKind::Allocated]);

    // Keep 1,000: the next apply prunes through the middle of a block.
    db.state.set_event_retention(1_000);
    db.create("small", "10.1.0.0/24");
    assert_consistent(&db);
    let events = all(&db);
    assert_eq!(events.len(), 1_000);
    assert_eq!(events[0].id, 2_004);
    assert_eq!(events[999].kind, EventKind::PoolCreated);
    assert!(matches!(
        query::events(&db.rtx(), Some(2_002), None, 10),
        Err(QueryError::HistoryTruncated { oldest: 2_004, .. })
    ));
    assert!(query::events(&db.rtx(), Some(2_003), None, 10).is_ok());
    // The pruned allocation of .2 left its history; its release (id 1,502) went too.
    assert!(query::history(&db.rtx(), ip("10.0.0.2"), 10)
        .unwrap()
        .is_empty());
    // A replica reopened from the tables agrees.
    db.reopen();
    assert_eq!(db.state.first_event_id(), 2_004);
    assert_eq!(db.state.last_event_id(), 3_003);
    assert_consistent(&db);
}

#[test]
fn a_prefix_pools_events_name_their_block() {
    let mut db = Db::mem();
    let spec = ipam_core::PoolSpecV3 {
        base: common::spec("mesh", "10.42.0.0/16"),
        settings: Default::default(),
        delegation_prefix_len: Some(24),
        parent: None,
    };
    db.op(Op::CreatePoolV3(Box::new(spec))).unwrap();
    db.op(allocate("mesh", "host-1", None)).unwrap();
    db.op(allocate("mesh", "host-2", None)).unwrap();
    db.op(Op::DeletePool {
        pool: "mesh".into(),
        force: true,
    })
    .unwrap();
    let seen: Vec<(EventKind, Option<String>, Option<String>)> = all(&db)
        .into_iter()
        .map(|e| (e.kind, e.owner, e.prefix.map(|p| p.to_string())))
        .collect();
    let block = |b: &str| Some(b.to_string());
    assert_eq!(
        seen,
        [
            (EventKind::PoolCreated, None, None),
            (EventKind::Allocated, block("host-1"), block("10.42.0.0/24")),
            (EventKind::Allocated, block("host-2"), block("10.42.1.0/24")),
            (EventKind::Released, block("host-1"), block("10.42.0.0/24")),
            (EventKind::Released, block("host-2"), block("10.42.1.0/24")),
            (EventKind::PoolDeleted, None, None),
        ]
    );
    assert_consistent(&db);
}
