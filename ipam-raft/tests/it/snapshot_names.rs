//! A snapshot installed from a peer is stored under a name this node makes: a hostile
//! snapshot id (`../../x`) cannot place a file outside `snapshots/`.

use std::collections::BTreeMap;

use ipam_raft::state_machine::{Durable, StateMachineStore};
use ipam_raft::types::{Entry, LogId};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftSnapshotBuilder};
use tempfile::TempDir;
use tokio::sync::watch;

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn open_sm(dir: &std::path::Path) -> StateMachineStore {
    let (tx, _rx) = watch::channel(None);
    StateMachineStore::open(dir, Durable::default(), tx).expect("open sm")
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_peer_supplied_snapshot_id_never_names_a_file() {
    let root = TempDir::new().expect("tmp");
    let (d1, d2) = (root.path().join("one"), root.path().join("two"));
    let mut sm1 = open_sm(&d1);
    let nodes = BTreeMap::from([(1u64, openraft::BasicNode::new("127.0.0.1:1"))]);
    let entry = Entry {
        log_id: log_id(1),
        payload: EntryPayload::Membership(Membership::new(vec![[1u64].into()], nodes)),
    };
    sm1.apply(vec![entry]).await.expect("apply");
    let snap = sm1
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");

    let mut meta = snap.meta.clone();
    meta.snapshot_id = "../../escaped".to_string();
    let mut sm2 = open_sm(&d2);
    let mut recv = sm2.begin_receiving_snapshot().await.expect("recv");
    let mut src = snap.snapshot;
    tokio::io::copy(&mut src, &mut recv).await.expect("copy");
    sm2.install_snapshot(&meta, recv).await.expect("install");

    let escaped: Vec<_> = files_under(root.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("escaped"))
        .collect();
    assert!(escaped.is_empty(), "files named from the id: {escaped:?}");
    let current = sm2
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(current.meta.snapshot_id, "../../escaped");
}
