//! The dashboard's templates. maud escapes every interpolated value, so owner strings, labels
//! and descriptions — operator- or client-supplied text — render as text, never as markup;
//! only the constant stylesheet and reload script are inserted unescaped.

use std::net::IpAddr;

use axum::http::StatusCode;
use ipam_core::{AddressInfo, Allocation, AllocationPage, Event, Labels, PoolInfo};
use ipam_raft::ClusterStatus;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::{Digest, Sha256};

use super::auth::Session;
use super::MemberView;
use crate::wire::rfc3339;

/// Utilization from which a bar turns red: the alert threshold of `deploy/prometheus`.
const HOT: f64 = 0.85;
/// Utilization from which a bar turns amber.
const WARM: f64 = 0.60;

const CSS: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
header{background:#1d2430;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin:0}
main{padding:1em 1.2em;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.8em 1em;margin:0 0 1em}
h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:.2em 0 .6em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #eceff3;vertical-align:top}
th{font-weight:600;color:#555}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;vertical-align:middle;background:#e6e9ee;border-radius:3px;height:.9em;width:12em;overflow:hidden}
.bar>div{background:#3b82f6;height:100%}
.bar>div.warm{background:#f59e0b}.bar>div.hot{background:#dc2626}
.tag{display:inline-block;background:#eef1f5;border-radius:3px;padding:0 .4em;margin:0 .2em .1em 0;font-size:.9em}
.leader{font-weight:600}
.muted{color:#777}.err{color:#b91c1c}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0}
dt{color:#555}dd{margin:0}
input[type=search],input[type=password]{padding:.3em .5em;border:1px solid #bbb;border-radius:4px}
";

/// Reloads the overview every 10 s while the tab is visible and nobody is typing.
const RELOAD_SCRIPT: &str = "setInterval(function(){var a=document.activeElement;\
if(!document.hidden&&!(a&&a.tagName==='INPUT'))location.reload()},10000);";

/// The CSP source (`sha256-…`) that allows exactly [`RELOAD_SCRIPT`].
pub fn reload_script_hash() -> String {
    format!(
        "sha256-{}",
        base64(&Sha256::digest(RELOAD_SCRIPT.as_bytes()))
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Percent-encodes `s` for a query component (everything but unreserved characters).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn layout(session: Option<&Session>, title: &str, body: Markup, reload: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · raft-ipam" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a href="/ui" { "raft-ipam" }
                    @if let Some(session) = session {
                        form method="get" action="/ui/search" role="search" {
                            input type="search" name="q" placeholder="address, pool or owner"
                                aria-label="search" size="32";
                            " "
                            button type="submit" { "Search" }
                        }
                        @if session.protected {
                            form method="post" action="/ui/logout" {
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
                @if reload {
                    script { (PreEscaped(RELOAD_SCRIPT)) }
                }
            }
        }
    }
}

fn labels(l: &Labels) -> Markup {
    html! {
        @for (k, v) in l {
            span.tag { (k) "=" (v) }
        }
    }
}

fn bar(utilization: f64) -> Markup {
    let pct = (utilization * 100.0).clamp(0.0, 100.0);
    let class = if utilization >= HOT {
        "hot"
    } else if utilization >= WARM {
        "warm"
    } else {
        ""
    };
    html! {
        div.bar title=(format!("{pct:.1} %")) {
            div class=(class) style=(format!("width:{pct:.1}%")) {}
        }
    }
}

fn owner_link(owner: &str) -> Markup {
    html! {
        a href=(format!("/ui/owners?owner={}", encode_component(owner))) { (owner) }
    }
}

fn allocations_table(allocations: &[Allocation], with_pool: bool) -> Markup {
    html! {
        table #allocations {
            thead { tr {
                th { "Address" }
                @if with_pool { th { "Pool" } }
                th { "Owner" } th.num { "Generation" } th { "Allocated at" } th { "Labels" }
            } }
            tbody {
                @for a in allocations {
                    tr {
                        td { a href=(format!("/ui/addresses/{}", a.ip)) { (a.ip) } }
                        @if with_pool { td { a href=(format!("/ui/pools/{}", a.pool)) { (a.pool) } } }
                        td { (owner_link(&a.owner)) }
                        td.num { (a.generation) }
                        td { (rfc3339(a.allocated_at)) }
                        td { (labels(&a.labels)) }
                    }
                }
            }
        }
    }
}

/// The overview: this node's raft view, the members, and every pool with its utilization.
pub fn overview(
    session: &Session,
    status: &ClusterStatus,
    members: &[MemberView],
    pools: &[PoolInfo],
    recent: &[Event],
) -> Markup {
    let leader = status
        .leader
        .map(|id| {
            let addr = members.iter().find(|m| m.id == id).map(|m| m.addr.as_str());
            match addr {
                Some(a) => format!("node {id} ({a})"),
                None => format!("node {id}"),
            }
        })
        .unwrap_or_else(|| "none".to_string());
    let body = html! {
        h1 { "Cluster" }
        section #cluster {
            dl {
                dt { "This node" } dd #node-id { (status.id) }
                dt { "Leader" } dd #leader { (leader) }
                dt { "Term" } dd #term { (status.term) }
                dt { "Last log index" } dd { (status.last_log_index) }
                dt { "Commit index" } dd #commit-index { (status.committed_index) }
                dt { "Applied index" } dd #applied-index { (status.applied_index) }
                dt { "Apply lag" } dd #apply-lag { (status.committed_index.saturating_sub(status.applied_index)) }
            }
        }
        section {
            h2 { "Members" }
            table #members {
                thead { tr {
                    th.num { "Id" } th { "Address" } th { "Role" } th { "State" }
                    th.num { "Matched index" } th.num { "Lag" }
                } }
                tbody {
                    @for m in members {
                        tr.leader[m.leader] data-id=(m.id) {
                            td.num { (m.id) }
                            td { (m.addr) }
                            td { (m.role) }
                            td {
                                @if m.leader { "leader" } @else { "follower" }
                                @if m.this { span.muted { " (this node)" } }
                            }
                            td.num { @match m.matched { Some(i) => (i), None => span.muted { "—" } } }
                            td.num { @match m.lag { Some(l) => (l), None => span.muted { "—" } } }
                        }
                    }
                }
            }
            @if members.iter().all(|m| m.matched.is_none()) {
                p.muted { "Per-member progress is tracked by the leader; open the leader's dashboard to see it." }
            }
        }
        section {
            h2 { "Pools (" span #pool-count { (pools.len()) } ")" }
            @if pools.is_empty() {
                p.muted { "No pools yet." }
            } @else {
                table #pools {
                    thead { tr {
                        th { "Name" } th { "CIDR" } th { "Utilization" } th.num { "Allocated" }
                        th.num { "Capacity" } th.num { "Free" } th { "Labels" }
                    } }
                    tbody {
                        @for p in pools {
                            tr data-pool=(p.name) {
                                td { a href=(format!("/ui/pools/{}", p.name)) { (p.name) } }
                                td { (p.cidr) }
                                td { (bar(p.stats.utilization())) }
                                td.num.allocated { (p.stats.allocated) }
                                td.num.capacity { (p.stats.capacity) }
                                td.num { (p.stats.free()) }
                                td { (labels(&p.labels)) }
                            }
                        }
                    }
                }
            }
        }
        (super::events::section("events", "Recent events", recent, "No events yet."))
    };
    layout(Some(session), "Overview", body, true)
}

/// A duration in seconds as an operator reads it (`90 s`, `10 min`, `1 h 30 min`, `2 d`).
fn seconds(s: u32) -> String {
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "min"), (sec, "s")]
        .into_iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, unit)| format!("{v} {unit}"))
        .collect();
    if parts.is_empty() {
        "0 s".to_string()
    } else {
        parts.join(" ")
    }
}

/// What a pool hands its callers beyond the address, and how its addresses live.
fn pool_settings(p: &PoolInfo, next_free: &[IpAddr]) -> Markup {
    let s = &p.settings;
    html! {
        section #ranges {
            h2 { "Ranges" }
            table {
                thead { tr { th { "CIDR" } th { "Gateway" } } }
                tbody {
                    @for r in &p.ranges {
                        tr {
                            td { (r.cidr) }
                            td { @match r.gateway { Some(g) => (g), None => span.muted { "none" } } }
                        }
                    }
                }
            }
        }
        section #network {
            h2 { "Network configuration" }
            dl {
                dt { "DNS" } dd #dns {
                    @if s.dns.is_empty() { span.muted { "none" } }
                    @for d in &s.dns { span.tag { (d) } }
                }
                dt { "MTU" } dd #mtu { @match s.mtu { Some(m) => (m), None => span.muted { "default" } } }
                dt { "Routes" } dd #routes {
                    @if s.routes.is_empty() { span.muted { "none" } }
                    @for r in &s.routes { span.tag { (r.dst) " via " (r.via) } }
                }
                dt { "Domain" } dd #domain { @match &s.domain { Some(d) => (d), None => span.muted { "none" } } }
            }
        }
        section #lifecycle {
            h2 { "Lifecycle and selection" }
            dl {
                dt { "Revision" } dd #revision { (p.revision) }
                dt { "Frozen" } dd #frozen { @if s.frozen { "yes: only explicit addresses are allocated" } @else { "no" } }
                dt { "Default lease" } dd #default-ttl {
                    @match s.default_ttl_seconds { Some(t) => (seconds(t)), None => span.muted { "permanent" } }
                }
                dt { "Reuse cooldown" } dd #cooldown { (seconds(s.reuse_cooldown_seconds)) }
                dt { "Weight" } dd { (s.weight) }
                dt { "Max utilization" } dd { (format!("{:.1} %", f64::from(s.max_utilization_ppm) / 10_000.0)) }
                dt { "Next free" } dd #next-free {
                    @if next_free.is_empty() { span.muted { "none: the pool is full" } }
                    @for a in next_free { span.tag { (a) } }
                }
            }
        }
    }
}

