//! `ipam-bench`: a load generator for a live raft-ipam cluster, and a measurement of the
//! latency floor of one replicated write on this machine.
//!
//! It drives the cluster over its HTTP API with `ipam-client` (one pooled client per
//! endpoint, shared by every client task), records the latency of every request in an
//! HDR histogram, prints one line per run (or JSON lines), then checks that every
//! acknowledged allocation is on every node and that no address is held twice, and exits
//! non-zero if not. `benches/cluster.sh` starts a 3-node cluster and runs it.
//!
//! ```text
//! ipam-bench --endpoints http://127.0.0.1:7471,http://127.0.0.1:7472 --token T \
//!     --clients 1,64 --duration 10 --mode allocate --targets spread
//! ipam-bench --floor --floor-dir /var/lib/ipam --endpoints http://127.0.0.1:7471
//! ```
//!
//! Loopback only: endpoints must be 127.0.0.1, ::1 or localhost, and every run is bounded in
//! time (`--duration`, or `--count` under `--max-duration`).
//!
//! # Layout
//!
//! - `main` — flags, cluster discovery (leader, pool), the run loop, output.
//! - [`load`] — one run: client tasks, latency histograms, acknowledged allocations.
//! - [`verify`] — convergence wait and the per-node check of acknowledged allocations.
//! - [`floor`] — durable redb commit and loopback HTTP round-trip latency.
//! - [`sys`] — load average and CPU time from `/proc`.
//! - `etcd` — the same loop against etcd (`--target etcd`, feature `etcd`):
//!   `benches/compare-etcd.sh` runs both side by side.

#[cfg(feature = "etcd")]
mod etcd;
mod floor;
mod load;
mod sys;
mod timeline;
mod verify;

/// The generator shares the machine with the system it loads: glibc's malloc was ~17 % of its
/// CPU at 1,000 clients (frees and arena consolidation across the runtime's threads), CPU the
/// nodes — or etcd's members — then did not get. mimalloc, as the nodes use.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use ipam_client::types::{CreatePoolRequest, GatewayField};
use ipam_client::{Client, ErrorCode};
use reqwest::Url;
use serde::Serialize;

use crate::load::{Mode, Plan, Targets};

/// Load generator for a live raft-ipam cluster (loopback only).
#[derive(Debug, Parser)]
#[command(name = "ipam-bench", version)]
struct Args {
    /// Node API URLs, comma-separated (http://127.0.0.1:7471,...).
    #[arg(long, value_delimiter = ',', env = "IPAM_BENCH_ENDPOINTS")]
    endpoints: Vec<String>,
    /// Cluster token.
    #[arg(long, env = "IPAM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Concurrent clients; one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    clients: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// What to load: raft-ipam, or etcd with the allocation loop of etcd-backed IPAMs.
    #[arg(long, value_enum, default_value_t = Target::Ipam)]
    target: Target,
    /// etcd client URLs, comma-separated (--target etcd).
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Measured requests per run (ends the run early; bounded by --max-duration).
    #[arg(long)]
    count: Option<u64>,
    /// Upper bound of a run's measured time when --count is given, seconds.
    #[arg(long, default_value_t = 120.0)]
    max_duration: f64,
    /// Unmeasured seconds before each run's window (connections open).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// What each client sends.
    #[arg(long, value_enum, default_value_t = Mode::Allocate)]
    mode: Mode,
    /// Allocations per /batch request (batch mode).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Spread clients over all endpoints, or send everything to the leader.
    #[arg(long, value_enum, default_value_t = Targets::Spread)]
    targets: Targets,
    /// Pool to allocate from; created if missing.
    #[arg(long, default_value = "bench")]
    pool: String,
    /// CIDR of the pool when it is created [default: 10.0.0.0/8, or fd00:be::/64 with --ipv6].
    #[arg(long)]
    cidr: Option<String>,
    /// Create the pool as an IPv6 /64.
    #[arg(long)]
    ipv6: bool,
    /// Timeout of one request, seconds.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// Skip the after-run check of acknowledged allocations.
    #[arg(long)]
    no_verify: bool,
    /// Node process ids (comma-separated): report the nodes' CPU time per run.
    #[arg(long, value_delimiter = ',')]
    node_pids: Vec<u32>,
    /// Print JSON lines instead of the table.
    #[arg(long)]
    json: bool,
    /// Measure the floor (durable commit, HTTP round trip) instead of load runs.
    #[arg(long)]
    floor: bool,
    /// Directory for the floor's redb file: put it on the nodes' disk [default: the temp dir].
    #[arg(long)]
    floor_dir: Option<PathBuf>,
    /// Commits measured by --floor.
    #[arg(long, default_value_t = 500)]
    floor_samples: u64,
    /// Also print the answers of each raft-ipam run in windows of this many ms of completion
    /// time (count, p50, p99, max): whether a tail comes from stalls or from every window.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    timeline: Option<u64>,
}

