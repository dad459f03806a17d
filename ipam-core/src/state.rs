//! [`State`]: the derived in-memory index and the deterministic `apply`.
//!
//! The in-memory index mirrors the pool rows (by name, by id, by CIDR start) and keeps each
//! pool's free intervals, so `apply` decides without decoding pool records. Allocation and
//! owner rows are read from redb only where a decision needs them (the owner index, the
//! current holder of a requested address).
//!
//! Atomic batches use an undo journal: while a batch runs, every row write and every index
//! change records how to revert it, and a failing op replays the journal backwards. Single
//! ops need no journal because each op checks everything before its first mutation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable};

use crate::alloc::FreeIndex;
use crate::command::{BatchError, Command, CommandResult, Op, OpOutput};
use crate::error::{
    AllocateError, CreatePoolError, DeletePoolError, OpError, ReleaseError, StorageError,
};
use crate::lease::Cooling;
use crate::pools::PoolShape;
use crate::pools::{check_settings, PoolSettings};
use crate::requests::{RequestLimits, Requests};
use crate::tables::{
    self, allocation_key, decode, decode_allocation_key, decode_pool_key, encode, encode_into,
    owner_key, pool_key, range_key, AllocationRecord, MetaRecord, NameRecord, PoolRecord,
    RangeRecord,
};
use crate::tables::{cooling_key, expiry_key, CoolingRecord};
use crate::types::{addr_to_u128, Cidr, Labels, PoolId, PoolInfo, Stamp};
use crate::validate::{check_command, check_op, pool_layout};

mod alloc_ops;
#[path = "check.rs"]
pub mod check;
mod events;
mod level;
mod pool_ops;
mod reconcile;
mod rollback;
mod select_ops;
mod update;
pub use reconcile::{changed_at, drift_report, dry_run};

/// One pool in memory.
#[derive(Clone, Debug)]
struct PoolEntry {
    id: PoolId,
    record: PoolRecord,
    layout: PoolShape,
    free: FreeIndex,
    /// The record changed in this `apply` and is written once at its end.
    dirty: bool,
    /// Released addresses still cooling; they are not in `free`.
    cooling: Cooling,
}

mod expire;
pub use expire::{cooling_count, cooling_positions, log_now, next_expiry, Expired};

/// The in-memory index derived from the core's redb tables (pools by name, free intervals per
/// pool). Rebuilt from redb on open; never persisted.
#[derive(Debug, Default)]
pub struct State {
    names: BTreeMap<String, PoolId>,
    pools: BTreeMap<PoolId, PoolEntry>,
    /// (family tag, first position) → pool: disjoint CIDRs in address order.
    ranges: BTreeMap<(u8, u128), PoolId>,
    meta: MetaRecord,
    /// Leases ended at the start of the last `apply`.
    expired: Vec<expire::Expired>,
    /// Log index of the last entry applied through [`State::apply_at`] (or counted by
    /// [`State::apply`]); only `apply` without an index reads it.
    last_index: u64,
    /// The event sequence and its retention.
    events: events::EventLog,
    /// The replicated feature level ([`tables::FEATURE_LEVEL_KEY`]); 0 in a `Default` state,
    /// read as level 1.
    level: u32,
    /// Label and owner indexes of selection.
    select: crate::select::SelectIndex,
    /// Retention of recorded requests (the same on every replica).
    request_limits: RequestLimits,
}

/// Which core table a journaled row belongs to.
#[derive(Clone, Copy, Debug)]
enum TableId {
    Pools,
    Names,
    Ranges,
    Allocations,
    Owners,
    Expiry,
    Cooling,
    EventAddresses,
}

