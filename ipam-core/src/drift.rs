//! Drift between the pools' allocations and an observed inventory, and the reconcile plan
//! that fixes it.
//!
//! Both are pure functions over [`PoolView`]s (a pool's shape, allocations and cooling
//! addresses, loaded by the caller from a read transaction for a dry run, or from the write
//! transaction inside `apply` for a real run), so a dry run and the run the state machine
//! decides compute the same plan from the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::pools::{NetworkConfig, PoolShape};
use crate::types::{Allocation, Stamp};
use crate::validate::{check_name, check_owner};

/// At most this many pools in one drift or reconcile request.
pub const MAX_POOLS: usize = 100;
/// At most this many observed entries in one request.
pub const MAX_OBSERVED: usize = 20_000;
/// Default grace period: allocations made or renewed this recently are never released or
/// reassigned by a reconcile.
pub const DEFAULT_GRACE_SECONDS: u32 = 300;
/// Largest grace period accepted (one year, like every other duration of the API).
pub const MAX_GRACE_SECONDS: u32 = 31_536_000;

/// One address seen on a host, with the owner it was seen for when known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The address.
    pub ip: IpAddr,
    /// Who uses it, when the inventory knows.
    pub owner: Option<String>,
}

/// Observed in a pool but not allocated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unknown {
    /// The address.
    pub ip: IpAddr,
    /// The pool whose ranges contain it.
    pub pool: String,
    /// The observed owner, if the inventory named one.
    pub owner: Option<String>,
}

/// Allocated to one owner, observed for another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatched {
    /// The address.
    pub ip: IpAddr,
    /// Its pool.
    pub pool: String,
    /// The owner of the allocation.
    pub expected_owner: String,
    /// The owner the inventory names.
    pub observed_owner: String,
    /// The allocation's generation.
    pub generation: u64,
}

/// The four classes of drift; every list is in address order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Observed entries that match an allocation.
    pub in_sync: u64,
    /// Observed in one of the pools, not allocated.
    pub unknown: Vec<Unknown>,
    /// Allocated, not observed.
    pub missing: Vec<Allocation>,
    /// Allocated to another owner than the observed one.
    pub mismatched: Vec<Mismatched>,
    /// Observed in none of the pools.
    pub outside: Vec<IpAddr>,
}

/// One pool as drift and reconcile see it.
#[derive(Clone, Debug)]
pub struct PoolView {
    /// Name.
    pub name: String,
    /// Its ranges and which addresses are allocatable.
    pub shape: PoolShape,
    /// Its allocations, in address order.
    pub allocations: Vec<Allocation>,
    /// Addresses still cooling after a release, with their last owner.
    pub cooling: BTreeMap<IpAddr, String>,
}

/// Which classes a reconcile fixes, and its grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileOptions {
    /// Allocate unknown addresses to their observed owners.
    pub adopt_unknown: bool,
    /// Release allocations that were not observed.
    pub release_missing: bool,
    /// Give mismatched addresses to their observed owners.
    pub fix_mismatched: bool,
    /// Allocations made or renewed less than this long (log time) before the run are never
    /// released or reassigned.
    pub grace_seconds: u32,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            adopt_unknown: true,
            release_missing: false,
            fix_mismatched: false,
            grace_seconds: DEFAULT_GRACE_SECONDS,
        }
    }
}

/// A reconcile as the log carries it (a real run; a dry run never reaches the log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileSpec {
    /// The pools compared, 1..=100.
    pub pools: Vec<String>,
    /// The inventory, at most 20,000 entries, each address once.
    pub observed: Vec<Observed>,
    /// What to fix.
    pub options: ReconcileOptions,
    /// The applied index of the reviewed dry run: refuse if a pool changed after it.
    pub as_of: Option<u64>,
}

/// Why a change of the plan was left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SkipReason {
    /// The observed owner already holds another address in the pool.
    OwnerConflict,
    /// The address cools for another owner.
    AddressCoolingDown,
    /// The address is not allocatable (network, broadcast, gateway, reserved).
    InvalidArgument,
    /// The inventory names no owner for an unknown address.
    NoOwner,
    /// Made or renewed within the grace period.
    InGrace,
}

impl SkipReason {
    /// The snake_case reason of the contract (an error code, or `no_owner` / `in_grace`).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::OwnerConflict => "owner_conflict",
            SkipReason::AddressCoolingDown => "address_cooling_down",
            SkipReason::InvalidArgument => "invalid_argument",
            SkipReason::NoOwner => "no_owner",
            SkipReason::InGrace => "in_grace",
        }
    }
}

