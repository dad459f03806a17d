//! Translation between the API's JSON types (`ipam_client::types`) and the domain's types
//! (`ipam_core`, `ipam_raft`). Parsing goes through the core's parsers; nothing here decides
//! whether a value is acceptable beyond turning text into a typed value.

use std::net::IpAddr;

use ipam_client::types as api;
use ipam_core::validate::{parse_addr, parse_cidr, parse_reserved};
use ipam_core::{Allocation, GatewayChoice, InputError, Op, OpOutput, PoolInfo, PoolSpec, Stamp};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 in UTC, millisecond precision (`2026-01-02T03:04:05.678Z`).
pub fn rfc3339(stamp: Stamp) -> String {
    let nanos = i128::from(stamp.0) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        // Only a stamp beyond year 9999 lands here; render it as the epoch rather than fail
        // a read.
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// `POST /api/v1/pools` body → the domain's spec.
pub fn pool_spec(req: api::CreatePoolRequest) -> Result<PoolSpec, InputError> {
    let cidr = parse_cidr(&req.cidr)?;
    let gateway = match req.gateway {
        api::GatewayField::Default => GatewayChoice::Default,
        api::GatewayField::None => GatewayChoice::None,
        api::GatewayField::Addr(a) => GatewayChoice::Addr(parse_addr(&a)?),
    };
    let reserved = req
        .reserved
        .iter()
        .map(|r| parse_reserved(r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PoolSpec {
        name: req.name,
        cidr,
        gateway,
        reserved,
        labels: req.labels,
        description: req.description.unwrap_or_default(),
    })
}

/// A pool as the API renders it.
pub fn pool(p: &PoolInfo) -> api::Pool {
    let mut out = api::Pool {
        name: p.name.clone(),
        cidr: p.cidr.to_string(),
        gateway: p.gateway.map(|g| g.to_string()),
        reserved: p.reserved.iter().map(ToString::to_string).collect(),
        labels: p.labels.clone(),
        description: p.description.clone(),
        created_at: rfc3339(p.created_at),
        stats: api::PoolStats {
            capacity: p.stats.capacity.to_string(),
            allocated: p.stats.allocated.to_string(),
            free: p.stats.free().to_string(),
            utilization: p.stats.utilization(),
            cooling: "0".to_string(),
        },
        revision: 0,
        ranges: Vec::new(),
        frozen: false,
        dns: Vec::new(),
        mtu: None,
        routes: Vec::new(),
        domain: None,
        default_ttl_seconds: None,
        reuse_cooldown_seconds: 0,
        weight: 0,
        max_utilization: 1.0,
        delegation_prefix_len: p.delegation_prefix_len,
        parent: p.parent.clone(),
    };
    crate::pools::fill_pool(&mut out, p);
    out
}

/// An allocation as the API renders it.
pub fn allocation(a: &Allocation) -> api::Allocation {
    api::Allocation {
        ip: a.ip.to_string(),
        pool: a.pool.clone(),
        owner: a.owner.clone(),
        generation: a.generation,
        allocated_at: rfc3339(a.allocated_at),
        labels: a.labels.clone(),
        ttl_seconds: a.ttl_seconds,
        expires_at: a.expires_at.map(rfc3339),
        renewed_at: rfc3339(a.renewed_at),
        network: a.network.as_deref().map(crate::pools::network),
        prefix: a.prefix.map(|c| c.to_string()),
    }
}

/// Released addresses as the API renders them.
pub fn released(ips: &[IpAddr]) -> api::Released {
    api::Released {
        released: ips.iter().map(ToString::to_string).collect(),
    }
}

/// An optional address parameter.
pub fn opt_addr(ip: Option<&str>) -> Result<Option<IpAddr>, InputError> {
    ip.map(parse_addr).transpose()
}

/// One batch op → the domain's op.
pub fn batch_op(op: api::BatchOp) -> Result<Op, InputError> {
    Ok(match op {
        api::BatchOp::CreatePool(req) => crate::pools::create_op(req)?,
        api::BatchOp::DeletePool { pool, force } => Op::DeletePool { pool, force },
        api::BatchOp::Allocate {
            pool,
            owner,
            ip,
            labels,
            ttl_seconds,
        } => Op::AllocateV2 {
            pool,
            owner,
            ip: opt_addr(ip.as_deref())?,
            labels,
            ttl_seconds,
        },
        api::BatchOp::Renew {
            pool,
            ip,
            generation,
            ttl_seconds,
        } => Op::Renew {
            pool,
            ip: parse_addr(&ip)?,
            generation,
            ttl_seconds,
        },
        api::BatchOp::Release {
            pool,
            ip,
            generation,
        } => Op::Release {
            pool,
            ip: parse_addr(&ip)?,
            generation,
        },
        api::BatchOp::ReleaseOwner { pool, owner } => Op::ReleaseOwner { pool, owner },
        api::BatchOp::AllocateAny(req) => Op::AllocateAny {
            owner: req.owner,
            selector: req.selector,
            family: req.family.map(crate::select::family),
            labels: req.labels,
            ttl_seconds: req.ttl_seconds,
        },
    })
}

/// One batch op's result: the pool, the allocation, `{"released": [...]}` or `{}`.
pub fn op_output(out: &OpOutput) -> serde_json::Value {
    let value = match out {
        OpOutput::PoolCreated(p) | OpOutput::PoolUpdated(p) => serde_json::to_value(pool(p)),
        OpOutput::Allocated { allocation: a, .. }
        | OpOutput::AllocatedV2 { allocation: a, .. }
        | OpOutput::Renewed(a) => serde_json::to_value(allocation(a)),
        OpOutput::RenewedOwner { renewed } => Ok(serde_json::json!({
            "renewed": renewed.iter().map(allocation).collect::<Vec<_>>()
        })),
        OpOutput::ReleasedOwner { released: ips } => serde_json::to_value(released(ips)),
        OpOutput::PoolDeleted { .. } | OpOutput::Released(_) => Ok(serde_json::json!({})),
        OpOutput::Reconciled(r) => serde_json::to_value(crate::drift::reconcile_response(r, false)),
        OpOutput::FeatureLevel(level) => Ok(serde_json::json!({ "feature_level": level })),
    };
    // Serialising these plain structs cannot fail (string keys, no non-finite floats except a
    // utilization the core keeps in [0, 1]).
    value.unwrap_or_else(|_| serde_json::json!({}))
}

/// The cluster status as the API renders it.
pub fn cluster_status(s: &ipam_raft::ClusterStatus) -> api::ClusterStatus {
    api::ClusterStatus {
        id: s.id,
        leader: s.leader,
        term: s.term,
        last_log_index: s.last_log_index,
        applied_index: s.applied_index,
        commit_index: s.committed_index,
        members: s
            .members
            .iter()
            .map(|m| api::Member {
                id: m.id,
                addr: m.addr.clone(),
                role: match m.role {
                    ipam_raft::MemberRole::Voter => api::MemberRole::Voter,
                    ipam_raft::MemberRole::Learner => api::MemberRole::Learner,
                },
                feature_level: m.feature_level,
            })
            .collect(),
        feature_level: s.feature_level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_render_as_rfc3339_utc() {
        assert_eq!(rfc3339(Stamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Stamp(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        let parsed = OffsetDateTime::parse(&rfc3339(Stamp(1_700_000_000_123)), &Rfc3339).unwrap();
        assert_eq!(parsed.unix_timestamp(), 1_700_000_000);
    }
}
