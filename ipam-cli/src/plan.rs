//! The import plan: every row checked against the pools, their current allocations and the
//! other rows before anything is written. Pure: the caller fetches, this decides.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipam_client::types::{Allocation, Labels, Pool};
use ipam_core::pools::{PoolShape, RangeSpec};
use ipam_core::validate::{check_labels, check_owner, parse_cidr, parse_reserved};
use serde::Serialize;

use crate::transfer::Row;

/// A pool as the plan needs it: where addresses may go and who holds what.
pub struct PoolView {
    name: String,
    /// `None` when the pool's settings do not parse here (a newer node): the node then
    /// checks allocatability itself when the batch applies.
    layout: Option<PoolShape>,
    by_ip: HashMap<IpAddr, (String, Labels)>,
    by_owner: HashMap<String, IpAddr>,
}

impl PoolView {
    /// The view of `pool` holding `allocations` (all of them).
    pub fn new(pool: &Pool, allocations: &[Allocation]) -> PoolView {
        let layout = shape(pool);
        let mut view = PoolView {
            name: pool.name.clone(),
            layout,
            by_ip: HashMap::new(),
            by_owner: HashMap::new(),
        };
        for a in allocations {
            if let Ok(ip) = a.ip.parse() {
                view.by_ip.insert(ip, (a.owner.clone(), a.labels.clone()));
                view.by_owner.insert(a.owner.clone(), ip);
            }
        }
        view
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.layout.as_ref().is_some_and(|l| l.contains(ip))
    }
}

/// Every range of `pool` (its `ranges`, or only `cidr` from a first-round node) with its
/// reserved entries, or `None` when something does not parse here.
fn shape(pool: &Pool) -> Option<PoolShape> {
    let parse_gateway = |g: &Option<String>| match g {
        Some(g) => g.parse().ok().map(Some),
        None => Some(None),
    };
    let ranges = if pool.ranges.is_empty() {
        vec![RangeSpec {
            cidr: parse_cidr(&pool.cidr).ok()?,
            gateway: parse_gateway(&pool.gateway)?,
        }]
    } else {
        pool.ranges
            .iter()
            .map(|r| {
                Some(RangeSpec {
                    cidr: parse_cidr(&r.cidr).ok()?,
                    gateway: parse_gateway(&r.gateway)?,
                })
            })
            .collect::<Option<Vec<_>>>()?
    };
    let reserved = pool
        .reserved
        .iter()
        .map(|r| parse_reserved(r).ok())
        .collect::<Option<Vec<_>>>()?;
    PoolShape::build(&ranges, &reserved).ok()
}

/// Why a row cannot be imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The row's line (CSV) or record (JSON).
    pub line: usize,
    /// Its pool.
    pub pool: String,
    /// Its address.
    pub ip: String,
    /// Its owner.
    pub owner: String,
    /// An API error code where one fits: `invalid_argument`, `pool_not_found`,
    /// `outside_pool`, `address_in_use`, `owner_conflict`, `labels_differ`.
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// What an import will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Rows to allocate, in file order, addresses in canonical form.
    pub writes: Vec<Row>,
    /// Rows already allocated identically (or repeated in the file): nothing to do.
    pub present: usize,
    /// Rows that cannot be imported.
    pub conflicts: Vec<Conflict>,
}

