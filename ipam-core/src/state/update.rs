//! Pool updates in `apply`: fields (with revision fencing), adding and removing ranges.
//!
//! Each op checks everything before its first mutation (single ops need no journal), and
//! inside a batch records the pool entry as it was ([`Undo::Replaced`]) so a failing later op
//! restores it.

use redb::ReadableTable;

use super::{PoolEntry, State, TableId, Tx, Undo};
use crate::command::OpOutput;
use crate::error::{CreatePoolError, InputError, StorageError, UpdatePoolError};
use crate::layout::resolve_gateway;
use crate::pools::{all_ranges, check_settings, new_range, PoolShape, PoolUpdate, MAX_RANGES};
use crate::tables::{self, allocation_key, decode, decode_allocation_key, encode, range_key};
use crate::tables::{AllocationRecord, RangeRecord};
use crate::types::{addr_to_u128, Cidr, GatewayChoice, PoolId, Reserved};
use crate::validate::{check_labels, check_reserved_entries, MAX_DESCRIPTION};

type Outcome = Result<Result<OpOutput, UpdatePoolError>, StorageError>;

/// The lowest allocation of pool `id` in `[lo, hi]`: its position and owner.
fn first_allocation_in(
    tx: &Tx<'_>,
    id: PoolId,
    lo: u128,
    hi: u128,
) -> Result<Option<(u128, String)>, StorageError> {
    let (a, b) = (allocation_key(id, lo), allocation_key(id, hi));
    let mut rows = tx.allocations.range::<&[u8]>(a.as_slice()..=b.as_slice())?;
    match rows.next() {
        Some(row) => {
            let (k, v) = row?;
            let (_, pos) = decode_allocation_key(k.value())?;
            let rec: AllocationRecord = decode("core_allocations", v.value())?;
            Ok(Some((pos, rec.owner)))
        }
        None => Ok(None),
    }
}

fn bounds(entry: &Reserved) -> (u128, u128) {
    match entry {
        Reserved::Addr(a) => (addr_to_u128(*a), addr_to_u128(*a)),
        Reserved::Range(a, b) => (addr_to_u128(*a), addr_to_u128(*b)),
        Reserved::Cidr(c) => (c.first(), c.last()),
    }
}

impl State {
    fn entry_of(&self, pool: &str) -> Result<PoolId, UpdatePoolError> {
        self.names
            .get(pool)
            .copied()
            .filter(|id| self.pools.contains_key(id))
            .ok_or_else(|| UpdatePoolError::PoolNotFound {
                pool: pool.to_string(),
            })
    }

    /// Installs `entry` (the pool's new state, revision + 1), journaling the old one inside
    /// a batch and scheduling the record write.
    fn replace_entry(&mut self, tx: &mut Tx<'_>, mut entry: PoolEntry) {
        let id = entry.id;
        entry.record.revision = entry.record.revision.saturating_add(1);
        let was_dirty = self.pools.get(&id).is_some_and(|e| e.dirty);
        entry.dirty = true;
        let keys: Vec<(u8, u128)> = entry
            .layout
            .ranges()
            .iter()
            .map(|l| (tables::range_tag(&entry.record), l.start))
            .collect();
        let labels = entry.record.labels.clone();
        if let Some(old) = self.pools.insert(id, entry) {
            self.unindex_ranges(&old.layout, tables::range_tag(&old.record));
            self.unindex_labels(id, &old.record.labels);
            self.index_labels(id, &labels);
            if tx.journaling {
                tx.journal.push(Undo::Replaced {
                    entry: Box::new(old),
                });
            }
        }
        if !was_dirty {
            tx.dirty.push(id);
        }
        for key in keys {
            self.ranges.insert(key, id);
        }
        self.rerank(id);
    }

    fn output(&self, id: PoolId) -> OpOutput {
        let e = &self.pools[&id];
        OpOutput::PoolUpdated(e.record.info(id))
    }

