//! Selection of [`State`]: `allocate_any` decides the pool inside `apply`, in the contract's
//! order (the owner's held address, its cooling address, the lowest score under the cap), and
//! the upkeep of the selection indexes ([`crate::select::SelectIndex`]).

use super::*;
use crate::error::AllocateError;
use crate::select::{owner_hash, Eligible, Load};
use crate::types::Family;

/// A selector as error messages show it: `k=v,k=v` (and the family when one was given).
fn render_selector(selector: &Labels, family: Option<Family>) -> String {
    let mut parts: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(f) = family {
        parts.push(format!(
            "family={}",
            if f == Family::V4 { "ipv4" } else { "ipv6" }
        ));
    }
    if parts.is_empty() {
        "{} (every pool)".to_string()
    } else {
        parts.join(",")
    }
}

impl PoolEntry {
    /// Whether selection considers this pool for `selector` and `family`: an address pool
    /// (never a prefix pool) carrying every pair. Frozen or full pools match; they are skipped
    /// only when a new address is chosen.
    fn matches(&self, selector: &Labels, family: Option<Family>) -> bool {
        self.record.delegation_prefix_len.is_none()
            && family.is_none_or(|f| self.record.cidr.family() == f)
            && selector
                .iter()
                .all(|(k, v)| self.record.labels.get(k) == Some(v))
    }

    fn load(&self) -> Load {
        Load {
            allocated: self.record.allocated,
            capacity: self.record.capacity,
            weight: self.record.weight,
            max_utilization_ppm: self.record.max_utilization_ppm,
        }
    }

    /// What the score index files of this pool: only an address pool that can take one more
    /// address now (not frozen, under its cap).
    fn eligible(&self) -> Option<Eligible<'_>> {
        let load = self.load();
        let eligible =
            self.record.delegation_prefix_len.is_none() && !self.record.frozen && load.under_cap();
        eligible.then(|| Eligible {
            load,
            name: &self.record.name,
            family: self.record.cidr.family(),
            labels: &self.record.labels,
        })
    }
}

impl State {
    /// Adds a pool to the label index.
    pub(super) fn index_labels(&mut self, id: PoolId, labels: &Labels) {
        self.select.add_labels(id, labels);
    }

    /// Removes a pool from the label index.
    pub(super) fn unindex_labels(&mut self, id: PoolId, labels: &Labels) {
        self.select.remove_labels(id, labels);
    }

    /// Notes that pool `id`'s count, settings, labels or existence changed: it is re-filed in
    /// the score index before the next choice reads it ([`State::refresh_ranks`]), so many
    /// allocations naming the pool cost one move, and none if no selection follows.
    pub(super) fn rerank(&mut self, id: PoolId) {
        self.select.mark_stale(id);
    }

    /// Re-files every pool changed since the last choice.
    pub(super) fn refresh_ranks(&mut self) {
        while let Some(id) = self.select.next_stale() {
            let now = self.pools.get(&id).and_then(PoolEntry::eligible);
            self.select.place(id, now);
        }
    }

