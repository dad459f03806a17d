//! Choosing the pool: the exact score comparison, the utilization cap, and the derived indexes
//! that keep a selection independent of the number of pools that do not match.
//!
//! A pool's score is `(allocated / capacity) / weight`. Capacities reach 2^128 in IPv6 pools,
//! so scores are compared by cross-multiplying into 320-bit integers
//! (`a1 · c2 · w2` against `a2 · c1 · w1`) — exact, and free of floating point, as `apply`
//! must be. The cap `(allocated + 1) / capacity ≤ max_utilization_ppm / 10^6` is compared the
//! same way.
//!
//! [`SelectIndex`] holds two derived maps, rebuilt on load and never persisted:
//! label pair → pools carrying it (the candidates of a selector are the smallest set among its
//! pairs, filtered by the rest), and owner → pools where the owner holds or cools an address
//! (so "the owner's existing allocation among the matching pools" costs one lookup per pool
//! the owner uses, not one per matching pool). The owner map is keyed by a 64-bit hash of the
//! owner and may hold stale pools: every candidate is confirmed against the tables, and a
//! stale one is dropped when met.
//!
//! A third derived map orders the pools that can take an address now (address pools, not
//! frozen, under their cap) by exact score, then name (`Ranked` keys, `select/order.rs`), per
//! family, once for every pool and once per label pair. The lowest-score choice walks the
//! narrowest pair's set from its start and stops at the first pool that carries the rest of
//! the selector, so it costs O(log n) per allocation or release of a pool (to move it in its
//! sets) instead of a scan of every candidate per choice. `State` marks a pool stale at every
//! change of its count, settings, labels or existence (rollback included) and re-files the
//! stale pools before the next choice, and files every pool on load.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::pools::PPM;
use crate::types::{Family, Labels, PoolId};

mod order;
mod owners;
pub(crate) use order::Eligible;
use order::{ByFamily, Placement};
use owners::OwnerIndex;

/// A 320-bit unsigned integer as five 64-bit limbs, least significant first.
type Wide = [u64; 5];

/// `a · b · c` exactly.
fn mul3(a: u128, b: u128, c: u64) -> Wide {
    let a = [a as u64, (a >> 64) as u64];
    let b = [b as u64, (b >> 64) as u64];
    let mut ab = [0u64; 4];
    for (i, &x) in a.iter().enumerate() {
        let mut carry: u128 = 0;
        for (j, &y) in b.iter().enumerate() {
            let t = u128::from(x) * u128::from(y) + u128::from(ab[i + j]) + carry;
            ab[i + j] = t as u64;
            carry = t >> 64;
        }
        ab[i + 2] = carry as u64;
    }
    let mut out = [0u64; 5];
    let mut carry: u128 = 0;
    for (i, &x) in ab.iter().enumerate() {
        let t = u128::from(x) * u128::from(c) + carry;
        out[i] = t as u64;
        carry = t >> 64;
    }
    out[4] = carry as u64;
    out
}

/// `p · w` exactly, as (high, low) with the low part under 2^64.
fn times_weight(p: u128, w: u16) -> (u128, u128) {
    let w = u128::from(w);
    let lo = (p & u128::from(u64::MAX)) * w;
    let hi = (p >> 64) * w + (lo >> 64);
    (hi, lo & u128::from(u64::MAX))
}

fn cmp_wide(a: &Wide, b: &Wide) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

/// The load of one pool as selection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Allocations before this one.
    pub allocated: u128,
    /// Allocatable addresses (blocks in a prefix pool).
    pub capacity: u128,
    /// Weight, 1..=1000.
    pub weight: u16,
    /// Cap on utilization in parts per million.
    pub max_utilization_ppm: u32,
}

