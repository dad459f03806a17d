//! The score order of selection: [`Ranked`] keys (exact score, then name) in one ordered set
//! per family, for every pool and per label pair, of the pools that can take an address now;
//! filed, moved and walked by the [`SelectIndex`] methods here.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Load, SelectIndex};
use crate::types::{Family, Labels, PoolId};

/// A pool's place in the score order: the exact score, then the name (the contract's tie
/// break), then the id (names are unique; it only makes the key whole).
#[derive(Clone, Debug)]
pub(crate) struct Ranked {
    pub(crate) load: Load,
    /// The name's first 8 bytes, big-endian, zero-padded: orders as the names do whenever it
    /// differs, so equal scores (common: empty pools) rarely compare whole names.
    head: u64,
    /// Shared by the pool's entries in every set (a count moves it without copying names).
    pub(crate) name: Arc<str>,
    pub(crate) id: PoolId,
}

impl Ranked {
    fn new(load: Load, name: Arc<str>, id: PoolId) -> Ranked {
        let mut head = [0u8; 8];
        let n = name.len().min(8);
        head[..n].copy_from_slice(&name.as_bytes()[..n]);
        Ranked {
            load,
            head: u64::from_be_bytes(head),
            name,
            id,
        }
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.load
            .cmp_score(&other.load)
            .then(self.head.cmp(&other.head))
            .then_with(|| self.name.cmp(&other.name))
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// What the score index files of a pool that can take an address.
pub(crate) struct Eligible<'a> {
    pub(crate) load: Load,
    pub(crate) name: &'a str,
    pub(crate) family: Family,
    pub(crate) labels: &'a Labels,
}

/// Where a pool is filed in the score order.
#[derive(Clone, Debug)]
pub(super) struct Placement {
    key: Ranked,
    family: Family,
    labels: Labels,
}

/// One ordered set per family: IPv4, IPv6.
pub(super) type ByFamily = [BTreeSet<Ranked>; 2];

/// A label pair's two orders as the tests' check lists them.
type PairOrder = (String, String, [Vec<(PoolId, Load)>; 2]);

/// Moves `old` to `new` in `set` (both name the same pool).
fn moved(set: &mut BTreeSet<Ranked>, old: &Ranked, new: &Ranked) {
    set.remove(old);
    set.insert(new.clone());
}

fn slot(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

static NONE: BTreeSet<Ranked> = BTreeSet::new();

/// The pools of one or two score-ordered sets, lowest first (two families merged).
pub(crate) struct ByScore<'a> {
    a: std::iter::Peekable<std::collections::btree_set::Iter<'a, Ranked>>,
    b: std::iter::Peekable<std::collections::btree_set::Iter<'a, Ranked>>,
}

impl<'a> Iterator for ByScore<'a> {
    type Item = &'a Ranked;

    fn next(&mut self) -> Option<&'a Ranked> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

impl SelectIndex {
    pub(crate) fn mark_stale(&mut self, id: PoolId) {
        self.stale.insert(id);
    }

    pub(crate) fn next_stale(&mut self) -> Option<PoolId> {
        self.stale.pop_first()
    }

    /// Files pool `id` where `now` says (`None`: it cannot take an address, or is gone),
    /// taking it out of where it was filed before. A pool that keeps its name, family and
    /// labels (every allocation and release) only moves within its sets.
    pub(crate) fn place(&mut self, id: PoolId, now: Option<Eligible<'_>>) {
        if let (Some(old), Some(now)) = (self.placed.get_mut(&id), &now) {
            if old.family == now.family && *old.key.name == *now.name && old.labels == *now.labels {
                if old.key.load == now.load {
                    return;
                }
                let key = Ranked::new(now.load, Arc::clone(&old.key.name), id);
                let f = slot(old.family);
                moved(&mut self.ranked[f], &old.key, &key);
                for (k, v) in &old.labels {
                    if let Some(sets) = self
                        .ranked_pairs
                        .get_mut(k.as_str())
                        .and_then(|m| m.get_mut(v.as_str()))
                    {
                        moved(&mut sets[f], &old.key, &key);
                    }
                }
                old.key = key;
                return;
            }
        }
        if let Some(old) = self.placed.remove(&id) {
            let f = slot(old.family);
            self.ranked[f].remove(&old.key);
            for (k, v) in &old.labels {
                let Some(values) = self.ranked_pairs.get_mut(k.as_str()) else {
                    continue;
                };
                if let Some(sets) = values.get_mut(v.as_str()) {
                    sets[f].remove(&old.key);
                    if sets.iter().all(BTreeSet::is_empty) {
                        values.remove(v.as_str());
                    }
                }
                if values.is_empty() {
                    self.ranked_pairs.remove(k.as_str());
                }
            }
        }
        let Some(now) = now else { return };
        let f = slot(now.family);
        let key = Ranked::new(now.load, Arc::from(now.name), id);
        self.ranked[f].insert(key.clone());
        for (k, v) in now.labels {
            self.ranked_pairs
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()[f]
                .insert(key.clone());
        }
        self.placed.insert(
            id,
            Placement {
                key,
                family: now.family,
                labels: now.labels.clone(),
            },
        );
    }

