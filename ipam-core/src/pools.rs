//! Pool settings of the second round: network configuration handed to callers, updates,
//! extra ranges, freezing, and the multi-range shape of a pool.
//!
//! A pool's addresses are the union of its ranges (the first is the pool's `cidr`). Ranges of
//! all pools are disjoint, so one [`FreeIndex`] per pool spans all its ranges; the allocator
//! still takes the lowest free address of the first range, in the order ranges were added,
//! that has one ([`PoolShape::lowest_free`]: O(ranges × log intervals), ranges ≤ 64).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::alloc::FreeIndex;
use crate::error::{CreatePoolError, InputError, Unallocatable};
use crate::layout::{resolve_gateway, PoolLayout};
use crate::types::{addr_to_u128, Cidr, Family, GatewayChoice, Labels, PoolSpec, Reserved};

/// Most DNS servers of a pool.
pub const MAX_DNS: usize = 8;
/// Most routes of a pool.
pub const MAX_ROUTES: usize = 32;
/// Longest search domain, in bytes.
pub const MAX_DOMAIN: usize = 253;
/// Most ranges of a pool (the first included).
pub const MAX_RANGES: usize = 64;
/// Longest cooldown and default lease, in seconds (365 days).
pub const MAX_SECONDS: u32 = 31_536_000;
/// Shortest default lease, in seconds.
pub const MIN_TTL: u32 = 10;
/// Default selection weight.
pub const DEFAULT_WEIGHT: u16 = 100;
/// Highest selection weight.
pub const MAX_WEIGHT: u16 = 1000;
/// `max_utilization` of 1, in parts per million (integers keep `apply` free of floats).
pub const PPM: u32 = 1_000_000;

/// A static route handed to callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination network.
    pub dst: Cidr,
    /// Next hop.
    pub via: IpAddr,
}

/// One range of a pool as stored: its CIDR and resolved gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSpec {
    /// The range.
    pub cidr: Cidr,
    /// Its gateway, if any.
    pub gateway: Option<IpAddr>,
}

/// What an allocation's caller needs to configure the interface, computed from the pool as it
/// is when answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The address.
    pub ip: IpAddr,
    /// Prefix length of the range the address lies in.
    pub prefix_len: u8,
    /// That range's gateway.
    pub gateway: Option<IpAddr>,
    /// DNS servers.
    pub dns: Vec<IpAddr>,
    /// MTU.
    pub mtu: Option<u16>,
    /// Static routes.
    pub routes: Vec<Route>,
    /// Search domain.
    pub domain: Option<String>,
}

/// The pool settings added in the second round; the same fields on create, record and answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// Allocations without an address are refused, and the pool cannot be deleted.
    pub frozen: bool,
    /// DNS servers, at most 8.
    pub dns: Vec<IpAddr>,
    /// MTU: 576..=65535 (at least 1280 in an IPv6 pool).
    pub mtu: Option<u16>,
    /// Static routes, at most 32.
    pub routes: Vec<Route>,
    /// Search domain, at most 253 bytes.
    pub domain: Option<String>,
    /// Lease length of allocations that give none (None: permanent).
    pub default_ttl_seconds: Option<u32>,
    /// How long a released address cools for its last owner.
    pub reuse_cooldown_seconds: u32,
    /// Selection weight, 1..=1000.
    pub weight: u16,
    /// Selection bound on utilization, in parts per million, 1..=1,000,000.
    pub max_utilization_ppm: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            frozen: false,
            dns: Vec::new(),
            mtu: None,
            routes: Vec::new(),
            domain: None,
            default_ttl_seconds: None,
            reuse_cooldown_seconds: 0,
            weight: DEFAULT_WEIGHT,
            max_utilization_ppm: PPM,
        }
    }
}

/// Pool creation with every second-round field ([`crate::Op::CreatePoolV2`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpecV2 {
    /// The first-round fields.
    pub base: PoolSpec,
    /// The new settings.
    pub settings: PoolSettings,
}

