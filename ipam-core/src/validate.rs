//! Stateless input checks and parsers. The edge (HTTP, embedded client) runs them so bad
//! input is refused before anything is proposed; `apply` runs them again so a malformed
//! command in the log is a deterministic error result, never a panic.

use std::net::IpAddr;

use crate::command::BatchError;
use crate::command::{Command, Op};
use crate::error::{
    AllocateError, CreatePoolError, InputError, OpError, ReconcileError, ReleaseError,
    UpdatePoolError,
};
use crate::layout::{resolve_gateway, PoolLayout};
use crate::pools::{check_settings, PoolSettings, PoolUpdate};
use crate::types::{addr_to_u128, Cidr, Family, Labels, PoolSpec, Reserved};

/// Most labels on a pool or allocation.
pub const MAX_LABELS: usize = 64;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 253;
/// Longest pool description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Most reserved entries of a pool.
pub const MAX_RESERVED: usize = 1000;
/// Longest owner, in bytes.
pub const MAX_OWNER: usize = 253;
/// Longest pool name, in bytes.
pub const MAX_NAME: usize = 63;
/// Most ops in a batch.
pub const MAX_BATCH: usize = 1000;
/// Largest page of a listing.
pub const MAX_PAGE: usize = 1000;

/// Parses `a.b.c.d/n` or `x::/n`; rejects host bits (naming the network meant), bare
/// addresses and netmask forms.
pub fn parse_cidr(input: &str) -> Result<Cidr, InputError> {
    let invalid = |reason: &str| InputError::InvalidCidr {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let Some((addr, prefix)) = input.split_once('/') else {
        return Err(invalid("expected address/prefix, for example 10.0.0.0/24"));
    };
    let network: IpAddr = addr.parse().map_err(|_| invalid("invalid address"))?;
    // `u8::from_str` accepts a leading `+`; a netmask like 255.255.255.0 must not slip through
    // either, so only plain decimal digits count.
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "the prefix must be a decimal length (netmask form is not accepted)",
        ));
    }
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| invalid("prefix length out of range"))?;
    Cidr::new(network, prefix).map_err(|e| match e {
        InputError::HostBitsSet { network, .. } => InputError::HostBitsSet {
            input: input.to_string(),
            network,
        },
        InputError::InvalidCidr { reason, .. } => InputError::InvalidCidr {
            input: input.to_string(),
            reason,
        },
        other => other,
    })
}

/// Parses an IPv4 or IPv6 address.
pub fn parse_addr(input: &str) -> Result<IpAddr, InputError> {
    input.parse().map_err(|_| InputError::InvalidAddress {
        input: input.to_string(),
    })
}

/// Parses a reserved entry: an address, an inclusive range `a-b`, or a CIDR.
pub fn parse_reserved(input: &str) -> Result<Reserved, InputError> {
    let invalid = |reason: &str| InputError::InvalidReserved {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if input.contains('/') {
        return parse_cidr(input).map(Reserved::Cidr);
    }
    if let Some((a, b)) = input.split_once('-') {
        let a: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| invalid("range start is not an IP address"))?;
        let b: IpAddr = b
            .trim()
            .parse()
            .map_err(|_| invalid("range end is not an IP address"))?;
        let entry = Reserved::Range(a, b);
        check_reserved(&entry).map_err(|reason| invalid(&reason))?;
        return Ok(entry);
    }
    input
        .parse()
        .map(Reserved::Addr)
        .map_err(|_| invalid("expected an address, a range a-b, or a CIDR"))
}

