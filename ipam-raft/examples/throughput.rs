//! Rough write throughput of an in-process 3-node cluster over HTTP on 127.0.0.1.
//!
//! `cargo run --release -p ipam-raft --example throughput -- [clients] [seconds]`
//! (`INFLIGHT=n` overrides `Config::max_inflight_entries`)
//!
//! Prints allocations/s, log entries/s (so ops per entry) and latency percentiles for
//! allocations sent through the leader and through a follower.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipam_core::{GatewayChoice, PoolSpec};
use ipam_raft::{Config, Ipam};
use tokio::net::TcpListener;

async fn node(id: u64, dir: &std::path::Path) -> (Ipam, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut config = Config::new(id, dir.join(format!("n{id}")), addr.clone());
    if let Some(n) = std::env::var("INFLIGHT").ok().and_then(|v| v.parse().ok()) {
        config.max_inflight_entries = n;
    }
    let ipam = Ipam::start(config).await.expect("start");
    let router = ipam.raft_router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (ipam, addr)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

async fn run(label: &str, target: &Ipam, leader: &Ipam, pool: &str, clients: usize, secs: u64) {
    let start_index = leader.status().last_log_index;
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let ipam = target.clone();
        let pool = pool.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                let owner = format!("c{c}-{i}");
                if ipam
                    .allocate(&pool, &owner, None, BTreeMap::new())
                    .await
                    .is_ok()
                {
                    lat.push(t.elapsed());
                }
                i += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("join"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let entries = leader.status().last_log_index - start_index;
    println!(
        "{label}: {clients} clients, {:.0} allocations/s, {:.0} entries/s ({:.1} ops/entry), p50 {:?}, p99 {:?}, max {:?}",
        lat.len() as f64 / elapsed,
        entries as f64 / elapsed,
        lat.len() as f64 / entries.max(1) as f64,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or_default(),
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = tempfile::TempDir::new().expect("tmp");
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(node(id, dir.path()).await);
    }
    let members = nodes
        .iter()
        .enumerate()
        .map(|(i, (_, a))| (i as u64 + 1, a.clone()))
        .collect();
    nodes[0].0.init(members).await.expect("init");
    let st = nodes[0]
        .0
        .wait_for(Duration::from_secs(20), |s| s.leader.is_some())
        .await
        .expect("leader");
    let leader = nodes
        .iter()
        .find(|(n, _)| Some(n.id()) == st.leader)
        .expect("leader")
        .0
        .clone();
    let follower = nodes
        .iter()
        .find(|(n, _)| !n.is_leader())
        .expect("follower")
        .0
        .clone();
    for (name, cidr) in [("a", "10.0.0.0/8"), ("b", "11.0.0.0/8")] {
        leader
            .create_pool(PoolSpec {
                name: name.into(),
                cidr: cidr.parse().expect("cidr"),
                gateway: GatewayChoice::Default,
                reserved: Vec::new(),
                labels: BTreeMap::new(),
                description: String::new(),
            })
            .await
            .expect("pool");
    }
    run("single client via leader", &leader, &leader, "a", 1, secs).await;
    run("via leader", &leader, &leader, "a", clients, secs).await;
    run("via follower", &follower, &leader, "b", clients, secs).await;
    for (n, _) in &nodes {
        let _ = n.shutdown().await;
    }
}
