//! Model-based test of selection: random pools (labels, family, weight, cap, frozen, sizes) and
//! random sequences of selections, allocations by name, releases, freezes, label / weight /
//! cap changes, deletions, re-creations and batches (some of which fail and roll back),
//! checked against a reference that computes the contract's rule directly — the chosen pool
//! is the held one or the minimum score, no cap is exceeded by selection, and the errors (with
//! their matching count) match. After every step the score-ordered index must equal one
//! rebuilt from the pools, and its choice a scan of every pool, for every selector
//! ([`State::check_select_index`]); a reopen midway checks the indexes rebuilt on load.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{spec, Db};
use ipam_core::{
    AllocateError, BatchError, ErrorCode, Family, Labels, Op, OpError, OpOutput, PoolSettings,
    PoolSpecV2, PoolUpdate,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct ModelPool {
    name: String,
    cidr: String,
    family: Family,
    labels: Labels,
    weight: u16,
    cap_ppm: u32,
    frozen: bool,
    capacity: u128,
    alive: bool,
    /// Filled by selection alone, at the cap it has had all along: never over it.
    capped: bool,
    /// Owners holding an address (one per pool).
    held: BTreeSet<String>,
}

impl ModelPool {
    fn allocated(&self) -> u128 {
        self.held.len() as u128
    }
    fn matches(&self, selector: &Labels, family: Option<Family>) -> bool {
        self.alive
            && family.is_none_or(|f| f == self.family)
            && selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
    fn under_cap(&self) -> bool {
        self.allocated() < self.capacity
            && (self.allocated() + 1) * 1_000_000 <= u128::from(self.cap_ppm) * self.capacity
    }
}

/// `a` scores lower than `b`: `a.alloc / (a.cap · a.w) < b.alloc / (b.cap · b.w)`.
fn lower(a: &ModelPool, b: &ModelPool) -> std::cmp::Ordering {
    let l = a.allocated() * b.capacity * u128::from(b.weight);
    let r = b.allocated() * a.capacity * u128::from(a.weight);
    l.cmp(&r)
}

/// What an op did, as the model predicts it and as the result shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Chosen {
        pool: String,
        existing: bool,
    },
    Released(bool),
    Done,
    /// `NoPoolAvailable` with its count of matching pools.
    NoPool {
        matching: u64,
    },
    Failed(ErrorCode),
}

impl Outcome {
    fn failed(&self) -> bool {
        matches!(self, Outcome::NoPool { .. } | Outcome::Failed(_))
    }
}

fn observe(result: Result<OpOutput, OpError>) -> Outcome {
    match result {
        Ok(OpOutput::AllocatedV2 {
            allocation,
            existing,
        }) => Outcome::Chosen {
            pool: allocation.pool,
            existing,
        },
        Ok(OpOutput::ReleasedOwner { released }) => Outcome::Released(released.len() == 1),
        Ok(OpOutput::PoolUpdated(_) | OpOutput::PoolDeleted { .. } | OpOutput::PoolCreated(_)) => {
            Outcome::Done
        }
        Ok(other) => panic!("unexpected output {other:?}"),
        Err(OpError::Allocate(AllocateError::NoPoolAvailable { matching, .. })) => {
            Outcome::NoPool { matching }
        }
        Err(e) => Outcome::Failed(e.code()),
    }
}

/// (zone, tier) or no labels at all.
type LabelChoice = Option<(usize, usize)>;

#[derive(Clone, Debug)]
enum Step {
    Select {
        owner: u8,
        selector: u8,
        family: Option<bool>,
    },
    Allocate {
        owner: u8,
        pool: u8,
    },
    Release {
        owner: u8,
        pool: u8,
    },
    Freeze {
        pool: u8,
        frozen: bool,
    },
    Patch {
        pool: u8,
        labels: Option<LabelChoice>,
        weight: Option<u16>,
        cap_ppm: Option<u32>,
    },
    Delete {
        pool: u8,
    },
    Create {
        pool: u8,
        labels: LabelChoice,
        weight: u16,
        cap_ppm: u32,
    },
    /// An atomic batch; `fail` appends an op that fails, so everything rolls back.
    Batch {
        steps: Vec<Step>,
        fail: bool,
    },
    Reopen,
}

const ZONES: [&str; 3] = ["a", "b", "c"];
const TIERS: [&str; 2] = ["gold", "iron"];