/// Checks the shape of a reserved entry independently of any pool; the reason on failure.
fn check_reserved(entry: &Reserved) -> Result<(), String> {
    match entry {
        Reserved::Addr(_) => Ok(()),
        Reserved::Range(a, b) => {
            if Family::of(*a) != Family::of(*b) {
                Err("range ends are of different address families".to_string())
            } else if addr_to_u128(*a) > addr_to_u128(*b) {
                Err("range start is after its end".to_string())
            } else {
                Ok(())
            }
        }
        Reserved::Cidr(c) => Cidr::new(c.network, c.prefix)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// Checks a pool name against `[a-z0-9][a-z0-9-]{0,62}`.
pub fn check_name(name: &str) -> Result<(), InputError> {
    let bytes = name.as_bytes();
    let ok = matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.len() <= MAX_NAME
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InputError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// Checks an owner: 1 to 253 bytes.
pub fn check_owner(owner: &str) -> Result<(), InputError> {
    if owner.is_empty() || owner.len() > MAX_OWNER {
        Err(InputError::InvalidOwner { len: owner.len() })
    } else {
        Ok(())
    }
}

/// Checks label limits: at most 64, keys 1..=63 bytes, values ≤ 253 bytes.
pub fn check_labels(labels: &Labels) -> Result<(), InputError> {
    if labels.len() > MAX_LABELS {
        return Err(InputError::TooManyLabels {
            count: labels.len(),
        });
    }
    for (key, value) in labels {
        if key.is_empty() || key.len() > MAX_LABEL_KEY {
            return Err(InputError::InvalidLabelKey { key: key.clone() });
        }
        if value.len() > MAX_LABEL_VALUE {
            return Err(InputError::LabelValueTooLong {
                key: key.clone(),
                len: value.len(),
            });
        }
    }
    Ok(())
}

/// Checks a page limit: 1 to 1000.
pub fn check_limit(limit: usize) -> Result<(), InputError> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(InputError::InvalidLimit {
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
        })
    }
}

/// Checks a list of reserved entries without a pool: at most 1,000, each well-formed.
pub fn check_reserved_entries(entries: &[Reserved]) -> Result<(), InputError> {
    if entries.len() > MAX_RESERVED {
        return Err(InputError::TooManyReserved {
            count: entries.len(),
        });
    }
    for entry in entries {
        check_reserved(entry).map_err(|reason| InputError::InvalidReserved {
            input: entry.to_string(),
            reason,
        })?;
    }
    Ok(())
}

/// Checks an update without the pool: every given field within its bounds (the MTU floor of
/// IPv6 pools needs the pool and is checked in `apply`).
pub fn check_update(pool: &str, update: &PoolUpdate) -> Result<(), InputError> {
    check_name(pool)?;
    if let Some(labels) = &update.labels {
        check_labels(labels)?;
    }
    if let Some(d) = &update.description {
        if d.len() > MAX_DESCRIPTION {
            return Err(InputError::DescriptionTooLong { len: d.len() });
        }
    }
    if let Some(r) = &update.reserved {
        check_reserved_entries(r)?;
    }
    check_settings(&update.apply_settings(&PoolSettings::default()), Family::V4)
}

/// Checks everything about a pool spec that needs no state, and returns the resolved gateway
/// and the pool's layout.
pub fn pool_layout(spec: &PoolSpec) -> Result<(Option<IpAddr>, PoolLayout), CreatePoolError> {
    check_name(&spec.name)?;
    // A spec that arrived through serde may carry a non-canonical CIDR.
    let cidr = Cidr::new(spec.cidr.network, spec.cidr.prefix)?;
    if spec.description.len() > MAX_DESCRIPTION {
        return Err(InputError::DescriptionTooLong {
            len: spec.description.len(),
        }
        .into());
    }
    check_labels(&spec.labels)?;
    if spec.reserved.len() > MAX_RESERVED {
        return Err(InputError::TooManyReserved {
            count: spec.reserved.len(),
        }
        .into());
    }
    for entry in &spec.reserved {
        check_reserved(entry).map_err(|reason| InputError::InvalidReserved {
            input: entry.to_string(),
            reason,
        })?;
    }
    let gateway = resolve_gateway(&cidr, spec.gateway)?;
    let layout = PoolLayout::build(cidr, gateway, &spec.reserved)?;
    Ok((gateway, layout))
}

/// Checks everything about a pool spec that needs no state.
pub fn check_pool_spec(spec: &PoolSpec) -> Result<(), CreatePoolError> {
    pool_layout(spec).map(|_| ())
}

/// Checks one op without state.
pub fn check_op(op: &Op) -> Result<(), OpError> {
    match op {
        Op::CreatePool(spec) => check_pool_spec(spec)?,
        Op::DeletePool { pool, .. } => check_name(pool)?,
        Op::Allocate {
            pool,
            owner,
            labels,
            ..
        } => (|| {
            check_name(pool)?;
            check_owner(owner)?;
            check_labels(labels)
        })()
        .map_err(AllocateError::Input)?,
        Op::Release { pool, .. } => check_name(pool).map_err(ReleaseError::Input)?,
        Op::ReleaseOwner { pool, owner } => check_name(pool)
            .and_then(|()| check_owner(owner))
            .map_err(ReleaseError::Input)?,
        Op::AllocateV2 {
            pool,
            owner,
            labels,
            ttl_seconds,
            ..
        } => (|| {
            check_name(pool)?;
            check_owner(owner)?;
            check_labels(labels)?;
            ttl_seconds.map_or(Ok(()), check_ttl)
        })()
        .map_err(AllocateError::Input)?,
        Op::Renew {
            pool, ttl_seconds, ..
        } => check_name(pool)
            .and_then(|()| ttl_seconds.map_or(Ok(()), check_ttl))
            .map_err(ReleaseError::Input)?,
        Op::RenewOwner { owner } => check_owner(owner).map_err(ReleaseError::Input)?,
        Op::CreatePoolV2(spec) => {
            check_pool_spec(&spec.base)?;
            check_settings(&spec.settings, spec.base.cidr.family())
                .map_err(CreatePoolError::from)?
        }
        Op::CreatePoolV3(spec) => {
            check_pool_spec(&spec.base)?;
            check_settings(&spec.settings, spec.base.cidr.family())
                .map_err(CreatePoolError::from)?;
            if let Some(parent) = &spec.parent {
                check_name(parent).map_err(CreatePoolError::from)?;
            }
            if let Some(len) = spec.delegation_prefix_len {
                crate::pools::check_delegation(spec.base.cidr, len)
                    .map_err(CreatePoolError::from)?;
                if matches!(spec.base.gateway, crate::types::GatewayChoice::Addr(_)) {
                    Err(CreatePoolError::from(InputError::InvalidSetting {
                        field: "gateway".into(),
                        reason: "a prefix pool has no gateway".into(),
                    }))?;
                }
            }
        }
        Op::UpdatePool { pool, update, .. } => check_update(pool, update)
            .map_err(|e| UpdatePoolError::Layout(CreatePoolError::Input(e)))?,
        Op::AddRange { pool, cidr, .. } => check_name(pool)
            .and_then(|()| Cidr::new(cidr.network, cidr.prefix).map(|_| ()))
            .map_err(|e| UpdatePoolError::Layout(CreatePoolError::Input(e)))?,
        Op::RemoveRange { pool, .. } => {
            check_name(pool).map_err(|e| UpdatePoolError::Layout(CreatePoolError::Input(e)))?
        }
        Op::Reconcile(spec) => crate::drift::check_spec(spec).map_err(ReconcileError::Input)?,
        Op::SetFeatureLevel(level) => {
            if *level == 0 {
                Err(OpError::Input(InputError::InvalidSetting {
                    field: "feature_level".into(),
                    reason: "levels start at 1".into(),
                }))?;
            }
        }
        Op::AllocateAny {
            owner,
            selector,
            labels,
            ttl_seconds,
            ..
        } => (|| {
            check_owner(owner)?;
            check_labels(selector)?;
            check_labels(labels)?;
            ttl_seconds.map_or(Ok(()), check_ttl)
        })()
        .map_err(AllocateError::Input)?,
    }
    Ok(())
}

/// Checks a lease length: 0 (permanent) or 10..=31,536,000 seconds.
pub fn check_ttl(ttl: u32) -> Result<(), InputError> {
    if crate::lease::ttl_ok(ttl) {
        Ok(())
    } else {
        Err(InputError::InvalidTtl { ttl })
    }
}

/// Checks a command without state: each op, and a batch's size (1..=1000). A single op's
/// error is reported at index 0.
pub fn check_command(command: &Command) -> Result<(), BatchError> {
    match command {
        Command::Op(op) => check_op(op).map_err(|error| BatchError { index: 0, error }),
        Command::Batch(ops) => {
            if ops.is_empty() || ops.len() > MAX_BATCH {
                return Err(BatchError {
                    index: 0,
                    error: OpError::Input(InputError::BatchSize { count: ops.len() }),
                });
            }
            for (index, op) in ops.iter().enumerate() {
                if matches!(op, Op::Reconcile(_) | Op::SetFeatureLevel(_)) {
                    // A reconcile is atomic on its own and unbounded by the batch limit; the
                    // feature level is not state a batch could roll back.
                    return Err(BatchError {
                        index,
                        error: OpError::Input(InputError::InvalidSetting {
                            field: "op".into(),
                            reason: "a reconcile or feature level cannot be part of a batch".into(),
                        }),
                    });
                }
                check_op(op).map_err(|error| BatchError { index, error })?;
            }
            Ok(())
        }
        Command::Tagged { key, command, .. } => {
            if key
                .as_ref()
                .is_some_and(|k| !crate::requests::check_key(&k.key))
            {
                return Err(BatchError {
                    index: 0,
                    error: OpError::Input(InputError::InvalidIdempotencyKey),
                });
            }
            check_command(command)
        }
    }
}

/// Mask of the host bits of a `prefix` in a family of `bits` bits.
fn host_mask(bits: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(bits.saturating_sub(prefix));
    if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

impl Cidr {
    /// Builds a CIDR, refusing host bits or a prefix too long for the family.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, InputError> {
        let family = Family::of(network);
        if prefix > family.bits() {
            return Err(InputError::InvalidCidr {
                input: format!("{network}/{prefix}"),
                reason: format!(
                    "prefix length {prefix} exceeds {} for {family}",
                    family.bits()
                ),
            });
        }
        let pos = addr_to_u128(network);
        let mask = host_mask(family.bits(), prefix);
        if pos & mask != 0 {
            return Err(InputError::HostBitsSet {
                input: format!("{network}/{prefix}"),
                network: Cidr {
                    network: family.addr(pos & !mask),
                    prefix,
                },
            });
        }
        Ok(Cidr { network, prefix })
    }
    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }
    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    /// The address family.
    pub fn family(&self) -> Family {
        Family::of(self.network)
    }
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family() && (self.first()..=self.last()).contains(&addr_to_u128(ip))
    }
    /// Position of the first address (the network address) as a `u128`.
    pub fn first(&self) -> u128 {
        addr_to_u128(self.network)
    }
    /// Position of the last address as a `u128`.
    pub fn last(&self) -> u128 {
        self.first() | host_mask(self.family().bits(), self.prefix)
    }
    /// Number of addresses, saturating at `u128::MAX` for `::/0` (2^128).
    pub fn size(&self) -> u128 {
        (self.last() - self.first()).saturating_add(1)
    }
    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.family() == other.family()
            && self.first() <= other.last()
            && other.first() <= self.last()
    }
}

impl std::str::FromStr for Cidr {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_cidr(s)
    }
}

impl std::str::FromStr for Reserved {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_reserved(s)
    }
}
