//! `GET /api/v1/check` and the periodic integrity check (`--check-interval`): this node's own
//! check of its state, exported as `ipam_integrity_problems`; the timer also rebuilds the free
//! index from redb when it disagrees with the tables.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use ipam_client::ops::{CheckProblem, CheckResponse};
use ipam_raft::CheckReport;

use crate::api::AppState;
use crate::error::ApiError;
use crate::extract::Params;

/// `GET /api/v1/check`: reports only; repairs are the timer's (an operator who wants one now
/// restarts the node, which rebuilds the index from redb).
pub async fn check(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<CheckResponse>, ApiError> {
    params.finish()?;
    let report = state.ipam.check(false).await?;
    state
        .metrics
        .integrity_problems
        .set(i64::try_from(report.problems.len()).unwrap_or(i64::MAX));
    Ok(Json(response(state.ipam.id(), &report)))
}

/// The JSON of a report.
pub fn response(node: u64, report: &CheckReport) -> CheckResponse {
    CheckResponse {
        node,
        applied_index: report.applied_index,
        digest: report.digest.iter().map(|b| format!("{b:02x}")).collect(),
        problems: report
            .problems
            .iter()
            .map(|p| {
                let mut detail: std::collections::BTreeMap<String, serde_json::Value> =
                    match serde_json::to_value(p) {
                        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
                        _ => Default::default(),
                    };
                detail.remove("kind");
                CheckProblem {
                    kind: p.kind().to_string(),
                    message: p.to_string(),
                    detail,
                }
            })
            .collect(),
    }
}

/// Runs the check every `interval` until the task is aborted, repairing the free index when
/// it disagrees. The first run is one interval after start: a node just opened rebuilt its
/// index from redb anyway.
pub async fn run_timer(state: AppState, interval: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match state.ipam.check(true).await {
            Ok(report) => {
                let count = i64::try_from(report.problems.len()).unwrap_or(i64::MAX);
                if report.problems.is_empty() {
                    tracing::debug!(
                        applied_index = report.applied_index,
                        "integrity check clean"
                    );
                } else {
                    for p in &report.problems {
                        tracing::error!(kind = p.kind(), problem = %p, "integrity check");
                    }
                    tracing::warn!(
                        problems = count,
                        repaired = report.repaired,
                        "integrity check found problems"
                    );
                }
                // A repaired index is consistent now; what is left needs an operator.
                state
                    .metrics
                    .integrity_problems
                    .set(if report.repaired { 0 } else { count });
            }
            Err(e) => tracing::warn!(error = %e, "integrity check could not run"),
        }
    }
}
