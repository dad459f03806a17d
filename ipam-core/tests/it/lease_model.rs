//! Model-based test of leases: random allocations with TTLs, renewals (one and by owner),
//! releases, log time moving forward and empty (tick) entries, against a reference model of
//! expiry and cooldown; two replicas (one reopened from its tables now and then) keep equal
//! digests. The model also produces the expected event log (allocations, releases, expiries,
//! pool updates, forced deletes in a batch, failed batches that leave no event), compared
//! with the tables' events and an address's history after every step, with and without a
//! small retention.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::Db;
use ipam_core::{
    ErrorCode, EventKind, Labels, Op, OpOutput, PoolSettings, PoolSpecV2, PoolUpdate, Stamp,
};
use proptest::prelude::*;

const POOL: &str = "p";
/// 10.0.0.0/29: .2 to .6 allocatable (gateway .1).
const FIRST: u32 = 0x0a00_0002;
const SIZE: u32 = 5;

#[derive(Clone, Debug)]
enum Step {
    Allocate {
        owner: u8,
        ip: Option<u8>,
        ttl: Option<u32>,
    },
    Release(u8),
    Renew(u8, Option<u32>),
    RenewOwner(u8),
    Advance(u64),
    Tick,
    Reopen,
    /// PATCH the description: a `pool_updated` event.
    Update,
    /// One batch: delete the pool with force, create it again.
    Recreate,
    /// A batch whose second op fails: nothing of it, its events included, remains.
    FailingBatch(u8),
}

fn addr(i: u8) -> IpAddr {
    IpAddr::V4((FIRST + u32::from(i) % SIZE).into())
}

fn ttl() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![Just(None), Just(Some(0)), Just(Some(10)), Just(Some(30))]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6, proptest::option::of(0u8..5), ttl())
            .prop_map(|(owner, ip, ttl)| Step::Allocate { owner, ip, ttl }),
        2 => (0u8..5).prop_map(Step::Release),
        2 => (0u8..5, ttl()).prop_map(|(i, t)| Step::Renew(i, t)),
        1 => (0u8..6).prop_map(Step::RenewOwner),
        3 => (0u64..25_000).prop_map(Step::Advance),
        1 => Just(Step::Tick),
        1 => Just(Step::Reopen),
        1 => Just(Step::Update),
        1 => Just(Step::Recreate),
        1 => (0u8..6).prop_map(Step::FailingBatch),
    ]
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MAlloc {
    owner: String,
    generation: u64,
    ttl: Option<u32>,
    expires: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    generation: u64,
    default_ttl: Option<u32>,
    cooldown_ms: u64,
    allocs: BTreeMap<IpAddr, MAlloc>,
    /// (released_at, address) → last owner.
    cooling: BTreeMap<(u64, IpAddr), String>,
    /// Every event so far, oldest first.
    events: Vec<MEvent>,
}

/// An event as the model predicts it: (at, kind, ip, owner, generation).
type MEvent = (u64, EventKind, Option<IpAddr>, Option<String>, Option<u64>);

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Alloc(IpAddr, bool, Option<u64>),
    Renewed(Vec<(IpAddr, Option<u64>)>),
    Done,
    Err(ErrorCode),
}

impl Model {
    fn entry(&mut self, stamp: u64) {
        self.now = self.now.max(stamp);
        let now = self.now;
        let cd = self.cooldown_ms;
        self.cooling.retain(|(at, _), _| at + cd > now);
        let mut due: Vec<(u64, IpAddr)> = self
            .allocs
            .iter()
            .filter_map(|(ip, a)| a.expires.filter(|e| *e <= now).map(|e| (e, *ip)))
            .collect();
        due.sort();
        for (_, ip) in due {
            self.remove(ip, EventKind::Expired);
        }
    }

    fn remove(&mut self, ip: IpAddr, kind: EventKind) {
        if let Some(a) = self.allocs.remove(&ip) {
            self.events.push((
                self.now,
                kind,
                Some(ip),
                Some(a.owner.clone()),
                Some(a.generation),
            ));
            if self.cooldown_ms > 0 {
                self.cooling.insert((self.now, ip), a.owner);
            }
        }
    }

    fn is_cooling(&self, ip: IpAddr) -> Option<&String> {
        self.cooling
            .iter()
            .find(|((_, i), _)| *i == ip)
            .map(|(_, o)| o)
    }

