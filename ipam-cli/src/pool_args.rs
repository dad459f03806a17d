//! Command-line arguments of the second-round pool commands: settings shared by
//! `ip-pool create` and `ip-pool update`, and the update/range/freeze/preview subcommands.

use clap::Args;
use ipam_client::types::{CreatePoolRequest, Route, UpdatePoolRequest};

/// Network configuration, lease and selection settings of a pool.
#[derive(Debug, Default, Args)]
pub struct PoolSettingsArgs {
    /// DNS server handed to callers (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// MTU handed to callers (576–65535; at least 1280 in an IPv6 pool).
    #[arg(long)]
    pub mtu: Option<u16>,
    /// Static route handed to callers (repeatable).
    #[arg(long = "route", value_name = "DST=VIA", value_parser = parse_route)]
    pub routes: Vec<(String, String)>,
    /// Search domain handed to callers.
    #[arg(long)]
    pub domain: Option<String>,
    /// How long a released address cools for its last owner: `90s`, `10m`, `1h`, `2d`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub cooldown: Option<u32>,
    /// Lease length of allocations that give none: `1h`, `7d`.
    #[arg(long = "default-ttl", value_name = "DURATION", value_parser = parse_duration)]
    pub default_ttl: Option<u32>,
    /// Selection weight (1–1000).
    #[arg(long)]
    pub weight: Option<u16>,
    /// Selection bound on utilization, in (0, 1].
    #[arg(long = "max-utilization", value_name = "FRACTION")]
    pub max_utilization: Option<f64>,
    /// Refuse allocations without an address and deletion.
    #[arg(long)]
    pub frozen: bool,
}

/// `ipam-cli ip-pool update`.
#[derive(Debug, Args)]
pub struct UpdatePool {
    /// Pool name.
    pub name: String,
    /// Update only if the pool is at this revision.
    #[arg(long)]
    pub revision: Option<u64>,
    /// Replace every label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::args::parse_label)]
    pub labels: Vec<(String, String)>,
    /// Replace every reserved entry: an address, a range `A-B` or a CIDR (repeatable).
    #[arg(long = "reserved", value_name = "IP|RANGE|CIDR")]
    pub reserved: Vec<String>,
    /// Remove every reserved entry.
    #[arg(long, conflicts_with = "reserved")]
    pub no_reserved: bool,
    /// New gateway of the first range.
    #[arg(long, value_name = "IP", conflicts_with = "no_gateway")]
    pub gateway: Option<String>,
    /// No gateway on the first range.
    #[arg(long)]
    pub no_gateway: bool,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// Settings.
    #[command(flatten)]
    pub settings: PoolSettingsArgs,
}

fn parse_route(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((dst, via)) if !dst.is_empty() && !via.is_empty() => {
            Ok((dst.to_string(), via.to_string()))
        }
        _ => Err(format!(
            "expected DST=VIA, for example 10.9.0.0/16=10.0.0.254, got {s:?}"
        )),
    }
}

/// `90`, `90s`, `10m`, `1h`, `2d` → seconds.
pub fn parse_duration(s: &str) -> Result<u32, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a duration like 90s, 10m, 1h or 2d, got {s:?}"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use s, m, h or d)")),
    };
    n.checked_mul(scale)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

fn number(x: f64) -> Option<serde_json::Number> {
    serde_json::Number::from_f64(x)
}

fn routes(list: &[(String, String)]) -> Vec<Route> {
    list.iter()
        .map(|(dst, via)| Route {
            dst: dst.clone(),
            via: via.clone(),
        })
        .collect()
}

impl PoolSettingsArgs {
    /// A create body with these settings (the first-round fields left empty).
    pub fn create_fields(&self) -> CreatePoolRequest {
        CreatePoolRequest {
            dns: self.dns.clone(),
            mtu: self.mtu,
            routes: routes(&self.routes),
            domain: self.domain.clone(),
            reuse_cooldown_seconds: self.cooldown,
            default_ttl_seconds: self.default_ttl,
            weight: self.weight,
            max_utilization: self.max_utilization.and_then(number),
            frozen: self.frozen.then_some(true),
            ..CreatePoolRequest::default()
        }
    }
}

