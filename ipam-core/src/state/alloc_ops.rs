//! Allocation operations of [`State`]: allocate, release, release by owner, and removing an
//! allocation with everything that indexes it.

use super::*;

impl State {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn allocate(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        pool: &str,
        owner: &str,
        ip: Option<IpAddr>,
        labels: &Labels,
        ttl_seconds: Option<u32>,
    ) -> Result<Result<OpOutput, AllocateError>, StorageError> {
        let Some(entry) = self.names.get(pool).and_then(|id| self.pools.get_mut(id)) else {
            return Ok(Err(AllocateError::PoolNotFound {
                pool: pool.to_string(),
            }));
        };
        let id = entry.id;
        if let Some(ip) = ip {
            if let Some(reason) = entry.layout.unallocatable(ip) {
                return Ok(Err(AllocateError::NotAllocatable {
                    pool: pool.to_string(),
                    ip,
                    reason,
                }));
            }
        }
        let family = entry.record.cidr.family();
        let okey = owner_key(id, owner);
        // Always the table, never the owner index: the index is keyed by a 64-bit FNV hash,
        // and forgetting one owner's hash in a pool forgets any other owner that shares it, so
        // "not filed" is not proof enough to hand a holder a second address.
        let held = match tx.owners.get(okey.as_slice())? {
            Some(v) => Some(decode::<u128>("core_owners", v.value())?),
            None => None,
        };
        if let Some(held) = held {
            let held_ip = family.addr(held);
            if let Some(requested) = ip.filter(|r| *r != held_ip) {
                return Ok(Err(AllocateError::OwnerConflict {
                    pool: pool.to_string(),
                    owner: owner.to_string(),
                    held: held_ip,
                    requested,
                }));
            }
            let mut record = tx
                .allocation(id, held)?
                .ok_or_else(|| missing_allocation(pool, held))?;
            if record.expires_at.is_some() {
                // The holder asking again is a heartbeat: it renews the lease.
                expire::renew_record(tx, stamp, id, held, &mut record, ttl_seconds)?;
                let child_tag = family.tag() | crate::tables::CHILD_TAG;
                if entry.record.delegation_prefix_len.is_some()
                    && self.ranges.contains_key(&(child_tag, held))
                {
                    expire::suspend_expiry(tx, id, held, &record)?;
                }
            }
            let allocation = record.into_allocation(&entry.record, held_ip);
            return Ok(Ok(OpOutput::Allocated {
                allocation,
                existing: true,
            }));
        }
        if ip.is_none() && entry.record.frozen {
            // Frozen: only allocations naming their address, a cooling one included.
            return Ok(Err(AllocateError::Frozen {
                pool: pool.to_string(),
            }));
        }
        let cooling = match expire::cooling_choice(entry, owner, ip) {
            Ok(c) => c,
            Err((ip, last_owner)) => {
                return Ok(Err(AllocateError::CoolingDown {
                    pool: pool.to_string(),
                    ip,
                    last_owner,
                }))
            }
        };
        let pos = match (cooling, ip) {
            (Some(pos), _) => pos,
            (None, Some(ip)) => {
                let pos = addr_to_u128(ip);
                if !entry.free.is_free(pos) {
                    let holder = tx
                        .allocation(id, pos)?
                        .ok_or_else(|| missing_allocation(pool, pos))?;
                    return Ok(Err(AllocateError::AddressInUse {
                        pool: pool.to_string(),
                        ip,
                        owner: holder.owner,
                    }));
                }
                pos
            }
            (None, None) => match entry
                .layout
                .lowest_free(&entry.free)
                .or_else(|| entry.cooling.oldest())
            {
                Some(pos) => pos,
                None => {
                    return Ok(Err(AllocateError::Exhausted {
                        pool: pool.to_string(),
                    }))
                }
            },
        };
        // Every check passed: from here on only storage can fail.
        let ttl = crate::lease::resolve_ttl(ttl_seconds, &expire::lifecycle(entry));
        if let Some((at, last)) = entry.cooling.remove(pos) {
            tx.del(TableId::Cooling, &cooling_key(id, Stamp(at), pos))?;
            if tx.journaling {
                tx.journal.push(Undo::TookCooling {
                    pool: id,
                    pos,
                    at,
                    owner: last,
                });
            }
        } else {
            entry.free.take(pos);
            if tx.journaling {
                tx.journal.push(Undo::Took { pool: id, pos });
            }
        }
        entry.record.allocated += 1;
        if !entry.dirty {
            entry.dirty = true;
            tx.dirty.push(id);
        }
        // Saturating: 2^64 allocations cannot happen, and wrapping would repeat generations.
        self.meta.generation = self.meta.generation.saturating_add(1);
        let expires_at = ttl.map(|t| crate::lease::expiry(stamp, t));
        let record = AllocationRecord {
            owner: owner.to_string(),
            generation: self.meta.generation,
            allocated_at: stamp,
            labels: labels.clone(),
            ttl_seconds: ttl,
            expires_at,
            renewed_at: stamp,
        };
        let mut buf = std::mem::take(&mut tx.buf);
        encode_into(&mut buf, &record)?;
        tx.put(TableId::Allocations, &allocation_key(id, pos), &buf)?;
        encode_into(&mut buf, &pos)?;
        tx.put(TableId::Owners, &okey, &buf)?;
        if let Some(at) = expires_at {
            encode_into(&mut buf, &())?;
            tx.put(TableId::Expiry, &expiry_key(at, id, pos), &buf)?;
        }
        tx.buf = buf;
        let allocation = record.into_allocation(&entry.record, family.addr(pos));
        self.emit(
            tx,
            stamp,
            crate::events::EventKind::Allocated,
            pool,
            Some(allocation.ip),
            Some(owner),
            Some(allocation.generation),
        )?;
        self.rerank(id);
        self.owner_uses(tx, owner, id);
        Ok(Ok(OpOutput::Allocated {
            allocation,
            existing: false,
        }))
    }

