//! The integrity check: every invariant that ties the core's tables to each other and to the
//! in-memory [`State`], reported as typed [`Problem`]s rather than the first error.
//!
//! A child of `state` (declared there) because it reads the index's private fields; it only
//! reads, except [`State::reload_free_indexes`], the repair, and the test hook that corrupts
//! the index on purpose.
//!
//! What it checks, in one read transaction:
//! - every allocation row decodes, belongs to an existing pool, sits on an allocatable
//!   position of it, and has the owner row that points back at it;
//! - every owner row points at an allocation held by that owner;
//! - each pool's `allocated` counter equals its allocation rows;
//! - the name and range tables and the in-memory pools agree with the pool rows;
//! - each in-memory free index equals the pool's layout minus its allocation rows and its
//!   cooling addresses; a cooling address is allocatable and not allocated, and the in-memory
//!   cooling set equals the cooling rows;
//! - every lease (an allocation with `expires_at`) has its expiry index row, and every expiry
//!   row belongs to such a lease;
//! - the generation counter is at least every allocation's generation;
//! - the event ids are contiguous and match the in-memory sequence, and the address index
//!   holds exactly the events that name an address.
//! - every recorded request has its id row, and every id and key row names its record.

use std::collections::BTreeMap;
use std::net::IpAddr;

use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};

use super::State;
use crate::alloc::FreeIndex;
use crate::error::StorageError;
use crate::tables::{
    self, allocation_key, decode, decode_allocation_key, decode_pool_key, owner_key, range_key,
    AllocationRecord, MetaRecord, NameRecord, PoolRecord, RangeRecord,
};
use crate::types::{Family, PoolId};

/// One broken invariant. Addresses are rendered when the pool (so the family) is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A row that does not decode.
    Undecodable {
        /// Table.
        table: String,
        /// Why.
        reason: String,
    },
    /// An allocation row of a pool id with no pool row.
    OrphanAllocation {
        /// The missing pool's id.
        pool_id: PoolId,
        /// Address position, hexadecimal (the family is unknown).
        position: String,
    },
    /// An allocation on a position that can never be allocated (network, gateway, reserved,
    /// outside the CIDR).
    NotAllocatable {
        /// Pool.
        pool: String,
        /// Address.
        ip: String,
    },
    /// An allocation whose owner row is missing or points elsewhere.
    OwnerIndexMissing {
        /// Pool.
        pool: String,
        /// Address.
        ip: String,
        /// Owner of the allocation row.
        owner: String,
    },
    /// An owner row whose allocation is missing or held by someone else.
    OwnerIndexStale {
        /// Pool (or its id when the pool row is missing).
        pool: String,
        /// Owner of the owner row.
        owner: String,
        /// Address position it names, hexadecimal.
        position: String,
    },
    /// A pool's `allocated` counter differs from its allocation rows.
    CounterMismatch {
        /// Pool.
        pool: String,
        /// The counter.
        recorded: String,
        /// The rows.
        rows: String,
    },
    /// The name table, the range table or the in-memory pools disagree with the pool rows.
    IndexMismatch {
        /// Pool (name or id).
        pool: String,
        /// What disagrees.
        detail: String,
    },
    /// The in-memory free index of a pool differs from its layout minus its allocations.
    FreeIndexMismatch {
        /// Pool.
        pool: String,
        /// Free addresses per the in-memory index.
        memory_free: String,
        /// Free addresses per the tables.
        expected_free: String,
    },
    /// The generation counter is below an allocation's generation, so one could repeat.
    GenerationBehind {
        /// The counter.
        recorded: u64,
        /// The highest allocation generation.
        highest: u64,
    },
    /// The event log is broken: a gap in its sequence, an address index row without its
    /// event (or the reverse), or a sequence that differs from the in-memory one.
    EventLog {
        /// What is wrong.
        detail: String,
    },
    /// The recorded requests and their id and key index disagree ([`crate::requests`]).
    RequestIndex {
        /// What disagrees.
        detail: String,
    },
}