fn selector(i: u8) -> Labels {
    let mut l = Labels::new();
    match i % 6 {
        0 => {}
        1 => {
            l.insert("zone".into(), "a".into());
        }
        2 => {
            l.insert("zone".into(), "b".into());
        }
        3 => {
            l.insert("tier".into(), "gold".into());
        }
        4 => {
            l.insert("zone".into(), "a".into());
            l.insert("tier".into(), "iron".into());
        }
        _ => {
            l.insert("zone".into(), "nowhere".into());
        }
    }
    l
}

fn labels_of(choice: LabelChoice) -> Labels {
    match choice {
        None => Labels::new(),
        Some((zone, tier)) => Labels::from([
            ("zone".to_string(), ZONES[zone].to_string()),
            ("tier".to_string(), TIERS[tier].to_string()),
        ]),
    }
}

fn weight() -> impl Strategy<Value = u16> {
    prop_oneof![Just(1u16), Just(100), Just(250), Just(1000), 1u16..1000]
}

fn cap_ppm() -> impl Strategy<Value = u32> {
    prop_oneof![Just(1_000_000u32), Just(500_000), 100_000u32..1_000_000]
}

fn label_choice() -> impl Strategy<Value = LabelChoice> {
    prop_oneof![
        1 => Just(None),
        4 => (0..ZONES.len(), 0..TIERS.len()).prop_map(Some),
    ]
}

/// Every step that writes (a batch holds these).
fn write_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..24, 0u8..6, proptest::option::of(any::<bool>()))
            .prop_map(|(owner, selector, family)| Step::Select { owner, selector, family }),
        2 => (0u8..24, 0u8..6).prop_map(|(owner, pool)| Step::Allocate { owner, pool }),
        3 => (0u8..24, 0u8..6).prop_map(|(owner, pool)| Step::Release { owner, pool }),
        1 => (0u8..6, any::<bool>()).prop_map(|(pool, frozen)| Step::Freeze { pool, frozen }),
        1 => (
            0u8..6,
            proptest::option::of(label_choice()),
            proptest::option::of(weight()),
            proptest::option::of(cap_ppm()),
        )
            .prop_map(|(pool, labels, weight, cap_ppm)| Step::Patch { pool, labels, weight, cap_ppm }),
        1 => (0u8..6).prop_map(|pool| Step::Delete { pool }),
        1 => (0u8..6, label_choice(), weight(), cap_ppm())
            .prop_map(|(pool, labels, weight, cap_ppm)| Step::Create { pool, labels, weight, cap_ppm }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        16 => write_step(),
        2 => (proptest::collection::vec(write_step(), 1..5), any::<bool>())
            .prop_map(|(steps, fail)| Step::Batch { steps, fail }),
        1 => Just(Step::Reopen),
    ]
}

/// (labels, ipv6, weight, cap ppm, prefix length) per pool.
fn pools() -> impl Strategy<Value = Vec<(LabelChoice, bool, u16, u32, u8)>> {
    proptest::collection::vec(
        (label_choice(), any::<bool>(), weight(), cap_ppm(), 28u8..31),
        1..7,
    )
}

fn create_op(p: &ModelPool) -> Op {
    let mut base = spec(&p.name, &p.cidr);
    base.labels = p.labels.clone();
    let settings = PoolSettings {
        weight: p.weight,
        max_utilization_ppm: p.cap_ppm,
        ..PoolSettings::default()
    };
    Op::CreatePoolV2(Box::new(PoolSpecV2 { base, settings }))
}

fn update_op(name: &str, update: PoolUpdate) -> Op {
    Op::UpdatePool {
        pool: name.to_string(),
        revision: None,
        update: Box::new(update),
    }
}

