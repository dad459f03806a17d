//! Lease handlers: renew one allocation, renew everything an owner holds (the agent
//! heartbeat), and the `cooling` count that pool answers carry.

use axum::extract::State;
use axum::Json;
use ipam_client::types as api;
use ipam_core::validate::{check_owner, parse_addr};
use ipam_raft::Consistency;

use crate::api::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, OptionalJson, Params};
use crate::wire;

/// `POST /api/v1/pools/{name}/allocations/{ip}/renew` (the body may be absent).
pub async fn renew(
    State(state): State<AppState>,
    ApiPath((pool, ip)): ApiPath<(String, String)>,
    params: Params,
    OptionalJson(req): OptionalJson<api::RenewRequest>,
) -> Result<Json<api::Allocation>, ApiError> {
    params.finish()?;
    let ip = parse_addr(&ip)?;
    if let Some(ttl) = req.ttl_seconds {
        ipam_core::validate::check_ttl(ttl)?;
    }
    let a = state
        .ipam
        .renew(&pool, ip, req.generation, req.ttl_seconds)
        .await?;
    Ok(Json(wire::allocation(&a)))
}

/// `POST /api/v1/leases/renew` `{"owner"}`.
pub async fn renew_owner(
    State(state): State<AppState>,
    params: Params,
    ApiJson(req): ApiJson<api::RenewOwnerRequest>,
) -> Result<Json<api::Renewed>, ApiError> {
    params.finish()?;
    check_owner(&req.owner)?;
    let renewed = state.ipam.renew_owner(&req.owner).await?;
    Ok(Json(api::Renewed {
        renewed: renewed.iter().map(wire::allocation).collect(),
    }))
}

/// Fills a rendered pool's `cooling` count from this node's replica (already behind the read
/// barrier the pool read passed when it asked for one).
pub async fn with_cooling(state: &AppState, mut pool: api::Pool) -> Result<api::Pool, ApiError> {
    let cooling = state.ipam.cooling(&pool.name, Consistency::Local).await?;
    pool.stats.cooling = cooling.to_string();
    Ok(pool)
}