    fn renew(&mut self, ip: IpAddr, ttl: Option<u32>) -> Option<u64> {
        let now = self.now;
        let a = self.allocs.get_mut(&ip)?;
        let t = match ttl {
            Some(0) => None,
            Some(t) => Some(t),
            None => a.ttl,
        };
        a.ttl = t;
        a.expires = t.map(|t| now + u64::from(t) * 1000);
        a.expires
    }

    fn apply(&mut self, step: &Step) -> Out {
        match step {
            Step::Allocate { owner, ip, ttl } => {
                let owner = format!("o{owner}");
                let want = ip.map(addr);
                if let Some((&held, a)) = self.allocs.iter().find(|(_, a)| a.owner == owner) {
                    if want.is_some_and(|w| w != held) {
                        return Out::Err(ErrorCode::OwnerConflict);
                    }
                    let leased = a.expires.is_some();
                    let expires = if leased { self.renew(held, *ttl) } else { None };
                    return Out::Alloc(held, true, expires);
                }
                let chosen = match want {
                    Some(w) => match self.is_cooling(w) {
                        Some(last) if *last != owner => {
                            return Out::Err(ErrorCode::AddressCoolingDown)
                        }
                        Some(_) => w,
                        None if self.allocs.contains_key(&w) => {
                            return Out::Err(ErrorCode::AddressInUse)
                        }
                        None => w,
                    },
                    None => {
                        let mine = self
                            .cooling
                            .iter()
                            .filter(|(_, o)| **o == owner)
                            .map(|(k, _)| *k)
                            .max();
                        let free = (0..SIZE as u8).map(addr).find(|a| {
                            !self.allocs.contains_key(a) && self.is_cooling(*a).is_none()
                        });
                        let oldest = self.cooling.keys().next().map(|(_, ip)| *ip);
                        match mine.map(|(_, ip)| ip).or(free).or(oldest) {
                            Some(a) => a,
                            None => return Out::Err(ErrorCode::PoolExhausted),
                        }
                    }
                };
                self.cooling.retain(|(_, ip), _| *ip != chosen);
                let t = match ttl {
                    Some(0) => None,
                    Some(t) => Some(*t),
                    None => self.default_ttl,
                };
                self.generation += 1;
                let expires = t.map(|t| self.now + u64::from(t) * 1000);
                self.events.push((
                    self.now,
                    EventKind::Allocated,
                    Some(chosen),
                    Some(owner.clone()),
                    Some(self.generation),
                ));
                self.allocs.insert(
                    chosen,
                    MAlloc {
                        owner,
                        generation: self.generation,
                        ttl: t,
                        expires,
                    },
                );
                Out::Alloc(chosen, false, expires)
            }
            Step::Release(i) => {
                let ip = addr(*i);
                if !self.allocs.contains_key(&ip) {
                    return Out::Err(ErrorCode::AllocationNotFound);
                }
                self.remove(ip, EventKind::Released);
                Out::Done
            }
            Step::Renew(i, ttl) => {
                let ip = addr(*i);
                if !self.allocs.contains_key(&ip) {
                    return Out::Err(ErrorCode::AllocationNotFound);
                }
                let e = self.renew(ip, *ttl);
                Out::Renewed(vec![(ip, e)])
            }
            Step::RenewOwner(o) => {
                let owner = format!("o{o}");
                let held = self
                    .allocs
                    .iter()
                    .find(|(_, a)| a.owner == owner && a.expires.is_some())
                    .map(|(ip, _)| *ip);
                Out::Renewed(match held {
                    Some(ip) => vec![(ip, self.renew(ip, None))],
                    None => vec![],
                })
            }
            Step::Update => {
                self.events
                    .push((self.now, EventKind::PoolUpdated, None, None, None));
                Out::Done
            }
            Step::Recreate => {
                let held: Vec<IpAddr> = self.allocs.keys().copied().collect();
                for ip in held {
                    let a = self.allocs.remove(&ip).expect("held");
                    self.events.push((
                        self.now,
                        EventKind::Released,
                        Some(ip),
                        Some(a.owner),
                        Some(a.generation),
                    ));
                }
                self.cooling.clear();
                self.events
                    .push((self.now, EventKind::PoolDeleted, None, None, None));
                self.events
                    .push((self.now, EventKind::PoolCreated, None, None, None));
                Out::Done
            }
            Step::FailingBatch(_) => Out::Err(ErrorCode::PoolNotFound),
            Step::Advance(_) | Step::Tick | Step::Reopen => Out::Done,
        }
    }
}

