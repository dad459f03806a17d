//! The score-ordered selection index kept in step outside the model test's ops: lease expiry,
//! prefix pools and their child pools, IPv6 pools whose scores need more than 128 bits, and a
//! state reopened from the same tables (as after a restart or a snapshot install) making the
//! same choices as the live one.

use crate::common::{spec, Db};
use ipam_core::{
    Command, CommandResult, Family, GatewayChoice, Labels, Op, OpOutput, PoolSettings, PoolSpec,
    PoolSpecV2, PoolSpecV3, Stamp,
};
use redb::ReadableDatabase;

fn labelled(name: &str, cidr: &str, pairs: &[(&str, &str)], weight: u16) -> Op {
    let mut base = spec(name, cidr);
    base.labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Op::CreatePoolV2(Box::new(PoolSpecV2 {
        base,
        settings: PoolSettings {
            weight,
            ..PoolSettings::default()
        },
    }))
}

fn select(owner: &str, pairs: &[(&str, &str)], ttl: Option<u32>) -> Op {
    Op::AllocateAny {
        owner: owner.to_string(),
        selector: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        family: None,
        labels: Labels::new(),
        ttl_seconds: ttl,
    }
}

fn chosen(out: Result<OpOutput, ipam_core::OpError>) -> String {
    match out {
        Ok(OpOutput::AllocatedV2 { allocation, .. }) => allocation.pool,
        other => panic!("selection failed: {other:?}"),
    }
}

/// A mix of IPv4 /24s and IPv6 /64s (capacities near 2^64) over two zones, with weights.
fn mixed(db: &mut Db) {
    for i in 0..24u16 {
        let zone = if i % 2 == 0 { "a" } else { "b" };
        let weight = [1, 7, 100, 1000][usize::from(i % 4)];
        let op = if i % 3 == 0 {
            labelled(
                &format!("v6-{i:02}"),
                &format!("fd00:{i:x}::/64"),
                &[("zone", zone), ("site", "s1")],
                weight,
            )
        } else {
            labelled(
                &format!("v4-{i:02}"),
                &format!("10.{i}.0.0/24"),
                &[("zone", zone), ("site", "s1")],
                weight,
            )
        };
        assert!(matches!(db.op(op), Ok(OpOutput::PoolCreated(_))));
    }
}

#[test]
fn expired_leases_move_their_pool_back_in_the_order() {
    let mut db = Db::mem();
    db.op(labelled("a", "10.1.0.0/28", &[("zone", "z")], 1))
        .unwrap();
    db.op(labelled("b", "10.2.0.0/28", &[("zone", "z")], 1))
        .unwrap();
    // Four leases alternate between the two equal pools: a, b, a, b.
    let mut got = Vec::new();
    for i in 0..4 {
        got.push(chosen(db.op(select(
            &format!("l{i}"),
            &[("zone", "z")],
            Some(10),
        ))));
    }
    assert_eq!(got, ["a", "b", "a", "b"]);
    // Two permanent allocations in `b`: it is now the fuller one.
    for i in 0..2 {
        db.op(Op::AllocateV2 {
            pool: "b".into(),
            owner: format!("perm{i}"),
            ip: None,
            labels: Labels::new(),
            ttl_seconds: None,
        })
        .unwrap();
    }
    assert_eq!(chosen(db.op(select("x", &[("zone", "z")], None))), "a");
    db.state.check_select_index().unwrap();
    // The leases end (the next entry's stamp is past them): `a` has 1, `b` 2 — `a` wins.
    db.advance(11_000);
    assert_eq!(chosen(db.op(select("y", &[("zone", "z")], None))), "a");
    assert_eq!(db.state.pool("a").unwrap().stats.allocated, 2);
    assert_eq!(db.state.pool("b").unwrap().stats.allocated, 2);
    db.state.check_select_index().unwrap();
    // Equal again: the tie goes to the name.
    assert_eq!(chosen(db.op(select("z", &[("zone", "z")], None))), "a");
    assert_eq!(chosen(db.op(select("w", &[("zone", "z")], None))), "b");
    db.state.check_select_index().unwrap();
}