/// One pool: its configuration, what the next allocations would get, and a page of its
/// allocations.
pub fn pool(
    session: &Session,
    p: &PoolInfo,
    next_free: &[IpAddr],
    page: &AllocationPage,
    owner: Option<&str>,
    after: Option<&str>,
) -> Markup {
    let base = match owner {
        Some(o) => format!("/ui/pools/{}?owner={}&", p.name, encode_component(o)),
        None => format!("/ui/pools/{}?", p.name),
    };
    let body = html! {
        h1 { "Pool " (p.name) }
        section #pool {
            dl {
                dt { "CIDR" } dd #cidr { (p.cidr) }
                dt { "Gateway" } dd { @match p.gateway { Some(g) => (g), None => span.muted { "none" } } }
                dt { "Reserved" } dd {
                    @if p.reserved.is_empty() { span.muted { "none" } }
                    @for r in &p.reserved { span.tag { (r) } }
                }
                dt { "Labels" } dd { (labels(&p.labels)) }
                dt { "Description" } dd { (p.description) }
                dt { "Created at" } dd { (rfc3339(p.created_at)) }
                dt { "Utilization" } dd { (bar(p.stats.utilization())) (format!(" {:.1} %", p.stats.utilization() * 100.0)) }
                dt { "Allocated" } dd #allocated { (p.stats.allocated) }
                dt { "Capacity" } dd #capacity { (p.stats.capacity) }
                dt { "Free" } dd #free { (p.stats.free()) }
            }
        }
        (pool_settings(p, next_free))
        section {
            h2 { "Allocations" }
            form method="get" action=(format!("/ui/pools/{}", p.name)) {
                input type="search" name="owner" placeholder="owner" value=(owner.unwrap_or(""));
                " " button type="submit" { "Filter" }
            }
            @if page.allocations.is_empty() {
                p.muted { "No allocations" @if after.is_some() { " after " (after.unwrap_or("")) } "." }
            } @else {
                (allocations_table(&page.allocations, false))
            }
            p {
                @if after.is_some() { a href=(base.trim_end_matches(['?', '&'])) { "« first page" } " " }
                @if let Some(next) = page.next {
                    a #next rel="next" href=(format!("{base}after={}", encode_component(&next.to_string()))) { "next page »" }
                }
            }
        }
    };
    layout(Some(session), &format!("Pool {}", p.name), body, false)
}