/// Pool creation with the delegation of prefix pools ([`crate::Op::CreatePoolV3`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpecV3 {
    /// The first-round fields.
    pub base: PoolSpec,
    /// The second-round settings.
    pub settings: PoolSettings,
    /// Hand out aligned blocks of this prefix length instead of addresses: longer than the
    /// CIDR's prefix, at most 32 / 128, and at most 32 bits longer.
    pub delegation_prefix_len: Option<u8>,
    /// A child pool: the name of the prefix pool whose allocated block equals this CIDR.
    pub parent: Option<String>,
}

/// Checks a delegation length against the pool's CIDR.
pub fn check_delegation(cidr: Cidr, len: u8) -> Result<(), InputError> {
    let (prefix, width) = (cidr.prefix(), cidr.family().bits());
    if len <= prefix || len > width || len - prefix > 32 {
        return Err(setting(
            "delegation_prefix_len",
            format!(
                "must be longer than the pool's /{prefix}, at most {width} and at most 32 bits longer, got {len}"
            ),
        ));
    }
    Ok(())
}

/// A partial update of a pool: `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUpdate {
    /// Replaces every label.
    pub labels: Option<Labels>,
    /// New description.
    pub description: Option<String>,
    /// Gateway of the first range (`GatewayChoice::Default` recomputes the default).
    pub gateway: Option<GatewayChoice>,
    /// Replaces every reserved entry.
    pub reserved: Option<Vec<Reserved>>,
    /// DNS servers.
    pub dns: Option<Vec<IpAddr>>,
    /// MTU (`Some(None)` removes it).
    pub mtu: Option<Option<u16>>,
    /// Routes.
    pub routes: Option<Vec<Route>>,
    /// Search domain (`Some(None)` removes it).
    pub domain: Option<Option<String>>,
    /// Reuse cooldown.
    pub reuse_cooldown_seconds: Option<u32>,
    /// Default lease (`Some(None)` removes it).
    pub default_ttl_seconds: Option<Option<u32>>,
    /// Selection weight.
    pub weight: Option<u16>,
    /// Selection bound, ppm.
    pub max_utilization_ppm: Option<u32>,
    /// Frozen flag.
    pub frozen: Option<bool>,
}

impl PoolUpdate {
    /// Whether the update changes which addresses are allocatable.
    pub fn changes_layout(&self) -> bool {
        self.gateway.is_some() || self.reserved.is_some()
    }

    /// `settings` with this update's setting fields applied.
    pub fn apply_settings(&self, settings: &PoolSettings) -> PoolSettings {
        let mut s = settings.clone();
        if let Some(v) = &self.dns {
            s.dns = v.clone();
        }
        if let Some(v) = self.mtu {
            s.mtu = v;
        }
        if let Some(v) = &self.routes {
            s.routes = v.clone();
        }
        if let Some(v) = &self.domain {
            s.domain = v.clone();
        }
        if let Some(v) = self.reuse_cooldown_seconds {
            s.reuse_cooldown_seconds = v;
        }
        if let Some(v) = self.default_ttl_seconds {
            s.default_ttl_seconds = v;
        }
        if let Some(v) = self.weight {
            s.weight = v;
        }
        if let Some(v) = self.max_utilization_ppm {
            s.max_utilization_ppm = v;
        }
        if let Some(v) = self.frozen {
            s.frozen = v;
        }
        s
    }
}

