//! In-process clusters over real HTTP on 127.0.0.1 ephemeral ports.

use std::collections::BTreeMap;
use std::time::Duration;

use ipam_core::{GatewayChoice, PoolSpec};
use ipam_raft::{Config, Consistency, Ipam, IpamError, MemberRole};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

struct TestNode {
    ipam: Ipam,
    addr: String,
    server: JoinHandle<()>,
}

async fn start_node(id: u64, dir: &std::path::Path) -> TestNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let config = Config::new(id, dir.join(format!("n{id}")), addr.clone());
    let ipam = Ipam::start(config).await.expect("start");
    let router = ipam.raft_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    TestNode { ipam, addr, server }
}

fn spec(name: &str, cidr: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        cidr: cidr.parse().expect("cidr"),
        gateway: GatewayChoice::Default,
        reserved: Vec::new(),
        labels: BTreeMap::new(),
        description: String::new(),
    }
}

async fn wait_converged(nodes: &[TestNode]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_allocate_through_every_node() {
    let dir = TempDir::new().expect("tempdir");
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start_node(id, dir.path()).await);
    }
    let members: Vec<(u64, String)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u64 + 1, n.addr.clone()))
        .collect();
    nodes[0].ipam.init(members).await.expect("init");
    assert!(matches!(
        nodes[0].ipam.init(Vec::new()).await,
        Err(IpamError::AlreadyInitialized)
    ));
    for n in &nodes {
        n.ipam.wait_for(WAIT, |s| s.leader.is_some()).await.expect("leader known");
    }
    let status = nodes[1].ipam.status();
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.role == MemberRole::Voter));

    // Through a node that may or may not lead.
    let pool = nodes[2].ipam.create_pool(spec("vms", "10.0.0.0/24")).await.expect("pool");
    assert_eq!(pool.name, "vms");

    // Concurrent allocations through every node.
    let mut tasks = Vec::new();
    for i in 0..30u32 {
        let ipam = nodes[(i % 3) as usize].ipam.clone();
        tasks.push(tokio::spawn(async move {
            ipam.allocate("vms", &format!("vm-{i}"), None, BTreeMap::new()).await
        }));
    }
    let mut ips = std::collections::BTreeSet::new();
    for t in tasks {
        let (a, existing) = t.await.expect("join").expect("allocate");
        assert!(!existing);
        assert!(ips.insert(a.ip), "address handed out twice: {}", a.ip);
    }
    assert_eq!(ips.len(), 30);

    // A linearizable read on any node sees every acknowledged write.
    for n in &nodes {
        let p = n.ipam.pool("vms", Consistency::Linearizable).await.expect("read");
        assert_eq!(p.stats.allocated, 30);
    }

    // Allocating again for a known owner is a cache hit on any node: same address, existing.
    let follower = nodes.iter().find(|n| !n.ipam.is_leader()).expect("a follower");
    let before = follower.ipam.cache_stats();
    let (again, existing) = follower
        .ipam
        .allocate("vms", "vm-4", None, BTreeMap::new())
        .await
        .expect("again");
    assert!(existing);
    assert!(ips.contains(&again.ip));
    assert_eq!(follower.ipam.cache_stats().0, before.0 + 1);

    // Domain errors come back typed.
    let err = nodes[1].ipam.create_pool(spec("vms", "10.1.0.0/24")).await.unwrap_err();
    assert!(matches!(err, IpamError::Op(_)), "{err:?}");

    wait_converged(&nodes).await;
    let d0 = nodes[0].ipam.digest().await.expect("digest");
    for n in &nodes[1..] {
        assert_eq!(n.ipam.digest().await.expect("digest"), d0);
    }

    for n in &nodes {
        n.ipam.shutdown().await.expect("shutdown");
        n.server.abort();
    }
}