/// Checks every row. `pools` holds a view of every existing pool (the `outside` check names
/// the pool an address actually lies in).
pub fn plan(rows: Vec<Row>, pools: &BTreeMap<String, PoolView>) -> Plan {
    let mut plan = Plan::default();
    // What earlier rows of the file claim, per pool: address → (owner, labels, line) and
    // owner → address.
    let mut claimed: HashMap<(&str, IpAddr), (String, Labels, usize)> = HashMap::new();
    let mut owners: HashMap<(String, String), (IpAddr, usize)> = HashMap::new();
    for row in rows {
        let conflict = |code: &'static str, message: String| Conflict {
            line: row.line,
            pool: row.pool.clone(),
            ip: row.ip.clone(),
            owner: row.owner.clone(),
            code,
            message,
        };
        let Ok(ip) = row.ip.parse::<IpAddr>() else {
            plan.conflicts.push(conflict(
                "invalid_argument",
                format!("{:?} is not an IP address", row.ip),
            ));
            continue;
        };
        if let Err(e) = check_owner(&row.owner).and_then(|()| check_labels(&row.labels)) {
            plan.conflicts
                .push(conflict("invalid_argument", e.to_string()));
            continue;
        }
        let Some((pool_name, view)) = pools.get_key_value(row.pool.as_str()) else {
            plan.conflicts.push(conflict(
                "pool_not_found",
                format!("no pool named {:?}", row.pool),
            ));
            continue;
        };
        if view.layout.is_some() && !view.contains(ip) {
            let message = match pools.values().find(|p| p.contains(ip)) {
                Some(other) => format!("{ip} lies in pool {}, not {}", other.name, row.pool),
                None => format!("{ip} lies outside every pool"),
            };
            plan.conflicts.push(conflict("outside_pool", message));
            continue;
        }
        if let Some(reason) = view.layout.as_ref().and_then(|l| l.unallocatable(ip)) {
            plan.conflicts.push(conflict(
                "invalid_argument",
                format!("{ip} is {reason} of pool {}", row.pool),
            ));
            continue;
        }
        match view.by_ip.get(&ip) {
            Some((holder, _)) if *holder != row.owner => {
                plan.conflicts.push(conflict(
                    "address_in_use",
                    format!("{ip} is held by {holder:?}"),
                ));
                continue;
            }
            Some((_, labels)) if *labels != row.labels => {
                plan.conflicts.push(conflict(
                    "labels_differ",
                    format!("{ip} is already held by this owner with other labels"),
                ));
                continue;
            }
            Some(_) => {
                plan.present += 1;
                continue;
            }
            None => {}
        }
        if let Some(held) = view.by_owner.get(&row.owner) {
            plan.conflicts.push(conflict(
                "owner_conflict",
                format!("{:?} already holds {held} in pool {}", row.owner, row.pool),
            ));
            continue;
        }
        match claimed.get(&(pool_name.as_str(), ip)) {
            Some((owner, labels, _)) if *owner == row.owner && *labels == row.labels => {
                plan.present += 1;
                continue;
            }
            Some((_, _, line)) => {
                plan.conflicts.push(conflict(
                    "address_in_use",
                    format!("line {line} of the file already assigns {ip}"),
                ));
                continue;
            }
            None => {}
        }
        let owner_key = (row.pool.clone(), row.owner.clone());
        if let Some((other, line)) = owners.get(&owner_key) {
            plan.conflicts.push(conflict(
                "owner_conflict",
                format!(
                    "line {line} of the file already gives {:?} {other} in pool {}",
                    row.owner, row.pool
                ),
            ));
            continue;
        }
        claimed.insert(
            (pool_name.as_str(), ip),
            (row.owner.clone(), row.labels.clone(), row.line),
        );
        owners.insert(owner_key, (ip, row.line));
        plan.writes.push(Row {
            ip: ip.to_string(),
            ..row
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_client::types::PoolStats;

    fn pool(name: &str, cidr: &str) -> Pool {
        Pool {
            name: name.into(),
            cidr: cidr.into(),
            gateway: Some(cidr.replace(".0/24", ".1")),
            reserved: vec![cidr.replace(".0/24", ".200-") + &cidr.replace(".0/24", ".209")],
            labels: Labels::new(),
            description: String::new(),
            created_at: String::new(),
            stats: PoolStats {
                capacity: "0".into(),
                allocated: "0".into(),
                free: "0".into(),
                utilization: 0.0,
                cooling: "0".into(),
            },
            ..Pool::default()
        }
    }

    fn alloc(pool: &str, ip: &str, owner: &str) -> Allocation {
        Allocation {
            ip: ip.into(),
            pool: pool.into(),
            owner: owner.into(),
            generation: 1,
            allocated_at: String::new(),
            labels: Labels::new(),
            ttl_seconds: None,
            expires_at: None,
            renewed_at: String::new(),
            network: None,
            prefix: None,
        }
    }

    fn row(line: usize, pool: &str, ip: &str, owner: &str) -> Row {
        Row {
            line,
            pool: pool.into(),
            ip: ip.into(),
            owner: owner.into(),
            labels: Labels::new(),
        }
    }

    fn views() -> BTreeMap<String, PoolView> {
        let a = pool("a", "10.0.0.0/24");
        let b = pool("b", "10.0.1.0/24");
        BTreeMap::from([
            (
                "a".into(),
                PoolView::new(&a, &[alloc("a", "10.0.0.5", "held")]),
            ),
            ("b".into(), PoolView::new(&b, &[])),
        ])
    }

    fn codes(plan: &Plan) -> Vec<(usize, &'static str)> {
        plan.conflicts.iter().map(|c| (c.line, c.code)).collect()
    }

    #[test]
    fn every_kind_of_conflict_is_found_before_writing() {
        let rows = vec![
            row(2, "a", "10.0.0.6", "new"),
            row(3, "a", "10.0.0.5", "other"),
            row(4, "a", "10.0.0.7", "held"),
            row(5, "a", "10.0.1.9", "x"),
            row(6, "a", "192.168.0.1", "y"),
            row(7, "nope", "10.0.0.8", "z"),
            row(8, "a", "10.0.0.1", "gw"),
            row(9, "a", "10.0.0.205", "res"),
            row(10, "a", "not-an-ip", "w"),
            row(11, "a", "10.0.0.6", "dup"),
            row(12, "a", "10.0.0.9", "new"),
            row(13, "a", "10.0.0.10", ""),
        ];
        let plan = plan(rows, &views());
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.writes[0].owner, "new");
        assert_eq!(
            codes(&plan),
            vec![
                (3, "address_in_use"),
                (4, "owner_conflict"),
                (5, "outside_pool"),
                (6, "outside_pool"),
                (7, "pool_not_found"),
                (8, "invalid_argument"),
                (9, "invalid_argument"),
                (10, "invalid_argument"),
                (11, "address_in_use"),
                (12, "owner_conflict"),
                (13, "invalid_argument"),
            ]
        );
        assert!(plan.conflicts[2].message.contains("pool b"));
        assert!(plan.conflicts[3].message.contains("outside every pool"));
    }

    #[test]
    fn identical_rows_and_existing_allocations_are_no_ops() {
        let rows = vec![
            row(2, "a", "10.0.0.5", "held"),
            row(3, "b", "10.0.1.5", "n"),
            row(4, "b", "10.0.1.5", "n"),
        ];
        let plan = plan(rows, &views());
        assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.present, 2);
    }

    #[test]
    fn same_owner_other_labels_is_a_conflict_and_addresses_are_canonical() {
        let mut r = row(2, "a", "10.0.0.5", "held");
        r.labels.insert("k".into(), "v".into());
        let mut v6 = pool("c", "fd00::/64");
        v6.gateway = None;
        v6.reserved.clear();
        let mut pools = views();
        pools.insert("c".into(), PoolView::new(&v6, &[]));
        let plan = plan(vec![r, row(3, "c", "fd00:0:0::0:7", "n")], &pools);
        assert_eq!(codes(&plan), vec![(2, "labels_differ")]);
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.writes[0].ip, "fd00::7");
    }

    #[test]
    fn addresses_in_added_ranges_are_inside_the_pool() {
        let mut a = pool("a", "10.0.0.0/24");
        a.ranges = vec![
            ipam_client::types::PoolRange {
                cidr: "10.0.0.0/24".into(),
                gateway: Some("10.0.0.1".into()),
            },
            ipam_client::types::PoolRange {
                cidr: "10.9.0.0/24".into(),
                gateway: Some("10.9.0.1".into()),
            },
        ];
        let views = BTreeMap::from([("a".into(), PoolView::new(&a, &[]))]);
        let rows = vec![
            row(2, "a", "10.9.0.7", "x"),
            row(3, "a", "10.9.0.1", "gw"),
            row(4, "a", "10.8.0.7", "y"),
        ];
        let plan = plan(rows, &views);
        assert_eq!(plan.writes.len(), 1, "{:?}", plan.conflicts);
        assert_eq!(plan.writes[0].ip, "10.9.0.7");
        assert_eq!(
            codes(&plan),
            vec![(3, "invalid_argument"), (4, "outside_pool")]
        );
    }
}
