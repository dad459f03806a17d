//! redb table definitions and key/value encodings of the core's tables.
//!
//! Keys are fixed-width big-endian so that byte order is numeric order: a range scan over
//! `core_allocations` walks one pool in address order. Values are postcard with a leading
//! format-version byte; an unknown version is [`StorageError::Corrupt`], never a panic.
//!
//! | table | key | value |
//! |---|---|---|
//! | `core_meta` | `b"state"` | [`MetaRecord`] |
//! | `core_pools` | pool id (u32 BE) | [`PoolRecord`] (version 3; 2 lacks the delegation, 1 = [`PoolRecordV1`]) |
//! | `core_pool_names` | name bytes | [`NameRecord`] |
//! | `core_ranges` | family tag (4 or 6, + [`CHILD_TAG`] for a child pool) ++ first address (16 bytes BE) | [`RangeRecord`] (one row per range of a pool) |
//! | `core_allocations` | pool id ++ address (16 bytes BE) | [`AllocationRecord`] |
//! | `core_owners` | pool id ++ owner bytes | address (`u128`) |
//! | `core_expiry` | expires_at (u64 BE) ++ pool id ++ address | `()` |
//! | `core_cooling` | pool id ++ released_at (u64 BE) ++ address | [`CoolingRecord`] |
//! | `core_events` | event id (u64 BE) | [`crate::events::EventRecord`] |
//! | `core_event_addresses` | family tag ++ address (16 bytes BE) ++ event id (u64 BE) | `()` |
//! | `core_requests`, `core_request_ids`, `core_request_keys` | see [`crate::requests`] | |

use std::net::IpAddr;

use redb::TableDefinition;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::StorageError;
use crate::pools::{NetworkConfig, PoolSettings, RangeSpec, Route};
use crate::types::{Cidr, Family, Labels, PoolId, Reserved, Stamp};

mod keys;
pub use keys::{
    allocation_key, cooling_key, decode_allocation_key, decode_cooling_key, decode_expiry_key,
    decode_pool_key, expiry_key, owner_key, pool_changed_key, pool_key,
};

/// A core table: byte keys, byte values.
pub type CoreTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Counters of the whole state.
pub const META: CoreTable = TableDefinition::new("core_meta");
/// Pool records by id.
pub const POOLS: CoreTable = TableDefinition::new("core_pools");
/// Pool ids by name; iterating it lists pools by name.
pub const POOL_NAMES: CoreTable = TableDefinition::new("core_pool_names");
/// Pool CIDRs by (family, first address): overlap checks and address lookups look at one
/// neighbour, O(log n).
pub const RANGES: CoreTable = TableDefinition::new("core_ranges");
/// Allocations by (pool id, address).
pub const ALLOCATIONS: CoreTable = TableDefinition::new("core_allocations");
/// Owner index: (pool id, owner) → address.
pub const OWNERS: CoreTable = TableDefinition::new("core_owners");

/// Leases by (expires_at, pool id, address): the due ones are a prefix scan.
pub const EXPIRY: CoreTable = TableDefinition::new("core_expiry");
/// Cooling addresses by (pool id, released_at, address): release order within a pool.
pub const COOLING: CoreTable = TableDefinition::new("core_cooling");
/// Events by id (see [`crate::events`]).
pub const EVENTS: CoreTable = TableDefinition::new("core_events");
/// Event ids by (address, id): an address's history is one range scan.
pub const EVENT_ADDRESSES: CoreTable = TableDefinition::new("core_event_addresses");

/// Every table the core owns, in digest and snapshot order. All keys and values are bytes:
/// fixed-width big-endian keys, postcard values with a leading format-version byte.
pub const TABLES: &[redb::TableDefinition<'static, &'static [u8], &'static [u8]>] = &[
    META,
    POOLS,
    POOL_NAMES,
    RANGES,
    ALLOCATIONS,
    OWNERS,
    EXPIRY,
    COOLING,
    EVENTS,
    EVENT_ADDRESSES,
    crate::requests::REQUESTS,
    crate::requests::REQUEST_IDS,
    crate::requests::REQUEST_KEYS,
];

/// The only key of [`META`].
pub const META_KEY: &[u8] = b"state";

/// Prefix of the [`META`] keys that hold a pool's last change: the prefix ++ pool id
/// (big-endian) → the log index of the entry that last changed the pool (its record or an
/// allocation), for a reconcile's `as_of`. A log position, not domain state: the digest skips
/// these rows, so a replica that ran a release without them for a while still compares equal.
pub const POOL_CHANGED_PREFIX: &[u8] = b"changed";

