//! The free-interval index of one pool.
//!
//! Free space is a set of disjoint, non-adjacent inclusive intervals `[start, end]` over the
//! pool's `u128` address positions, kept in a `BTreeMap` keyed by the interval's end. Every operation is
//! O(log n) in the number of intervals, and that number is bounded by the allocations and
//! reserved ranges, never by the pool's size: a /64 costs what a /24 costs.

use std::collections::BTreeMap;

/// Free addresses of one pool as disjoint inclusive intervals.
///
/// Stored as `end → start` so that the hot path, taking the lowest free address, shrinks the
/// first interval in place (its end, the key, does not change) instead of removing and
/// re-inserting it. The interval containing `a` is the first one whose end is `>= a`.
///
/// Invariant: intervals are disjoint and never adjacent (adjacent ones are merged), so the
/// representation of a given set of free addresses is unique.
///
/// A prefix pool's index counts in blocks: with `shift` = s, the index stores block numbers
/// (`address >> s`) while every method takes and returns addresses (a block's first address),
/// so the lowest free aligned block is the lowest free unit, O(log n), and the allocator's
/// callers need not know which kind of pool they serve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeIndex {
    /// end → start, in units of `1 << shift` addresses.
    intervals: BTreeMap<u128, u128>,
    /// log2 of the addresses per unit: 0 for an address pool.
    shift: u8,
}

impl FreeIndex {
    /// An index with nothing free.
    pub fn new() -> FreeIndex {
        FreeIndex::default()
    }

    /// An index with nothing free that counts in aligned blocks of `1 << shift` addresses.
    pub fn in_blocks(shift: u8) -> FreeIndex {
        FreeIndex {
            intervals: BTreeMap::new(),
            shift,
        }
    }

    /// An index where exactly `[start, end]` is free (nothing when `start > end`).
    pub fn with_range(start: u128, end: u128) -> FreeIndex {
        let mut intervals = BTreeMap::new();
        if start <= end {
            intervals.insert(end, start);
        }
        FreeIndex {
            intervals,
            shift: 0,
        }
    }

    /// Addresses per unit (1, or the block size of a prefix pool).
    pub fn unit(&self) -> u128 {
        1u128 << self.shift
    }

    fn to_unit(&self, addr: u128) -> u128 {
        addr >> self.shift
    }

    fn to_addr(&self, unit: u128) -> u128 {
        unit << self.shift
    }

    /// The last address of unit `unit`.
    fn unit_end(&self, unit: u128) -> u128 {
        (unit << self.shift) | (self.unit() - 1)
    }

    /// The lowest free address (block).
    pub fn lowest(&self) -> Option<u128> {
        self.intervals
            .first_key_value()
            .map(|(_, s)| self.to_addr(*s))
    }

    /// Takes the lowest free address (block) out of the index.
    pub fn take_lowest(&mut self) -> Option<u128> {
        let shift = self.shift;
        let mut first = self.intervals.first_entry()?;
        let start = *first.get();
        if start < *first.key() {
            *first.get_mut() = start + 1;
        } else {
            first.remove();
        }
        Some(start << shift)
    }

    /// The free interval `(start, end)` containing `addr`, if `addr` is free.
    fn interval_of(&self, addr: u128) -> Option<(u128, u128)> {
        self.intervals
            .range(addr..)
            .next()
            .filter(|(_, start)| **start <= addr)
            .map(|(e, s)| (*s, *e))
    }

    /// Whether `addr` (its whole block, in a prefix pool) is free.
    pub fn is_free(&self, addr: u128) -> bool {
        self.interval_of(self.to_unit(addr)).is_some()
    }

    /// Takes `addr` (its block) out of the index; false (and no change) when it was not free.
    pub fn take(&mut self, addr: u128) -> bool {
        let addr = self.to_unit(addr);
        let Some((start, end)) = self.interval_of(addr) else {
            return false;
        };
        self.split_out(start, end, addr, addr);
        true
    }

    /// Replaces the free interval `[start, end]` by what is left of it without `[lo, hi]`,
    /// where `start <= lo <= hi <= end`.
    fn split_out(&mut self, start: u128, end: u128, lo: u128, hi: u128) {
        if hi < end {
            // The upper part keeps the key `end`: update its start in place.
            self.intervals.insert(end, hi + 1);
        } else {
            self.intervals.remove(&end);
        }
        if start < lo {
            self.intervals.insert(lo - 1, start);
        }
    }

