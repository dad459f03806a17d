//! `State::apply` and the queries, one rule at a time.

use crate::common::{allocate, ip, release, spec, spec_with, Db};
use ipam_core::command::{Command, CommandResult, Op, OpOutput};
use ipam_core::{
    query, AllocateError, BatchError, CreatePoolError, DeletePoolError, ErrorCode, GatewayChoice,
    InputError, Labels, OpError, QueryError, ReleaseError, Stamp, State, StorageError,
    Unallocatable,
};
use redb::{ReadableDatabase, ReadableTable};

fn capacity(db: &Db, name: &str) -> u128 {
    query::pool(&db.rtx(), name).unwrap().stats.capacity
}

fn alloc_err(db: &mut Db, op: Op) -> AllocateError {
    match db.op(op) {
        Err(OpError::Allocate(e)) => e,
        other => panic!("{other:?}"),
    }
}

fn release_err(db: &mut Db, op: Op) -> ReleaseError {
    match db.op(op) {
        Err(OpError::Release(e)) => e,
        other => panic!("{other:?}"),
    }
}

fn create_err(db: &mut Db, spec: ipam_core::PoolSpec) -> CreatePoolError {
    match db.op(Op::CreatePool(spec)) {
        Err(OpError::CreatePool(e)) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn ipv4_capacity_and_default_gateway() {
    let mut db = Db::mem();
    let p = db.create("p24", "10.0.0.0/24");
    assert_eq!(p.gateway, Some(ip("10.0.0.1")));
    assert_eq!(p.stats.capacity, 253);
    assert_eq!(p.created_at, Stamp(db.stamp));
    let p = db.create("p30", "10.0.1.0/30");
    assert_eq!(p.gateway, Some(ip("10.0.1.1")));
    assert_eq!(p.stats.capacity, 1);
    assert_eq!(db.alloc("p30", "a"), ip("10.0.1.2"));
    let p = db.create("p31", "10.0.2.0/31");
    assert_eq!(p.gateway, None);
    assert_eq!(p.stats.capacity, 2);
    assert_eq!(db.alloc("p31", "a"), ip("10.0.2.0"));
    assert_eq!(db.alloc("p31", "b"), ip("10.0.2.1"));
    let p = db.create("p32", "10.0.3.7/32");
    assert_eq!(p.gateway, None);
    assert_eq!(p.stats.capacity, 1);
    assert_eq!(db.alloc("p32", "a"), ip("10.0.3.7"));
    let mut db = Db::mem();
    let p = db.create("all", "0.0.0.0/0");
    assert_eq!(
        p.stats.capacity,
        (1u128 << 32) - 3,
        "network, broadcast, gateway"
    );
    assert_eq!(db.alloc("all", "a"), ip("0.0.0.2"));
}

#[test]
fn no_gateway_and_explicit_gateway() {
    let mut db = Db::mem();
    let p = db
        .op(Op::CreatePool(spec_with(
            "none",
            "10.0.0.0/29",
            GatewayChoice::None,
            &[],
        )))
        .unwrap();
    let OpOutput::PoolCreated(p) = p else {
        panic!()
    };
    assert_eq!(p.gateway, None);
    assert_eq!(p.stats.capacity, 6);
    assert_eq!(db.alloc("none", "a"), ip("10.0.0.1"));
    db.op(Op::CreatePool(spec_with(
        "gw",
        "10.0.1.0/29",
        GatewayChoice::Addr(ip("10.0.1.6")),
        &[],
    )))
    .unwrap();
    assert_eq!(capacity(&db, "gw"), 5);
    assert_eq!(
        alloc_err(&mut db, allocate("gw", "a", Some("10.0.1.6"))),
        AllocateError::NotAllocatable {
            pool: "gw".into(),
            ip: ip("10.0.1.6"),
            reason: Unallocatable::Gateway
        }
    );
    // /31 with a gateway: the other address is the only one left.
    db.op(Op::CreatePool(spec_with(
        "p31",
        "10.0.2.0/31",
        GatewayChoice::Addr(ip("10.0.2.0")),
        &[],
    )))
    .unwrap();
    assert_eq!(capacity(&db, "p31"), 1);
    assert_eq!(db.alloc("p31", "a"), ip("10.0.2.1"));
}

#[test]
fn ipv6_capacities() {
    let mut db = Db::mem();
    let p = db.create("v64", "fd00::/64");
    assert_eq!(p.gateway, None, "IPv6 has no default gateway");
    assert_eq!(p.stats.capacity, (1u128 << 64) - 1);
    assert_eq!(db.alloc("v64", "a"), ip("fd00::1"));
    // The index of a 2^64 pool is one interval, whatever its size.
    for i in 0..100 {
        db.alloc("v64", &format!("n{i}"));
    }
    assert_eq!(db.state.free_intervals("v64"), Some(1));
    db.op(release("v64", "fd00::30", None)).unwrap();
    assert_eq!(db.state.free_intervals("v64"), Some(2));
    assert_eq!(
        alloc_err(&mut db, allocate("v64", "b", Some("fd00::"))),
        AllocateError::NotAllocatable {
            pool: "v64".into(),
            ip: ip("fd00::"),
            reason: Unallocatable::SubnetRouterAnycast
        }
    );
    db.create("v127", "fd01::/127");
    assert_eq!(capacity(&db, "v127"), 2);
    assert_eq!(db.alloc("v127", "a"), ip("fd01::"));
    assert_eq!(db.alloc("v127", "b"), ip("fd01::1"));
    db.create("v128", "fd02::5/128");
    assert_eq!(capacity(&db, "v128"), 1);
    assert_eq!(db.alloc("v128", "a"), ip("fd02::5"));
    db.create("v126", "fd03::/126");
    assert_eq!(capacity(&db, "v126"), 3);
    // The whole IPv6 space: 2^128 − 1 (anycast) fits a u128 exactly.
    let mut db = Db::mem();
    let p = db.create("all", "::/0");
    assert_eq!(p.stats.capacity, u128::MAX);
    assert_eq!(db.alloc("all", "a"), ip("::1"));
    let p = query::pool(&db.rtx(), "all").unwrap();
    assert_eq!(p.stats.free(), u128::MAX - 1);
}

#[test]
fn reserved_entries_never_allocated_and_not_double_counted() {
    let mut db = Db::mem();
    // .0 network, .1 gateway, .2-.9 and .8-.11 overlap, .10 inside too, .12/30 = .12-.15,
    // .15 broadcast? No: /24 broadcast is .255.
    db.op(Op::CreatePool(spec_with(
        "r",
        "10.0.0.0/24",
        GatewayChoice::Default,
        &[
            "10.0.0.2-10.0.0.9",
            "10.0.0.8-10.0.0.11",
            "10.0.0.10",
            "10.0.0.12/30",
            "10.0.0.1",
            "10.0.0.255",
        ],
    )))
    .unwrap();
    // Excluded: .0, .1, .2-.15 (14), .255 → 256 − 16 − 1 = 239.
    assert_eq!(capacity(&db, "r"), 239);
    assert_eq!(db.alloc("r", "a"), ip("10.0.0.16"));
    assert_eq!(
        alloc_err(&mut db, allocate("r", "b", Some("10.0.0.13"))),
        AllocateError::NotAllocatable {
            pool: "r".into(),
            ip: ip("10.0.0.13"),
            reason: Unallocatable::Reserved
        }
    );
    // IPv6 reserved range next to the anycast address.
    db.op(Op::CreatePool(spec_with(
        "r6",
        "fd00::/120",
        GatewayChoice::Default,
        &["fd00::1-fd00::f", "fd00::10/124"],
    )))
    .unwrap();
    assert_eq!(capacity(&db, "r6"), 256 - 1 - 31);
    assert_eq!(db.alloc("r6", "a"), ip("fd00::20"));
}

#[test]
fn not_allocatable_reasons() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    for (addr, reason) in [
        ("10.0.0.0", Unallocatable::Network),
        ("10.0.0.7", Unallocatable::Broadcast),
        ("10.0.0.1", Unallocatable::Gateway),
        ("10.0.0.8", Unallocatable::OutsideCidr),
        ("fd00::1", Unallocatable::WrongFamily),
    ] {
        assert_eq!(
            alloc_err(&mut db, allocate("p", "o", Some(addr))),
            AllocateError::NotAllocatable {
                pool: "p".into(),
                ip: ip(addr),
                reason
            },
            "{addr}"
        );
    }
    // Needs-the-pool checks come before conflicts: an owner holding an address asking for the
    // broadcast address gets 400, not owner_conflict.
    db.alloc("p", "o");
    assert_eq!(
        alloc_err(&mut db, allocate("p", "o", Some("10.0.0.7"))).code(),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn allocate_rules() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29"); // allocatable .2-.6
    assert_eq!(db.alloc("p", "a"), ip("10.0.0.2"));
    // Idempotent by owner, with `existing` set.
    match db.op(allocate("p", "a", None)).unwrap() {
        OpOutput::Allocated {
            allocation,
            existing,
        } => {
            assert!(existing);
            assert_eq!(allocation.ip, ip("10.0.0.2"));
            assert_eq!(allocation.generation, 1);
            assert_eq!(allocation.owner, "a");
        }
        other => panic!("{other:?}"),
    }
    match db.op(allocate("p", "a", Some("10.0.0.2"))).unwrap() {
        OpOutput::Allocated { existing, .. } => assert!(existing),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        alloc_err(&mut db, allocate("p", "a", Some("10.0.0.5"))),
        AllocateError::OwnerConflict {
            pool: "p".into(),
            owner: "a".into(),
            held: ip("10.0.0.2"),
            requested: ip("10.0.0.5")
        }
    );
    match db.op(allocate("p", "b", Some("10.0.0.5"))).unwrap() {
        OpOutput::Allocated {
            allocation,
            existing,
        } => {
            assert!(!existing);
            assert_eq!(allocation.ip, ip("10.0.0.5"));
            assert_eq!(allocation.generation, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        alloc_err(&mut db, allocate("p", "c", Some("10.0.0.5"))),
        AllocateError::AddressInUse {
            pool: "p".into(),
            ip: ip("10.0.0.5"),
            owner: "b".into()
        }
    );
    // Lowest free skips the hole-punched address.
    assert_eq!(db.alloc("p", "c"), ip("10.0.0.3"));
    assert_eq!(db.alloc("p", "d"), ip("10.0.0.4"));
    assert_eq!(db.alloc("p", "e"), ip("10.0.0.6"));
    assert_eq!(
        alloc_err(&mut db, allocate("p", "f", None)),
        AllocateError::Exhausted { pool: "p".into() }
    );
    // An owner that already holds an address gets it back even from a full pool.
    assert!(db.op(allocate("p", "a", None)).is_ok());
    assert_eq!(
        alloc_err(&mut db, allocate("nope", "a", None)),
        AllocateError::PoolNotFound {
            pool: "nope".into()
        }
    );
    assert!(matches!(
        alloc_err(&mut db, allocate("p", "", None)),
        AllocateError::Input(InputError::InvalidOwner { len: 0 })
    ));
    // Input validation comes before existence.
    assert!(matches!(
        alloc_err(&mut db, allocate("Nope", "a", None)),
        AllocateError::Input(InputError::InvalidName { .. })
    ));
    let mut labels = Labels::new();
    labels.insert(String::new(), "v".into());
    assert!(matches!(
        alloc_err(
            &mut db,
            Op::Allocate {
                pool: "p".into(),
                owner: "z".into(),
                ip: None,
                labels
            }
        ),
        AllocateError::Input(InputError::InvalidLabelKey { .. })
    ));
    // Same owner string in another pool is another owner.
    db.create("q", "10.0.1.0/30");
    assert_eq!(db.alloc("q", "a"), ip("10.0.1.2"));
}

#[test]
fn allocation_keeps_labels_and_stamp() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    let mut labels = Labels::new();
    labels.insert("vm".into(), "42".into());
    db.op(Op::Allocate {
        pool: "p".into(),
        owner: "o".into(),
        ip: None,
        labels: labels.clone(),
    })
    .unwrap();
    let a = query::owner_allocation(&db.rtx(), "p", "o")
        .unwrap()
        .unwrap();
    assert_eq!(a.labels, labels);
    assert_eq!(a.allocated_at, Stamp(db.stamp));
    assert_eq!(a.pool, "p");
}

#[test]
fn release_rules() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    let a = db.alloc("p", "a");
    db.alloc("p", "b");
    assert_eq!(
        release_err(&mut db, release("p", "10.0.0.9", None)),
        ReleaseError::OutsidePool {
            pool: "p".into(),
            ip: ip("10.0.0.9"),
            cidr: "10.0.0.0/29".parse().unwrap()
        }
    );
    assert!(matches!(
        release_err(&mut db, release("p", "fd00::1", None)),
        ReleaseError::OutsidePool { .. }
    ));
    assert_eq!(
        release_err(&mut db, release("p", "10.0.0.5", None)),
        ReleaseError::NotAllocated {
            pool: "p".into(),
            ip: ip("10.0.0.5")
        }
    );
    // Fenced release of an unallocated address is also 404.
    assert_eq!(
        release_err(&mut db, release("p", "10.0.0.5", Some(1))).code(),
        ErrorCode::AllocationNotFound
    );
    // The gateway is inside the pool, so 404, not 400.
    assert_eq!(
        release_err(&mut db, release("p", "10.0.0.1", None)).code(),
        ErrorCode::AllocationNotFound
    );
    let before = db.digest();
    assert_eq!(
        release_err(&mut db, release("p", &a.to_string(), Some(7))),
        ReleaseError::GenerationMismatch {
            pool: "p".into(),
            ip: a,
            expected: 7,
            actual: 1
        }
    );
    assert_eq!(db.digest(), before, "a mismatch changes nothing");
    match db.op(release("p", &a.to_string(), Some(1))).unwrap() {
        OpOutput::Released(alloc) => {
            assert_eq!(alloc.ip, a);
            assert_eq!(alloc.owner, "a");
        }
        other => panic!("{other:?}"),
    }
    assert!(query::owner_allocation(&db.rtx(), "p", "a")
        .unwrap()
        .is_none());
    // The released address is the lowest free again; the new allocation has a new generation.
    match db.op(allocate("p", "c", None)).unwrap() {
        OpOutput::Allocated { allocation, .. } => {
            assert_eq!(allocation.ip, a);
            assert_eq!(allocation.generation, 3);
        }
        other => panic!("{other:?}"),
    }
    // A stale fence from the first allocation cannot free the new holder's address.
    assert!(matches!(
        release_err(&mut db, release("p", &a.to_string(), Some(1))),
        ReleaseError::GenerationMismatch { actual: 3, .. }
    ));
    assert_eq!(
        release_err(&mut db, release("zz", "10.0.0.2", None)),
        ReleaseError::PoolNotFound { pool: "zz".into() }
    );
    assert!(matches!(
        release_err(&mut db, release("Z", "10.0.0.2", None)),
        ReleaseError::Input(InputError::InvalidName { .. })
    ));
}

#[test]
fn release_owner_rules() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    let a = db.alloc("p", "a");
    let owner = |o: &str| Op::ReleaseOwner {
        pool: "p".into(),
        owner: o.into(),
    };
    assert_eq!(
        db.op(owner("nobody")).unwrap(),
        OpOutput::ReleasedOwner { released: vec![] }
    );
    assert_eq!(
        db.op(owner("a")).unwrap(),
        OpOutput::ReleasedOwner { released: vec![a] }
    );
    assert_eq!(
        db.op(owner("a")).unwrap(),
        OpOutput::ReleasedOwner { released: vec![] }
    );
    assert_eq!(query::pool(&db.rtx(), "p").unwrap().stats.allocated, 0);
    assert!(matches!(
        release_err(&mut db, owner("")),
        ReleaseError::Input(InputError::InvalidOwner { .. })
    ));
    assert!(matches!(
        release_err(
            &mut db,
            Op::ReleaseOwner {
                pool: "q".into(),
                owner: "a".into()
            }
        ),
        ReleaseError::PoolNotFound { .. }
    ));
}

#[test]
fn create_pool_conflicts() {
    let mut db = Db::mem();
    db.create("a", "10.0.0.0/24");
    assert_eq!(
        create_err(&mut db, spec("a", "10.1.0.0/24")),
        CreatePoolError::Exists { name: "a".into() }
    );
    for (cidr, existing) in [
        ("10.0.0.0/16", "10.0.0.0/24"),
        ("10.0.0.128/25", "10.0.0.0/24"),
        ("10.0.0.7/32", "10.0.0.0/24"),
        ("0.0.0.0/0", "10.0.0.0/24"),
    ] {
        assert_eq!(
            create_err(&mut db, spec("b", cidr)),
            CreatePoolError::Overlap {
                cidr: cidr.parse().unwrap(),
                existing: "a".into(),
                existing_cidr: existing.parse().unwrap()
            },
            "{cidr}"
        );
    }
    // Adjacent networks and the other family do not overlap.
    db.create("b", "10.0.1.0/24");
    db.create("c", "9.255.255.255/32");
    db.create("d", "::a00:0/120");
    // A pool between two others overlapping the later one is found via the successor.
    assert!(matches!(
        create_err(&mut db, spec("e", "10.0.0.0/23")),
        CreatePoolError::Overlap { .. }
    ));
    let err = create_err(&mut db, spec("e", "10.0.1.128/25"));
    assert_eq!(err.code(), ErrorCode::PoolOverlap);
    assert!(err.to_string().contains("\"b\""), "{err}");
    assert!(err.to_string().contains("10.0.1.0/24"), "{err}");
    // Invalid specs are 400 even when the name exists (validation first).
    assert!(matches!(
        create_err(
            &mut db,
            spec_with("a", "10.0.0.0/24", GatewayChoice::Addr(ip("10.9.9.9")), &[])
        ),
        CreatePoolError::InvalidGateway { .. }
    ));
    assert!(matches!(
        create_err(
            &mut db,
            spec_with("x", "10.5.0.0/24", GatewayChoice::Default, &["10.6.0.1"])
        ),
        CreatePoolError::ReservedOutsideCidr { .. }
    ));
    assert!(matches!(
        create_err(
            &mut db,
            spec_with("x", "10.5.0.0/30", GatewayChoice::Default, &["10.5.0.2"])
        ),
        CreatePoolError::NoAllocatableAddress { .. }
    ));
    let mut s = spec("x", "10.5.0.0/24");
    s.description = "d".repeat(2000);
    assert!(matches!(
        create_err(&mut db, s),
        CreatePoolError::Input(InputError::DescriptionTooLong { .. })
    ));
}

#[test]
fn delete_pool_rules() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.alloc("p", "a");
    db.alloc("p", "b");
    assert_eq!(
        db.op(Op::DeletePool {
            pool: "p".into(),
            force: false
        }),
        Err(OpError::DeletePool(DeletePoolError::NotEmpty {
            pool: "p".into(),
            allocated: 2
        }))
    );
    assert_eq!(
        db.op(Op::DeletePool {
            pool: "zz".into(),
            force: true
        }),
        Err(OpError::DeletePool(DeletePoolError::PoolNotFound {
            pool: "zz".into()
        }))
    );
    assert_eq!(
        db.op(Op::DeletePool {
            pool: "p".into(),
            force: true
        }),
        Ok(OpOutput::PoolDeleted { released: 2 })
    );
    assert!(matches!(
        query::pool(&db.rtx(), "p"),
        Err(QueryError::PoolNotFound { .. })
    ));
    assert!(query::owner_allocations(&db.rtx(), "a").unwrap().is_empty());
    assert_eq!(
        query::address(&db.rtx(), ip("10.0.0.2")).unwrap().pool,
        None
    );
    // Name and CIDR are free again; the new pool starts empty and has a new id.
    let p = db.create("p", "10.0.0.0/29");
    assert_eq!(p.id, 1);
    assert_eq!(db.alloc("p", "a"), ip("10.0.0.2"));
    // Deleting an empty pool needs no force; rows of other pools stay.
    db.create("q", "10.0.1.0/29");
    db.alloc("q", "a");
    assert_eq!(
        db.op(Op::DeletePool {
            pool: "p".into(),
            force: true
        }),
        Ok(OpOutput::PoolDeleted { released: 1 })
    );
    assert_eq!(
        query::owner_allocations(&db.rtx(), "a").unwrap()[0].pool,
        "q"
    );
    db.create("e", "10.0.2.0/29");
    assert_eq!(
        db.op(Op::DeletePool {
            pool: "e".into(),
            force: false
        }),
        Ok(OpOutput::PoolDeleted { released: 0 })
    );
    db.reopen();
    assert_eq!(db.state.pool_count(), 1);
}