/// Key of the [`META`] row that holds the replicated feature level (`u32`, big-endian; absent:
/// level 1, the level of everything release 0.1.0 wrote). It moves only through
/// [`crate::Op::SetFeatureLevel`] entries, so every replica that applies the same log has the
/// same level at every index, whatever release first applied the older entries.
pub const FEATURE_LEVEL_KEY: &[u8] = b"feature_level";

/// Format version of the records that never changed shape (and of every record written by
/// release 0.1.0). A record that changes shape bumps its own [`Record::VERSION`].
pub const FORMAT_VERSION: u8 = 1;

/// A value stored in a core table, with its own format version.
///
/// Rules (see `docs/architecture.md`, "Formats"): every value is the version byte ++ postcard.
/// A record whose struct changes gets `VERSION + 1` and a [`Record::decode_older`] that turns
/// the older bytes into the new struct, so a data dir of an earlier release opens; bytes of a
/// version newer than this release knows are refused naming both versions, never misread.
pub trait Record: Serialize + DeserializeOwned {
    /// Version written in front of this record's values.
    const VERSION: u8 = FORMAT_VERSION;

    /// Decodes the postcard `body` of an older `version` (1..VERSION) of this record.
    fn decode_older(table: &'static str, version: u8, body: &[u8]) -> Result<Self, StorageError> {
        let _ = body;
        Err(StorageError::Corrupt {
            table,
            reason: format!(
                "format version {version} is not readable by this release (it writes {})",
                Self::VERSION
            ),
        })
    }
}

impl Record for u128 {}
impl Record for u64 {}

/// The state-wide counters (version 2: log time added).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    /// Generation of the last allocation made (0: none yet).
    pub generation: u64,
    /// Id the next pool gets.
    pub next_pool_id: PoolId,
    /// Log time: the largest entry stamp applied so far; never goes back.
    pub now: Stamp,
}

/// [`MetaRecord`] as release 0.1.0 wrote it.
#[derive(Deserialize)]
struct MetaRecordV1 {
    generation: u64,
    next_pool_id: PoolId,
}

/// A pool as stored (version 2: revision, ranges and the second-round settings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    /// Name.
    pub name: String,
    /// Network of the first range.
    pub cidr: Cidr,
    /// Resolved gateway of the first range.
    pub gateway: Option<IpAddr>,
    /// Reserved entries as given, each inside one range.
    pub reserved: Vec<Reserved>,
    /// Labels.
    pub labels: Labels,
    /// Description.
    pub description: String,
    /// Stamp of creation.
    pub created_at: Stamp,
    /// Allocatable addresses over all ranges (changes with ranges, gateway, reserved).
    pub capacity: u128,
    /// Current number of allocations.
    pub allocated: u128,
    /// 1 at creation, +1 on every change to the pool's own fields or ranges.
    pub revision: u64,
    /// Ranges after the first, in the order added.
    pub ranges: Vec<RangeSpec>,
    /// Allocations without an address and deletion are refused.
    pub frozen: bool,
    /// DNS servers handed to callers.
    pub dns: Vec<IpAddr>,
    /// MTU handed to callers.
    pub mtu: Option<u16>,
    /// Static routes handed to callers.
    pub routes: Vec<Route>,
    /// Search domain handed to callers.
    pub domain: Option<String>,
    /// Lease length of allocations that give none (None: permanent).
    pub default_ttl_seconds: Option<u32>,
    /// Cooldown of a released address for its last owner.
    pub reuse_cooldown_seconds: u32,
    /// Selection weight.
    pub weight: u16,
    /// Selection bound on utilization, in parts per million.
    pub max_utilization_ppm: u32,
    /// A prefix pool hands out aligned blocks of this prefix length (version 3).
    pub delegation_prefix_len: Option<u8>,
    /// A child pool: the prefix pool whose allocated block is this pool's CIDR (version 3).
    pub parent: Option<String>,
}

/// A pool as version 2 stored it: [`PoolRecord`] without `delegation_prefix_len`.
#[derive(Deserialize)]
struct PoolRecordV2 {
    name: String,
    cidr: Cidr,
    gateway: Option<IpAddr>,
    reserved: Vec<Reserved>,
    labels: Labels,
    description: String,
    created_at: Stamp,
    capacity: u128,
    allocated: u128,
    revision: u64,
    ranges: Vec<RangeSpec>,
    frozen: bool,
    dns: Vec<IpAddr>,
    mtu: Option<u16>,
    routes: Vec<Route>,
    domain: Option<String>,
    default_ttl_seconds: Option<u32>,
    reuse_cooldown_seconds: u32,
    weight: u16,
    max_utilization_ppm: u32,
}

