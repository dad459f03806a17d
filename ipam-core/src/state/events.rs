//! Writing the event log in `apply`: one event per change, in the transaction of the change,
//! and retention pruning at the end of each `apply` call. A child of `state` so that it shares
//! the transaction's tables and the journal of atomic batches.

use std::net::IpAddr;

use redb::ReadableTable;

use super::{State, TableId, Tx};
use crate::error::StorageError;
use crate::events::{
    address_event_key, decode_event_key, event_key, EventKind, EventRecord, DEFAULT_RETENTION,
};
use crate::tables::{self, decode, encode_into, AllocationRecord};
use crate::types::Stamp;

/// The event sequence as the events table defines it, cached in memory, and the retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EventLog {
    /// Oldest id kept (0: none written yet).
    pub(super) first: u64,
    /// Newest id written (0: none written yet).
    pub(super) last: u64,
    /// How many events are kept (at least 1).
    pub(super) retention: u64,
    /// Events are kept: the replicated feature level is 2 or more. Entries applied below it
    /// (written by release 0.1.0, which kept no events) must not gain events on a replica
    /// that replays them later, or replicas would disagree on the log and its ids.
    pub(super) on: bool,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            first: 0,
            last: 0,
            retention: DEFAULT_RETENTION,
            on: false,
        }
    }
}

impl EventLog {
    /// The sequence as the events table of `rtx` holds it (empty when an older data dir has
    /// no such table yet).
    pub(super) fn load(rtx: &redb::ReadTransaction) -> Result<EventLog, StorageError> {
        let table = match rtx.open_table(tables::EVENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(EventLog::default()),
            Err(e) => return Err(e.into()),
        };
        let first = match table.first()? {
            Some((k, _)) => decode_event_key(k.value())?,
            None => return Ok(EventLog::default()),
        };
        let last = match table.last()? {
            Some((k, _)) => decode_event_key(k.value())?,
            None => first,
        };
        Ok(EventLog {
            first,
            last,
            retention: DEFAULT_RETENTION,
            on: false,
        })
    }
    /// Appends one event at log time `at`: its row and, when it names an address, its
    /// address index row (both journaled inside an atomic batch, like every row). A method of
    /// the log rather than of `State` so callers may hold a pool entry meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit(
        &mut self,
        tx: &mut Tx<'_>,
        at: Stamp,
        kind: EventKind,
        pool: &str,
        ip: Option<IpAddr>,
        owner: Option<&str>,
        generation: Option<u64>,
    ) -> Result<(), StorageError> {
        if !self.on {
            return Ok(());
        }
        let id = self.last.saturating_add(1);
        let record = EventRecord {
            at,
            kind,
            pool: pool.to_string(),
            ip,
            prefix: None,
            owner: owner.map(str::to_string),
            generation,
        };
        let mut buf = std::mem::take(&mut tx.buf);
        encode_into(&mut buf, &record)?;
        tx.put(TableId::Events, &event_key(id), &buf)?;
        if let Some(ip) = ip {
            encode_into(&mut buf, &())?;
            tx.put(TableId::EventAddresses, &address_event_key(ip, id), &buf)?;
        }
        tx.buf = buf;
        self.last = id;
        if self.first == 0 {
            self.first = id;
        }
        Ok(())
    }

    /// One `released` event per allocation of `pool` in the allocation key range
    /// `[lo, hi]`, in address order: what a forced delete drops.
    pub(super) fn emit_dropped(
        &mut self,
        tx: &mut Tx<'_>,
        at: Stamp,
        pool: &str,
        family: crate::types::Family,
        lo: [u8; 20],
        hi: [u8; 20],
    ) -> Result<(), StorageError> {
        if !self.on {
            return Ok(());
        }
        let mut dropped = Vec::new();
        for row in tx
            .allocations
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
        {
            let (k, v) = row?;
            let (_, pos) = tables::decode_allocation_key(k.value())?;
            let record: AllocationRecord = decode("core_allocations", v.value())?;
            dropped.push((pos, record));
        }
        for (pos, record) in dropped {
            self.emit(
                tx,
                at,
                EventKind::Released,
                pool,
                Some(family.addr(pos)),
                Some(&record.owner),
                Some(record.generation),
            )?;
        }
        Ok(())
    }
}

impl State {
    /// Newest event id written (0 when none has been).
    pub fn last_event_id(&self) -> u64 {
        self.events.last
    }

    /// Oldest event id kept (0 when none has been written).
    pub fn first_event_id(&self) -> u64 {
        self.events.first
    }

    /// Keeps the newest `retention` events (at least 1) from the next `apply` on. Every
    /// replica must use the same value; the contract's is [`DEFAULT_RETENTION`], and tests lower it.
    pub fn set_event_retention(&mut self, retention: u64) {
        self.events.retention = retention.max(1);
    }