/// The op of a write step and its predicted outcome, applied to `model` when it succeeds.
/// `None` for a step that does not apply (a pool slot out of range, a live pool re-created).
fn predict(model: &mut [ModelPool], step: &Step) -> Option<(Op, Outcome)> {
    Some(match step {
        Step::Select {
            owner,
            selector: s,
            family,
        } => {
            let owner = format!("o{owner}");
            let selector = selector(*s);
            let family = family.map(|v6| if v6 { Family::V6 } else { Family::V4 });
            let op = Op::AllocateAny {
                owner: owner.clone(),
                selector: selector.clone(),
                family,
                labels: Labels::new(),
                ttl_seconds: None,
            };
            let matching: Vec<usize> = (0..model.len())
                .filter(|i| model[*i].matches(&selector, family))
                .collect();
            let held = matching
                .iter()
                .copied()
                .filter(|i| model[*i].held.contains(&owner))
                .min_by(|a, b| model[*a].name.cmp(&model[*b].name));
            let chosen = if let Some(i) = held {
                Ok((i, true))
            } else if matching.is_empty() {
                Err(Outcome::Failed(ErrorCode::NoMatchingPool))
            } else {
                matching
                    .iter()
                    .copied()
                    .filter(|i| !model[*i].frozen && model[*i].under_cap())
                    .min_by(|a, b| {
                        lower(&model[*a], &model[*b]).then(model[*a].name.cmp(&model[*b].name))
                    })
                    .map(|i| (i, false))
                    .ok_or(Outcome::NoPool {
                        matching: matching.len() as u64,
                    })
            };
            match chosen {
                Ok((i, existing)) => {
                    model[i].held.insert(owner);
                    (
                        op,
                        Outcome::Chosen {
                            pool: model[i].name.clone(),
                            existing,
                        },
                    )
                }
                Err(outcome) => (op, outcome),
            }
        }
        Step::Allocate { owner, pool } => {
            let p = model.get_mut(usize::from(*pool))?;
            let owner = format!("o{owner}");
            let op = Op::AllocateV2 {
                pool: p.name.clone(),
                owner: owner.clone(),
                ip: None,
                labels: Labels::new(),
                ttl_seconds: None,
            };
            let outcome = if !p.alive {
                Outcome::Failed(ErrorCode::PoolNotFound)
            } else if p.held.contains(&owner) {
                Outcome::Chosen {
                    pool: p.name.clone(),
                    existing: true,
                }
            } else if p.frozen {
                Outcome::Failed(ErrorCode::PoolFrozen)
            } else if p.allocated() >= p.capacity {
                Outcome::Failed(ErrorCode::PoolExhausted)
            } else {
                // A named allocation ignores the cap.
                p.held.insert(owner);
                p.capped = false;
                Outcome::Chosen {
                    pool: p.name.clone(),
                    existing: false,
                }
            };
            (op, outcome)
        }
        Step::Release { owner, pool } => {
            let p = model.get_mut(usize::from(*pool))?;
            let owner = format!("o{owner}");
            let op = Op::ReleaseOwner {
                pool: p.name.clone(),
                owner: owner.clone(),
            };
            let outcome = if p.alive {
                Outcome::Released(p.held.remove(&owner))
            } else {
                Outcome::Failed(ErrorCode::PoolNotFound)
            };
            (op, outcome)
        }
        Step::Freeze { pool, frozen } => {
            let p = model.get_mut(usize::from(*pool))?;
            let op = update_op(
                &p.name,
                PoolUpdate {
                    frozen: Some(*frozen),
                    ..PoolUpdate::default()
                },
            );
            if !p.alive {
                return Some((op, Outcome::Failed(ErrorCode::PoolNotFound)));
            }
            p.frozen = *frozen;
            (op, Outcome::Done)
        }
        Step::Patch {
            pool,
            labels,
            weight,
            cap_ppm,
        } => {
            let p = model.get_mut(usize::from(*pool))?;
            let op = update_op(
                &p.name,
                PoolUpdate {
                    labels: labels.map(labels_of),
                    weight: *weight,
                    max_utilization_ppm: *cap_ppm,
                    ..PoolUpdate::default()
                },
            );
            if !p.alive {
                return Some((op, Outcome::Failed(ErrorCode::PoolNotFound)));
            }
            if let Some(l) = labels {
                p.labels = labels_of(*l);
            }
            if let Some(w) = weight {
                p.weight = *w;
            }
            if let Some(c) = cap_ppm {
                p.capped &= *c >= p.cap_ppm;
                p.cap_ppm = *c;
            }
            (op, Outcome::Done)
        }
        Step::Delete { pool } => {
            let p = model.get_mut(usize::from(*pool))?;
            let op = Op::DeletePool {
                pool: p.name.clone(),
                force: true,
            };
            let outcome = if !p.alive {
                Outcome::Failed(ErrorCode::PoolNotFound)
            } else if p.frozen {
                Outcome::Failed(ErrorCode::PoolFrozen)
            } else {
                p.alive = false;
                p.held.clear();
                Outcome::Done
            };
            (op, outcome)
        }
        Step::Create {
            pool,
            labels,
            weight,
            cap_ppm,
        } => {
            let p = model.get_mut(usize::from(*pool))?;
            if p.alive {
                return None;
            }
            p.alive = true;
            p.frozen = false;
            p.capped = true;
            p.labels = labels_of(*labels);
            p.weight = *weight;
            p.cap_ppm = *cap_ppm;
            (create_op(p), Outcome::Done)
        }
        Step::Batch { .. } | Step::Reopen => unreachable!("not a write step"),
    })
}