impl From<PoolRecordV2> for PoolRecord {
    fn from(o: PoolRecordV2) -> PoolRecord {
        PoolRecord {
            name: o.name,
            cidr: o.cidr,
            gateway: o.gateway,
            reserved: o.reserved,
            labels: o.labels,
            description: o.description,
            created_at: o.created_at,
            capacity: o.capacity,
            allocated: o.allocated,
            revision: o.revision,
            ranges: o.ranges,
            frozen: o.frozen,
            dns: o.dns,
            mtu: o.mtu,
            routes: o.routes,
            domain: o.domain,
            default_ttl_seconds: o.default_ttl_seconds,
            reuse_cooldown_seconds: o.reuse_cooldown_seconds,
            weight: o.weight,
            max_utilization_ppm: o.max_utilization_ppm,
            delegation_prefix_len: None,
            parent: None,
        }
    }
}

/// A pool as release 0.1.0 stored it (version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecordV1 {
    /// Name.
    pub name: String,
    /// Network.
    pub cidr: Cidr,
    /// Resolved gateway.
    pub gateway: Option<IpAddr>,
    /// Reserved entries as given.
    pub reserved: Vec<Reserved>,
    /// Labels.
    pub labels: Labels,
    /// Description.
    pub description: String,
    /// Stamp of creation.
    pub created_at: Stamp,
    /// Allocatable addresses, fixed at creation.
    pub capacity: u128,
    /// Current number of allocations.
    pub allocated: u128,
}

/// What a pool name resolves to: enough for the owner lookup to render an address without
/// reading the pool record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    /// The pool.
    pub pool: PoolId,
    /// Its address family.
    pub family: Family,
}

/// Where a pool's CIDR ends and which pool it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRecord {
    /// The pool.
    pub pool: PoolId,
    /// Position of the CIDR's last address.
    pub last: u128,
}

/// An allocation as stored (its pool and address are in the key). Version 2 adds the lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    /// Owner.
    pub owner: String,
    /// Generation.
    pub generation: u64,
    /// Stamp of the entry that made it.
    pub allocated_at: Stamp,
    /// Labels.
    pub labels: Labels,
    /// Lease length; `None`: permanent.
    pub ttl_seconds: Option<u32>,
    /// End of the lease (log time); `None`: permanent.
    pub expires_at: Option<Stamp>,
    /// Log time of the last renewal.
    pub renewed_at: Stamp,
}

/// [`AllocationRecord`] as release 0.1.0 wrote it: always permanent.
#[derive(Deserialize)]
struct AllocationRecordV1 {
    owner: String,
    generation: u64,
    allocated_at: Stamp,
    labels: Labels,
}

/// An address cooling after its release (pool, time and address are in the key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoolingRecord {
    /// Who held it last: the one owner that may have it back while it cools.
    pub owner: String,
}

/// Encodes `value` as its version byte ++ postcard into `buf` (cleared first).
pub fn encode_into<T: Record>(buf: &mut Vec<u8>, value: &T) -> Result<(), StorageError> {
    buf.clear();
    buf.push(T::VERSION);
    // postcard's std writer appends to the Vec; encoding plain data cannot fail, but a
    // failure is reported rather than assumed away.
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(value, taken).map_err(|e| StorageError::Corrupt {
        table: "encode",
        reason: e.to_string(),
    })?;
    Ok(())
}

/// Encodes `value` as its version byte ++ postcard.
pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::new();
    encode_into(&mut buf, value)?;
    Ok(buf)
}

/// Decodes a value of `table`: its own version directly, an older one through
/// [`Record::decode_older`], a newer one is refused naming both versions.
pub fn decode<T: Record>(table: &'static str, bytes: &[u8]) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&v, rest)) if v == T::VERSION => decode_body(table, rest),
        Some((&v, rest)) if v >= 1 && v < T::VERSION => T::decode_older(table, v, rest),
        Some((v, _)) => Err(StorageError::Corrupt {
            table,
            reason: format!(
                "format version {v} is newer than this release understands (at most {})",
                T::VERSION
            ),
        }),
        None => Err(StorageError::Corrupt {
            table,
            reason: "empty value".to_string(),
        }),
    }
}

/// Encodes a value that is not a core table's record (raft's log entries, vote, snapshot
/// metadata) as [`FORMAT_VERSION`] ++ postcard. Such values evolve only by the append-only enum
/// rule, so they keep version 1; a shape change would need a [`Record`] of its own.
pub fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_extend(value, vec![FORMAT_VERSION]).map_err(|e| StorageError::Corrupt {
        table: "encode",
        reason: e.to_string(),
    })
}

