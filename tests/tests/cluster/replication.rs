//! Concurrent allocations spread over every node of a 3-node cluster.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipam_raft::Consistency;
use ipam_tests::{bounded, pool_spec, scan, Cluster};

const POOL: &str = "vms";
const ALLOCATIONS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_on_every_node_are_distinct_and_replicated() {
    bounded(Duration::from_secs(120), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.wait_leader().await;
        cluster
            .ipam(leader)
            .create_pool(pool_spec(POOL, "10.0.0.0/16"))
            .await
            .expect("create pool");

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