fn setting(field: &str, reason: impl Into<String>) -> InputError {
    InputError::InvalidSetting {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Checks the settings of a pool of `family` without state.
pub fn check_settings(settings: &PoolSettings, family: Family) -> Result<(), InputError> {
    if settings.dns.len() > MAX_DNS {
        return Err(setting("dns", format!("at most {MAX_DNS} servers")));
    }
    if let Some(mtu) = settings.mtu {
        let min = if family == Family::V6 { 1280 } else { 576 };
        if mtu < min {
            return Err(setting(
                "mtu",
                format!("{mtu} is below {min} for an {family} pool"),
            ));
        }
    }
    if settings.routes.len() > MAX_ROUTES {
        return Err(setting("routes", format!("at most {MAX_ROUTES} routes")));
    }
    for r in &settings.routes {
        Cidr::new(r.dst.network(), r.dst.prefix())?;
        if Family::of(r.via) != r.dst.family() {
            return Err(setting(
                "routes",
                format!("route to {} via {} mixes address families", r.dst, r.via),
            ));
        }
    }
    if let Some(d) = &settings.domain {
        if d.is_empty() || d.len() > MAX_DOMAIN {
            return Err(setting(
                "domain",
                format!("must be 1 to {MAX_DOMAIN} bytes"),
            ));
        }
    }
    if let Some(ttl) = settings.default_ttl_seconds {
        if !(MIN_TTL..=MAX_SECONDS).contains(&ttl) {
            return Err(setting(
                "default_ttl_seconds",
                format!("must be {MIN_TTL} to {MAX_SECONDS}, got {ttl}"),
            ));
        }
    }
    if settings.reuse_cooldown_seconds > MAX_SECONDS {
        return Err(setting(
            "reuse_cooldown_seconds",
            format!("must be 0 to {MAX_SECONDS}"),
        ));
    }
    if !(1..=MAX_WEIGHT).contains(&settings.weight) {
        return Err(setting("weight", format!("must be 1 to {MAX_WEIGHT}")));
    }
    if !(1..=PPM).contains(&settings.max_utilization_ppm) {
        return Err(setting("max_utilization", "must be in (0, 1]"));
    }
    Ok(())
}

/// Every range of a pool with its layout, in the order they were added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolShape {
    ranges: Vec<PoolLayout>,
    /// Allocatable addresses of the empty pool over all ranges.
    pub capacity: u128,
}

/// Which range an entry `[lo, hi]` lies in entirely.
fn range_holding(ranges: &[RangeSpec], lo: IpAddr, hi: IpAddr) -> Option<usize> {
    ranges
        .iter()
        .position(|r| r.cidr.contains(lo) && r.cidr.contains(hi))
}

fn entry_bounds(entry: &Reserved) -> (IpAddr, IpAddr) {
    match entry {
        Reserved::Addr(a) => (*a, *a),
        Reserved::Range(a, b) => (*a, *b),
        Reserved::Cidr(c) => (c.network(), c.family().addr(c.last())),
    }
}

impl PoolShape {
    /// Builds the shape of ranges `ranges` (first = the pool's CIDR) with `reserved` entries,
    /// each of which must lie inside one range.
    pub fn build(
        ranges: &[RangeSpec],
        reserved: &[Reserved],
    ) -> Result<PoolShape, CreatePoolError> {
        let Some(first) = ranges.first() else {
            return Err(InputError::InvalidSetting {
                field: "ranges".into(),
                reason: "a pool has at least one range".into(),
            }
            .into());
        };
        let mut per_range: Vec<Vec<Reserved>> = vec![Vec::new(); ranges.len()];
        for entry in reserved {
            let (lo, hi) = entry_bounds(entry);
            match range_holding(ranges, lo, hi) {
                Some(i) => per_range[i].push(*entry),
                None => {
                    return Err(CreatePoolError::ReservedOutsideCidr {
                        entry: entry.to_string(),
                        cidr: first.cidr,
                    })
                }
            }
        }
        let mut layouts = Vec::with_capacity(ranges.len());
        let mut capacity: u128 = 0;
        for (r, res) in ranges.iter().zip(&per_range) {
            let layout = PoolLayout::build(r.cidr, r.gateway, res)?;
            capacity = capacity.saturating_add(layout.capacity);
            layouts.push(layout);
        }
        Ok(PoolShape {
            ranges: layouts,
            capacity,
        })
    }

    /// A prefix pool's block size (log2 of its addresses); `None` for an address pool.
    pub fn block_shift(&self) -> Option<u8> {
        self.ranges.first().and_then(|l| l.block_shift)
    }

    /// The shape of a pool record: a prefix pool's one delegating range, or every range.
    pub fn of_record(record: &crate::tables::PoolRecord) -> Result<PoolShape, CreatePoolError> {
        match record.delegation_prefix_len {
            Some(len) => Ok(PoolShape::single(PoolLayout::delegating(
                record.cidr,
                &record.reserved,
                len,
            )?)),
            None => PoolShape::build(&record.all_ranges(), &record.reserved),
        }
    }

    /// The layouts of every range, in the order added.
    pub fn ranges(&self) -> &[PoolLayout] {
        &self.ranges
    }

    /// The range that `pos` (of the pool's family) lies in.
    pub fn range_of(&self, pos: u128) -> Option<&PoolLayout> {
        self.ranges.iter().find(|l| l.start <= pos && pos <= l.end)
    }

    /// The range starting at `start`.
    pub fn range_starting(&self, start: u128) -> Option<&PoolLayout> {
        self.ranges.iter().find(|l| l.start == start)
    }

    /// Whether `ip` lies in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|l| l.cidr.contains(ip))
    }

    /// Why `ip` can never be allocated in this pool, or `None` when it can be.
    pub fn unallocatable(&self, ip: IpAddr) -> Option<Unallocatable> {
        let first = self.ranges.first()?;
        if Family::of(ip) != first.cidr.family() {
            return Some(Unallocatable::WrongFamily);
        }
        match self.range_of(addr_to_u128(ip)) {
            Some(l) => l.unallocatable(ip),
            None => Some(Unallocatable::OutsideCidr),
        }
    }

    /// The free index of the empty pool, spanning every range.
    pub fn initial_free(&self) -> FreeIndex {
        let mut free = match self.block_shift() {
            Some(shift) => FreeIndex::in_blocks(shift),
            None => FreeIndex::new(),
        };
        for l in &self.ranges {
            for (s, e) in l.initial_free().intervals() {
                free.insert_interval(s, e);
            }
        }
        free
    }

    /// The lowest free address of the first range (in the order added) that has one.
    pub fn lowest_free(&self, free: &FreeIndex) -> Option<u128> {
        self.ranges
            .iter()
            .find_map(|l| free.lowest_in(l.start, l.end))
    }

    /// Up to `n` free addresses in the order allocation hands them out.
    pub fn next_free(&self, free: &FreeIndex, n: usize) -> Vec<u128> {
        let mut out = Vec::with_capacity(n.min(1024));
        let unit = free.unit();
        for l in &self.ranges {
            for (s, e) in free.intervals_in(l.start, l.end) {
                let mut p = s;
                loop {
                    if out.len() == n {
                        return out;
                    }
                    out.push(p);
                    if p.saturating_add(unit - 1) >= e {
                        break;
                    }
                    p += unit;
                }
            }
        }
        out
    }
}

/// The ranges of a pool: its CIDR with its gateway, then the extra ones.
pub fn all_ranges(cidr: Cidr, gateway: Option<IpAddr>, extra: &[RangeSpec]) -> Vec<RangeSpec> {
    let mut v = Vec::with_capacity(1 + extra.len());
    v.push(RangeSpec { cidr, gateway });
    v.extend_from_slice(extra);
    v
}

/// Resolves the gateway of a new range, refusing an unusable one.
pub fn new_range(cidr: Cidr, gateway: GatewayChoice) -> Result<RangeSpec, CreatePoolError> {
    let cidr = Cidr::new(cidr.network(), cidr.prefix())?;
    Ok(RangeSpec {
        cidr,
        gateway: resolve_gateway(&cidr, gateway)?,
    })
}

impl PoolShape {
    /// The shape of a pool with one range.
    pub fn single(layout: PoolLayout) -> PoolShape {
        PoolShape {
            capacity: layout.capacity,
            ranges: vec![layout],
        }
    }
}