impl Load {
    /// Compares `(allocated / capacity) / weight` of two pools exactly. A pool with no
    /// capacity or weight never takes an address, so it compares as the highest.
    pub fn cmp_score(&self, other: &Load) -> Ordering {
        let empty = |l: &Load| l.capacity == 0 || l.weight == 0;
        match (empty(self), empty(other)) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {}
        }
        // Selection compares scores O(log n) times per allocation: the exact shortcuts first.
        // An empty pool scores 0; pools of one shape (capacity and weight) order by count.
        match (self.allocated == 0, other.allocated == 0) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        if self.capacity == other.capacity && self.weight == other.weight {
            return self.allocated.cmp(&other.allocated);
        }
        // Counts and capacities within 64 bits (every IPv4 pool, IPv6 pools up to a /64):
        // 64 × 64-bit products, then the weight on two limbs.
        if let (Ok(a1), Ok(c1), Ok(a2), Ok(c2)) = (
            u64::try_from(self.allocated),
            u64::try_from(self.capacity),
            u64::try_from(other.allocated),
            u64::try_from(other.capacity),
        ) {
            let l = times_weight(u128::from(a1) * u128::from(c2), other.weight);
            let r = times_weight(u128::from(a2) * u128::from(c1), self.weight);
            return l.cmp(&r);
        }
        // The common case fits u128 (IPv4 pools, IPv6 pools far from full); else 320 bits.
        let narrow = |a: u128, c: u128, w: u16| a.checked_mul(c)?.checked_mul(u128::from(w));
        if let (Some(l), Some(r)) = (
            narrow(self.allocated, other.capacity, other.weight),
            narrow(other.allocated, self.capacity, self.weight),
        ) {
            return l.cmp(&r);
        }
        let lhs = mul3(self.allocated, other.capacity, u64::from(other.weight));
        let rhs = mul3(other.allocated, self.capacity, u64::from(self.weight));
        cmp_wide(&lhs, &rhs)
    }

    /// Whether one more allocation keeps `(allocated + 1) / capacity ≤ max_utilization`.
    pub fn under_cap(&self) -> bool {
        if self.allocated >= self.capacity {
            return false;
        }
        if self.max_utilization_ppm >= PPM {
            return true;
        }
        let lhs = mul3(self.allocated + 1, u128::from(PPM), 1);
        let rhs = mul3(self.capacity, u128::from(self.max_utilization_ppm), 1);
        cmp_wide(&lhs, &rhs) != Ordering::Greater
    }
}

