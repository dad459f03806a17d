//! Stateless parsing and validation.

use std::net::IpAddr;

use ipam_core::command::{Command, Op};
use ipam_core::validate::{
    check_command, check_labels, check_name, check_op, check_owner, check_pool_spec, parse_addr,
    parse_cidr, parse_reserved,
};
use ipam_core::{
    AllocateError, Cidr, CreatePoolError, Family, GatewayChoice, InputError, Labels, OpError,
    PoolSpec, ReleaseError, Reserved, Unallocatable,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn spec(cidr: &str) -> PoolSpec {
    PoolSpec {
        name: "p".into(),
        cidr: parse_cidr(cidr).unwrap(),
        gateway: GatewayChoice::Default,
        reserved: vec![],
        labels: Labels::new(),
        description: String::new(),
    }
}

#[test]
fn cidr_accepts_canonical_networks() {
    let c = parse_cidr("10.0.0.0/24").unwrap();
    assert_eq!(c.network(), ip("10.0.0.0"));
    assert_eq!(c.prefix(), 24);
    assert_eq!(c.family(), Family::V4);
    assert_eq!(c.to_string(), "10.0.0.0/24");
    assert_eq!(c.size(), 256);
    let c: Cidr = "fd00::/64".parse().unwrap();
    assert_eq!(c.family(), Family::V6);
    assert_eq!(c.to_string(), "fd00::/64");
    assert_eq!(c.size(), 1u128 << 64);
    assert_eq!(parse_cidr("0.0.0.0/0").unwrap().size(), 1u128 << 32);
    assert_eq!(
        parse_cidr("::/0").unwrap().size(),
        u128::MAX,
        "2^128 saturates"
    );
    assert_eq!(parse_cidr("10.0.0.7/32").unwrap().size(), 1);
    assert_eq!(parse_cidr("fd00::1/128").unwrap().size(), 1);
}

#[test]
fn cidr_with_host_bits_names_the_network() {
    match parse_cidr("10.0.0.5/24") {
        Err(InputError::HostBitsSet { input, network }) => {
            assert_eq!(input, "10.0.0.5/24");
            assert_eq!(network.to_string(), "10.0.0.0/24");
        }
        other => panic!("{other:?}"),
    }
    match parse_cidr("fd00::1/64") {
        Err(InputError::HostBitsSet { network, .. }) => {
            assert_eq!(network.to_string(), "fd00::/64")
        }
        other => panic!("{other:?}"),
    }
    let msg = parse_cidr("10.0.0.5/24").unwrap_err().to_string();
    assert!(msg.contains("10.0.0.0/24"), "{msg}");
}

#[test]
fn cidr_rejects_other_forms() {
    for bad in [
        "10.0.0.0",
        "10.0.0.0/255.255.255.0",
        "10.0.0.0/33",
        "fd00::/129",
        "10.0.0.0/",
        "10.0.0.0/+24",
        "10.0.0.0/024x",
        "10.0.0/24",
        "/24",
        "",
        " 10.0.0.0/24",
        "10.0.0.0/1000",
        "fe80::1%eth0/64",
    ] {
        assert!(
            matches!(parse_cidr(bad), Err(InputError::InvalidCidr { .. })),
            "{bad:?} gave {:?}",
            parse_cidr(bad)
        );
    }
    assert!(matches!(
        Cidr::new(ip("10.0.0.0"), 40),
        Err(InputError::InvalidCidr { .. })
    ));
    assert!(matches!(
        Cidr::new(ip("10.0.0.1"), 31),
        Err(InputError::HostBitsSet { .. })
    ));
}

#[test]
fn cidr_contains_and_overlaps() {
    let c = parse_cidr("10.0.0.0/30").unwrap();
    assert!(c.contains(ip("10.0.0.0")));
    assert!(c.contains(ip("10.0.0.3")));
    assert!(!c.contains(ip("10.0.0.4")));
    assert!(!c.contains(ip("::a00:1")), "families never mix");
    let all6 = parse_cidr("::/0").unwrap();
    assert!(all6.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!all6.contains(ip("10.0.0.1")));
    assert!(c.overlaps(&parse_cidr("10.0.0.0/24").unwrap()));
    assert!(!c.overlaps(&parse_cidr("10.0.0.4/30").unwrap()));
}

#[test]
fn addresses() {
    assert_eq!(parse_addr("10.0.0.1").unwrap(), ip("10.0.0.1"));
    assert_eq!(parse_addr("fd00::7").unwrap(), ip("fd00::7"));
    for bad in ["10.0.0.256", "10.0.0", "x", "", "fd00::/64"] {
        assert!(matches!(
            parse_addr(bad),
            Err(InputError::InvalidAddress { .. })
        ));
    }
}

#[test]
fn reserved_entries() {
    assert_eq!(
        parse_reserved("10.0.0.100").unwrap(),
        Reserved::Addr(ip("10.0.0.100"))
    );
    assert_eq!(
        parse_reserved("10.0.0.2-10.0.0.9").unwrap(),
        Reserved::Range(ip("10.0.0.2"), ip("10.0.0.9"))
    );
    assert_eq!(
        parse_reserved("fd00::2-fd00::9").unwrap(),
        Reserved::Range(ip("fd00::2"), ip("fd00::9"))
    );
    assert_eq!(
        parse_reserved("10.0.0.128/28").unwrap().to_string(),
        "10.0.0.128/28"
    );
    for r in [
        "10.0.0.100",
        "10.0.0.2-10.0.0.9",
        "10.0.0.128/28",
        "fd00::1",
    ] {
        assert_eq!(parse_reserved(r).unwrap().to_string(), r, "renders back");
    }
    for bad in [
        "10.0.0.9-10.0.0.2",
        "10.0.0.1-fd00::1",
        "10.0.0.1-",
        "x",
        "10.0.0.1-10.0.0.2-10.0.0.3",
    ] {
        assert!(
            matches!(parse_reserved(bad), Err(InputError::InvalidReserved { .. })),
            "{bad}"
        );
    }
    assert!(matches!(
        parse_reserved("10.0.0.129/28"),
        Err(InputError::HostBitsSet { .. })
    ));
}

#[test]
fn names() {
    for ok in ["a", "0", "vms", "pod-net-1", &"a".repeat(63)] {
        assert!(check_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-a", "A", "a_b", "a.b", "é", &"a".repeat(64), "a b"] {
        assert!(
            matches!(check_name(bad), Err(InputError::InvalidName { .. })),
            "{bad}"
        );
    }
}

#[test]
fn owners() {
    assert!(check_owner("vm-42/eth0").is_ok());
    assert!(check_owner(&"x".repeat(253)).is_ok());
    assert_eq!(check_owner(""), Err(InputError::InvalidOwner { len: 0 }));
    assert_eq!(
        check_owner(&"x".repeat(254)),
        Err(InputError::InvalidOwner { len: 254 })
    );
}

#[test]
fn labels() {
    let mut l = Labels::new();
    l.insert("k".repeat(63), "v".repeat(253));
    assert!(check_labels(&l).is_ok());
    let mut l = Labels::new();
    l.insert(String::new(), "v".into());
    assert!(matches!(
        check_labels(&l),
        Err(InputError::InvalidLabelKey { .. })
    ));
    let mut l = Labels::new();
    l.insert("k".repeat(64), "v".into());
    assert!(matches!(
        check_labels(&l),
        Err(InputError::InvalidLabelKey { .. })
    ));
    let mut l = Labels::new();
    l.insert("k".into(), "v".repeat(254));
    assert_eq!(
        check_labels(&l),
        Err(InputError::LabelValueTooLong {
            key: "k".into(),
            len: 254
        })
    );
    let l: Labels = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
    assert_eq!(
        check_labels(&l),
        Err(InputError::TooManyLabels { count: 65 })
    );
    let l: Labels = (0..64).map(|i| (format!("k{i}"), String::new())).collect();
    assert!(check_labels(&l).is_ok());
}

#[test]
fn pool_spec_limits() {
    assert!(check_pool_spec(&spec("10.0.0.0/24")).is_ok());
    let mut s = spec("10.0.0.0/24");
    s.description = "d".repeat(1025);
    assert_eq!(
        check_pool_spec(&s),
        Err(CreatePoolError::Input(InputError::DescriptionTooLong {
            len: 1025
        }))
    );
    s.description = "d".repeat(1024);
    assert!(check_pool_spec(&s).is_ok());

    let mut s = spec("10.0.0.0/16");
    s.reserved = (0..1001)
        .map(|i| Reserved::Addr(ip(&format!("10.0.{}.{}", i / 200, i % 200 + 1))))
        .collect();
    assert_eq!(
        check_pool_spec(&s),
        Err(CreatePoolError::Input(InputError::TooManyReserved {
            count: 1001
        }))
    );
    s.reserved.truncate(1000);
    assert!(check_pool_spec(&s).is_ok());

    let mut s = spec("10.0.0.0/24");
    s.name = "Bad".into();
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::Input(InputError::InvalidName { .. }))
    ));

    // Reserved entries built in code (not parsed) are still checked.
    let mut s = spec("10.0.0.0/24");
    s.reserved = vec![Reserved::Range(ip("10.0.0.9"), ip("10.0.0.2"))];
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::Input(InputError::InvalidReserved { .. }))
    ));
}