/// The system under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    /// A raft-ipam cluster (--endpoints).
    Ipam,
    /// An etcd cluster (--etcd-endpoints; needs the `etcd` feature).
    Etcd,
}

/// One run's line.
#[derive(Debug, Serialize)]
struct Report {
    mode: Mode,
    targets: Targets,
    clients: usize,
    batch_size: Option<usize>,
    requests: u64,
    allocations: u64,
    releases: u64,
    existing: u64,
    elapsed_s: f64,
    allocations_per_s: f64,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    errors: BTreeMap<String, u64>,
    /// Log entries the leader committed during the run (`ipam_raft_commit_index` delta).
    entries: Option<u64>,
    entries_per_s: Option<f64>,
    ops_per_entry: Option<f64>,
    /// CPU seconds of the generator and of the nodes during the run.
    bench_cpu_s: Option<f64>,
    nodes_cpu_s: Option<f64>,
    load_before: Option<f64>,
    load_after: Option<f64>,
    /// p50 / p99 of the clients of each endpoint, in `--endpoints` order (spread runs).
    by_endpoint: Vec<EndpointLatency>,
    /// `--timeline`: the answers in windows of completion time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    timeline: Vec<timeline::Window>,
    verify: Option<verify::Verdict>,
}

/// The latency seen by the clients of one endpoint.
#[derive(Debug, Serialize)]
struct EndpointLatency {
    endpoint: String,
    p50_ms: f64,
    p99_ms: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn secs(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{what} {s} is not a duration"))
}

/// Loopback only: load and failure tests never leave the machine.
fn check_loopback(endpoint: &str) -> anyhow::Result<()> {
    let url = if endpoint.contains("://") {
        Url::parse(endpoint)
    } else {
        Url::parse(&format!("http://{endpoint}"))
    }
    .with_context(|| format!("bad endpoint {endpoint:?}"))?;
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    if !loopback {
        bail!("{endpoint}: ipam-bench only sends load to 127.0.0.1, ::1 or localhost");
    }
    Ok(())
}

/// The value of an unlabelled sample `name` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The leader's client: found through `/api/v1/cluster`, matched against the endpoints (or
/// built from its advertised address).
async fn leader_client(
    nodes: &[Client],
    make: impl Fn(&str) -> anyhow::Result<Client>,
) -> anyhow::Result<Client> {
    for n in nodes {
        let Ok(s) = n.cluster_status().await else {
            continue;
        };
        let Some(leader) = s.leader else { continue };
        let Some(member) = s.members.iter().find(|m| m.id == leader) else {
            continue;
        };
        let url = format!("http://{}", member.addr);
        if let Some(c) = nodes
            .iter()
            .find(|c| c.endpoint() == url.trim_end_matches('/'))
        {
            return Ok(c.clone());
        }
        check_loopback(&url)?;
        return make(&url);
    }
    bail!("no node knows a leader")
}

async fn ensure_pool(client: &Client, args: &Args) -> anyhow::Result<()> {
    match client.get_pool(&args.pool).await {
        Ok(p) => {
            eprintln!(
                "pool {} ({}) exists: {} allocated of {}",
                p.name, p.cidr, p.stats.allocated, p.stats.capacity
            );
            Ok(())
        }
        Err(e) if e.code() == Some(&ErrorCode::PoolNotFound) => {
            let cidr = args.cidr.clone().unwrap_or_else(|| {
                if args.ipv6 {
                    "fd00:be::/64".to_string()
                } else {
                    "10.0.0.0/8".to_string()
                }
            });
            let p = client
                .create_pool(&CreatePoolRequest {
                    name: args.pool.clone(),
                    cidr,
                    gateway: GatewayField::Default,
                    description: Some("ipam-bench load pool".to_string()),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating pool {}", args.pool))?;
            eprintln!(
                "created pool {} ({}), capacity {}",
                p.name, p.cidr, p.stats.capacity
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("reading pool {}", args.pool)),
    }
}

fn print_header() {
    println!(
        "{:<8} {:<7} {:>7} {:>9} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}  {:<6} errors",
        "mode",
        "targets",
        "clients",
        "requests",
        "req/s",
        "allocs/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "entries/s",
        "ops/entry",
        "cpu b/n s",
        "load"
    );
}

fn print_row(r: &Report) {
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    let errors = if r.errors.is_empty() {
        "none".to_string()
    } else {
        r.errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mode = match r.batch_size {
        Some(b) => format!("batch{b}"),
        None => format!("{:?}", r.mode).to_lowercase(),
    };
    println!(
        "{:<8} {:<7} {:>7} {:>9} {:>9.0} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>9} {:>9} {:>9}  {:<6} {}",
        mode,
        format!("{:?}", r.targets).to_lowercase(),
        r.clients,
        r.requests,
        r.requests_per_s,
        r.allocations_per_s,
        r.p50_ms,
        r.p99_ms,
        r.p999_ms,
        r.max_ms,
        opt(r.entries_per_s, 0),
        opt(r.ops_per_entry, 1),
        format!(
            "{}/{}",
            opt(r.bench_cpu_s, 1),
            opt(r.nodes_cpu_s, 1)
        ),
        format!(
            "{}-{}",
            opt(r.load_before, 1),
            opt(r.load_after, 1)
        ),
        errors
    );
}

async fn run_floor(args: &Args) -> anyhow::Result<ExitCode> {
    let client = match args.endpoints.first() {
        Some(e) => {
            check_loopback(e)?;
            Some(Client::new(e, args.token.clone())?)
        }
        None => None,
    };
    let dir = args.floor_dir.clone().unwrap_or_else(std::env::temp_dir);
    let f = floor::measure(&dir, client.as_ref(), args.floor_samples).await?;
    if args.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        let cpu = |c: Option<f64>| c.map_or("?".to_string(), |c| format!("{c:.0}"));
        for (what, c, c_cpu) in [
            ("Immediate", &f.commit, f.commit_cpu_us),
            ("None", &f.commit_none, f.commit_none_cpu_us),
        ] {
            println!(
                "redb {what} commit of one row ({}): p50 {:.3} ms, p90 {:.3}, p99 {:.3}, max {:.3} ({} samples); CPU {} µs per commit",
                dir.display(),
                ms(c.p50_us),
                ms(c.p90_us),
                ms(c.p99_us),
                ms(c.max_us),
                c.samples,
                cpu(c_cpu)
            );
        }
        if let Some(h) = &f.http {
            println!(
                "loopback HTTP round trip (GET /healthz): p50 {:.3} ms, p90 {:.3}, p99 {:.3}, max {:.3} ({} samples)",
                ms(h.p50_us),
                ms(h.p90_us),
                ms(h.p99_us),
                ms(h.max_us),
                h.samples
            );
        }
        println!(
            "floor of a lone write = commit p50 + HTTP p50 = {:.3} ms; with the leader → follower append round trip: {:.3} ms (load {})",
            ms(f.floor_us),
            ms(f.floor_with_append_rtt_us),
            f.load.map_or("?".to_string(), |l| format!("{l:.2}"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_load(args: &Args) -> anyhow::Result<ExitCode> {
    if args.endpoints.is_empty() {
        bail!("--endpoints is required");
    }
    if args.clients.contains(&0) {
        bail!("--clients values must be positive");
    }
    if args.mode == Mode::Batch && !(1..=1000).contains(&args.batch_size) {
        bail!("--batch-size must be 1 to 1000");
    }
    let duration = match args.count {
        Some(_) => secs(args.max_duration, "max-duration")?,
        None => secs(args.duration, "duration")?,
    };
    let warmup = secs(args.warmup, "warmup")?;
    let timeout = secs(args.request_timeout, "request-timeout")?;
    for e in &args.endpoints {
        check_loopback(e)?;
    }
    let make = |endpoint: &str| -> anyhow::Result<Client> {
        // One pooled reqwest client per endpoint, shared by every client task.
        Ok(Client::new(endpoint, args.token.clone())?.with_timeout(timeout))
    };
    let nodes: Vec<Client> = args
        .endpoints
        .iter()
        .map(|e| make(e))
        .collect::<anyhow::Result<_>>()?;
    let leader = leader_client(&nodes, make).await?;
    eprintln!("leader: {}", leader.endpoint());
    ensure_pool(&leader, args).await?;
    let targets: Vec<Client> = match args.targets {
        Targets::Spread => nodes.clone(),
        Targets::Leader => vec![leader.clone()],
        Targets::Cluster => {
            let reversed: Vec<&String> = args.endpoints.iter().rev().collect();
            vec![Client::with_endpoints(&reversed, args.token.clone())?.with_timeout(timeout)]
        }
    };
    // Owners unique to this invocation and run, so no run meets an earlier run's owners.
    let tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);

    if !args.json {
        print_header();
    }
    let mut violated = false;
    for (i, &clients) in args.clients.iter().enumerate() {
        let plan = Plan {
            clients,
            mode: args.mode,
            batch_size: args.batch_size,
            pool: args.pool.clone(),
            duration,
            count: args.count,
            warmup,
            owner_prefix: format!("b{tag}-{i}"),
            timeline: args.timeline.is_some(),
        };
        let load_before = sys::load_average();
        let commit_before = leader
            .metrics()
            .await
            .ok()
            .and_then(|m| metric(&m, "ipam_raft_commit_index"));
        let bench_cpu_before = sys::cpu_time(None);
        let nodes_cpu_before = sys::cpu_time_of(&args.node_pids);
        let window_started = Instant::now();
        let mut outcome = load::run(plan, &targets).await?;
        let window = window_started.elapsed();
        let bench_cpu = sys::cpu_time(None)
            .zip(bench_cpu_before)
            .map(|(a, b)| (a - b).as_secs_f64());
        let nodes_cpu = if args.node_pids.is_empty() {
            None
        } else {
            sys::cpu_time_of(&args.node_pids)
                .zip(nodes_cpu_before)
                .map(|(a, b)| (a - b).as_secs_f64())
        };
        let commit_after = leader
            .metrics()
            .await
            .ok()
            .and_then(|m| metric(&m, "ipam_raft_commit_index"));
        let load_after = sys::load_average();
        let elapsed = outcome.elapsed.as_secs_f64().max(1e-9);
        // Entries over the whole window (warm-up included): ops per entry uses the same span.
        let entries = commit_after
            .zip(commit_before)
            .map(|(a, b)| (a - b).max(0.0) as u64);
        let total_ops = ops_of(&outcome);
        let entries_per_s = entries.map(|e| e as f64 / window.as_secs_f64());
        let ops_per_entry = entries
            .filter(|&e| e > 0)
            .map(|e| total_ops as f64 / e as f64);
        let h = &outcome.latency;
        let mut report = Report {
            mode: args.mode,
            targets: args.targets,
            clients,
            batch_size: (args.mode == Mode::Batch).then_some(args.batch_size),
            requests: outcome.ok_requests + outcome.errors.values().sum::<u64>(),
            allocations: outcome.allocations,
            releases: outcome.releases,
            existing: outcome.existing,
            elapsed_s: elapsed,
            allocations_per_s: outcome.allocations as f64 / elapsed,
            requests_per_s: outcome.ok_requests as f64 / elapsed,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            errors: outcome.errors.clone(),
            entries,
            entries_per_s,
            ops_per_entry,
            bench_cpu_s: bench_cpu,
            nodes_cpu_s: nodes_cpu,
            load_before,
            load_after,
            by_endpoint: targets
                .iter()
                .zip(&outcome.by_endpoint)
                .filter(|(_, h)| targets.len() > 1 && !h.is_empty())
                .map(|(t, h)| EndpointLatency {
                    endpoint: t.endpoint().to_string(),
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                })
                .collect(),
            timeline: args
                .timeline
                .map(|width| timeline::windows(std::mem::take(&mut outcome.samples), width))
                .unwrap_or_default(),
            verify: None,
        };
        if !args.json {
            print_row(&report);
            for e in &report.by_endpoint {
                eprintln!(
                    "  {}: p50 {:.2} ms, p99 {:.2} ms",
                    e.endpoint, e.p50_ms, e.p99_ms
                );
            }
            for w in &report.timeline {
                eprintln!(
                    "  {:>7} ms: {:>6} answers, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    w.start_ms, w.answers, w.p50_ms, w.p99_ms, w.max_ms
                );
            }
        }
        if !args.no_verify {
            let verdict =
                verify::verify(&nodes, &args.pool, &outcome.acked, Duration::from_secs(60)).await?;
            if !args.json {
                if verdict.ok() {
                    eprintln!(
                        "  verify: ok — {} acknowledged ({} held) on all {} nodes at applied index {}, pool sizes {:?}, no address twice ({} ms)",
                        verdict.acknowledged,
                        verdict.held,
                        nodes.len(),
                        verdict.applied_index,
                        verdict.pool_sizes,
                        verdict.took_ms
                    );
                } else {
                    eprintln!("  verify: VIOLATED");
                    for v in &verdict.violations {
                        eprintln!("    {v}");
                    }
                }
            }
            violated |= !verdict.ok();
            report.verify = Some(verdict);
        }
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        if violated {
            break;
        }
    }
    Ok(if violated {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(not(feature = "etcd"))]
async fn run_etcd(_: &Args) -> anyhow::Result<ExitCode> {
    bail!("this ipam-bench was built without --features etcd")
}

/// The etcd loop for every client count, printed in the same table as raft-ipam's runs.
#[cfg(feature = "etcd")]
async fn run_etcd(args: &Args) -> anyhow::Result<ExitCode> {
    if args.etcd_endpoints.is_empty() {
        bail!("--target etcd needs --etcd-endpoints");
    }
    for e in &args.etcd_endpoints {
        check_loopback(e)?;
    }
    let client = etcd::connect(&args.etcd_endpoints).await?;
    let duration = secs(args.duration, "duration")?;
    let warmup = secs(args.warmup, "warmup")?;
    if !args.json {
        print_header();
    }
    for &clients in &args.clients {
        let load_before = sys::load_average();
        let cpu_before = sys::cpu_time(None);
        let nodes_before = sys::cpu_time_of(&args.node_pids);
        let o = etcd::run(&client, args.mode, clients, warmup, duration).await?;
        let elapsed = o.elapsed.as_secs_f64().max(1e-9);
        let h = &o.latency;
        let mut errors = o.errors;
        if o.conflicts > 0 {
            errors.insert("cas_retries".to_string(), o.conflicts);
        }
        let report = Report {
            mode: args.mode,
            targets: Targets::Spread,
            clients,
            batch_size: None,
            requests: o.ok_requests,
            allocations: o.allocations,
            releases: o.releases,
            existing: 0,
            elapsed_s: elapsed,
            allocations_per_s: o.allocations as f64 / elapsed,
            requests_per_s: o.ok_requests as f64 / elapsed,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            errors,
            entries: None,
            entries_per_s: None,
            ops_per_entry: None,
            bench_cpu_s: sys::cpu_time(None)
                .zip(cpu_before)
                .map(|(a, b)| (a - b).as_secs_f64()),
            nodes_cpu_s: sys::cpu_time_of(&args.node_pids)
                .zip(nodes_before)
                .map(|(a, b)| (a - b).as_secs_f64()),
            load_before,
            load_after: sys::load_average(),
            // etcd's client balances over its endpoints itself: no split by endpoint.
            by_endpoint: Vec::new(),
            timeline: Vec::new(),
            verify: None,
        };
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_row(&report);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if args.floor {
        run_floor(&args).await
    } else if args.target == Target::Etcd {
        run_etcd(&args).await
    } else {
        run_load(&args).await
    }
}

/// Ops the nodes applied for a run's acknowledged requests, warm-up included: allocations,
/// acknowledged releases and renewals (a batch's allocations are each one op).
fn ops_of(outcome: &load::Outcome) -> u64 {
    let released = outcome
        .acked
        .iter()
        .filter(|a| a.released == Some(true))
        .count();
    (outcome.acked.len() + released) as u64 + outcome.renewals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_count_allocations_releases_and_renewals() {
        let acked = |released| load::Acked {
            allocation: serde_json::from_value(serde_json::json!({
                "pool": "p", "ip": "10.0.0.1", "owner": "o", "generation": 1,
                "allocated_at": "2026-01-01T00:00:00Z", "labels": {}
            }))
            .expect("an allocation"),
            released,
        };
        let outcome = load::Outcome {
            latency: hdrhistogram::Histogram::new(3).expect("histogram"),
            by_endpoint: Vec::new(),
            ok_requests: 0,
            allocations: 0,
            releases: 0,
            existing: 0,
            errors: Default::default(),
            elapsed: std::time::Duration::ZERO,
            acked: vec![acked(Some(true)), acked(Some(false)), acked(None)],
            renewals: 5,
            samples: Vec::new(),
        };
        assert_eq!(ops_of(&outcome), 3 + 1 + 5);
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# HELP ipam_raft_commit_index x\n# TYPE ipam_raft_commit_index gauge\n\
                    ipam_raft_commit_index_total 7\nipam_raft_commit_index 42\n";
        assert_eq!(metric(text, "ipam_raft_commit_index"), Some(42.0));
        assert_eq!(metric(text, "ipam_raft_applied_index"), None);
    }

    #[test]
    fn only_loopback_endpoints_are_accepted() {
        for ok in [
            "http://127.0.0.1:7470",
            "127.0.0.1:1",
            "http://[::1]:7470",
            "http://localhost:7470",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:7470",
            "http://example.com",
            "http://[fd00::1]:1",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }
}
