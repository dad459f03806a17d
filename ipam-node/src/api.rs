//! The HTTP router: every endpoint of the API contract, `/healthz`, `/readyz`, `/metrics`,
//! the mounted `/raft/*` routes, and the middleware around them (request id, tracing,
//! metrics, authentication, request timeout: `middleware.rs`).
//!
//! Handlers only translate: JSON and query text into domain values through the core's parsers
//! and stateless checks, the call into [`Ipam`], and the result back into JSON.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ipam_client::types as api;
use ipam_core::validate::{check_limit, check_name, check_owner, parse_addr};
use ipam_core::Labels;
use ipam_raft::Ipam;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, OptionalJson, Params};
use crate::metrics::Metrics;
pub use crate::middleware::bearer_matches;
use crate::{pools, wire};

/// Body limit of `/api/v1/*` requests (the contract's 1 MiB).
pub const API_BODY_LIMIT: usize = 1024 * 1024;

/// Default page size of allocation listings.
const DEFAULT_LIMIT: u64 = 100;

/// What every handler shares: one `Arc`, so that the per-request clones axum makes of the
/// state (handlers, extractors, the middleware) cost one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`], reached through its `Deref`.
#[derive(Clone)]
pub struct Shared {
    /// The embedded raft handle.
    pub ipam: Ipam,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Cluster token; `None`: no authentication.
    pub token: Option<Arc<str>>,
    /// Deadline of a whole `/api/v1/*` request.
    pub request_timeout: Duration,
    /// The node serves HTTPS: the `/ui` session cookie is `Secure`. `false` from [`AppState::new`].
    pub secure_cookies: bool,
    /// Interval of the keep-alive comments of `/api/v1/events/watch` (15 s from
    /// [`AppState::new`]; tests shorten it).
    pub sse_keep_alive: Duration,
    /// Set to `true` when the node begins shutting down: open event streams end then, so the
    /// drain does not wait for them.
    pub closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State for `ipam` with fresh metrics.
    pub fn new(
        ipam: Ipam,
        token: Option<String>,
        request_timeout: Duration,
    ) -> Result<AppState, crate::metrics::MetricsError> {
        Ok(AppState(Arc::new(Shared {
            ipam,
            metrics: Arc::new(Metrics::new()?),
            token: token.map(Arc::from),
            request_timeout,
            secure_cookies: false,
            sse_keep_alive: crate::events::KEEP_ALIVE,
            closing: Arc::new(tokio::sync::watch::channel(false).0),
        })))
    }

    /// This state with the `/ui` session cookie `Secure` (`on`) or not.
    #[must_use]
    pub fn with_secure_cookies(mut self, on: bool) -> AppState {
        Arc::make_mut(&mut self.0).secure_cookies = on;
        self
    }

    /// This state with `every` between the keep-alive comments of event streams.
    #[must_use]
    pub fn with_sse_keep_alive(mut self, every: Duration) -> AppState {
        Arc::make_mut(&mut self.0).sse_keep_alive = every;
        self
    }
}