#[test]
fn non_canonical_cidr_from_the_wire_is_refused() {
    // A Cidr deserialised from postcard bypasses `Cidr::new`; the spec check catches it.
    let good = spec("10.0.0.0/24");
    let mut bytes = postcard::to_allocvec(&good).unwrap();
    let wire = postcard::to_allocvec(&ip("10.0.0.0")).unwrap();
    let pos = bytes
        .windows(wire.len())
        .position(|w| w == wire.as_slice())
        .unwrap();
    let bad_ip = postcard::to_allocvec(&ip("10.0.0.5")).unwrap();
    bytes.splice(pos..pos + wire.len(), bad_ip);
    let bad: PoolSpec = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(bad.cidr.network(), ip("10.0.0.5"));
    assert!(matches!(
        check_pool_spec(&bad),
        Err(CreatePoolError::Input(InputError::HostBitsSet { .. }))
    ));
}

#[test]
fn gateways() {
    let mut s = spec("10.0.0.0/24");
    s.gateway = GatewayChoice::Addr(ip("10.0.1.1"));
    assert_eq!(
        check_pool_spec(&s),
        Err(CreatePoolError::InvalidGateway {
            gateway: ip("10.0.1.1"),
            cidr: s.cidr,
            reason: Unallocatable::OutsideCidr
        })
    );
    s.gateway = GatewayChoice::Addr(ip("10.0.0.0"));
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::InvalidGateway {
            reason: Unallocatable::Network,
            ..
        })
    ));
    s.gateway = GatewayChoice::Addr(ip("10.0.0.255"));
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::InvalidGateway {
            reason: Unallocatable::Broadcast,
            ..
        })
    ));
    s.gateway = GatewayChoice::Addr(ip("fd00::1"));
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::InvalidGateway {
            reason: Unallocatable::WrongFamily,
            ..
        })
    ));
    // In a /31 or /32 any address may be the gateway.
    for (cidr, gw) in [("10.0.0.0/31", "10.0.0.0"), ("10.0.0.0/31", "10.0.0.1")] {
        let mut s = spec(cidr);
        s.gateway = GatewayChoice::Addr(ip(gw));
        assert!(check_pool_spec(&s).is_ok(), "{cidr} {gw}");
    }
    let mut s = spec("fd00::/64");
    s.gateway = GatewayChoice::Addr(ip("fd00::"));
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::InvalidGateway {
            reason: Unallocatable::SubnetRouterAnycast,
            ..
        })
    ));
    let mut s = spec("fd00::/127");
    s.gateway = GatewayChoice::Addr(ip("fd00::"));
    assert!(check_pool_spec(&s).is_ok());
}

