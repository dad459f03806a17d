use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::pools::RangeSpec;
use crate::validate::parse_cidr;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn pool(name: &str, cidr: &str, allocations: &[(u8, &str, u64)]) -> PoolView {
    let cidr = parse_cidr(cidr).expect("cidr");
    let gateway = Some(IpAddr::V4(Ipv4Addr::from(
        u32::from(match cidr.network {
            IpAddr::V4(v) => v,
            IpAddr::V6(_) => unreachable!("v4 only"),
        }) + 1,
    )));
    PoolView {
        name: name.into(),
        shape: PoolShape::build(&[RangeSpec { cidr, gateway }], &[]).expect("shape"),
        allocations: allocations
            .iter()
            .map(|(last, owner, at)| alloc(name, ip(*last), owner, *at))
            .collect(),
        cooling: BTreeMap::new(),
    }
}

fn alloc(pool: &str, ip: IpAddr, owner: &str, at_ms: u64) -> Allocation {
    Allocation {
        ip,
        pool: pool.into(),
        owner: owner.into(),
        generation: at_ms,
        allocated_at: Stamp(at_ms),
        labels: Default::default(),
        ttl_seconds: None,
        expires_at: None,
        renewed_at: Stamp(at_ms),
        network: None,
        prefix: None,
    }
}

fn obs(last: u8, owner: Option<&str>) -> Observed {
    Observed {
        ip: ip(last),
        owner: owner.map(str::to_string),
    }
}

#[test]
fn no_drift_counts_every_entry_in_sync() {
    let pools = [pool("p", "10.0.0.0/24", &[(5, "a", 1), (6, "b", 1)])];
    let r = drift(&pools, &[obs(5, Some("a")), obs(6, None)]);
    assert_eq!(
        r,
        DriftReport {
            in_sync: 2,
            ..DriftReport::default()
        }
    );
}

#[test]
fn each_class_alone_and_all_together() {
    let pools = [pool("p", "10.0.0.0/25", &[(5, "a", 1), (6, "b", 1)])];
    let unknown = drift(
        &pools,
        &[obs(5, Some("a")), obs(6, None), obs(9, Some("c"))],
    );
    assert_eq!(unknown.unknown.len(), 1);
    assert_eq!(unknown.unknown[0].ip, ip(9));
    assert_eq!(unknown.unknown[0].pool, "p");
    assert!(unknown.missing.is_empty() && unknown.mismatched.is_empty());

    let missing = drift(&pools, &[obs(5, Some("a"))]);
    assert_eq!(missing.missing.len(), 1);
    assert_eq!(missing.missing[0].ip, ip(6));
    assert_eq!(missing.in_sync, 1);

    let mismatched = drift(&pools, &[obs(5, Some("a")), obs(6, Some("x"))]);
    assert_eq!(
        mismatched.mismatched,
        vec![Mismatched {
            ip: ip(6),
            pool: "p".into(),
            expected_owner: "b".into(),
            observed_owner: "x".into(),
            generation: 1,
        }]
    );

    let all = drift(
        &pools,
        &[obs(200, Some("z")), obs(6, Some("x")), obs(9, None)],
    );
    assert_eq!(all.outside, vec![ip(200)]);
    assert_eq!(all.unknown.len(), 1);
    assert_eq!(all.missing.len(), 1);
    assert_eq!(all.mismatched.len(), 1);
    assert_eq!(all.in_sync, 0);
}

#[test]
fn plan_releases_only_when_asked_and_never_within_grace() {
    let pools = [pool(
        "p",
        "10.0.0.0/24",
        &[(5, "a", 1_000), (6, "b", 500_000)],
    )];
    let report = drift(&pools, &[]);
    let keep = plan(
        &pools,
        &report,
        &ReconcileOptions::default(),
        Stamp(600_000),
    );
    assert!(keep.release.is_empty() && keep.skipped.is_empty());
    let opts = ReconcileOptions {
        release_missing: true,
        ..ReconcileOptions::default()
    };
    let p = plan(&pools, &report, &opts, Stamp(600_000));
    assert_eq!(p.release.len(), 1);
    assert_eq!(p.release[0].ip, ip(5));
    assert_eq!(
        p.skipped,
        vec![Skipped {
            ip: ip(6),
            reason: SkipReason::InGrace
        }]
    );
    // Exactly at the end of the grace period the allocation may go.
    let later = plan(&pools, &report, &opts, Stamp(800_000));
    assert_eq!(later.release.len(), 2);
}

