//! Plain domain values: time stamps, CIDRs, reserved entries, pool specs, allocations, stats.
//!
//! Everything here is serde-serialisable because it travels in raft log entries and RPC bodies
//! (postcard). postcard encodes enum variants by position: add variants only at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Identifier of a pool, assigned at creation from a counter in the state; never reused.
pub type PoolId = u32;

/// Labels on pools and allocations. A `BTreeMap` so that iteration (and therefore encoding)
/// order is deterministic on every replica.
pub type Labels = BTreeMap<String, String>;

/// Wall-clock time stamped on a log entry by the leader, in milliseconds since the Unix epoch.
///
/// The core never reads a clock: every time it records or compares comes from a `Stamp`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Stamp(pub u64);

/// Address family of a pool or address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    /// IPv4: addresses live in the low 32 bits of the `u128` address space.
    V4,
    /// IPv6.
    V6,
}

/// A network in canonical form: no host bits set. Construct with [`crate::validate::parse_cidr`] or
/// [`Cidr::new`], which enforce that invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cidr {
    pub(crate) network: IpAddr,
    pub(crate) prefix: u8,
}

/// One reserved entry of a pool, kept in the form the operator wrote it so it renders back the
/// same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reserved {
    /// A single address, `10.0.0.100`.
    Addr(IpAddr),
    /// An inclusive range, `10.0.0.2-10.0.0.9`.
    Range(IpAddr, IpAddr),
    /// A network, `10.0.0.128/28`.
    Cidr(Cidr),
}

/// How the gateway of a new pool is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GatewayChoice {
    /// The contract's default: the first usable address of an IPv4 network up to /30, none
    /// for IPv4 /31 and /32 and for every IPv6 network.
    #[default]
    Default,
    /// No gateway (`"gateway": null`).
    None,
    /// This address.
    Addr(IpAddr),
}

/// What an operator asks for when creating a pool. Validated by
/// [`crate::validate::check_pool_spec`] before it is proposed, and again (deterministically) in
/// `apply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// `[a-z0-9][a-z0-9-]{0,62}`.
    pub name: String,
    /// The pool's network.
    pub cidr: Cidr,
    /// Gateway choice.
    pub gateway: GatewayChoice,
    /// Never-allocatable entries, inside `cidr`.
    pub reserved: Vec<Reserved>,
    /// Free-form labels (limits in [`crate::validate`]).
    pub labels: Labels,
    /// Free-form description, at most 1 KiB.
    pub description: String,
}

/// Counts of a pool. `u128` because an IPv6 pool exceeds 2^64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Allocatable addresses: the CIDR's size minus network/broadcast (or the IPv6
    /// subnet-router anycast address), the gateway and reserved addresses.
    pub capacity: u128,
    /// Addresses currently allocated.
    pub allocated: u128,
}

impl PoolStats {
    /// `capacity - allocated`.
    pub fn free(&self) -> u128 {
        self.capacity.saturating_sub(self.allocated)
    }

    /// `allocated / capacity` in [0, 1]; 0 for an empty capacity.
    pub fn utilization(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.allocated as f64 / self.capacity as f64
        }
    }
}

/// A pool as queries and results return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// Internal id (key prefix of the pool's rows).
    pub id: PoolId,
    /// Name.
    pub name: String,
    /// Network.
    pub cidr: Cidr,
    /// The resolved gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Reserved entries as given.
    pub reserved: Vec<Reserved>,
    /// Labels.
    pub labels: Labels,
    /// Description.
    pub description: String,
    /// Stamp of the entry that created it.
    pub created_at: Stamp,
    /// Capacity and allocation counts.
    pub stats: PoolStats,
    /// 1 at creation, +1 on every change to the pool's own fields or ranges.
    pub revision: u64,
    /// Every range, the first being `cidr` and `gateway`.
    pub ranges: Vec<crate::pools::RangeSpec>,
    /// Second-round settings.
    pub settings: Box<crate::pools::PoolSettings>,
    /// A prefix pool's delegated block length; `None` for an address pool.
    pub delegation_prefix_len: Option<u8>,
    /// A child pool's parent prefix pool.
    pub parent: Option<String>,
}

/// One allocation instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The address.
    pub ip: IpAddr,
    /// Name of the pool it belongs to.
    pub pool: String,
    /// Opaque owner, for example `vm-42/eth0`.
    pub owner: String,
    /// Cluster-wide, never-repeating counter value of this allocation.
    pub generation: u64,
    /// Stamp of the entry that made it.
    pub allocated_at: Stamp,
    /// Labels given at allocation.
    pub labels: Labels,
    /// Lease length in seconds; `None` for a permanent allocation.
    pub ttl_seconds: Option<u32>,
    /// Log time at which the lease ends; `None` for a permanent allocation.
    pub expires_at: Option<Stamp>,
    /// Log time of the last renewal (`allocated_at` until the first one).
    pub renewed_at: Stamp,
    /// Interface configuration from the pool as it is now (filled in by whoever read the
    /// pool; `None` only for a pool that has none).
    pub network: Option<Box<crate::pools::NetworkConfig>>,
    /// The delegated block, for an allocation of a prefix pool (`ip` is its first address).
    pub prefix: Option<Cidr>,
}

/// One page of a pool's allocations in address order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationPage {
    /// At most `limit` allocations.
    pub allocations: Vec<Allocation>,
    /// Present exactly when more allocations follow: the last address of this page.
    pub next: Option<IpAddr>,
}

/// Which pool an address belongs to and who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressInfo {
    /// The pool whose CIDR contains the address, if any.
    pub pool: Option<String>,
    /// The allocation of the address, if allocated.
    pub allocation: Option<Allocation>,
    /// The prefix pool's block allocation that contains the address, if any.
    pub block: Option<Allocation>,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reserved::Addr(a) => write!(f, "{a}"),
            Reserved::Range(a, b) => write!(f, "{a}-{b}"),
            Reserved::Cidr(c) => write!(f, "{c}"),
        }
    }
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address width in bits: 32 or 128.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The address at position `n` of this family's space (IPv4 uses the low 32 bits; higher
    /// bits are ignored).
    pub fn addr(self, n: u128) -> IpAddr {
        match self {
            // Truncation is the documented contract: an IPv4 position lives in the low 32 bits.
            Family::V4 => IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
            Family::V6 => IpAddr::V6(std::net::Ipv6Addr::from(n)),
        }
    }

    /// One-byte tag used in storage keys (`4` or `6`).
    pub fn tag(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// The position of `ip` in its family's address space as a `u128` (IPv4 in the low 32 bits).
pub fn addr_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl fmt::Display for GatewayChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayChoice::Default => f.write_str("default"),
            GatewayChoice::None => f.write_str("none"),
            GatewayChoice::Addr(a) => write!(f, "{a}"),
        }
    }
}