#[test]
fn reserved_outside_and_nothing_left() {
    let mut s = spec("10.0.0.0/24");
    s.reserved = vec![parse_reserved("10.0.0.250-10.0.1.3").unwrap()];
    assert_eq!(
        check_pool_spec(&s),
        Err(CreatePoolError::ReservedOutsideCidr {
            entry: "10.0.0.250-10.0.1.3".into(),
            cidr: s.cidr
        })
    );
    s.reserved = vec![parse_reserved("fd00::1").unwrap()];
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::ReservedOutsideCidr { .. })
    ));
    s.reserved = vec![parse_reserved("10.0.0.0/23").unwrap()];
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::ReservedOutsideCidr { .. })
    ));
    s.reserved = vec![parse_reserved("10.0.0.0/24").unwrap()];
    assert_eq!(
        check_pool_spec(&s),
        Err(CreatePoolError::NoAllocatableAddress { cidr: s.cidr })
    );
    // /30: network, gateway (default .1), .2 reserved, broadcast → nothing left.
    let mut s = spec("10.0.0.0/30");
    s.reserved = vec![parse_reserved("10.0.0.2").unwrap()];
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::NoAllocatableAddress { .. })
    ));
    // /32 with itself as gateway: nothing left.
    let mut s = spec("10.0.0.9/32");
    s.gateway = GatewayChoice::Addr(ip("10.0.0.9"));
    assert!(matches!(
        check_pool_spec(&s),
        Err(CreatePoolError::NoAllocatableAddress { .. })
    ));
}