    pub(super) fn update_pool(
        &mut self,
        tx: &mut Tx<'_>,
        pool: &str,
        revision: Option<u64>,
        update: &PoolUpdate,
    ) -> Outcome {
        let id = match self.entry_of(pool) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let entry = &self.pools[&id];
        let record = &entry.record;
        if let Some(expected) = revision.filter(|r| *r != record.revision) {
            return Ok(Err(UpdatePoolError::RevisionMismatch {
                pool: pool.to_string(),
                expected,
                actual: record.revision,
            }));
        }
        let input = (|| {
            if let Some(labels) = &update.labels {
                check_labels(labels)?;
            }
            if let Some(d) = &update.description {
                if d.len() > MAX_DESCRIPTION {
                    return Err(InputError::DescriptionTooLong { len: d.len() });
                }
            }
            if let Some(r) = &update.reserved {
                check_reserved_entries(r)?;
            }
            if record.delegation_prefix_len.is_some() && update.changes_layout() {
                // Kept simple: a prefix pool's blocks are fixed at creation.
                return Err(InputError::InvalidSetting {
                    field: if update.gateway.is_some() {
                        "gateway"
                    } else {
                        "reserved"
                    }
                    .into(),
                    reason: "a prefix pool's gateway and reserved entries are fixed at creation"
                        .into(),
                });
            }
            check_settings(
                &update.apply_settings(&record.settings()),
                record.cidr.family(),
            )
        })();
        if let Err(e) = input {
            return Ok(Err(CreatePoolError::from(e).into()));
        }
        let mut next = entry.clone();
        if update.changes_layout() {
            let gateway = match update.gateway {
                None => record.gateway,
                Some(choice) => match resolve_gateway(&record.cidr, choice) {
                    Ok(g) => g,
                    Err(e) => return Ok(Err(e.into())),
                },
            };
            let reserved = update
                .reserved
                .clone()
                .unwrap_or_else(|| record.reserved.clone());
            let shape = match PoolShape::build(
                &all_ranges(record.cidr, gateway, &record.ranges),
                &reserved,
            ) {
                Ok(s) => s,
                Err(e) => return Ok(Err(e.into())),
            };
            let family = record.cidr.family();
            let covered = gateway
                .filter(|g| Some(*g) != record.gateway)
                .map(|g| (addr_to_u128(g), addr_to_u128(g), "the gateway"))
                .into_iter()
                .chain(reserved.iter().map(|r| {
                    let (lo, hi) = bounds(r);
                    (lo, hi, "reserved")
                }));
            for (lo, hi, what) in covered {
                if let Some((pos, owner)) = first_allocation_in(tx, id, lo, hi)? {
                    return Ok(Err(UpdatePoolError::AddressInUse {
                        pool: pool.to_string(),
                        ip: family.addr(pos),
                        owner,
                        what: what.to_string(),
                    }));
                }
            }
            // Every allocation stays allocatable (checked above), so the new index is the new
            // empty layout minus the allocations: O(allocations), for a rare operation.
            let mut free = shape.initial_free();
            let (a, b) = (allocation_key(id, 0), allocation_key(id, u128::MAX));
            for row in tx.allocations.range::<&[u8]>(a.as_slice()..=b.as_slice())? {
                let (k, _) = row?;
                let (_, pos) = decode_allocation_key(k.value())?;
                free.take(pos);
            }
            // Cooling addresses stay out of the free index while they remain allocatable.
            super::expire::retain_cooling(tx, &mut next, |pos| free.take(pos))?;
            next.record.gateway = gateway;
            next.record.reserved = reserved;
            next.record.capacity = shape.capacity;
            next.layout = shape;
            next.free = free;
        }
        if let Some(labels) = &update.labels {
            next.record.labels = labels.clone();
        }
        if let Some(d) = &update.description {
            next.record.description = d.clone();
        }
        let settings = update.apply_settings(&next.record.settings());
        next.record.set_settings(settings);
        self.replace_entry(tx, next);
        Ok(Ok(self.output(id)))
    }

