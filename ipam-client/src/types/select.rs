//! JSON bodies of choosing the pool (`../shared/api.md`, "Choosing the pool"):
//! `POST /api/v1/allocations` and the batch op `allocate_any`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Labels;

/// An address family as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressFamily {
    /// `"ipv4"`.
    Ipv4,
    /// `"ipv6"`.
    Ipv6,
}

/// `POST /api/v1/allocations` body: the node chooses the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateAnyRequest {
    /// Opaque owner, 1 to 253 bytes.
    pub owner: String,
    /// Label pairs the pool must carry; absent or empty: any address pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Labels,
    /// Only pools of this family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<AddressFamily>,
    /// Labels of the allocation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Lease length: 10 to 31,536,000 s, 0 for permanent; absent for the pool's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
}
