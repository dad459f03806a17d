//! Concurrent allocations spread over every node of a 3-node cluster, IPv4 and IPv6.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipam_raft::Consistency;
use ipam_tests::{bounded, scan, Cluster};

const POOL: &str = "vms";
const ALLOCATIONS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_on_every_node_are_distinct_and_replicated() {
    bounded(Duration::from_secs(120), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool(POOL, "10.0.0.0/16").await;

        let acked = cluster
            .allocate_many(&cluster.running(), POOL, "vm", ALLOCATIONS)
            .await;
        assert_eq!(acked.len(), ALLOCATIONS);

        // Lowest-free allocation packs them: 10.0.0.0 is the network and 10.0.0.1 the default
        // gateway, so the addresses handed out are exactly the next 2,000.
        let expected: BTreeSet<IpAddr> = (0..ALLOCATIONS as u32)
            .map(|k| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 2)) + k)))
            .collect();
        let got: BTreeSet<IpAddr> = acked.values().copied().collect();
        assert_eq!(got, expected, "not the lowest free addresses of the pool");

        cluster.converge().await;
        assert_eq!(cluster.assert_holds(POOL, &acked).await, ALLOCATIONS);
        let generations: BTreeSet<u64> = scan(cluster.ipam(leader), POOL, Consistency::Local)
            .await
            .iter()
            .map(|allocation| allocation.generation)
            .collect();
        assert_eq!(generations.len(), ALLOCATIONS, "a generation was repeated");
        for id in cluster.running() {
            let pool = cluster
                .ipam(id)
                .pool(POOL, Consistency::Linearizable)
                .await
                .expect("read pool");
            assert_eq!(pool.stats.allocated, ALLOCATIONS as u128, "node {id}");
            // A /16 less network, broadcast and gateway.
            assert_eq!(pool.stats.capacity, 65_533, "node {id}");
        }
        cluster.shutdown().await;
    })
    .await
}

/// The same in an IPv6 /64: addresses are 128-bit keys, there is no default gateway and only
/// the subnet-router anycast address is excluded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ipv6_allocations_are_distinct_and_replicated() {
    const V6_ALLOCATIONS: usize = 500;
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3).start().await;
        cluster.leader_with_pool("v6", "fd00:1::/64").await;
        let acked = cluster
            .allocate_many(&cluster.running(), "v6", "vm", V6_ALLOCATIONS)
            .await;
        let base = u128::from(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0));
        let expected: BTreeSet<IpAddr> = (1..=V6_ALLOCATIONS as u128)
            .map(|k| IpAddr::V6(Ipv6Addr::from(base + k)))
            .collect();
        let got: BTreeSet<IpAddr> = acked.values().copied().collect();
        assert_eq!(got, expected, "not the lowest free addresses of the pool");

        cluster.converge().await;
        assert_eq!(cluster.assert_holds("v6", &acked).await, V6_ALLOCATIONS);
        for id in cluster.running() {
            let pool = cluster
                .ipam(id)
                .pool("v6", Consistency::Local)
                .await
                .expect("read pool");
            assert_eq!(pool.stats.capacity, (1u128 << 64) - 1, "node {id}");
            assert_eq!(pool.stats.allocated, V6_ALLOCATIONS as u128, "node {id}");
        }
        cluster.shutdown().await;
    })
    .await
}
