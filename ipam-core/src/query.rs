//! Read-only queries over a redb read transaction, and the state digest. Queries need no
//! [`crate::State`], so reads never wait for an apply.
//!
//! The free functions each open the tables they need; a [`Reader`] opens each table once per
//! read transaction and serves many lookups (the read-through cache's hot path). A table that
//! does not exist yet (a database [`crate::State::open`] has not touched) reads as empty.

use std::cell::{OnceCell, RefCell};
use std::net::IpAddr;

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable};
use sha2::{Digest, Sha256};

use crate::error::{InputError, QueryError, StorageError};
use crate::pools::PoolShape;
use crate::tables::{
    self, allocation_key, decode, decode_allocation_key, owner_key, pool_key, range_key,
    AllocationRecord, CoreTable, NameRecord, PoolRecord, RangeRecord,
};
use crate::types::{
    addr_to_u128, AddressInfo, Allocation, AllocationPage, Family, Labels, PoolId, PoolInfo,
};
use crate::validate::{check_limit, check_name, check_owner, MAX_PAGE};

type Ro = ReadOnlyTable<&'static [u8], &'static [u8]>;

mod events;
pub use events::{check_after, event_bounds, events, history};

fn open(rtx: &ReadTransaction, def: CoreTable) -> Result<Option<Ro>, StorageError> {
    match rtx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The core's tables of one read transaction, each opened on first use and then reused.
pub struct Reader<'r> {
    rtx: &'r ReadTransaction,
    names: OnceCell<Option<Ro>>,
    pools: OnceCell<Option<Ro>>,
    ranges: OnceCell<Option<Ro>>,
    allocations: OnceCell<Option<Ro>>,
    owners: OnceCell<Option<Ro>>,
    /// The last pool name resolved: a read transaction is a snapshot, so it stays valid, and
    /// lookups through one reader usually hit the same pool.
    last_name: RefCell<Option<(String, NameRecord)>>,
}

