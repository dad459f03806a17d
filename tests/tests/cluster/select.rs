//! Concurrent selections through every node of a 3-node cluster: the state machine decides
//! each one in log order, so no pool ever goes past its `max_utilization`, every owner gets
//! exactly one address, and the replicas agree.

use std::collections::BTreeSet;
use std::time::Duration;

use ipam_core::{Labels, PoolSettings, PoolSpecV2};
use ipam_raft::Consistency;
use ipam_tests::{bounded, pool_spec, scan, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_selections_through_three_nodes_never_exceed_a_cap() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.wait_leader().await;
        // /27s: 29 allocatable each; caps 0.5 and 0.25 admit 14 and 7; the third has no cap.
        let pools = [
            ("s1", "10.60.0.0/27", 500_000u32),
            ("s2", "10.60.1.0/27", 250_000),
            ("s3", "10.60.2.0/27", 1_000_000),
        ];
        for (name, cidr, ppm) in pools {
            let mut base = pool_spec(name, cidr);
            base.labels = Labels::from([("zone".to_string(), "z".to_string())]);
            let settings = PoolSettings {
                max_utilization_ppm: ppm,
                ..PoolSettings::default()
            };
            cluster
                .ipam(leader)
                .create_pool_v2(PoolSpecV2 { base, settings })
                .await
                .expect("pool");
        }
        let selector = Labels::from([("zone".to_string(), "z".to_string())]);
        // 60 owners through the three nodes at once: 14 + 7 + 29 = 50 fit, 10 are refused.
        let mut tasks = Vec::new();
        for i in 0..60u64 {
            let ipam = cluster.ipam(1 + i % 3).clone();
            let selector = selector.clone();
            tasks.push(tokio::spawn(async move {
                ipam.allocate_any(&format!("vm-{i}"), selector, None, Labels::new(), None)
                    .await
            }));
        }
        let (mut ok, mut full) = (0, 0);
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => ok += 1,
                Err(e) if e.to_string().contains("none can take") => full += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!((ok, full), (50, 10));
        cluster.converge().await;
        let mut owners = BTreeSet::new();
        for node in 1..=3 {
            let mut counts = Vec::new();
            for (name, _, _) in pools {
                let held = scan(cluster.ipam(node), name, Consistency::Local).await;
                counts.push(held.len());
                owners.extend(held.into_iter().map(|a| a.owner));
            }
            assert_eq!(counts, [14, 7, 29], "node {node}");
        }
        assert_eq!(owners.len(), 50, "every owner holds exactly one address");
        cluster.shutdown().await;
    })
    .await
}
