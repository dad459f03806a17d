//! `apply` never panics and never fails on malformed commands: log entries are decoded from
//! bytes, so commands whose fields bypassed every constructor (non-canonical CIDRs, prefixes
//! over 128, reversed ranges, oversized strings) must become error results.

use crate::common::{allocate, release, spec_with, Db};
use ipam_core::command::{Command, CommandResult, Op};
use std::net::IpAddr;

use ipam_core::{query, Cidr, GatewayChoice, Labels, PoolSpec, Reserved, State};
use proptest::prelude::*;

/// A valid command list touching every op and field kind, to mutate.
fn seed() -> Vec<Command> {
    let mut labels = Labels::new();
    labels.insert("k".into(), "v".into());
    vec![
        Command::Op(Op::CreatePool(spec_with(
            "p",
            "10.0.0.0/28",
            GatewayChoice::Addr("10.0.0.14".parse().unwrap()),
            &["10.0.0.2-10.0.0.4", "10.0.0.8/30", "10.0.0.6"],
        ))),
        Command::Op(Op::CreatePool(spec_with(
            "q",
            "fd00::/120",
            GatewayChoice::None,
            &["fd00::5"],
        ))),
        Command::Op(allocate("p", "a", None)),
        Command::Op(allocate("q", "b", Some("fd00::7"))),
        Command::Batch(vec![
            allocate("p", "c", Some("10.0.0.5")),
            Op::Allocate {
                pool: "q".into(),
                owner: "d".into(),
                ip: None,
                labels,
            },
            release("p", "10.0.0.1", Some(1)),
            Op::ReleaseOwner {
                pool: "q".into(),
                owner: "b".into(),
            },
        ]),
        Command::Op(Op::DeletePool {
            pool: "q".into(),
            force: true,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_log_entries_apply_without_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..3),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = postcard::to_allocvec(&seed()).unwrap();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()) + 1);
        }
        // Undecodable entries never reach apply (the raft layer refuses them); decodable
        // ones must apply cleanly.
        let Ok(commands) = postcard::from_bytes::<Vec<Command>>(&bytes) else {
            return Ok(());
        };
        if commands.iter().map(Command::op_count).sum::<usize>() > 5_000 {
            return Ok(());
        }
        let mut db = Db::mem();
        let results = db.apply(&commands);
        prop_assert_eq!(results.len(), commands.len());
        for (c, r) in commands.iter().zip(&results) {
            prop_assert_eq!(
                matches!(c, Command::Batch(_)),
                matches!(r, CommandResult::Batch(_))
            );
        }
        // Whatever was applied is consistent: a restart rebuilds the same state.
        let digest = db.digest();
        let pools = query::pools(&db.rtx(), &Labels::new()).unwrap();
        db.state = State::open(&db.db).unwrap();
        prop_assert_eq!(db.digest(), digest);
        for p in pools {
            prop_assert_eq!(db.state.pool(&p.name).map(|i| i.stats), Some(p.stats));
        }
    }
}

/// A `Cidr` as it may arrive from the wire: any address, any prefix, host bits or not.
fn raw_cidr(ip: IpAddr, prefix: u8) -> Cidr {
    // `Cidr` serialises as (network, prefix); decoding bypasses `Cidr::new`.
    postcard::from_bytes(&postcard::to_allocvec(&(ip, prefix)).unwrap()).unwrap()
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u32..64).prop_map(|i| IpAddr::from((10u32 << 24 | i).to_be_bytes())),
        Just(IpAddr::from([0, 0, 0, 0])),
        Just(IpAddr::from([255, 255, 255, 255])),
        (0u128..64).prop_map(|i| IpAddr::from(((0xfd00u128 << 112) | i).to_be_bytes())),
        Just(IpAddr::from(u128::MAX.to_be_bytes())),
        Just(IpAddr::from(0u128.to_be_bytes())),
    ]
}

