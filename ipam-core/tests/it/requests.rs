//! Exactly-once in the state machine: a repeated request id or idempotency key is answered
//! with the recorded result and executes nothing; retention by log time and by count.

use crate::common::{allocate, release, Db};
use ipam_core::check::{check, Problem};
use ipam_core::requests::{KeyedRequest, RequestId, RequestLimits, REQUESTS, REQUEST_IDS};
use ipam_core::{Command, CommandResult, Op, OpOutput};
use redb::ReadableTableMetadata;

fn id(seq: u64) -> RequestId {
    RequestId {
        node: 1,
        incarnation: 3,
        seq,
    }
}

fn tagged(seq: u64, key: Option<(&str, u8)>, op: Op) -> Command {
    Command::Tagged {
        id: id(seq),
        key: key.map(|(k, fp)| KeyedRequest {
            key: k.to_string(),
            fingerprint: [fp; 32],
        }),
        command: Box::new(Command::Op(op)),
    }
}

fn one(db: &mut Db, c: Command) -> CommandResult {
    db.apply(&[c]).pop().expect("one result")
}

fn released_ip(r: &CommandResult) -> String {
    match r {
        CommandResult::Op(Ok(OpOutput::Released(a))) => a.ip.to_string(),
        other => panic!("not a release: {other:?}"),
    }
}

fn rows(db: &Db, def: ipam_core::tables::CoreTable) -> u64 {
    db.rtx().open_table(def).expect("table").len().expect("len")
}

#[test]
fn a_repeated_release_does_not_free_the_next_holders_address() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/24");
    let ip = db.alloc("p", "a");
    assert_eq!(ip.to_string(), "10.0.0.2");
    let rel = tagged(7, None, release("p", "10.0.0.2", None));
    let first = one(&mut db, rel.clone());
    assert_eq!(released_ip(&first), "10.0.0.2");
    // The address goes to the next holder; then the first release is applied again (defect 1:
    // a proposal resent after ForwardToLeader whose first copy also committed).
    assert_eq!(db.alloc("p", "b").to_string(), "10.0.0.2");
    let again = one(&mut db, rel);
    assert_eq!(again, first, "the recorded answer, not a second execution");
    let rtx = db.rtx();
    let holder = ipam_core::query::owner_allocation(&rtx, "p", "b").expect("query");
    assert_eq!(
        holder.map(|a| a.ip.to_string()).as_deref(),
        Some("10.0.0.2")
    );
    assert!(check(&db.state, &rtx).expect("check").is_empty());
}

#[test]
fn an_untagged_repeat_still_executes() {
    // Entries written before tags (release 0.1.0's log) keep their meaning.
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/24");
    db.alloc("p", "a");
    let rel = Command::Op(release("p", "10.0.0.2", None));
    assert!(matches!(
        one(&mut db, rel.clone()),
        CommandResult::Op(Ok(_))
    ));
    db.alloc("p", "b");
    assert!(matches!(one(&mut db, rel), CommandResult::Op(Ok(_))));
    assert_eq!(rows(&db, REQUESTS), 0);
}

#[test]
fn a_key_answers_its_request_and_refuses_another() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/24");
    let first = one(
        &mut db,
        tagged(1, Some(("k1", 1)), allocate("p", "a", None)),
    );
    assert!(matches!(first, CommandResult::Op(Ok(_))));
    // Same key, same fingerprint, another proposal (another node, a client retry).
    let retry = one(
        &mut db,
        tagged(2, Some(("k1", 1)), allocate("p", "a", None)),
    );
    assert_eq!(retry, first);
    // Same key, another request.
    let other = one(
        &mut db,
        tagged(3, Some(("k1", 2)), allocate("p", "c", None)),
    );
    assert_eq!(other, CommandResult::IdempotencyKeyReused);
    assert!(db.state.pool("p").is_some_and(|p| p.stats.allocated == 1));
    // The refusal is answered again, and the key keeps its first answer.
    let again = one(
        &mut db,
        tagged(3, Some(("k1", 2)), allocate("p", "c", None)),
    );
    assert_eq!(again, CommandResult::IdempotencyKeyReused);
    let retry = one(
        &mut db,
        tagged(4, Some(("k1", 1)), allocate("p", "a", None)),
    );
    assert_eq!(retry, first);
    assert!(check(&db.state, &db.rtx()).expect("check").is_empty());
}

