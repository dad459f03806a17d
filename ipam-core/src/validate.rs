//! Stateless input checks and parsers. The edge (HTTP, embedded client) runs them so bad
//! input is refused before anything is proposed; `apply` runs them again so a malformed
//! command in the log is a deterministic error result, never a panic.

use std::net::IpAddr;

use crate::command::{Command, Op};
use crate::error::{CreatePoolError, InputError, OpError};
use crate::command::BatchError;
use crate::types::{Cidr, Labels, PoolSpec, Reserved};

/// Parses `a.b.c.d/n` or `x::/n`; rejects host bits (naming the network meant), bare
/// addresses and netmask forms.
pub fn parse_cidr(input: &str) -> Result<Cidr, InputError> {
    todo!("CORE-HELPER {input}")
}

/// Parses an IPv4 or IPv6 address.
pub fn parse_addr(input: &str) -> Result<IpAddr, InputError> {
    todo!("CORE-HELPER {input}")
}

/// Parses a reserved entry: an address, an inclusive range `a-b`, or a CIDR.
pub fn parse_reserved(input: &str) -> Result<Reserved, InputError> {
    todo!("CORE-HELPER {input}")
}

/// Checks a pool name against `[a-z0-9][a-z0-9-]{0,62}`.
pub fn check_name(name: &str) -> Result<(), InputError> {
    todo!("CORE-HELPER {name}")
}

/// Checks an owner: 1 to 253 bytes.
pub fn check_owner(owner: &str) -> Result<(), InputError> {
    todo!("CORE-HELPER {owner}")
}

/// Checks label limits: at most 64, keys 1..=63 bytes, values ≤ 253 bytes.
pub fn check_labels(labels: &Labels) -> Result<(), InputError> {
    todo!("CORE-HELPER {labels:?}")
}

/// Checks everything about a pool spec that needs no state.
pub fn check_pool_spec(spec: &PoolSpec) -> Result<(), CreatePoolError> {
    todo!("CORE-HELPER {spec:?}")
}

/// Checks one op without state.
pub fn check_op(op: &Op) -> Result<(), OpError> {
    todo!("CORE-HELPER {op:?}")
}

/// Checks a command without state: each op, and a batch's size (1..=1000).
pub fn check_command(command: &Command) -> Result<(), BatchError> {
    todo!("CORE-HELPER {command:?}")
}

impl Cidr {
    /// Builds a CIDR, refusing host bits or a prefix too long for the family.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, InputError> {
        todo!("CORE-HELPER {network} {prefix}")
    }
    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }
    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        todo!("CORE-HELPER {ip}")
    }
}

impl std::str::FromStr for Cidr {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_cidr(s)
    }
}