impl<'r> Reader<'r> {
    /// A reader over `rtx`; opens nothing yet.
    pub fn new(rtx: &'r ReadTransaction) -> Reader<'r> {
        Reader {
            rtx,
            names: OnceCell::new(),
            pools: OnceCell::new(),
            ranges: OnceCell::new(),
            allocations: OnceCell::new(),
            owners: OnceCell::new(),
            last_name: RefCell::new(None),
        }
    }

    fn table<'a>(
        &self,
        cell: &'a OnceCell<Option<Ro>>,
        def: CoreTable,
    ) -> Result<Option<&'a Ro>, StorageError> {
        if cell.get().is_none() {
            let opened = open(self.rtx, def)?;
            // A OnceCell set twice keeps the first value; both are the same table.
            let _ = cell.set(opened);
        }
        Ok(cell.get().and_then(Option::as_ref))
    }

    fn name(&self, name: &str) -> Result<Option<NameRecord>, StorageError> {
        if let Some((cached, found)) = self.last_name.borrow().as_ref() {
            if cached == name {
                return Ok(Some(*found));
            }
        }
        let Some(names) = self.table(&self.names, tables::POOL_NAMES)? else {
            return Ok(None);
        };
        let found: Option<NameRecord> = match names.get(name.as_bytes())? {
            Some(v) => Some(decode("core_pool_names", v.value())?),
            None => None,
        };
        if let Some(found) = found {
            *self.last_name.borrow_mut() = Some((name.to_string(), found));
        }
        Ok(found)
    }

    fn pool_record(&self, id: PoolId) -> Result<PoolRecord, StorageError> {
        let missing = || StorageError::Corrupt {
            table: "core_pools",
            reason: format!("pool id {id} is referenced but has no record"),
        };
        let pools = self
            .table(&self.pools, tables::POOLS)?
            .ok_or_else(missing)?;
        let value = pools.get(pool_key(id).as_slice())?.ok_or_else(missing)?;
        decode("core_pools", value.value())
    }

    fn pool_by_name(&self, name: &str) -> Result<(PoolId, PoolRecord), QueryError> {
        check_name(name)?;
        let found = self.name(name)?.ok_or_else(|| QueryError::PoolNotFound {
            pool: name.to_string(),
        })?;
        Ok((found.pool, self.pool_record(found.pool)?))
    }

    fn allocation_record(
        &self,
        id: PoolId,
        pos: u128,
    ) -> Result<Option<AllocationRecord>, StorageError> {
        let Some(allocations) = self.table(&self.allocations, tables::ALLOCATIONS)? else {
            return Ok(None);
        };
        match allocations.get(allocation_key(id, pos).as_slice())? {
            Some(v) => Ok(Some(decode("core_allocations", v.value())?)),
            None => Ok(None),
        }
    }

    /// `owner`'s allocation in the pool `name` resolves to, through the owner index.
    fn owner_lookup(
        &self,
        pool: &str,
        found: NameRecord,
        owner: &str,
    ) -> Result<Option<Allocation>, StorageError> {
        let Some(owners) = self.table(&self.owners, tables::OWNERS)? else {
            return Ok(None);
        };
        let pos: u128 = match owners.get(owner_key(found.pool, owner).as_slice())? {
            Some(v) => decode("core_owners", v.value())?,
            None => return Ok(None),
        };
        let record =
            self.allocation_record(found.pool, pos)?
                .ok_or_else(|| StorageError::Corrupt {
                    table: "core_owners",
                    reason: format!(
                        "owner {owner:?} of pool {pool:?} points at a missing allocation"
                    ),
                })?;
        let ip = found.family.addr(pos);
        Ok(Some(
            record.into_allocation(&self.pool_record(found.pool)?, ip),
        ))
    }

    /// See [`pool`].
    pub fn pool(&self, name: &str) -> Result<PoolInfo, QueryError> {
        let (id, record) = self.pool_by_name(name)?;
        Ok(record.info(id))
    }

    /// See [`pools`].
    pub fn pools(&self, label_filter: &Labels) -> Result<Vec<PoolInfo>, StorageError> {
        let Some(names) = self.table(&self.names, tables::POOL_NAMES)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in names.iter()? {
            let (_, v) = row?;
            let found: NameRecord = decode("core_pool_names", v.value())?;
            let record = self.pool_record(found.pool)?;
            if label_filter
                .iter()
                .all(|(k, v)| record.labels.get(k) == Some(v))
            {
                out.push(record.info(found.pool));
            }
        }
        Ok(out)
    }

    /// See [`allocations`].
    pub fn allocations(
        &self,
        pool: &str,
        owner: Option<&str>,
        after: Option<IpAddr>,
        limit: usize,
    ) -> Result<AllocationPage, QueryError> {
        check_limit(limit)?;
        if let Some(owner) = owner {
            check_owner(owner)?;
        }
        let (id, record) = self.pool_by_name(pool)?;
        let family = record.cidr.family();
        let empty = AllocationPage {
            allocations: Vec::new(),
            next: None,
        };
        if let Some(a) = after.filter(|a| Family::of(*a) != family) {
            return Err(InputError::CursorFamily {
                after: a,
                cidr: record.cidr,
            }
            .into());
        }
        let after_pos = after.map(addr_to_u128);
        if let Some(owner) = owner {
            // An owner holds at most one address per pool: the page is that one or nothing.
            let found = NameRecord { pool: id, family };
            let hit = self
                .owner_lookup(pool, found, owner)?
                .filter(|a| after_pos.is_none_or(|p| addr_to_u128(a.ip) > p));
            return Ok(AllocationPage {
                allocations: hit.into_iter().collect(),
                next: None,
            });
        }
        let Some(table) = self.table(&self.allocations, tables::ALLOCATIONS)? else {
            return Ok(empty);
        };
        let start = match after_pos {
            None => 0,
            Some(u128::MAX) => return Ok(empty),
            Some(p) => p + 1,
        };
        let lo = allocation_key(id, start);
        let hi = allocation_key(id, u128::MAX);
        let mut page = Vec::with_capacity(limit.min(128));
        let mut more = false;
        let rows = table
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(StorageError::from)?;
        for row in rows {
            if page.len() == limit {
                more = true;
                break;
            }
            let (k, v) = row.map_err(StorageError::from)?;
            let (_, pos) = decode_allocation_key(k.value())?;
            let rec: AllocationRecord = decode("core_allocations", v.value())?;
            let ip = family.addr(pos);
            page.push(rec.into_allocation(&record, ip));
        }
        let next = if more {
            page.last().map(|a| a.ip)
        } else {
            None
        };
        Ok(AllocationPage {
            allocations: page,
            next,
        })
    }

    /// See [`address`].
    pub fn address(&self, ip: IpAddr) -> Result<AddressInfo, StorageError> {
        let mut info = AddressInfo {
            pool: None,
            allocation: None,
            block: None,
        };
        let family = Family::of(ip);
        let pos = addr_to_u128(ip);
        // Child pools first: they lie inside a parent's block, so they are the innermost.
        let found = match self.range_holding(family.tag() | tables::CHILD_TAG, pos)? {
            Some(r) => Some(r),
            None => self.range_holding(family.tag(), pos)?,
        };
        let Some(range) = found else {
            return Ok(info);
        };
        let record = self.pool_record(range.pool)?;
        info.allocation = self
            .allocation_record(range.pool, pos)?
            .map(|rec| rec.into_allocation(&record, ip));
        // The block: the parent's allocation of a child's CIDR, or the block of a prefix pool
        // that contains the address.
        let block_of = |holder: &PoolRecord, id: PoolId, len: u8| -> Result<_, StorageError> {
            let width = holder.cidr.family().bits();
            let mask = u128::MAX
                .checked_shr(u32::from(len) + 128 - u32::from(width))
                .unwrap_or(0);
            let start = pos & !mask;
            let at = holder.cidr.family().addr(start);
            Ok(self
                .allocation_record(id, start)?
                .map(|rec| rec.into_allocation(holder, at)))
        };
        if let Some(parent) = &record.parent {
            if let Ok((pid, prec)) = self.pool_by_name(parent) {
                info.block = block_of(&prec, pid, record.cidr.prefix())?;
            }
        } else if let Some(len) = record.delegation_prefix_len {
            info.block = block_of(&record, range.pool, len)?;
            info.allocation = None;
        }
        info.pool = Some(record.name);
        Ok(info)
    }

    /// The range of tag `tag` holding `pos`: ranges of one tag are disjoint, so only the one
    /// starting last at or before `pos` can.
    fn range_holding(&self, tag: u8, pos: u128) -> Result<Option<RangeRecord>, StorageError> {
        let Some(ranges) = self.table(&self.ranges, tables::RANGES)? else {
            return Ok(None);
        };
        let lo = range_key(tag, 0);
        let key = range_key(tag, pos);
        let Some(row) = ranges
            .range::<&[u8]>(lo.as_slice()..=key.as_slice())?
            .next_back()
        else {
            return Ok(None);
        };
        let (_, v) = row?;
        let range: RangeRecord = decode("core_ranges", v.value())?;
        Ok((range.last >= pos).then_some(range))
    }

    /// See [`next_free`].
    pub fn next_free(&self, pool: &str, count: usize) -> Result<Vec<IpAddr>, QueryError> {
        if !(1..=MAX_PAGE).contains(&count) {
            return Err(InputError::InvalidSetting {
                field: "count".into(),
                reason: format!("must be 1 to {MAX_PAGE}, got {count}"),
            }
            .into());
        }
        let (id, record) = self.pool_by_name(pool)?;
        let mut out = Vec::new();
        if record.frozen {
            return Ok(out);
        }
        let shape = PoolShape::of_record(&record).map_err(|e| StorageError::Corrupt {
            table: "core_pools",
            reason: format!("pool {pool:?}: {e}"),
        })?;
        let family = record.cidr.family();
        let allocatable = shape.initial_free();
        // A prefix pool steps block by block.
        let unit = allocatable.unit();
        // Cooling addresses are neither allocated nor free: the allocator takes them last,
        // oldest release first.
        let cooling = crate::state::cooling_positions(self.rtx, id)?;
        let cooling_set: std::collections::BTreeSet<u128> = cooling.iter().copied().collect();
        let emit = |q: u128, out: &mut Vec<IpAddr>| {
            if !cooling_set.contains(&q) {
                out.push(family.addr(q));
            }
            out.len() == count
        };
        let table = self.table(&self.allocations, tables::ALLOCATIONS)?;
        for l in shape.ranges() {
            for (s, e) in allocatable.intervals_in(l.start, l.end) {
                // Walk the interval alongside its allocations, in address order: the gaps are
                // what the allocator hands out next.
                let mut p = Some(s);
                if let Some(table) = table {
                    let (lo, hi) = (allocation_key(id, s), allocation_key(id, e));
                    let rows = table
                        .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
                        .map_err(StorageError::from)?;
                    for row in rows {
                        let (k, _) = row.map_err(StorageError::from)?;
                        let (_, taken) = decode_allocation_key(k.value())?;
                        while let Some(q) = p.filter(|q| *q < taken) {
                            if emit(q, &mut out) {
                                return Ok(out);
                            }
                            p = q.checked_add(unit);
                        }
                        p = taken.checked_add(unit);
                    }
                }
                while let Some(q) = p.filter(|q| *q <= e) {
                    if emit(q, &mut out) {
                        return Ok(out);
                    }
                    p = q.checked_add(unit);
                }
            }
        }
        out.extend(
            cooling
                .into_iter()
                .take(count - out.len())
                .map(|q| family.addr(q)),
        );
        Ok(out)
    }

    /// See [`owner_allocation`].
    pub fn owner_allocation(
        &self,
        pool: &str,
        owner: &str,
    ) -> Result<Option<Allocation>, QueryError> {
        check_name(pool)?;
        check_owner(owner)?;
        let found = self.name(pool)?.ok_or_else(|| QueryError::PoolNotFound {
            pool: pool.to_string(),
        })?;
        Ok(self.owner_lookup(pool, found, owner)?)
    }

    /// See [`owner_allocations`].
    pub fn owner_allocations(&self, owner: &str) -> Result<Vec<Allocation>, StorageError> {
        let mut out = Vec::new();
        // A malformed owner cannot hold anything.
        if check_owner(owner).is_err() {
            return Ok(out);
        }
        let Some(names) = self.table(&self.names, tables::POOL_NAMES)? else {
            return Ok(out);
        };
        for row in names.iter()? {
            let (k, v) = row?;
            let found: NameRecord = decode("core_pool_names", v.value())?;
            let name = std::str::from_utf8(k.value()).map_err(|e| StorageError::Corrupt {
                table: "core_pool_names",
                reason: e.to_string(),
            })?;
            if let Some(a) = self.owner_lookup(name, found, owner)? {
                out.push(a);
            }
        }
        Ok(out)
    }
}