#[test]
fn generation_is_cluster_wide_and_never_repeats() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.create("q", "fd00::/120");
    let mut seen = Vec::new();
    for i in 0..4 {
        let pool = if i % 2 == 0 { "p" } else { "q" };
        match db.op(allocate(pool, &format!("o{i}"), None)).unwrap() {
            OpOutput::Allocated { allocation, .. } => seen.push(allocation.generation),
            other => panic!("{other:?}"),
        }
    }
    db.op(Op::ReleaseOwner {
        pool: "p".into(),
        owner: "o0".into(),
    })
    .unwrap();
    db.op(Op::DeletePool {
        pool: "q".into(),
        force: true,
    })
    .unwrap();
    db.reopen();
    match db.op(allocate("p", "o9", None)).unwrap() {
        OpOutput::Allocated { allocation, .. } => seen.push(allocation.generation),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    assert_eq!(db.state.generation(), 5);
}

#[test]
fn batch_applies_in_order_all_or_nothing() {
    let mut db = Db::mem();
    let outs = db
        .batch(vec![
            Op::CreatePool(spec("p", "10.0.0.0/29")),
            allocate("p", "a", None),
            allocate("p", "b", None),
            release("p", "10.0.0.2", Some(1)),
            allocate("p", "c", None),
        ])
        .unwrap();
    assert_eq!(outs.len(), 5);
    match &outs[4] {
        OpOutput::Allocated { allocation, .. } => {
            assert_eq!(allocation.ip, ip("10.0.0.2"), "later ops see earlier ones");
            assert_eq!(allocation.generation, 3);
        }
        other => panic!("{other:?}"),
    }
    let before = db.digest();
    let generation = db.state.generation();
    // Every kind of change, then a failure at the end.
    let err = db
        .batch(vec![
            Op::CreatePool(spec("q", "10.0.1.0/29")),
            allocate("q", "x", None),
            allocate("p", "d", None),
            release("p", "10.0.0.3", None),
            Op::ReleaseOwner {
                pool: "p".into(),
                owner: "c".into(),
            },
            allocate("p", "e", Some("10.0.0.3")),
            Op::DeletePool {
                pool: "p".into(),
                force: true,
            },
            Op::CreatePool(spec("p", "10.0.0.0/28")),
            allocate("p", "z", None),
            allocate("nope", "z", None),
        ])
        .unwrap_err();
    assert_eq!(err.index, 9);
    assert_eq!(
        err.error,
        OpError::Allocate(AllocateError::PoolNotFound {
            pool: "nope".into()
        })
    );
    assert_eq!(
        db.digest(),
        before,
        "nothing of the failed batch is applied"
    );
    assert_eq!(db.state.generation(), generation);
    // The in-memory index was rolled back too: the next decisions match a fresh reopen.
    let next = db.alloc("p", "f");
    assert_eq!(next, ip("10.0.0.4"));
    assert!(query::pool(&db.rtx(), "q").is_err());
    assert_eq!(db.state.generation(), generation + 1);
    let digest = db.digest();
    db.reopen();
    assert_eq!(db.digest(), digest);
    assert_eq!(db.alloc("p", "g"), ip("10.0.0.5"));
}

