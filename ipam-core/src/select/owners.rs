//! The owner index of selection: owner hash → the pools where an owner with that hash holds or
//! cools an address (a superset, confirmed against the tables).
//!
//! It has one entry per owner of the whole state, a million and more, and nearly every owner
//! is in one pool. So the common case is a plain `hash → pool` map (16 bytes a slot, no heap
//! block), and only hashes in two or more pools spill into a map of sorted vectors. The
//! earlier `hash → Vec` map cost a 32-byte slot plus a heap block per owner: about 80 MB of a
//! node's resident memory at a million allocations (`docs/operations.md`, "Memory").

use std::collections::HashMap;

use crate::types::PoolId;

#[derive(Clone, Debug, Default)]
pub(crate) struct OwnerIndex {
    /// Hashes in exactly one pool.
    one: HashMap<u64, PoolId>,
    /// Hashes in two or more pools, sorted, never fewer than two. A hash is never in both.
    many: HashMap<u64, Vec<PoolId>>,
}

impl OwnerIndex {
    /// Files `pool` under `hash`; true when it was not there.
    pub(crate) fn add(&mut self, hash: u64, pool: PoolId) -> bool {
        if let Some(set) = self.many.get_mut(&hash) {
            return match set.binary_search(&pool) {
                Ok(_) => false,
                Err(at) => {
                    set.insert(at, pool);
                    true
                }
            };
        }
        match self.one.get(&hash).copied() {
            None => {
                self.one.insert(hash, pool);
                true
            }
            Some(p) if p == pool => false,
            Some(p) => {
                self.one.remove(&hash);
                let set = if p < pool {
                    vec![p, pool]
                } else {
                    vec![pool, p]
                };
                self.many.insert(hash, set);
                true
            }
        }
    }

    /// Forgets `pool` under `hash`; true when it was there.
    pub(crate) fn remove(&mut self, hash: u64, pool: PoolId) -> bool {
        if let Some(set) = self.many.get_mut(&hash) {
            let Ok(at) = set.binary_search(&pool) else {
                return false;
            };
            set.remove(at);
            if let [last] = set[..] {
                self.many.remove(&hash);
                self.one.insert(hash, last);
            }
            return true;
        }
        match self.one.get(&hash) {
            Some(&p) if p == pool => {
                self.one.remove(&hash);
                true
            }
            _ => false,
        }
    }

    /// Whether `pool` is filed under `hash`.
    pub(crate) fn contains(&self, hash: u64, pool: PoolId) -> bool {
        match self.one.get(&hash) {
            Some(&p) => p == pool,
            None => self
                .many
                .get(&hash)
                .is_some_and(|set| set.binary_search(&pool).is_ok()),
        }
    }

    /// The pools filed under `hash`, in id order.
    pub(crate) fn pools(&self, hash: u64) -> Vec<PoolId> {
        if let Some(&p) = self.one.get(&hash) {
            return vec![p];
        }
        self.many.get(&hash).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_hash_moves_between_the_maps_as_its_pools_grow_and_shrink() {
        let mut idx = OwnerIndex::default();
        assert!(idx.add(7, 3));
        assert!(!idx.add(7, 3));
        assert_eq!((idx.one.len(), idx.many.len()), (1, 0));
        assert!(idx.add(7, 1));
        assert_eq!((idx.one.len(), idx.many.len()), (0, 1));
        assert_eq!(idx.pools(7), vec![1, 3]);
        assert!(idx.remove(7, 3));
        assert_eq!((idx.one.len(), idx.many.len()), (1, 0));
        assert_eq!(idx.pools(7), vec![1]);
        assert!(!idx.remove(7, 3));
        assert!(idx.remove(7, 1));
        assert!(idx.pools(7).is_empty());
        assert_eq!((idx.one.len(), idx.many.len()), (0, 0));
    }

    proptest! {
        /// Against a map of sets: the same answers after every step, and the invariants
        /// (a hash in one map only; `many` only with two or more pools).
        #[test]
        fn behaves_like_a_map_of_sets(steps in proptest::collection::vec(
            (any::<bool>(), 0u64..6, 0u32..4), 1..200)) {
            let mut idx = OwnerIndex::default();
            let mut model: BTreeMap<u64, BTreeSet<PoolId>> = BTreeMap::new();
            for (add, hash, pool) in steps {
                if add {
                    prop_assert_eq!(idx.add(hash, pool), model.entry(hash).or_default().insert(pool));
                } else {
                    let was = model.get_mut(&hash).is_some_and(|s| s.remove(&pool));
                    prop_assert_eq!(idx.remove(hash, pool), was);
                }
                model.retain(|_, s| !s.is_empty());
                for h in 0..6 {
                    let want: Vec<PoolId> =
                        model.get(&h).map(|s| s.iter().copied().collect()).unwrap_or_default();
                    for p in 0u32..4 {
                        prop_assert_eq!(idx.contains(h, p), want.contains(&p));
                    }
                    prop_assert_eq!(idx.pools(h), want);
                    prop_assert!(!(idx.one.contains_key(&h) && idx.many.contains_key(&h)));
                }
                prop_assert!(idx.many.values().all(|s| s.len() >= 2));
            }
        }
    }
}
