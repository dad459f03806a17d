//! Pool operations of [`State`]: creating and deleting pools, and the index of ranges that
//! overlap checks and address lookups use.

use super::*;
use crate::layout::PoolLayout;

impl State {
    /// The existing pool with a range sharing an address with `[first, last]` of family
    /// `tag`, and that range.
    pub(super) fn overlapping(
        &self,
        tag: u8,
        first: u128,
        last: u128,
    ) -> Option<(&PoolEntry, Cidr)> {
        let before = self.ranges.range(..=(tag, first)).next_back();
        let after = self
            .ranges
            .range((Bound::Excluded((tag, first)), Bound::Unbounded))
            .next();
        [before, after]
            .into_iter()
            .flatten()
            .filter(|((t, _), _)| *t == tag)
            .filter_map(|((_, start), id)| {
                let e = self.pools.get(id)?;
                let l = e.layout.range_starting(*start)?;
                (l.start <= last && first <= l.end).then_some((e, l.cidr))
            })
            .next()
    }

    /// Adds every range of `shape` to the range index under `tag` ([`tables::range_tag`]).
    pub(super) fn index_ranges(&mut self, id: PoolId, shape: &PoolShape, tag: u8) {
        for l in shape.ranges() {
            self.ranges.insert((tag, l.start), id);
        }
    }

    /// Removes every range of `shape` from the range index.
    pub(super) fn unindex_ranges(&mut self, shape: &PoolShape, tag: u8) {
        for l in shape.ranges() {
            self.ranges.remove(&(tag, l.start));
        }
    }

    /// The child pool whose CIDR is the block at `pos` of prefix pool `entry`, if any.
    pub(super) fn child_of_block(&self, entry: &PoolEntry, pos: u128) -> Option<&PoolEntry> {
        entry.record.delegation_prefix_len?;
        let tag = entry.record.cidr.family().tag() | tables::CHILD_TAG;
        let id = self.ranges.get(&(tag, pos))?;
        self.pools.get(id)
    }

    /// A child pool of prefix pool `entry`, if it has any.
    fn any_child(&self, entry: &PoolEntry) -> Option<&PoolEntry> {
        entry.record.delegation_prefix_len?;
        let tag = entry.record.cidr.family().tag() | tables::CHILD_TAG;
        let (lo, hi) = (entry.record.cidr.first(), entry.record.cidr.last());
        let (_, id) = self.ranges.range((tag, lo)..=(tag, hi)).next()?;
        self.pools.get(id)
    }

    /// Checks that `cidr` may be a child of `parent`: a prefix pool holding `cidr` as one of
    /// its allocated blocks with no child yet. Returns the parent's id and the block's lease end.
    #[allow(clippy::type_complexity)]
    fn check_parent(
        &self,
        tx: &Tx<'_>,
        cidr: Cidr,
        parent: &str,
    ) -> Result<Result<(PoolId, Option<Stamp>), CreatePoolError>, StorageError> {
        let Some(p) = self.names.get(parent).and_then(|id| self.pools.get(id)) else {
            return Ok(Err(CreatePoolError::ParentNotFound {
                parent: parent.to_string(),
            }));
        };
        let overlap = || CreatePoolError::Overlap {
            cidr,
            existing: parent.to_string(),
            existing_cidr: p.record.cidr,
        };
        let is_block = p.record.delegation_prefix_len == Some(cidr.prefix())
            && p.record.cidr.family() == cidr.family()
            && p.record.cidr.contains(cidr.network());
        if !is_block || self.child_of_block(p, cidr.first()).is_some() {
            return Ok(Err(overlap()));
        }
        match tx.allocation(p.id, cidr.first())? {
            Some(block) => Ok(Ok((p.id, block.expires_at))),
            None => Ok(Err(overlap())),
        }
    }