#[test]
fn an_error_is_recorded_too() {
    let mut db = Db::mem();
    let missing = one(
        &mut db,
        tagged(1, Some(("k", 1)), allocate("nope", "a", None)),
    );
    assert!(matches!(missing, CommandResult::Op(Err(_))));
    db.create("nope", "10.0.0.0/24");
    // The state machine decided 404 for this key: the recorded answer stands.
    assert_eq!(
        one(
            &mut db,
            tagged(2, Some(("k", 1)), allocate("nope", "a", None))
        ),
        missing
    );
}

#[test]
fn records_expire_after_the_retention_and_beyond_the_cap() {
    let mut db = Db::mem();
    db.state.set_request_limits(RequestLimits {
        retention_ms: 60_000,
        max_entries: 3,
    });
    db.create("p", "10.0.0.0/24");
    for seq in 0..5 {
        let owner = format!("o{seq}");
        one(&mut db, tagged(seq, None, allocate("p", &owner, None)));
    }
    assert_eq!(rows(&db, REQUESTS), 3, "capped, oldest dropped first");
    assert_eq!(rows(&db, REQUEST_IDS), 3);
    // The oldest id is forgotten: repeating it executes again (a new owner shows it).
    let r = one(&mut db, tagged(0, None, allocate("p", "late", None)));
    assert!(matches!(
        r,
        CommandResult::Op(Ok(OpOutput::Allocated {
            existing: false,
            ..
        }))
    ));
    // A recent id is remembered.
    let r = one(&mut db, tagged(4, None, allocate("p", "other", None)));
    match r {
        CommandResult::Op(Ok(OpOutput::Allocated { allocation, .. })) => {
            assert_eq!(allocation.owner, "o4")
        }
        other => panic!("{other:?}"),
    }
    db.advance(60_000);
    one(&mut db, Command::Op(allocate("p", "tick", None)));
    assert_eq!(rows(&db, REQUESTS), 0, "all older than the retention");
    assert!(check(&db.state, &db.rtx()).expect("check").is_empty());
}

#[test]
fn a_repeat_inside_one_entry_executes_once() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/24");
    db.alloc("p", "a");
    let rel = tagged(9, None, release("p", "10.0.0.2", None));
    let alloc_b = Command::Op(allocate("p", "b", None));
    let results = db.apply(&[rel.clone(), alloc_b, rel]);
    assert_eq!(results[0], results[2]);
    assert!(db.state.pool("p").is_some_and(|p| p.stats.allocated == 1));
}

#[test]
fn the_check_reports_a_missing_index_row() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/24");
    one(&mut db, tagged(1, None, allocate("p", "a", None)));
    let txn = db.db.begin_write().expect("txn");
    txn.open_table(REQUEST_IDS)
        .expect("table")
        .remove(id(1).key().as_slice())
        .expect("remove");
    txn.commit().expect("commit");
    let problems = check(&db.state, &db.rtx()).expect("check");
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::RequestIndex { .. })),
        "{problems:?}"
    );
}

#[test]
fn keys_are_validated() {
    let bad = |k: &str| {
        ipam_core::validate::check_command(&tagged(1, Some((k, 0)), allocate("p", "a", None)))
            .is_err()
    };
    assert!(bad(""));
    assert!(bad("has space"));
    assert!(bad(&"x".repeat(129)));
    assert!(bad("é"));
    assert!(!bad(&"x".repeat(128)));
    assert!(!bad("a-B_9:~"));
}
