//! Prefix delegation: pools that hand out aligned blocks (`Op::CreatePoolV3` with
//! `delegation_prefix_len`), their counts in blocks, reserved entries, explicit blocks, IPv6,
//! a reopen and the integrity check.

use crate::common;

use common::{release, Db};
use ipam_core::check::check;
use ipam_core::{
    query, Allocation, ErrorCode, GatewayChoice, Labels, Op, OpOutput, PoolSettings, PoolSpec,
    PoolSpecV3, Reserved,
};

fn prefix_pool(name: &str, cidr: &str, len: u8, reserved: &[&str]) -> Op {
    Op::CreatePoolV3(Box::new(PoolSpecV3 {
        base: PoolSpec {
            name: name.into(),
            cidr: cidr.parse().unwrap(),
            gateway: GatewayChoice::Default,
            reserved: reserved
                .iter()
                .map(|r| r.parse::<Reserved>().unwrap())
                .collect(),
            labels: Labels::from([("k".to_string(), "v".to_string())]),
            description: String::new(),
        },
        settings: PoolSettings::default(),
        delegation_prefix_len: Some(len),
        parent: None,
    }))
}

fn child(name: &str, cidr: &str, parent: &str) -> Op {
    Op::CreatePoolV3(Box::new(PoolSpecV3 {
        base: common::spec(name, cidr),
        settings: PoolSettings::default(),
        delegation_prefix_len: None,
        parent: Some(parent.into()),
    }))
}

fn lease(pool: &str, owner: &str, ttl: u32) -> Op {
    Op::AllocateV2 {
        pool: pool.into(),
        owner: owner.into(),
        ip: None,
        labels: Labels::new(),
        ttl_seconds: Some(ttl),
    }
}

fn take(db: &mut Db, pool: &str, owner: &str, ip: Option<&str>) -> Result<Allocation, ErrorCode> {
    match db.op(Op::AllocateV2 {
        pool: pool.into(),
        owner: owner.into(),
        ip: ip.map(|i| i.parse().unwrap()),
        labels: Labels::new(),
        ttl_seconds: None,
    }) {
        Ok(OpOutput::AllocatedV2 { allocation, .. }) => Ok(allocation),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.code()),
    }
}

fn stats(db: &Db, pool: &str) -> (u128, u128) {
    let p = query::pool(&db.rtx(), pool).unwrap();
    (p.stats.capacity, p.stats.allocated)
}