/// The node's whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/api/v1/pools", post(create_pool).get(list_pools))
        .route(
            "/api/v1/pools/{name}",
            get(get_pool).delete(delete_pool).patch(pools::update_pool),
        )
        .route(
            "/api/v1/pools/{name}/ranges",
            post(pools::add_range).delete(pools::remove_range),
        )
        .route("/api/v1/pools/{name}/next-free", get(pools::next_free))
        .route(
            "/api/v1/pools/{name}/allocations",
            post(allocate).get(list_allocations).delete(release_owner),
        )
        .route("/api/v1/pools/{name}/allocations/{ip}", delete(release))
        .route(
            "/api/v1/pools/{name}/allocations/{ip}/renew",
            post(crate::leases::renew),
        )
        .route("/api/v1/leases/renew", post(crate::leases::renew_owner))
        .route("/api/v1/addresses/{ip}", get(address))
        .route(
            "/api/v1/addresses/{ip}/history",
            get(crate::events::history),
        )
        .route("/api/v1/events", get(crate::events::list))
        .route("/api/v1/events/watch", get(crate::events::watch))
        .route(
            "/api/v1/allocations",
            get(owner_allocations).post(crate::select::allocate_any),
        )
        .route("/api/v1/batch", post(batch))
        .route("/api/v1/cluster", get(cluster_status))
        .route("/api/v1/cluster/init", post(cluster_init))
        .route("/api/v1/cluster/learners", post(add_learner))
        .route("/api/v1/cluster/voters", post(change_voters))
        .route("/api/v1/cluster/voters/{id}", post(promote_voter))
        .route("/api/v1/cluster/members/{id}", delete(remove_member))
        .route("/api/v1/check", get(crate::check::check))
        .route("/api/v1/backup", get(crate::backup::backup))
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    let drift = Router::new()
        .route("/api/v1/drift", post(crate::drift::drift))
        .route("/api/v1/reconcile", post(crate::drift::reconcile))
        .layer(DefaultBodyLimit::max(crate::drift::DRIFT_BODY_LIMIT));
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.yaml", get(openapi));
    // `/raft/*` checks the token and limits bodies itself (64 MiB), and has its own timeouts.
    let raft = state.ipam.raft_router();
    Router::new()
        .merge(v1)
        .merge(drift)
        .merge(ops)
        .merge(crate::ui::routes())
        .with_state(state.clone())
        .merge(raft)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // One `layer` call: each one re-boxes every route, and axum clones a route's boxed
        // stack on every request.
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(crate::middleware::request_span)
                        // 503s during an election are expected and answered with a code; a
                        // 500 is logged at error level by the API middleware.
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn_with_state(
                    state,
                    crate::middleware::api,
                )),
        )
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

fn json_status<T: serde::Serialize>(status: StatusCode, body: T) -> Response {
    (status, Json(body)).into_response()
}

// ----- pools -----

async fn create_pool(
    State(state): State<AppState>,
    params: Params,
    ApiJson(req): ApiJson<api::CreatePoolRequest>,
) -> Result<Response, ApiError> {
    // Second-round fields pick the op; see `pools::create_op`.
    pools::create_pool(State(state), params, ApiJson(req)).await
}

async fn list_pools(
    State(state): State<AppState>,
    mut params: Params,
) -> Result<Json<api::PoolList>, ApiError> {
    let mut filter = Labels::new();
    for label in params.take_all("label") {
        let Some((k, v)) = label.split_once('=') else {
            return Err(ApiError::InvalidArgument(format!(
                "label filter {label:?} must be key=value"
            )));
        };
        filter.insert(k.to_string(), v.to_string());
    }
    let consistency = params.consistency()?;
    params.finish()?;
    let pools = state.ipam.pools(&filter, consistency).await?;
    let mut rendered = Vec::with_capacity(pools.len());
    for p in &pools {
        rendered.push(crate::leases::with_cooling(&state, wire::pool(p)).await?);
    }
    Ok(Json(api::PoolList { pools: rendered }))
}

async fn get_pool(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    mut params: Params,
) -> Result<Json<api::Pool>, ApiError> {
    let consistency = params.consistency()?;
    params.finish()?;
    check_name(&name)?;
    let pool = state.ipam.pool(&name, consistency).await?;
    Ok(Json(
        crate::leases::with_cooling(&state, wire::pool(&pool)).await?,
    ))
}

