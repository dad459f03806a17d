//! Log time at work: the end of due leases and cooldowns at the start of every entry, renewals,
//! and where a pool's lease settings come from. A child of `state` so that it shares the index's internals
//! without widening them.

use std::net::IpAddr;

use redb::ReadableTable;

use super::{missing_allocation, PoolEntry, State, TableId, Tx};
use crate::alloc::FreeIndex;
use crate::command::OpOutput;
use crate::error::{ReleaseError, StorageError};
use crate::lease::{expiry, Cooling, PoolLifecycle};
use crate::tables::{
    self, allocation_key, cooling_key, decode, decode_cooling_key, decode_expiry_key, encode_into,
    expiry_key, owner_key, pool_key, AllocationRecord, CoolingRecord,
};
use crate::types::{addr_to_u128, PoolId, Stamp};

/// The one place that says where a pool's lease and cooldown settings come from: the pool
/// record's `default_ttl_seconds` and `reuse_cooldown_seconds`.
pub(super) fn lifecycle(entry: &PoolEntry) -> PoolLifecycle {
    PoolLifecycle {
        default_ttl_seconds: entry.record.default_ttl_seconds,
        reuse_cooldown_seconds: entry.record.reuse_cooldown_seconds,
    }
}

/// A core table opened for reading.
type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Opens `def` in a read transaction, or `None` when a data dir of an older release lacks it.
fn open_optional(
    rtx: &redb::ReadTransaction,
    def: tables::CoreTable,
) -> Result<Option<ReadTable>, StorageError> {
    match rtx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The bounds of one pool's rows in a table keyed by pool id first.
fn pool_bounds(id: PoolId) -> (Vec<u8>, Option<[u8; 4]>) {
    (pool_key(id).to_vec(), id.checked_add(1).map(pool_key))
}

/// A pool's cooling addresses as stored; they leave `free`.
pub(super) fn load_cooling(
    rtx: &redb::ReadTransaction,
    id: PoolId,
    free: &mut FreeIndex,
    name: &str,
) -> Result<Cooling, StorageError> {
    let mut cooling = Cooling::default();
    if let Some(t) = open_optional(rtx, tables::COOLING)? {
        let (lo, hi) = pool_bounds(id);
        let rows = match &hi {
            Some(hi) => t.range::<&[u8]>(lo.as_slice()..hi.as_slice())?,
            None => t.range::<&[u8]>(lo.as_slice()..)?,
        };
        for row in rows {
            let (k, v) = row?;
            let (_, at, pos) = decode_cooling_key(k.value())?;
            let rec: CoolingRecord = decode("core_cooling", v.value())?;
            if !free.take(pos) {
                return Err(StorageError::Corrupt {
                    table: "core_cooling",
                    reason: format!("pool {name:?}: cooling position {pos:#x} is not free"),
                });
            }
            cooling.insert(at.0, pos, rec.owner);
        }
    }
    Ok(cooling)
}

/// Which cooling address an allocation takes: the one `ip` names if `owner` released it, the
/// owner's newest cooling address when no `ip` is named, else none. `Err` when `ip` cools for
/// another owner: (the address, its last owner).
pub(super) fn cooling_choice(
    entry: &PoolEntry,
    owner: &str,
    ip: Option<IpAddr>,
) -> Result<Option<u128>, (IpAddr, String)> {
    match ip {
        Some(ip) => {
            let pos = addr_to_u128(ip);
            match entry.cooling.owner_of(pos) {
                Some(last) if last == owner => Ok(Some(pos)),
                Some(last) => Err((ip, last.to_string())),
                None => Ok(None),
            }
        }
        None => Ok(entry.cooling.newest_of(owner)),
    }
}

/// Renews `record` at `pos` as of `now`: `ttl` `Some(0)` makes it permanent, `Some(t)` sets a
/// new length, `None` keeps its own. Writes the row and moves its expiry index entry.
pub(super) fn renew_record(
    tx: &mut Tx<'_>,
    now: Stamp,
    id: PoolId,
    pos: u128,
    record: &mut AllocationRecord,
    ttl: Option<u32>,
) -> Result<(), StorageError> {
    let ttl = match ttl {
        Some(0) => None,
        Some(t) => Some(t),
        None => record.ttl_seconds,
    };
    if let Some(old) = record.expires_at {
        tx.del(TableId::Expiry, &expiry_key(old, id, pos))?;
    }
    record.ttl_seconds = ttl;
    record.expires_at = ttl.map(|t| expiry(now, t));
    record.renewed_at = now;
    let mut buf = std::mem::take(&mut tx.buf);
    if let Some(at) = record.expires_at {
        encode_into(&mut buf, &())?;
        tx.put(TableId::Expiry, &expiry_key(at, id, pos), &buf)?;
    }
    encode_into(&mut buf, record)?;
    tx.put(TableId::Allocations, &allocation_key(id, pos), &buf)?;
    tx.buf = buf;
    Ok(())
}

/// Takes a delegated block's lease out of the expiry index (its child pool keeps it alive);
/// the lease's `expires_at` stays in the row and counts again when the child is deleted.
pub(super) fn suspend_expiry(
    tx: &mut Tx<'_>,
    id: PoolId,
    pos: u128,
    record: &AllocationRecord,
) -> Result<(), StorageError> {
    if let Some(at) = record.expires_at {
        tx.del(TableId::Expiry, &expiry_key(at, id, pos))?;
    }
    Ok(())
}

/// Keeps the cooling addresses of `entry` for which `keep` is true and drops the others (an
/// update made them unallocatable, or removed their range): an address that can no longer be
/// allocated cannot be handed back to its last owner either.
pub(super) fn retain_cooling(
    tx: &mut Tx<'_>,
    entry: &mut PoolEntry,
    mut keep: impl FnMut(u128) -> bool,
) -> Result<(), StorageError> {
    let cooling: Vec<(u64, u128)> = entry.cooling.by_time.keys().copied().collect();
    for (at, pos) in cooling {
        if !keep(pos) {
            entry.cooling.remove(pos);
            tx.del(TableId::Cooling, &cooling_key(entry.id, Stamp(at), pos))?;
        }
    }
    Ok(())
}

/// A lease the state machine ended because its time passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The pool's name.
    pub pool: String,
    /// The allocation as it was.
    pub allocation: crate::types::Allocation,
}

