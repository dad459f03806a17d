//! Read-only queries over a redb read transaction, and the state digest. Queries need no
//! [`crate::State`], so reads never wait for an apply.

use std::net::IpAddr;

use crate::error::{QueryError, StorageError};
use crate::types::{AddressInfo, Allocation, AllocationPage, Labels, PoolInfo};

/// One pool with its stats.
pub fn pool(rtx: &redb::ReadTransaction, name: &str) -> Result<PoolInfo, QueryError> {
    let _ = (rtx, name);
    todo!("CORE-HELPER")
}

/// Every pool whose labels include all of `label_filter`, ordered by name.
pub fn pools(rtx: &redb::ReadTransaction, label_filter: &Labels) -> Result<Vec<PoolInfo>, StorageError> {
    let _ = (rtx, label_filter);
    todo!("CORE-HELPER")
}

/// A page of a pool's allocations in address order, strictly after `after`, optionally only
/// `owner`'s; `limit` in 1..=1000.
pub fn allocations(
    rtx: &redb::ReadTransaction,
    pool: &str,
    owner: Option<&str>,
    after: Option<IpAddr>,
    limit: usize,
) -> Result<AllocationPage, QueryError> {
    let _ = (rtx, pool, owner, after, limit);
    todo!("CORE-HELPER")
}

/// The pool containing `ip` and its allocation, if any.
pub fn address(rtx: &redb::ReadTransaction, ip: IpAddr) -> Result<AddressInfo, StorageError> {
    let _ = (rtx, ip);
    todo!("CORE-HELPER")
}

/// `owner`'s allocation in `pool`, if any (the read-through cache's lookup).
pub fn owner_allocation(
    rtx: &redb::ReadTransaction,
    pool: &str,
    owner: &str,
) -> Result<Option<Allocation>, QueryError> {
    let _ = (rtx, pool, owner);
    todo!("CORE-HELPER")
}

/// `owner`'s allocations in every pool, ordered by pool name.
pub fn owner_allocations(rtx: &redb::ReadTransaction, owner: &str) -> Result<Vec<Allocation>, StorageError> {
    let _ = (rtx, owner);
    todo!("CORE-HELPER")
}

/// SHA-256 over every core table's rows in key order: equal on replicas with equal state.
pub fn digest(rtx: &redb::ReadTransaction) -> Result<[u8; 32], StorageError> {
    let _ = rtx;
    todo!("CORE-HELPER")
}
