//! Events: one record per change of the state (pools created, updated, deleted; addresses
//! allocated, released, expired), numbered by a sequence every replica computes identically.
//!
//! Two tables hold them, written in the same transaction as the change they describe:
//!
//! | table | key | value |
//! |---|---|---|
//! | `core_events` | id of the block's first event (u64 BE) | [`EventBlock`]: consecutive events |
//! | `core_event_addresses` | family tag ++ address (16 bytes BE) ++ event id (u64 BE) | `()` |
//!
//! Events are stored in blocks of consecutive ids, one row per `apply` call (at most
//! [`BLOCK_EVENTS`] events a row): a row per event would double the rows an allocation writes.
//! The sequence is the events table itself: the next id follows the last block's last event,
//! and the oldest retained id is the first block's key. Both are therefore carried by snapshots and backups with
//! the table, and equal on every replica. The address index is keyed by address rather than by
//! pool so that an address's history survives the deletion of its pool (and spans pools that
//! covered it at different times).
//!
//! Renewals are not events. Retention keeps the newest [`DEFAULT_RETENTION`] events by
//! default; older ones are pruned at the end of `apply`, identically everywhere.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::tables::Record;
use crate::types::{addr_to_u128, Cidr, Family, Stamp};

/// How many events the state keeps by default (the contract's 1,000,000).
pub const DEFAULT_RETENTION: u64 = 1_000_000;

/// What happened. Stored by position: new kinds go last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A pool was created.
    PoolCreated,
    /// A pool's fields or ranges changed (PATCH, ranges, freeze).
    PoolUpdated,
    /// A pool was deleted (its force-dropped allocations each have a `Released` first).
    PoolDeleted,
    /// An address was allocated.
    Allocated,
    /// An allocation was released (by address, by owner, or by a forced pool delete).
    Released,
    /// A lease ended because its time passed.
    Expired,
}

impl EventKind {
    /// The contract's snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PoolCreated => "pool_created",
            EventKind::PoolUpdated => "pool_updated",
            EventKind::PoolDeleted => "pool_deleted",
            EventKind::Allocated => "allocated",
            EventKind::Released => "released",
            EventKind::Expired => "expired",
        }
    }

    /// The kind named `text`, if any.
    pub fn parse(text: &str) -> Option<EventKind> {
        [
            EventKind::PoolCreated,
            EventKind::PoolUpdated,
            EventKind::PoolDeleted,
            EventKind::Allocated,
            EventKind::Released,
            EventKind::Expired,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// An event as stored (its id is the key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Log time of the entry that made the change.
    pub at: Stamp,
    /// What happened.
    pub kind: EventKind,
    /// The pool's name.
    pub pool: String,
    /// The address, for allocation events.
    pub ip: Option<IpAddr>,
    /// The delegated block, for allocations of prefix pools.
    pub prefix: Option<Cidr>,
    /// The allocation's owner, for allocation events.
    pub owner: Option<String>,
    /// The allocation's generation, for allocation events.
    pub generation: Option<u64>,
}

impl Record for EventRecord {}

/// Most events one row of [`crate::tables::EVENTS`] holds.
pub const BLOCK_EVENTS: usize = 1000;

/// Consecutive events, the first one's id being the row's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBlock {
    /// The events, in id order.
    pub events: Vec<EventRecord>,
}

impl Record for EventBlock {}

/// The block of `table` holding event `id` (or, when `id` is older than every kept event, the
/// first block): its first id and its events.
pub fn block_at<T>(table: &T, id: u64) -> Result<Option<(u64, EventBlock)>, StorageError>
where
    T: redb::ReadableTable<&'static [u8], &'static [u8]>,
{
    let row = match table
        .range::<&[u8]>(..=event_key(id).as_slice())?
        .next_back()
    {
        Some(row) => Some(row?),
        None => table.first()?,
    };
    match row {
        Some((k, v)) => Ok(Some((
            decode_event_key(k.value())?,
            crate::tables::decode("core_events", v.value())?,
        ))),
        None => Ok(None),
    }
}