impl State {
    /// Ends the cooldowns and leases due at log time `now`, before an entry's commands.
    pub(super) fn end_leases_and_cooldowns(&mut self, tx: &mut Tx<'_>) -> Result<(), StorageError> {
        let now = self.meta.now;
        self.expired.clear();
        let mut cooled_off = Vec::new();
        for entry in self.pools.values_mut() {
            if entry.cooling.len() == 0 {
                continue;
            }
            let cooldown = u64::from(lifecycle(entry).reuse_cooldown_seconds) * 1000;
            while let Some(&(at, pos)) = entry.cooling.by_time.keys().next() {
                if at.saturating_add(cooldown) > now.0 {
                    break;
                }
                if let Some((_, owner)) = entry.cooling.remove(pos) {
                    cooled_off.push((entry.id, owner));
                }
                entry.free.release(pos);
                tx.del(TableId::Cooling, &cooling_key(entry.id, Stamp(at), pos))?;
            }
        }
        for (id, owner) in cooled_off {
            self.owner_maybe_left(tx, &owner, id)?;
        }
        let hi = expiry_key(now, PoolId::MAX, u128::MAX);
        let mut due = Vec::new();
        for row in tx.expiry.range::<&[u8]>(..=hi.as_slice())? {
            let (k, _) = row?;
            due.push(decode_expiry_key(k.value())?);
        }
        for (_, id, pos) in due {
            let Some(entry) = self.pools.get(&id) else {
                return Err(StorageError::Corrupt {
                    table: "core_expiry",
                    reason: format!("lease of unknown pool id {id}"),
                });
            };
            let name = entry.record.name.clone();
            let ip = entry.record.cidr.family().addr(pos);
            let record = tx
                .allocation(id, pos)?
                .ok_or_else(|| missing_allocation(&name, pos))?;
            let allocation = record.clone().into_allocation(&entry.record, ip);
            self.remove_allocation_as(tx, id, pos, &record, crate::events::EventKind::Expired)?;
            self.expired.push(Expired {
                allocation,
                pool: name,
            });
        }
        Ok(())
    }

    /// Leases ended by the last [`State::apply`] call, in expiry order.
    pub fn expired(&self) -> &[Expired] {
        &self.expired
    }

    /// Number of cooling addresses of a pool, from memory.
    pub fn cooling(&self, name: &str) -> Option<usize> {
        let id = self.names.get(name)?;
        self.pools.get(id).map(|e| e.cooling.len())
    }

    pub(super) fn renew(
        &mut self,
        tx: &mut Tx<'_>,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
        ttl: Option<u32>,
    ) -> Result<Result<OpOutput, ReleaseError>, StorageError> {
        let (id, pos, mut record) = match self.addressed(tx, pool, ip, generation)? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        let entry = &self.pools[&id];
        renew_record(tx, self.meta.now, id, pos, &mut record, ttl)?;
        if self.child_of_block(entry, pos).is_some() {
            suspend_expiry(tx, id, pos, &record)?;
        }
        Ok(Ok(OpOutput::Renewed(
            record.into_allocation(&entry.record, ip),
        )))
    }

