//! Drift and reconcile over the stored state: loading [`PoolView`]s (from a read transaction
//! for a drift report or a dry run, from the write transaction for a real run), the pools'
//! last-change indices that make a stale plan refuse, and the real run inside `apply`.

use std::collections::BTreeMap;

use redb::ReadableTable;

use super::{expire, missing_allocation, State, TableId, Tx};
use crate::command::OpOutput;
use crate::drift::{
    self, DriftReport, Observed, PoolView, ReconcileOptions, ReconcileReport, ReconcileSpec,
    Skipped,
};
use crate::error::{OpError, ReconcileError, StorageError};
use crate::pools::PoolShape;
use crate::tables::{
    self, allocation_key, cooling_key, decode, decode_allocation_key, encode, pool_changed_key,
    pool_key, AllocationRecord, NameRecord, PoolRecord, POOL_CHANGED_PREFIX,
};
use crate::types::{addr_to_u128, Labels, PoolId, Stamp};

type Bytes = &'static [u8];

/// A pool's allocations in address order, as the API shows them.
fn allocations_of(
    table: &impl ReadableTable<Bytes, Bytes>,
    id: PoolId,
    record: &PoolRecord,
) -> Result<Vec<crate::types::Allocation>, StorageError> {
    let (lo, hi) = (allocation_key(id, 0), allocation_key(id, u128::MAX));
    let family = record.cidr.family();
    let mut out = Vec::new();
    for row in table.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
        let (k, v) = row?;
        let (_, pos) = decode_allocation_key(k.value())?;
        let rec: AllocationRecord = decode("core_allocations", v.value())?;
        out.push(rec.into_allocation(record, family.addr(pos)));
    }
    Ok(out)
}

fn shape_of(record: &PoolRecord) -> Result<PoolShape, StorageError> {
    PoolShape::build(&record.all_ranges(), &record.reserved).map_err(|e| StorageError::Corrupt {
        table: "core_pools",
        reason: format!("pool {:?}: {e}", record.name),
    })
}

/// The named pools as stored, or the first name that is not a pool.
fn load_views(
    rtx: &redb::ReadTransaction,
    pools: &[String],
) -> Result<Result<Vec<PoolView>, ReconcileError>, StorageError> {
    let names = rtx.open_table(tables::POOL_NAMES)?;
    let records = rtx.open_table(tables::POOLS)?;
    let allocations = rtx.open_table(tables::ALLOCATIONS)?;
    let mut views = Vec::with_capacity(pools.len());
    for name in pools {
        let Some(found) = names.get(name.as_bytes())? else {
            return Ok(Err(ReconcileError::PoolNotFound { pool: name.clone() }));
        };
        let found: NameRecord = decode("core_pool_names", found.value())?;
        let record: PoolRecord = match records.get(pool_key(found.pool).as_slice())? {
            Some(v) => decode("core_pools", v.value())?,
            None => {
                return Err(StorageError::Corrupt {
                    table: "core_pool_names",
                    reason: format!("pool {name:?} has no record"),
                })
            }
        };
        let shape = shape_of(&record)?;
        let mut free = shape.initial_free();
        let cooling = expire::load_cooling(rtx, found.pool, &mut free, name)?;
        let family = record.cidr.family();
        views.push(PoolView {
            name: name.clone(),
            shape,
            allocations: allocations_of(&allocations, found.pool, &record)?,
            cooling: cooling
                .by_time
                .iter()
                .map(|((_, pos), owner)| (family.addr(*pos), owner.clone()))
                .collect(),
        });
    }
    Ok(Ok(views))
}

/// A pool's last-change index in a read transaction (`None`: not changed since this release
/// started recording).
pub fn changed_at(rtx: &redb::ReadTransaction, id: PoolId) -> Result<Option<u64>, StorageError> {
    let meta = rtx.open_table(tables::META)?;
    let got = meta.get(pool_changed_key(id).as_slice())?;
    got.map(|v| decode::<u64>("core_meta", v.value()))
        .transpose()
}

