//! Writing the event log in `apply`: one event per change, in the transaction of the change.
//! Events collect in memory during an `apply` call (their address index rows are written at
//! once, journaled like every row) and go to the events table as one block at its end, after
//! which retention pruning runs. A child of `state` so that it shares the transaction's tables
//! and the journal of atomic batches.

use std::net::IpAddr;

use redb::ReadableTable;

use super::{State, TableId, Tx};
use crate::error::StorageError;
use crate::events::{
    address_event_key, bounds_of, event_key, EventBlock, EventKind, EventRecord, BLOCK_EVENTS,
    DEFAULT_RETENTION,
};
use crate::tables::{self, decode, encode_into, AllocationRecord};
use crate::types::Stamp;

/// The event sequence as the events table defines it, cached in memory, the events of the
/// running `apply` not yet written, and the retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct EventLog {
    /// Oldest id kept (0: none written yet).
    pub(super) first: u64,
    /// Newest id given out (0: none yet); the last `pending.len()` are not written yet.
    pub(super) last: u64,
    /// How many events are kept (at least 1).
    pub(super) retention: u64,
    /// Events of the running `apply`, written as a block at its end.
    pub(super) pending: Vec<EventRecord>,
    /// Whether this state records events (decided at the start of each `apply`).
    pub(super) enabled: bool,
}

/// Where the log stood before an atomic batch, to go back to if it fails.
#[derive(Clone, Copy, Debug)]
pub(super) struct EventMark {
    first: u64,
    last: u64,
    pending: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            first: 0,
            last: 0,
            retention: DEFAULT_RETENTION,
            pending: Vec::new(),
            enabled: false,
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
        Ok(match bounds_of(&table)? {
            Some((first, last)) => EventLog {
                first,
                last,
                ..EventLog::default()
            },
            None => EventLog::default(),
        })
    }

    /// Where the log stands (before an atomic batch).
    pub(super) fn mark(&self) -> EventMark {
        EventMark {
            first: self.first,
            last: self.last,
            pending: self.pending.len(),
        }
    }

    /// Back to `mark`: the failed batch's events are forgotten (its index rows are undone by
    /// the journal).
    pub(super) fn reset(&mut self, mark: EventMark) {
        self.first = mark.first;
        self.last = mark.last;
        self.pending.truncate(mark.pending);
    }

    /// A prefix pool's events name their block: `prefix` of the pending events from `from` on
    /// becomes their address with the pool's block length `len`.
    pub(super) fn set_prefixes(&mut self, from: usize, len: Option<u8>) {
        let Some(len) = len else { return };
        for e in self.pending.iter_mut().skip(from) {
            if let Some(ip) = e.ip {
                e.prefix = Some(crate::types::Cidr {
                    network: ip,
                    prefix: len,
                });
            }
        }
    }

    /// Appends one event at log time `at`: kept in memory until the end of the `apply`, and,
    /// when it names an address, its address index row (journaled inside an atomic batch, like
    /// every row). A method of the log rather than of `State` so callers may hold a pool entry
    /// meanwhile.
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
        if !self.enabled {
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
        if let Some(ip) = ip {
            let mut buf = std::mem::take(&mut tx.buf);
            encode_into(&mut buf, &())?;
            tx.put(TableId::EventAddresses, &address_event_key(ip, id), &buf)?;
            tx.buf = buf;
        }
        self.pending.push(record);
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
        if !self.enabled {
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
    /// Decides, at the start of an `apply`, whether this state records events: from the
    /// replicated feature level 2 on ([`crate::Op::SetFeatureLevel`]). Release 0.1.0 kept no
    /// events, and replicas may have applied different parts of the log with it; the level
    /// moves only by log entries, so every replica starts recording at the same entry with
    /// the same ids, whatever release applied the entries before it.
    pub(super) fn begin_events(&mut self) {
        self.events.enabled = self.feature_level() >= 2;
    }

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
        let from = self.events.pending.len();
        self.events
            .emit(tx, at, kind, pool, ip, owner, generation)?;
        let len = self.delegation_of(pool);
        self.events.set_prefixes(from, len);
        Ok(())
    }

    /// The block length of a prefix pool (`None` for an address pool or an unknown name).
    pub(super) fn delegation_of(&self, pool: &str) -> Option<u8> {
        let id = self.names.get(pool)?;
        self.pools.get(id)?.record.delegation_prefix_len
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

    /// Writes the events of this `apply` as blocks, then drops the oldest events beyond the
    /// retention with their address index rows.
    pub(super) fn prune_events(&mut self, tx: &mut Tx<'_>) -> Result<(), StorageError> {
        if !self.events.pending.is_empty() {
            let pending = std::mem::take(&mut self.events.pending);
            let mut id = self.events.last + 1 - pending.len() as u64;
            let mut buf = std::mem::take(&mut tx.buf);
            for chunk in pending.chunks(BLOCK_EVENTS) {
                // Serialised from a borrowed slice: the same bytes as an `EventBlock`.
                buf.clear();
                buf.push(<EventBlock as tables::Record>::VERSION);
                buf = postcard::to_extend(chunk, buf).map_err(|e| StorageError::Corrupt {
                    table: "encode",
                    reason: e.to_string(),
                })?;
                tx.events.insert(event_key(id).as_slice(), buf.as_slice())?;
                id += chunk.len() as u64;
            }
            tx.buf = buf;
        }
        let log = &self.events;
        if log.first == 0 || log.last - log.first < log.retention {
            return Ok(());
        }
        let keep_from = log.last - log.retention + 1;
        loop {
            let (key, block) = match tx.events.first()? {
                Some((k, v)) => (
                    crate::events::decode_event_key(k.value())?,
                    decode::<EventBlock>("core_events", v.value())?,
                ),
                None => break,
            };
            if key >= keep_from {
                break;
            }
            tx.events.remove(event_key(key).as_slice())?;
            let dropped = usize::try_from(keep_from - key)
                .unwrap_or(usize::MAX)
                .min(block.events.len());
            for (i, record) in block.events[..dropped].iter().enumerate() {
                if let Some(ip) = record.ip {
                    tx.event_addresses
                        .remove(address_event_key(ip, key + i as u64).as_slice())?;
                }
            }
            if dropped < block.events.len() {
                let rest = EventBlock {
                    events: block.events[dropped..].to_vec(),
                };
                let bytes = tables::encode(&rest)?;
                tx.events
                    .insert(event_key(keep_from).as_slice(), bytes.as_slice())?;
                break;
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
        let key = match crate::events::decode_event_key(k.value()) {
            Ok(id) => id,
            Err(e) => {
                report(e.to_string());
                continue;
            }
        };
        if let Some(want) = expected.filter(|w| *w != key) {
            report(format!("event {want} is missing (next kept is {key})"));
        }
        let block = match decode::<EventBlock>("core_events", v.value()) {
            Ok(b) => b,
            Err(e) => {
                report(format!("events from {key}: {e}"));
                expected = None;
                continue;
            }
        };
        if block.events.is_empty() {
            report(format!("the block of events from {key} is empty"));
        }
        if first == 0 {
            first = key;
        }
        for (i, record) in block.events.iter().enumerate() {
            let id = key + i as u64;
            last = id;
            if let Some(ip) = record.ip {
                indexed.insert((ip, id));
            }
        }
        expected = last.checked_add(1);
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
