//! Model-based tests: random command sequences applied to the real state and to a plain
//! reference model (a `BTreeSet` of allocatable addresses and a `BTreeMap` of allocations per
//! pool) must give the same results, and the tables must agree with the model after every
//! apply call. The reference computes allocatable addresses by enumerating each small CIDR,
//! independently of the free-interval index.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::common::Db;
use ipam_core::command::{Command, CommandResult, Op, OpOutput};
use ipam_core::{
    query, Cidr, ErrorCode, Family, GatewayChoice, Labels, OpError, PoolSpec, PoolUpdate, Reserved,
};
use proptest::prelude::*;

/// Candidate pools: some overlap each other, some are invalid.
fn candidates() -> Vec<PoolSpec> {
    let mk = |name: &str, cidr: &str, gateway: GatewayChoice, reserved: &[&str]| PoolSpec {
        name: name.to_string(),
        cidr: cidr.parse().unwrap(),
        gateway,
        reserved: reserved.iter().map(|r| r.parse().unwrap()).collect(),
        labels: Labels::new(),
        description: String::new(),
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    vec![
        mk("a", "10.0.0.0/29", GatewayChoice::Default, &["10.0.0.5"]),
        mk("b", "10.0.0.0/30", GatewayChoice::None, &[]),
        mk("c", "10.0.1.0/31", GatewayChoice::Default, &[]),
        mk("d", "10.0.1.4/32", GatewayChoice::None, &[]),
        mk(
            "e",
            "10.0.0.16/28",
            GatewayChoice::Addr(ip("10.0.0.30")),
            &["10.0.0.20-10.0.0.25", "10.0.0.24/30"],
        ),
        mk("f", "fd00::/126", GatewayChoice::Default, &["fd00::2"]),
        mk("g", "fd00::10/127", GatewayChoice::Default, &[]),
        mk("h", "fd00::20/128", GatewayChoice::None, &[]),
        mk("i", "fd00::/124", GatewayChoice::Addr(ip("fd00::3")), &[]),
        mk("j", "10.0.1.0/29", GatewayChoice::Default, &[]),
        // Invalid: reserved outside; nothing allocatable.
        mk("k", "10.0.2.0/30", GatewayChoice::Default, &["10.0.3.1"]),
        mk(
            "l",
            "10.0.2.4/30",
            GatewayChoice::Default,
            &["10.0.2.5-10.0.2.6"],
        ),
        mk(
            "m",
            "fd00::30/124",
            GatewayChoice::Default,
            &["fd00::31-fd00::3f"],
        ),
    ]
}

/// Addresses the generator picks from: every address of every candidate, plus outsiders.
fn addresses() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = Vec::new();
    for i in 0..32u32 {
        v.push(IpAddr::from([10, 0, 0, i as u8]));
    }
    for i in 0..8u32 {
        v.push(IpAddr::from([10, 0, 1, i as u8]));
    }
    for i in 0..0x40u128 {
        v.push(Family::V6.addr((0xfd00u128 << 112) | i));
    }
    v.push("10.9.9.9".parse().unwrap());
    v.push("fd09::9".parse().unwrap());
    v
}

