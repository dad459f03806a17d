//! In-process clusters over real HTTP on 127.0.0.1 ephemeral ports.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::nodes::{
    lone_leader, spec, start_node, start_with, stop, three_voters_with_pool, wait_converged,
    TestNode, SERIAL, WAIT,
};
use ipam_raft::{Config, Consistency, Ipam, IpamError, MemberRole};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_allocate_through_every_node() {
    let _serial = SERIAL.lock().await;
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
        n.ipam
            .wait_for(WAIT, |s| s.leader.is_some())
            .await
            .expect("leader known");
    }
    let status = nodes[1].ipam.status();
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.role == MemberRole::Voter));

    // Through a node that may or may not lead.
    let pool = nodes[2]
        .ipam
        .create_pool(spec("vms", "10.0.0.0/24"))
        .await
        .expect("pool");
    assert_eq!(pool.name, "vms");

    // Concurrent allocations through every node.
    let mut tasks = Vec::new();
    for i in 0..30u32 {
        let ipam = nodes[(i % 3) as usize].ipam.clone();
        tasks.push(tokio::spawn(async move {
            ipam.allocate("vms", &format!("vm-{i}"), None, BTreeMap::new())
                .await
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
        let p = n
            .ipam
            .pool("vms", Consistency::Linearizable)
            .await
            .expect("read");
        assert_eq!(p.stats.allocated, 30);
    }

    // Allocating again for a known owner is a cache hit on any node: same address, existing.
    let follower = nodes
        .iter()
        .find(|n| !n.ipam.is_leader())
        .expect("a follower");
    let before = follower.ipam.cache_stats();
    let (again, existing) = follower
        .ipam
        .allocate("vms", "vm-4", None, BTreeMap::new())
        .await
        .expect("again");
    assert!(existing);
    assert!(ips.contains(&again.ip));
    assert_eq!(follower.ipam.cache_stats().0, before.0 + 1);

    // One write at a time, through every node: each is answered by the leader's apply (a
    // follower's forwarded list counts once there, and is one write here).
    let early = |nodes: &[TestNode]| -> u64 { nodes.iter().map(|n| n.ipam.early_answers()).sum() };
    let before = early(&nodes);
    for i in 0..6u32 {
        nodes[(i % 3) as usize]
            .ipam
            .allocate("vms", &format!("one-by-one-{i}"), None, BTreeMap::new())
            .await
            .expect("allocate");
    }
    assert!(
        early(&nodes) >= before + 6,
        "{} → {}",
        before,
        early(&nodes)
    );

    // Domain errors come back typed.
    let err = nodes[1]
        .ipam
        .create_pool(spec("vms", "10.1.0.0/24"))
        .await
        .unwrap_err();
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

async fn digests_equal(nodes: &[&TestNode]) {
    let leader = nodes[0]
        .ipam
        .wait_for(WAIT, |s| s.leader.is_some())
        .await
        .expect("leader");
    for n in nodes {
        n.ipam
            .wait_for(WAIT, |s| s.applied_index >= leader.committed_index)
            .await
            .expect("caught up");
    }
    let d0 = nodes[0].ipam.digest().await.expect("digest");
    for n in &nodes[1..] {
        assert_eq!(
            n.ipam.digest().await.expect("digest"),
            d0,
            "node {}",
            n.ipam.id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_nodes_catch_up_through_a_snapshot_and_become_voters() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let small_snapshots = |c: &mut Config| {
        c.snapshot_logs = 20;
        c.max_in_snapshot_log_to_keep = 0;
        c.snapshot_max_chunk_size = 4096;
    };
    let n1 = lone_leader(dir.path(), "10.0.0.0/16", small_snapshots).await;
    // Sequential writes make many entries, so the leader snapshots and purges its log.
    for i in 0..60 {
        n1.ipam
            .allocate("vms", &format!("vm-{i}"), None, BTreeMap::new())
            .await
            .expect("allocate");
    }
    let st = n1.ipam.status();
    assert!(st.applied_index >= 61, "{st:?}");

    let n2 = start_with(2, dir.path(), small_snapshots).await;
    let n3 = start_with(3, dir.path(), small_snapshots).await;
    // Membership calls work on any node: add through the leader, promote through a learner.
    n1.ipam
        .add_learner(2, n2.addr.clone())
        .await
        .expect("learner 2");
    n1.ipam
        .add_learner(3, n3.addr.clone())
        .await
        .expect("learner 3");
    assert!(n2.ipam.status().applied_index >= st.applied_index);
    // The learner received the state through a snapshot (the log was purged).
    assert_eq!(
        n2.ipam
            .pool("vms", Consistency::Local)
            .await
            .expect("pool")
            .stats
            .allocated,
        60
    );
    assert_eq!(n2.ipam.cluster_id(), n1.ipam.cluster_id());

    let (p2, p3) = tokio::join!(n2.ipam.promote_voter(2), n3.ipam.promote_voter(3));
    p2.expect("promote 2");
    p3.expect("promote 3");
    let st = n1
        .ipam
        .wait_for(WAIT, |s| {
            s.members.iter().all(|m| m.role == MemberRole::Voter)
        })
        .await
        .expect("voters");
    assert_eq!(st.members.len(), 3);
    assert!(matches!(
        n3.ipam.promote_voter(9).await,
        Err(IpamError::UnknownNode(9))
    ));

    n3.ipam
        .allocate("vms", "late", None, BTreeMap::new())
        .await
        .expect("allocate via 3");
    digests_equal(&[&n1, &n2, &n3]).await;

    // Remove node 3 through node 2.
    n2.ipam.remove_member(3).await.expect("remove");
    let st = n1
        .ipam
        .wait_for(WAIT, |s| s.members.len() == 2)
        .await
        .expect("removed");
    assert!(st.members.iter().all(|m| m.id != 3));
    assert!(matches!(
        n1.ipam.remove_member(3).await,
        Err(IpamError::UnknownNode(3))
    ));

    for n in [n1, n2, n3] {
        stop(n).await;
    }
}

/// A membership call waits until its own node has applied the change (so the status it
/// returns shows it) — except when the node removed itself: no leader may talk to it any
/// more, and the wait would last the whole read deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_removes_itself_returns_at_once() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let long = Duration::from_secs(600);
    let (nodes, st) = three_voters_with_pool(dir.path(), 0, |c| c.read_deadline = long).await;
    let leader_id = st.leader.expect("leader");
    let (leader, followers): (Vec<&TestNode>, Vec<&TestNode>) =
        nodes.iter().partition(|n| n.ipam.id() == leader_id);
    // A follower, then the leader.
    let follower = followers[0].ipam.id();
    tokio::time::timeout(WAIT, followers[0].ipam.remove_member(follower))
        .await
        .expect("the follower returned before the read deadline")
        .expect("removed");
    leader[0]
        .ipam
        .wait_for(WAIT, |s| s.members.len() == 2)
        .await
        .expect("two members");
    tokio::time::timeout(WAIT, leader[0].ipam.remove_member(leader_id))
        .await
        .expect("the leader returned before the read deadline")
        .expect("removed");
    let st = followers[1]
        .ipam
        .wait_for(WAIT, |s| s.members.len() == 1 && s.leader.is_some())
        .await
        .expect("one member, leading");
    assert_eq!(st.members[0].id, followers[1].ipam.id());
    for n in nodes {
        stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_leader_loss_and_a_restarted_node_catches_up() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let (mut nodes, st) = three_voters_with_pool(dir.path(), 1, |_| {}).await;
    let (a, _) = nodes[0]
        .ipam
        .allocate("vms", "before", None, BTreeMap::new())
        .await
        .expect("allocate");

    // Stop the leader; the others elect a new one and keep serving.
    let leader_id = st.leader.expect("leader");
    let pos = nodes
        .iter()
        .position(|n| n.ipam.id() == leader_id)
        .expect("leader node");
    let old = nodes.remove(pos);
    let old_id = old.ipam.id();
    stop(old).await;
    nodes[0]
        .ipam
        .wait_for(WAIT, |s| s.leader.is_some_and(|l| l != old_id))
        .await
        .expect("new leader");
    let (b, existing) = nodes[1]
        .ipam
        .allocate("vms", "after", None, BTreeMap::new())
        .await
        .expect("allocate after failover");
    assert!(!existing);
    assert_ne!(a.ip, b.ip);
    let (again, existing) = nodes[0]
        .ipam
        .allocate("vms", "before", None, BTreeMap::new())
        .await
        .expect("again");
    assert!(existing);
    assert_eq!(again.ip, a.ip);

    // Another id on the stopped node's data dir is refused.
    let wrong = Config::new(
        old_id + 10,
        dir.path().join(format!("n{old_id}")),
        "127.0.0.1:1",
    );
    assert!(matches!(
        Ipam::start(wrong).await,
        Err(ipam_raft::StartError::NodeIdMismatch { .. })
    ));
    // The stopped node restarts in-process on its data dir (a new port) and catches up.
    let back = start_node(old_id, dir.path()).await;
    // Its peers know its old address: re-register the new one.
    nodes[0]
        .ipam
        .add_learner(old_id, back.addr.clone())
        .await
        .ok();
    nodes[0]
        .ipam
        .promote_voter(old_id)
        .await
        .expect("still a voter");
    let got = back
        .ipam
        .pool("vms", Consistency::Linearizable)
        .await
        .expect("linearizable read on the restarted node");
    assert_eq!(got.stats.allocated, 2);
    nodes.push(back);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    digests_equal(&refs).await;
    for n in nodes {
        stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_loses_its_writes_to_the_majority() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let (nodes, st) =
        three_voters_with_pool(dir.path(), 0, |c| c.write_deadline = Duration::from_secs(3)).await;
    let leader = nodes
        .iter()
        .find(|n| Some(n.ipam.id()) == st.leader)
        .expect("leader");
    let others: Vec<&TestNode> = nodes
        .iter()
        .filter(|n| n.ipam.id() != leader.ipam.id())
        .collect();

    leader.ipam.set_isolated(true);
    others[0]
        .ipam
        .wait_for(WAIT, |s| s.leader.is_some_and(|l| l != leader.ipam.id()))
        .await
        .expect("majority elects a new leader");
    // The cut-off node cannot commit: its write fails (and must not apply later).
    let err = leader
        .ipam
        .allocate("vms", "cut-off", None, BTreeMap::new())
        .await
        .expect_err("isolated write");
    assert!(
        matches!(
            err,
            IpamError::DeadlineExceeded { .. } | IpamError::NoLeader
        ),
        "{err:?}"
    );
    // Nor can it serve a linearizable read.
    assert!(leader
        .ipam
        .pool("vms", Consistency::Linearizable)
        .await
        .is_err());
    let (a, _) = others[1]
        .ipam
        .allocate("vms", "majority", None, BTreeMap::new())
        .await
        .expect("majority write");

    leader.ipam.set_isolated(false);
    let p = leader
        .ipam
        .pool("vms", Consistency::Linearizable)
        .await
        .expect("healed read");
    assert_eq!(p.stats.allocated, 1);
    let info = leader
        .ipam
        .address(a.ip, Consistency::Linearizable)
        .await
        .expect("address");
    assert_eq!(
        info.allocation.map(|x| x.owner),
        Some("majority".to_string())
    );
    digests_equal(&nodes.iter().collect::<Vec<_>>()).await;
    for n in nodes {
        stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_log_entries() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let n = one_slot_node(dir.path(), "10.0.0.0/16").await;
    let before = n.ipam.status().last_log_index;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let ipam = n.ipam.clone();
        tasks.push(tokio::spawn(async move {
            ipam.allocate("vms", &format!("vm-{i}"), None, BTreeMap::new())
                .await
        }));
    }
    let mut ips = std::collections::BTreeSet::new();
    for t in tasks {
        let (a, _) = t.await.expect("join").expect("allocate");
        ips.insert(a.ip);
    }
    assert_eq!(ips.len(), 200);
    let entries = n.ipam.status().last_log_index - before;
    // While one entry commits, everything queued meanwhile goes into the next one.
    assert!(
        entries <= 100,
        "200 concurrent writes took {entries} log entries"
    );
    eprintln!("200 concurrent writes in {entries} log entries");
    stop(n).await;
}

/// A single initialised node with one entry in flight at a time and pool `vms` on `cidr`.
async fn one_slot_node(dir: &std::path::Path, cidr: &str) -> TestNode {
    lone_leader(dir, cidr, |c| c.max_inflight_entries = 1).await
}

/// A lone write runs on its caller's task: callers that go away mid-write (a dropped
/// future, as when a client disconnects) must give back their entry slot, or with one slot
/// every later write would wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_writes_free_their_entry_slot() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let n = one_slot_node(dir.path(), "10.0.0.0/24").await;
    for i in 0..20 {
        let ipam = n.ipam.clone();
        let write = tokio::spawn(async move {
            ipam.allocate("vms", &format!("gone-{i}"), None, BTreeMap::new())
                .await
        });
        for _ in 0..i {
            tokio::task::yield_now().await;
        }
        write.abort();
        let _ = write.await;
    }
    let (a, existing) =
        tokio::time::timeout(WAIT, n.ipam.allocate("vms", "after", None, BTreeMap::new()))
            .await
            .expect("a write after abandoned ones never finished")
            .expect("allocate");
    assert!(!existing);
    assert!(a.ip.to_string().starts_with("10.0.0."));
    stop(n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_foreign_node_is_not_added() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let token = |t: &'static str| move |c: &mut Config| c.token = Some(t.to_string());
    let n1 = start_with(1, dir.path(), token("ours")).await;
    let foreign = start_with(2, dir.path(), token("theirs")).await;
    let other = start_with(3, dir.path(), token("ours")).await;
    n1.ipam.init(Vec::new()).await.expect("init");
    n1.ipam
        .wait_for(WAIT, |s| s.leader == Some(1))
        .await
        .expect("leader");

    let err = n1
        .ipam
        .add_learner(2, foreign.addr.clone())
        .await
        .expect_err("foreign token");
    assert!(
        matches!(&err, IpamError::Membership(m) if m.contains("refused")),
        "{err:?}"
    );
    let err = n1
        .ipam
        .add_learner(4, other.addr.clone())
        .await
        .expect_err("wrong id");
    assert!(
        matches!(&err, IpamError::Membership(m) if m.contains("node 3, not 4")),
        "{err:?}"
    );
    assert_eq!(n1.ipam.status().members.len(), 1);

    for n in [n1, foreign, other] {
        stop(n).await;
    }
}