impl UpdatePool {
    /// The `PATCH` body: only what was given.
    pub fn request(&self) -> UpdatePoolRequest {
        let s = &self.settings;
        UpdatePoolRequest {
            labels: (!self.labels.is_empty()).then(|| self.labels.iter().cloned().collect()),
            description: self.description.clone(),
            gateway: match (&self.gateway, self.no_gateway) {
                (Some(g), _) => Some(Some(g.clone())),
                (None, true) => Some(None),
                (None, false) => None,
            },
            reserved: if self.no_reserved {
                Some(Vec::new())
            } else {
                (!self.reserved.is_empty()).then(|| self.reserved.clone())
            },
            dns: (!s.dns.is_empty()).then(|| s.dns.clone()),
            mtu: s.mtu.map(Some),
            routes: (!s.routes.is_empty()).then(|| routes(&s.routes)),
            domain: s.domain.clone().map(Some),
            reuse_cooldown_seconds: s.cooldown,
            default_ttl_seconds: s.default_ttl.map(Some),
            weight: s.weight,
            max_utilization: s.max_utilization.and_then(number),
            frozen: s.frozen.then_some(true),
            ..UpdatePoolRequest::default()
        }
    }
}

/// The second-round lines of `ip-pool show`: revision, ranges, freeze, network, lease and
/// selection settings.
pub fn detail_pairs(p: &ipam_client::types::Pool) -> Vec<(&'static str, String)> {
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".to_string());
    let mut pairs = vec![("revision", p.revision.to_string())];
    for (i, r) in p.ranges.iter().enumerate() {
        let gw = r.gateway.as_deref().unwrap_or("no gateway");
        pairs.push((
            if i == 0 { "ranges" } else { "" },
            format!("{} (gateway {gw})", r.cidr),
        ));
    }
    pairs.extend([
        ("frozen", if p.frozen { "yes" } else { "no" }.to_string()),
        ("dns", dash((!p.dns.is_empty()).then(|| p.dns.join(", ")))),
        ("mtu", dash(p.mtu.map(|m| m.to_string()))),
    ]);
    if p.routes.is_empty() {
        pairs.push(("routes", "-".to_string()));
    }
    for (i, r) in p.routes.iter().enumerate() {
        pairs.push((
            if i == 0 { "routes" } else { "" },
            format!("{} via {}", r.dst, r.via),
        ));
    }
    pairs.extend([
        ("domain", dash(p.domain.clone())),
        (
            "default ttl",
            dash(p.default_ttl_seconds.map(|s| format!("{s}s"))),
        ),
        ("cooldown", format!("{}s", p.reuse_cooldown_seconds)),
        ("weight", p.weight.to_string()),
        ("max usage", format!("{}", p.max_utilization)),
    ]);
    pairs
}

/// The network configuration lines of `ip allocate` and `ip show`.
pub fn network_details(n: Option<&ipam_client::types::Network>) -> String {
    let Some(n) = n else {
        return String::new();
    };
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".to_string());
    let mut pairs = vec![
        ("prefix", n.prefix.clone()),
        ("gateway", dash(n.gateway.clone())),
        ("dns", dash((!n.dns.is_empty()).then(|| n.dns.join(", ")))),
        ("mtu", dash(n.mtu.map(|m| m.to_string()))),
    ];
    if n.routes.is_empty() {
        pairs.push(("routes", "-".to_string()));
    }
    for (i, r) in n.routes.iter().enumerate() {
        pairs.push((
            if i == 0 { "routes" } else { "" },
            format!("{} via {}", r.dst, r.via),
        ));
    }
    pairs.push(("domain", dash(n.domain.clone())));
    crate::render::key_values(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999d").is_err());
    }

    #[test]
    fn routes_need_both_sides() {
        assert_eq!(
            parse_route("10.9.0.0/16=10.0.0.1"),
            Ok(("10.9.0.0/16".into(), "10.0.0.1".into()))
        );
        assert!(parse_route("10.9.0.0/16").is_err());
        assert!(parse_route("=10.0.0.1").is_err());
    }
}