/// A change left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The address.
    pub ip: IpAddr,
    /// Why.
    pub reason: SkipReason,
}

/// An unknown address to allocate to its observed owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adopt {
    /// Pool.
    pub pool: String,
    /// Address.
    pub ip: IpAddr,
    /// Observed owner.
    pub owner: String,
}

/// What a reconcile changes: releases first, then reassignments, then adoptions (so an owner
/// whose stale address is released can adopt the one it really uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Missing allocations to release.
    pub release: Vec<Allocation>,
    /// Mismatched allocations and their new owner.
    pub reassign: Vec<(Allocation, String)>,
    /// Unknown addresses to allocate.
    pub adopt: Vec<Adopt>,
    /// Left out, in address order.
    pub skipped: Vec<Skipped>,
}

/// What a reconcile did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Log index the report was decided at: the entry of a real run; for a dry run the
    /// applied index it read (set by the caller, which knows it).
    pub as_of: u64,
    /// Allocations made for unknown addresses.
    pub adopted: Vec<Allocation>,
    /// Allocations released because they were missing.
    pub released: Vec<Allocation>,
    /// The new allocations of mismatched addresses.
    pub reassigned: Vec<Allocation>,
    /// Changes left out, in address order.
    pub skipped: Vec<Skipped>,
    /// The drift the plan was computed from.
    pub drift: DriftReport,
}

/// Checks a request's pools and observed list (the limits, names, owners, no address twice).
pub fn check_request(pools: &[String], observed: &[Observed]) -> Result<(), InputError> {
    let bad = |field: &str, reason: String| InputError::InvalidSetting {
        field: field.into(),
        reason,
    };
    if pools.is_empty() || pools.len() > MAX_POOLS {
        return Err(bad(
            "pools",
            format!("must name 1 to {MAX_POOLS} pools, got {}", pools.len()),
        ));
    }
    let mut names = BTreeSet::new();
    for p in pools {
        check_name(p)?;
        if !names.insert(p.as_str()) {
            return Err(bad("pools", format!("pool {p:?} is named twice")));
        }
    }
    if observed.len() > MAX_OBSERVED {
        return Err(bad(
            "observed",
            format!("at most {MAX_OBSERVED} entries, got {}", observed.len()),
        ));
    }
    let mut seen = BTreeSet::new();
    for o in observed {
        if let Some(owner) = &o.owner {
            check_owner(owner)?;
        }
        if !seen.insert(o.ip) {
            return Err(bad("observed", format!("address {} is listed twice", o.ip)));
        }
    }
    Ok(())
}

/// Checks a reconcile request: [`check_request`] and the grace period.
pub fn check_spec(spec: &ReconcileSpec) -> Result<(), InputError> {
    check_request(&spec.pools, &spec.observed)?;
    if spec.options.grace_seconds > MAX_GRACE_SECONDS {
        return Err(InputError::InvalidSetting {
            field: "grace_seconds".into(),
            reason: format!(
                "must be 0 to {MAX_GRACE_SECONDS}, got {}",
                spec.options.grace_seconds
            ),
        });
    }
    Ok(())
}

/// Compares `observed` with the allocations of `pools` (whose ranges are disjoint).
pub fn drift(pools: &[PoolView], observed: &[Observed]) -> DriftReport {
    let mut allocated: BTreeMap<IpAddr, &Allocation> = BTreeMap::new();
    for p in pools {
        for a in &p.allocations {
            allocated.insert(a.ip, a);
        }
    }
    let mut sorted: Vec<&Observed> = observed.iter().collect();
    sorted.sort_by_key(|o| o.ip);
    let mut report = DriftReport::default();
    let mut seen = BTreeSet::new();
    for o in sorted {
        seen.insert(o.ip);
        let Some(pool) = pools.iter().find(|p| p.shape.contains(o.ip)) else {
            report.outside.push(o.ip);
            continue;
        };
        match allocated.get(&o.ip) {
            None => report.unknown.push(Unknown {
                ip: o.ip,
                pool: pool.name.clone(),
                owner: o.owner.clone(),
            }),
            Some(a) => match &o.owner {
                Some(owner) if *owner != a.owner => report.mismatched.push(Mismatched {
                    ip: o.ip,
                    pool: a.pool.clone(),
                    expected_owner: a.owner.clone(),
                    observed_owner: owner.clone(),
                    generation: a.generation,
                }),
                _ => report.in_sync += 1,
            },
        }
    }
    report.missing = allocated
        .into_iter()
        .filter(|(ip, _)| !seen.contains(ip))
        .map(|(_, a)| a.clone())
        .collect();
    report
}