#[test]
fn plan_skips_with_reasons() {
    let mut p = pool("p", "10.0.0.0/24", &[(5, "a", 1)]);
    p.cooling.insert(ip(20), "gone".into());
    let pools = [p];
    let observed = [
        obs(0, Some("net")),
        obs(1, Some("gw")),
        obs(7, None),
        obs(8, Some("a")),
        obs(20, Some("other")),
        obs(21, Some("n1")),
        obs(22, Some("n1")),
        obs(5, Some("a")),
    ];
    let report = drift(&pools, &observed);
    let out = plan(&pools, &report, &ReconcileOptions::default(), Stamp(1));
    let reasons: Vec<(IpAddr, SkipReason)> = out.skipped.iter().map(|s| (s.ip, s.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (ip(0), SkipReason::InvalidArgument),
            (ip(1), SkipReason::InvalidArgument),
            (ip(7), SkipReason::NoOwner),
            (ip(8), SkipReason::OwnerConflict),
            (ip(20), SkipReason::AddressCoolingDown),
            (ip(22), SkipReason::OwnerConflict),
        ]
    );
    assert_eq!(
        out.adopt,
        vec![Adopt {
            pool: "p".into(),
            ip: ip(21),
            owner: "n1".into()
        }]
    );
}

#[test]
fn a_released_owner_can_adopt_and_a_reassignment_needs_a_free_owner() {
    // `a` moved from .5 to .9; .6 is used by `c`, who also holds .7.
    let pools = [pool(
        "p",
        "10.0.0.0/24",
        &[(5, "a", 1), (6, "b", 1), (7, "c", 1)],
    )];
    let observed = [obs(9, Some("a")), obs(6, Some("c")), obs(7, Some("c"))];
    let report = drift(&pools, &observed);
    let opts = ReconcileOptions {
        adopt_unknown: true,
        release_missing: true,
        fix_mismatched: true,
        grace_seconds: 0,
    };
    let out = plan(&pools, &report, &opts, Stamp(10));
    assert_eq!(
        out.release.iter().map(|a| a.ip).collect::<Vec<_>>(),
        [ip(5)]
    );
    assert!(out.reassign.is_empty());
    assert_eq!(out.adopt.len(), 1);
    assert_eq!(
        out.skipped,
        vec![Skipped {
            ip: ip(6),
            reason: SkipReason::OwnerConflict
        }]
    );
}

#[test]
fn requests_are_checked() {
    let ok = vec!["p".to_string()];
    assert!(check_request(&ok, &[obs(1, None)]).is_ok());
    assert!(check_request(&[], &[]).is_err());
    assert!(check_request(&["p".into(), "p".into()], &[]).is_err());
    assert!(check_request(&["Bad".into()], &[]).is_err());
    assert!(check_request(&ok, &[obs(1, None), obs(1, Some("x"))]).is_err());
    assert!(check_request(&ok, &[obs(1, Some(""))]).is_err());
    let many: Vec<String> = (0..=MAX_POOLS).map(|i| format!("p{i}")).collect();
    assert!(check_request(&many, &[]).is_err());
    let big: Vec<Observed> = (0..=MAX_OBSERVED as u32)
        .map(|i| Observed {
            ip: IpAddr::V4(Ipv4Addr::from(i)),
            owner: None,
        })
        .collect();
    assert!(check_request(&ok, &big).is_err());
    assert!(check_request(&ok, &big[..MAX_OBSERVED]).is_ok());
}

