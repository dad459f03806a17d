//! JSON bodies of the HTTP API v1 (`docs/api.md`), shared by the node, the CLI, the tests
//! and the benchmarks so the wire format is written down once.
//!
//! Addresses are strings, pool counts are decimal strings (an IPv6 pool exceeds 2^53), times
//! are RFC 3339 strings in UTC, generations, node ids, terms and indexes are integers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod drift;
pub use drift::{
    DriftReport, DriftRequest, MismatchedEntry, ObservedEntry, ReconcileRequest, ReconcileResponse,
    SkippedEntry, UnknownEntry,
};
mod pools;
mod select;
pub use pools::{AddRangeRequest, Network, NextFree, PoolRange, Route, UpdatePoolRequest};
mod events;
pub use events::{Event, EventList};
pub use select::{AddressFamily, AllocateAnyRequest};

/// Labels on pools and allocations.
pub type Labels = BTreeMap<String, String>;

/// `POST /api/v1/pools` body, and the `create_pool` batch op's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolRequest {
    /// `[a-z0-9][a-z0-9-]{0,62}`.
    pub name: String,
    /// Network, no host bits: `10.0.0.0/24`, `fd00::/64`.
    pub cidr: String,
    /// Absent: the default gateway; `null`: none; a string: that address.
    #[serde(
        default,
        skip_serializing_if = "GatewayField::is_default",
        with = "gateway_field"
    )]
    pub gateway: GatewayField,
    /// Addresses, inclusive ranges `a-b`, or CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// DNS servers (at most 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// MTU, 576–65,535 (at least 1,280 in an IPv6 pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Static routes (at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Search domain (at most 253 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// 0–31,536,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_cooldown_seconds: Option<u32>,
    /// 10–31,536,000; absent: permanent allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl_seconds: Option<u32>,
    /// 1–1,000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// In (0, 1] (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_utilization: Option<serde_json::Number>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<bool>,
    /// Make it a prefix pool handing out aligned blocks of this length (create only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_prefix_len: Option<u8>,
    /// Make it a child pool of this prefix pool: `cidr` must be one of its allocated blocks
    /// (create only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// The three states of the `gateway` field: absent, `null`, or an address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GatewayField {
    /// Field absent: the contract's default gateway.
    #[default]
    Default,
    /// `"gateway": null`: no gateway.
    None,
    /// `"gateway": "10.0.0.1"`.
    Addr(String),
}

impl GatewayField {
    pub(crate) fn is_default(&self) -> bool {
        matches!(self, GatewayField::Default)
    }
}

pub(crate) mod gateway_field {
    use super::GatewayField;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(g: &GatewayField, s: S) -> Result<S::Ok, S::Error> {
        match g {
            GatewayField::Default | GatewayField::None => s.serialize_none(),
            GatewayField::Addr(a) => s.serialize_some(a),
        }
    }

    // Only called when the field is present (absent → `default`), so `null` means "none".
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<GatewayField, D::Error> {
        Ok(match Option::<String>::deserialize(d)? {
            None => GatewayField::None,
            Some(a) => GatewayField::Addr(a),
        })
    }
}

/// Capacity and counts of a pool, as decimal strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Allocatable addresses.
    pub capacity: String,
    /// Allocated addresses.
    pub allocated: String,
    /// `capacity - allocated`.
    pub free: String,
    /// `allocated / capacity`, in [0, 1].
    pub utilization: f64,
    /// Free addresses still cooling after their release (absent from older nodes: "0").
    #[serde(default = "zero")]
    pub cooling: String,
}

fn zero() -> String {
    "0".to_string()
}

/// A pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Name.
    pub name: String,
    /// Network.
    pub cidr: String,
    /// Gateway, or `null`.
    pub gateway: Option<String>,
    /// Reserved entries as given.
    pub reserved: Vec<String>,
    /// Labels.
    pub labels: Labels,
    /// Description (empty when none was given).
    pub description: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Counts.
    pub stats: PoolStats,
    /// 1 at creation, +1 on every change (absent from first-round nodes: 0).
    #[serde(default)]
    pub revision: u64,
    /// Every range, the first being `cidr` and `gateway`.
    #[serde(default)]
    pub ranges: Vec<PoolRange>,
    /// Allocations without an address and deletion are refused.
    #[serde(default)]
    pub frozen: bool,
    /// DNS servers.
    #[serde(default)]
    pub dns: Vec<String>,
    /// MTU.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Static routes.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Search domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// Lease length of allocations that give none, or `null` (permanent).
    #[serde(default)]
    pub default_ttl_seconds: Option<u32>,
    /// Reuse cooldown.
    #[serde(default)]
    pub reuse_cooldown_seconds: u32,
    /// Selection weight.
    #[serde(default)]
    pub weight: u16,
    /// Selection bound on utilization, in (0, 1].
    #[serde(default)]
    pub max_utilization: f64,
    /// A prefix pool's delegated block length; `null` for an address pool.
    #[serde(default)]
    pub delegation_prefix_len: Option<u8>,
    /// A child pool's parent prefix pool; `null` otherwise.
    #[serde(default)]
    pub parent: Option<String>,
}

/// `GET /api/v1/pools` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolList {
    /// Pools by name.
    pub pools: Vec<Pool>,
}