/// Whether `a` was made or renewed less than `grace_seconds` of log time before `now`.
pub fn in_grace(a: &Allocation, now: Stamp, grace_seconds: u32) -> bool {
    let last = a.allocated_at.max(a.renewed_at);
    now.0.saturating_sub(last.0) < u64::from(grace_seconds) * 1000
}

/// The changes that fix the classes `options` chooses in `report`, decided against `pools`
/// (owner holdings, allocatable addresses, cooling) at log time `now`.
pub fn plan(
    pools: &[PoolView],
    report: &DriftReport,
    options: &ReconcileOptions,
    now: Stamp,
) -> Plan {
    let view: BTreeMap<&str, &PoolView> = pools.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut holders: BTreeSet<(&str, &str)> = BTreeSet::new();
    for p in pools {
        for a in &p.allocations {
            holders.insert((p.name.as_str(), a.owner.as_str()));
        }
    }
    let mut out = Plan::default();
    let grace = |a: &Allocation| in_grace(a, now, options.grace_seconds);
    let skip = |out: &mut Plan, ip, reason| out.skipped.push(Skipped { ip, reason });
    let mut allocations: BTreeMap<IpAddr, &Allocation> = BTreeMap::new();
    for p in pools {
        for a in &p.allocations {
            allocations.insert(a.ip, a);
        }
    }
    if options.release_missing {
        for a in &report.missing {
            if grace(a) {
                skip(&mut out, a.ip, SkipReason::InGrace);
            } else {
                holders.remove(&(a.pool.as_str(), a.owner.as_str()));
                out.release.push(a.clone());
            }
        }
    }
    if options.fix_mismatched {
        for m in &report.mismatched {
            let Some(a) = allocations.get(&m.ip) else {
                continue;
            };
            if grace(a) {
                skip(&mut out, m.ip, SkipReason::InGrace);
            } else if holders.contains(&(m.pool.as_str(), m.observed_owner.as_str())) {
                skip(&mut out, m.ip, SkipReason::OwnerConflict);
            } else {
                holders.remove(&(m.pool.as_str(), m.expected_owner.as_str()));
                holders.insert((m.pool.as_str(), m.observed_owner.as_str()));
                out.reassign.push(((*a).clone(), m.observed_owner.clone()));
            }
        }
    }
    if options.adopt_unknown {
        for u in &report.unknown {
            let Some(owner) = &u.owner else {
                skip(&mut out, u.ip, SkipReason::NoOwner);
                continue;
            };
            let Some(p) = view.get(u.pool.as_str()) else {
                continue;
            };
            if p.shape.unallocatable(u.ip).is_some() {
                skip(&mut out, u.ip, SkipReason::InvalidArgument);
            } else if p.cooling.get(&u.ip).is_some_and(|last| last != owner) {
                skip(&mut out, u.ip, SkipReason::AddressCoolingDown);
            } else if holders.contains(&(u.pool.as_str(), owner.as_str())) {
                skip(&mut out, u.ip, SkipReason::OwnerConflict);
            } else {
                holders.insert((u.pool.as_str(), owner.as_str()));
                out.adopt.push(Adopt {
                    pool: u.pool.clone(),
                    ip: u.ip,
                    owner: owner.clone(),
                });
            }
        }
    }
    out.skipped.sort_by_key(|s| s.ip);
    out
}

/// What a dry run reports: the plan's changes as the allocations they would produce, with
/// `network` giving an address's interface configuration.
///
/// Adopted and reassigned allocations get no generation (0) and `now` as their time: the real
/// run decides those.
pub fn preview(
    plan: &Plan,
    drift: DriftReport,
    now: Stamp,
    network: impl Fn(&str, IpAddr) -> Option<Box<NetworkConfig>>,
) -> ReconcileReport {
    let fresh = |pool: &str, ip: IpAddr, owner: &str| Allocation {
        ip,
        pool: pool.to_string(),
        owner: owner.to_string(),
        generation: 0,
        allocated_at: now,
        labels: Default::default(),
        ttl_seconds: None,
        expires_at: None,
        renewed_at: now,
        network: network(pool, ip),
        prefix: None,
    };
    ReconcileReport {
        as_of: 0,
        adopted: plan
            .adopt
            .iter()
            .map(|a| fresh(&a.pool, a.ip, &a.owner))
            .collect(),
        released: plan.release.clone(),
        reassigned: plan
            .reassign
            .iter()
            .map(|(a, owner)| fresh(&a.pool, a.ip, owner))
            .collect(),
        skipped: plan.skipped.clone(),
        drift,
    }
}

#[cfg(test)]
mod tests;
