//! `POST /api/v1/allocations`: an address from the pool the state machine chooses by
//! selector, family, weight and cap; and the selection counter
//! `ipam_selections_total{pool,result}`.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipam_client::types as api;
use ipam_core::Family;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::api::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Params};
use crate::metrics::MetricsError;
use crate::wire;

/// Selections that gave an address, by chosen pool and whether it was new.
pub struct SelectionMetrics {
    selections: IntCounterVec,
}

impl SelectionMetrics {
    /// Creates the counter and registers it in `registry`.
    pub fn new(registry: &Registry) -> Result<SelectionMetrics, MetricsError> {
        let selections = IntCounterVec::new(
            Opts::new(
                "ipam_selections_total",
                "Allocations by selector answered by this node, by chosen pool and result \
                 (new, existing)",
            ),
            &["pool", "result"],
        )?;
        registry.register(Box::new(selections.clone()))?;
        Ok(SelectionMetrics { selections })
    }

    /// Records one selection that chose `pool`.
    pub fn chosen(&self, pool: &str, existing: bool) {
        let result = if existing { "existing" } else { "new" };
        self.selections.with_label_values(&[pool, result]).inc();
    }
}

/// The domain's family of an API family.
pub fn family(f: api::AddressFamily) -> Family {
    match f {
        api::AddressFamily::Ipv4 => Family::V4,
        api::AddressFamily::Ipv6 => Family::V6,
    }
}

/// `POST /api/v1/allocations`.
pub async fn allocate_any(
    State(state): State<AppState>,
    params: Params,
    ApiJson(req): ApiJson<api::AllocateAnyRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = async {
        params.finish()?;
        let out = state
            .ipam
            .allocate_any(
                &req.owner,
                req.selector,
                req.family.map(family),
                req.labels,
                req.ttl_seconds,
            )
            .await?;
        Ok::<_, ApiError>(out)
    }
    .await;
    state.metrics.observe_allocation(started.elapsed());
    match result {
        Ok((allocation, existing)) => {
            state.metrics.selections.chosen(&allocation.pool, existing);
            let status = if existing {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json(wire::allocation(&allocation))).into_response())
        }
        Err(e) => {
            // No pool is proven by a failed selection: the label stays empty.
            state.metrics.allocation_error("", e.parts().code.as_str());
            Err(e)
        }
    }
}
