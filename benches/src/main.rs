//! `ipam-bench` drives a live raft-ipam cluster over HTTP through `ipam-client` and prints
//! throughput and latency: N concurrent clients (`--clients 1,8,64,256`, one run per value)
//! allocate for fresh owners (`--mode allocate | mixed | batch`) for `--duration` seconds or
//! `--count` allocations, spread over every node or sent to the leader only (`--targets`).
//! Each run gets a fresh pool; afterwards the tool waits until the cluster converges and
//! checks every node's replica (`?consistency=local`): every acknowledged allocation present,
//! no address twice, replicas equal. One line per run, or JSON lines with `--json`. It only
//! targets the endpoints it is given; `benches/cluster.sh` starts a loopback cluster for it.
//!
//! # Layout
//!
//! - `main` — flags, target selection, one fresh pool per run, the report.
//! - [`load`] — the concurrent clients and what they measure.
//! - [`verify`] — convergence wait and the replica checks.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use ipam_client::types::CreatePoolRequest;
use ipam_client::Client;

mod load;
mod verify;

use load::{Load, Mode, Outcome, Stop};

/// Load generator for a live raft-ipam cluster.
#[derive(Debug, Parser)]
#[command(name = "ipam-bench", version, about)]
struct Args {
    /// Node endpoints, comma-separated (`http://127.0.0.1:7470,http://127.0.0.1:7471`).
    #[arg(long, env = "IPAM_ENDPOINTS", value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Cluster token.
    #[arg(long, env = "IPAM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Concurrent clients; one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    clients: Vec<usize>,
    /// What each client does.
    #[arg(long, value_enum, default_value_t = Mode::Allocate)]
    mode: Mode,
    /// Seconds per run (ignored with --count).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop each run after this many allocations instead of after --duration.
    #[arg(long)]
    count: Option<u64>,
    /// Which nodes clients talk to.
    #[arg(long, value_enum, default_value_t = Targets::All)]
    targets: Targets,
    /// Ops per request in `batch` mode (1–1000).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Addresses a `mixed` client holds before it releases its oldest after each allocation.
    #[arg(long, default_value_t = 4)]
    hold: usize,
    /// Address family of the benchmark pools (`v4`: a /12 per run, 1,048,574 addresses).
    #[arg(long, value_enum, default_value_t = Family::V4)]
    family: Family,
    /// Pool name prefix; each run creates `<prefix>-<n>` and force-deletes it afterwards.
    #[arg(long, default_value = "bench")]
    pool_prefix: String,
    /// Keep the pools after the runs.
    #[arg(long)]
    keep_pools: bool,
    /// Skip the post-run replica check.
    #[arg(long)]
    no_verify: bool,
    /// Seconds to wait for the cluster to converge before checking replicas.
    #[arg(long, default_value_t = 60.0)]
    converge_timeout: f64,
    /// Seconds to wait for every node to be ready (`/readyz`) before the first run.
    #[arg(long, default_value_t = 30.0)]
    ready_timeout: f64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// One JSON object per run instead of table lines.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Targets {
    /// Client i talks to endpoint i mod N: followers forward writes to the leader.
    All,
    /// Every client talks to the current leader.
    Leader,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Family {
    /// `10.<16k>.0.0/12` for run k (up to 16 runs).
    V4,
    /// `fd00:0:0:<k>::/64` for run k.
    V6,
}

/// One line of the report.
#[derive(serde::Serialize)]
struct RunReport {
    mode: Mode,
    clients: usize,
    targets: Targets,
    pool: String,
    seconds: f64,
    requests: u64,
    allocations: u64,
    releases: u64,
    allocations_per_sec: f64,
    requests_per_sec: f64,
    latency_us: Latency,
    errors: std::collections::BTreeMap<String, u64>,
    uncertain: usize,
    verify: Option<verify::Verdict>,
}

#[derive(serde::Serialize)]
struct Latency {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.clients.contains(&0) {
        bail!("--clients values must be at least 1");
    }
    if !(1..=1000).contains(&args.batch_size) {
        bail!("--batch-size must be 1 to 1000");
    }
    let runs = args.clients.len();
    if args.family == Family::V4 && runs > 16 {
        bail!("at most 16 runs with --family v4");
    }
    // One connection pool for every client of every node: connections are reused across
    // requests, and each concurrent client holds its own.
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .build()?;
    let timeout = Duration::from_secs_f64(args.request_timeout);
    let nodes = args
        .endpoints
        .iter()
        .map(|e| {
            Ok(
                Client::with_http_client(e, args.token.clone(), http.clone())?
                    .with_timeout(timeout),
            )
        })
        .collect::<anyhow::Result<Vec<Client>>>()?;
    wait_ready(&nodes, Duration::from_secs_f64(args.ready_timeout)).await?;
    let targets = match args.targets {
        Targets::All => nodes.clone(),
        Targets::Leader => vec![leader(&nodes, &args, &http, timeout).await?],
    };