    /// Renews every lease `owner` holds, pools in name order; permanent ones are left alone.
    pub(super) fn renew_owner(
        &mut self,
        tx: &mut Tx<'_>,
        owner: &str,
    ) -> Result<OpOutput, StorageError> {
        let mut renewed = Vec::new();
        let pools: Vec<(String, PoolId)> =
            self.names.iter().map(|(n, id)| (n.clone(), *id)).collect();
        for (name, id) in pools {
            let Some(entry) = self.pools.get(&id) else {
                continue;
            };
            let family = entry.record.cidr.family();
            let pos = match tx.owners.get(owner_key(id, owner).as_slice())? {
                Some(v) => decode::<u128>("core_owners", v.value())?,
                None => continue,
            };
            let mut record = tx
                .allocation(id, pos)?
                .ok_or_else(|| missing_allocation(&name, pos))?;
            if record.expires_at.is_none() {
                continue;
            }
            renew_record(tx, self.meta.now, id, pos, &mut record, None)?;
            if self.child_of_block(entry, pos).is_some() {
                suspend_expiry(tx, id, pos, &record)?;
            }
            renewed.push(record.into_allocation(&entry.record, family.addr(pos)));
        }
        Ok(OpOutput::RenewedOwner { renewed })
    }

    /// Removes a deleted pool's lease index entries and cooling rows.
    pub(super) fn drop_lifecycle_rows(tx: &mut Tx<'_>, id: PoolId) -> Result<(), StorageError> {
        let lo = allocation_key(id, 0);
        let hi = allocation_key(id, u128::MAX);
        let mut leases = Vec::new();
        for row in tx
            .allocations
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
        {
            let (k, v) = row?;
            let rec: AllocationRecord = decode("core_allocations", v.value())?;
            if let Some(at) = rec.expires_at {
                let (_, pos) = tables::decode_allocation_key(k.value())?;
                leases.push(expiry_key(at, id, pos));
            }
        }
        for key in leases {
            tx.del(TableId::Expiry, &key)?;
        }
        let (lo, hi) = pool_bounds(id);
        match hi {
            Some(hi) => tx.del_range(
                TableId::Cooling,
                &lo,
                std::ops::Bound::Excluded(hi.as_slice()),
            )?,
            None => tx.del_range(TableId::Cooling, &lo, std::ops::Bound::Unbounded)?,
        }
        Ok(())
    }
}

/// Cooling addresses of pool `name` as of the latest applied log time (0 for an unknown pool).
pub fn cooling_count(rtx: &redb::ReadTransaction, name: &str) -> Result<u128, StorageError> {
    let Some(id) = rtx
        .open_table(tables::POOL_NAMES)?
        .get(name.as_bytes())?
        .map(|v| decode::<tables::NameRecord>("core_pool_names", v.value()))
        .transpose()?
        .map(|n| n.pool)
    else {
        return Ok(0);
    };
    let Some(t) = open_optional(rtx, tables::COOLING)? else {
        return Ok(0);
    };
    let (lo, hi) = pool_bounds(id);
    let rows = match &hi {
        Some(hi) => t.range::<&[u8]>(lo.as_slice()..hi.as_slice())?,
        None => t.range::<&[u8]>(lo.as_slice()..)?,
    };
    let mut n = 0u128;
    for row in rows {
        row?;
        n += 1;
    }
    Ok(n)
}

/// Positions of pool `id`'s cooling addresses in release order, oldest first: the order in
/// which the allocator hands them out once nothing else is free.
pub fn cooling_positions(
    rtx: &redb::ReadTransaction,
    id: PoolId,
) -> Result<Vec<u128>, StorageError> {
    let Some(t) = open_optional(rtx, tables::COOLING)? else {
        return Ok(Vec::new());
    };
    let (lo, hi) = pool_bounds(id);
    let rows = match &hi {
        Some(hi) => t.range::<&[u8]>(lo.as_slice()..hi.as_slice())?,
        None => t.range::<&[u8]>(lo.as_slice()..)?,
    };
    let mut out = Vec::new();
    for row in rows {
        let (k, _) = row?;
        out.push(decode_cooling_key(k.value())?.2);
    }
    Ok(out)
}

/// The earliest lease end in the state, if any lease exists: when the leader must append an
/// entry so that it is released.
pub fn next_expiry(rtx: &redb::ReadTransaction) -> Result<Option<Stamp>, StorageError> {
    let Some(t) = open_optional(rtx, tables::EXPIRY)? else {
        return Ok(None);
    };
    let first = t.first()?;
    match first {
        Some((k, _)) => Ok(Some(decode_expiry_key(k.value())?.0)),
        None => Ok(None),
    }
}

/// Log time as of the latest applied entry.
pub fn log_now(rtx: &redb::ReadTransaction) -> Result<Stamp, StorageError> {
    let Some(t) = open_optional(rtx, tables::META)? else {
        return Ok(Stamp(0));
    };
    match t.get(tables::META_KEY)? {
        Some(v) => Ok(decode::<tables::MetaRecord>("core_meta", v.value())?.now),
        None => Ok(Stamp(0)),
    }
}