/// How to revert one change made inside an atomic batch.
#[derive(Debug)]
enum Undo {
    /// A row was written or removed; `old` is what it held before.
    Row {
        table: TableId,
        key: Vec<u8>,
        old: Option<Vec<u8>>,
    },
    /// `pos` was allocated in `pool`.
    Took { pool: PoolId, pos: u128 },
    /// `pos` was released in `pool`.
    Freed { pool: PoolId, pos: u128 },
    /// The pool was created.
    Created { pool: PoolId },
    /// The pool was deleted.
    Deleted { entry: Box<PoolEntry> },
    /// A cooling `pos` was allocated again in `pool`.
    TookCooling {
        pool: PoolId,
        pos: u128,
        at: u64,
        owner: String,
    },
    /// `pos` was released in `pool` and started cooling.
    Cooled { pool: PoolId, pos: u128 },
    /// The pool's record, ranges or layout changed; `entry` is how it was.
    Replaced { entry: Box<PoolEntry> },
    /// The owner index gained (`added`) or lost `pool` for an owner's hash.
    OwnerIndex {
        hash: u64,
        pool: PoolId,
        added: bool,
    },
}

/// The open tables of one `apply` call, the batch journal and scratch buffers.
struct Tx<'t> {
    pools: redb::Table<'t, &'static [u8], &'static [u8]>,
    names: redb::Table<'t, &'static [u8], &'static [u8]>,
    ranges: redb::Table<'t, &'static [u8], &'static [u8]>,
    allocations: redb::Table<'t, &'static [u8], &'static [u8]>,
    owners: redb::Table<'t, &'static [u8], &'static [u8]>,
    meta: redb::Table<'t, &'static [u8], &'static [u8]>,
    expiry: redb::Table<'t, &'static [u8], &'static [u8]>,
    cooling: redb::Table<'t, &'static [u8], &'static [u8]>,
    events: redb::Table<'t, &'static [u8], &'static [u8]>,
    event_addresses: redb::Table<'t, &'static [u8], &'static [u8]>,
    /// Record undo entries (inside an atomic batch).
    journaling: bool,
    journal: Vec<Undo>,
    /// Pools whose record must be written at the end of the call.
    dirty: Vec<PoolId>,
    /// Pools whose record or allocations this call wrote: their last-change index moves.
    touched: Vec<PoolId>,
    buf: Vec<u8>,
}