impl Problem {
    /// The `kind` tag, as serialized.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Undecodable { .. } => "undecodable",
            Problem::OrphanAllocation { .. } => "orphan_allocation",
            Problem::NotAllocatable { .. } => "not_allocatable",
            Problem::OwnerIndexMissing { .. } => "owner_index_missing",
            Problem::OwnerIndexStale { .. } => "owner_index_stale",
            Problem::CounterMismatch { .. } => "counter_mismatch",
            Problem::IndexMismatch { .. } => "index_mismatch",
            Problem::FreeIndexMismatch { .. } => "free_index_mismatch",
            Problem::GenerationBehind { .. } => "generation_behind",
            Problem::EventLog { .. } => "event_log",
            Problem::RequestIndex { .. } => "request_index",
        }
    }

    /// Whether rebuilding the in-memory index from the tables fixes it.
    pub fn repaired_by_reload(&self) -> bool {
        matches!(self, Problem::FreeIndexMismatch { .. })
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Undecodable { table, reason } => write!(f, "{table}: {reason}"),
            Problem::OrphanAllocation { pool_id, position } => {
                write!(f, "allocation {position} of pool id {pool_id}, which has no pool row")
            }
            Problem::NotAllocatable { pool, ip } => {
                write!(f, "pool {pool}: {ip} is allocated but not allocatable")
            }
            Problem::OwnerIndexMissing { pool, ip, owner } => {
                write!(f, "pool {pool}: {ip} is held by {owner:?} but the owner index does not point at it")
            }
            Problem::OwnerIndexStale {
                pool,
                owner,
                position,
            } => write!(
                f,
                "pool {pool}: the owner index gives {owner:?} position {position}, which it does not hold"
            ),
            Problem::CounterMismatch {
                pool,
                recorded,
                rows,
            } => write!(f, "pool {pool} counts {recorded} allocations; its rows are {rows}"),
            Problem::IndexMismatch { pool, detail } => write!(f, "pool {pool}: {detail}"),
            Problem::FreeIndexMismatch {
                pool,
                memory_free,
                expected_free,
            } => write!(
                f,
                "pool {pool}: the in-memory free index has {memory_free} free addresses, the tables {expected_free}"
            ),
            Problem::GenerationBehind { recorded, highest } => write!(
                f,
                "generation counter {recorded} is below allocation generation {highest}"
            ),
            Problem::EventLog { detail } => write!(f, "event log: {detail}"),
            Problem::RequestIndex { detail } => write!(f, "recorded requests: {detail}"),
        }
    }
}

fn hex(pos: u128) -> String {
    format!("{pos:#x}")
}

fn render(family: Family, pos: u128) -> String {
    let ip: IpAddr = family.addr(pos);
    ip.to_string()
}

/// One pool row as the check needs it.
struct PoolRow {
    record: PoolRecord,
    rows: u128,
    /// The layout's free index minus the allocation rows seen so far.
    expected_free: Option<FreeIndex>,
}