#[test]
fn prefix_pools_stay_out_and_child_pools_come_in() {
    let mut db = Db::mem();
    let mesh = Op::CreatePoolV3(Box::new(PoolSpecV3 {
        base: PoolSpec {
            name: "mesh".into(),
            cidr: "10.42.0.0/16".parse().unwrap(),
            gateway: GatewayChoice::Default,
            reserved: Vec::new(),
            labels: Labels::from([("zone".to_string(), "m".to_string())]),
            description: String::new(),
        },
        settings: PoolSettings::default(),
        delegation_prefix_len: Some(24),
        parent: None,
    }));
    db.op(mesh).unwrap();
    db.state.check_select_index().unwrap();
    // Only a prefix pool carries the pair: nothing matches.
    let err = db.op(select("o", &[("zone", "m")], None)).unwrap_err();
    assert_eq!(err.code(), ipam_core::ErrorCode::NoMatchingPool);
    // A block of the prefix pool, then a child pool on it carrying the pair.
    db.op(Op::AllocateV2 {
        pool: "mesh".into(),
        owner: "host-3".into(),
        ip: Some("10.42.3.0".parse().unwrap()),
        labels: Labels::new(),
        ttl_seconds: None,
    })
    .unwrap();
    let mut base = spec("host-3", "10.42.3.0/24");
    base.labels = Labels::from([("zone".to_string(), "m".to_string())]);
    db.op(Op::CreatePoolV3(Box::new(PoolSpecV3 {
        base,
        settings: PoolSettings::default(),
        delegation_prefix_len: None,
        parent: Some("mesh".into()),
    })))
    .unwrap();
    db.state.check_select_index().unwrap();
    assert_eq!(
        chosen(db.op(select("vm-1", &[("zone", "m")], None))),
        "host-3"
    );
    db.state.check_select_index().unwrap();
    db.reopen();
    db.state.check_select_index().unwrap();
    assert_eq!(
        chosen(db.op(select("vm-2", &[("zone", "m")], None))),
        "host-3"
    );
}

#[test]
fn wide_scores_order_exactly() {
    let mut db = Db::mem();
    // Two IPv6 /8 pools (capacity about 2^120) with weights 1000 and 999: every cross product
    // `allocated · capacity · weight` passes 2^128, so the index orders them by the 320-bit
    // comparison.
    for (name, cidr, weight) in [("big-1", "fc00::/8", 1000u16), ("big-2", "fd00::/8", 999)] {
        let mut base = spec(name, cidr);
        base.labels = Labels::from([("k".to_string(), "v".to_string())]);
        db.op(Op::CreatePoolV2(Box::new(PoolSpecV2 {
            base,
            settings: PoolSettings {
                weight,
                ..PoolSettings::default()
            },
        })))
        .unwrap();
    }
    let mut got = Vec::new();
    for i in 0..6 {
        got.push(chosen(db.op(select(&format!("o{i}"), &[("k", "v")], None))));
        db.state.check_select_index().unwrap();
    }
    // Empty pools tie (name); then 1/999 > 1/1000, 2/1000 > 1/999, 2/999 > 2/1000, ...
    assert_eq!(got, ["big-1", "big-2", "big-1", "big-2", "big-1", "big-2"]);
}