/// One pool with its stats.
pub fn pool(rtx: &redb::ReadTransaction, name: &str) -> Result<PoolInfo, QueryError> {
    Reader::new(rtx).pool(name)
}

/// Every pool whose labels include all of `label_filter`, ordered by name.
pub fn pools(
    rtx: &redb::ReadTransaction,
    label_filter: &Labels,
) -> Result<Vec<PoolInfo>, StorageError> {
    Reader::new(rtx).pools(label_filter)
}

/// A page of a pool's allocations in address order, strictly after `after`, optionally only
/// `owner`'s; `limit` in 1..=1000.
///
/// `after` is a position: an address below the pool's range starts at its beginning, one
/// above it (or an IPv6 address for an IPv4 pool) yields an empty page.
pub fn allocations(
    rtx: &redb::ReadTransaction,
    pool: &str,
    owner: Option<&str>,
    after: Option<IpAddr>,
    limit: usize,
) -> Result<AllocationPage, QueryError> {
    Reader::new(rtx).allocations(pool, owner, after, limit)
}

/// The pool containing `ip` and its allocation, if any.
pub fn address(rtx: &redb::ReadTransaction, ip: IpAddr) -> Result<AddressInfo, StorageError> {
    Reader::new(rtx).address(ip)
}

/// Up to `count` (1..=1000) addresses the next allocations without an address by owners new
/// to `pool` would receive, in order, if nothing else happened first; none for a frozen pool.
///
/// Walks each range's allocatable intervals alongside its allocation rows: O(count +
/// allocations below the last address returned + reserved entries).
pub fn next_free(
    rtx: &redb::ReadTransaction,
    pool: &str,
    count: usize,
) -> Result<Vec<IpAddr>, QueryError> {
    Reader::new(rtx).next_free(pool, count)
}

