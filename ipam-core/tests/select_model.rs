//! Model-based test of selection: random pools (labels, family, weight, cap, frozen, sizes) and
//! random selections and releases, checked against a reference that computes the contract's
//! rule directly — the chosen pool is the held one or the minimum score, no cap is ever
//! exceeded by selection, and the errors match. A reopen midway checks the rebuilt indexes.

mod common;

use std::collections::BTreeMap;

use common::{spec, Db};
use ipam_core::{
    ErrorCode, Family, Labels, Op, OpError, OpOutput, PoolSettings, PoolSpecV2, PoolUpdate,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct ModelPool {
    name: String,
    family: Family,
    labels: Labels,
    weight: u16,
    cap_ppm: u32,
    frozen: bool,
    capacity: u128,
    /// owner → held (one address per pool).
    held: BTreeMap<String, ()>,
}

impl ModelPool {
    fn allocated(&self) -> u128 {
        self.held.len() as u128
    }
    fn matches(&self, selector: &Labels, family: Option<Family>) -> bool {
        family.is_none_or(|f| f == self.family)
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

#[derive(Clone, Debug)]
enum Step {
    Select {
        owner: u8,
        selector: u8,
        family: Option<bool>,
    },
    Release {
        owner: u8,
        pool: u8,
    },
    Freeze {
        pool: u8,
        frozen: bool,
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

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..24, 0u8..6, proptest::option::of(any::<bool>()))
            .prop_map(|(owner, selector, family)| Step::Select { owner, selector, family }),
        2 => (0u8..24, 0u8..6).prop_map(|(owner, pool)| Step::Release { owner, pool }),
        1 => (0u8..6, any::<bool>()).prop_map(|(pool, frozen)| Step::Freeze { pool, frozen }),
        1 => Just(Step::Reopen),
    ]
}

/// (zone, tier, ipv6, weight, cap ppm, prefix length) per pool.
fn pools() -> impl Strategy<Value = Vec<(usize, usize, bool, u16, u32, u8)>> {
    proptest::collection::vec(
        (
            0..ZONES.len(),
            0..TIERS.len(),
            any::<bool>(),
            prop_oneof![Just(1u16), Just(100), Just(250), Just(1000), 1u16..1000],
            prop_oneof![Just(1_000_000u32), Just(500_000), 100_000u32..1_000_000],
            28u8..31,
        ),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn selection_matches_the_reference(pools in pools(), steps in proptest::collection::vec(step(), 1..80)) {
        let mut db = Db::mem();
        let mut model: Vec<ModelPool> = Vec::new();
        for (i, (zone, tier, v6, weight, cap_ppm, len)) in pools.into_iter().enumerate() {
            let name = format!("p{i}");
            let (cidr, family) = if v6 {
                (format!("fd00:{i}::/{}", len + 96), Family::V6)
            } else {
                (format!("10.{i}.0.0/{len}"), Family::V4)
            };
            let mut base = spec(&name, &cidr);
            base.labels = Labels::from([
                ("zone".to_string(), ZONES[zone].to_string()),
                ("tier".to_string(), TIERS[tier].to_string()),
            ]);
            let settings = PoolSettings { weight, max_utilization_ppm: cap_ppm, ..PoolSettings::default() };
            let created = match db.op(Op::CreatePoolV2(Box::new(PoolSpecV2 { base: base.clone(), settings }))) {
                Ok(OpOutput::PoolCreated(p)) => p,
                other => panic!("create {cidr}: {other:?}"),
            };
            model.push(ModelPool {
                name,
                family,
                labels: base.labels,
                weight,
                cap_ppm,
                frozen: false,
                capacity: created.stats.capacity,
                held: BTreeMap::new(),
            });
        }
        for step in steps {
            match step {
                Step::Select { owner, selector: s, family } => {
                    let owner = format!("o{owner}");
                    let selector = selector(s);
                    let family = family.map(|v6| if v6 { Family::V6 } else { Family::V4 });
                    let got = db.op(Op::AllocateAny {
                        owner: owner.clone(),
                        selector: selector.clone(),
                        family,
                        labels: Labels::new(),
                        ttl_seconds: None,
                    });
                    let matching: Vec<usize> = (0..model.len()).filter(|i| model[*i].matches(&selector, family)).collect();
                    let held = matching.iter().copied().find(|i| model[*i].held.contains_key(&owner));
                    let expect: Result<(usize, bool), ErrorCode> = if let Some(i) = held {
                        Ok((i, true))
                    } else if matching.is_empty() {
                        Err(ErrorCode::NoMatchingPool)
                    } else {
                        let best = matching
                            .iter()
                            .copied()
                            .filter(|i| !model[*i].frozen && model[*i].under_cap())
                            .min_by(|a, b| lower(&model[*a], &model[*b]).then(model[*a].name.cmp(&model[*b].name)));
                        best.map(|i| (i, false)).ok_or(ErrorCode::PoolExhausted)
                    };
                    match (got, expect) {
                        (Ok(OpOutput::AllocatedV2 { allocation, existing }), Ok((i, ex))) => {
                            prop_assert_eq!(&allocation.pool, &model[i].name);
                            prop_assert_eq!(existing, ex);
                            model[i].held.insert(owner, ());
                        }
                        (Err(e), Err(code)) => prop_assert_eq!(e.code(), code),
                        (got, expect) => prop_assert!(false, "got {:?}, expected {:?}", got, expect),
                    }
                }
                Step::Release { owner, pool } => {
                    let Some(p) = model.get_mut(usize::from(pool)) else { continue };
                    let owner = format!("o{owner}");
                    let out = db.op(Op::ReleaseOwner { pool: p.name.clone(), owner: owner.clone() });
                    let released = matches!(out, Ok(OpOutput::ReleasedOwner { released }) if released.len() == 1);
                    prop_assert_eq!(released, p.held.remove(&owner).is_some());
                }
                Step::Freeze { pool, frozen } => {
                    let Some(p) = model.get_mut(usize::from(pool)) else { continue };
                    let out: Result<OpOutput, OpError> = db.op(Op::UpdatePool {
                        pool: p.name.clone(),
                        revision: None,
                        update: Box::new(PoolUpdate { frozen: Some(frozen), ..PoolUpdate::default() }),
                    });
                    prop_assert!(out.is_ok());
                    p.frozen = frozen;
                }
                Step::Reopen => db.reopen(),
            }
            for p in &model {
                // Selection alone filled these pools: none is over its cap.
                prop_assert!(p.allocated() * 1_000_000 <= u128::from(p.cap_ppm) * p.capacity, "{} over its cap", p.name);
            }
        }
    }
}
