//! Choosing the pool (`Op::AllocateAny`): the contract's order, exact scores, caps, frozen and
//! family filters, the errors, atomic batches and the indexes across a reopen.

use crate::common::{release, spec, Db};
use ipam_core::error::AllocateError;
use ipam_core::{
    Allocation, ErrorCode, Family, Labels, Op, OpError, OpOutput, PoolSettings, PoolSpecV2,
    PoolUpdate,
};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn any(owner: &str, selector: &[(&str, &str)], family: Option<Family>) -> Op {
    Op::AllocateAny {
        owner: owner.into(),
        selector: labels(selector),
        family,
        labels: Labels::new(),
        ttl_seconds: None,
    }
}

/// Creates a pool with labels, weight and cap (ppm).
fn pool(db: &mut Db, name: &str, cidr: &str, l: &[(&str, &str)], weight: u16, cap_ppm: u32) {
    let mut base = spec(name, cidr);
    base.labels = labels(l);
    let settings = PoolSettings {
        weight,
        max_utilization_ppm: cap_ppm,
        ..PoolSettings::default()
    };
    db.op(Op::CreatePoolV2(Box::new(PoolSpecV2 { base, settings })))
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

fn got(db: &mut Db, op: Op) -> (Allocation, bool) {
    match db.op(op.clone()) {
        Ok(OpOutput::AllocatedV2 {
            allocation,
            existing,
        }) => (allocation, existing),
        other => panic!("{op:?}: {other:?}"),
    }
}

fn code(db: &mut Db, op: Op) -> ErrorCode {
    db.op(op).expect_err("an error").code()
}

/// Fills `n` addresses of `pool` with owners `fill-{pool}-{i}`.
fn fill(db: &mut Db, pool: &str, n: usize) {
    for i in 0..n {
        db.alloc(pool, &format!("fill-{pool}-{i}"));
    }
}

#[test]
fn the_lower_score_wins_the_issues_example() {
    let mut db = Db::mem();
    // /25s: 126 allocatable minus the gateway = 125.
    pool(
        &mut db,
        "a",
        "10.0.0.0/25",
        &[("zone", "x")],
        100,
        1_000_000,
    );
    pool(
        &mut db,
        "b",
        "10.0.1.0/25",
        &[("zone", "x")],
        100,
        1_000_000,
    );
    fill(&mut db, "a", 60);
    fill(&mut db, "b", 30);
    let (a, existing) = got(&mut db, any("vm", &[("zone", "x")], None));
    assert_eq!((a.pool.as_str(), existing), ("b", false));
    // The same owner asking again gets the same address back (200).
    let (again, existing) = got(&mut db, any("vm", &[("zone", "x")], None));
    assert_eq!((again.ip, existing), (a.ip, true));
}

#[test]
fn weight_divides_the_score_and_ties_go_by_name() {
    let mut db = Db::mem();
    pool(
        &mut db,
        "light",
        "10.0.0.0/24",
        &[("k", "v")],
        100,
        1_000_000,
    );
    pool(
        &mut db,
        "heavy",
        "10.0.1.0/24",
        &[("k", "v")],
        200,
        1_000_000,
    );
    // Both empty: equal scores (0), ties by name.
    let (a, _) = got(&mut db, any("o1", &[("k", "v")], None));
    assert_eq!(a.pool, "heavy");
    // heavy 1/(253·200) > light 0: light.
    let (a, _) = got(&mut db, any("o2", &[("k", "v")], None));
    assert_eq!(a.pool, "light");
    // heavy 1/(253·200) vs light 1/(253·100): heavy.
    let (a, _) = got(&mut db, any("o3", &[("k", "v")], None));
    assert_eq!(a.pool, "heavy");
    // heavy 2/(253·200) = light 1/(253·100): tie → by name.
    let (a, _) = got(&mut db, any("o4", &[("k", "v")], None));
    assert_eq!(a.pool, "heavy");
}

#[test]
fn a_pool_at_its_cap_is_skipped_and_a_full_set_is_exhausted() {
    let mut db = Db::mem();
    // /29: 6 usable minus the gateway = 5; a cap of 0.6 allows 3.
    pool(
        &mut db,
        "small",
        "10.0.0.0/29",
        &[("t", "1")],
        1000,
        600_000,
    );
    pool(&mut db, "big", "10.0.1.0/29", &[("t", "1")], 1, 1_000_000);
    let mut per_pool = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..8 {
        let (a, _) = got(&mut db, any(&format!("o{i}"), &[("t", "1")], None));
        *per_pool.entry(a.pool).or_default() += 1;
    }
    assert_eq!(per_pool["small"], 3, "the cap binds selection");
    assert_eq!(per_pool["big"], 5);
    assert_eq!(
        code(&mut db, any("o9", &[("t", "1")], None)),
        ErrorCode::PoolExhausted
    );
    // An allocation naming the pool ignores the cap.
    db.alloc("small", "named");
}

#[test]
fn no_match_is_404_and_frozen_or_family_filter() {
    let mut db = Db::mem();
    pool(&mut db, "v4", "10.0.0.0/24", &[("z", "a")], 100, 1_000_000);
    pool(&mut db, "v6", "fd00::/64", &[("z", "a")], 100, 1_000_000);
    assert_eq!(
        code(&mut db, any("o", &[("z", "b")], None)),
        ErrorCode::NoMatchingPool
    );
    assert_eq!(
        code(&mut db, any("o", &[("z", "a"), ("y", "1")], None)),
        ErrorCode::NoMatchingPool
    );
    let (a, _) = got(&mut db, any("o6", &[("z", "a")], Some(Family::V6)));
    assert_eq!(a.pool, "v6");
    db.op(Op::UpdatePool {
        pool: "v6".into(),
        revision: None,
        update: Box::new(PoolUpdate {
            frozen: Some(true),
            ..PoolUpdate::default()
        }),
    })
    .unwrap();
    assert_eq!(
        code(&mut db, any("o7", &[("z", "a")], Some(Family::V6))),
        ErrorCode::PoolExhausted
    );
    // The holder still gets its address from a frozen pool (nothing new is taken).
    let (again, existing) = got(&mut db, any("o6", &[("z", "a")], Some(Family::V6)));
    assert_eq!((again.ip, existing), (a.ip, true));
    // An empty selector matches every pool.
    let (a, _) = got(&mut db, any("o8", &[], None));
    assert_eq!(a.pool, "v4");
    match db.op(any("o", &[("z", "b")], Some(Family::V4))) {
        Err(OpError::Allocate(AllocateError::NoMatchingPool { selector })) => {
            assert_eq!(selector, "z=b,family=ipv4")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_owners_held_address_wins_lowest_pool_name_first() {
    let mut db = Db::mem();
    pool(&mut db, "p1", "10.0.0.0/24", &[("z", "a")], 100, 1_000_000);
    pool(&mut db, "p2", "10.0.1.0/24", &[("z", "a")], 100, 1_000_000);
    fill(&mut db, "p1", 10);
    let in_p2 = db.alloc("p2", "vm");
    let (a, existing) = got(&mut db, any("vm", &[("z", "a")], None));
    assert_eq!((a.ip, existing), (in_p2, true), "held beats a lower score");
    let in_p1 = db.alloc("p1", "vm");
    let (a, _) = got(&mut db, any("vm", &[("z", "a")], None));
    assert_eq!(a.ip, in_p1, "several held: the lowest pool name");
}

#[test]
fn the_owners_cooling_address_comes_back() {
    let mut db = Db::mem();
    pool(&mut db, "p1", "10.0.0.0/24", &[("z", "a")], 100, 1_000_000);
    pool(&mut db, "p2", "10.0.1.0/24", &[("z", "a")], 100, 1_000_000);
    db.op(Op::UpdatePool {
        pool: "p2".into(),
        revision: None,
        update: Box::new(PoolUpdate {
            reuse_cooldown_seconds: Some(60),
            ..PoolUpdate::default()
        }),
    })
    .unwrap();
    fill(&mut db, "p2", 20);
    let ip = db.alloc("p2", "vm");
    db.op(release("p2", &ip.to_string(), None)).unwrap();
    let (a, existing) = got(&mut db, any("vm", &[("z", "a")], None));
    assert_eq!((a.pool.as_str(), a.ip, existing), ("p2", ip, false));
    // After the cooldown the owner is forgotten there: the score decides again.
    db.op(release("p2", &ip.to_string(), None)).unwrap();
    db.advance(61_000);
    db.apply(&[]);
    let (a, _) = got(&mut db, any("vm", &[("z", "a")], None));
    assert_eq!(a.pool, "p1");
}

#[test]
fn a_failed_batch_undoes_selection_and_the_indexes() {
    let mut db = Db::mem();
    pool(&mut db, "p1", "10.0.0.0/24", &[("z", "a")], 100, 1_000_000);
    let ip = db.alloc("p1", "vm");
    let before = db.digest();
    let err = db
        .batch(vec![
            release("p1", &ip.to_string(), None),
            any("vm2", &[("z", "a")], None),
            any("x", &[("z", "nope")], None),
        ])
        .expect_err("the last op fails");
    assert_eq!(err.index, 2);
    assert_eq!(db.digest(), before);
    // The index still knows vm holds its address.
    let (a, existing) = got(&mut db, any("vm", &[("z", "a")], None));
    assert_eq!((a.ip, existing), (ip, true));
    // Labels changed in a failed batch are restored in the index.
    let relabel = Op::UpdatePool {
        pool: "p1".into(),
        revision: None,
        update: Box::new(PoolUpdate {
            labels: Some(labels(&[("z", "b")])),
            ..PoolUpdate::default()
        }),
    };
    db.batch(vec![relabel, any("x", &[("z", "nope")], None)])
        .expect_err("fails");
    let (a, _) = got(&mut db, any("vm3", &[("z", "a")], None));
    assert_eq!(a.pool, "p1");
}

#[test]
fn selection_after_reopen_matches_selection_without_one() {
    let mut dbs = [Db::mem(), Db::mem()];
    for db in &mut dbs {
        for i in 0..5u16 {
            let zone = if i % 2 == 0 { "a" } else { "b" };
            let (name, cidr) = (format!("p{i}"), format!("10.0.{i}.0/24"));
            pool(db, &name, &cidr, &[("zone", zone)], 100 + i, 1_000_000);
        }
        for i in 0..7 {
            got(db, any(&format!("o{i}"), &[("zone", "a")], None));
        }
    }
    let in_p0 = |db: &Db| {
        let rtx = db.rtx();
        let page = ipam_core::query::allocations(&rtx, "p0", None, None, 1000).unwrap();
        page.allocations.len()
    };
    let before = in_p0(&dbs[0]);
    assert!(before > 0);
    // The second replica restarts: its indexes are rebuilt from the tables.
    dbs[1].reopen();
    let relabel = Op::UpdatePool {
        pool: "p0".into(),
        revision: None,
        update: Box::new(PoolUpdate {
            labels: Some(Labels::new()),
            ..PoolUpdate::default()
        }),
    };
    for (step, op) in [any("o3", &[("zone", "a")], None), relabel]
        .into_iter()
        .chain((0..10).map(|i| any(&format!("n{i}"), &[("zone", "a")], None)))
        .enumerate()
    {
        let [a, b] = &mut dbs;
        assert_eq!(a.op(op.clone()), b.op(op.clone()), "step {step}");
        if step == 4 {
            b.reopen();
        }
    }
    assert_eq!(dbs[0].digest(), dbs[1].digest());
    assert_eq!(
        in_p0(&dbs[0]),
        before,
        "nothing chosen from the relabelled pool"
    );
}

#[test]
fn a_deleted_pool_is_never_chosen_and_its_owners_are_forgotten() {
    let mut db = Db::mem();
    pool(&mut db, "p1", "10.0.0.0/24", &[("z", "a")], 100, 1_000_000);
    pool(&mut db, "p2", "10.0.1.0/24", &[("z", "a")], 100, 1_000_000);
    db.alloc("p1", "vm");
    db.op(Op::DeletePool {
        pool: "p1".into(),
        force: true,
    })
    .unwrap();
    let (a, existing) = got(&mut db, any("vm", &[("z", "a")], None));
    assert_eq!((a.pool.as_str(), existing), ("p2", false));
}
