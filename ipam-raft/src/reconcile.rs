//! Drift and reconcile on [`Ipam`]: the drift report and a reconcile's dry run are reads
//! (behind the read barrier, computed by `ipam-core` from one read transaction, `as_of` = the
//! applied index of that transaction); a real run is one [`Op::Reconcile`] whose plan the state
//! machine recomputes when it applies it.

use ipam_core::drift::{DriftReport, Observed, ReconcileOptions, ReconcileReport, ReconcileSpec};
use ipam_core::{Op, OpError, OpOutput, QueryError, ReconcileError, StorageError};

use crate::config::Consistency;
use crate::error::{InternalError, IpamError};
use crate::handle::Ipam;
use crate::ops::{OpKind, Valid};

/// A reconcile request: what to compare, what to fix, and whether to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileRequest {
    /// The pools compared, 1..=100.
    pub pools: Vec<String>,
    /// The inventory, at most 20,000 entries.
    pub observed: Vec<Observed>,
    /// What to fix, and the grace period.
    pub options: ReconcileOptions,
    /// `true`: only report the plan (a read; nothing is written).
    pub dry_run: bool,
    /// The `as_of` of the reviewed dry run: refuse with `plan_stale` if a pool changed since.
    pub as_of: Option<u64>,
}

struct Reconcile(ReconcileSpec);

impl OpKind for Reconcile {
    type Output = ReconcileReport;
    const NAME: &'static str = "reconcile";
    fn into_op(self) -> Op {
        Op::Reconcile(Box::new(self.0))
    }
    fn take(out: OpOutput) -> Option<ReconcileReport> {
        match out {
            OpOutput::Reconciled(r) => Some(*r),
            _ => None,
        }
    }
}

fn storage(e: StorageError) -> IpamError {
    IpamError::Query(QueryError::Storage(e))
}

fn refused(e: ReconcileError) -> IpamError {
    IpamError::Op(OpError::Reconcile(e))
}

/// The applied index a read transaction of the state sees.
fn applied_index(rtx: &redb::ReadTransaction) -> Result<u64, IpamError> {
    let (applied, _) = crate::storage::state_db::applied_of(rtx)
        .map_err(|e| IpamError::Internal(InternalError::Storage(Box::new(e))))?;
    Ok(applied.map_or(0, |l| l.index))
}

impl Ipam {
    /// Compares `observed` with the allocations of `pools`; returns the applied index the
    /// report was computed at (a reconcile's `as_of`) and the report.
    pub async fn drift(
        &self,
        pools: Vec<String>,
        observed: Vec<Observed>,
        consistency: Consistency,
    ) -> Result<(u64, DriftReport), IpamError> {
        ipam_core::drift::check_request(&pools, &observed)
            .map_err(|e| refused(ReconcileError::Input(e)))?;
        self.read(consistency, move |rtx| {
            let as_of = applied_index(rtx)?;
            let report = ipam_core::state::drift_report(rtx, &pools, &observed)
                .map_err(storage)?
                .map_err(refused)?;
            Ok((as_of, report))
        })
        .await
    }

    /// Reconciles: a dry run (the default of the API) reports the plan as of the applied
    /// index behind the read barrier; a real run proposes one command that recomputes and
    /// applies the plan atomically, refused with `plan_stale` when `as_of` is older than a
    /// named pool's last change.
    pub async fn reconcile(&self, request: ReconcileRequest) -> Result<ReconcileReport, IpamError> {
        let spec = ReconcileSpec {
            pools: request.pools,
            observed: request.observed,
            options: request.options,
            as_of: request.as_of,
        };
        if !request.dry_run {
            return self.write(Valid::new(Reconcile(spec))?).await;
        }
        ipam_core::drift::check_spec(&spec).map_err(|e| refused(ReconcileError::Input(e)))?;
        // The stamp the next entry would carry if this node led: grace as a real run now
        // would measure it (log time never goes back, so the later of the two).
        let now = self.core.clock.next();
        self.read(Consistency::Linearizable, move |rtx| {
            let as_of = applied_index(rtx)?;
            let mut report = ipam_core::state::dry_run(
                rtx,
                &spec.pools,
                &spec.observed,
                &spec.options,
                spec.as_of,
                Some(now),
            )
            .map_err(storage)?
            .map_err(refused)?;
            report.as_of = as_of;
            Ok(report)
        })
        .await
    }
}
