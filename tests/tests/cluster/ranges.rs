//! Pool changes replicate: a range added on one node is used by allocations through the
//! others, an update made on a follower is seen everywhere, and every replica agrees on the
//! preview.

use std::net::IpAddr;
use std::time::Duration;

use ipam_core::{GatewayChoice, Labels, PoolUpdate};
use ipam_raft::Consistency;
use ipam_tests::{bounded, Cluster};

const POOL: &str = "grow";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_added_on_one_node_is_used_through_the_others() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool(POOL, "10.20.0.0/30").await;
        let followers = cluster.followers(leader);
        let (a, b) = (followers[0], followers[1]);

        // The pool's only allocatable address, then exhaustion.
        let (first, _) = cluster
            .ipam(a)
            .allocate(POOL, "vm-0", None, Labels::new())
            .await
            .expect("allocate");
        assert_eq!(first.ip, ip("10.20.0.2"));
        let full = cluster
            .ipam(b)
            .allocate(POOL, "vm-1", None, Labels::new())
            .await
            .expect_err("the pool is full");
        assert!(full.to_string().contains("exhausted"), "{full}");

        // A range added through one follower...
        let pool = cluster
            .ipam(a)
            .add_range(
                POOL,
                "10.20.1.0/29".parse().expect("cidr"),
                GatewayChoice::Default,
            )
            .await
            .expect("add range");
        assert_eq!(pool.ranges.len(), 2);
        assert_eq!(pool.stats.capacity, 6);

        // ...feeds allocations through the leader and the other follower, with its own
        // prefix and gateway in the network configuration.
        for (i, node) in [b, leader, b].into_iter().enumerate() {
            let (got, existing) = cluster
                .ipam(node)
                .allocate(POOL, &format!("vm-{}", i + 1), None, Labels::new())
                .await
                .expect("allocate from the new range");
            assert!(!existing);
            assert_eq!(got.ip, ip(&format!("10.20.1.{}", i + 2)));
            let network = got.network.expect("network config");
            assert_eq!(network.prefix_len, 29);
            assert_eq!(network.gateway, Some(ip("10.20.1.1")));
        }

        // An update on a follower is fenced by the revision every node sees.
        let update = PoolUpdate {
            mtu: Some(Some(1400)),
            ..PoolUpdate::default()
        };
        let pool = cluster
            .ipam(b)
            .update_pool(POOL, Some(2), update.clone())
            .await
            .expect("update");
        assert_eq!(pool.revision, 3);
        let stale = cluster
            .ipam(a)
            .update_pool(POOL, Some(2), update)
            .await
            .expect_err("stale revision");
        assert!(stale.to_string().contains("revision"), "{stale}");

        cluster.converge().await;
        for id in cluster.running() {
            let ipam = cluster.ipam(id);
            let pool = ipam.pool(POOL, Consistency::Local).await.expect("pool");
            assert_eq!((pool.revision, pool.stats.allocated), (3, 4), "node {id}");
            assert_eq!(pool.settings.mtu, Some(1400), "node {id}");
            let preview = ipam
                .next_free(POOL, 10, Consistency::Linearizable)
                .await
                .expect("preview");
            assert_eq!(preview, vec![ip("10.20.1.5"), ip("10.20.1.6")], "node {id}");
            let found = ipam
                .address(ip("10.20.1.3"), Consistency::Local)
                .await
                .expect("lookup");
            assert_eq!(found.pool.as_deref(), Some(POOL), "node {id}");
            assert_eq!(
                found.allocation.and_then(|a| a.network).and_then(|n| n.mtu),
                Some(1400),
                "node {id}"
            );
        }
        cluster.shutdown().await;
    })
    .await
}