/// Runs the integrity check of `state` against the tables as `rtx` sees them; `rtx` must see
/// exactly the state `state` was built from (the state machine's own transaction order).
pub fn check(state: &State, rtx: &ReadTransaction) -> Result<Vec<Problem>, StorageError> {
    let mut problems = Vec::new();
    let undecodable = |problems: &mut Vec<Problem>, e: StorageError| {
        problems.push(Problem::Undecodable {
            table: match &e {
                StorageError::Corrupt { table, .. } => table.to_string(),
                _ => "?".into(),
            },
            reason: e.to_string(),
        })
    };

    let meta = match rtx.open_table(tables::META)?.get(tables::META_KEY)? {
        Some(v) => match decode::<MetaRecord>("core_meta", v.value()) {
            Ok(m) => m,
            Err(e) => {
                undecodable(&mut problems, e);
                MetaRecord::default()
            }
        },
        None => MetaRecord::default(),
    };

    let mut pools: BTreeMap<PoolId, PoolRow> = BTreeMap::new();
    for row in rtx.open_table(tables::POOLS)?.iter()? {
        let (k, v) = row?;
        let decoded = decode_pool_key(k.value())
            .and_then(|id| Ok((id, decode::<PoolRecord>("core_pools", v.value())?)));
        let (id, record) = match decoded {
            Ok(x) => x,
            Err(e) => {
                undecodable(&mut problems, e);
                continue;
            }
        };
        let expected_free = state.pools.get(&id).map(|e| e.layout.initial_free());
        pools.insert(
            id,
            PoolRow {
                record,
                rows: 0,
                expected_free,
            },
        );
    }

    // Names, ranges and the in-memory pools against the pool rows.
    let names = rtx.open_table(tables::POOL_NAMES)?;
    let ranges = rtx.open_table(tables::RANGES)?;
    for (id, row) in &pools {
        let name = &row.record.name;
        let mismatch = |detail: String| Problem::IndexMismatch {
            pool: name.clone(),
            detail,
        };
        match names.get(name.as_bytes())? {
            Some(v) => match decode::<NameRecord>("core_pool_names", v.value()) {
                Ok(n) if n.pool == *id && n.family == row.record.cidr.family() => {}
                Ok(n) => problems.push(mismatch(format!(
                    "the name table points at pool id {} ({:?}), the pool row has id {id}",
                    n.pool, n.family
                ))),
                Err(e) => undecodable(&mut problems, e),
            },
            None => problems.push(mismatch("no name table row".into())),
        }
        // Every range of a pool (the first and those added later) owns its range table row.
        let cidrs =
            std::iter::once(row.record.cidr).chain(row.record.ranges.iter().map(|r| r.cidr));
        for cidr in cidrs {
            match ranges.get(range_key(tables::range_tag(&row.record), cidr.first()).as_slice())? {
                Some(v) => match decode::<RangeRecord>("core_ranges", v.value()) {
                    Ok(r) if r.pool == *id && r.last == cidr.last() => {}
                    Ok(_) => {
                        problems.push(mismatch(format!("the range table row of {cidr} differs")))
                    }
                    Err(e) => undecodable(&mut problems, e),
                },
                None => problems.push(mismatch(format!("no range table row for {cidr}"))),
            }
        }
        match state.pools.get(id) {
            Some(entry) if entry.record == row.record && state.names.get(name) == Some(id) => {}
            Some(_) => problems.push(mismatch("the in-memory pool differs from its row".into())),
            None => problems.push(mismatch("missing from the in-memory index".into())),
        }
    }
    for (id, entry) in &state.pools {
        if !pools.contains_key(id) {
            problems.push(Problem::IndexMismatch {
                pool: entry.record.name.clone(),
                detail: "in the in-memory index but has no pool row".into(),
            });
        }
    }

    // Allocation rows, with their owner rows.
    let owners = rtx.open_table(tables::OWNERS)?;
    let mut highest_generation = 0;
    // Expiry index keys the allocation rows call for.
    let mut leases = std::collections::BTreeSet::new();
    for row in rtx.open_table(tables::ALLOCATIONS)?.iter()? {
        let (k, v) = row?;
        let (id, pos) = match decode_allocation_key(k.value()) {
            Ok(x) => x,
            Err(e) => {
                undecodable(&mut problems, e);
                continue;
            }
        };
        let record = match decode::<AllocationRecord>("core_allocations", v.value()) {
            Ok(r) => r,
            Err(e) => {
                undecodable(&mut problems, e);
                continue;
            }
        };
        highest_generation = highest_generation.max(record.generation);
        // A block holding a child pool keeps its lease out of the expiry index.
        let suspended = pools.get(&id).is_some_and(|p| {
            p.record.delegation_prefix_len.is_some()
                && state
                    .ranges
                    .contains_key(&(p.record.cidr.family().tag() | tables::CHILD_TAG, pos))
        });
        if let Some(at) = record.expires_at.filter(|_| !suspended) {
            leases.insert(tables::expiry_key(at, id, pos));
        }
        let Some(pool) = pools.get_mut(&id) else {
            problems.push(Problem::OrphanAllocation {
                pool_id: id,
                position: hex(pos),
            });
            continue;
        };
        pool.rows += 1;
        let family = pool.record.cidr.family();
        let name = &pool.record.name;
        let allocatable = match &mut pool.expected_free {
            Some(free) => free.take(pos),
            // Without an in-memory layout, the ranges are all that can be checked.
            None => std::iter::once(pool.record.cidr)
                .chain(pool.record.ranges.iter().map(|r| r.cidr))
                .any(|c| c.first() <= pos && pos <= c.last()),
        };
        if !allocatable {
            problems.push(Problem::NotAllocatable {
                pool: name.clone(),
                ip: render(family, pos),
            });
        }
        let points_back = match owners.get(owner_key(id, &record.owner).as_slice())? {
            Some(v) => decode::<u128>("core_owners", v.value()).ok() == Some(pos),
            None => false,
        };
        if !points_back {
            problems.push(Problem::OwnerIndexMissing {
                pool: name.clone(),
                ip: render(family, pos),
                owner: record.owner,
            });
        }
    }

    // Owner rows whose allocation is gone or held by another owner.
    let allocations = rtx.open_table(tables::ALLOCATIONS)?;
    for row in owners.iter()? {
        let (k, v) = row?;
        let key = k.value();
        let Some((id, owner)) = key.split_first_chunk::<4>() else {
            undecodable(
                &mut problems,
                StorageError::Corrupt {
                    table: "core_owners",
                    reason: format!("key of {} bytes", key.len()),
                },
            );
            continue;
        };
        let id = PoolId::from_be_bytes(*id);
        let owner = String::from_utf8_lossy(owner).into_owned();
        let pos = match decode::<u128>("core_owners", v.value()) {
            Ok(p) => p,
            Err(e) => {
                undecodable(&mut problems, e);
                continue;
            }
        };
        let held = match allocations.get(allocation_key(id, pos).as_slice())? {
            Some(v) => decode::<AllocationRecord>("core_allocations", v.value())
                .is_ok_and(|r| r.owner == owner),
            None => false,
        };
        if !held {
            problems.push(Problem::OwnerIndexStale {
                pool: pools
                    .get(&id)
                    .map_or_else(|| format!("id {id}"), |p| p.record.name.clone()),
                owner,
                position: hex(pos),
            });
        }
    }

    check_leases(rtx, &pools, &leases, &mut problems)?;
    for (id, pool) in pools.iter_mut() {
        let Some(entry) = state.pools.get(id) else {
            continue;
        };
        let name = pool.record.name.clone();
        let family = pool.record.cidr.family();
        let cooling = super::cooling_positions(rtx, *id)?;
        if let Some(expected) = &mut pool.expected_free {
            for &pos in &cooling {
                if !expected.take(pos) {
                    problems.push(Problem::IndexMismatch {
                        pool: name.clone(),
                        detail: format!(
                            "cooling address {} is allocated or not allocatable",
                            render(family, pos)
                        ),
                    });
                }
            }
        }
        let mut sorted = cooling;
        sorted.sort_unstable();
        if !sorted.iter().eq(entry.cooling.by_pos.keys()) {
            problems.push(Problem::IndexMismatch {
                pool: name,
                detail: format!(
                    "the in-memory index has {} cooling addresses, the tables {}",
                    entry.cooling.len(),
                    sorted.len()
                ),
            });
        }
    }
    for (id, pool) in &pools {
        if pool.rows != pool.record.allocated {
            problems.push(Problem::CounterMismatch {
                pool: pool.record.name.clone(),
                recorded: pool.record.allocated.to_string(),
                rows: pool.rows.to_string(),
            });
        }
        if let (Some(expected), Some(entry)) = (&pool.expected_free, state.pools.get(id)) {
            if !expected.intervals().eq(entry.free.intervals()) {
                problems.push(Problem::FreeIndexMismatch {
                    pool: pool.record.name.clone(),
                    memory_free: entry.free.free_count().to_string(),
                    expected_free: expected.free_count().to_string(),
                });
            }
        }
    }
    if meta.generation < highest_generation || state.meta.generation != meta.generation {
        problems.push(Problem::GenerationBehind {
            recorded: meta.generation.min(state.meta.generation),
            highest: highest_generation.max(meta.generation),
        });
    }
    super::events::check_events(state, rtx, &mut problems)?;
    for detail in crate::requests::check(rtx)? {
        problems.push(Problem::RequestIndex { detail });
    }
    Ok(problems)
}