    /// Returns `addr` to the index, merging with its neighbours; false (and no change) when it
    /// was already free.
    pub fn release(&mut self, addr: u128) -> bool {
        let addr = self.to_unit(addr);
        // The first interval ending at or after `addr` either contains it (already free) or
        // is the candidate upper neighbour.
        let next = self.intervals.range(addr..).next().map(|(e, s)| (*s, *e));
        if matches!(next, Some((s, _)) if s <= addr) {
            return false;
        }
        let mut start = addr;
        if let Some(prev_end) = addr.checked_sub(1) {
            if let Some(s) = self.intervals.remove(&prev_end) {
                start = s;
            }
        }
        match next {
            Some((s, e)) if Some(s) == addr.checked_add(1) => {
                self.intervals.insert(e, start);
            }
            _ => {
                self.intervals.insert(addr, start);
            }
        }
        true
    }

    /// Takes every address of `[lo, hi]` out of the index (those already taken are ignored).
    pub fn remove_range(&mut self, lo: u128, hi: u128) {
        if lo > hi {
            return;
        }
        // In blocks: every block the range touches.
        let (lo, hi) = (self.to_unit(lo), self.to_unit(hi));
        // Every interval that meets [lo, hi] ends at or after `lo`; walk them in order.
        while let Some((start, end)) = self
            .intervals
            .range(lo..)
            .next()
            .map(|(e, s)| (*s, *e))
            .filter(|(s, _)| *s <= hi)
        {
            self.split_out(start, end, start.max(lo), end.min(hi));
        }
    }

    /// Adds `[lo, hi]`, none of which is free, merging with adjacent intervals (a range
    /// added to a pool). O(log n).
    pub fn insert_interval(&mut self, lo: u128, hi: u128) {
        if lo > hi {
            return;
        }
        let (lo, hi) = (self.to_unit(lo), self.to_unit(hi));
        let mut start = lo;
        if let Some(prev_end) = lo.checked_sub(1) {
            if let Some(s) = self.intervals.remove(&prev_end) {
                start = s;
            }
        }
        let mut end = hi;
        if let Some(next_start) = hi.checked_add(1) {
            let next = self
                .intervals
                .range(next_start..)
                .next()
                .map(|(e, s)| (*s, *e));
            if let Some((s, e)) = next.filter(|(s, _)| *s == next_start) {
                self.intervals.remove(&e);
                end = e;
                debug_assert_eq!(s, next_start);
            }
        }
        self.intervals.insert(end, start);
    }

    /// The lowest free address in `[lo, hi]`. O(log n).
    pub fn lowest_in(&self, lo: u128, hi: u128) -> Option<u128> {
        let (lo, hi) = (self.to_unit(lo), self.to_unit(hi));
        self.intervals
            .range(lo..)
            .next()
            .map(|(_, s)| (*s).max(lo))
            .filter(|s| *s <= hi)
            .map(|u| self.to_addr(u))
    }

    /// The free intervals clipped to `[lo, hi]`, in address order.
    pub fn intervals_in(&self, lo: u128, hi: u128) -> impl Iterator<Item = (u128, u128)> + '_ {
        let (lo, hi) = (self.to_unit(lo), self.to_unit(hi));
        self.intervals
            .range(lo..)
            .map(move |(e, s)| ((*s).max(lo), (*e).min(hi)))
            .take_while(move |(s, _)| *s <= hi)
            .map(|(s, e)| (self.to_addr(s), self.unit_end(e)))
    }

    /// Number of free addresses (blocks, in a prefix pool). O(intervals); saturates at `u128::MAX` (only reachable by an
    /// index covering the whole IPv6 space, which no pool has).
    pub fn free_count(&self) -> u128 {
        self.intervals.iter().fold(0u128, |acc, (e, s)| {
            acc.saturating_add((e - s).saturating_add(1))
        })
    }

    /// Number of intervals (the index's memory footprint).
    pub fn interval_count(&self) -> usize {
        self.intervals.len()
    }

    /// The free intervals `(start, end)` in address order (first and last address).
    pub fn intervals(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.intervals
            .iter()
            .map(|(e, s)| (self.to_addr(*s), self.unit_end(*e)))
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