fn pos(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn cidr_addrs(c: &Cidr) -> Vec<IpAddr> {
    let bits = c.family().bits();
    let n = 1u128 << (bits - c.prefix());
    let base = pos(c.network());
    (0..n).map(|i| c.family().addr(base + i)).collect()
}

/// The reference's reading of the contract, by enumeration.
fn allocatable(spec: &PoolSpec) -> Option<(BTreeSet<IpAddr>, Option<IpAddr>)> {
    let c = spec.cidr;
    let all = cidr_addrs(&c);
    let mut set: BTreeSet<IpAddr> = all.iter().copied().collect();
    let first = all[0];
    let last = *all.last().unwrap();
    let default_gw = match c.family() {
        Family::V4 if c.prefix() <= 30 => {
            set.remove(&first);
            set.remove(&last);
            Some(all[1])
        }
        Family::V6 if c.prefix() <= 126 => {
            set.remove(&first);
            None
        }
        _ => None,
    };
    let gw = match spec.gateway {
        GatewayChoice::Default => default_gw,
        GatewayChoice::None => None,
        GatewayChoice::Addr(a) => Some(a),
    };
    if let Some(g) = gw {
        set.remove(&g);
    }
    for r in &spec.reserved {
        let (lo, hi) = match r {
            Reserved::Addr(a) => (*a, *a),
            Reserved::Range(a, b) => (*a, *b),
            Reserved::Cidr(rc) => {
                let v = cidr_addrs(rc);
                (v[0], *v.last().unwrap())
            }
        };
        if !c.contains(lo) || !c.contains(hi) {
            return None;
        }
        set.retain(|a| pos(*a) < pos(lo) || pos(*a) > pos(hi));
    }
    if set.is_empty() {
        return None;
    }
    Some((set, gw))
}

#[derive(Clone, Debug)]
struct MPool {
    spec: PoolSpec,
    extra: Vec<Cidr>,
    /// Allocatable addresses of each range, in the order ranges were added.
    sets: Vec<BTreeSet<IpAddr>>,
    allocs: BTreeMap<IpAddr, (String, u64)>,
    owners: BTreeMap<String, IpAddr>,
    frozen: bool,
    revision: u64,
}

/// The allocatable sets of a pool with `base`'s first range and `extra` ranges (default
/// gateways), reserved entries each inside one range; `None` when that is not a valid pool.
fn shape(base: &PoolSpec, extra: &[Cidr]) -> Option<Vec<BTreeSet<IpAddr>>> {
    let cidrs: Vec<Cidr> = std::iter::once(base.cidr)
        .chain(extra.iter().copied())
        .collect();
    let mut per: Vec<Vec<Reserved>> = vec![Vec::new(); cidrs.len()];
    for r in &base.reserved {
        let (lo, hi) = match r {
            Reserved::Addr(a) => (*a, *a),
            Reserved::Range(a, b) => (*a, *b),
            Reserved::Cidr(rc) => {
                let v = cidr_addrs(rc);
                (v[0], *v.last().unwrap())
            }
        };
        let i = cidrs
            .iter()
            .position(|c| c.contains(lo) && c.contains(hi))?;
        per[i].push(*r);
    }
    cidrs
        .iter()
        .zip(per)
        .enumerate()
        .map(|(i, (c, reserved))| {
            let spec = PoolSpec {
                cidr: *c,
                gateway: if i == 0 {
                    base.gateway
                } else {
                    GatewayChoice::Default
                },
                reserved,
                ..base.clone()
            };
            allocatable(&spec).map(|(set, _)| set)
        })
        .collect()
}

impl MPool {
    fn allocatable(&self, ip: &IpAddr) -> bool {
        self.sets.iter().any(|s| s.contains(ip))
    }
    fn contains(&self, ip: IpAddr) -> bool {
        std::iter::once(&self.spec.cidr)
            .chain(&self.extra)
            .any(|c| c.contains(ip))
    }
    fn capacity(&self) -> u128 {
        self.sets.iter().map(|s| s.len() as u128).sum()
    }
    /// What the next allocations without an address by new owners get, in order.
    fn preview(&self, n: usize) -> Vec<IpAddr> {
        if self.frozen {
            return Vec::new();
        }
        self.sets
            .iter()
            .flat_map(|s| s.iter())
            .filter(|a| !self.allocs.contains_key(a))
            .take(n)
            .copied()
            .collect()
    }
}

/// Extra ranges the generator adds: some overlap candidates, one is IPv6.
fn extra_ranges() -> Vec<Cidr> {
    [
        "10.0.1.8/30",
        "10.0.1.12/32",
        "10.0.0.8/29",
        "fd00::40/127",
        "10.0.1.0/31",
    ]
    .iter()
    .map(|c| c.parse().unwrap())
    .collect()
}

#[derive(Clone, Debug, Default)]
struct Model {
    pools: BTreeMap<String, MPool>,
    generation: u64,
}

/// What the comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Created(u128),
    Updated {
        revision: u64,
        capacity: u128,
    },
    Deleted(u64),
    Allocated {
        ip: IpAddr,
        owner: String,
        generation: u64,
        existing: bool,
    },
    Released(IpAddr, String, u64),
    ReleasedOwner(Vec<IpAddr>),
    Err(ErrorCode),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum CmdOutcome {
    Op(Outcome),
    Batch(Result<Vec<Outcome>, (usize, ErrorCode)>),
}

fn outcome(r: Result<OpOutput, OpError>) -> Outcome {
    match r {
        Ok(OpOutput::PoolCreated(p)) => Outcome::Created(p.stats.capacity),
        Ok(OpOutput::PoolDeleted { released }) => Outcome::Deleted(released),
        Ok(OpOutput::Allocated {
            allocation,
            existing,
        }) => Outcome::Allocated {
            ip: allocation.ip,
            owner: allocation.owner,
            generation: allocation.generation,
            existing,
        },
        Ok(OpOutput::Released(a)) => Outcome::Released(a.ip, a.owner, a.generation),
        Ok(OpOutput::ReleasedOwner { released }) => Outcome::ReleasedOwner(released),
        Ok(OpOutput::PoolUpdated(p)) => Outcome::Updated {
            revision: p.revision,
            capacity: p.stats.capacity,
        },
        Err(e) => Outcome::Err(e.code()),
        // Leases have their own model (tests/lease_model.rs); this one generates no lease op.
        Ok(other) => panic!("output of an op this model does not generate: {other:?}"),
    }
}

impl Model {
    fn apply(&mut self, op: &Op) -> Outcome {
        use ErrorCode::*;
        match op {
            Op::CreatePool(spec) => {
                let Some((allocatable, _)) = allocatable(spec) else {
                    return Outcome::Err(InvalidArgument);
                };
                if self.pools.contains_key(&spec.name) {
                    return Outcome::Err(PoolExists);
                }
                if self.overlaps(&spec.cidr) {
                    return Outcome::Err(PoolOverlap);
                }
                let cap = allocatable.len() as u128;
                self.pools.insert(
                    spec.name.clone(),
                    MPool {
                        spec: spec.clone(),
                        extra: Vec::new(),
                        sets: vec![allocatable],
                        allocs: BTreeMap::new(),
                        owners: BTreeMap::new(),
                        frozen: false,
                        revision: 1,
                    },
                );
                Outcome::Created(cap)
            }
            Op::DeletePool { pool, force } => {
                let Some(p) = self.pools.get(pool) else {
                    return Outcome::Err(PoolNotFound);
                };
                if p.frozen {
                    return Outcome::Err(PoolFrozen);
                }
                if !p.allocs.is_empty() && !force {
                    return Outcome::Err(PoolNotEmpty);
                }
                let n = p.allocs.len() as u64;
                self.pools.remove(pool);
                Outcome::Deleted(n)
            }
            Op::Allocate {
                pool, owner, ip, ..
            } => {
                let Some(p) = self.pools.get_mut(pool) else {
                    return Outcome::Err(PoolNotFound);
                };
                if let Some(ip) = ip {
                    if !p.allocatable(ip) {
                        return Outcome::Err(InvalidArgument);
                    }
                }
                if let Some(held) = p.owners.get(owner) {
                    if ip.is_some_and(|r| r != *held) {
                        return Outcome::Err(OwnerConflict);
                    }
                    let (o, g) = &p.allocs[held];
                    return Outcome::Allocated {
                        ip: *held,
                        owner: o.clone(),
                        generation: *g,
                        existing: true,
                    };
                }
                let chosen = match ip {
                    Some(ip) if p.allocs.contains_key(ip) => return Outcome::Err(AddressInUse),
                    Some(ip) => *ip,
                    None if p.frozen => return Outcome::Err(PoolFrozen),
                    None => match p.preview(1).first() {
                        Some(a) => *a,
                        None => return Outcome::Err(PoolExhausted),
                    },
                };
                self.generation += 1;
                p.allocs.insert(chosen, (owner.clone(), self.generation));
                p.owners.insert(owner.clone(), chosen);
                Outcome::Allocated {
                    ip: chosen,
                    owner: owner.clone(),
                    generation: self.generation,
                    existing: false,
                }
            }
            Op::Release {
                pool,
                ip,
                generation,
            } => {
                let Some(p) = self.pools.get_mut(pool) else {
                    return Outcome::Err(PoolNotFound);
                };
                if !p.contains(*ip) {
                    return Outcome::Err(InvalidArgument);
                }
                let Some((owner, g)) = p.allocs.get(ip).cloned() else {
                    return Outcome::Err(AllocationNotFound);
                };
                if generation.is_some_and(|want| want != g) {
                    return Outcome::Err(GenerationMismatch);
                }
                p.allocs.remove(ip);
                p.owners.remove(&owner);
                Outcome::Released(*ip, owner, g)
            }
            Op::ReleaseOwner { pool, owner } => {
                let Some(p) = self.pools.get_mut(pool) else {
                    return Outcome::Err(PoolNotFound);
                };
                match p.owners.remove(owner) {
                    Some(ip) => {
                        p.allocs.remove(&ip);
                        Outcome::ReleasedOwner(vec![ip])
                    }
                    None => Outcome::ReleasedOwner(vec![]),
                }
            }
            Op::UpdatePool {
                pool,
                revision,
                update,
            } => {
                let Some(p) = self.pools.get(pool) else {
                    return Outcome::Err(PoolNotFound);
                };
                if revision.is_some_and(|r| r != p.revision) {
                    return Outcome::Err(RevisionMismatch);
                }
                let mut next = p.clone();
                if let Some(reserved) = &update.reserved {
                    next.spec.reserved = reserved.clone();
                    let Some(sets) = shape(&next.spec, &next.extra) else {
                        return Outcome::Err(InvalidArgument);
                    };
                    if next
                        .allocs
                        .keys()
                        .any(|a| !sets.iter().any(|s| s.contains(a)))
                    {
                        return Outcome::Err(AddressInUse);
                    }
                    next.sets = sets;
                }
                if let Some(f) = update.frozen {
                    next.frozen = f;
                }
                next.revision += 1;
                let out = Outcome::Updated {
                    revision: next.revision,
                    capacity: next.capacity(),
                };
                self.pools.insert(pool.clone(), next);
                out
            }
            Op::AddRange { pool, cidr, .. } => {
                let Some(p) = self.pools.get(pool) else {
                    return Outcome::Err(PoolNotFound);
                };
                if cidr.family() != p.spec.cidr.family() {
                    return Outcome::Err(InvalidArgument);
                }
                if self.overlaps(cidr) {
                    return Outcome::Err(PoolOverlap);
                }
                let mut next = p.clone();
                next.extra.push(*cidr);
                let Some(sets) = shape(&next.spec, &next.extra) else {
                    return Outcome::Err(InvalidArgument);
                };
                next.sets = sets;
                next.revision += 1;
                let out = Outcome::Updated {
                    revision: next.revision,
                    capacity: next.capacity(),
                };
                self.pools.insert(pool.clone(), next);
                out
            }
            Op::RemoveRange { pool, cidr } => {
                let Some(p) = self.pools.get(pool) else {
                    return Outcome::Err(PoolNotFound);
                };
                let Some(i) = p.extra.iter().position(|c| c == cidr) else {
                    // The first range, or none of the pool's.
                    return Outcome::Err(InvalidArgument);
                };
                if p.allocs.keys().any(|a| cidr.contains(*a)) {
                    return Outcome::Err(RangeNotEmpty);
                }
                let mut next = p.clone();
                next.extra.remove(i);
                let Some(sets) = shape(&next.spec, &next.extra) else {
                    return Outcome::Err(InvalidArgument);
                };
                next.sets = sets;
                next.revision += 1;
                let out = Outcome::Updated {
                    revision: next.revision,
                    capacity: next.capacity(),
                };
                self.pools.insert(pool.clone(), next);
                out
            }
            other => panic!("the generator does not produce {other:?}"),
        }
    }

    fn overlaps(&self, cidr: &Cidr) -> bool {
        self.pools.values().any(|p| {
            std::iter::once(&p.spec.cidr)
                .chain(&p.extra)
                .any(|c| c.overlaps(cidr))
        })
    }

    fn apply_command(&mut self, c: &Command) -> CmdOutcome {
        match c {
            Command::Op(op) => CmdOutcome::Op(self.apply(op)),
            // The generator tags nothing; tags are tested in `tests/requests.rs`.
            Command::Tagged { command, .. } => self.apply_command(command),
            Command::Batch(ops) => {
                // Stateless validation of every op runs before any op applies; the only
                // stateless failure the generator produces is an invalid pool spec.
                if let Some(i) = ops.iter().position(
                    |op| matches!(op, Op::CreatePool(spec) if allocatable(spec).is_none()),
                ) {
                    return CmdOutcome::Batch(Err((i, ErrorCode::InvalidArgument)));
                }
                let saved = self.clone();
                let mut outs = Vec::new();
                for (i, op) in ops.iter().enumerate() {
                    match self.apply(op) {
                        Outcome::Err(code) => {
                            *self = saved;
                            return CmdOutcome::Batch(Err((i, code)));
                        }
                        o => outs.push(o),
                    }
                }
                CmdOutcome::Batch(Ok(outs))
            }
        }
    }
}

/// A generated op; addresses and fences are resolved against the model when run, so fences
/// are sometimes exactly right.
#[derive(Clone, Debug)]
enum GenOp {
    Create(usize),
    Delete(usize, bool),
    Alloc(usize, usize, Option<usize>),
    Release(usize, usize, u8),
    ReleaseOwner(usize, usize),
    /// Pool, extra range.
    AddRange(usize, usize),
    /// Pool, range (an extra one, or the pool's first when out of the list).
    RemoveRange(usize, usize),
    /// Pool, frozen, fence (0: none, 1: right, 2: wrong).
    Freeze(usize, bool, u8),
    /// Pool, reserved address (none: clear), fence.
    Reserve(usize, Option<usize>, u8),
}

#[derive(Clone, Debug)]
enum GenCmd {
    Op(GenOp),
    Batch(Vec<GenOp>),
}

const NAMES: usize = 14; // 13 candidates + one never created

fn gen_op() -> impl Strategy<Value = GenOp> {
    let n_addr = addresses().len();
    prop_oneof![
        2 => (0..NAMES).prop_map(GenOp::Create),
        1 => (0..NAMES, any::<bool>()).prop_map(|(p, f)| GenOp::Delete(p, f)),
        6 => (0..NAMES, 0..6usize, proptest::option::weighted(0.4, 0..n_addr))
            .prop_map(|(p, o, a)| GenOp::Alloc(p, o, a)),
        3 => (0..NAMES, 0..n_addr, 0..3u8).prop_map(|(p, a, f)| GenOp::Release(p, a, f)),
        2 => (0..NAMES, 0..6usize).prop_map(|(p, o)| GenOp::ReleaseOwner(p, o)),
        2 => (0..NAMES, 0..5usize).prop_map(|(p, r)| GenOp::AddRange(p, r)),
        1 => (0..NAMES, 0..6usize).prop_map(|(p, r)| GenOp::RemoveRange(p, r)),
        1 => (0..NAMES, proptest::bool::weighted(0.4), 0..3u8)
            .prop_map(|(p, f, x)| GenOp::Freeze(p, f, x)),
        1 => (0..NAMES, proptest::option::weighted(0.7, 0..n_addr), 0..3u8)
            .prop_map(|(p, a, x)| GenOp::Reserve(p, a, x)),
    ]
}

fn gen_cmd() -> impl Strategy<Value = GenCmd> {
    prop_oneof![
        4 => gen_op().prop_map(GenCmd::Op),
        1 => proptest::collection::vec(gen_op(), 1..6).prop_map(GenCmd::Batch),
    ]
}

struct World {
    specs: Vec<PoolSpec>,
    addrs: Vec<IpAddr>,
    extra: Vec<Cidr>,
}

impl World {
    fn new() -> World {
        World {
            specs: candidates(),
            addrs: addresses(),
            extra: extra_ranges(),
        }
    }

    fn name(&self, i: usize) -> String {
        self.specs
            .get(i)
            .map_or_else(|| "zz".to_string(), |s| s.name.clone())
    }

    fn resolve(&self, g: &GenOp, model: &Model) -> Op {
        match g {
            GenOp::Create(i) => {
                Op::CreatePool(self.specs.get(*i).cloned().unwrap_or_else(|| PoolSpec {
                    name: "zz".into(),
                    ..self.specs[0].clone()
                }))
            }
            GenOp::Delete(p, force) => Op::DeletePool {
                pool: self.name(*p),
                force: *force,
            },
            GenOp::Alloc(p, o, a) => Op::Allocate {
                pool: self.name(*p),
                owner: format!("o{o}"),
                ip: a.map(|a| self.addrs[a]),
                labels: Labels::new(),
            },
            GenOp::Release(p, a, fence) => {
                let pool = self.name(*p);
                let ip = self.addrs[*a];
                let actual = model
                    .pools
                    .get(&pool)
                    .and_then(|mp| mp.allocs.get(&ip))
                    .map_or(1, |(_, g)| *g);
                Op::Release {
                    pool,
                    ip,
                    generation: match fence {
                        0 => None,
                        1 => Some(actual),
                        _ => Some(actual + 1000),
                    },
                }
            }
            GenOp::ReleaseOwner(p, o) => Op::ReleaseOwner {
                pool: self.name(*p),
                owner: format!("o{o}"),
            },
            GenOp::AddRange(p, r) => Op::AddRange {
                pool: self.name(*p),
                cidr: self.extra[*r],
                gateway: GatewayChoice::Default,
            },
            GenOp::RemoveRange(p, r) => {
                let pool = self.name(*p);
                let cidr = self.extra.get(*r).copied().unwrap_or_else(|| {
                    model
                        .pools
                        .get(&pool)
                        .map_or(self.extra[0], |mp| mp.spec.cidr)
                });
                Op::RemoveRange { pool, cidr }
            }
            GenOp::Freeze(p, frozen, fence) => Op::UpdatePool {
                pool: self.name(*p),
                revision: self.fence(model, *p, *fence),
                update: Box::new(PoolUpdate {
                    frozen: Some(*frozen),
                    ..PoolUpdate::default()
                }),
            },
            GenOp::Reserve(p, a, fence) => Op::UpdatePool {
                pool: self.name(*p),
                revision: self.fence(model, *p, *fence),
                update: Box::new(PoolUpdate {
                    reserved: Some(
                        a.map(|a| Reserved::Addr(self.addrs[a]))
                            .into_iter()
                            .collect(),
                    ),
                    ..PoolUpdate::default()
                }),
            },
        }
    }

    fn fence(&self, model: &Model, p: usize, fence: u8) -> Option<u64> {
        let actual = model.pools.get(&self.name(p)).map_or(1, |mp| mp.revision);
        match fence {
            0 => None,
            1 => Some(actual),
            _ => Some(actual + 7),
        }
    }
}

fn real_outcome(r: CommandResult) -> CmdOutcome {
    match r {
        CommandResult::Op(r) => CmdOutcome::Op(outcome(r)),
        CommandResult::Batch(Ok(outs)) => {
            CmdOutcome::Batch(Ok(outs.into_iter().map(|o| outcome(Ok(o))).collect()))
        }
        CommandResult::Batch(Err(e)) => CmdOutcome::Batch(Err((e.index, e.error.code()))),
        CommandResult::IdempotencyKeyReused => unreachable!("the generator sends no keys"),
    }
}

/// The tables agree with the model: stats, every allocation in address order (paged),
/// address and owner lookups.
fn check_tables(db: &Db, model: &Model) -> Result<(), TestCaseError> {
    let rtx = db.rtx();
    let pools = query::pools(&rtx, &Labels::new()).unwrap();
    prop_assert_eq!(
        pools.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
        model.pools.keys().cloned().collect::<Vec<_>>()
    );
    for p in &pools {
        let mp = &model.pools[&p.name];
        prop_assert_eq!(p.stats.capacity, mp.capacity());
        prop_assert_eq!(p.revision, mp.revision);
        prop_assert_eq!(p.settings.frozen, mp.frozen);
        prop_assert_eq!(
            p.ranges.iter().map(|r| r.cidr).collect::<Vec<_>>(),
            std::iter::once(mp.spec.cidr)
                .chain(mp.extra.iter().copied())
                .collect::<Vec<_>>()
        );
        // The preview is what the next allocations by new owners get.
        prop_assert_eq!(query::next_free(&rtx, &p.name, 16).unwrap(), mp.preview(16));
        prop_assert_eq!(p.stats.allocated, mp.allocs.len() as u128);
        let mut after = None;
        let mut listed = Vec::new();
        loop {
            let page = query::allocations(&rtx, &p.name, None, after, 2).unwrap();
            listed.extend(
                page.allocations
                    .iter()
                    .map(|a| (a.ip, (a.owner.clone(), a.generation))),
            );
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let want: Vec<_> = mp.allocs.iter().map(|(k, v)| (*k, v.clone())).collect();
        prop_assert_eq!(&listed, &want);
        for (ip, (owner, _)) in &mp.allocs {
            prop_assert!(mp.allocatable(ip), "unallocatable {} handed out", ip);
            let info = query::address(&rtx, *ip).unwrap();
            prop_assert_eq!(info.pool.as_deref(), Some(p.name.as_str()));
            prop_assert_eq!(info.allocation.map(|a| a.owner), Some(owner.clone()));
            let by_owner = query::owner_allocation(&rtx, &p.name, owner).unwrap();
            prop_assert_eq!(by_owner.map(|a| a.ip), Some(*ip));
        }
        let in_memory = db.state.pool(&p.name).unwrap();
        prop_assert_eq!(in_memory.stats, p.stats);
        // The index's size is bounded by what is carved out of the range, never by its size:
        // each allocation, reserved entry, edge address or gateway adds at most one interval.
        let bound = mp.allocs.len() + p.reserved.len() + 4 * p.ranges.len();
        prop_assert!(db.state.free_intervals(&p.name).unwrap() <= bound);
    }
    Ok(())
}

fn run(cmds: &[GenCmd], chunk_sizes: &[usize], tail: &[GenCmd]) -> Result<(), TestCaseError> {
    let world = World::new();
    let mut model = Model::default();
    let mut a = Db::mem();
    let mut b = Db::mem();
    let mut i = 0;
    let mut chunk = chunk_sizes.iter().cycle();
    while i < cmds.len() {
        let n = (*chunk.next().unwrap_or(&1)).min(cmds.len() - i);
        // Resolve each command against the model as of that command (fences need it).
        let mut commands = Vec::new();
        let mut want = Vec::new();
        for g in &cmds[i..i + n] {
            let c = match g {
                GenCmd::Op(op) => Command::Op(world.resolve(op, &model)),
                GenCmd::Batch(ops) => {
                    Command::Batch(ops.iter().map(|op| world.resolve(op, &model)).collect())
                }
            };
            want.push(model.apply_command(&c));
            commands.push(c);
        }
        let got: Vec<_> = a.apply(&commands).into_iter().map(real_outcome).collect();
        prop_assert_eq!(&got, &want, "commands {:?}", commands);
        let got_b: Vec<_> = b.apply(&commands).into_iter().map(real_outcome).collect();
        prop_assert_eq!(&got_b, &want);
        check_tables(&a, &model)?;
        prop_assert_eq!(a.digest(), b.digest(), "replicas diverged");
        i += n;
    }
    prop_assert_eq!(a.state.generation(), model.generation);
    // Restart one replica: same tables, then the same decisions as the one that kept running.
    b.reopen();
    prop_assert_eq!(a.digest(), b.digest());
    for g in tail {
        let c = match g {
            GenCmd::Op(op) => Command::Op(world.resolve(op, &model)),
            GenCmd::Batch(ops) => {
                Command::Batch(ops.iter().map(|op| world.resolve(op, &model)).collect())
            }
        };
        let want = model.apply_command(&c);
        let ra = real_outcome(a.apply(std::slice::from_ref(&c)).remove(0));
        let rb = real_outcome(b.apply(std::slice::from_ref(&c)).remove(0));
        prop_assert_eq!(&ra, &want);
        prop_assert_eq!(&rb, &want);
    }
    prop_assert_eq!(a.digest(), b.digest());
    check_tables(&b, &model)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn state_matches_reference_model(
        cmds in proptest::collection::vec(gen_cmd(), 1..60),
        chunks in proptest::collection::vec(1usize..5, 1..4),
        tail in proptest::collection::vec(gen_cmd(), 0..15),
    ) {
        run(&cmds, &chunks, &tail)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Allocation-heavy sequences that fill pools, so exhaustion and reuse are common.
    #[test]
    fn dense_pools_match_reference_model(
        creates in proptest::collection::vec(0..NAMES, 3..8),
        ops in proptest::collection::vec(
            prop_oneof![
                5 => (0..NAMES, 0..6usize).prop_map(|(p, o)| GenOp::Alloc(p, o, None)),
                2 => (0..NAMES, 0..6usize).prop_map(|(p, o)| GenOp::ReleaseOwner(p, o)),
            ],
            1..80,
        ),
    ) {
        let mut cmds: Vec<GenCmd> = creates.into_iter().map(|p| GenCmd::Op(GenOp::Create(p))).collect();
        cmds.extend(ops.into_iter().map(GenCmd::Op));
        run(&cmds, &[3, 1, 7], &[])?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Pools that grow by ranges, some below their first range, so allocation order across
    /// ranges (first range first, in the order added) and the preview are exercised densely.
    #[test]
    fn pools_growing_by_ranges_match_reference_model(
        creates in proptest::collection::vec(proptest::sample::select(vec![0usize, 1, 3, 4]), 2..5),
        ops in proptest::collection::vec(
            {
                let pool = || proptest::sample::select(vec![0usize, 1, 3, 4]);
                prop_oneof![
                    4 => (pool(), 0..6usize).prop_map(|(p, o)| GenOp::Alloc(p, o, None)),
                    3 => (pool(), 0..5usize).prop_map(|(p, r)| GenOp::AddRange(p, r)),
                    1 => (pool(), 0..6usize).prop_map(|(p, r)| GenOp::RemoveRange(p, r)),
                    2 => (pool(), 0..6usize).prop_map(|(p, o)| GenOp::ReleaseOwner(p, o)),
                    1 => (pool(), any::<bool>(), 0..3u8)
                        .prop_map(|(p, f, x)| GenOp::Freeze(p, f, x)),
                ]
            },
            1..60,
        ),
    ) {
        let mut cmds: Vec<GenCmd> = creates.into_iter().map(|p| GenCmd::Op(GenOp::Create(p))).collect();
        cmds.extend(ops.into_iter().map(GenCmd::Op));
        run(&cmds, &[1, 2, 5], &[])?;
    }
}