    pub(super) fn add_range(
        &mut self,
        tx: &mut Tx<'_>,
        pool: &str,
        cidr: Cidr,
        gateway: GatewayChoice,
    ) -> Outcome {
        let id = match self.entry_of(pool) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let range = match new_range(cidr, gateway) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.into())),
        };
        let entry = &self.pools[&id];
        if entry.record.delegation_prefix_len.is_some() || entry.record.parent.is_some() {
            return Ok(Err(CreatePoolError::from(InputError::InvalidSetting {
                field: "ranges".into(),
                reason: "a prefix pool or a child pool has one range".into(),
            })
            .into()));
        }
        let family = entry.record.cidr.family();
        if range.cidr.family() != family {
            return Ok(Err(UpdatePoolError::RangeFamily {
                pool: pool.to_string(),
                cidr: range.cidr,
            }));
        }
        if entry.layout.ranges().len() >= MAX_RANGES {
            return Ok(Err(UpdatePoolError::TooManyRanges {
                pool: pool.to_string(),
                max: MAX_RANGES,
            }));
        }
        let tag = family.tag();
        if let Some((other, existing_cidr)) =
            self.overlapping(tag, range.cidr.first(), range.cidr.last())
        {
            return Ok(Err(CreatePoolError::Overlap {
                cidr: range.cidr,
                existing: other.record.name.clone(),
                existing_cidr,
            }
            .into()));
        }
        let mut next = entry.clone();
        next.record.ranges.push(range);
        let shape = match PoolShape::build(&next.record.all_ranges(), &next.record.reserved) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.into())),
        };
        let Some(added) = shape.ranges().last() else {
            return Ok(Err(CreatePoolError::NoAllocatableAddress {
                cidr: range.cidr,
            }
            .into()));
        };
        for (s, e) in added.initial_free().intervals() {
            next.free.insert_interval(s, e);
        }
        let row = RangeRecord {
            pool: id,
            last: added.end,
        };
        tx.put(
            TableId::Ranges,
            &range_key(tag, added.start),
            &encode(&row)?,
        )?;
        next.record.capacity = shape.capacity;
        next.layout = shape;
        self.replace_entry(tx, next);
        Ok(Ok(self.output(id)))
    }

    pub(super) fn remove_range(&mut self, tx: &mut Tx<'_>, pool: &str, cidr: Cidr) -> Outcome {
        let id = match self.entry_of(pool) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let entry = &self.pools[&id];
        let ranges = entry.record.all_ranges();
        let Some(i) = ranges.iter().position(|r| r.cidr == cidr) else {
            return Ok(Err(UpdatePoolError::NoSuchRange {
                pool: pool.to_string(),
                cidr,
            }));
        };
        if i == 0 {
            return Ok(Err(UpdatePoolError::FirstRange {
                pool: pool.to_string(),
                cidr,
            }));
        }
        let (lo, hi) = (cidr.first(), cidr.last());
        if let Some((pos, owner)) = first_allocation_in(tx, id, lo, hi)? {
            return Ok(Err(UpdatePoolError::RangeNotEmpty {
                pool: pool.to_string(),
                cidr,
                ip: cidr.family().addr(pos),
                owner,
            }));
        }
        let mut next = entry.clone();
        next.record.ranges.remove(i - 1);
        let shape = match PoolShape::build(&next.record.all_ranges(), &next.record.reserved) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.into())),
        };
        next.free.remove_range(lo, hi);
        super::expire::retain_cooling(tx, &mut next, |pos| !(lo..=hi).contains(&pos))?;
        tx.del(TableId::Ranges, &range_key(cidr.family().tag(), lo))?;
        next.record.capacity = shape.capacity;
        next.layout = shape;
        self.replace_entry(tx, next);
        Ok(Ok(self.output(id)))
    }
}