/// The reference: every class by its definition, one address at a time.
fn reference(
    allocated: &BTreeMap<u8, String>,
    observed: &BTreeMap<u8, Option<String>>,
) -> (u64, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let (mut in_sync, mut unknown, mut missing, mut mismatched, mut outside) =
        (0, vec![], vec![], vec![], vec![]);
    for last in 0..=255u8 {
        let inside = last < 128;
        match (observed.get(&last), allocated.get(&last)) {
            (Some(_), _) if !inside => outside.push(last),
            (Some(_), None) => unknown.push(last),
            (Some(Some(o)), Some(a)) if o != a => mismatched.push(last),
            (Some(_), Some(_)) => in_sync += 1,
            (None, Some(_)) => missing.push(last),
            (None, None) => {}
        }
    }
    (in_sync, unknown, missing, mismatched, outside)
}

proptest! {
    #[test]
    fn drift_matches_the_reference(
        allocated in prop::collection::btree_map(2u8..127, "[a-c]", 0..40),
        observed in prop::collection::btree_map(any::<u8>(), prop::option::of("[a-c]"), 0..60),
    ) {
        let list: Vec<(u8, &str, u64)> =
            allocated.iter().map(|(k, v)| (*k, v.as_str(), 1)).collect();
        let pools = [pool("p", "10.0.0.0/25", &list)];
        let obs: Vec<Observed> = observed
            .iter()
            .rev()
            .map(|(k, o)| Observed { ip: ip(*k), owner: o.clone() })
            .collect();
        let r = drift(&pools, &obs);
        let (in_sync, unknown, missing, mismatched, outside) = reference(&allocated, &observed);
        let last = |ip: &IpAddr| match ip {
            IpAddr::V4(v) => v.octets()[3],
            IpAddr::V6(_) => unreachable!(),
        };
        prop_assert_eq!(r.in_sync, in_sync);
        prop_assert_eq!(r.unknown.iter().map(|u| last(&u.ip)).collect::<Vec<_>>(), unknown);
        prop_assert_eq!(r.missing.iter().map(|a| last(&a.ip)).collect::<Vec<_>>(), missing);
        prop_assert_eq!(r.mismatched.iter().map(|m| last(&m.ip)).collect::<Vec<_>>(), mismatched);
        prop_assert_eq!(r.outside.iter().map(last).collect::<Vec<_>>(), outside);
    }

    #[test]
    fn a_full_plan_leaves_no_drift_but_what_it_skipped(
        allocated in prop::collection::btree_map(2u8..127, "[a-f]", 0..30),
        observed in prop::collection::btree_map(2u8..127, prop::option::of("[a-f]"), 0..40),
    ) {
        // An owner holds at most one address of a pool.
        let mut owners_seen = BTreeSet::new();
        let allocated: BTreeMap<u8, String> = allocated
            .into_iter()
            .filter(|(_, o)| owners_seen.insert(o.clone()))
            .collect();
        let list: Vec<(u8, &str, u64)> =
            allocated.iter().map(|(k, v)| (*k, v.as_str(), 1)).collect();
        let pools = [pool("p", "10.0.0.0/25", &list)];
        let obs: Vec<Observed> = observed
            .iter()
            .map(|(k, o)| Observed { ip: ip(*k), owner: o.clone() })
            .collect();
        let report = drift(&pools, &obs);
        let opts = ReconcileOptions {
            adopt_unknown: true,
            release_missing: true,
            fix_mismatched: true,
            grace_seconds: 0,
        };
        let p = plan(&pools, &report, &opts, Stamp(1));
        // Apply the plan to the reference map and check that owners stay unique.
        let mut after: BTreeMap<IpAddr, String> =
            allocated.iter().map(|(k, v)| (ip(*k), v.clone())).collect();
        for a in &p.release {
            after.remove(&a.ip);
        }
        for (a, owner) in &p.reassign {
            after.insert(a.ip, owner.clone());
        }
        for a in &p.adopt {
            prop_assert!(after.insert(a.ip, a.owner.clone()).is_none());
        }
        let owners: BTreeSet<&String> = after.values().collect();
        prop_assert_eq!(owners.len(), after.len());
        let changed = p.release.len() + p.reassign.len() + p.adopt.len() + p.skipped.len();
        prop_assert_eq!(
            changed,
            report.unknown.len() + report.missing.len() + report.mismatched.len()
        );
    }
}