/// The oldest and newest kept event ids of `table`; `None` when it holds none.
pub fn bounds_of<T>(table: &T) -> Result<Option<(u64, u64)>, StorageError>
where
    T: redb::ReadableTable<&'static [u8], &'static [u8]>,
{
    let first = match table.first()? {
        Some((k, _)) => decode_event_key(k.value())?,
        None => return Ok(None),
    };
    let last = match table.last()? {
        Some((k, v)) => {
            let block: EventBlock = crate::tables::decode("core_events", v.value())?;
            decode_event_key(k.value())? + (block.events.len() as u64).saturating_sub(1)
        }
        None => first,
    };
    Ok(Some((first, last)))
}

/// An event as queries return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the sequence: rises by one per event, equal on every replica.
    pub id: u64,
    /// Log time of the entry that made the change.
    pub at: Stamp,
    /// What happened.
    pub kind: EventKind,
    /// The pool's name.
    pub pool: String,
    /// The address, for allocation events.
    pub ip: Option<IpAddr>,
    /// The delegated block, for allocations of prefix pools.
    pub prefix: Option<Cidr>,
    /// The allocation's owner, for allocation events.
    pub owner: Option<String>,
    /// The allocation's generation, for allocation events.
    pub generation: Option<u64>,
}

impl EventRecord {
    /// The event with its id.
    pub fn into_event(self, id: u64) -> Event {
        Event {
            id,
            at: self.at,
            kind: self.kind,
            pool: self.pool,
            ip: self.ip,
            prefix: self.prefix,
            owner: self.owner,
            generation: self.generation,
        }
    }
}

/// A page of events, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// The events.
    pub events: Vec<Event>,
    /// The id to pass as `after` for the next page; `None` when this page is the last.
    pub next: Option<u64>,
}

/// Key of [`crate::tables::EVENTS`].
pub fn event_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Decodes a [`crate::tables::EVENTS`] key.
pub fn decode_event_key(key: &[u8]) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt {
            table: "core_events",
            reason: format!("key of {} bytes", key.len()),
        })
}

/// Key of [`crate::tables::EVENT_ADDRESSES`].
pub fn address_event_key(ip: IpAddr, id: u64) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[0] = Family::of(ip).tag();
    key[1..17].copy_from_slice(&addr_to_u128(ip).to_be_bytes());
    key[17..].copy_from_slice(&id.to_be_bytes());
    key
}

/// Splits a [`crate::tables::EVENT_ADDRESSES`] key into (address, event id).
pub fn decode_address_event_key(key: &[u8]) -> Result<(IpAddr, u64), StorageError> {
    let key = <[u8; 25]>::try_from(key).map_err(|_| StorageError::Corrupt {
        table: "core_event_addresses",
        reason: format!("key of {} bytes", key.len()),
    })?;
    let family = match key[0] {
        4 => Family::V4,
        6 => Family::V6,
        t => {
            return Err(StorageError::Corrupt {
                table: "core_event_addresses",
                reason: format!("family tag {t}"),
            })
        }
    };
    let mut pos = [0u8; 16];
    pos.copy_from_slice(&key[1..17]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&key[17..]);
    Ok((
        family.addr(u128::from_be_bytes(pos)),
        u64::from_be_bytes(id),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys_order_by_address_then_id() {
        let a: IpAddr = "10.0.0.7".parse().unwrap();
        let b: IpAddr = "10.0.0.8".parse().unwrap();
        assert!(address_event_key(a, u64::MAX) < address_event_key(b, 0));
        assert!(address_event_key(a, 1) < address_event_key(a, 2));
        let v6: IpAddr = "fd00::7".parse().unwrap();
        assert_eq!(
            decode_address_event_key(&address_event_key(v6, 42)).unwrap(),
            (v6, 42)
        );
        assert!(decode_address_event_key(&[0u8; 24]).is_err());
        assert!(decode_event_key(&[1, 2]).is_err());
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for name in [
            "pool_created",
            "pool_updated",
            "pool_deleted",
            "allocated",
            "released",
            "expired",
        ] {
            assert_eq!(EventKind::parse(name).map(EventKind::as_str), Some(name));
        }
        assert_eq!(EventKind::parse("renewed"), None);
    }
}
