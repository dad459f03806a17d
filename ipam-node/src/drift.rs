//! Drift and reconcile endpoints (`POST /api/v1/drift`, `POST /api/v1/reconcile`), their
//! JSON translation, and `ipam_reconcile_changes_total{kind}`.

use axum::extract::State;
use axum::Json;
use ipam_client::types as api;
use ipam_core::drift::{DriftReport, Observed, ReconcileOptions, ReconcileReport};
use ipam_core::validate::parse_addr;
use ipam_core::InputError;
use ipam_raft::ReconcileRequest;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::api::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Params};
use crate::metrics::MetricsError;
use crate::wire;

/// Body limit of the drift and reconcile calls: 20,000 observed entries with owners exceed the
/// API's 1 MiB.
pub const DRIFT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// `ipam_reconcile_changes_total{kind}`: changes applied by real reconcile runs through this
/// node (`adopted`, `released`, `reassigned`, `skipped`).
pub struct ReconcileMetrics {
    changes: IntCounterVec,
}

impl ReconcileMetrics {
    /// Creates the counter and registers it in `registry`.
    pub fn new(registry: &Registry) -> Result<ReconcileMetrics, MetricsError> {
        let changes = IntCounterVec::new(
            Opts::new(
                "ipam_reconcile_changes_total",
                "Changes made (or skipped) by reconcile runs answered by this node, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(changes.clone()))?;
        Ok(ReconcileMetrics { changes })
    }

    fn count(&self, r: &ReconcileReport) {
        for (kind, n) in [
            ("adopted", r.adopted.len()),
            ("released", r.released.len()),
            ("reassigned", r.reassigned.len()),
            ("skipped", r.skipped.len()),
        ] {
            self.changes.with_label_values(&[kind]).inc_by(n as u64);
        }
    }
}

fn observed(list: Vec<api::ObservedEntry>) -> Result<Vec<Observed>, InputError> {
    list.into_iter()
        .map(|o| {
            Ok(Observed {
                ip: parse_addr(&o.ip)?,
                owner: o.owner,
            })
        })
        .collect()
}

/// The drift report as the API renders it.
pub fn drift_report(as_of: u64, r: &DriftReport) -> api::DriftReport {
    api::DriftReport {
        as_of,
        in_sync: r.in_sync,
        unknown: r
            .unknown
            .iter()
            .map(|u| api::UnknownEntry {
                ip: u.ip.to_string(),
                pool: u.pool.clone(),
                owner: u.owner.clone(),
            })
            .collect(),
        missing: r.missing.iter().map(wire::allocation).collect(),
        mismatched: r
            .mismatched
            .iter()
            .map(|m| api::MismatchedEntry {
                ip: m.ip.to_string(),
                pool: m.pool.clone(),
                expected_owner: m.expected_owner.clone(),
                observed_owner: m.observed_owner.clone(),
                generation: m.generation,
            })
            .collect(),
        outside: r.outside.iter().map(ToString::to_string).collect(),
    }
}

/// A reconcile's answer as the API renders it.
pub fn reconcile_response(r: &ReconcileReport, dry_run: bool) -> api::ReconcileResponse {
    api::ReconcileResponse {
        dry_run,
        as_of: r.as_of,
        adopted: r.adopted.iter().map(wire::allocation).collect(),
        released: r.released.iter().map(wire::allocation).collect(),
        reassigned: r.reassigned.iter().map(wire::allocation).collect(),
        skipped: r
            .skipped
            .iter()
            .map(|s| api::SkippedEntry {
                ip: s.ip.to_string(),
                reason: s.reason.as_str().to_string(),
            })
            .collect(),
        drift: drift_report(r.as_of, &r.drift),
    }
}

/// `POST /api/v1/drift`.
pub async fn drift(
    State(state): State<AppState>,
    mut params: Params,
    ApiJson(req): ApiJson<api::DriftRequest>,
) -> Result<Json<api::DriftReport>, ApiError> {
    let consistency = params.consistency()?;
    params.finish()?;
    let observed = observed(req.observed)?;
    let (as_of, report) = state.ipam.drift(req.pools, observed, consistency).await?;
    Ok(Json(drift_report(as_of, &report)))
}

/// `POST /api/v1/reconcile`: a dry run unless `"dry_run": false`.
pub async fn reconcile(
    State(state): State<AppState>,
    params: Params,
    ApiJson(req): ApiJson<api::ReconcileRequest>,
) -> Result<Json<api::ReconcileResponse>, ApiError> {
    params.finish()?;
    let dry_run = req.dry_run;
    let request = ReconcileRequest {
        pools: req.pools,
        observed: observed(req.observed)?,
        options: ReconcileOptions {
            adopt_unknown: req.adopt_unknown,
            release_missing: req.release_missing,
            fix_mismatched: req.fix_mismatched,
            grace_seconds: req
                .grace_seconds
                .unwrap_or(ipam_core::drift::DEFAULT_GRACE_SECONDS),
        },
        dry_run,
        as_of: req.as_of,
    };
    let report = state.ipam.reconcile(request).await?;
    if !dry_run {
        state.metrics.reconcile.count(&report);
    }
    Ok(Json(reconcile_response(&report, dry_run)))
}