/// One address: its pool and who holds it.
pub fn address(session: &Session, ip: IpAddr, info: &AddressInfo, history: &[Event]) -> Markup {
    let body = html! {
        h1 { "Address " (ip) }
        section #address {
            dl {
                dt { "Pool" } dd #pool {
                    @match &info.pool {
                        Some(p) => a href=(format!("/ui/pools/{p}")) { (p) },
                        None => span.muted { "in no pool" },
                    }
                }
                @match &info.allocation {
                    Some(a) => {
                        dt { "Holder" } dd #holder { (owner_link(&a.owner)) }
                        dt { "Generation" } dd { (a.generation) }
                        dt { "Allocated at" } dd { (rfc3339(a.allocated_at)) }
                        dt { "Labels" } dd { (labels(&a.labels)) }
                    }
                    None => {
                        dt { "Holder" } dd #holder { span.muted { "free" } }
                    }
                }
            }
        }
        (super::events::section("history", "History", history, "No recorded events for this address."))
    };
    layout(Some(session), &format!("Address {ip}"), body, false)
}

/// An owner's allocations in every pool.
pub fn owner(session: &Session, owner: &str, allocations: &[Allocation]) -> Markup {
    let body = html! {
        h1 { "Owner " (owner) }
        section {
            @if allocations.is_empty() {
                p.muted { "This owner holds no address." }
            } @else {
                (allocations_table(allocations, true))
            }
        }
    };
    layout(Some(session), &format!("Owner {owner}"), body, false)
}

/// A failed read.
pub fn error(session: &Session, status: StatusCode, message: &str) -> Markup {
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        section { p.err #error { (message) } p { a href="/ui" { "Back to the overview" } } }
    };
    layout(Some(session), "Error", body, false)
}

/// The token form of a node with a token.
pub fn login(failure: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Log in" }
        section {
            form method="post" action="/ui/login" {
                label { "Cluster token " input type="password" name="token" autocomplete="current-password" autofocus; }
                " " button type="submit" { "Log in" }
            }
            @if let Some(f) = failure { p.err { (f) } }
        }
    };
    layout(None, "Log in", body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn query_components_are_percent_encoded() {
        assert_eq!(encode_component("vm-42/eth0"), "vm-42%2Feth0");
        assert_eq!(encode_component("a&b=c d"), "a%26b%3Dc%20d");
        assert_eq!(encode_component("é"), "%C3%A9");
    }
}
