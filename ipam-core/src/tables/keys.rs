//! Fixed-width big-endian keys of the core tables, so ranges iterate in address (or time)
//! order, and their decoding.

use super::POOL_CHANGED_PREFIX;
use crate::error::StorageError;
use crate::types::{PoolId, Stamp};

/// Key of [`POOLS`].
pub fn pool_key(id: PoolId) -> [u8; 4] {
    id.to_be_bytes()
}

/// Decodes a [`POOLS`] key.
pub fn decode_pool_key(key: &[u8]) -> Result<PoolId, StorageError> {
    <[u8; 4]>::try_from(key)
        .map(PoolId::from_be_bytes)
        .map_err(|_| StorageError::Corrupt {
            table: "core_pools",
            reason: format!("key of {} bytes", key.len()),
        })
}

/// Key of [`ALLOCATIONS`].
pub fn allocation_key(pool: PoolId, pos: u128) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..4].copy_from_slice(&pool.to_be_bytes());
    key[4..].copy_from_slice(&pos.to_be_bytes());
    key
}

/// Splits an [`ALLOCATIONS`] key into pool id and address position.
pub fn decode_allocation_key(key: &[u8]) -> Result<(PoolId, u128), StorageError> {
    let key = <[u8; 20]>::try_from(key).map_err(|_| StorageError::Corrupt {
        table: "core_allocations",
        reason: format!("key of {} bytes", key.len()),
    })?;
    let mut id = [0u8; 4];
    id.copy_from_slice(&key[..4]);
    let mut pos = [0u8; 16];
    pos.copy_from_slice(&key[4..]);
    Ok((PoolId::from_be_bytes(id), u128::from_be_bytes(pos)))
}

/// Key of [`OWNERS`].
pub fn owner_key(pool: PoolId, owner: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + owner.len());
    key.extend_from_slice(&pool.to_be_bytes());
    key.extend_from_slice(owner.as_bytes());
    key
}

/// Key of [`EXPIRY`].
pub fn expiry_key(expires_at: Stamp, pool: PoolId, pos: u128) -> [u8; 28] {
    let mut key = [0u8; 28];
    key[..8].copy_from_slice(&expires_at.0.to_be_bytes());
    key[8..12].copy_from_slice(&pool.to_be_bytes());
    key[12..].copy_from_slice(&pos.to_be_bytes());
    key
}

/// Splits an [`EXPIRY`] key into (expires_at, pool id, address position).
pub fn decode_expiry_key(key: &[u8]) -> Result<(Stamp, PoolId, u128), StorageError> {
    let key = <[u8; 28]>::try_from(key).map_err(|_| StorageError::Corrupt {
        table: "core_expiry",
        reason: format!("key of {} bytes", key.len()),
    })?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&key[..8]);
    let mut id = [0u8; 4];
    id.copy_from_slice(&key[8..12]);
    let mut pos = [0u8; 16];
    pos.copy_from_slice(&key[12..]);
    Ok((
        Stamp(u64::from_be_bytes(at)),
        PoolId::from_be_bytes(id),
        u128::from_be_bytes(pos),
    ))
}

/// Key of [`COOLING`].
pub fn cooling_key(pool: PoolId, released_at: Stamp, pos: u128) -> [u8; 28] {
    let mut key = [0u8; 28];
    key[..4].copy_from_slice(&pool.to_be_bytes());
    key[4..12].copy_from_slice(&released_at.0.to_be_bytes());
    key[12..].copy_from_slice(&pos.to_be_bytes());
    key
}

/// Splits a [`COOLING`] key into (pool id, released_at, address position).
pub fn decode_cooling_key(key: &[u8]) -> Result<(PoolId, Stamp, u128), StorageError> {
    let key = <[u8; 28]>::try_from(key).map_err(|_| StorageError::Corrupt {
        table: "core_cooling",
        reason: format!("key of {} bytes", key.len()),
    })?;
    let mut id = [0u8; 4];
    id.copy_from_slice(&key[..4]);
    let mut at = [0u8; 8];
    at.copy_from_slice(&key[4..12]);
    let mut pos = [0u8; 16];
    pos.copy_from_slice(&key[12..]);
    Ok((
        PoolId::from_be_bytes(id),
        Stamp(u64::from_be_bytes(at)),
        u128::from_be_bytes(pos),
    ))
}

/// Key of a pool's last-change row in [`META`].
pub fn pool_changed_key(id: PoolId) -> [u8; 11] {
    let mut key = [0u8; 11];
    key[..7].copy_from_slice(POOL_CHANGED_PREFIX);
    key[7..].copy_from_slice(&id.to_be_bytes());
    key
}