/// Compares the expiry index with the leases the allocation rows call for.
fn check_leases(
    rtx: &ReadTransaction,
    pools: &BTreeMap<PoolId, PoolRow>,
    leases: &std::collections::BTreeSet<[u8; 28]>,
    problems: &mut Vec<Problem>,
) -> Result<(), StorageError> {
    let mut rows = std::collections::BTreeSet::new();
    match rtx.open_table(tables::EXPIRY) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, _) = row?;
                if let Ok(key) = <[u8; 28]>::try_from(k.value()) {
                    rows.insert(key);
                }
            }
        }
        // A data dir of release 0.1.0 has no lease and no expiry table.
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    for (key, what) in leases
        .difference(&rows)
        .map(|k| (k, "has no expiry index row"))
        .chain(
            rows.difference(leases)
                .map(|k| (k, "is in the expiry index but is no lease")),
        )
    {
        let (at, id, pos) = tables::decode_expiry_key(key)?;
        let (pool, ip) = match pools.get(&id) {
            Some(p) => (p.record.name.clone(), render(p.record.cidr.family(), pos)),
            None => (format!("#{id}"), hex(pos)),
        };
        problems.push(Problem::IndexMismatch {
            pool,
            detail: format!("the lease of {ip} ending at {} ms {what}", at.0),
        });
    }
    Ok(())
}

impl State {
    /// Rebuilds the in-memory index from the tables as `rtx` sees them, replacing this one:
    /// the repair for a [`Problem::FreeIndexMismatch`]. Fails (leaving this index as it was)
    /// when the tables themselves are inconsistent.
    pub fn reload_free_indexes(&mut self, rtx: &ReadTransaction) -> Result<(), StorageError> {
        *self = State::load(rtx)?;
        Ok(())
    }

    /// Test hook: marks the lowest free address of `pool` as taken in memory only, so the
    /// index disagrees with the tables. Returns whether the pool had a free address.
    #[doc(hidden)]
    pub fn corrupt_free_index_for_tests(&mut self, pool: &str) -> bool {
        let Some(entry) = self.names.get(pool).and_then(|id| self.pools.get_mut(id)) else {
            return false;
        };
        entry.free.take_lowest().is_some()
    }
}