#[test]
fn reopened_state_makes_the_same_choices() {
    let mut db = Db::mem();
    mixed(&mut db);
    let selectors: [&[(&str, &str)]; 4] = [
        &[("zone", "a")],
        &[("zone", "b")],
        &[],
        &[("site", "s1"), ("zone", "a")],
    ];
    for i in 0..120 {
        chosen(db.op(select(&format!("warm-{i}"), selectors[i % 4], None)));
        if i % 7 == 0 {
            // Some releases, so pools move both ways in the order.
            let pool = db.state.pool(&format!("v4-{:02}", 1 + i % 20));
            if let Some(p) = pool {
                db.op(Op::ReleaseOwner {
                    pool: p.name,
                    owner: format!("warm-{}", i / 2),
                })
                .ok();
            }
        }
    }
    db.state.check_select_index().unwrap();
    let commands: Vec<Command> = (0..200)
        .map(|i| Command::Op(select(&format!("next-{i}"), selectors[i % 4], None)))
        .collect();
    // The live state decides, and the transaction is dropped uncommitted.
    let live = {
        let txn = db.db.begin_write().expect("write txn");
        let results = db
            .state
            .apply(&txn, Stamp(db.stamp), &commands)
            .expect("apply");
        drop(txn);
        results
    };
    // A state rebuilt from the tables (a restart, or a snapshot installed from them).
    db.reopen();
    db.state.check_select_index().unwrap();
    let reopened = db.apply(&commands);
    assert_eq!(live, reopened);
    assert!(reopened
        .iter()
        .all(|r| matches!(r, CommandResult::Op(Ok(OpOutput::AllocatedV2 { .. })))));
    db.state.check_select_index().unwrap();
    // And a second state loaded from a read transaction agrees with the one that applied.
    let mut loaded = ipam_core::State::load(&db.db.begin_read().unwrap()).unwrap();
    loaded.check_select_index().unwrap();
    for family in [Family::V4, Family::V6] {
        let op = Op::AllocateAny {
            owner: "probe".into(),
            selector: Labels::new(),
            family: Some(family),
            labels: Labels::new(),
            ttl_seconds: None,
        };
        let txn = db.db.begin_write().unwrap();
        let mut loaded = ipam_core::State::load(&db.db.begin_read().unwrap()).unwrap();
        let a = loaded
            .apply(&txn, Stamp(db.stamp), &[Command::Op(op.clone())])
            .unwrap();
        drop(txn);
        let b = db.apply(&[Command::Op(op)]);
        assert_eq!(a, b);
        // Undo the probe so the next family starts from the same tables.
        if let [CommandResult::Op(Ok(OpOutput::AllocatedV2 { allocation, .. }))] = b.as_slice() {
            db.op(Op::ReleaseOwner {
                pool: allocation.pool.clone(),
                owner: "probe".into(),
            })
            .unwrap();
        }
    }
}

/// `State::owner_may_hold` answers from memory what the allocate path would otherwise read
/// from the tables: never `false` for an owner that holds an address (no two owners here share
/// a hash), live or reopened.
#[test]
fn owner_may_hold_is_false_only_for_owners_holding_nothing() {
    let mut db = Db::mem();
    let allocate = |pool: &str, owner: &str| {
        Command::Op(Op::Allocate {
            pool: pool.into(),
            owner: owner.into(),
            ip: None,
            labels: Labels::new(),
        })
    };
    db.apply(&[
        Command::Op(Op::CreatePool(spec("p", "10.0.0.0/24"))),
        Command::Op(Op::CreatePool(spec("q", "10.0.1.0/24"))),
        allocate("p", "a"),
        allocate("q", "b"),
    ]);
    let expect = |state: &ipam_core::State| {
        assert!(state.owner_may_hold("p", "a"));
        assert!(state.owner_may_hold("q", "b"));
        assert!(!state.owner_may_hold("p", "b"), "b holds nothing in p");
        assert!(!state.owner_may_hold("q", "a"), "a holds nothing in q");
        assert!(!state.owner_may_hold("r", "a"), "no pool r");
    };
    expect(&db.state);
    db.reopen();
    expect(&db.state);
    db.apply(&[Command::Op(Op::ReleaseOwner {
        pool: "p".into(),
        owner: "a".into(),
    })]);
    assert!(!db.state.owner_may_hold("p", "a"), "released, no cooldown");
    assert!(db.state.owner_may_hold("q", "b"));
}