/// Decodes what [`encode_value`] wrote; another version byte is refused naming both.
pub fn decode_value<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => decode_body(table, rest),
        Some((v, _)) => Err(StorageError::Corrupt {
            table,
            reason: format!(
                "format version {v} is not readable by this release (it reads {FORMAT_VERSION})"
            ),
        }),
        None => Err(StorageError::Corrupt {
            table,
            reason: "empty value".to_string(),
        }),
    }
}

/// Decodes a postcard body (no version byte), checking that nothing trails. For
/// [`Record::decode_older`] implementations.
pub fn decode_body<T: DeserializeOwned>(
    table: &'static str,
    body: &[u8],
) -> Result<T, StorageError> {
    let (value, trailing) = postcard::take_from_bytes(body).map_err(|e| StorageError::Corrupt {
        table,
        reason: e.to_string(),
    })?;
    if trailing.is_empty() {
        Ok(value)
    } else {
        Err(StorageError::Corrupt {
            table,
            reason: format!("{} trailing bytes", trailing.len()),
        })
    }
}

/// Added to the family tag of a child pool's [`RANGES`] key: a child lies inside its parent's
/// block, so it is kept apart from the disjoint top-level ranges (an address lookup asks the
/// child ranges first: the innermost pool).
pub const CHILD_TAG: u8 = 0x80;

/// The [`RANGES`] key tag of a pool's ranges.
pub fn range_tag(record: &PoolRecord) -> u8 {
    let tag = record.cidr.family().tag();
    if record.parent.is_some() {
        tag | CHILD_TAG
    } else {
        tag
    }
}

/// Key of [`RANGES`].
pub fn range_key(family_tag: u8, first: u128) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = family_tag;
    key[1..].copy_from_slice(&first.to_be_bytes());
    key
}

impl PoolRecord {
    /// The pool as queries return it.
    pub fn info(&self, id: PoolId) -> crate::types::PoolInfo {
        crate::types::PoolInfo {
            id,
            name: self.name.clone(),
            cidr: self.cidr,
            gateway: self.gateway,
            reserved: self.reserved.clone(),
            labels: self.labels.clone(),
            description: self.description.clone(),
            created_at: self.created_at,
            stats: crate::types::PoolStats {
                capacity: self.capacity,
                allocated: self.allocated,
            },
            revision: self.revision,
            ranges: self.all_ranges(),
            settings: Box::new(self.settings()),
            delegation_prefix_len: self.delegation_prefix_len,
            parent: self.parent.clone(),
        }
    }
}

impl Record for MetaRecord {
    const VERSION: u8 = 2;

    fn decode_older(table: &'static str, version: u8, body: &[u8]) -> Result<Self, StorageError> {
        match version {
            1 => decode_body::<MetaRecordV1>(table, body).map(|old| MetaRecord {
                generation: old.generation,
                next_pool_id: old.next_pool_id,
                now: Stamp(0),
            }),
            _ => Err(unreadable(table, version)),
        }
    }
}
impl Record for PoolRecord {
    const VERSION: u8 = 3;

    fn decode_older(table: &'static str, version: u8, body: &[u8]) -> Result<Self, StorageError> {
        match version {
            1 => decode_body::<PoolRecordV1>(table, body).map(PoolRecord::from_v1),
            2 => decode_body::<PoolRecordV2>(table, body).map(PoolRecord::from),
            _ => Err(StorageError::Corrupt {
                table,
                reason: format!("pool record format version {version} is unknown"),
            }),
        }
    }
}

impl PoolRecord {
    /// A version-1 record with every new field at its default.
    pub fn from_v1(old: PoolRecordV1) -> PoolRecord {
        let d = PoolSettings::default();
        PoolRecord {
            name: old.name,
            cidr: old.cidr,
            gateway: old.gateway,
            reserved: old.reserved,
            labels: old.labels,
            description: old.description,
            created_at: old.created_at,
            capacity: old.capacity,
            allocated: old.allocated,
            revision: 1,
            ranges: Vec::new(),
            frozen: d.frozen,
            dns: d.dns,
            mtu: d.mtu,
            routes: d.routes,
            domain: d.domain,
            default_ttl_seconds: d.default_ttl_seconds,
            reuse_cooldown_seconds: d.reuse_cooldown_seconds,
            weight: d.weight,
            max_utilization_ppm: d.max_utilization_ppm,
            delegation_prefix_len: None,
            parent: None,
        }
    }

