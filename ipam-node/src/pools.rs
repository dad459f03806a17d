//! Second-round pool endpoints: create with settings, `PATCH`, ranges, next-free preview, and
//! the JSON translation of pool settings and network configuration.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipam_client::types as api;
use ipam_core::pools::{PoolSettings, PPM};
use ipam_core::validate::{check_name, parse_addr, parse_cidr, parse_reserved};
use ipam_core::{
    GatewayChoice, InputError, NetworkConfig, Op, PoolSpecV2, PoolUpdate, RangeSpec, Route,
};

use crate::api::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, Params};
use crate::wire;

/// Default and largest `count` of the preview.
const DEFAULT_COUNT: u64 = 1;

fn setting(field: &str, reason: impl Into<String>) -> InputError {
    InputError::InvalidSetting {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn addrs(list: &[String]) -> Result<Vec<IpAddr>, InputError> {
    list.iter().map(|a| parse_addr(a)).collect()
}

fn routes(list: &[api::Route]) -> Result<Vec<Route>, InputError> {
    list.iter()
        .map(|r| {
            Ok(Route {
                dst: parse_cidr(&r.dst)?,
                via: parse_addr(&r.via)?,
            })
        })
        .collect()
}

/// `max_utilization` in (0, 1] → parts per million (no floats reach `apply`).
fn ppm(n: &serde_json::Number) -> Result<u32, InputError> {
    let x = n
        .as_f64()
        .filter(|x| x.is_finite() && *x > 0.0 && *x <= 1.0)
        .ok_or_else(|| setting("max_utilization", format!("must be in (0, 1], got {n}")))?;
    // In (0, 1] the product is in (0, 1e6]: the cast cannot truncate.
    let p = (x * f64::from(PPM)).round() as u32;
    if p == 0 {
        return Err(setting("max_utilization", format!("{n} is below 1e-6")));
    }
    Ok(p)
}

fn gateway(g: &api::GatewayField) -> Result<GatewayChoice, InputError> {
    Ok(match g {
        api::GatewayField::Default => GatewayChoice::Default,
        api::GatewayField::None => GatewayChoice::None,
        api::GatewayField::Addr(a) => GatewayChoice::Addr(parse_addr(a)?),
    })
}

/// A create body → `CreatePool` when it carries only first-round fields (readable by every
/// release), `CreatePoolV3` for a prefix pool, else `CreatePoolV2`.
pub fn create_op(req: api::CreatePoolRequest) -> Result<Op, InputError> {
    let first_round = req.is_first_round();
    let d = PoolSettings::default();
    let settings = PoolSettings {
        frozen: req.frozen.unwrap_or(d.frozen),
        dns: addrs(&req.dns)?,
        mtu: req.mtu,
        routes: routes(&req.routes)?,
        domain: req.domain.clone(),
        default_ttl_seconds: req.default_ttl_seconds,
        reuse_cooldown_seconds: req
            .reuse_cooldown_seconds
            .unwrap_or(d.reuse_cooldown_seconds),
        weight: req.weight.unwrap_or(d.weight),
        max_utilization_ppm: req
            .max_utilization
            .as_ref()
            .map(ppm)
            .transpose()?
            .unwrap_or(PPM),
    };
    let delegation_prefix_len = req.delegation_prefix_len;
    let parent = req.parent.clone();
    let base = wire::pool_spec(req)?;
    Ok(if first_round {
        Op::CreatePool(base)
    } else if delegation_prefix_len.is_some() || parent.is_some() {
        Op::CreatePoolV3(Box::new(ipam_core::PoolSpecV3 {
            base,
            settings,
            delegation_prefix_len,
            parent,
        }))
    } else {
        Op::CreatePoolV2(Box::new(PoolSpecV2 { base, settings }))
    })
}

/// A `PATCH` body → the domain's update; immutable fields are refused.
pub fn update(req: api::UpdatePoolRequest) -> Result<PoolUpdate, InputError> {
    for (field, present) in [
        ("name", req.name.is_some()),
        ("cidr", req.cidr.is_some()),
        ("delegation_prefix_len", req.delegation_prefix_len.is_some()),
        ("parent", req.parent.is_some()),
    ] {
        if present {
            return Err(setting(field, "cannot be changed"));
        }
    }
    Ok(PoolUpdate {
        labels: req.labels,
        description: req.description,
        gateway: match req.gateway {
            None => None,
            Some(None) => Some(GatewayChoice::None),
            Some(Some(a)) => Some(GatewayChoice::Addr(parse_addr(&a)?)),
        },
        reserved: req
            .reserved
            .map(|r| r.iter().map(|e| parse_reserved(e)).collect())
            .transpose()?,
        dns: req.dns.map(|d| addrs(&d)).transpose()?,
        mtu: req.mtu,
        routes: req.routes.map(|r| routes(&r)).transpose()?,
        domain: req.domain,
        reuse_cooldown_seconds: req.reuse_cooldown_seconds,
        default_ttl_seconds: req.default_ttl_seconds,
        weight: req.weight,
        max_utilization_ppm: req.max_utilization.as_ref().map(ppm).transpose()?,
        frozen: req.frozen,
    })
}

/// The network configuration as the API renders it.
pub fn network(n: &NetworkConfig) -> api::Network {
    api::Network {
        prefix: format!("{}/{}", n.ip, n.prefix_len),
        gateway: n.gateway.map(|g| g.to_string()),
        dns: n.dns.iter().map(ToString::to_string).collect(),
        mtu: n.mtu,
        routes: n.routes.iter().map(route).collect(),
        domain: n.domain.clone(),
    }
}

fn route(r: &Route) -> api::Route {
    api::Route {
        dst: r.dst.to_string(),
        via: r.via.to_string(),
    }
}

/// A range as the API renders it.
pub fn range(r: &RangeSpec) -> api::PoolRange {
    api::PoolRange {
        cidr: r.cidr.to_string(),
        gateway: r.gateway.map(|g| g.to_string()),
    }
}

/// Fills the second-round fields of a rendered pool.
pub fn fill_pool(out: &mut api::Pool, p: &ipam_core::PoolInfo) {
    let s = &p.settings;
    out.revision = p.revision;
    out.ranges = p.ranges.iter().map(range).collect();
    out.frozen = s.frozen;
    out.dns = s.dns.iter().map(ToString::to_string).collect();
    out.mtu = s.mtu;
    out.routes = s.routes.iter().map(route).collect();
    out.domain = s.domain.clone();
    out.default_ttl_seconds = s.default_ttl_seconds;
    out.reuse_cooldown_seconds = s.reuse_cooldown_seconds;
    out.weight = s.weight;
    out.max_utilization = f64::from(s.max_utilization_ppm) / f64::from(PPM);
}

fn pool_response(status: StatusCode, p: &ipam_core::PoolInfo) -> Response {
    (status, Json(wire::pool(p))).into_response()
}

/// `POST /api/v1/pools`.
pub async fn create_pool(
    State(state): State<AppState>,
    params: Params,
    ApiJson(req): ApiJson<api::CreatePoolRequest>,
) -> Result<Response, ApiError> {
    params.finish()?;
    let pool = match create_op(req)? {
        Op::CreatePool(spec) => state.ipam.create_pool(spec).await?,
        Op::CreatePoolV2(spec) => state.ipam.create_pool_v2(*spec).await?,
        Op::CreatePoolV3(spec) => state.ipam.create_pool_v3(*spec).await?,
        other => {
            return Err(ApiError::InvalidArgument(format!(
                "unexpected op {other:?}"
            )))
        }
    };
    Ok(pool_response(StatusCode::CREATED, &pool))
}

/// `PATCH /api/v1/pools/{name}?revision=N`.
pub async fn update_pool(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    mut params: Params,
    ApiJson(req): ApiJson<api::UpdatePoolRequest>,
) -> Result<Response, ApiError> {
    let revision = params.take_u64("revision")?;
    params.finish()?;
    check_name(&name)?;
    let update = update(req)?;
    let pool = state.ipam.update_pool(&name, revision, update).await?;
    Ok(pool_response(StatusCode::OK, &pool))
}

/// `POST /api/v1/pools/{name}/ranges`.
pub async fn add_range(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    params: Params,
    ApiJson(req): ApiJson<api::AddRangeRequest>,
) -> Result<Response, ApiError> {
    params.finish()?;
    check_name(&name)?;
    let cidr = parse_cidr(&req.cidr)?;
    let gw = gateway(&req.gateway)?;
    let pool = state.ipam.add_range(&name, cidr, gw).await?;
    Ok(pool_response(StatusCode::CREATED, &pool))
}

/// `DELETE /api/v1/pools/{name}/ranges?cidr=C`.
pub async fn remove_range(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    mut params: Params,
) -> Result<Response, ApiError> {
    let cidr = params
        .take("cidr")?
        .ok_or_else(|| ApiError::InvalidArgument("query parameter cidr is required".into()))?;
    params.finish()?;
    check_name(&name)?;
    let cidr = parse_cidr(&cidr)?;
    let pool = state.ipam.remove_range(&name, cidr).await?;
    Ok(pool_response(StatusCode::OK, &pool))
}

/// `GET /api/v1/pools/{name}/next-free?count=N`.
pub async fn next_free(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    mut params: Params,
) -> Result<Json<api::NextFree>, ApiError> {
    let count = params.take_u64("count")?.unwrap_or(DEFAULT_COUNT);
    let consistency = params.consistency()?;
    params.finish()?;
    check_name(&name)?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let addresses = state.ipam.next_free(&name, count, consistency).await?;
    Ok(Json(api::NextFree {
        addresses: addresses.iter().map(ToString::to_string).collect(),
    }))
}

/// Per-pool gauges of the second round: how many ranges a pool has and whether it is frozen
/// (an operator alerting on a full pool wants to know both).
pub struct PoolGauges {
    ranges: prometheus::GaugeVec,
    frozen: prometheus::GaugeVec,
}

impl PoolGauges {
    /// Creates and registers the gauges.
    pub fn register(registry: &prometheus::Registry) -> Result<PoolGauges, prometheus::Error> {
        let ranges = prometheus::GaugeVec::new(
            prometheus::Opts::new("ipam_pool_ranges", "Ranges of the pool, the first included"),
            &["pool"],
        )?;
        let frozen = prometheus::GaugeVec::new(
            prometheus::Opts::new("ipam_pool_frozen", "1 while the pool is frozen, else 0"),
            &["pool"],
        )?;
        registry.register(Box::new(ranges.clone()))?;
        registry.register(Box::new(frozen.clone()))?;
        Ok(PoolGauges { ranges, frozen })
    }

    /// Replaces every value with those of `pools`.
    pub fn fill(&self, pools: &[ipam_core::PoolInfo]) {
        self.ranges.reset();
        self.frozen.reset();
        for p in pools {
            self.ranges
                .with_label_values(&[&p.name])
                .set(p.ranges.len() as f64);
            self.frozen
                .with_label_values(&[&p.name])
                .set(if p.settings.frozen { 1.0 } else { 0.0 });
        }
    }
}