    /// Removes the allocation `record` at `pos` from the rows and the index; the address
    /// becomes free, or starts cooling when the pool has a cooldown. Its event is `released`.
    pub(super) fn remove_allocation(
        &mut self,
        tx: &mut Tx<'_>,
        id: PoolId,
        pos: u128,
        record: &AllocationRecord,
    ) -> Result<(), StorageError> {
        self.remove_allocation_as(tx, id, pos, record, crate::events::EventKind::Released)
    }

    /// [`State::remove_allocation`] recorded as event `kind` (`released` or `expired`).
    pub(super) fn remove_allocation_as(
        &mut self,
        tx: &mut Tx<'_>,
        id: PoolId,
        pos: u128,
        record: &AllocationRecord,
        kind: crate::events::EventKind,
    ) -> Result<(), StorageError> {
        if let Some(entry) = self.pools.get(&id) {
            let name = entry.record.name.clone();
            let ip = entry.record.cidr.family().addr(pos);
            self.emit_allocation(tx, kind, &name, ip, record)?;
        }
        let now = self.meta.now;
        tx.del(TableId::Allocations, &allocation_key(id, pos))?;
        tx.del(TableId::Owners, &owner_key(id, &record.owner))?;
        if let Some(at) = record.expires_at {
            tx.del(TableId::Expiry, &expiry_key(at, id, pos))?;
        }
        let Some(entry) = self.pools.get_mut(&id) else {
            return Ok(());
        };
        entry.record.allocated = entry.record.allocated.saturating_sub(1);
        if !entry.dirty {
            entry.dirty = true;
            tx.dirty.push(id);
        }
        if expire::lifecycle(entry).reuse_cooldown_seconds > 0 {
            entry.cooling.insert(now.0, pos, record.owner.clone());
            let row = encode(&CoolingRecord {
                owner: record.owner.clone(),
            })?;
            tx.put(TableId::Cooling, &cooling_key(id, now, pos), &row)?;
            if tx.journaling {
                tx.journal.push(Undo::Cooled { pool: id, pos });
            }
        } else {
            entry.free.release(pos);
            if tx.journaling {
                tx.journal.push(Undo::Freed { pool: id, pos });
            }
            self.owner_maybe_left(tx, &record.owner, id)?;
        }
        self.rerank(id);
        Ok(())
    }

