//! JSON bodies of the second-round pool calls: network configuration, `PATCH`, ranges,
//! preview (`../shared/api.md`, "Network configuration for the caller", "Updating pools,
//! ranges, freezing", "Preview").

use serde::{Deserialize, Deserializer, Serialize};

use super::{CreatePoolRequest, GatewayField, Labels};

/// A static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination network.
    pub dst: String,
    /// Next hop.
    pub via: String,
}

/// One range of a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRange {
    /// Network.
    pub cidr: String,
    /// Its gateway, or `null`.
    pub gateway: Option<String>,
}

/// What a caller needs to configure the interface of an allocated address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The address with its range's prefix length, `10.0.0.7/24`.
    pub prefix: String,
    /// The range's gateway, or `null`.
    pub gateway: Option<String>,
    /// DNS servers.
    pub dns: Vec<String>,
    /// MTU, or `null`.
    pub mtu: Option<u16>,
    /// Static routes.
    pub routes: Vec<Route>,
    /// Search domain, or `null`.
    pub domain: Option<String>,
}

/// A field that distinguishes absent (`None`), `null` (`Some(None)`) and a value.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /api/v1/pools/{name}` body: every field optional; absent fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePoolRequest {
    /// Replaces every label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Gateway of the first range: an address, or `null` for none.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<Option<String>>,
    /// Replaces every reserved entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<Vec<String>>,
    /// DNS servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<String>>,
    /// MTU; `null` removes it.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub mtu: Option<Option<u16>>,
    /// Static routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// Search domain; `null` removes it.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub domain: Option<Option<String>>,
    /// Reuse cooldown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_cooldown_seconds: Option<u32>,
    /// Default lease; `null` removes it.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_ttl_seconds: Option<Option<u32>>,
    /// Selection weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// Selection bound, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_utilization: Option<serde_json::Number>,
    /// Frozen flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<bool>,
    /// Immutable: present is 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<serde_json::Value>,
    /// Immutable: present is 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<serde_json::Value>,
    /// Immutable: present is 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_prefix_len: Option<serde_json::Value>,
    /// Immutable: present is 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<serde_json::Value>,
}

/// `POST /api/v1/pools/{name}/ranges` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRangeRequest {
    /// The range.
    pub cidr: String,
    /// Absent: the default gateway; `null`: none; a string: that address.
    #[serde(
        default,
        skip_serializing_if = "GatewayField::is_default",
        with = "super::gateway_field"
    )]
    pub gateway: GatewayField,
}

/// `GET /api/v1/pools/{name}/next-free` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextFree {
    /// What the next allocations without an address would receive, in order.
    pub addresses: Vec<String>,
}

impl CreatePoolRequest {
    /// Whether no second-round field is given (a first-round create body).
    pub fn is_first_round(&self) -> bool {
        self.dns.is_empty()
            && self.mtu.is_none()
            && self.routes.is_empty()
            && self.domain.is_none()
            && self.reuse_cooldown_seconds.is_none()
            && self.default_ttl_seconds.is_none()
            && self.weight.is_none()
            && self.max_utilization.is_none()
            && self.frozen.is_none()
            && self.delegation_prefix_len.is_none()
            && self.parent.is_none()
    }
}