    /// The second-round settings.
    pub fn settings(&self) -> PoolSettings {
        PoolSettings {
            frozen: self.frozen,
            dns: self.dns.clone(),
            mtu: self.mtu,
            routes: self.routes.clone(),
            domain: self.domain.clone(),
            default_ttl_seconds: self.default_ttl_seconds,
            reuse_cooldown_seconds: self.reuse_cooldown_seconds,
            weight: self.weight,
            max_utilization_ppm: self.max_utilization_ppm,
        }
    }

    /// Replaces the second-round settings.
    pub fn set_settings(&mut self, s: PoolSettings) {
        self.frozen = s.frozen;
        self.dns = s.dns;
        self.mtu = s.mtu;
        self.routes = s.routes;
        self.domain = s.domain;
        self.default_ttl_seconds = s.default_ttl_seconds;
        self.reuse_cooldown_seconds = s.reuse_cooldown_seconds;
        self.weight = s.weight;
        self.max_utilization_ppm = s.max_utilization_ppm;
    }

    /// Every range, the first being `cidr` and `gateway`.
    pub fn all_ranges(&self) -> Vec<RangeSpec> {
        crate::pools::all_ranges(self.cidr, self.gateway, &self.ranges)
    }

    /// The interface configuration of `ip` in this pool as it is now; `None` when `ip` lies
    /// in none of its ranges.
    pub fn network_for(&self, ip: IpAddr) -> Option<Box<NetworkConfig>> {
        if self.delegation_prefix_len.is_some() {
            // A delegated block is not an interface address.
            return None;
        }
        let range = std::iter::once(RangeSpec {
            cidr: self.cidr,
            gateway: self.gateway,
        })
        .chain(self.ranges.iter().copied())
        .find(|r| r.cidr.contains(ip))?;
        Some(Box::new(NetworkConfig {
            ip,
            prefix_len: range.cidr.prefix(),
            gateway: range.gateway,
            dns: self.dns.clone(),
            mtu: self.mtu,
            routes: self.routes.clone(),
            domain: self.domain.clone(),
        }))
    }
}
impl Record for NameRecord {}
impl Record for RangeRecord {}
impl Record for AllocationRecord {
    const VERSION: u8 = 2;

    fn decode_older(table: &'static str, version: u8, body: &[u8]) -> Result<Self, StorageError> {
        match version {
            1 => decode_body::<AllocationRecordV1>(table, body).map(|old| AllocationRecord {
                owner: old.owner,
                generation: old.generation,
                allocated_at: old.allocated_at,
                labels: old.labels,
                ttl_seconds: None,
                expires_at: None,
                renewed_at: old.allocated_at,
            }),
            _ => Err(unreadable(table, version)),
        }
    }
}
impl Record for CoolingRecord {}
impl Record for () {}

fn unreadable(table: &'static str, version: u8) -> StorageError {
    StorageError::Corrupt {
        table,
        reason: format!("format version {version} has no decoder"),
    }
}

/// A stored value in the form this release writes it: a record an earlier release wrote is
/// decoded and re-encoded, so the digest of a replica that kept an older release's rows equals
/// that of one that replayed the same log (or installed a newer snapshot).
pub fn canonical_value<'a>(
    table: &str,
    value: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, StorageError> {
    use std::borrow::Cow;
    let current = |v: u8| value.first() == Some(&v);
    Ok(match table {
        "core_allocations" if !current(AllocationRecord::VERSION) => Cow::Owned(encode(
            &decode::<AllocationRecord>("core_allocations", value)?,
        )?),
        "core_meta" if !current(MetaRecord::VERSION) => {
            Cow::Owned(encode(&decode::<MetaRecord>("core_meta", value)?)?)
        }
        "core_pools" if !current(PoolRecord::VERSION) => {
            Cow::Owned(encode(&decode::<PoolRecord>("core_pools", value)?)?)
        }
        _ => Cow::Borrowed(value),
    })
}

impl AllocationRecord {
    /// The allocation at `ip` of `pool` as queries and results return it: with its lease and
    /// the pool's interface configuration as it is now.
    pub fn into_allocation(self, pool: &PoolRecord, ip: IpAddr) -> crate::types::Allocation {
        crate::types::Allocation {
            ip,
            pool: pool.name.clone(),
            owner: self.owner,
            generation: self.generation,
            allocated_at: self.allocated_at,
            labels: self.labels,
            ttl_seconds: self.ttl_seconds,
            expires_at: self.expires_at,
            renewed_at: self.renewed_at,
            network: pool.network_for(ip),
            prefix: pool
                .delegation_prefix_len
                .and_then(|len| Cidr::new(ip, len).ok()),
        }
    }
}

#[cfg(test)]
mod tests;
