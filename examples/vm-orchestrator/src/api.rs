//! The orchestrator's own HTTP API, served next to IPAM's `/raft/*` routes on one listener.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `POST /vms` | `{"name", "nics": [{"name"?, "pool"? \| "ip"? \| "selector"?: {k: v}}]}` | 201, the VM |
//! | `GET /vms` | | 200, `{"vms": [...]}` |
//! | `GET /vms/{name}` | | 200, the VM |
//! | `DELETE /vms/{name}` | | 200, `{"released": [ip…]}` |
//! | `POST /pools` | `{"name", "cidr"}` | 201, the pool |
//! | `POST /cluster/join` | `{"id", "addr"}` | 200 once the node is a voter |
//!
//! Errors are `{"error": {"code", "message"}}` with a 4xx/5xx status.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ipam_core::{validate, GatewayChoice, Labels, PoolSpec};
use ipam_raft::IpamError;
use serde::Deserialize;
use serde_json::json;

use crate::orchestrator::{NicRequest, NicTarget, Orchestrator, VmError};

/// The routes, on shared orchestrator state.
pub fn router(orchestrator: Arc<Orchestrator>) -> Router {
    Router::new()
        .route("/vms", post(create_vm).get(list_vms))
        .route("/vms/{name}", get(show_vm).delete(delete_vm))
        .route("/pools", post(create_pool))
        .route("/cluster/join", post(join))
        .with_state(orchestrator)
}

/// An error answer.
pub struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.1, "message": self.2}});
        (self.0, Json(body)).into_response()
    }
}

impl From<VmError> for ApiError {
    fn from(e: VmError) -> ApiError {
        let (status, code) = match &e {
            VmError::Invalid(_) | VmError::NoPool(_) => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
            VmError::Exists(_) => (StatusCode::CONFLICT, "vm_exists"),
            VmError::NotFound(_) => (StatusCode::NOT_FOUND, "vm_not_found"),
            VmError::PoolNotFound(_) => (StatusCode::NOT_FOUND, "pool_not_found"),
            VmError::NoMatchingPool(_) => (StatusCode::NOT_FOUND, "no_matching_pool"),
            VmError::AddressTaken { .. } => (StatusCode::CONFLICT, "address_in_use"),
            VmError::PoolExhausted(_) => (StatusCode::CONFLICT, "pool_exhausted"),
            VmError::Backend(_) => (StatusCode::BAD_GATEWAY, "backend_failed"),
            VmError::Ipam(e) => return ipam_error(e),
            VmError::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError(status, code, e.to_string())
    }
}

fn ipam_error(e: &IpamError) -> ApiError {
    let (status, code) = match e {
        IpamError::Op(op) => (StatusCode::CONFLICT, op.code().as_str()),
        IpamError::Batch(b) => (StatusCode::CONFLICT, b.error.code().as_str()),
        IpamError::NoLeader | IpamError::Overloaded | IpamError::ShuttingDown => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        IpamError::DeadlineExceeded { .. } => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    ApiError(status, code, e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NicBody {
    name: Option<String>,
    pool: Option<String>,
    ip: Option<IpAddr>,
    selector: Option<Labels>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateVm {
    name: String,
    nics: Vec<NicBody>,
}

async fn create_vm(
    State(o): State<Arc<Orchestrator>>,
    Json(body): Json<CreateVm>,
) -> Result<Response, ApiError> {
    let mut nics = Vec::with_capacity(body.nics.len());
    for (i, nic) in body.nics.into_iter().enumerate() {
        let target = match (nic.pool, nic.ip, nic.selector) {
            (Some(pool), None, None) => NicTarget::Pool(pool),
            (None, Some(ip), None) => NicTarget::Address(ip),
            (None, None, Some(selector)) => NicTarget::Selector(selector),
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    format!("NIC {i}: give exactly one of \"pool\", \"ip\" and \"selector\""),
                ))
            }
        };
        nics.push(NicRequest {
            name: nic.name.unwrap_or_else(|| format!("eth{i}")),
            target,
        });
    }
    let vm = o.create_vm(&body.name, &nics).await?;
    Ok((StatusCode::CREATED, Json(vm)).into_response())
}

async fn list_vms(State(o): State<Arc<Orchestrator>>) -> Result<Response, ApiError> {
    Ok(Json(json!({"vms": o.list().await?})).into_response())
}

async fn show_vm(
    State(o): State<Arc<Orchestrator>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(o.show(&name).await?).into_response())
}

async fn delete_vm(
    State(o): State<Arc<Orchestrator>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(json!({"released": o.delete_vm(&name).await?})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePool {
    name: String,
    cidr: String,
}

async fn create_pool(
    State(o): State<Arc<Orchestrator>>,
    Json(body): Json<CreatePool>,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, "invalid_argument", m);
    let cidr = validate::parse_cidr(&body.cidr).map_err(|e| bad(e.to_string()))?;
    let spec = PoolSpec {
        name: body.name,
        cidr,
        gateway: GatewayChoice::Default,
        reserved: vec![],
        labels: Labels::new(),
        description: String::new(),
    };
    validate::check_pool_spec(&spec).map_err(|e| bad(e.to_string()))?;
    let pool = o
        .ipam()
        .create_pool(spec)
        .await
        .map_err(|e| ipam_error(&e))?;
    let body = json!({"name": pool.name, "cidr": pool.cidr.to_string(),
        "gateway": pool.gateway, "capacity": pool.stats.capacity.to_string()});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    id: u64,
    addr: String,
}

async fn join(
    State(o): State<Arc<Orchestrator>>,
    Json(body): Json<Join>,
) -> Result<Response, ApiError> {
    let ipam = o.ipam();
    ipam.add_learner(body.id, body.addr)
        .await
        .map_err(|e| ipam_error(&e))?;
    ipam.promote_voter(body.id)
        .await
        .map_err(|e| ipam_error(&e))?;
    Ok(Json(json!({"id": body.id, "role": "voter"})).into_response())
}