fn to_op(step: &Step) -> Option<Op> {
    Some(match step {
        Step::Allocate { owner, ip, ttl } => Op::AllocateV2 {
            pool: POOL.into(),
            owner: format!("o{owner}"),
            ip: ip.map(addr),
            labels: Labels::new(),
            ttl_seconds: *ttl,
        },
        Step::Release(i) => Op::Release {
            pool: POOL.into(),
            ip: addr(*i),
            generation: None,
        },
        Step::Renew(i, ttl) => Op::Renew {
            pool: POOL.into(),
            ip: addr(*i),
            generation: None,
            ttl_seconds: *ttl,
        },
        Step::RenewOwner(o) => Op::RenewOwner {
            owner: format!("o{o}"),
        },
        Step::Update => Op::UpdatePool {
            pool: POOL.into(),
            revision: None,
            update: Box::new(PoolUpdate {
                description: Some("patched".into()),
                ..PoolUpdate::default()
            }),
        },
        _ => return None,
    })
}

fn outcome(r: Result<OpOutput, ipam_core::OpError>) -> Out {
    match r {
        Ok(OpOutput::AllocatedV2 {
            allocation,
            existing,
        }) => Out::Alloc(allocation.ip, existing, allocation.expires_at.map(|s| s.0)),
        Ok(OpOutput::Renewed(a)) => Out::Renewed(vec![(a.ip, a.expires_at.map(|s| s.0))]),
        Ok(OpOutput::RenewedOwner { renewed }) => Out::Renewed(
            renewed
                .into_iter()
                .map(|a| (a.ip, a.expires_at.map(|s| s.0)))
                .collect(),
        ),
        Ok(OpOutput::Released(_)) | Ok(OpOutput::PoolUpdated(_)) => Out::Done,
        Ok(other) => panic!("unexpected output {other:?}"),
        Err(e) => Out::Err(e.code()),
    }
}

fn batch_outcome(r: Result<Vec<OpOutput>, ipam_core::BatchError>) -> Out {
    match r {
        Ok(_) => Out::Done,
        Err(e) => Out::Err(e.error.code()),
    }
}