    pub(super) fn create_pool_v3(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        spec: &crate::pools::PoolSpecV3,
    ) -> Result<Result<OpOutput, CreatePoolError>, StorageError> {
        if let Err(e) = check_op(&Op::CreatePoolV3(Box::new(spec.clone()))) {
            return Ok(Err(match e {
                OpError::CreatePool(e) => e,
                other => CreatePoolError::Input(crate::error::InputError::InvalidSetting {
                    field: "pool".into(),
                    reason: other.to_string(),
                }),
            }));
        }
        if let Some(parent) = &spec.parent {
            if spec.delegation_prefix_len.is_some() {
                return Ok(Err(CreatePoolError::Input(
                    crate::error::InputError::InvalidSetting {
                        field: "parent".into(),
                        reason: "a child pool cannot delegate prefixes itself".into(),
                    },
                )));
            }
            let cidr = match Cidr::new(spec.base.cidr.network(), spec.base.cidr.prefix()) {
                Ok(c) => c,
                Err(e) => return Ok(Err(e.into())),
            };
            let (parent_id, lease_end) = match self.check_parent(tx, cidr, parent)? {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            if self.names.contains_key(&spec.base.name) {
                return Ok(Err(CreatePoolError::Exists {
                    name: spec.base.name.clone(),
                }));
            }
            let out =
                self.create_pool_with(tx, stamp, &spec.base, &spec.settings, None, Some(parent))?;
            if out.is_ok() {
                // While the child exists its block's lease neither expires nor is due.
                if let Some(at) = lease_end {
                    tx.del(
                        TableId::Expiry,
                        &tables::expiry_key(at, parent_id, cidr.first()),
                    )?;
                }
            }
            return Ok(out);
        }
        self.create_pool_with(
            tx,
            stamp,
            &spec.base,
            &spec.settings,
            spec.delegation_prefix_len,
            None,
        )
    }

    pub(super) fn create_pool(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        spec: &crate::types::PoolSpec,
        settings: &PoolSettings,
    ) -> Result<Result<OpOutput, CreatePoolError>, StorageError> {
        self.create_pool_with(tx, stamp, spec, settings, None, None)
    }

    fn create_pool_with(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        spec: &crate::types::PoolSpec,
        settings: &PoolSettings,
        delegation: Option<u8>,
        parent: Option<&str>,
    ) -> Result<Result<OpOutput, CreatePoolError>, StorageError> {
        let (gateway, layout) = match pool_layout(spec) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        // A prefix pool has no gateway and no network/broadcast exclusion: blocks instead.
        let (gateway, layout) = match delegation {
            None => (gateway, layout),
            Some(len) => match PoolLayout::delegating(layout.cidr, &spec.reserved, len) {
                Ok(l) => (None, l),
                Err(e) => return Ok(Err(e)),
            },
        };
        if let Err(e) = check_settings(settings, layout.cidr.family()) {
            return Ok(Err(e.into()));
        }
        if self.names.contains_key(&spec.name) {
            return Ok(Err(CreatePoolError::Exists {
                name: spec.name.clone(),
            }));
        }
        let cidr = layout.cidr;
        let tag = cidr.family().tag();
        // A child lies in its parent's block (checked by the caller): the one allowed overlap.
        let overlap = match parent {
            Some(_) => None,
            None => self.overlapping(tag, layout.start, layout.end),
        };
        if let Some((other, existing_cidr)) = overlap {
            return Ok(Err(CreatePoolError::Overlap {
                cidr,
                existing: other.record.name.clone(),
                existing_cidr,
            }));
        }
        let id = self.meta.next_pool_id;
        let Some(next) = id.checked_add(1) else {
            return Ok(Err(CreatePoolError::PoolIdsExhausted));
        };
        self.meta.next_pool_id = next;
        let mut record = PoolRecord::from_v1(tables::PoolRecordV1 {
            name: spec.name.clone(),
            cidr,
            gateway,
            reserved: spec.reserved.clone(),
            labels: spec.labels.clone(),
            description: spec.description.clone(),
            created_at: stamp,
            capacity: layout.capacity,
            allocated: 0,
        });
        record.set_settings(settings.clone());
        record.delegation_prefix_len = delegation;
        record.parent = parent.map(str::to_string);
        let tag = tables::range_tag(&record);
        let info = record.info(id);
        let name_record = NameRecord {
            pool: id,
            family: cidr.family(),
        };
        tx.put(TableId::Names, spec.name.as_bytes(), &encode(&name_record)?)?;
        let range = RangeRecord {
            pool: id,
            last: layout.end,
        };
        tx.put(
            TableId::Ranges,
            &range_key(tag, layout.start),
            &encode(&range)?,
        )?;
        self.names.insert(spec.name.clone(), id);
        self.index_labels(id, &spec.labels);
        self.ranges.insert((tag, layout.start), id);
        let free = layout.initial_free();
        let layout = PoolShape::single(layout);
        self.pools.insert(
            id,
            PoolEntry {
                id,
                record,
                layout,
                free,
                dirty: true,
                cooling: Cooling::default(),
            },
        );
        tx.dirty.push(id);
        self.rerank(id);
        if tx.journaling {
            tx.journal.push(Undo::Created { pool: id });
        }
        Ok(Ok(OpOutput::PoolCreated(info)))
    }

    pub(super) fn delete_pool(
        &mut self,
        tx: &mut Tx<'_>,
        name: &str,
        force: bool,
    ) -> Result<Result<OpOutput, DeletePoolError>, StorageError> {
        let Some(&id) = self.names.get(name) else {
            return Ok(Err(DeletePoolError::PoolNotFound {
                pool: name.to_string(),
            }));
        };
        let Some(entry) = self.pools.get(&id) else {
            return Err(StorageError::Corrupt {
                table: "core_pools",
                reason: format!("pool {name:?} is named but has no record"),
            });
        };
        let allocated = entry.record.allocated;
        if let Some(child) = self.any_child(entry) {
            return Ok(Err(DeletePoolError::PrefixInUse {
                pool: name.to_string(),
                child: child.record.name.clone(),
            }));
        }
        if entry.record.frozen {
            return Ok(Err(DeletePoolError::Frozen {
                pool: name.to_string(),
            }));
        }
        if allocated > 0 && !force {
            return Ok(Err(DeletePoolError::NotEmpty {
                pool: name.to_string(),
                allocated,
            }));
        }
        State::drop_lifecycle_rows(tx, id)?;
        if allocated > 0 {
            let lo = allocation_key(id, 0);
            let hi = allocation_key(id, u128::MAX);
            let family = entry.record.cidr.family();
            let from = self.events.pending.len();
            self.events
                .emit_dropped(tx, self.meta.now, name, family, lo, hi)?;
            self.events
                .set_prefixes(from, entry.record.delegation_prefix_len);
            tx.del_range(
                TableId::Allocations,
                lo.as_slice(),
                Bound::Included(hi.as_slice()),
            )?;
            // Owner keys are the pool id followed by a non-empty owner, so they sort after
            // the bare id and before the next id.
            let lo = pool_key(id);
            match id.checked_add(1).map(pool_key) {
                Some(hi) => tx.del_range(TableId::Owners, &lo, Bound::Excluded(hi.as_slice()))?,
                None => tx.del_range(TableId::Owners, &lo, Bound::Unbounded)?,
            }
        }
        // A deleted child gives its block's lease back to expiry.
        if let Some(parent) = entry.record.parent.clone() {
            if let Some(&pid) = self.names.get(&parent) {
                let pos = entry.record.cidr.first();
                if let Some(at) = tx.allocation(pid, pos)?.and_then(|b| b.expires_at) {
                    tx.put(
                        TableId::Expiry,
                        &tables::expiry_key(at, pid, pos),
                        &encode(&())?,
                    )?;
                }
            }
        }
        let tag = tables::range_tag(&entry.record);
        let starts: Vec<u128> = entry.layout.ranges().iter().map(|l| l.start).collect();
        tx.del(TableId::Pools, &pool_key(id))?;
        tx.del(TableId::Names, name.as_bytes())?;
        for first in starts {
            tx.del(TableId::Ranges, &range_key(tag, first))?;
            self.ranges.remove(&(tag, first));
        }
        self.names.remove(name);
        if let Some(entry) = self.pools.remove(&id) {
            // The owner index keeps the deleted id: selection drops it when met.
            self.unindex_labels(id, &entry.record.labels);
            self.rerank(id);
            if tx.journaling {
                tx.journal.push(Undo::Deleted {
                    entry: Box::new(entry),
                });
            }
        }
        Ok(Ok(OpOutput::PoolDeleted {
            released: u64::try_from(allocated).unwrap_or(u64::MAX),
        }))
    }
}