/// `owner`'s allocation in `pool`, if any (the read-through cache's lookup).
///
/// Three point lookups: name → (id, family), owner index → address, allocation row.
pub fn owner_allocation(
    rtx: &redb::ReadTransaction,
    pool: &str,
    owner: &str,
) -> Result<Option<Allocation>, QueryError> {
    Reader::new(rtx).owner_allocation(pool, owner)
}

/// `owner`'s allocations in every pool, ordered by pool name.
pub fn owner_allocations(
    rtx: &redb::ReadTransaction,
    owner: &str,
) -> Result<Vec<Allocation>, StorageError> {
    Reader::new(rtx).owner_allocations(owner)
}

/// SHA-256 over every core table's rows in key order: equal on replicas with equal state.
///
/// Each table contributes its name, then every row as length-prefixed key and value, then a
/// row count, so no two different states hash the same input.
pub fn digest(rtx: &redb::ReadTransaction) -> Result<[u8; 32], StorageError> {
    let mut hasher = Sha256::new();
    for def in tables::TABLES {
        let name = redb::TableHandle::name(def);
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        let mut rows: u64 = 0;
        if let Some(table) = open(rtx, *def)? {
            for row in table.iter()? {
                let (k, v) = row?;
                if name == "core_meta" && k.value().starts_with(tables::POOL_CHANGED_PREFIX) {
                    continue;
                }
                // `core_meta` holds one record (`META_KEY`) and plain rows beside it.
                let canonical = if name == "core_meta" && k.value() != tables::META_KEY {
                    std::borrow::Cow::Borrowed(v.value())
                } else {
                    tables::canonical_value(name, v.value())?
                };
                let (k, v) = (k.value(), canonical.as_ref());
                hasher.update((k.len() as u64).to_be_bytes());
                hasher.update(k);
                hasher.update((v.len() as u64).to_be_bytes());
                hasher.update(v);
                rows += 1;
            }
        }
        hasher.update(rows.to_be_bytes());
    }
    Ok(hasher.finalize().into())
}
