//! The free-interval index of one pool.
//!
//! Free space is a set of disjoint, non-adjacent inclusive intervals `[start, end]` over the
//! pool's `u128` address positions, kept in a `BTreeMap<start, end>`. Every operation is
//! O(log n) in the number of intervals, and that number is bounded by the allocations and
//! reserved ranges, never by the pool's size: a /64 costs what a /24 costs.

use std::collections::BTreeMap;

/// Free addresses of one pool as disjoint inclusive intervals.
///
/// Invariant: intervals are disjoint and never adjacent (adjacent ones are merged), so the
/// representation of a given set of free addresses is unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeIndex {
    intervals: BTreeMap<u128, u128>,
}

impl FreeIndex {
    /// An index with nothing free.
    pub fn new() -> FreeIndex {
        FreeIndex::default()
    }

    /// An index where exactly `[start, end]` is free (nothing when `start > end`).
    pub fn with_range(start: u128, end: u128) -> FreeIndex {
        let mut intervals = BTreeMap::new();
        if start <= end {
            intervals.insert(start, end);
        }
        FreeIndex { intervals }
    }

    /// The lowest free address.
    pub fn lowest(&self) -> Option<u128> {
        self.intervals.first_key_value().map(|(s, _)| *s)
    }

    /// Takes the lowest free address out of the index.
    pub fn take_lowest(&mut self) -> Option<u128> {
        let (start, end) = self.intervals.pop_first()?;
        if start < end {
            self.intervals.insert(start + 1, end);
        }
        Some(start)
    }

    /// The free interval containing `addr`, if `addr` is free.
    fn interval_of(&self, addr: u128) -> Option<(u128, u128)> {
        self.intervals
            .range(..=addr)
            .next_back()
            .filter(|(_, end)| **end >= addr)
            .map(|(s, e)| (*s, *e))
    }

    /// Whether `addr` is free.
    pub fn is_free(&self, addr: u128) -> bool {
        self.interval_of(addr).is_some()
    }

    /// Takes `addr` out of the index; false (and no change) when it was not free.
    pub fn take(&mut self, addr: u128) -> bool {
        let Some((start, end)) = self.interval_of(addr) else {
            return false;
        };
        self.split_out(start, end, addr, addr);
        true
    }

    /// Replaces the free interval `[start, end]` by what is left of it without `[lo, hi]`,
    /// where `start <= lo <= hi <= end`.
    fn split_out(&mut self, start: u128, end: u128, lo: u128, hi: u128) {
        self.intervals.remove(&start);
        if start < lo {
            self.intervals.insert(start, lo - 1);
        }
        if hi < end {
            self.intervals.insert(hi + 1, end);
        }
    }

    /// Returns `addr` to the index, merging with its neighbours; false (and no change) when it
    /// was already free.
    pub fn release(&mut self, addr: u128) -> bool {
        if self.is_free(addr) {
            return false;
        }
        let mut start = addr;
        let mut end = addr;
        if let Some(prev) = addr.checked_sub(1) {
            if let Some((s, _)) = self.interval_of(prev) {
                self.intervals.remove(&s);
                start = s;
            }
        }
        if let Some(next) = addr.checked_add(1) {
            if let Some(e) = self.intervals.remove(&next) {
                end = e;
            }
        }
        self.intervals.insert(start, end);
        true
    }

    /// Takes every address of `[lo, hi]` out of the index (those already taken are ignored).
    pub fn remove_range(&mut self, lo: u128, hi: u128) {
        if lo > hi {
            return;
        }
        // The interval that starts before `lo` may reach into the range.
        if let Some((s, e)) = self
            .intervals
            .range(..lo)
            .next_back()
            .map(|(s, e)| (*s, *e))
        {
            if e >= lo {
                self.split_out(s, e, lo, e.min(hi));
            }
        }
        while let Some((s, e)) = self.intervals.range(lo..=hi).next().map(|(s, e)| (*s, *e)) {
            self.split_out(s, e, s, e.min(hi));
        }
    }

