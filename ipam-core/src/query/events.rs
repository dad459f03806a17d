//! Event queries: a page of the event log after an id (optionally one pool's events), an
//! address's history, and the bounds of the kept sequence.

use std::net::IpAddr;

use redb::ReadTransaction;

use super::open;
use crate::error::{QueryError, StorageError};
use crate::events::{
    address_event_key, block_at, bounds_of, decode_address_event_key, decode_event_key, event_key,
    Event, EventBlock, EventPage,
};
use crate::tables::{self, decode};
use crate::validate::check_limit;

/// The oldest and newest kept event ids; `None` when no event was ever written.
pub fn event_bounds(rtx: &ReadTransaction) -> Result<Option<(u64, u64)>, StorageError> {
    match open(rtx, tables::EVENTS)? {
        Some(table) => bounds_of(&table),
        None => Ok(None),
    }
}

/// `Err(HistoryTruncated)` when events after `after` were pruned (`after` is older than the
/// oldest kept event minus one).
pub fn check_after(rtx: &ReadTransaction, after: u64) -> Result<(), QueryError> {
    match event_bounds(rtx)? {
        Some((first, _)) if after.saturating_add(1) < first => Err(QueryError::HistoryTruncated {
            after,
            oldest: first,
        }),
        _ => Ok(()),
    }
}

/// Up to `limit` (1..=1000) events with ids above `after` (from the oldest kept when `None`),
/// oldest first, only `pool`'s when given. `next` is set when more such events follow.
pub fn events(
    rtx: &ReadTransaction,
    after: Option<u64>,
    pool: Option<&str>,
    limit: usize,
) -> Result<EventPage, QueryError> {
    check_limit(limit)?;
    if let Some(after) = after {
        check_after(rtx, after)?;
    }
    let mut page = EventPage {
        events: Vec::new(),
        next: None,
    };
    let Some(table) = open(rtx, tables::EVENTS)? else {
        return Ok(page);
    };
    let Some(from) = after.unwrap_or(0).checked_add(1) else {
        return Ok(page);
    };
    let Some((start, _)) = block_at(&table, from)? else {
        return Ok(page);
    };
    'blocks: for row in table
        .range::<&[u8]>(event_key(start).as_slice()..)
        .map_err(StorageError::from)?
    {
        let (k, v) = row.map_err(StorageError::from)?;
        let key = decode_event_key(k.value())?;
        let block: EventBlock = decode("core_events", v.value())?;
        for (i, record) in block.events.into_iter().enumerate() {
            let id = key + i as u64;
            if id < from || pool.is_some_and(|p| p != record.pool) {
                continue;
            }
            if page.events.len() == limit {
                page.next = page.events.last().map(|e| e.id);
                break 'blocks;
            }
            page.events.push(record.into_event(id));
        }
    }
    Ok(page)
}

/// Up to `limit` (1..=1000) events of address `ip`, newest first, across every pool that held
/// it (a deleted pool's included, while the events are kept).
pub fn history(rtx: &ReadTransaction, ip: IpAddr, limit: usize) -> Result<Vec<Event>, QueryError> {
    check_limit(limit)?;
    let (Some(index), Some(events)) = (
        open(rtx, tables::EVENT_ADDRESSES)?,
        open(rtx, tables::EVENTS)?,
    ) else {
        return Ok(Vec::new());
    };
    let lo = address_event_key(ip, 0);
    let hi = address_event_key(ip, u64::MAX);
    let mut out = Vec::new();
    // Consecutive history entries often share a block: keep the last one decoded.
    let mut cached: Option<(u64, EventBlock)> = None;
    for row in index
        .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
        .map_err(StorageError::from)?
        .rev()
    {
        if out.len() == limit {
            break;
        }
        let (k, _) = row.map_err(StorageError::from)?;
        let (_, id) = decode_address_event_key(k.value())?;
        let hit = cached
            .as_ref()
            .is_some_and(|(key, b)| *key <= id && id - key < b.events.len() as u64);
        if !hit {
            cached = block_at(&events, id)?;
        }
        let record = cached
            .as_ref()
            .filter(|(key, b)| *key <= id && id - key < b.events.len() as u64)
            .map(|(key, b)| b.events[(id - key) as usize].clone());
        let Some(record) = record else {
            return Err(StorageError::Corrupt {
                table: "core_event_addresses",
                reason: format!("{ip} names event {id}, which is not kept"),
            }
            .into());
        };
        out.push(record.into_event(id));
    }
    Ok(out)
}