/// The op that fails a batch at its end, and how.
fn failing_op() -> (Op, Outcome) {
    (
        Op::ReleaseOwner {
            pool: "no-such-pool".to_string(),
            owner: "o0".to_string(),
        },
        Outcome::Failed(ErrorCode::PoolNotFound),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn selection_matches_the_reference(pools in pools(), steps in proptest::collection::vec(step(), 1..80)) {
        let mut db = Db::mem();
        let mut model: Vec<ModelPool> = Vec::new();
        for (i, (labels, v6, weight, cap_ppm, len)) in pools.into_iter().enumerate() {
            let (cidr, family) = if v6 {
                (format!("fd00:{i}::/{}", len + 96), Family::V6)
            } else {
                (format!("10.{i}.0.0/{len}"), Family::V4)
            };
            let mut p = ModelPool {
                name: format!("p{i}"),
                cidr,
                family,
                labels: labels_of(labels),
                weight,
                cap_ppm,
                frozen: false,
                capacity: 0,
                alive: true,
                capped: true,
                held: BTreeSet::new(),
            };
            p.capacity = match db.op(create_op(&p)) {
                Ok(OpOutput::PoolCreated(info)) => info.stats.capacity,
                other => panic!("create {}: {other:?}", p.cidr),
            };
            model.push(p);
        }
        prop_assert_eq!(db.state.check_select_index(), Ok(()));
        for step in steps {
            match &step {
                Step::Reopen => db.reopen(),
                Step::Batch { steps, fail } => {
                    let mut next = model.clone();
                    let mut ops = Vec::new();
                    let mut expect = Vec::new();
                    for s in steps {
                        if let Some((op, outcome)) = predict(&mut next, s) {
                            ops.push(op);
                            expect.push(outcome);
                        }
                    }
                    if *fail {
                        let (op, outcome) = failing_op();
                        ops.push(op);
                        expect.push(outcome);
                    }
                    if ops.is_empty() {
                        continue;
                    }
                    let got = db.batch(ops);
                    match expect.iter().position(Outcome::failed) {
                        Some(index) => {
                            let Err(BatchError { index: at, error }) = got else {
                                panic!("batch should fail at {index}: {got:?}");
                            };
                            prop_assert_eq!(at, index);
                            prop_assert_eq!(observe(Err(error)), expect[index].clone());
                        }
                        None => {
                            let got = got.map_err(|e| format!("{e:?}"));
                            prop_assert!(got.is_ok(), "batch failed: {:?}", got);
                            let outcomes: Vec<Outcome> =
                                got.unwrap_or_default().into_iter().map(|o| observe(Ok(o))).collect();
                            prop_assert_eq!(outcomes, expect);
                            model = next;
                        }
                    }
                }
                write => {
                    let Some((op, expect)) = predict(&mut model, write) else { continue };
                    prop_assert_eq!(observe(db.op(op)), expect, "{:?}", write);
                }
            }
            prop_assert_eq!(db.state.check_select_index(), Ok(()), "after {:?}", step);
            for p in model.iter().filter(|p| p.alive && p.capped) {
                prop_assert!(
                    p.allocated() * 1_000_000 <= u128::from(p.cap_ppm) * p.capacity,
                    "{} over its cap", p.name
                );
            }
        }
        // Every pool's count as the model has it (the index is derived from these).
        let counts: BTreeMap<String, u128> = model
            .iter()
            .filter(|p| p.alive)
            .map(|p| (p.name.clone(), p.allocated()))
            .collect();
        for (name, count) in counts {
            prop_assert_eq!(db.state.pool(&name).map(|i| i.stats.allocated), Some(count));
        }
    }
}