/// The highest last-change index stored (where [`State::apply`] without an index goes on).
pub(super) fn last_change(rtx: &redb::ReadTransaction) -> Result<u64, StorageError> {
    let meta = match rtx.open_table(tables::META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut last = 0;
    for row in meta.range::<&[u8]>(POOL_CHANGED_PREFIX..)? {
        let (k, v) = row?;
        if !k.value().starts_with(POOL_CHANGED_PREFIX) {
            break;
        }
        last = last.max(decode::<u64>("core_meta", v.value())?);
    }
    Ok(last)
}

/// Refuses when a named pool changed after `as_of`.
fn check_fresh(
    pools: &[(String, PoolId)],
    as_of: Option<u64>,
    changed: impl Fn(PoolId) -> Result<Option<u64>, StorageError>,
) -> Result<Result<(), ReconcileError>, StorageError> {
    let Some(as_of) = as_of else {
        return Ok(Ok(()));
    };
    for (name, id) in pools {
        if let Some(at) = changed(*id)?.filter(|at| *at > as_of) {
            return Ok(Err(ReconcileError::PlanStale {
                pool: name.clone(),
                changed_at: at,
                as_of,
            }));
        }
    }
    Ok(Ok(()))
}

/// The drift of `observed` against `pools` as `rtx` sees them.
pub fn drift_report(
    rtx: &redb::ReadTransaction,
    pools: &[String],
    observed: &[Observed],
) -> Result<Result<DriftReport, ReconcileError>, StorageError> {
    if let Err(e) = drift::check_request(pools, observed) {
        return Ok(Err(e.into()));
    }
    Ok(load_views(rtx, pools)?.map(|views| drift::drift(&views, observed)))
}

/// What a reconcile would do as `rtx` sees the state, with the grace period measured at
/// `now` (the stamp the next entry would carry) or, when absent or older, at the latest
/// applied log time; refused like the real run when `as_of` is older than a named pool's
/// last change.
pub fn dry_run(
    rtx: &redb::ReadTransaction,
    pools: &[String],
    observed: &[Observed],
    options: &ReconcileOptions,
    as_of: Option<u64>,
    now: Option<Stamp>,
) -> Result<Result<ReconcileReport, ReconcileError>, StorageError> {
    let spec = ReconcileSpec {
        pools: pools.to_vec(),
        observed: observed.to_vec(),
        options: *options,
        as_of,
    };
    if let Err(e) = drift::check_spec(&spec) {
        return Ok(Err(e.into()));
    }
    let views = match load_views(rtx, pools)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let names = rtx.open_table(tables::POOL_NAMES)?;
    let mut ids = Vec::with_capacity(pools.len());
    let mut records = BTreeMap::new();
    let pool_table = rtx.open_table(tables::POOLS)?;
    for name in pools {
        if let Some(v) = names.get(name.as_bytes())? {
            let id = decode::<NameRecord>("core_pool_names", v.value())?.pool;
            ids.push((name.clone(), id));
            if let Some(r) = pool_table.get(pool_key(id).as_slice())? {
                records.insert(name.clone(), decode::<PoolRecord>("core_pools", r.value())?);
            }
        }
    }
    if let Err(e) = check_fresh(&ids, as_of, |id| changed_at(rtx, id))? {
        return Ok(Err(e));
    }
    let now = expire::log_now(rtx)?.max(now.unwrap_or_default());
    let report = drift::drift(&views, observed);
    let plan = drift::plan(&views, &report, options, now);
    Ok(Ok(drift::preview(&plan, report, now, |pool, ip| {
        records.get(pool).and_then(|r| r.network_for(ip))
    })))
}

/// Moves the last-change index of every pool `tx` touched (and of `dirty` ones) to `index`;
/// a pool that no longer exists loses its row.
pub(super) fn record_changes(
    state: &State,
    tx: &mut Tx<'_>,
    index: u64,
    dirty: &[PoolId],
) -> Result<(), StorageError> {
    let mut ids = std::mem::take(&mut tx.touched);
    ids.extend_from_slice(dirty);
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let value = encode(&index)?;
    for id in ids {
        let key = pool_changed_key(id);
        if state.pools.contains_key(&id) {
            tx.meta.insert(key.as_slice(), value.as_slice())?;
        } else {
            tx.meta.remove(key.as_slice())?;
        }
    }
    Ok(())
}

impl State {
    /// A pool as the write transaction sees it.
    fn view(&self, tx: &Tx<'_>, id: PoolId) -> Result<PoolView, StorageError> {
        let entry = &self.pools[&id];
        let family = entry.record.cidr.family();
        Ok(PoolView {
            name: entry.record.name.clone(),
            shape: entry.layout.clone(),
            allocations: allocations_of(&tx.allocations, id, &entry.record)?,
            cooling: entry
                .cooling
                .by_time
                .iter()
                .map(|((_, pos), owner)| (family.addr(*pos), owner.clone()))
                .collect(),
        })
    }

    /// The real run: recomputes the plan from the state as of this command and applies all of
    /// it here (the spec was checked by `check_op`).
    pub(super) fn reconcile(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        spec: &ReconcileSpec,
    ) -> Result<Result<OpOutput, OpError>, StorageError> {
        let mut ids = Vec::with_capacity(spec.pools.len());
        for name in &spec.pools {
            match self.names.get(name) {
                Some(id) => ids.push((name.clone(), *id)),
                None => {
                    return Ok(Err(
                        ReconcileError::PoolNotFound { pool: name.clone() }.into()
                    ))
                }
            }
        }
        let fresh = check_fresh(&ids, spec.as_of, |id| {
            let got = tx.meta.get(pool_changed_key(id).as_slice())?;
            got.map(|v| decode::<u64>("core_meta", v.value()))
                .transpose()
        })?;
        if let Err(e) = fresh {
            return Ok(Err(e.into()));
        }
        let views = ids
            .iter()
            .map(|(_, id)| self.view(tx, *id))
            .collect::<Result<Vec<_>, _>>()?;
        let report = drift::drift(&views, &spec.observed);
        let plan = drift::plan(&views, &report, &spec.options, stamp);
        let by_name: BTreeMap<&str, PoolId> = ids.iter().map(|(n, id)| (n.as_str(), *id)).collect();
        let mut out = ReconcileReport {
            as_of: self.last_index,
            skipped: plan.skipped,
            ..ReconcileReport::default()
        };
        for a in plan.release {
            let id = by_name[a.pool.as_str()];
            let pos = addr_to_u128(a.ip);
            let record = tx
                .allocation(id, pos)?
                .ok_or_else(|| missing_allocation(&a.pool, pos))?;
            self.remove_allocation(tx, id, pos, &record)?;
            out.released.push(a);
        }
        for (a, owner) in plan.reassign {
            let id = by_name[a.pool.as_str()];
            let pos = addr_to_u128(a.ip);
            let record = tx
                .allocation(id, pos)?
                .ok_or_else(|| missing_allocation(&a.pool, pos))?;
            self.remove_allocation(tx, id, pos, &record)?;
            // The operator says the new owner uses it now: no cooldown for the old one.
            self.end_cooling(tx, id, pos)?;
            self.adopt(
                tx,
                stamp,
                &a.pool,
                &owner,
                a.ip,
                &mut out.reassigned,
                &mut out.skipped,
            )?;
        }
        for a in plan.adopt {
            self.adopt(
                tx,
                stamp,
                &a.pool,
                &a.owner,
                a.ip,
                &mut out.adopted,
                &mut out.skipped,
            )?;
        }
        out.skipped.sort_by_key(|s| s.ip);
        out.drift = report;
        Ok(Ok(OpOutput::Reconciled(Box::new(out))))
    }

    /// Takes a cooling `pos` out of the cooling set into the free index.
    fn end_cooling(&mut self, tx: &mut Tx<'_>, id: PoolId, pos: u128) -> Result<(), StorageError> {
        let Some(entry) = self.pools.get_mut(&id) else {
            return Ok(());
        };
        if let Some((at, _)) = entry.cooling.remove(pos) {
            entry.free.release(pos);
            tx.del(TableId::Cooling, &cooling_key(id, Stamp(at), pos))?;
        }
        Ok(())
    }

    /// A permanent allocation of `ip` to `owner` with no labels; the plan checked that it can
    /// be made, so a refusal (a bug) is reported as skipped rather than lost.
    #[allow(clippy::too_many_arguments)]
    fn adopt(
        &mut self,
        tx: &mut Tx<'_>,
        stamp: Stamp,
        pool: &str,
        owner: &str,
        ip: std::net::IpAddr,
        made: &mut Vec<crate::types::Allocation>,
        skipped: &mut Vec<Skipped>,
    ) -> Result<(), StorageError> {
        match self.allocate(tx, stamp, pool, owner, Some(ip), &Labels::new(), Some(0))? {
            Ok(OpOutput::Allocated { allocation, .. }) => made.push(allocation),
            Ok(_) => {}
            Err(e) => skipped.push(Skipped {
                ip,
                reason: match e.code() {
                    crate::ErrorCode::OwnerConflict => drift::SkipReason::OwnerConflict,
                    crate::ErrorCode::AddressCoolingDown => drift::SkipReason::AddressCoolingDown,
                    _ => drift::SkipReason::InvalidArgument,
                },
            }),
        }
        Ok(())
    }
}