    /// The allocation at `ip` in `pool` that a release or a renewal names: its pool id,
    /// position and record, once the checks both make pass (the pool exists, holds the
    /// address, has it allocated, and at `generation` when fenced).
    pub(super) fn addressed(
        &self,
        tx: &mut Tx<'_>,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
    ) -> Result<Result<(PoolId, u128, AllocationRecord), ReleaseError>, StorageError> {
        let Some(entry) = self.names.get(pool).and_then(|id| self.pools.get(id)) else {
            return Ok(Err(ReleaseError::PoolNotFound {
                pool: pool.to_string(),
            }));
        };
        let id = entry.id;
        if !entry.layout.contains(ip) {
            return Ok(Err(ReleaseError::OutsidePool {
                pool: pool.to_string(),
                ip,
                cidr: entry.record.cidr,
            }));
        }
        let pos = addr_to_u128(ip);
        let Some(record) = tx.allocation(id, pos)? else {
            return Ok(Err(ReleaseError::NotAllocated {
                pool: pool.to_string(),
                ip,
            }));
        };
        if let Some(expected) = generation.filter(|g| *g != record.generation) {
            return Ok(Err(ReleaseError::GenerationMismatch {
                pool: pool.to_string(),
                ip,
                expected,
                actual: record.generation,
            }));
        }
        Ok(Ok((id, pos, record)))
    }

    pub(super) fn release(
        &mut self,
        tx: &mut Tx<'_>,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
    ) -> Result<Result<OpOutput, ReleaseError>, StorageError> {
        let (id, pos, record) = match self.addressed(tx, pool, ip, generation)? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        let entry = &self.pools[&id];
        if let Some(child) = self.child_of_block(entry, pos) {
            return Ok(Err(ReleaseError::PrefixInUse {
                pool: pool.to_string(),
                ip,
                child: child.record.name.clone(),
            }));
        }
        let allocation = record.clone().into_allocation(&entry.record, ip);
        self.remove_allocation(tx, id, pos, &record)?;
        Ok(Ok(OpOutput::Released(allocation)))
    }

    pub(super) fn release_owner(
        &mut self,
        tx: &mut Tx<'_>,
        pool: &str,
        owner: &str,
    ) -> Result<Result<OpOutput, ReleaseError>, StorageError> {
        let Some(entry) = self.names.get(pool).and_then(|id| self.pools.get(id)) else {
            return Ok(Err(ReleaseError::PoolNotFound {
                pool: pool.to_string(),
            }));
        };
        let id = entry.id;
        let family = entry.record.cidr.family();
        let held = match tx.owners.get(owner_key(id, owner).as_slice())? {
            Some(v) => decode::<u128>("core_owners", v.value())?,
            None => return Ok(Ok(OpOutput::ReleasedOwner { released: vec![] })),
        };
        let Some(record) = tx.allocation(id, held)? else {
            return Err(missing_allocation(pool, held));
        };
        if let Some(child) = self.child_of_block(entry, held) {
            return Ok(Err(ReleaseError::PrefixInUse {
                pool: pool.to_string(),
                ip: family.addr(held),
                child: child.record.name.clone(),
            }));
        }
        self.remove_allocation(tx, id, held, &record)?;
        Ok(Ok(OpOutput::ReleasedOwner {
            released: vec![family.addr(held)],
        }))
    }
}