    if !args.json {
        println!("{}", header());
    }
    let prefix = format!("{}-{}", args.pool_prefix, std::process::id());
    for (k, &clients) in args.clients.iter().enumerate() {
        let pool = format!("{prefix}-{k}");
        let cidr = match args.family {
            Family::V4 => format!("10.{}.0.0/12", k * 16),
            Family::V6 => format!("fd00:0:0:{k:x}::/64"),
        };
        nodes[0]
            .create_pool(&CreatePoolRequest {
                name: pool.clone(),
                cidr: cidr.clone(),
                gateway: ipam_client::types::GatewayField::None,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating pool {pool} ({cidr})"))?;
        let load = Load {
            mode: args.mode,
            clients,
            pool: pool.clone(),
            stop: match args.count {
                Some(n) => Stop::Count(n),
                None => Stop::Duration(Duration::from_secs_f64(args.duration)),
            },
            batch_size: args.batch_size,
            hold: args.hold,
            owner_prefix: format!("{prefix}-{k}"),
        };
        let outcome = load::run(load, &targets).await;
        let verdict = if args.no_verify {
            None
        } else {
            verify::converge(&nodes, Duration::from_secs_f64(args.converge_timeout)).await?;
            Some(verify::check(&nodes, &pool, &outcome.live, &outcome.uncertain).await?)
        };
        let report = report(&args, clients, pool.clone(), outcome, verdict);
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{}", line(&report));
            if let Some(v) = &report.verify {
                for p in &v.problems {
                    println!("  VERIFY: {p}");
                }
            }
        }
        if !args.keep_pools {
            nodes[0]
                .delete_pool(&pool, true)
                .await
                .with_context(|| format!("deleting pool {pool}"))?;
        }
        if report
            .verify
            .as_ref()
            .is_some_and(|v| !v.problems.is_empty())
        {
            bail!("verification failed for {clients} clients");
        }
    }
    Ok(())
}

/// Polls `/readyz` of every node until each answers 200, within `deadline`.
async fn wait_ready(nodes: &[Client], deadline: Duration) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + deadline;
    for node in nodes {
        loop {
            let last = match node.readyz().await {
                Ok(true) => break,
                Ok(false) => "not ready (no leader, or still applying)".to_string(),
                Err(e) => e.to_string(),
            };
            if std::time::Instant::now() >= until {
                bail!("{} within {deadline:?}: {last}", node.endpoint());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The leader's endpoint: its `addr` from the cluster status, with the scheme of the first
/// endpoint.
async fn leader(
    nodes: &[Client],
    args: &Args,
    http: &reqwest::Client,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let status = nodes[0].cluster_status().await?;
    let id = status.leader.context("the cluster has no leader")?;
    let member = status
        .members
        .iter()
        .find(|m| m.id == id)
        .context("the leader is not among the members")?;
    let scheme = if nodes[0].endpoint().starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let endpoint = format!("{scheme}://{}", member.addr);
    Ok(
        Client::with_http_client(&endpoint, args.token.clone(), http.clone())?
            .with_timeout(timeout),
    )
}

fn report(
    args: &Args,
    clients: usize,
    pool: String,
    o: Outcome,
    verify: Option<verify::Verdict>,
) -> RunReport {
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    RunReport {
        mode: args.mode,
        clients,
        targets: args.targets,
        pool,
        seconds: secs,
        requests: o.requests,
        allocations: o.allocations,
        releases: o.releases,
        allocations_per_sec: o.allocations as f64 / secs,
        requests_per_sec: o.requests as f64 / secs,
        latency_us: Latency {
            p50: o.latency.value_at_quantile(0.5),
            p99: o.latency.value_at_quantile(0.99),
            p999: o.latency.value_at_quantile(0.999),
            max: o.latency.max(),
        },
        errors: o.errors,
        uncertain: o.uncertain.len(),
        verify,
    }
}

fn header() -> String {
    format!(
        "{:<8} {:>7} {:<6} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}  {}",
        "mode",
        "clients",
        "target",
        "secs",
        "requests",
        "allocs",
        "allocs/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "errors",
        "verify"
    )
}

fn line(r: &RunReport) -> String {
    let mode = match r.mode {
        Mode::Allocate => "allocate",
        Mode::Mixed => "mixed",
        Mode::Batch => "batch",
    };
    let targets = match r.targets {
        Targets::All => "all",
        Targets::Leader => "leader",
    };
    let errors: u64 = r.errors.values().sum();
    let verify = match &r.verify {
        None => "skipped".to_string(),
        Some(v) if v.problems.is_empty() => {
            format!("ok ({} nodes, {} held)", v.nodes, v.held)
        }
        Some(v) => format!("FAILED ({} problems)", v.problems.len()),
    };
    let errors = if errors == 0 {
        "0".to_string()
    } else {
        let detail: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c}={n}")).collect();
        format!("{errors} [{}]", detail.join(" "))
    };
    format!(
        "{:<8} {:>7} {:<6} {:>8.1} {:>9} {:>10} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>7}  {}",
        mode,
        r.clients,
        targets,
        r.seconds,
        r.requests,
        r.allocations,
        r.allocations_per_sec,
        micros(r.latency_us.p50),
        micros(r.latency_us.p99),
        micros(r.latency_us.p999),
        micros(r.latency_us.max),
        errors,
        verify
    )
}

/// `850µs`, `12.3ms`, `1.20s`.
fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_readable() {
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(12_345), "12.3ms");
        assert_eq!(micros(1_200_000), "1.20s");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
