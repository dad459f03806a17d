//! The mesh case end to end: 3 nodes, 200 hosts each lease a /24 of a /16 and heartbeat, each
//! host's child pool hands out addresses, and a host that stops loses its /24 only after its
//! child pool is deleted. Time is the injected leader clock, never a sleep.

use std::collections::BTreeSet;
use std::time::Duration;

use ipam_core::{Labels, PoolSettings, PoolSpecV3};
use ipam_raft::{Consistency, ManualClock};
use ipam_tests::{bounded, pool_spec, scan, wait_until, Cluster};

const HOSTS: u64 = 200;

fn spec(name: &str, cidr: &str, delegation: Option<u8>, parent: Option<&str>) -> PoolSpecV3 {
    PoolSpecV3 {
        base: pool_spec(name, cidr),
        settings: PoolSettings::default(),
        delegation_prefix_len: delegation,
        parent: parent.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_hosts_lease_blocks_and_a_stopped_host_loses_its_block_after_its_pool() {
    bounded(Duration::from_secs(60), async {
        let clock = ManualClock::new(1_700_000_000_000);
        let stamps = clock.stamp_clock();
        let cluster = Cluster::builder(3)
            .config(move |c| c.clock = stamps.clone())
            .start()
            .await;
        let leader = cluster.wait_leader().await;
        cluster
            .ipam(leader)
            .create_pool_v3(spec("mesh", "10.42.0.0/16", Some(24), None))
            .await
            .expect("mesh");

        // Every host, through the three nodes at once: lease a block, create its pool there,
        // allocate one workload address in it.
        let mut tasks = Vec::new();
        for h in 0..HOSTS {
            let ipam = cluster.ipam(1 + h % 3).clone();
            tasks.push(tokio::spawn(async move {
                let host = format!("host-{h}");
                let (block, _) = ipam
                    .allocate_lease("mesh", &host, None, Labels::new(), Some(60))
                    .await
                    .expect("block");
                let prefix = block.prefix.expect("a block has a prefix").to_string();
                ipam.create_pool_v3(spec(&host, &prefix, None, Some("mesh")))
                    .await
                    .expect("child pool");
                let (vm, _) = ipam
                    .allocate(&host, &format!("{host}/vm-0"), None, Labels::new())
                    .await
                    .expect("workload address");
                assert!(
                    block.prefix.expect("prefix").contains(vm.ip),
                    "{} outside {prefix}",
                    vm.ip
                );
                prefix
            }));
        }
        let mut prefixes = BTreeSet::new();
        for t in tasks {
            prefixes.insert(t.await.expect("host task"));
        }
        assert_eq!(prefixes.len(), HOSTS as usize, "every host got its own /24");

        // Time passes; every host but host-7 heartbeats.
        for _ in 0..3 {
            clock.advance(40_000);
            for h in (0..HOSTS).filter(|h| *h != 7) {
                let renewed = cluster
                    .ipam(1 + h % 3)
                    .renew_owner(&format!("host-{h}"))
                    .await
                    .expect("heartbeat");
                assert_eq!(renewed.len(), 1);
            }
        }
        // host-7's lease has lapsed, but its pool still lives in the block: nothing is due.
        let held = |allocs: Vec<ipam_core::Allocation>| -> BTreeSet<String> {
            allocs.into_iter().map(|a| a.owner).collect()
        };
        let mesh = held(scan(cluster.ipam(leader), "mesh", Consistency::Linearizable).await);
        assert_eq!(mesh.len(), HOSTS as usize);
        assert!(mesh.contains("host-7"));

        // Deleting host-7's pool gives the block back to expiry: it goes on the next entry.
        cluster
            .ipam(leader)
            .delete_pool("host-7", true)
            .await
            .expect("delete host-7's pool");
        let ipam = cluster.ipam(leader).clone();
        wait_until(
            "host-7's block is released",
            Duration::from_secs(10),
            || {
                let ipam = ipam.clone();
                async move {
                    let owners = held(scan(&ipam, "mesh", Consistency::Linearizable).await);
                    if !owners.contains("host-7") && owners.len() == HOSTS as usize - 1 {
                        Ok(())
                    } else {
                        Err(format!("{} blocks held", owners.len()))
                    }
                }
            },
        )
        .await;
        let digest = cluster.converge().await;
        assert_ne!(digest, [0; 32]);
        cluster.shutdown().await;
    })
    .await
}