#[test]
fn a_16_hands_out_aligned_24s_around_reserved_entries() {
    let mut db = Db::mem();
    db.op(prefix_pool(
        "mesh",
        "10.42.0.0/16",
        24,
        &["10.42.1.5", "10.42.3.0-10.42.4.0"],
    ))
    .unwrap();
    let p = query::pool(&db.rtx(), "mesh").unwrap();
    assert_eq!(p.gateway, None, "a prefix pool has no gateway");
    assert_eq!(p.delegation_prefix_len, Some(24));
    // 256 blocks minus 10.42.1.0/24, 10.42.3.0/24 and 10.42.4.0/24.
    assert_eq!(stats(&db, "mesh"), (253, 0));
    let a = take(&mut db, "mesh", "host-0", None).unwrap();
    assert_eq!(
        a.ip.to_string(),
        "10.42.0.0",
        "the network address is a block like any other"
    );
    assert_eq!(a.prefix.unwrap().to_string(), "10.42.0.0/24");
    assert!(a.network.is_none(), "a block is not an interface address");
    let got: Vec<String> = (1..4)
        .map(|i| {
            take(&mut db, "mesh", &format!("host-{i}"), None)
                .unwrap()
                .ip
                .to_string()
        })
        .collect();
    assert_eq!(got, ["10.42.2.0", "10.42.5.0", "10.42.6.0"]);
    assert_eq!(stats(&db, "mesh"), (253, 4));

    // Explicit blocks: aligned and clear of reserved entries, else 400.
    assert_eq!(
        take(&mut db, "mesh", "x", Some("10.42.9.1")),
        Err(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        take(&mut db, "mesh", "x", Some("10.42.1.0")),
        Err(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        take(&mut db, "mesh", "x", Some("10.43.0.0")),
        Err(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        take(&mut db, "mesh", "x", Some("10.42.2.0")),
        Err(ErrorCode::AddressInUse)
    );
    let x = take(&mut db, "mesh", "x", Some("10.42.200.0")).unwrap();
    assert_eq!(x.prefix.unwrap().to_string(), "10.42.200.0/24");

    // A released block is the lowest again; the next-free preview steps in blocks.
    db.op(release("mesh", "10.42.2.0", None)).unwrap();
    let next = query::next_free(&db.rtx(), "mesh", 3).unwrap();
    let next: Vec<String> = next.iter().map(ToString::to_string).collect();
    assert_eq!(next, ["10.42.2.0", "10.42.7.0", "10.42.8.0"]);
    assert!(check(&db.state, &db.rtx()).unwrap().is_empty());

    let before = db.digest();
    db.reopen();
    assert_eq!(db.digest(), before);
    assert_eq!(
        take(&mut db, "mesh", "host-9", None)
            .unwrap()
            .ip
            .to_string(),
        "10.42.2.0"
    );
    assert!(check(&db.state, &db.rtx()).unwrap().is_empty());
}

#[test]
fn ipv6_blocks_and_the_delegation_limits() {
    let mut db = Db::mem();
    db.op(prefix_pool("v6", "fd00:1::/48", 64, &[])).unwrap();
    assert_eq!(stats(&db, "v6"), (65_536, 0));
    let a = take(&mut db, "v6", "h0", None).unwrap();
    assert_eq!(a.prefix.unwrap().to_string(), "fd00:1::/64");
    let b = take(&mut db, "v6", "h1", None).unwrap();
    assert_eq!(b.prefix.unwrap().to_string(), "fd00:1:0:1::/64");
    assert_eq!(
        take(&mut db, "v6", "x", Some("fd00:1:0:5::1")),
        Err(ErrorCode::InvalidArgument)
    );
    db.op(prefix_pool("big", "fd01::/32", 64, &[])).unwrap();
    assert_eq!(stats(&db, "big"), (1u128 << 32, 0));

    for (cidr, len) in [
        ("10.0.0.0/16", 16u8),
        ("10.0.0.0/16", 33),
        ("10.0.0.0/8", 41),
        ("fd02::/32", 65),
    ] {
        let err = db.op(prefix_pool("bad", cidr, len, &[])).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{cidr} /{len}");
    }
    let mut with_gateway = prefix_pool("gw", "10.9.0.0/16", 24, &[]);
    if let Op::CreatePoolV3(spec) = &mut with_gateway {
        spec.base.gateway = GatewayChoice::Addr("10.9.0.1".parse().unwrap());
    }
    assert_eq!(
        db.op(with_gateway).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn selection_never_chooses_a_prefix_pool() {
    let mut db = Db::mem();
    db.op(prefix_pool("mesh", "10.42.0.0/16", 24, &[])).unwrap();
    let err = db
        .op(Op::AllocateAny {
            owner: "o".into(),
            selector: Labels::from([("k".to_string(), "v".to_string())]),
            family: None,
            labels: Labels::new(),
            ttl_seconds: None,
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoMatchingPool);
}

#[test]
fn a_child_pool_lives_in_its_block_and_holds_it() {
    let mut db = Db::mem();
    db.op(prefix_pool("mesh", "10.42.0.0/16", 24, &[])).unwrap();
    db.op(lease("mesh", "host-0", 60)).unwrap();
    db.op(lease("mesh", "host-1", 60)).unwrap();
    // Only an allocated block of a prefix pool, exactly, may hold a child.
    let code = |db: &mut Db, op: Op| db.op(op).unwrap_err().code();
    assert_eq!(
        code(&mut db, child("c", "10.42.9.0/24", "mesh")),
        ErrorCode::PoolOverlap
    );
    assert_eq!(
        code(&mut db, child("c", "10.42.1.0/25", "mesh")),
        ErrorCode::PoolOverlap
    );
    assert_eq!(
        code(&mut db, child("c", "10.42.1.0/24", "nope")),
        ErrorCode::PoolNotFound
    );
    assert_eq!(
        code(&mut db, Op::CreatePool(common::spec("c", "10.42.1.0/24"))),
        ErrorCode::PoolOverlap
    );
    // A failed batch that created a child leaves the block's lease as it was.
    let before = db.digest();
    db.batch(vec![
        child("host-1", "10.42.1.0/24", "mesh"),
        release("mesh", "10.9.9.9", None),
    ])
    .unwrap_err();
    assert_eq!(db.digest(), before);

    db.op(child("host-1", "10.42.1.0/24", "mesh")).unwrap();
    assert_eq!(
        code(&mut db, child("again", "10.42.1.0/24", "mesh")),
        ErrorCode::PoolOverlap
    );
    let a = db.alloc("host-1", "vm-1");
    assert_eq!(a.to_string(), "10.42.1.2");
    assert!(check(&db.state, &db.rtx()).unwrap().is_empty());

    // The innermost pool answers, naming the block.
    let info = query::address(&db.rtx(), a).unwrap();
    assert_eq!(info.pool.as_deref(), Some("host-1"));
    assert_eq!(info.allocation.unwrap().owner, "vm-1");
    assert_eq!(info.block.as_ref().unwrap().owner, "host-1");
    let info = query::address(&db.rtx(), "10.42.0.7".parse().unwrap()).unwrap();
    assert_eq!(info.pool.as_deref(), Some("mesh"));
    assert_eq!(info.block.unwrap().owner, "host-0");

    // While the child exists: no release, no delete of the parent, no expiry.
    assert_eq!(
        code(&mut db, release("mesh", "10.42.1.0", None)),
        ErrorCode::PrefixInUse
    );
    assert_eq!(
        code(
            &mut db,
            Op::ReleaseOwner {
                pool: "mesh".into(),
                owner: "host-1".into()
            }
        ),
        ErrorCode::PrefixInUse
    );
    assert_eq!(
        code(
            &mut db,
            Op::DeletePool {
                pool: "mesh".into(),
                force: true
            }
        ),
        ErrorCode::PrefixInUse
    );
    db.advance(30_000);
    db.op(Op::RenewOwner {
        owner: "host-1".into(),
    })
    .unwrap();
    db.advance(120_000);
    db.apply(&[]);
    let holders = |db: &Db| -> Vec<String> {
        query::allocations(&db.rtx(), "mesh", None, None, 1000)
            .unwrap()
            .allocations
            .into_iter()
            .map(|a| a.owner)
            .collect()
    };
    assert_eq!(
        holders(&db),
        ["host-1"],
        "host-0's lease ended, host-1's block is held"
    );
    assert_eq!(
        ipam_core::state::next_expiry(&db.rtx()).unwrap(),
        None,
        "nothing is due"
    );
    assert!(check(&db.state, &db.rtx()).unwrap().is_empty());
    let before = db.digest();
    db.reopen();
    assert_eq!(db.digest(), before);
    assert!(check(&db.state, &db.rtx()).unwrap().is_empty());

    // Deleting the child makes the lapsed lease due again: the next entry ends it.
    db.op(Op::DeletePool {
        pool: "host-1".into(),
        force: true,
    })
    .unwrap();
    assert!(ipam_core::state::next_expiry(&db.rtx()).unwrap().is_some());
    db.apply(&[]);
    assert!(holders(&db).is_empty());
    db.op(Op::DeletePool {
        pool: "mesh".into(),
        force: false,
    })
    .unwrap();
    assert!(check(&db.state, &db.rtx()).unwrap().is_empty());
}