    /// Compares the score index with one rebuilt from the pools, and each selector's
    /// indexed choice with a scan of every pool; the differences, if any (for tests).
    #[doc(hidden)]
    pub fn check_select_index(&mut self) -> Result<(), String> {
        self.refresh_ranks();
        let mut rebuilt = crate::select::SelectIndex::default();
        for (id, e) in &self.pools {
            rebuilt.place(*id, e.eligible());
        }
        let mut problems = self.select.score_index_differences(&rebuilt);
        let mut selectors = vec![Labels::new()];
        for e in self.pools.values() {
            for (k, v) in &e.record.labels {
                selectors.push(Labels::from([(k.clone(), v.clone())]));
            }
            if e.record.labels.len() > 1 {
                selectors.push(e.record.labels.clone());
            }
        }
        selectors.sort();
        selectors.dedup();
        for selector in &selectors {
            for family in [None, Some(Family::V4), Some(Family::V6)] {
                let indexed = self.lowest_score(selector, family);
                let (_, scanned) = self.scan(selector, family);
                if indexed != scanned {
                    problems.push(format!(
                        "{}: index chooses {indexed:?}, scan {scanned:?}",
                        render_selector(selector, family)
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The lowest-score pool (ties by name) that can take an address and matches, from the
    /// score index.
    fn lowest_score(&self, selector: &Labels, family: Option<Family>) -> Option<PoolId> {
        self.select
            .by_score(selector, family)
            .find(|r| {
                self.pools
                    .get(&r.id)
                    .is_some_and(|e| e.matches(selector, family))
            })
            .map(|r| r.id)
    }

    /// Every candidate pool scanned: how many match, and the lowest-score one that can take
    /// an address. The reference of [`State::lowest_score`], and the count its errors report.
    fn scan(&self, selector: &Labels, family: Option<Family>) -> (u64, Option<PoolId>) {
        let mut matching: u64 = 0;
        let mut best: Option<(&PoolEntry, Load)> = None;
        let narrowed = self.select.narrowest(selector);
        let candidates: Box<dyn Iterator<Item = &PoolEntry> + '_> = match &narrowed {
            Some(ids) => Box::new(ids.iter().filter_map(|id| self.pools.get(id))),
            None => Box::new(self.pools.values()),
        };
        // A one-pair selector's candidates all carry that pair: only family and kind remain.
        let narrowed_exactly = narrowed.is_some() && selector.len() == 1;
        for e in candidates {
            let matches = if narrowed_exactly {
                e.record.delegation_prefix_len.is_none()
                    && family.is_none_or(|f| e.record.cidr.family() == f)
            } else {
                e.matches(selector, family)
            };
            if !matches {
                continue;
            }
            matching += 1;
            let load = e.load();
            if e.record.frozen || !load.under_cap() {
                continue;
            }
            let better = match &best {
                None => true,
                Some((b, bl)) => match load.cmp_score(bl) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Equal => e.record.name < b.record.name,
                    std::cmp::Ordering::Greater => false,
                },
            };
            if better {
                best = Some((e, load));
            }
        }
        (matching, best.map(|(e, _)| e.id))
    }

    /// Records that `owner` now holds an address in `id`.
    pub(super) fn owner_uses(&mut self, tx: &mut Tx<'_>, owner: &str, id: PoolId) {
        if self.select.add_owner(owner, id) && tx.journaling {
            tx.journal.push(Undo::OwnerIndex {
                hash: owner_hash(owner),
                pool: id,
                added: true,
            });
        }
    }

    /// Forgets `id` for `owner` when it neither holds nor cools an address there any more.
    pub(super) fn owner_maybe_left(
        &mut self,
        tx: &mut Tx<'_>,
        owner: &str,
        id: PoolId,
    ) -> Result<(), StorageError> {
        let cools = self
            .pools
            .get(&id)
            .is_some_and(|e| e.cooling.newest_of(owner).is_some());
        if cools || tx.owners.get(owner_key(id, owner).as_slice())?.is_some() {
            return Ok(());
        }
        self.forget_owner(tx, owner_hash(owner), id);
        Ok(())
    }

    fn forget_owner(&mut self, tx: &mut Tx<'_>, hash: u64, id: PoolId) {
        if self.select.remove_owner_hash(hash, id) && tx.journaling {
            tx.journal.push(Undo::OwnerIndex {
                hash,
                pool: id,
                added: false,
            });
        }
    }

    /// Reverts one owner-index change of a failed batch.
    pub(super) fn undo_owner_index(&mut self, hash: u64, pool: PoolId, added: bool) {
        if added {
            self.select.remove_owner_hash(hash, pool);
        } else {
            self.select.add_owner_hash(hash, pool);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn allocate_any(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        owner: &str,
        selector: &Labels,
        family: Option<Family>,
        labels: &Labels,
        ttl_seconds: Option<u32>,
    ) -> Result<Result<OpOutput, AllocateError>, StorageError> {
        // 1. and 2.: the pools this owner uses, confirmed against the tables.
        let mut held: Option<&str> = None;
        let mut cooling: Option<&str> = None;
        let mut stale = Vec::new();
        for id in self.select.owner_pools(owner) {
            let Some(e) = self.pools.get(&id) else {
                stale.push(id);
                continue;
            };
            let holds = tx.owners.get(owner_key(id, owner).as_slice())?.is_some();
            let cools = e.cooling.newest_of(owner).is_some();
            if !holds && !cools {
                stale.push(id);
                continue;
            }
            if !e.matches(selector, family) {
                continue;
            }
            let name = e.record.name.as_str();
            if holds {
                held = Some(held.map_or(name, |h| h.min(name)));
            } else if !e.record.frozen {
                cooling = Some(cooling.map_or(name, |c| c.min(name)));
            }
        }
        let reuse = held.or(cooling).map(str::to_string);
        let hash = owner_hash(owner);
        for id in stale {
            self.forget_owner(tx, hash, id);
        }
        if let Some(pool) = reuse {
            return self.allocate(tx, stamp, &pool, owner, None, labels, ttl_seconds);
        }
        // 3.: the lowest score among the pools that can take one more address; the count of
        // matching pools is only needed (and only scanned) when none can.
        self.refresh_ranks();
        let Some(id) = self.lowest_score(selector, family) else {
            let (matching, _) = self.scan(selector, family);
            let selector = render_selector(selector, family);
            return Ok(Err(if matching == 0 {
                AllocateError::NoMatchingPool { selector }
            } else {
                AllocateError::NoPoolAvailable { selector, matching }
            }));
        };
        let pool = self.pools[&id].record.name.clone();
        self.allocate(tx, stamp, &pool, owner, None, labels, ttl_seconds)
    }
}