    /// The pools that can take an address and may match `selector` and `family`, lowest
    /// score first: those of the selector's pair with the fewest such pools (every pool for
    /// an empty selector). The caller checks the selector's other pairs.
    pub(crate) fn by_score(&self, selector: &Labels, family: Option<Family>) -> ByScore<'_> {
        let count = |sets: &ByFamily| match family {
            Some(f) => sets[slot(f)].len(),
            None => sets[0].len() + sets[1].len(),
        };
        let mut best = Some(&self.ranked);
        for (k, v) in selector {
            match self
                .ranked_pairs
                .get(k.as_str())
                .and_then(|m| m.get(v.as_str()))
            {
                None => {
                    best = None;
                    break;
                }
                Some(sets) if best.is_none_or(|b| count(sets) < count(b)) => best = Some(sets),
                Some(_) => {}
            }
        }
        let (a, b) = match (best, family) {
            (None, _) => (&NONE, &NONE),
            (Some(sets), Some(f)) => (&sets[slot(f)], &NONE),
            (Some(sets), None) => (&sets[0], &sets[1]),
        };
        ByScore {
            a: a.iter().peekable(),
            b: b.iter().peekable(),
        }
    }

    /// Differences between the score index and `other`'s (a rebuild), for the tests' check.
    pub(crate) fn score_index_differences(&self, other: &SelectIndex) -> Vec<String> {
        let mut out = Vec::new();
        let list = |s: &BTreeSet<Ranked>| -> Vec<(PoolId, Load)> {
            s.iter().map(|r| (r.id, r.load)).collect()
        };
        for f in 0..2 {
            if list(&self.ranked[f]) != list(&other.ranked[f]) {
                out.push(format!("family {f}: every-pool order differs"));
            }
        }
        let pairs = |i: &SelectIndex| -> Vec<PairOrder> {
            i.ranked_pairs
                .iter()
                .flat_map(|(k, m)| {
                    m.iter()
                        .map(|(v, sets)| (k.clone(), v.clone(), [list(&sets[0]), list(&sets[1])]))
                })
                .collect()
        };
        let (mine, theirs) = (pairs(self), pairs(other));
        if mine != theirs {
            out.push(format!("label pairs differ: {mine:?} vs {theirs:?}"));
        }
        let placed = |i: &SelectIndex| -> Vec<String> {
            i.placed
                .iter()
                .map(|(id, p)| format!("{id} {p:?}"))
                .collect()
        };
        if placed(self) != placed(other) {
            out.push("placed pools differ".to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pools::PPM;

    fn load(allocated: u128, capacity: u128, weight: u16) -> Load {
        Load {
            allocated,
            capacity,
            weight,
            max_utilization_ppm: PPM,
        }
    }

    #[test]
    fn equal_scores_order_by_whole_name() {
        let names = [
            "",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "abcdefgh",
            "abcdefgh0",
            "abcdefgi",
            "abcdefg",
            "b",
            "é",
            "e\u{ff}",
            "zz",
            "p00007",
            "p00107",
            "p0010",
        ];
        let mut ranked: Vec<Ranked> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Ranked::new(load(0, 10, 1), Arc::from(*n), i as PoolId))
            .collect();
        ranked.sort();
        let got: Vec<&str> = ranked.iter().map(|r| &*r.name).collect();
        let mut want = names.to_vec();
        want.sort();
        assert_eq!(got, want);
        // The score comes first: a fuller pool sorts after every emptier one.
        let full = Ranked::new(load(1, 10, 1), Arc::from(""), 99);
        assert!(ranked.iter().all(|r| *r < full));
    }
}
