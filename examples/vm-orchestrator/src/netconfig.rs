//! What a VM's network backend needs for one NIC, and its rendering as a systemd-networkd
//! `.network` file.
//!
//! The values come from the allocation's `network` (the pool as it is now): the address with
//! its range's prefix length and gateway, and the pool's DNS servers, domain, MTU and routes. Everything a guest needs to bring the
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
    /// DNS servers of the pool.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// Search domain of the pool.
    #[serde(default)]
    pub domain: Option<String>,
    /// MTU of the pool.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Static routes of the pool: (destination CIDR, next hop).
    #[serde(default)]
    pub routes: Vec<(String, IpAddr)>,
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
    for dns in &nic.dns {
        let _ = writeln!(out, "DNS={dns}");
    }
    if let Some(domain) = &nic.domain {
        let _ = writeln!(out, "Domains={domain}");
    }
    if let Some(mtu) = nic.mtu {
        let _ = writeln!(out, "\n[Link]\nMTUBytes={mtu}");
    }
    for (dst, via) in &nic.routes {
        let _ = writeln!(out, "\n[Route]\nDestination={dst}\nGateway={via}");
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
            dns: vec![],
            domain: None,
            mtu: None,
            routes: vec![],
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
        let full = NicConfig {
            dns: vec!["10.0.0.53".parse().unwrap(), "10.0.0.54".parse().unwrap()],
            domain: Some("lab.example".into()),
            mtu: Some(9000),
            routes: vec![("10.8.0.0/16".into(), "10.0.0.254".parse().unwrap())],
            ..v6
        };
        assert_eq!(
            render_networkd(&full),
            "[Match]\nName=eth0\n\n[Network]\nAddress=fd00::5/64\nDNS=10.0.0.53\nDNS=10.0.0.54\n\
             Domains=lab.example\n\n[Link]\nMTUBytes=9000\n\n[Route]\nDestination=10.8.0.0/16\n\
             Gateway=10.0.0.254\n"
        );
    }
}