fn any_cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        // Mostly canonical, small networks, so that pools get created and filled.
        3 => prop_oneof![
            (0u32..8, 26u8..=32).prop_map(|(i, p)| {
                let host = 32 - u32::from(p);
                raw_cidr(IpAddr::from((10u32 << 24 | i << host).to_be_bytes()), p)
            }),
            (0u128..8, 120u8..=128).prop_map(|(i, p)| {
                let host = 128 - u32::from(p);
                raw_cidr(IpAddr::from(((0xfd00u128 << 112) | i << host).to_be_bytes()), p)
            }),
        ],
        1 => (any_ip(), prop_oneof![0u8..=130, any::<u8>()]).prop_map(|(ip, p)| raw_cidr(ip, p)),
    ]
}

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[ab]",
        1 => "[a-zA-Z0-9_é -]{0,70}",
    ]
}

fn any_owner() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-c]{1,2}",
        1 => (0usize..300).prop_map(|n| "o".repeat(n)),
    ]
}

fn any_labels() -> impl Strategy<Value = Labels> {
    prop_oneof![
        4 => proptest::collection::btree_map("[a-z]{1,3}", "[a-z]{0,3}", 0..3),
        1 => proptest::collection::btree_map("[a-z]{0,70}", "[a-z]{0,300}", 0..3),
    ]
}

fn any_reserved() -> impl Strategy<Value = Reserved> {
    prop_oneof![
        any_ip().prop_map(Reserved::Addr),
        (any_ip(), any_ip()).prop_map(|(a, b)| Reserved::Range(a, b)),
        any_cidr().prop_map(Reserved::Cidr),
    ]
}

fn any_spec() -> impl Strategy<Value = PoolSpec> {
    (
        any_name(),
        any_cidr(),
        prop_oneof![
            Just(GatewayChoice::Default),
            Just(GatewayChoice::None),
            any_ip().prop_map(GatewayChoice::Addr),
        ],
        prop_oneof![
            3 => Just(Vec::new()),
            1 => proptest::collection::vec(any_reserved(), 0..4),
        ],
        any_labels(),
        prop_oneof![
            6 => Just(String::new()),
            1 => (1000usize..1100).prop_map(|n| "d".repeat(n)),
        ],
    )
        .prop_map(
            |(name, cidr, gateway, reserved, labels, description)| PoolSpec {
                name,
                cidr,
                gateway,
                reserved,
                labels,
                description,
            },
        )
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any_spec().prop_map(Op::CreatePool),
        1 => (any_name(), any::<bool>()).prop_map(|(pool, force)| Op::DeletePool { pool, force }),
        6 => (any_name(), any_owner(), proptest::option::of(any_ip()), any_labels()).prop_map(
            |(pool, owner, ip, labels)| Op::Allocate {
                pool,
                owner,
                ip,
                labels
            }
        ),
        2 => (any_name(), any_ip(), proptest::option::of(0u64..4)).prop_map(
            |(pool, ip, generation)| Op::Release {
                pool,
                ip,
                generation
            }
        ),
        1 => (any_name(), any_owner()).prop_map(|(pool, owner)| Op::ReleaseOwner { pool, owner }),
    ]
}

fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => any_op().prop_map(Command::Op),
        1 => proptest::collection::vec(any_op(), 0..5).prop_map(Command::Batch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn arbitrary_field_values_apply_without_panic(
        entries in proptest::collection::vec(proptest::collection::vec(any_command(), 1..8), 1..5),
    ) {
        let mut db = Db::mem();
        for commands in &entries {
            let results = db.apply(commands);
            prop_assert_eq!(results.len(), commands.len());
        }
        let digest = db.digest();
        let pools = query::pools(&db.rtx(), &Labels::new()).unwrap();
        for p in &pools {
            // Whatever was accepted is canonical and consistent.
            prop_assert_eq!(Cidr::new(p.cidr.network(), p.cidr.prefix()), Ok(p.cidr));
            prop_assert!(p.stats.allocated <= p.stats.capacity);
            let page = query::allocations(&db.rtx(), &p.name, None, None, 1000).unwrap();
            for a in page.allocations {
                prop_assert!(p.cidr.contains(a.ip));
                prop_assert!(Some(a.ip) != p.gateway);
            }
        }
        db.state = State::open(&db.db).unwrap();
        prop_assert_eq!(db.digest(), digest);
    }
}