    /// Number of free addresses. O(intervals); saturates at `u128::MAX` (only reachable by an
    /// index covering the whole IPv6 space, which no pool has).
    pub fn free_count(&self) -> u128 {
        self.intervals.iter().fold(0u128, |acc, (s, e)| {
            acc.saturating_add((e - s).saturating_add(1))
        })
    }

    /// Number of intervals (the index's memory footprint).
    pub fn interval_count(&self) -> usize {
        self.intervals.len()
    }

    /// The free intervals in address order.
    pub fn intervals(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.intervals.iter().map(|(s, e)| (*s, *e))
    }

    /// Whether nothing is free.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn model_of(idx: &FreeIndex) -> BTreeSet<u128> {
        idx.intervals().flat_map(|(s, e)| s..=e).collect()
    }

    fn check_invariant(idx: &FreeIndex) {
        let mut prev_end: Option<u128> = None;
        for (s, e) in idx.intervals() {
            assert!(s <= e);
            if let Some(p) = prev_end {
                assert!(s > p + 1, "intervals must be disjoint and not adjacent");
            }
            prev_end = Some(e);
        }
    }

    #[test]
    fn lowest_take_release_merge() {
        let mut idx = FreeIndex::with_range(10, 20);
        assert_eq!(idx.take_lowest(), Some(10));
        assert!(idx.take(15));
        assert!(!idx.take(15));
        assert_eq!(idx.interval_count(), 2);
        assert!(idx.release(15));
        assert!(!idx.release(15));
        assert_eq!(idx.interval_count(), 1);
        assert!(idx.release(10));
        assert_eq!(idx.intervals().collect::<Vec<_>>(), vec![(10, 20)]);
        assert_eq!(idx.free_count(), 11);
    }

    #[test]
    fn extremes_of_u128() {
        let mut idx = FreeIndex::with_range(0, u128::MAX);
        assert!(idx.take(u128::MAX));
        assert!(idx.take(0));
        assert_eq!(idx.free_count(), u128::MAX - 1);
        assert!(idx.release(u128::MAX));
        assert!(idx.release(0));
        assert_eq!(idx.free_count(), u128::MAX);
        idx.remove_range(5, 9);
        assert_eq!(
            idx.intervals().collect::<Vec<_>>(),
            vec![(0, 4), (10, u128::MAX)]
        );
    }

    #[test]
    fn empty_range_is_empty() {
        let mut idx = FreeIndex::with_range(5, 4);
        assert!(idx.is_empty());
        assert_eq!(idx.take_lowest(), None);
        assert_eq!(idx.lowest(), None);
    }

    #[derive(Clone, Debug)]
    enum IdxOp {
        TakeLowest,
        Take(u128),
        Release(u128),
        RemoveRange(u128, u128),
    }

    fn idx_op() -> impl Strategy<Value = IdxOp> {
        prop_oneof![
            Just(IdxOp::TakeLowest),
            (0u128..64).prop_map(IdxOp::Take),
            (0u128..64).prop_map(IdxOp::Release),
            (0u128..64, 0u128..8).prop_map(|(a, l)| IdxOp::RemoveRange(a, a + l)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn matches_a_set(ops in proptest::collection::vec(idx_op(), 0..80)) {
            let mut idx = FreeIndex::with_range(0, 63);
            let mut model: BTreeSet<u128> = (0..=63).collect();
            for op in ops {
                match op {
                    IdxOp::TakeLowest => {
                        let want = model.pop_first();
                        prop_assert_eq!(idx.take_lowest(), want);
                    }
                    IdxOp::Take(a) => prop_assert_eq!(idx.take(a), model.remove(&a)),
                    IdxOp::Release(a) => prop_assert_eq!(idx.release(a), model.insert(a)),
                    IdxOp::RemoveRange(a, b) => {
                        idx.remove_range(a, b);
                        for x in a..=b { model.remove(&x); }
                    }
                }
                check_invariant(&idx);
                prop_assert_eq!(&model_of(&idx), &model);
                prop_assert_eq!(idx.free_count(), model.len() as u128);
                prop_assert_eq!(idx.lowest(), model.first().copied());
            }
        }
    }
}
