//! Read-only queries over a redb read transaction, and the state digest. Queries need no
//! [`crate::State`], so reads never wait for an apply.
//!
//! A table that does not exist yet (a database [`crate::State::open`] has not touched) reads
//! as empty.

use std::net::IpAddr;

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable};
use sha2::{Digest, Sha256};

use crate::error::{QueryError, StorageError};
use crate::tables::{
    self, allocation_key, decode, decode_allocation_key, owner_key, pool_key, range_key,
    AllocationRecord, CoreTable, PoolRecord, RangeRecord,
};
use crate::types::{
    addr_to_u128, AddressInfo, Allocation, AllocationPage, Family, Labels, PoolId, PoolInfo,
};
use crate::validate::{check_limit, check_name, check_owner};

type Ro = ReadOnlyTable<&'static [u8], &'static [u8]>;

fn open(rtx: &ReadTransaction, def: CoreTable) -> Result<Option<Ro>, StorageError> {
    match rtx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn get_pool_id(rtx: &ReadTransaction, name: &str) -> Result<Option<PoolId>, StorageError> {
    let Some(names) = open(rtx, tables::POOL_NAMES)? else {
        return Ok(None);
    };
    match names.get(name.as_bytes())? {
        Some(v) => Ok(Some(decode("core_pool_names", v.value())?)),
        None => Ok(None),
    }
}

fn get_pool_record(rtx: &ReadTransaction, id: PoolId) -> Result<PoolRecord, StorageError> {
    let missing = || StorageError::Corrupt {
        table: "core_pools",
        reason: format!("pool id {id} is named but has no record"),
    };
    let pools = open(rtx, tables::POOLS)?.ok_or_else(missing)?;
    let value = pools.get(pool_key(id).as_slice())?.ok_or_else(missing)?;
    decode("core_pools", value.value())
}

fn pool_by_name(rtx: &ReadTransaction, name: &str) -> Result<(PoolId, PoolRecord), QueryError> {
    check_name(name)?;
    let id = get_pool_id(rtx, name)?.ok_or_else(|| QueryError::PoolNotFound {
        pool: name.to_string(),
    })?;
    Ok((id, get_pool_record(rtx, id)?))
}

fn get_allocation(
    allocations: &Ro,
    id: PoolId,
    pos: u128,
) -> Result<Option<AllocationRecord>, StorageError> {
    match allocations.get(allocation_key(id, pos).as_slice())? {
        Some(v) => Ok(Some(decode("core_allocations", v.value())?)),
        None => Ok(None),
    }
}

/// `owner`'s allocation in pool `id` through the owner index.
fn owner_lookup(
    rtx: &ReadTransaction,
    id: PoolId,
    pool: &str,
    family: Option<Family>,
    owner: &str,
) -> Result<Option<Allocation>, StorageError> {
    let (Some(owners), Some(allocations)) =
        (open(rtx, tables::OWNERS)?, open(rtx, tables::ALLOCATIONS)?)
    else {
        return Ok(None);
    };
    let pos: u128 = match owners.get(owner_key(id, owner).as_slice())? {
        Some(v) => decode("core_owners", v.value())?,
        None => return Ok(None),
    };
    let record = get_allocation(&allocations, id, pos)?.ok_or_else(|| StorageError::Corrupt {
        table: "core_owners",
        reason: format!("owner {owner:?} of pool {pool:?} points at a missing allocation"),
    })?;
    // The family decides how the position renders; the owner fast path avoids reading the
    // pool record, and an allocation position above 2^32 can only be IPv6.
    let family = family.unwrap_or(if pos > u128::from(u32::MAX) {
        Family::V6
    } else {
        // A small position is ambiguous between families: ask the pool.
        get_pool_record(rtx, id)?.cidr.family()
    });
    Ok(Some(record.into_allocation(pool, family.addr(pos))))
}

/// One pool with its stats.
pub fn pool(rtx: &redb::ReadTransaction, name: &str) -> Result<PoolInfo, QueryError> {
    let (id, record) = pool_by_name(rtx, name)?;
    Ok(record.info(id))
}

/// Every pool whose labels include all of `label_filter`, ordered by name.
pub fn pools(
    rtx: &redb::ReadTransaction,
    label_filter: &Labels,
) -> Result<Vec<PoolInfo>, StorageError> {
    let Some(names) = open(rtx, tables::POOL_NAMES)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in names.iter()? {
        let (_, v) = row?;
        let id: PoolId = decode("core_pool_names", v.value())?;
        let record = get_pool_record(rtx, id)?;
        if label_filter
            .iter()
            .all(|(k, v)| record.labels.get(k) == Some(v))
        {
            out.push(record.info(id));
        }
    }
    Ok(out)
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
    check_limit(limit)?;
    if let Some(owner) = owner {
        check_owner(owner)?;
    }
    let (id, record) = pool_by_name(rtx, pool)?;
    let family = record.cidr.family();
    let after_pos = after.map(|a| match (Family::of(a), family) {
        (Family::V6, Family::V4) => u128::MAX,
        _ => addr_to_u128(a),
    });
    if let Some(owner) = owner {
        // An owner holds at most one address per pool: the page is that one or nothing.
        let found = owner_lookup(rtx, id, pool, Some(family), owner)?
            .filter(|a| after_pos.is_none_or(|p| addr_to_u128(a.ip) > p));
        return Ok(AllocationPage {
            allocations: found.into_iter().collect(),
            next: None,
        });
    }
    let Some(table) = open(rtx, tables::ALLOCATIONS)? else {
        return Ok(AllocationPage {
            allocations: Vec::new(),
            next: None,
        });
    };
    let start = match after_pos {
        None => 0,
        Some(u128::MAX) => {
            return Ok(AllocationPage {
                allocations: Vec::new(),
                next: None,
            })
        }
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
        page.push(rec.into_allocation(pool, family.addr(pos)));
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

/// The pool containing `ip` and its allocation, if any.
pub fn address(rtx: &redb::ReadTransaction, ip: IpAddr) -> Result<AddressInfo, StorageError> {
    let none = AddressInfo {
        pool: None,
        allocation: None,
    };
    let Some(ranges) = open(rtx, tables::RANGES)? else {
        return Ok(none);
    };
    let family = Family::of(ip);
    let pos = addr_to_u128(ip);
    let lo = range_key(family.tag(), 0);
    let key = range_key(family.tag(), pos);
    // CIDRs are disjoint, so only the pool starting last at or before `ip` can contain it.
    let Some(row) = ranges
        .range::<&[u8]>(lo.as_slice()..=key.as_slice())?
        .next_back()
    else {
        return Ok(none);
    };
    let (_, v) = row?;
    let range: RangeRecord = decode("core_ranges", v.value())?;
    if range.last < pos {
        return Ok(none);
    }
    let record = get_pool_record(rtx, range.pool)?;
    let allocation = match open(rtx, tables::ALLOCATIONS)? {
        Some(t) => {
            get_allocation(&t, range.pool, pos)?.map(|rec| rec.into_allocation(&record.name, ip))
        }
        None => None,
    };
    Ok(AddressInfo {
        pool: Some(record.name),
        allocation,
    })
}

/// `owner`'s allocation in `pool`, if any (the read-through cache's lookup).
///
/// Three point lookups (name → id, owner index, allocation row); the pool record is read only
/// when an IPv4-sized position leaves the family ambiguous.
pub fn owner_allocation(
    rtx: &redb::ReadTransaction,
    pool: &str,
    owner: &str,
) -> Result<Option<Allocation>, QueryError> {
    check_name(pool)?;
    check_owner(owner)?;
    let id = get_pool_id(rtx, pool)?.ok_or_else(|| QueryError::PoolNotFound {
        pool: pool.to_string(),
    })?;
    Ok(owner_lookup(rtx, id, pool, None, owner)?)
}

/// `owner`'s allocations in every pool, ordered by pool name.
pub fn owner_allocations(
    rtx: &redb::ReadTransaction,
    owner: &str,
) -> Result<Vec<Allocation>, StorageError> {
    let Some(names) = open(rtx, tables::POOL_NAMES)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if check_owner(owner).is_err() {
        return Ok(out);
    }
    for row in names.iter()? {
        let (k, v) = row?;
        let id: PoolId = decode("core_pool_names", v.value())?;
        let name = String::from_utf8_lossy(k.value()).into_owned();
        if let Some(a) = owner_lookup(rtx, id, &name, None, owner)? {
            out.push(a);
        }
    }
    Ok(out)
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
                let (k, v) = (k.value(), v.value());
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
