//! The plan's test strategy, end to end through the example orchestrator: in-process IPAM
//! clusters (the `ipam-tests` harness), one orchestrator per node, a mock VM backend.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam_raft::Consistency;
use ipam_tests::{bounded, pool_spec, scan, Cluster};
use vm_orchestrator::{MockBackend, NicRequest, NicTarget, Orchestrator, VmError};

fn nic(name: &str, pool: &str) -> NicRequest {
    NicRequest {
        name: name.to_string(),
        target: NicTarget::Pool(pool.to_string()),
    }
}

fn nic_ip(name: &str, ip: &str) -> NicRequest {
    NicRequest {
        name: name.to_string(),
        target: NicTarget::Address(ip.parse().expect("an address")),
    }
}

async fn orchestrator(cluster: &Cluster, id: u64) -> (Orchestrator, Arc<MockBackend>) {
    let backend = Arc::new(MockBackend::default());
    (
        Orchestrator::new(cluster.ipam(id).clone(), backend.clone()),
        backend,
    )
}

async fn allocated(cluster: &Cluster, id: u64, pool: &str) -> usize {
    scan(cluster.ipam(id), pool, Consistency::Linearizable)
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_vms_then_delete_them_releases_every_address() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::builder(1).start().await;
        let ipam = cluster.ipam(1);
        ipam.create_pool(pool_spec("web", "10.0.0.0/24"))
            .await
            .unwrap();
        ipam.create_pool(pool_spec("db", "fd00:7::/64"))
            .await
            .unwrap();
        let (o, backend) = orchestrator(&cluster, 1).await;

        let a = o.create_vm("vm-a", &[nic("eth0", "web")]).await.unwrap();
        let b = o
            .create_vm("vm-b", &[nic("eth0", "web"), nic("eth1", "db")])
            .await
            .unwrap();
        assert_eq!(a.nics[0].cidr(), "10.0.0.2/24");
        assert_eq!(a.nics[0].gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(b.nics[0].cidr(), "10.0.0.3/24");
        assert_eq!(b.nics[1].cidr(), "fd00:7::1/64");
        let files = backend.files("vm-b").expect("vm-b exists in the backend");
        assert_eq!(files[0].0, "eth0");
        assert!(
            files[0].1.contains("Address=10.0.0.3/24\nGateway=10.0.0.1"),
            "{}",
            files[0].1
        );
        assert!(
            files[1].1.contains("Address=fd00:7::1/64"),
            "{}",
            files[1].1
        );

        let listed: Vec<String> = o
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(listed, ["vm-a", "vm-b"]);
        assert_eq!(o.show("vm-b").await.unwrap(), b);
        assert!(matches!(
            o.create_vm("vm-a", &[nic("eth0", "web")]).await,
            Err(VmError::Exists(_))
        ));

        let released: BTreeSet<IpAddr> = o.delete_vm("vm-b").await.unwrap().into_iter().collect();
        assert_eq!(released, b.nics.iter().map(|n| n.address).collect());
        assert!(backend.files("vm-b").is_none());
        assert!(matches!(o.show("vm-b").await, Err(VmError::NotFound(_))));
        o.delete_vm("vm-a").await.unwrap();
        assert_eq!(allocated(&cluster, 1, "web").await, 0);
        assert_eq!(allocated(&cluster, 1, "db").await, 0);
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_taken_and_exhausted_addresses_leak_nothing() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::builder(1).start().await;
        let ipam = cluster.ipam(1);
        ipam.create_pool(pool_spec("web", "10.0.0.0/24"))
            .await
            .unwrap();
        // A /30 has one allocatable address (.2): network, gateway and broadcast are not.
        ipam.create_pool(pool_spec("tiny", "10.9.0.0/30"))
            .await
            .unwrap();
        let (o, _) = orchestrator(&cluster, 1).await;

        let fixed = o
            .create_vm("fixed", &[nic_ip("eth0", "10.0.0.50")])
            .await
            .unwrap();
        assert_eq!(fixed.nics[0].address.to_string(), "10.0.0.50");
        assert_eq!(fixed.nics[0].pool, "web");

        // The second NIC's address is taken: the whole VM fails, its first NIC is not kept.
        match o
            .create_vm("thief", &[nic("eth0", "web"), nic_ip("eth1", "10.0.0.50")])
            .await
        {
            Err(VmError::AddressTaken { ip, owner }) => {
                assert_eq!(ip.to_string(), "10.0.0.50");
                assert_eq!(owner, "vm/fixed/eth0");
            }
            other => panic!("expected address_taken, got {other:?}"),
        }
        assert_eq!(allocated(&cluster, 1, "web").await, 1);
        assert!(matches!(
            o.create_vm("nowhere", &[nic_ip("eth0", "192.0.2.1")]).await,
            Err(VmError::NoPool(_))
        ));
        assert!(matches!(
            o.create_vm("lost", &[nic("eth0", "no-such-pool")]).await,
            Err(VmError::PoolNotFound(p)) if p == "no-such-pool"
        ));

        o.create_vm("first", &[nic("eth0", "tiny")]).await.unwrap();
        let err = o
            .create_vm("second", &[nic("eth0", "web"), nic("eth1", "tiny")])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, VmError::PoolExhausted(p) if p == "tiny"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "pool \"tiny\" has no free address");
        assert_eq!(
            allocated(&cluster, 1, "web").await,
            1,
            "second's eth0 leaked"
        );
        for bad in ["", "Upper", "-x", &"x".repeat(64)] {
            assert!(matches!(
                o.create_vm(bad, &[nic("eth0", "web")]).await,
                Err(VmError::Invalid(_))
            ));
        }
        assert!(matches!(
            o.create_vm("none", &[]).await,
            Err(VmError::Invalid(_))
        ));
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failure_releases_everything_the_vm_was_given() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::builder(1).start().await;
        let ipam = cluster.ipam(1);
        ipam.create_pool(pool_spec("web", "10.0.0.0/24"))
            .await
            .unwrap();
        let (o, backend) = orchestrator(&cluster, 1).await;
        backend.fail_on("doomed");
        let err = o
            .create_vm("doomed", &[nic("eth0", "web"), nic("eth1", "web")])
            .await
            .unwrap_err();
        assert!(matches!(err, VmError::Backend(_)), "{err:?}");
        assert_eq!(allocated(&cluster, 1, "web").await, 0);
        assert!(backend.vms().is_empty());
        // The addresses are free again: the next VM gets the lowest one.
        let next = o.create_vm("fine", &[nic("eth0", "web")]).await.unwrap();
        assert_eq!(next.nics[0].address.to_string(), "10.0.0.2");
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_through_a_follower_survive_a_leader_change() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool("web", "10.0.0.0/22").await;
        let via = cluster.followers(leader)[0];
        let (o, _) = orchestrator(&cluster, via).await;
        let o = Arc::new(o);
        let mut tasks = Vec::new();
        for i in 0..60 {
            let o = o.clone();
            tasks.push(tokio::spawn(async move {
                o.create_vm(&format!("vm-{i}"), &[nic("eth0", "web")]).await
            }));
        }
        // Stop the leader while creations are in flight.
        cluster.stop(leader).await;
        let mut addresses = BTreeSet::new();
        for task in tasks {
            let vm = task
                .await
                .unwrap()
                .expect("a creation retried across the leader change");
            assert!(
                addresses.insert(vm.nics[0].address),
                "duplicate {:?}",
                vm.nics[0]
            );
        }
        assert_eq!(allocated(&cluster, via, "web").await, 60);
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopping_during_creation_leaves_each_vm_whole_or_absent() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool("web", "10.0.0.0/22").await;
        cluster
            .ipam(leader)
            .create_pool(pool_spec("storage", "10.1.0.0/22"))
            .await
            .unwrap();
        let victim = cluster.followers(leader)[0];
        let (o, _) = orchestrator(&cluster, victim).await;
        let o = Arc::new(o);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let o = o.clone();
            tasks.push(tokio::spawn(async move {
                o.create_vm(
                    &format!("vm-{i}"),
                    &[nic("eth0", "web"), nic("eth1", "storage")],
                )
                .await
            }));
        }
        cluster.stop(victim).await;
        let mut failed = 0;
        for task in tasks {
            if task.await.unwrap().is_err() {
                failed += 1;
            }
        }
        let survivor = cluster
            .followers(victim)
            .into_iter()
            .find(|&id| id != victim);
        let survivor = survivor.unwrap_or(leader);
        let (o, _) = orchestrator(&cluster, survivor).await;
        let vms = o.list().await.unwrap();
        for vm in &vms {
            assert_eq!(
                vm.nics.len(),
                2,
                "{} has half its NICs: {:?}",
                vm.name,
                vm.nics
            );
        }
        assert_eq!(
            vms.len() + failed,
            40,
            "every creation either happened or failed"
        );
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_vms_through_three_orchestrators_get_distinct_correct_addresses() {
    bounded(Duration::from_secs(300), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool("web", "10.0.0.0/20").await;
        let _ = leader;
        let orchestrators: Vec<Arc<Orchestrator>> = {
            let mut v = Vec::new();
            for id in 1..=3 {
                v.push(Arc::new(orchestrator(&cluster, id).await.0));
            }
            v
        };
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..1_000usize {
            let o = orchestrators[i % 3].clone();
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let vm = o.create_vm(&format!("vm-{i}"), &[nic("eth0", "web")]).await;
                (vm, t.elapsed())
            }));
        }
        let mut addresses = BTreeSet::new();
        let mut latencies = Vec::new();
        for task in tasks {
            let (vm, took) = task.await.unwrap();
            let vm = vm.expect("creation");
            let nic = &vm.nics[0];
            assert_eq!(nic.prefix_len, 20);
            assert_eq!(nic.gateway, Some("10.0.0.1".parse().unwrap()));
            assert!(addresses.insert(nic.address), "duplicate {}", nic.address);
            latencies.push(took);
        }
        latencies.sort();
        let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        // A figure for docs/embedding.md, not an assertion.
        println!(
            "1,000 VMs through 3 orchestrators in {:?}: p50 {:?}, p99 {:?}",
            started.elapsed(),
            pct(50),
            pct(99)
        );
        assert_eq!(allocated(&cluster, 1, "web").await, 1_000);
        cluster.shutdown().await;
    })
    .await
}