async fn delete_pool(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    mut params: Params,
) -> Result<StatusCode, ApiError> {
    let force = params.take_bool("force")?;
    params.finish()?;
    state.ipam.delete_pool(&name, force).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- allocations -----

async fn allocate(
    State(state): State<AppState>,
    ApiPath(pool): ApiPath<String>,
    params: Params,
    ApiJson(req): ApiJson<api::AllocateRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = allocate_inner(&state, pool.clone(), params, req).await;
    state.metrics.observe_allocation(started.elapsed());
    if let Err(e) = &result {
        let parts = e.parts();
        // Only a conflict proves the pool exists; any other failure may name an arbitrary
        // pool, which must not grow the label set.
        let pool_label = if parts.status == StatusCode::CONFLICT {
            pool.as_str()
        } else {
            ""
        };
        state
            .metrics
            .allocation_error(pool_label, parts.code.as_str());
    }
    result
}

async fn allocate_inner(
    state: &AppState,
    pool: String,
    params: Params,
    req: api::AllocateRequest,
) -> Result<Response, ApiError> {
    params.finish()?;
    let ip = wire::opt_addr(req.ip.as_deref())?;
    // `Ipam::allocate` validates the op before any lookup or proposal.
    let (allocation, existing) = state
        .ipam
        .allocate_lease(&pool, &req.owner, ip, req.labels, req.ttl_seconds)
        .await?;
    let status = if existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_status(status, wire::allocation(&allocation)))
}

async fn list_allocations(
    State(state): State<AppState>,
    ApiPath(pool): ApiPath<String>,
    mut params: Params,
) -> Result<Json<api::AllocationList>, ApiError> {
    let owner = params.take("owner")?;
    let after = wire::opt_addr(params.take("after")?.as_deref())?;
    let limit = params.take_u64("limit")?.unwrap_or(DEFAULT_LIMIT);
    let consistency = params.consistency()?;
    params.finish()?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    check_limit(limit)?;
    check_name(&pool)?;
    if let Some(owner) = &owner {
        check_owner(owner)?;
    }
    let page = state
        .ipam
        .allocations(&pool, owner.as_deref(), after, limit, consistency)
        .await?;
    Ok(Json(api::AllocationList {
        allocations: page.allocations.iter().map(wire::allocation).collect(),
        next: page.next.map(|ip| ip.to_string()),
    }))
}

async fn release(
    State(state): State<AppState>,
    ApiPath((pool, ip)): ApiPath<(String, String)>,
    mut params: Params,
) -> Result<StatusCode, ApiError> {
    let generation = params.take_u64("generation")?;
    params.finish()?;
    let ip = parse_addr(&ip)?;
    state.ipam.release(&pool, ip, generation).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn release_owner(
    State(state): State<AppState>,
    ApiPath(pool): ApiPath<String>,
    mut params: Params,
) -> Result<Json<api::Released>, ApiError> {
    let owner = params.require("owner")?;
    params.finish()?;
    let released = state.ipam.release_owner(&pool, &owner).await?;
    Ok(Json(wire::released(&released)))
}

async fn address(
    State(state): State<AppState>,
    ApiPath(ip): ApiPath<String>,
    mut params: Params,
) -> Result<Json<api::AddressInfo>, ApiError> {
    let consistency = params.consistency()?;
    params.finish()?;
    let ip = parse_addr(&ip)?;
    let info = state.ipam.address(ip, consistency).await?;
    Ok(Json(api::AddressInfo {
        pool: info.pool,
        allocation: info.allocation.as_ref().map(wire::allocation),
        block: info.block.as_ref().map(wire::allocation),
    }))
}

async fn owner_allocations(
    State(state): State<AppState>,
    mut params: Params,
) -> Result<Json<api::AllocationList>, ApiError> {
    let owner = params.require("owner")?;
    let consistency = params.consistency()?;
    params.finish()?;
    check_owner(&owner)?;
    let allocations = state.ipam.owner_allocations(&owner, consistency).await?;
    Ok(Json(api::AllocationList {
        allocations: allocations.iter().map(wire::allocation).collect(),
        next: None,
    }))
}

async fn batch(
    State(state): State<AppState>,
    params: Params,
    ApiJson(req): ApiJson<api::BatchRequest>,
) -> Result<Json<api::BatchResponse>, ApiError> {
    params.finish()?;
    let ops = req
        .ops
        .into_iter()
        .enumerate()
        .map(|(index, op)| {
            wire::batch_op(op).map_err(|e| ipam_core::BatchError {
                index,
                error: e.into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = state.ipam.batch(ops).await?;
    Ok(Json(api::BatchResponse {
        results: outputs.iter().map(wire::op_output).collect(),
    }))
}

// ----- cluster -----

fn status_json(state: &AppState) -> Json<api::ClusterStatus> {
    Json(wire::cluster_status(&state.ipam.status()))
}

async fn cluster_status(
    State(state): State<AppState>,
    mut params: Params,
) -> Result<Json<api::ClusterStatus>, ApiError> {
    // The status is always this node's own view; `consistency` is accepted for symmetry with
    // the other reads.
    params.consistency()?;
    params.finish()?;
    Ok(status_json(&state))
}

async fn cluster_init(
    State(state): State<AppState>,
    params: Params,
    OptionalJson(req): OptionalJson<api::InitRequest>,
) -> Result<Json<api::ClusterStatus>, ApiError> {
    params.finish()?;
    let members = req
        .members
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.id, m.addr))
        .collect();
    state.ipam.init(members).await?;
    Ok(status_json(&state))
}

async fn add_learner(
    State(state): State<AppState>,
    params: Params,
    ApiJson(req): ApiJson<api::NodeAddr>,
) -> Result<Json<api::ClusterStatus>, ApiError> {
    params.finish()?;
    if req.addr.is_empty() {
        return Err(ApiError::InvalidArgument(
            "addr must be host:port".to_string(),
        ));
    }
    state.ipam.add_learner(req.id, req.addr).await?;
    Ok(status_json(&state))
}

fn node_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::InvalidArgument(format!("node id must be a positive integer, got {text:?}"))
    })
}