/// `POST /api/v1/pools/{name}/allocations` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateRequest {
    /// Opaque owner, 1 to 253 bytes.
    pub owner: String,
    /// A specific address; absent for the lowest free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Lease length: 10 to 31,536,000 s, 0 for permanent; absent for the pool's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
}

/// `POST /api/v1/pools/{name}/allocations/{ip}/renew` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// Renew only if the allocation has this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// New lease length (0: permanent); absent for the lease's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
}

/// `POST /api/v1/leases/renew` body: an agent's heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewOwnerRequest {
    /// The owner whose leases are renewed, in every pool.
    pub owner: String,
}

/// `POST /api/v1/leases/renew` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewed {
    /// The renewed allocations.
    pub renewed: Vec<Allocation>,
}

/// An allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Address.
    pub ip: String,
    /// Pool name.
    pub pool: String,
    /// Owner.
    pub owner: String,
    /// Cluster-wide allocation counter value.
    pub generation: u64,
    /// RFC 3339, UTC.
    pub allocated_at: String,
    /// Labels.
    pub labels: Labels,
    /// Lease length in seconds; `null` when permanent.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// RFC 3339, UTC: when the lease ends; `null` when permanent.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// RFC 3339, UTC: the last renewal (`allocated_at` until the first).
    #[serde(default)]
    pub renewed_at: String,
    /// Interface configuration from the pool as it is now; `null` for a prefix pool's block.
    #[serde(default)]
    pub network: Option<Network>,
    /// A prefix pool's block (`10.42.3.0/24`); absent for an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// `GET /api/v1/pools/{name}/allocations` and `GET /api/v1/allocations` responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationList {
    /// Allocations in address order (by pool, then address, for the owner query).
    pub allocations: Vec<Allocation>,
    /// Present exactly when more follow: pass as `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `DELETE /api/v1/pools/{name}/allocations?owner=X` response and the `release_owner` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// Released addresses.
    pub released: Vec<String>,
}

/// `GET /api/v1/addresses/{ip}` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressInfo {
    /// The innermost pool whose CIDR contains the address, or `null`.
    pub pool: Option<String>,
    /// Its allocation, or `null`.
    pub allocation: Option<Allocation>,
    /// The prefix pool's block allocation containing the address, or `null`.
    #[serde(default)]
    pub block: Option<Allocation>,
}

/// One op of `POST /api/v1/batch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BatchOp {
    /// Create a pool.
    CreatePool(CreatePoolRequest),
    /// Delete a pool.
    DeletePool {
        /// Pool name.
        pool: String,
        /// Also drop its allocations.
        #[serde(default)]
        force: bool,
    },
    /// Allocate.
    Allocate {
        /// Pool name.
        pool: String,
        /// Owner.
        owner: String,
        /// Specific address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        /// Labels.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: Labels,
        /// Lease length (0: permanent); absent for the pool's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_seconds: Option<u32>,
    },
    /// Release an address.
    Release {
        /// Pool name.
        pool: String,
        /// Address.
        ip: String,
        /// Fence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
    },
    /// Release an owner's address.
    ReleaseOwner {
        /// Pool name.
        pool: String,
        /// Owner.
        owner: String,
    },
    /// Renew one allocation.
    Renew {
        /// Pool name.
        pool: String,
        /// Address.
        ip: String,
        /// Fence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
        /// New lease length (0: permanent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_seconds: Option<u32>,
    },
    /// Allocate in a pool the node chooses (`POST /api/v1/allocations`).
    AllocateAny(AllocateAnyRequest),
}

/// `POST /api/v1/batch` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1,000 ops.
    pub ops: Vec<BatchOp>,
}

/// `POST /api/v1/batch` response: one result per op, in order — the pool for `create_pool`,
/// the allocation for `allocate`, `{"released": [...]}` for `release_owner`, `{}` otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Results in op order.
    pub results: Vec<serde_json::Value>,
}

/// Role of a cluster member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Votes.
    Voter,
    /// Replicates without voting.
    Learner,
}

/// A cluster member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// `host:port`.
    pub addr: String,
    /// Voter or learner.
    pub role: MemberRole,
    /// The feature level the member reported to the answering node (`null`: not heard from).
    #[serde(default)]
    pub feature_level: Option<u32>,
}

/// `GET /api/v1/cluster` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node's id.
    pub id: u64,
    /// Leader's id, or `null`.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: u64,
    /// Last applied index.
    pub applied_index: u64,
    /// Commit index as this node knows it.
    #[serde(default)]
    pub commit_index: u64,
    /// Members by id.
    pub members: Vec<Member>,
    /// The cluster's feature level: the lowest among the members (absent from a node of
    /// release 0.1.0, which is level 1).
    #[serde(default = "level_1")]
    pub feature_level: u32,
}

fn level_1() -> u32 {
    1
}

/// A node to add: `POST /api/v1/cluster/learners` body and an `init` member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddr {
    /// Node id.
    pub id: u64,
    /// `host:port`.
    pub addr: String,
}

/// `POST /api/v1/cluster/init` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// Members; absent or empty: this node alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<NodeAddr>>,
}

/// `POST /api/v1/cluster/voters` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotersRequest {
    /// The new voter set.
    pub ids: Vec<u64>,
}

/// The error object of every non-2xx response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `{"code", "message", ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The contract's code.
    pub code: crate::ErrorCode,
    /// Human text.
    pub message: String,
    /// The failing op of a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// On `deadline_exceeded`: the write may still apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_have_committed: Option<bool>,
}
