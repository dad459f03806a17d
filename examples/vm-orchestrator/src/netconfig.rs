//! What a VM's network backend needs for one NIC, and its rendering as a systemd-networkd
//! `.network` file.
//!
//! The values come from the pool the address was allocated in, as the pool is now: the
//! address with the pool's prefix length, its gateway. Everything a guest needs to bring the
//! interface up is in this one struct, so a backend never calls IPAM again.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The network configuration of one NIC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicConfig {
    /// Interface name inside the VM, for example `eth0`.
    pub nic: String,
    /// The pool the address came from.
    pub pool: String,
    /// The allocated address.
    pub address: IpAddr,
    /// Prefix length of the pool's network.
    pub prefix_len: u8,
    /// Default gateway, if the pool has one.
    pub gateway: Option<IpAddr>,
    /// Generation of the allocation: what a fenced release names.
    pub generation: u64,
}

impl NicConfig {
    /// `address/prefix_len`, as `ip addr add` and networkd take it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix_len)
    }
}

/// The systemd-networkd `.network` file for `nic` (matched by interface name).
pub fn render_networkd(nic: &NicConfig) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "[Match]\nName={}\n", nic.nic);
    let _ = writeln!(out, "[Network]\nAddress={}", nic.cidr());
    if let Some(gateway) = nic.gateway {
        let _ = writeln!(out, "Gateway={gateway}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_address_prefix_and_gateway() {
        let nic = NicConfig {
            nic: "eth0".into(),
            pool: "web".into(),
            address: "10.0.0.7".parse().unwrap(),
            prefix_len: 24,
            gateway: Some("10.0.0.1".parse().unwrap()),
            generation: 3,
        };
        assert_eq!(
            render_networkd(&nic),
            "[Match]\nName=eth0\n\n[Network]\nAddress=10.0.0.7/24\nGateway=10.0.0.1\n"
        );
        let v6 = NicConfig {
            address: "fd00::5".parse().unwrap(),
            prefix_len: 64,
            gateway: None,
            ..nic
        };
        assert!(render_networkd(&v6).ends_with("Address=fd00::5/64\n"));
    }
}