/// FNV-1a: a stable 64-bit hash of an owner (the index only narrows, the tables confirm).
pub(crate) fn owner_hash(owner: &str) -> u64 {
    owner.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Derived indexes of selection (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct SelectIndex {
    /// (key, value) → pools whose labels hold that pair.
    labels: BTreeMap<(String, String), BTreeSet<PoolId>>,
    /// owner hash → pools where an owner with that hash holds or cools an address (a superset).
    owners: OwnerIndex,
    /// Every pool that can take an address, by score.
    ranked: ByFamily,
    /// key → value → the pools of `ranked` whose labels hold that pair, by score (nested, so
    /// a lookup borrows the pair instead of copying it).
    ranked_pairs: BTreeMap<String, BTreeMap<String, ByFamily>>,
    /// Pool → where it is filed in `ranked` and `ranked_pairs`.
    placed: BTreeMap<PoolId, Placement>,
    /// Pools changed since they were last filed: re-filed before the next choice.
    stale: BTreeSet<PoolId>,
}

impl SelectIndex {
    pub(crate) fn add_labels(&mut self, id: PoolId, labels: &Labels) {
        for (k, v) in labels {
            self.labels
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(id);
        }
    }

    pub(crate) fn remove_labels(&mut self, id: PoolId, labels: &Labels) {
        for (k, v) in labels {
            let key = (k.clone(), v.clone());
            if let Some(set) = self.labels.get_mut(&key) {
                set.remove(&id);
                if set.is_empty() {
                    self.labels.remove(&key);
                }
            }
        }
    }

    /// The pools carrying every pair of `selector` may only come from the smallest of its
    /// pair sets: that set, or `None` for an empty selector (every pool is a candidate).
    /// An unknown pair gives the empty set.
    pub(crate) fn narrowest(&self, selector: &Labels) -> Option<Vec<PoolId>> {
        let mut best: Option<&BTreeSet<PoolId>> = None;
        for (k, v) in selector {
            match self.labels.get(&(k.clone(), v.clone())) {
                None => return Some(Vec::new()),
                Some(set) if best.is_none_or(|b| set.len() < b.len()) => best = Some(set),
                Some(_) => {}
            }
        }
        best.map(|s| s.iter().copied().collect())
    }

    /// Records that `owner` holds or cools an address in `pool`; true when it was new.
    pub(crate) fn add_owner(&mut self, owner: &str, pool: PoolId) -> bool {
        self.owners.add(owner_hash(owner), pool)
    }

    /// Forgets `pool` for `owner`'s hash; true when it was there.
    pub(crate) fn remove_owner_hash(&mut self, hash: u64, pool: PoolId) -> bool {
        self.owners.remove(hash, pool)
    }

    pub(crate) fn add_owner_hash(&mut self, hash: u64, pool: PoolId) {
        self.owners.add(hash, pool);
    }

    /// Whether `owner`'s hash is filed under `pool` (true: to be confirmed; false: a hint that
    /// it holds nothing there, wrong only for an owner sharing a forgotten owner's hash).
    pub(crate) fn owner_may_use(&self, owner: &str, pool: PoolId) -> bool {
        self.owners.contains(owner_hash(owner), pool)
    }

    /// Pools where `owner` may hold or cool an address (to be confirmed).
    pub(crate) fn owner_pools(&self, owner: &str) -> Vec<PoolId> {
        self.owners.pools(owner_hash(owner))
    }
}

/// Selection decisions on the score index alone, as the core benchmark's in-memory row
/// measures them (the counterpart of the allocator's lowest-free decisions): choose the
/// lowest-score pool that matches, count one more address in it and re-file it, with no
/// tables behind. Not part of the API.
#[doc(hidden)]
pub struct DecisionBench {
    index: SelectIndex,
    pools: Vec<(String, Family, Labels, Load)>,
}

impl DecisionBench {
    /// An index over `pools` (name, family, labels, load); pool `i` gets id `i`.
    pub fn new(pools: Vec<(String, Family, Labels, Load)>) -> DecisionBench {
        let mut bench = DecisionBench {
            index: SelectIndex::default(),
            pools,
        };
        for id in 0..bench.pools.len() {
            bench.refile(id);
        }
        bench
    }

    fn refile(&mut self, id: usize) {
        let Some((name, family, labels, load)) = self.pools.get(id) else {
            return;
        };
        let now = load.under_cap().then_some(Eligible {
            load: *load,
            name,
            family: *family,
            labels,
        });
        self.index.place(id as PoolId, now);
    }

    /// One decision for `selector`: the chosen pool's index, which now counts one more
    /// address; `None` when no pool can take one.
    pub fn decide(&mut self, selector: &Labels) -> Option<usize> {
        let pools = &self.pools;
        let chosen = self
            .index
            .by_score(selector, None)
            .find(|r| {
                pools.get(r.id as usize).is_some_and(|(_, _, labels, _)| {
                    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
            })
            .map(|r| r.id as usize)?;
        if let Some(p) = self.pools.get_mut(chosen) {
            p.3.allocated += 1;
        }
        self.refile(chosen);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_bench_chooses_what_a_scan_chooses() {
        let pools: Vec<(String, Family, Labels, Load)> = (0..60u32)
            .map(|i| {
                let labels = Labels::from([("zone".to_string(), format!("z{}", i % 3))]);
                let l = Load {
                    allocated: u128::from(i * 7 % 11),
                    capacity: u128::from(10 + i % 5),
                    weight: 1 + (i % 4) as u16,
                    max_utilization_ppm: PPM,
                };
                (format!("p{i:02}"), Family::V4, labels, l)
            })
            .collect();
        let mut model = pools.clone();
        let mut bench = DecisionBench::new(pools);
        let selector = Labels::from([("zone".to_string(), "z1".to_string())]);
        loop {
            let want = model
                .iter()
                .enumerate()
                .filter(|(_, (_, _, labels, l))| {
                    labels.get("zone").map(String::as_str) == Some("z1") && l.under_cap()
                })
                .min_by(|(_, a), (_, b)| a.3.cmp_score(&b.3).then(a.0.cmp(&b.0)))
                .map(|(i, _)| i);
            let got = bench.decide(&selector);
            assert_eq!(got, want);
            let Some(i) = want else { break };
            model[i].3.allocated += 1;
        }
    }

    fn load(allocated: u128, capacity: u128, weight: u16) -> Load {
        Load {
            allocated,
            capacity,
            weight,
            max_utilization_ppm: PPM,
        }
    }

    #[test]
    fn scores_compare_exactly() {
        // The example: (30/100)/100 beats (60/100)/100.
        assert_eq!(
            load(30, 100, 100).cmp_score(&load(60, 100, 100)),
            Ordering::Less
        );
        // Equal ratios are equal however they are written.
        assert_eq!(load(1, 3, 1).cmp_score(&load(2, 6, 1)), Ordering::Equal);
        // Weight divides: twice the load at twice the weight ties.
        assert_eq!(load(2, 10, 2).cmp_score(&load(1, 10, 1)), Ordering::Equal);
        // Capacities past 2^64 and products past 2^256 stay exact.
        let big = u128::MAX;
        assert_eq!(
            load(big - 1, big, 1000).cmp_score(&load(big, big, 1000)),
            Ordering::Less
        );
        assert_eq!(
            load(big, big, 1000).cmp_score(&load(big, big, 999)),
            Ordering::Less
        );
        assert_eq!(
            load(1, 1 << 64, 1).cmp_score(&load(0, 1 << 64, 1)),
            Ordering::Greater
        );
        // A float would call these equal: 2^-100 apart.
        let c = 1u128 << 100;
        assert_eq!(
            load(c - 1, c, 1).cmp_score(&load(c - 2, c, 1)),
            Ordering::Greater
        );
    }

    #[test]
    fn shortcuts_agree_with_the_wide_products() {
        let values = [
            0u128,
            1,
            2,
            3,
            7,
            100,
            253,
            u128::from(u32::MAX),
            u128::from(u64::MAX) - 1,
            u128::from(u64::MAX),
            1 << 64,
            (1 << 64) + 1,
            1 << 100,
            u128::MAX - 1,
            u128::MAX,
        ];
        let weights = [0u16, 1, 2, 999, 1000, u16::MAX];
        let mut checked = 0;
        for &c1 in &values[1..] {
            for &c2 in &values[1..] {
                for &a1 in values.iter().filter(|a| **a <= c1) {
                    for &a2 in values.iter().filter(|a| **a <= c2) {
                        for &w1 in &weights {
                            for &w2 in &weights {
                                let (l, r) = (load(a1, c1, w1), load(a2, c2, w2));
                                let want = if w1 == 0 || w2 == 0 {
                                    (w1 == 0).cmp(&(w2 == 0))
                                } else {
                                    cmp_wide(
                                        &mul3(a1, c2, u64::from(w2)),
                                        &mul3(a2, c1, u64::from(w1)),
                                    )
                                };
                                assert_eq!(l.cmp_score(&r), want, "{l:?} vs {r:?}");
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000);
    }

    #[test]
    fn cap_allows_the_allocation_that_reaches_it() {
        let capped = |allocated, capacity, ppm| Load {
            allocated,
            capacity,
            weight: 1,
            max_utilization_ppm: ppm,
        };
        assert!(capped(8, 10, 900_000).under_cap()); // 9/10 ≤ 0.9
        assert!(!capped(9, 10, 900_000).under_cap()); // 10/10 > 0.9
        assert!(capped(9, 10, PPM).under_cap());
        assert!(!capped(10, 10, PPM).under_cap());
        assert!(!capped(0, 0, PPM).under_cap());
        assert!(capped(u128::MAX - 1, u128::MAX, PPM).under_cap());
    }

    #[test]
    fn wide_product_matches_u128_when_it_fits() {
        for (a, b, c) in [(3u128, 5u128, 7u64), (u64::MAX as u128, 2, 3), (0, 9, 9)] {
            let w = mul3(a, b, c);
            let expect = a * b * u128::from(c);
            assert_eq!(w, [expect as u64, (expect >> 64) as u64, 0, 0, 0]);
        }
        // (2^128 - 1)^2 · 1000 needs the fifth limb.
        assert_ne!(mul3(u128::MAX, u128::MAX, 1000)[4], 0);
    }

    #[test]
    fn narrowest_picks_the_smallest_pair_set() {
        let mut idx = SelectIndex::default();
        let l = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        idx.add_labels(1, &l(&[("zone", "a"), ("tier", "gold")]));
        idx.add_labels(2, &l(&[("zone", "a")]));
        idx.add_labels(3, &l(&[("zone", "a")]));
        assert_eq!(
            idx.narrowest(&l(&[("zone", "a"), ("tier", "gold")])),
            Some(vec![1])
        );
        assert_eq!(idx.narrowest(&l(&[("zone", "b")])), Some(vec![]));
        assert_eq!(idx.narrowest(&Labels::new()), None);
        idx.remove_labels(1, &l(&[("zone", "a"), ("tier", "gold")]));
        assert_eq!(idx.narrowest(&l(&[("tier", "gold")])), Some(vec![]));
        assert_eq!(idx.narrowest(&l(&[("zone", "a")])), Some(vec![2, 3]));
    }
}