fn alloc_op(pool: &str, owner: &str) -> Op {
    Op::Allocate {
        pool: pool.into(),
        owner: owner.into(),
        ip: None,
        labels: Labels::new(),
    }
}

#[test]
fn ops_and_commands() {
    assert!(check_op(&alloc_op("p", "o")).is_ok());
    assert!(matches!(
        check_op(&alloc_op("P", "o")),
        Err(OpError::Allocate(AllocateError::Input(
            InputError::InvalidName { .. }
        )))
    ));
    assert!(matches!(
        check_op(&alloc_op("p", "")),
        Err(OpError::Allocate(AllocateError::Input(
            InputError::InvalidOwner { .. }
        )))
    ));
    assert!(matches!(
        check_op(&Op::ReleaseOwner {
            pool: "p".into(),
            owner: "".into()
        }),
        Err(OpError::Release(ReleaseError::Input(
            InputError::InvalidOwner { .. }
        )))
    ));
    assert!(matches!(
        check_op(&Op::DeletePool {
            pool: "".into(),
            force: false
        }),
        Err(OpError::Input(InputError::InvalidName { .. }))
    ));
    let empty = check_command(&Command::Batch(vec![])).unwrap_err();
    assert_eq!(empty.index, 0);
    assert_eq!(
        empty.error,
        OpError::Input(InputError::BatchSize { count: 0 })
    );
    let big = Command::Batch((0..1001).map(|i| alloc_op("p", &format!("o{i}"))).collect());
    assert!(matches!(
        check_command(&big).unwrap_err().error,
        OpError::Input(InputError::BatchSize { count: 1001 })
    ));
    let full = Command::Batch((0..1000).map(|i| alloc_op("p", &format!("o{i}"))).collect());
    assert!(check_command(&full).is_ok());
    let bad_third = Command::Batch(vec![
        alloc_op("p", "a"),
        alloc_op("p", "b"),
        alloc_op("p", ""),
    ]);
    assert_eq!(check_command(&bad_third).unwrap_err().index, 2);
}
