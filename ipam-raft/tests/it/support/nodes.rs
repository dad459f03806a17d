//! In-process nodes over real HTTP on 127.0.0.1 ephemeral ports (cluster tests).

use std::collections::BTreeMap;
use std::time::Duration;

use ipam_core::{GatewayChoice, PoolSpec};
use ipam_raft::{Config, Ipam};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(20);

/// Multi-node tests and long load tests take this first, so that they run one at a time, as when
/// each test file was its own binary: they share two cores with the rest of the binary's tests.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct TestNode {
    pub ipam: Ipam,
    pub addr: String,
    pub server: JoinHandle<()>,
}

pub async fn start_node(id: u64, dir: &std::path::Path) -> TestNode {
    start_with(id, dir, |_| {}).await
}

pub async fn start_with(
    id: u64,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut Config),
) -> TestNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut config = Config::new(id, dir.join(format!("n{id}")), addr.clone());
    tweak(&mut config);
    let ipam = Ipam::start(config).await.expect("start");
    let router = ipam.raft_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    TestNode { ipam, addr, server }
}

/// Node 1 started with `tweak`, initialised alone and leading, with pool `vms` on `cidr`.
pub async fn lone_leader(
    dir: &std::path::Path,
    cidr: &str,
    tweak: impl FnOnce(&mut Config),
) -> TestNode {
    let n = start_with(1, dir, tweak).await;
    n.ipam.init(Vec::new()).await.expect("init");
    n.ipam
        .wait_for(WAIT, |s| s.leader == Some(1))
        .await
        .expect("leader");
    n.ipam.create_pool(spec("vms", cidr)).await.expect("pool");
    n
}

pub fn spec(name: &str, cidr: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        cidr: cidr.parse().expect("cidr"),
        gateway: GatewayChoice::Default,
        reserved: Vec::new(),
        labels: BTreeMap::new(),
        description: String::new(),
    }
}

/// `n` voters started with `tweak` and initialised through node `init_via` (0-based), with a
/// leader elected; returns the nodes and the status naming the leader.
pub async fn voters(
    n: u64,
    dir: &std::path::Path,
    init_via: usize,
    tweak: impl Fn(&mut Config),
) -> (Vec<TestNode>, ipam_raft::ClusterStatus) {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(start_with(id, dir, &tweak).await);
    }
    let members = nodes
        .iter()
        .map(|n| (n.ipam.id(), n.addr.clone()))
        .collect();
    nodes[init_via].ipam.init(members).await.expect("init");
    let st = nodes[0]
        .ipam
        .wait_for(WAIT, |s| s.leader.is_some())
        .await
        .expect("leader");
    (nodes, st)
}

/// Three voters initialised through node `init_via` (0-based), with a leader elected and
/// pool `vms` (10.0.0.0/24) created; returns the nodes and the status naming the leader.
pub async fn three_voters_with_pool(
    dir: &std::path::Path,
    init_via: usize,
    tweak: impl Fn(&mut Config),
) -> (Vec<TestNode>, ipam_raft::ClusterStatus) {
    let (nodes, st) = voters(3, dir, init_via, tweak).await;
    nodes[0]
        .ipam
        .create_pool(spec("vms", "10.0.0.0/24"))
        .await
        .expect("pool");
    (nodes, st)
}

/// Shuts the node down and stops its listener.
pub async fn stop(n: TestNode) {
    n.ipam.shutdown().await.expect("shutdown");
    n.server.abort();
}

pub async fn wait_converged(nodes: &[TestNode]) {
    let leader = nodes[0]
        .ipam
        .wait_for(WAIT, |s| s.leader.is_some())
        .await
        .expect("leader");
    let target = leader.last_log_index;
    for n in nodes {
        n.ipam
            .wait_for(WAIT, |s| s.applied_index >= target)
            .await
            .expect("applied");
    }
}