impl<'t> Tx<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Tx<'t>, StorageError> {
        Ok(Tx {
            pools: txn.open_table(tables::POOLS)?,
            names: txn.open_table(tables::POOL_NAMES)?,
            ranges: txn.open_table(tables::RANGES)?,
            allocations: txn.open_table(tables::ALLOCATIONS)?,
            owners: txn.open_table(tables::OWNERS)?,
            meta: txn.open_table(tables::META)?,
            expiry: txn.open_table(tables::EXPIRY)?,
            cooling: txn.open_table(tables::COOLING)?,
            events: txn.open_table(tables::EVENTS)?,
            event_addresses: txn.open_table(tables::EVENT_ADDRESSES)?,
            journaling: false,
            journal: Vec::new(),
            dirty: Vec::new(),
            touched: Vec::new(),
            buf: Vec::with_capacity(256),
        })
    }

    fn table(&mut self, id: TableId) -> &mut redb::Table<'t, &'static [u8], &'static [u8]> {
        match id {
            TableId::Pools => &mut self.pools,
            TableId::Names => &mut self.names,
            TableId::Ranges => &mut self.ranges,
            TableId::Allocations => &mut self.allocations,
            TableId::Owners => &mut self.owners,
            TableId::Expiry => &mut self.expiry,
            TableId::Cooling => &mut self.cooling,
            TableId::EventAddresses => &mut self.event_addresses,
        }
    }

    /// Notes the pool a row of `table` belongs to, for its last-change index.
    fn touch(&mut self, table: TableId, key: &[u8]) {
        if matches!(table, TableId::Allocations | TableId::Pools) {
            if let Some(id) = key.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                self.touched.push(PoolId::from_be_bytes(id));
            }
        }
    }

    fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.touch(table, key);
        let journaling = self.journaling;
        // The old row is copied only for a batch's journal: outside one it is dropped unread.
        let old = self
            .table(table)
            .insert(key, value)?
            .and_then(|g| journaling.then(|| g.value().to_vec()));
        if journaling {
            self.journal.push(Undo::Row {
                table,
                key: key.to_vec(),
                old,
            });
        }
        Ok(())
    }

    fn del(&mut self, table: TableId, key: &[u8]) -> Result<(), StorageError> {
        self.touch(table, key);
        let journaling = self.journaling;
        let old = self
            .table(table)
            .remove(key)?
            .and_then(|g| journaling.then(|| g.value().to_vec()));
        if journaling && old.is_some() {
            self.journal.push(Undo::Row {
                table,
                key: key.to_vec(),
                old,
            });
        }
        Ok(())
    }

    /// Removes every row of `table` in `[lo, hi]`.
    fn del_range(
        &mut self,
        table: TableId,
        lo: &[u8],
        hi: Bound<&[u8]>,
    ) -> Result<(), StorageError> {
        let bounds = (Bound::Included(lo), hi);
        // Inside a batch a force delete keeps every dropped row in the journal until the
        // batch ends: memory proportional to the pool's allocations, for that one command.
        if self.journaling {
            let mut undo = Vec::new();
            for row in self.table(table).range::<&[u8]>(bounds)? {
                let (k, v) = row?;
                undo.push(Undo::Row {
                    table,
                    key: k.value().to_vec(),
                    old: Some(v.value().to_vec()),
                });
            }
            self.journal.extend(undo);
        }
        self.table(table)
            .retain_in::<&[u8], _>(bounds, |_, _| false)?;
        Ok(())
    }

    fn allocation(
        &self,
        pool: PoolId,
        pos: u128,
    ) -> Result<Option<AllocationRecord>, StorageError> {
        match self.allocations.get(allocation_key(pool, pos).as_slice())? {
            Some(v) => Ok(Some(decode("core_allocations", v.value())?)),
            None => Ok(None),
        }
    }
}

/// An allocation that the owner index or the free index says exists but has no row.
fn missing_allocation(pool: &str, pos: u128) -> StorageError {
    StorageError::Corrupt {
        table: "core_allocations",
        reason: format!("pool {pool:?}: position {pos:#x} is in use but has no allocation row"),
    }
}

impl State {
    /// Creates the core's tables if missing and rebuilds the index from them.
    pub fn open(db: &redb::Database) -> Result<State, StorageError> {
        let missing = {
            let rtx = db.begin_read()?;
            let mut missing = false;
            for def in tables::TABLES {
                match rtx.open_table(*def) {
                    Ok(_) => {}
                    Err(redb::TableError::TableDoesNotExist(_)) => missing = true,
                    Err(e) => return Err(e.into()),
                }
            }
            missing
        };
        if missing {
            let wtx = db.begin_write()?;
            for def in tables::TABLES {
                wtx.open_table(*def)?;
            }
            wtx.commit()?;
        }
        State::load(&db.begin_read()?)
    }