/// The events of `db` (every kept one) as the model writes them, after checking their ids are
/// the newest `kept` of `total`.
fn stored_events(db: &Db, total: usize) -> Result<Vec<MEvent>, TestCaseError> {
    let rtx = db.rtx();
    let mut out = Vec::new();
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = ipam_core::query::events(&rtx, after, None, 7).unwrap();
        for e in page.events {
            prop_assert_eq!(e.pool.as_str(), POOL);
            ids.push(e.id);
            out.push((e.at.0, e.kind, e.ip, e.owner, e.generation));
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let first = total - ids.len() + 1;
    prop_assert_eq!(ids, (first as u64..=total as u64).collect::<Vec<_>>());
    Ok(out)
}

fn run(
    default_ttl: Option<u32>,
    cooldown: u32,
    retention: Option<u64>,
    steps: Vec<Step>,
) -> Result<(), TestCaseError> {
    let mut a = Db::mem();
    let mut b = Db::mem();
    if let Some(r) = retention {
        a.state.set_event_retention(r);
        b.state.set_event_retention(r);
    }
    let mut model = Model {
        default_ttl,
        cooldown_ms: u64::from(cooldown) * 1000,
        ..Model::default()
    };
    let setup = [Op::CreatePoolV2(Box::new(PoolSpecV2 {
        base: common::spec(POOL, "10.0.0.0/29"),
        settings: PoolSettings {
            default_ttl_seconds: default_ttl.filter(|t| *t > 0),
            reuse_cooldown_seconds: cooldown,
            ..PoolSettings::default()
        },
    }))];
    for op in setup.clone() {
        a.op(op.clone()).expect("setup");
        b.op(op).expect("setup");
    }
    model.entry(a.stamp);
    model
        .events
        .push((model.now, EventKind::PoolCreated, None, None, None));
    for step in &steps {
        match step {
            Step::Advance(ms) => {
                a.advance(*ms);
                b.advance(*ms);
                continue;
            }
            Step::Reopen => {
                b.reopen();
                if let Some(r) = retention {
                    b.state.set_event_retention(r);
                }
                continue;
            }
            _ => {}
        }
        model.entry(a.stamp);
        let want = model.apply(step);
        let batch = match step {
            Step::Recreate => Some(vec![
                Op::DeletePool {
                    pool: POOL.into(),
                    force: true,
                },
                setup[0].clone(),
            ]),
            Step::FailingBatch(o) => Some(vec![
                // Releases what the owner holds (an event), then fails: both undone.
                Op::ReleaseOwner {
                    pool: POOL.into(),
                    owner: format!("o{o}"),
                },
                Op::DeletePool {
                    pool: "missing".into(),
                    force: false,
                },
            ]),
            _ => None,
        };
        let got = match (to_op(step), batch) {
            (Some(op), _) => {
                let ga = outcome(a.op(op.clone()));
                let gb = outcome(b.op(op));
                prop_assert_eq!(&ga, &gb, "replicas answered differently");
                ga
            }
            (None, Some(ops)) => {
                let ga = batch_outcome(a.batch(ops.clone()));
                let gb = batch_outcome(b.batch(ops));
                prop_assert_eq!(&ga, &gb, "replicas answered differently");
                ga
            }
            (None, None) => {
                a.apply(&[]);
                b.apply(&[]);
                Out::Done
            }
        };
        prop_assert_eq!(&got, &want, "step {:?}", step);
        prop_assert_eq!(a.digest(), b.digest(), "replicas diverged");
        // The tables agree with the model after every entry.
        let page = ipam_core::query::allocations(&a.rtx(), POOL, None, None, 100).unwrap();
        let held: Vec<(IpAddr, String, u64, Option<Stamp>)> = page
            .allocations
            .into_iter()
            .map(|x| (x.ip, x.owner, x.generation, x.expires_at))
            .collect();
        let expected: Vec<(IpAddr, String, u64, Option<Stamp>)> = model
            .allocs
            .iter()
            .map(|(ip, m)| (*ip, m.owner.clone(), m.generation, m.expires.map(Stamp)))
            .collect();
        prop_assert_eq!(held, expected);
        let cooling: BTreeSet<IpAddr> = model.cooling.keys().map(|(_, ip)| *ip).collect();
        prop_assert_eq!(a.state.cooling(POOL), Some(cooling.len()));
        prop_assert_eq!(b.state.cooling(POOL), Some(cooling.len()));

        // The event log: the newest `retention` of the model's events, with contiguous ids.
        let total = model.events.len();
        let kept = retention.map_or(total, |r| total.min(r as usize));
        let expected = &model.events[total - kept..];
        prop_assert_eq!(&stored_events(&a, total)?, expected);
        prop_assert_eq!(&stored_events(&b, total)?, expected);
        prop_assert_eq!(a.state.last_event_id(), total as u64);
        let truncated = ipam_core::query::events(&a.rtx(), Some(0), None, 10);
        prop_assert_eq!(
            truncated.is_err(),
            kept < total,
            "history_truncated exactly when events were pruned"
        );
        // An address's history, newest first.
        let ip = addr(0);
        let want: Vec<MEvent> = expected
            .iter()
            .rev()
            .filter(|e| e.2 == Some(ip))
            .cloned()
            .collect();
        let got: Vec<MEvent> = ipam_core::query::history(&a.rtx(), ip, 1000)
            .unwrap()
            .into_iter()
            .map(|e| (e.at.0, e.kind, e.ip, e.owner, e.generation))
            .collect();
        prop_assert_eq!(got, want);
        for db in [&a, &b] {
            let problems = ipam_core::check::check(&db.state, &db.rtx()).unwrap();
            prop_assert!(problems.is_empty(), "{:?}", problems);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn leases_and_cooldown_match_the_model(
        default_ttl in prop_oneof![Just(None), Just(Some(20u32))],
        cooldown in prop_oneof![Just(0u32), Just(15), Just(60)],
        retention in prop_oneof![Just(None), Just(Some(5u64))],
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        run(default_ttl, cooldown, retention, steps)?;
    }
}
