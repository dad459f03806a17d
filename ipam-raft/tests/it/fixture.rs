//! The stores open what release 0.1.0 wrote (`tests/fixtures/release-0.1.0/data`): every log
//! entry, the applied position, the current snapshot and the state decode with today's codec.

use std::path::Path;

use ipam_raft::log_store::LogStore;
use ipam_raft::state_machine::{Durable, StateMachineStore};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::RaftLogReader;
use tokio::sync::watch;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn the_stores_read_a_data_dir_of_release_0_1_0() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/release-0.1.0");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture.join("data"), dir.path());

    let (durable_tx, purge_limit) = watch::channel(None);
    let mut sm = StateMachineStore::open(dir.path(), Durable::default(), durable_tx)
        .expect("open state.redb");
    let (applied, membership) = sm.applied_state().await.expect("applied state");
    let applied = applied.expect("something was applied").index;
    assert!(applied >= 49, "applied {applied}");
    assert!(membership.membership().voter_ids().count() >= 1);
    let snapshot = sm
        .get_current_snapshot()
        .await
        .expect("read snapshot")
        .expect("a current snapshot");
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(49));

    let mut log = LogStore::open(&dir.path().join("log.redb"), purge_limit).expect("open log.redb");
    let state = log.get_log_state().await.expect("log state");
    let last = state.last_log_id.expect("a log").index;
    assert_eq!(last, 92);
    let first = state.last_purged_log_id.map_or(0, |l| l.index + 1);
    let entries = log.try_get_log_entries(first..=last).await.expect("decode");
    assert_eq!(entries.len() as u64, last - first + 1);

    let pools: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("pools.json")).expect("pools.json"))
            .expect("json");
    let want: Vec<&str> = pools["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    let rtx = sm.begin_read().expect("read");
    let got = ipam_core::query::pools(&rtx, &Default::default()).expect("pools");
    let names: Vec<&str> = got.iter().map(|p| p.name.as_str()).collect();
    // The state may be ahead of the listing (applied past the snapshot), never behind it.
    for name in want {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}
