//! Three real `ipam-node` processes on loopback: form a cluster through the API (and `--join`),
//! allocate through every node, SIGKILL the leader, keep allocating through the survivors,
//! restart it from its data dir on its old port, and check that every acknowledged allocation
//! is on every replica and no address is held twice. Bounded in count and time.

use crate::procs;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use procs::{spawn, wait_cluster, Api, Proc};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_a_leader_kill() {
    let _serial = crate::procs::SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let api = Api::http();
    let deadline = Instant::now() + Duration::from_secs(240);
    let all: BTreeSet<u64> = [1, 2, 3].into();

    // Node 1 and 2 wait to be initialised / added; node 3 joins through a list of a node that
    // is down and node 1.
    let n1 = spawn(1, "127.0.0.1:0", &tmp.path().join("n1"), &["--no-init"]);
    let n2 = spawn(2, "127.0.0.1:0", &tmp.path().join("n2"), &["--no-init"]);
    let (s, v) = api
        .until_ok(
            reqwest::Method::POST,
            &n1.addr,
            "/api/v1/cluster/init",
            None,
            deadline,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .until_ok(
            reqwest::Method::POST,
            &n1.addr,
            "/api/v1/cluster/learners",
            Some(json!({"id": 2, "addr": n2.addr})),
            deadline,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .until_ok(
            reqwest::Method::POST,
            &n1.addr,
            "/api/v1/cluster/voters/2",
            None,
            deadline,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // A list whose first node is down: the join goes through the next.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let join_url = format!("http://{down},http://{}", n1.addr);
    let n3 = spawn(
        3,
        "127.0.0.1:0",
        &tmp.path().join("n3"),
        &["--join", &join_url],
    );
    let mut nodes: BTreeMap<u64, Proc> = [(1, n1), (2, n2), (3, n3)].into();
    let leader = wait_cluster(&api, &nodes.values().collect::<Vec<_>>(), &all, deadline).await;

    // Through a follower: writes are forwarded.
    let follower = nodes.keys().copied().find(|id| *id != leader).unwrap();
    let (s, v) = api
        .until_ok(
            reqwest::Method::POST,
            &nodes[&follower].addr,
            "/api/v1/pools",
            Some(json!({"name": "p", "cidr": "10.0.0.0/24"})),
            deadline,
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let mut acked: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..30 {
        let id = [1, 2, 3][i % 3];
        let owner = format!("before-{i}");
        let a = api.allocate(&nodes[&id].addr, &owner, deadline).await;
        acked.insert(owner, a);
    }

    // SIGKILL the leader (as it is now) while four writers allocate through every node.
    // Through a follower a writer retries until acknowledged (same owner: idempotent); through
    // the leader it tries once, and an unanswered attempt may or may not have committed.
    let leader = wait_cluster(&api, &nodes.values().collect::<Vec<_>>(), &all, deadline).await;
    let addrs: Vec<(u64, String)> = nodes.iter().map(|(id, n)| (*id, n.addr.clone())).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (api, addrs, done) = (api.clone(), addrs.clone(), done.clone());
        writers.spawn(async move {
            let (mut acked, mut maybe) = (Vec::new(), Vec::new());
            for i in 0..10 {
                let owner = format!("race-{w}-{i}");
                let (id, addr) = &addrs[(w + i) % addrs.len()];
                if *id == leader {
                    let body = Some(json!({ "owner": owner }));
                    match api
                        .call(
                            reqwest::Method::POST,
                            addr,
                            "/api/v1/pools/p/allocations",
                            body,
                        )
                        .await
                    {
                        Some((200 | 201, v)) => acked.push((owner, v)),
                        _ => maybe.push(owner),
                    }
                } else {
                    let v = api.allocate(addr, &owner, deadline).await;
                    acked.push((owner, v));
                }
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            (acked, maybe)
        });
    }
    while done.load(std::sync::atomic::Ordering::Relaxed) < 8 {
        assert!(Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut killed = nodes.remove(&leader).unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let (killed_addr, killed_dir) = (killed.addr.clone(), killed.dir.clone());
    drop(killed);
    let mut maybe: BTreeSet<String> = BTreeSet::new();
    while let Some(result) = writers.join_next().await {
        let (a, m) = result.unwrap();
        acked.extend(a);
        maybe.extend(m);
    }
    assert!(maybe.len() < 40, "every write through the leader failed");

    let survivors: Vec<u64> = nodes.keys().copied().collect();
    for i in 0..20 {
        let id = survivors[i % survivors.len()];
        let owner = format!("during-{i}");
        let a = api.allocate(&nodes[&id].addr, &owner, deadline).await;
        acked.insert(owner, a);
    }

    // Restart it from its data dir on the port it had; no init, no join needed.
    let restarted = spawn(leader, &killed_addr, &killed_dir, &["--no-init"]);
    assert_eq!(restarted.addr, killed_addr);
    nodes.insert(leader, restarted);
    for i in 0..10 {
        let id = [1, 2, 3][i % 3];
        let owner = format!("after-{i}");
        let a = api.allocate(&nodes[&id].addr, &owner, deadline).await;
        acked.insert(owner, a);
    }
    wait_cluster(&api, &nodes.values().collect::<Vec<_>>(), &all, deadline).await;

    // Every acknowledged allocation on every replica, identical replicas, no address twice;
    // besides them only allocations whose answer was lost with the killed leader.
    let acked_ips: BTreeSet<&str> = acked.values().map(|a| a["ip"].as_str().unwrap()).collect();
    assert_eq!(
        acked_ips.len(),
        acked.len(),
        "an address was acknowledged twice"
    );
    loop {
        let mut views = Vec::new();
        for n in nodes.values() {
            views.push(api.local_allocations(&n.addr).await);
        }
        let converged = views.iter().all(|v| v.is_some() && *v == views[0])
            && views[0].as_ref().is_some_and(|v| {
                let owners: BTreeSet<&str> =
                    v.iter().map(|a| a["owner"].as_str().unwrap()).collect();
                acked.keys().all(|o| owners.contains(o.as_str()))
            });
        if converged {
            let view = views[0].as_ref().unwrap();
            let ips: BTreeSet<&str> = view.iter().map(|a| a["ip"].as_str().unwrap()).collect();
            assert_eq!(ips.len(), view.len(), "an address appears twice");
            for a in view {
                let owner = a["owner"].as_str().unwrap();
                match acked.get(owner) {
                    Some(ack) => {
                        assert_eq!(a["ip"], ack["ip"], "{owner}");
                        assert_eq!(a["generation"], ack["generation"], "{owner}");
                    }
                    None => assert!(maybe.contains(owner), "{owner} was never asked for"),
                }
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {:?} vs {} acknowledged and {} unanswered",
            views
                .iter()
                .map(|v| v.as_ref().map(Vec::len))
                .collect::<Vec<_>>(),
            acked.len(),
            maybe.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The restarted node serves consistent reads and is ready.
    let (s, _) = api
        .until_ok(
            reqwest::Method::GET,
            &nodes[&leader].addr,
            "/readyz",
            None,
            deadline,
        )
        .await;
    assert_eq!(s, 200);

    // SIGTERM: a graceful stop with exit status 0.
    let mut n = nodes.remove(&leader).unwrap();
    let pid = n.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stop_deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = n.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < stop_deadline,
            "no exit within 60 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "exit status {status}; log in {}",
        n.dir.display()
    );
}