async fn promote_voter(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Json<api::ClusterStatus>, ApiError> {
    params.finish()?;
    state.ipam.promote_voter(node_id(&id)?).await?;
    Ok(status_json(&state))
}

async fn change_voters(
    State(state): State<AppState>,
    params: Params,
    ApiJson(req): ApiJson<api::VotersRequest>,
) -> Result<Json<api::ClusterStatus>, ApiError> {
    params.finish()?;
    let ids: BTreeSet<u64> = req.ids.into_iter().collect();
    if ids.is_empty() {
        return Err(ApiError::InvalidArgument(
            "the voter set cannot be empty".to_string(),
        ));
    }
    state.ipam.change_voters(ids).await?;
    Ok(status_json(&state))
}

async fn remove_member(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Json<api::ClusterStatus>, ApiError> {
    params.finish()?;
    state.ipam.remove_member(node_id(&id)?).await?;
    Ok(status_json(&state))
}

// ----- operations -----

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// How long `/readyz` waits for this node to apply what was committed when it was asked.
const READY_WAIT: Duration = Duration::from_secs(1);

/// 200 when a leader is known and this node has applied everything it knew to be committed
/// when asked. Under a steady write load the apply index trails the commit index by a few
/// entries at any instant, so the check waits (briefly) for the commit index read at the call
/// rather than flapping to 503 on every in-flight entry.
async fn readyz(State(state): State<AppState>) -> Response {
    let now = state.ipam.status();
    let target = now.committed_index;
    let (ready, s) = if now.leader.is_none() {
        (false, now)
    } else {
        match state
            .ipam
            .wait_for(READY_WAIT, |s| {
                s.leader.is_some() && s.applied_index >= target
            })
            .await
        {
            Ok(s) => (true, s),
            Err(_) => (false, state.ipam.status()),
        }
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_status(
        status,
        serde_json::json!({
            "ready": ready,
            "leader": s.leader,
            "commit_index": s.committed_index,
            "applied_index": s.applied_index,
        }),
    )
}

/// The OpenAPI 3.0 description of this API.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        OPENAPI_YAML,
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render(&state.ipam).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