    /// Appends one event at log time `at` (see [`EventLog::emit`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit(
        &mut self,
        tx: &mut Tx<'_>,
        at: Stamp,
        kind: EventKind,
        pool: &str,
        ip: Option<IpAddr>,
        owner: Option<&str>,
        generation: Option<u64>,
    ) -> Result<(), StorageError> {
        self.events.emit(tx, at, kind, pool, ip, owner, generation)
    }

    /// The event of an allocation change: `kind` of `record` at `ip` in `pool`.
    pub(super) fn emit_allocation(
        &mut self,
        tx: &mut Tx<'_>,
        kind: EventKind,
        pool: &str,
        ip: IpAddr,
        record: &AllocationRecord,
    ) -> Result<(), StorageError> {
        let at = self.meta.now;
        self.emit(
            tx,
            at,
            kind,
            pool,
            Some(ip),
            Some(&record.owner),
            Some(record.generation),
        )
    }

    /// Drops the oldest events beyond the retention, with their address index rows.
    pub(super) fn prune_events(&mut self, tx: &mut Tx<'_>) -> Result<(), StorageError> {
        let log = self.events;
        if log.first == 0 || log.last - log.first < log.retention {
            return Ok(());
        }
        let keep_from = log.last - log.retention + 1;
        for id in log.first..keep_from {
            let Some(old) = tx.events.remove(event_key(id).as_slice())? else {
                return Err(StorageError::Corrupt {
                    table: "core_events",
                    reason: format!("event {id} is missing (the sequence has a gap)"),
                });
            };
            let record: EventRecord = decode("core_events", old.value())?;
            drop(old);
            if let Some(ip) = record.ip {
                tx.event_addresses
                    .remove(address_event_key(ip, id).as_slice())?;
            }
        }
        self.events.first = keep_from;
        Ok(())
    }
}

impl State {
    /// The event of a pool op that succeeded: created, updated (fields, ranges, freeze) or
    /// deleted. Allocation events are written where allocations change.
    pub(super) fn pool_event(
        &mut self,
        tx: &mut Tx<'_>,
        at: Stamp,
        op: &crate::command::Op,
    ) -> Result<(), StorageError> {
        use crate::command::Op;
        let (kind, pool) = match op {
            Op::CreatePool(spec) => (EventKind::PoolCreated, spec.name.as_str()),
            Op::CreatePoolV2(spec) => (EventKind::PoolCreated, spec.base.name.as_str()),
            Op::CreatePoolV3(spec) => (EventKind::PoolCreated, spec.base.name.as_str()),
            Op::DeletePool { pool, .. } => (EventKind::PoolDeleted, pool.as_str()),
            Op::UpdatePool { pool, .. }
            | Op::AddRange { pool, .. }
            | Op::RemoveRange { pool, .. } => (EventKind::PoolUpdated, pool.as_str()),
            _ => return Ok(()),
        };
        self.emit(tx, at, kind, pool, None, None, None)
    }
}

/// The event log's part of the integrity check (see `check.rs`).
pub(super) fn check_events(
    state: &State,
    rtx: &redb::ReadTransaction,
    problems: &mut Vec<super::check::Problem>,
) -> Result<(), StorageError> {
    use super::check::Problem;
    use crate::events::decode_address_event_key;
    let mut report = |detail: String| problems.push(Problem::EventLog { detail });
    let mut indexed = std::collections::BTreeSet::new();
    let mut expected: Option<u64> = None;
    let (mut first, mut last) = (0, 0);
    for row in rtx.open_table(tables::EVENTS)?.iter()? {
        let (k, v) = row?;
        let id = match decode_event_key(k.value()) {
            Ok(id) => id,
            Err(e) => {
                report(e.to_string());
                continue;
            }
        };
        if let Some(want) = expected.filter(|w| *w != id) {
            report(format!("event {want} is missing (next kept is {id})"));
        }
        expected = id.checked_add(1);
        if first == 0 {
            first = id;
        }
        last = id;
        match decode::<EventRecord>("core_events", v.value()) {
            Ok(record) => {
                if let Some(ip) = record.ip {
                    indexed.insert((ip, id));
                }
            }
            Err(e) => report(format!("event {id}: {e}")),
        }
    }
    if (first, last) != (state.events.first, state.events.last) {
        report(format!(
            "the table keeps events {first}..={last}, the in-memory sequence says {}..={}",
            state.events.first, state.events.last
        ));
    }
    for row in rtx.open_table(tables::EVENT_ADDRESSES)?.iter()? {
        let (k, _) = row?;
        match decode_address_event_key(k.value()) {
            Ok(entry) => {
                if !indexed.remove(&entry) {
                    report(format!(
                        "the address index lists event {} of {}, which is not kept for that address",
                        entry.1, entry.0
                    ));
                }
            }
            Err(e) => report(e.to_string()),
        }
    }
    for (ip, id) in indexed {
        report(format!(
            "event {id} of {ip} is missing from the address index"
        ));
    }
    Ok(())
}
