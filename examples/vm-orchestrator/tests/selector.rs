//! A NIC that names a selector: IPAM's state machine picks the least loaded matching pool
//! inside the VM's one atomic batch.

use std::sync::Arc;
use std::time::Duration;

use ipam_core::Labels;
use ipam_tests::{bounded, pool_spec, Cluster};
use vm_orchestrator::{MockBackend, NicRequest, NicTarget, Orchestrator, VmError};

fn nic(name: &str, selector: &[(&str, &str)]) -> NicRequest {
    NicRequest {
        name: name.to_string(),
        target: NicTarget::Selector(
            selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_nics_spread_over_matching_pools_and_fail_whole() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::builder(1).start().await;
        let ipam = cluster.ipam(1);
        for (name, cidr, zone) in [
            ("a1", "10.0.0.0/29", "a"),
            ("a2", "10.0.1.0/29", "a"),
            ("b1", "10.0.2.0/24", "b"),
        ] {
            let mut spec = pool_spec(name, cidr);
            spec.labels = Labels::from([("zone".to_string(), zone.to_string())]);
            ipam.create_pool(spec).await.unwrap();
        }
        let o = Orchestrator::new(ipam.clone(), Arc::new(MockBackend::default()));
        let vm = o
            .create_vm(
                "vm-1",
                &[nic("eth0", &[("zone", "a")]), nic("eth1", &[("zone", "a")])],
            )
            .await
            .unwrap();
        // The second NIC sees the first one's allocation: a1 then a2 (equal load, by name).
        assert_eq!(vm.nics[0].pool, "a1");
        assert_eq!(vm.nics[1].pool, "a2");
        let err = o
            .create_vm(
                "vm-2",
                &[nic("eth0", &[("zone", "b")]), nic("eth1", &[("zone", "c")])],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, VmError::NoMatchingPool(s) if s == "zone=c"),
            "{err:?}"
        );
        assert!(
            ipam.owner_allocations("vm/vm-2/eth0", ipam_raft::Consistency::Linearizable)
                .await
                .unwrap()
                .is_empty(),
            "the failed VM's first NIC leaked"
        );
        // /29s hold 5 addresses each: 10 NICs fill zone a; the 11th finds it exhausted.
        for i in 0..4 {
            o.create_vm(
                &format!("f{i}"),
                &[nic("eth0", &[("zone", "a")]), nic("eth1", &[("zone", "a")])],
            )
            .await
            .unwrap();
        }
        let err = o
            .create_vm("full", &[nic("eth0", &[("zone", "a")])])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, VmError::PoolExhausted(s) if s == "zone=a"),
            "{err:?}"
        );
        cluster.shutdown().await;
    })
    .await
}
