//! Backup and restore through `Ipam`: a backup restores into an empty dir as a new cluster
//! with the same state digest and applied index, which then serves and continues the
//! allocation generations; a damaged file and a non-empty dir are refused with nothing written.

use crate::support;
use crate::support::nodes::SERIAL;

use std::collections::BTreeMap;
use std::time::Duration;

use ipam_raft::{Config, Ipam, RestoreError};

async fn started(dir: &std::path::Path) -> Ipam {
    Ipam::start(Config::new(1, dir, "127.0.0.1:9"))
        .await
        .expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_as_a_new_cluster_with_the_same_state() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let source_dir = tmp.path().join("source");
    let ipam = started(&source_dir).await;
    ipam.init(Vec::new()).await.expect("init");
    ipam.wait_for(Duration::from_secs(30), |s| s.leader == Some(1))
        .await
        .expect("leader");
    ipam.create_pool(support::pools::vms("10.0.0.0/24"))
        .await
        .expect("pool");
    let mut last_generation = 0;
    for owner in ["a", "b", "c"] {
        let (a, _) = ipam
            .allocate("vms", owner, None, BTreeMap::new())
            .await
            .expect("allocate");
        last_generation = a.generation;
    }
    let file = tmp.path().join("state.backup");
    let out = std::fs::File::create(&file).expect("create");
    let header = ipam.backup(out).await.expect("backup");
    let digest = ipam.digest().await.expect("digest");
    let old_cluster = ipam.cluster_id().expect("cluster id");
    assert_eq!(header.cluster_id, old_cluster);
    assert!(header.applied_index() > 0);
    ipam.shutdown().await.expect("shutdown");

    // Refusals write nothing.
    let busy = tmp.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), "x").unwrap();
    assert!(matches!(
        ipam_raft::restore(&file, &busy, 7, "127.0.0.1:9"),
        Err(RestoreError::DataDirNotEmpty { .. })
    ));
    let mut damaged = std::fs::read(&file).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let bad = tmp.path().join("bad.backup");
    std::fs::write(&bad, &damaged).unwrap();
    let target = tmp.path().join("restored");
    let err = ipam_raft::restore(&bad, &target, 7, "127.0.0.1:9").unwrap_err();
    assert!(matches!(err, RestoreError::BadChecksum { .. }), "{err}");
    assert!(
        !target.exists(),
        "a refused restore wrote {}",
        target.display()
    );

    let restored = ipam_raft::restore(&file, &target, 7, "127.0.0.1:9").expect("restore");
    assert_ne!(restored.cluster_id, old_cluster);
    let ipam = Ipam::start(Config::new(7, &target, "127.0.0.1:9"))
        .await
        .expect("start restored");
    ipam.wait_for(Duration::from_secs(30), |s| s.leader == Some(7))
        .await
        .expect("the restored node leads its new cluster");
    assert_eq!(
        ipam.cluster_id().as_deref(),
        Some(restored.cluster_id.as_str())
    );
    assert_eq!(ipam.digest().await.expect("digest"), digest);
    let status = ipam.status();
    assert!(status.applied_index >= header.applied_index());
    let (next, existing) = ipam
        .allocate("vms", "d", None, BTreeMap::new())
        .await
        .expect("allocate after restore");
    assert!(!existing);
    assert_eq!(next.ip.to_string(), "10.0.0.5");
    assert!(next.generation > last_generation);
    let (again, existing) = ipam
        .allocate("vms", "a", None, BTreeMap::new())
        .await
        .expect("owner a");
    assert!(existing);
    assert_eq!(again.ip.to_string(), "10.0.0.2");
    ipam.shutdown().await.expect("shutdown");
}
