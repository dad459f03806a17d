//! The integrity check: a consistent state has no problems; each kind of damage to the
//! tables or the in-memory index is found and named; reloading repairs the index.

use crate::common;

use common::{allocate, release, Db};
use ipam_core::check::{check, Problem};
use ipam_core::tables::{self, allocation_key, owner_key};

fn populated() -> Db {
    let mut db = Db::mem();
    db.create("a", "10.0.0.0/24");
    db.create("b", "fd00::/64");
    for owner in ["x", "y", "z"] {
        db.alloc("a", owner);
        db.alloc("b", owner);
    }
    db.op(release("a", "10.0.0.3", None)).expect("release");
    db.op(allocate("a", "w", Some("10.0.0.77")))
        .expect("allocate");
    db
}

fn problems(db: &Db) -> Vec<Problem> {
    check(&db.state, &db.rtx()).expect("check")
}

#[test]
fn a_consistent_state_has_no_problems() {
    let db = populated();
    assert_eq!(problems(&db), vec![]);
    assert_eq!(problems(&Db::mem()), vec![]);
}

#[test]
fn a_corrupted_free_index_is_found_and_reloading_repairs_it() {
    let mut db = populated();
    assert!(db.state.corrupt_free_index_for_tests("a"));
    let found = problems(&db);
    assert_eq!(
        found,
        vec![Problem::FreeIndexMismatch {
            pool: "a".into(),
            memory_free: "249".into(),
            expected_free: "250".into(),
        }]
    );
    assert!(found[0].repaired_by_reload());
    let rtx = db.rtx();
    db.state.reload_free_indexes(&rtx).expect("reload");
    drop(rtx);
    assert_eq!(problems(&db), vec![]);
    // The repaired index hands out the address the corruption hid.
    assert_eq!(db.alloc("a", "after"), common::ip("10.0.0.3"));
}

#[test]
fn damaged_tables_are_named() {
    let mut db = populated();
    // Remove x's owner row in pool a and the allocation row of 10.0.0.4 (z), leaving
    // z's owner row dangling and the counter one too high.
    let id = db.state.pool("a").expect("pool a").id;
    let txn = db.db.begin_write().expect("write");
    {
        let mut owners = txn.open_table(tables::OWNERS).expect("owners");
        owners
            .remove(owner_key(id, "x").as_slice())
            .expect("remove");
        let mut allocations = txn.open_table(tables::ALLOCATIONS).expect("allocations");
        let pos = u128::from(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 4)));
        assert!(allocations
            .remove(allocation_key(id, pos).as_slice())
            .expect("remove")
            .is_some());
    }
    txn.commit().expect("commit");
    let kinds: Vec<&str> = problems(&db).iter().map(Problem::kind).collect();
    assert_eq!(
        kinds,
        vec![
            "owner_index_missing",
            "owner_index_stale",
            "counter_mismatch",
            "free_index_mismatch"
        ],
        "{:?}",
        problems(&db)
    );
    // Reloading cannot repair tables that disagree with each other.
    let rtx = db.rtx();
    assert!(db.state.reload_free_indexes(&rtx).is_err());
    // and leaves the old index in place.
    drop(rtx);
    assert_eq!(problems(&db).len(), 4);
}

#[test]
fn problems_name_their_kind_and_say_what_is_wrong() {
    let p = Problem::CounterMismatch {
        pool: "a".into(),
        recorded: "3".into(),
        rows: "2".into(),
    };
    assert_eq!(p.kind(), "counter_mismatch");
    assert!(!p.repaired_by_reload());
    assert_eq!(p.to_string(), "pool a counts 3 allocations; its rows are 2");
}

#[test]
fn a_pool_with_added_ranges_checks_clean_and_a_lost_range_row_is_named() {
    let mut db = Db::mem();
    db.create("a", "10.0.0.0/30");
    db.op(ipam_core::Op::AddRange {
        pool: "a".into(),
        cidr: "10.0.1.0/24".parse().expect("cidr"),
        gateway: ipam_core::GatewayChoice::None,
    })
    .expect("add range");
    // /30 with a gateway: one address in the first range, the next from the added one.
    let first = db.alloc("a", "x");
    let second = db.alloc("a", "y");
    assert!(first.to_string().starts_with("10.0.0."), "{first}");
    assert!(second.to_string().starts_with("10.0.1."), "{second}");
    db.op(allocate("a", "z", Some("10.0.1.200")))
        .expect("allocate");
    assert_eq!(problems(&db), vec![]);

    let txn = db.db.begin_write().expect("write");
    {
        let mut ranges = txn.open_table(tables::RANGES).expect("ranges");
        let pos = u128::from(u32::from(std::net::Ipv4Addr::new(10, 0, 1, 0)));
        assert!(ranges
            .remove(tables::range_key(4, pos).as_slice())
            .expect("remove")
            .is_some());
    }
    txn.commit().expect("commit");
    let found = problems(&db);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind(), "index_mismatch");
    assert!(found[0].to_string().contains("10.0.1.0/24"), "{}", found[0]);
}