#[test]
fn batch_size_and_invalid_op_index() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    let before = db.digest();
    let e = db.batch(vec![]).unwrap_err();
    assert_eq!(
        e,
        BatchError {
            index: 0,
            error: OpError::Input(InputError::BatchSize { count: 0 })
        }
    );
    let e = db
        .batch(
            (0..1001)
                .map(|i| allocate("p", &format!("o{i}"), None))
                .collect(),
        )
        .unwrap_err();
    assert_eq!(e.error.code(), ErrorCode::InvalidArgument);
    // An invalid op anywhere is reported before any op runs.
    let e = db
        .batch(vec![allocate("nope", "a", None), allocate("p", "", None)])
        .unwrap_err();
    assert_eq!(e.index, 1);
    assert_eq!(db.digest(), before);
}

#[test]
fn commands_of_one_entry_are_independent() {
    let mut db = Db::mem();
    let results = db.apply(&[
        Command::Op(Op::CreatePool(spec("p", "10.0.0.0/30"))),
        Command::Op(allocate("p", "a", None)),
        Command::Op(allocate("p", "b", None)),
        Command::Batch(vec![allocate("p", "c", None)]),
        Command::Op(Op::ReleaseOwner {
            pool: "p".into(),
            owner: "a".into(),
        }),
        Command::Op(allocate("p", "b", None)),
    ]);
    assert!(matches!(results[0], CommandResult::Op(Ok(_))));
    assert!(matches!(results[1], CommandResult::Op(Ok(_))));
    assert!(matches!(
        results[2],
        CommandResult::Op(Err(OpError::Allocate(AllocateError::Exhausted { .. })))
    ));
    assert!(matches!(
        &results[3],
        CommandResult::Batch(Err(BatchError { index: 0, .. }))
    ));
    assert!(matches!(results[4], CommandResult::Op(Ok(_))));
    match &results[5] {
        CommandResult::Op(Ok(OpOutput::Allocated { allocation, .. })) => {
            assert_eq!(allocation.ip, ip("10.0.0.2"));
            assert_eq!(allocation.generation, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(query::pool(&db.rtx(), "p").unwrap().stats.allocated, 1);
}

#[test]
fn queries() {
    let mut db = Db::mem();
    let mut s = spec("b-pool", "10.0.1.0/24");
    s.labels.insert("env".into(), "prod".into());
    s.labels.insert("zone".into(), "a".into());
    db.op(Op::CreatePool(s)).unwrap();
    let mut s = spec("a-pool", "fd00::/64");
    s.labels.insert("env".into(), "prod".into());
    db.op(Op::CreatePool(s)).unwrap();
    db.create("c-pool", "10.0.0.0/24");
    let rtx = db.rtx();
    let names = |f: &[(&str, &str)]| -> Vec<String> {
        let f: Labels = f
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        query::pools(&rtx, &f)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect()
    };
    assert_eq!(names(&[]), ["a-pool", "b-pool", "c-pool"]);
    assert_eq!(names(&[("env", "prod")]), ["a-pool", "b-pool"]);
    assert_eq!(names(&[("env", "prod"), ("zone", "a")]), ["b-pool"]);
    assert_eq!(names(&[("env", "dev")]), Vec::<String>::new());
    drop(rtx);

    for i in 0..7 {
        db.alloc("b-pool", &format!("o{i}"));
    }
    db.alloc("a-pool", "o1");
    let rtx = db.rtx();
    // Paging: `next` present exactly when more follow.
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = query::allocations(&rtx, "b-pool", None, after, 3).unwrap();
        seen.extend(page.allocations.iter().map(|a| a.ip));
        match page.next {
            Some(n) => {
                assert_eq!(Some(n), page.allocations.last().map(|a| a.ip));
                after = Some(n);
            }
            None => break,
        }
    }
    let want: Vec<_> = (2..9).map(|i| ip(&format!("10.0.1.{i}"))).collect();
    assert_eq!(seen, want);
    let page = query::allocations(&rtx, "b-pool", None, None, 7).unwrap();
    assert_eq!(page.allocations.len(), 7);
    assert_eq!(page.next, None, "exactly the last page has no next");
    let page = query::allocations(&rtx, "b-pool", None, Some(ip("10.0.1.8")), 5).unwrap();
    assert!(page.allocations.is_empty());
    let page = query::allocations(&rtx, "b-pool", None, Some(ip("9.0.0.0")), 1).unwrap();
    assert_eq!(page.allocations[0].ip, ip("10.0.1.2"));
    // A cursor of the other family is a bad query value, not an empty page.
    let err = query::allocations(&rtx, "b-pool", None, Some(ip("fd00::1")), 1).unwrap_err();
    assert!(
        matches!(err, QueryError::Input(InputError::CursorFamily { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    let page = query::allocations(&rtx, "b-pool", Some("o3"), None, 10).unwrap();
    assert_eq!(page.allocations.len(), 1);
    assert_eq!(page.allocations[0].ip, ip("10.0.1.5"));
    let page = query::allocations(&rtx, "b-pool", Some("o3"), Some(ip("10.0.1.5")), 10).unwrap();
    assert!(page.allocations.is_empty());
    let page = query::allocations(&rtx, "b-pool", Some("zz"), None, 10).unwrap();
    assert!(page.allocations.is_empty());
    for bad in [0, 1001] {
        assert!(matches!(
            query::allocations(&rtx, "b-pool", None, None, bad),
            Err(QueryError::Input(InputError::InvalidLimit { .. }))
        ));
    }
    assert!(matches!(
        query::allocations(&rtx, "zz", None, None, 10),
        Err(QueryError::PoolNotFound { .. })
    ));
    assert!(query::allocations(&rtx, "b-pool", None, None, 1000).is_ok());

    // Address lookup.
    let info = query::address(&rtx, ip("10.0.1.4")).unwrap();
    assert_eq!(info.pool.as_deref(), Some("b-pool"));
    assert_eq!(info.allocation.unwrap().owner, "o2");
    let info = query::address(&rtx, ip("10.0.1.200")).unwrap();
    assert_eq!(info.pool.as_deref(), Some("b-pool"));
    assert!(info.allocation.is_none());
    assert_eq!(query::address(&rtx, ip("10.0.2.0")).unwrap().pool, None);
    assert_eq!(query::address(&rtx, ip("9.0.0.0")).unwrap().pool, None);
    assert_eq!(
        query::address(&rtx, ip("fd00::1")).unwrap().pool.as_deref(),
        Some("a-pool")
    );
    assert_eq!(query::address(&rtx, ip("fd01::1")).unwrap().pool, None);
    // IPv4-looking position in the IPv6 space does not find the IPv4 pool.
    assert_eq!(query::address(&rtx, ip("::a00:102")).unwrap().pool, None);

    // Owner lookups.
    let a = query::owner_allocation(&rtx, "a-pool", "o1")
        .unwrap()
        .unwrap();
    assert_eq!(a.ip, ip("fd00::1"));
    assert!(query::owner_allocation(&rtx, "a-pool", "o2")
        .unwrap()
        .is_none());
    assert!(matches!(
        query::owner_allocation(&rtx, "zz", "o1"),
        Err(QueryError::PoolNotFound { .. })
    ));
    assert!(matches!(
        query::owner_allocation(&rtx, "a-pool", ""),
        Err(QueryError::Input(_))
    ));
    let all = query::owner_allocations(&rtx, "o1").unwrap();
    assert_eq!(
        all.iter().map(|a| a.pool.as_str()).collect::<Vec<_>>(),
        ["a-pool", "b-pool"]
    );
    assert!(query::owner_allocations(&rtx, "none").unwrap().is_empty());
    assert_eq!(query::pool(&rtx, "b-pool").unwrap().stats.allocated, 7);
}

#[test]
fn queries_on_an_untouched_database_are_empty() {
    let db = redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .unwrap();
    let rtx = db.begin_read().unwrap();
    assert!(query::pools(&rtx, &Labels::new()).unwrap().is_empty());
    assert!(matches!(
        query::pool(&rtx, "p"),
        Err(QueryError::PoolNotFound { .. })
    ));
    assert_eq!(query::address(&rtx, ip("10.0.0.1")).unwrap().pool, None);
    assert!(query::owner_allocations(&rtx, "o").unwrap().is_empty());
    let empty = query::digest(&rtx).unwrap();
    drop(rtx);
    let _state = State::open(&db).unwrap();
    let rtx = db.begin_read().unwrap();
    assert_eq!(
        query::digest(&rtx).unwrap(),
        empty,
        "empty tables hash like missing ones"
    );
}

#[test]
fn unknown_format_version_is_corrupt_not_a_panic() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.alloc("p", "a");
    let txn = db.db.begin_write().unwrap();
    {
        let mut t = txn.open_table(ipam_core::tables::POOLS).unwrap();
        let key = ipam_core::tables::pool_key(0);
        let mut v = t.get(key.as_slice()).unwrap().unwrap().value().to_vec();
        v[0] = 99;
        t.insert(key.as_slice(), v.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    assert!(matches!(
        State::open(&db.db),
        Err(StorageError::Corrupt {
            table: "core_pools",
            ..
        })
    ));
    assert!(matches!(
        query::pool(&db.rtx(), "p"),
        Err(QueryError::Storage(StorageError::Corrupt { .. }))
    ));
}

#[test]
fn reopen_from_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let digest;
    {
        let mut db = Db::with(redb::Database::create(&path).unwrap());
        db.create("p", "10.0.0.0/24");
        db.create("q", "fd00::/64");
        for i in 0..20 {
            db.alloc("p", &format!("o{i}"));
            db.alloc("q", &format!("o{i}"));
        }
        for i in (0..20).step_by(3) {
            db.op(Op::ReleaseOwner {
                pool: "p".into(),
                owner: format!("o{i}"),
            })
            .unwrap();
        }
        digest = db.digest();
    }
    let mut db = Db::with(redb::Database::create(&path).unwrap());
    assert_eq!(db.digest(), digest);
    assert_eq!(db.state.generation(), 40);
    // Freed holes are reused lowest first after the restart.
    assert_eq!(db.alloc("p", "new"), ip("10.0.0.2"));
    assert_eq!(db.alloc("q", "new"), ip("fd00::15"));
    assert_eq!(db.state.free_intervals("p"), Some(7));
}

#[test]
fn pool_ids_exhausted() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    // Forge the counter at its last value, as after 2^32 − 1 creations.
    let txn = db.db.begin_write().unwrap();
    {
        let mut t = txn.open_table(ipam_core::tables::META).unwrap();
        let meta = ipam_core::tables::MetaRecord {
            generation: 0,
            next_pool_id: u32::MAX,
            now: ipam_core::Stamp(0),
        };
        let bytes = ipam_core::tables::encode(&meta).unwrap();
        t.insert(ipam_core::tables::META_KEY, bytes.as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    db.reopen();
    assert_eq!(
        create_err(&mut db, spec("q", "10.0.1.0/29")),
        CreatePoolError::PoolIdsExhausted
    );
    assert!(db.alloc("p", "a").is_ipv4());
}

#[test]
fn reader_serves_many_lookups_like_the_free_functions() {
    let mut db = Db::mem();
    // A pool low in the IPv6 space: its positions fit 32 bits yet must render as IPv6.
    db.create("low6", "::/120");
    db.create("v4", "10.0.0.0/24");
    for i in 0..5 {
        db.alloc("low6", &format!("o{i}"));
        db.alloc("v4", &format!("o{i}"));
    }
    let rtx = db.rtx();
    let reader = query::Reader::new(&rtx);
    for i in 0..5 {
        let owner = format!("o{i}");
        let a = reader.owner_allocation("low6", &owner).unwrap().unwrap();
        assert!(a.ip.is_ipv6(), "{}", a.ip);
        assert_eq!(a.ip, ip(&format!("::{}", i + 1)));
        assert_eq!(
            Some(a),
            query::owner_allocation(&rtx, "low6", &owner).unwrap()
        );
        let b = reader.owner_allocation("v4", &owner).unwrap().unwrap();
        assert_eq!(b.ip, ip(&format!("10.0.0.{}", i + 2)));
        assert_eq!(reader.owner_allocations(&owner).unwrap().len(), 2);
    }
    assert_eq!(
        reader.address(ip("::3")).unwrap(),
        query::address(&rtx, ip("::3")).unwrap()
    );
    assert_eq!(
        reader.pools(&Labels::new()).unwrap(),
        query::pools(&rtx, &Labels::new()).unwrap()
    );
    assert_eq!(
        reader.allocations("low6", None, None, 10).unwrap(),
        query::allocations(&rtx, "low6", None, None, 10).unwrap()
    );
    assert_eq!(reader.pool("v4").unwrap().stats.allocated, 5);
}

#[test]
fn several_apply_calls_in_one_transaction() {
    // The raft layer applies every entry of a batch of log entries in one write transaction.
    let entries = [
        vec![
            Command::Op(Op::CreatePool(spec("p", "10.0.0.0/29"))),
            Command::Op(allocate("p", "a", None)),
        ],
        vec![
            Command::Op(allocate("p", "b", None)),
            Command::Batch(vec![allocate("p", "c", None), allocate("zz", "d", None)]),
        ],
        vec![Command::Op(allocate("p", "c", None))],
    ];
    let mut one_txn = Db::mem();
    let txn = one_txn.db.begin_write().unwrap();
    let together: Vec<_> = entries
        .iter()
        .map(|e| one_txn.state.apply(&txn, Stamp(7), e).unwrap())
        .collect();
    txn.commit().unwrap();
    let mut separate = Db::mem();
    let apart: Vec<_> = entries
        .iter()
        .map(|e| {
            let txn = separate.db.begin_write().unwrap();
            let r = separate.state.apply(&txn, Stamp(7), e).unwrap();
            txn.commit().unwrap();
            r
        })
        .collect();
    assert_eq!(together, apart);
    assert_eq!(one_txn.digest(), separate.digest());
    one_txn.reopen();
    assert_eq!(one_txn.alloc("p", "e"), separate.alloc("p", "e"));
}

#[test]
fn aborted_transaction_then_reopen_forgets_the_changes() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.alloc("p", "a");
    let before = db.digest();
    let txn = db.db.begin_write().unwrap();
    db.state
        .apply(
            &txn,
            Stamp(9),
            &[
                Command::Op(allocate("p", "b", None)),
                Command::Op(Op::CreatePool(spec("q", "10.0.1.0/29"))),
            ],
        )
        .unwrap();
    txn.abort().unwrap();
    db.reopen();
    assert_eq!(db.digest(), before);
    assert_eq!(db.state.generation(), 1);
    assert!(db.state.pool("q").is_none());
    assert_eq!(db.alloc("p", "b"), ip("10.0.0.3"));
}