    /// Rebuilds the index from the core's tables as `rtx` sees them (they must exist).
    pub fn load(rtx: &redb::ReadTransaction) -> Result<State, StorageError> {
        let meta = match rtx.open_table(tables::META)?.get(tables::META_KEY)? {
            Some(v) => decode("core_meta", v.value())?,
            None => MetaRecord::default(),
        };
        let allocations = rtx.open_table(tables::ALLOCATIONS)?;
        let mut state = State {
            meta,
            last_index: reconcile::last_change(rtx)?,
            events: events::EventLog::load(rtx)?,
            level: level::load_level(rtx)?,
            ..State::default()
        };
        for row in rtx.open_table(tables::POOLS)?.iter()? {
            let (k, v) = row?;
            let id = decode_pool_key(k.value())?;
            let record: PoolRecord = decode("core_pools", v.value())?;
            let layout = PoolShape::of_record(&record).map_err(|e| StorageError::Corrupt {
                table: "core_pools",
                reason: format!("pool {:?}: {e}", record.name),
            })?;
            let mut free = layout.initial_free();
            let cooling = expire::load_cooling(rtx, id, &mut free, &record.name)?;
            let mut count: u128 = 0;
            let lo = allocation_key(id, 0);
            let hi = allocation_key(id, u128::MAX);
            for row in allocations.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
                let (k, _) = row?;
                let (_, pos) = decode_allocation_key(k.value())?;
                if !free.take(pos) {
                    return Err(StorageError::Corrupt {
                        table: "core_allocations",
                        reason: format!(
                            "pool {:?}: position {pos:#x} is not allocatable",
                            record.name
                        ),
                    });
                }
                count += 1;
            }
            if count != record.allocated {
                return Err(StorageError::Corrupt {
                    table: "core_pools",
                    reason: format!(
                        "pool {:?} counts {} allocations, table holds {count}",
                        record.name, record.allocated
                    ),
                });
            }
            state.names.insert(record.name.clone(), id);
            state.select.add_labels(id, &record.labels);
            for (owner, _, _) in &cooling.by_owner {
                state.select.add_owner(owner, id);
            }
            for l in layout.ranges() {
                state
                    .ranges
                    .insert((tables::range_tag(&record), l.start), id);
            }
            state.pools.insert(
                id,
                PoolEntry {
                    id,
                    record,
                    layout,
                    free,
                    dirty: false,
                    cooling,
                },
            );
        }
        // Owner keys are pool id ++ owner bytes: the owner index needs no value decoded.
        for row in rtx.open_table(tables::OWNERS)?.iter()? {
            let (k, _) = row?;
            let key = k.value();
            let (Some(id), Ok(owner)) = (
                key.get(..4).map(decode_pool_key).transpose()?,
                std::str::from_utf8(key.get(4..).unwrap_or_default()),
            ) else {
                return Err(StorageError::Corrupt {
                    table: "core_owners",
                    reason: format!("malformed key of {} bytes", key.len()),
                });
            };
            state.select.add_owner(owner, id);
        }
        let ids: Vec<PoolId> = state.pools.keys().copied().collect();
        for id in ids {
            state.rerank(id);
        }
        state.refresh_ranks();
        Ok(state)
    }

    /// Generation of the last allocation made (0 when none has been made).
    pub fn generation(&self) -> u64 {
        self.meta.generation
    }

    /// Log time: the largest entry stamp applied so far.
    pub fn now(&self) -> Stamp {
        self.meta.now
    }

    /// Log index of the last entry applied (what a dry run after it reports as `as_of`).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Number of pools.
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// A pool with its current stats, from memory (no read transaction needed).
    pub fn pool(&self, name: &str) -> Option<PoolInfo> {
        let id = self.names.get(name)?;
        self.pools.get(id).map(|e| e.record.info(e.id))
    }

    /// Whether `owner` may hold or cool an address in pool `pool`, from memory: `true` is to be
    /// confirmed in the tables; `false` means it holds nothing there unless another owner's
    /// name shares its 64-bit hash (forgetting one forgets both). A hint for callers that would
    /// otherwise open a read transaction to answer early, never a decision of `apply`.
    pub fn owner_may_hold(&self, pool: &str, owner: &str) -> bool {
        self.names
            .get(pool)
            .is_some_and(|&id| self.select.owner_may_use(owner, id))
    }

    /// Number of free intervals of a pool's allocator index (its memory footprint).
    pub fn free_intervals(&self, name: &str) -> Option<usize> {
        let id = self.names.get(name)?;
        self.pools.get(id).map(|e| e.free.interval_count())
    }

    /// Applies `commands` (one log entry's, or several entries' in order) in `txn`, returning
    /// one result per command. Deterministic: depends only on the tables, `stamp` and the
    /// commands. The caller commits `txn`; if it does not, it must reopen with [`State::open`].
    ///
    /// Op failures are results. `Err` means storage failed part-way: the transaction and this
    /// `State` are then both unusable (drop the transaction, reopen the state).
    pub fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        stamp: Stamp,
        commands: &[Command],
    ) -> Result<Vec<CommandResult>, StorageError> {
        let index = self.last_index.saturating_add(1);
        self.apply_at(txn, index, stamp, commands)
    }

    /// [`State::apply`] of the log entry at `index`: the pools it changes remember `index`
    /// (a reconcile's `as_of` is compared with it).
    pub fn apply_at(
        &mut self,
        txn: &redb::WriteTransaction,
        index: u64,
        stamp: Stamp,
        commands: &[Command],
    ) -> Result<Vec<CommandResult>, StorageError> {
        self.last_index = index;
        let mut tx = Tx::open(txn)?;
        let meta_before = self.meta;
        self.meta.now = self.meta.now.max(stamp);
        self.begin_events();
        self.end_leases_and_cooldowns(&mut tx)?;
        let stamp = self.meta.now;
        let mut requests = Requests::open(txn)?;
        requests.prune(stamp, self.request_limits)?;
        let mut results = Vec::with_capacity(commands.len());
        for command in commands {
            results.push(self.apply_command(&mut tx, &mut requests, stamp, command)?);
        }
        let dirty = std::mem::take(&mut tx.dirty);
        reconcile::record_changes(self, &mut tx, index, &dirty)?;
        for id in dirty {
            if let Some(entry) = self.pools.get_mut(&id) {
                if entry.dirty {
                    entry.dirty = false;
                    encode_into(&mut tx.buf, &entry.record)?;
                    tx.pools
                        .insert(pool_key(id).as_slice(), tx.buf.as_slice())?;
                }
            }
        }
        self.prune_events(&mut tx)?;
        if self.meta != meta_before {
            let bytes = encode(&self.meta)?;
            tx.meta.insert(tables::META_KEY, bytes.as_slice())?;
        }
        Ok(results)
    }

    /// Retention of recorded requests: every replica must use the same (tests lower it).
    pub fn set_request_limits(&mut self, limits: RequestLimits) {
        self.request_limits = limits;
    }

    fn apply_command(
        &mut self,
        tx: &mut Tx<'_>,
        requests: &mut Requests<'_>,
        stamp: Stamp,
        command: &Command,
    ) -> Result<CommandResult, StorageError> {
        Ok(match command {
            Command::Op(op) => CommandResult::Op(self.apply_op(tx, stamp, op)?),
            Command::Batch(ops) => CommandResult::Batch(self.apply_batch(tx, stamp, command, ops)?),
            Command::Tagged { id, key, command } => match requests.lookup(id, key.as_ref())? {
                Some(recorded) => recorded,
                None => {
                    let result = self.apply_command(tx, requests, stamp, command)?;
                    requests.insert(stamp, *id, key.as_ref(), &result, self.request_limits)?;
                    result
                }
            },
        })
    }

    fn apply_batch(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        command: &Command,
        ops: &[Op],
    ) -> Result<Result<Vec<OpOutput>, BatchError>, StorageError> {
        if let Err(e) = check_command(command) {
            return Ok(Err(e));
        }
        let meta_before = self.meta;
        let events_before = self.events.mark();
        tx.journaling = true;
        let mut outputs = Vec::with_capacity(ops.len());
        let mut failure = None;
        for (index, op) in ops.iter().enumerate() {
            match self.apply_op(tx, stamp, op) {
                Ok(Ok(output)) => outputs.push(output),
                Ok(Err(error)) => {
                    failure = Some(BatchError { index, error });
                    break;
                }
                Err(e) => {
                    tx.journaling = false;
                    return Err(e);
                }
            }
        }
        tx.journaling = false;
        let journal = std::mem::take(&mut tx.journal);
        match failure {
            None => Ok(Ok(outputs)),
            Some(error) => {
                self.rollback(tx, journal)?;
                self.meta = meta_before;
                self.events.reset(events_before);
                Ok(Err(error))
            }
        }
    }

    /// Applies one op: `Ok(Err(_))` is a (committed) error result, `Err(_)` a storage failure.
    fn apply_op(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        op: &Op,
    ) -> Result<Result<OpOutput, OpError>, StorageError> {
        // Pool creation validates inside `create_pool` (it needs the computed layout).
        if !matches!(
            op,
            Op::CreatePool(_) | Op::CreatePoolV2(_) | Op::CreatePoolV3(_)
        ) {
            if let Err(e) = check_op(op) {
                return Ok(Err(e));
            }
        }
        let result = match op {
            Op::CreatePool(spec) => self
                .create_pool(tx, stamp, spec, &Default::default())?
                .map_err(OpError::from),
            Op::DeletePool { pool, force } => {
                self.delete_pool(tx, pool, *force)?.map_err(OpError::from)
            }
            Op::Allocate {
                pool,
                owner,
                ip,
                labels,
            } => self
                .allocate(tx, stamp, pool, owner, *ip, labels, None)?
                .map_err(OpError::from),
            Op::AllocateV2 {
                pool,
                owner,
                ip,
                labels,
                ttl_seconds,
            } => self
                .allocate(tx, stamp, pool, owner, *ip, labels, *ttl_seconds)?
                .map(|out| match out {
                    OpOutput::Allocated {
                        allocation,
                        existing,
                    } => OpOutput::AllocatedV2 {
                        allocation,
                        existing,
                    },
                    other => other,
                })
                .map_err(OpError::from),
            Op::Renew {
                pool,
                ip,
                generation,
                ttl_seconds,
            } => self
                .renew(tx, pool, *ip, *generation, *ttl_seconds)?
                .map_err(OpError::from),
            Op::RenewOwner { owner } => Ok(self.renew_owner(tx, owner)?),
            Op::Release {
                pool,
                ip,
                generation,
            } => self
                .release(tx, pool, *ip, *generation)?
                .map_err(OpError::from),
            Op::ReleaseOwner { pool, owner } => {
                self.release_owner(tx, pool, owner)?.map_err(OpError::from)
            }
            Op::CreatePoolV2(spec) => self
                .create_pool(tx, stamp, &spec.base, &spec.settings)?
                .map_err(OpError::from),
            Op::UpdatePool {
                pool,
                revision,
                update,
            } => self
                .update_pool(tx, pool, *revision, update)?
                .map_err(OpError::from),
            Op::AddRange {
                pool,
                cidr,
                gateway,
            } => self
                .add_range(tx, pool, *cidr, *gateway)?
                .map_err(OpError::from),
            Op::RemoveRange { pool, cidr } => {
                self.remove_range(tx, pool, *cidr)?.map_err(OpError::from)
            }
            Op::Reconcile(spec) => self.reconcile(tx, stamp, spec)?,
            Op::SetFeatureLevel(level) => Ok(self.set_feature_level(tx, *level)?),
            Op::CreatePoolV3(spec) => self.create_pool_v3(tx, stamp, spec)?.map_err(OpError::from),
            Op::AllocateAny {
                owner,
                selector,
                family,
                labels,
                ttl_seconds,
            } => self
                .allocate_any(tx, stamp, owner, selector, *family, labels, *ttl_seconds)?
                .map(|out| match out {
                    OpOutput::Allocated {
                        allocation,
                        existing,
                    } => OpOutput::AllocatedV2 {
                        allocation,
                        existing,
                    },
                    other => other,
                })
                .map_err(OpError::from),
        };
        if result.is_ok() {
            self.pool_event(tx, stamp, op)?;
        }
        Ok(result)
    }
}
