//! The stores on their own: snapshot round trip, restart, purge limit.

use std::collections::BTreeMap;

use ipam_core::{Command, GatewayChoice, Op, PoolSpec, Stamp};
use ipam_raft::log_store::LogStore;
use ipam_raft::state_machine::{Durable, StateMachineStore};
use ipam_raft::types::{Entry, LogId, Request};
use openraft::storage::RaftLogReaderExt;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder};
use tempfile::TempDir;
use tokio::sync::watch;

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn membership_entry(index: u64) -> Entry {
    let nodes = BTreeMap::from([(1u64, openraft::BasicNode::new("127.0.0.1:1"))]);
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(Membership::new(vec![[1u64].into()], nodes)),
    }
}

fn normal(index: u64, commands: Vec<Command>) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Request {
            stamp: Stamp(1_700_000_000_000 + index),
            commands,
        }),
    }
}

fn create_pool(name: &str, cidr: &str) -> Command {
    Command::Op(Op::CreatePool(PoolSpec {
        name: name.into(),
        cidr: cidr.parse().expect("cidr"),
        gateway: GatewayChoice::Default,
        reserved: Vec::new(),
        labels: BTreeMap::new(),
        description: String::new(),
    }))
}

fn allocate(pool: &str, owner: &str) -> Command {
    Command::Op(Op::Allocate {
        pool: pool.into(),
        owner: owner.into(),
        ip: None,
        labels: BTreeMap::new(),
    })
}

/// Membership at 1, a pool at 2, then `n` entries of 10 allocations each.
fn history(n: u64) -> Vec<Entry> {
    let mut out = vec![
        membership_entry(1),
        normal(2, vec![create_pool("vms", "10.0.0.0/16")]),
    ];
    for i in 0..n {
        let cmds = (0..10)
            .map(|j| allocate("vms", &format!("vm-{i}-{j}")))
            .collect();
        out.push(normal(3 + i, cmds));
    }
    out
}

fn open_sm(dir: &std::path::Path) -> (StateMachineStore, watch::Receiver<Option<u64>>) {
    let (tx, rx) = watch::channel(None);
    let sm = StateMachineStore::open(dir, Durable::default(), tx).expect("open sm");
    (sm, rx)
}

fn digest(sm: &StateMachineStore) -> [u8; 32] {
    let rtx = sm.begin_read().expect("read");
    ipam_core::query::digest(&rtx).expect("digest")
}

#[tokio::test]
async fn snapshot_round_trip_into_a_fresh_store() {
    let (d1, d2) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let (mut sm1, durable1) = open_sm(d1.path());
    let results = sm1.apply(history(20)).await.expect("apply");
    assert_eq!(results.len(), 22);
    assert!(results[0].is_empty(), "a membership entry has no results");
    assert_eq!(results[5].len(), 10);

    let mut builder = sm1.get_snapshot_builder().await;
    // Applies after the builder was taken are not in the snapshot.
    sm1.apply(vec![normal(23, vec![allocate("vms", "late")])])
        .await
        .expect("apply");
    let snap = builder.build_snapshot().await.expect("build");
    assert_eq!(snap.meta.last_log_id, Some(log_id(22)));
    // Building made the covered state durable: the log may be purged up to it.
    assert!(durable1.borrow().is_some_and(|d| d >= 22));

    let (mut sm2, durable2) = open_sm(d2.path());
    let mut recv = sm2.begin_receiving_snapshot().await.expect("recv");
    let mut src = snap.snapshot;
    tokio::io::copy(&mut src, &mut recv).await.expect("copy");
    sm2.install_snapshot(&snap.meta, recv)
        .await
        .expect("install");
    assert_eq!(*durable2.borrow(), Some(22));

    let (applied, membership) = sm2.applied_state().await.expect("state");
    assert_eq!(applied, Some(log_id(22)));
    assert_eq!(membership.log_id(), &Some(log_id(1)));
    let current = sm2
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(current.meta, snap.meta);

    // Same state: after the same next entry both replicas agree (the index was rebuilt).
    sm2.apply(vec![normal(23, vec![allocate("vms", "late")])])
        .await
        .expect("apply");
    assert_eq!(digest(&sm1), digest(&sm2));
    let a = sm1
        .apply(vec![normal(24, vec![allocate("vms", "next")])])
        .await
        .expect("a");
    let b = sm2
        .apply(vec![normal(24, vec![allocate("vms", "next")])])
        .await
        .expect("b");
    assert_eq!(a, b);
    assert_eq!(digest(&sm1), digest(&sm2));
}

#[tokio::test]
async fn restart_resumes_at_the_same_applied_id_and_state() {
    let dir = TempDir::new().expect("tmp");
    let (mut sm, _) = open_sm(dir.path());
    sm.apply(history(30)).await.expect("apply");
    let before = (sm.applied_state().await.expect("state").0, digest(&sm));
    drop(sm);
    let (mut sm, durable) = open_sm(dir.path());
    let after = (sm.applied_state().await.expect("state").0, digest(&sm));
    assert_eq!(before, after);
    // Durable at open, but there is no snapshot yet: the log keeps every entry.
    assert_eq!(*durable.borrow(), None);
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(*durable.borrow(), Some(32));
    // The rebuilt index continues where it was: a new owner gets a fresh address.
    let r = sm
        .apply(vec![normal(33, vec![allocate("vms", "new")])])
        .await
        .expect("apply");
    assert_eq!(r[0].len(), 1);
}

/// The log's purge limit is the durable applied index, but never past the current snapshot:
/// openraft asks for a purge up to a snapshot it is installing before the install published
/// it, and a cut then must not leave the log purged past `current.meta`.
#[tokio::test]
async fn the_purge_limit_never_passes_the_current_snapshot() {
    let dir = TempDir::new().expect("tmp");
    let every_apply = Durable {
        every_entries: 1,
        ..Durable::default()
    };
    let (tx, limit) = watch::channel(None);
    let mut sm = StateMachineStore::open(dir.path(), every_apply, tx).expect("open sm");
    let history = history(30);
    sm.apply(history[..12].to_vec()).await.expect("apply");
    assert_eq!(*limit.borrow(), None, "no snapshot yet");
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(*limit.borrow(), Some(12));
    // Every apply is durable now, the snapshot stays at 12.
    sm.apply(history[12..].to_vec()).await.expect("apply");
    assert_eq!(*limit.borrow(), Some(12), "held at the current snapshot");
    drop(sm);
    let (tx, limit) = watch::channel(None);
    let mut sm = StateMachineStore::open(dir.path(), every_apply, tx).expect("reopen");
    assert_eq!(*limit.borrow(), Some(12), "the same rule at open");
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(*limit.borrow(), Some(32));
}

#[tokio::test]
async fn purge_stops_at_the_durable_applied_index() {
    let dir = TempDir::new().expect("tmp");
    let (limit_tx, limit) = watch::channel(Some(5));
    let mut log = LogStore::open(&dir.path().join("log.redb"), limit).expect("open");
    let entries = history(10);
    for e in entries.clone() {
        log.blocking_append(vec![e]).await.expect("append");
    }
    log.purge(log_id(9)).await.expect("purge");
    assert_eq!(log.last_purged().await.expect("purged"), Some(log_id(5)));
    let left = log.try_get_log_entries(0..100).await.expect("read");
    assert_eq!(left.first().map(|e| e.log_id), Some(log_id(6)));

    // Once the limit moves, the next append finishes the held-back purge.
    limit_tx.send_replace(Some(100));
    log.blocking_append(vec![normal(13, vec![])])
        .await
        .expect("append");
    assert_eq!(log.last_purged().await.expect("purged"), Some(log_id(9)));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(9)));
    assert_eq!(state.last_log_id, Some(log_id(13)));
}

#[tokio::test]
async fn the_committed_id_is_written_with_the_next_append() {
    let dir = TempDir::new().expect("tmp");
    let path = dir.path().join("log.redb");
    let (_limit_tx, limit) = watch::channel(None);
    {
        let mut log = LogStore::open(&path, limit.clone()).expect("open");
        for e in history(4) {
            log.blocking_append(vec![e]).await.expect("append");
        }
        log.save_committed(Some(log_id(3))).await.expect("save");
        // The same store answers what it was told at once.
        assert_eq!(log.read_committed().await.expect("read"), Some(log_id(3)));
        log.blocking_append(vec![normal(5, vec![])])
            .await
            .expect("append");
        // Saved after the last append: not on disk, which only makes a restart lag.
        log.save_committed(Some(log_id(5))).await.expect("save");
    }
    let mut log = LogStore::open(&path, limit).expect("reopen");
    assert_eq!(
        log.read_committed().await.expect("read"),
        Some(log_id(3)),
        "the id saved before an append survives a restart"
    );
}

/// openraft asks for a purge up to a snapshot it is installing and then appends past it without
/// waiting for the install, while the purge limit still holds the old state's entries. The
/// append waits for the install (the limit reaching the snapshot) and purges durably first: a
/// cut at any point must not leave the old entries and the new ones with a hole between them,
/// or openraft refuses the next start (`LogIndexNotFound`).
#[tokio::test(start_paused = true)]
async fn an_append_past_a_held_back_purge_waits_for_it_and_leaves_no_hole() {
    let dir = TempDir::new().expect("tmp");
    let path = dir.path().join("log.redb");
    let (limit_tx, limit) = watch::channel(Some(5));
    let mut log = LogStore::open(&path, limit.clone()).expect("open");
    for e in history(10) {
        log.blocking_append(vec![e]).await.expect("append");
    }
    // The install of a snapshot at 20: purged only up to the limit.
    log.purge(log_id(20)).await.expect("purge");
    assert_eq!(log.last_purged().await.expect("purged"), Some(log_id(5)));

    let mut appender = log.clone();
    let mut append = tokio::spawn(async move {
        appender
            .blocking_append(vec![normal(21, vec![])])
            .await
            .expect("append")
    });
    // It waits while the install runs (paused time: the runtime jumps ahead once all its
    // tasks wait, and file I/O on the blocking pool holds that jump off).
    let early = tokio::time::timeout(std::time::Duration::from_secs(10), &mut append).await;
    assert!(early.is_err(), "the append went ahead of the install");
    assert_eq!(log.last_purged().await.expect("purged"), Some(log_id(5)));
    // The install finishes: the state and the current snapshot are at 20.
    limit_tx.send_replace(Some(20));
    append.await.expect("append task");
    drop(log);

    // What a start finds (after a clean stop or a cut: the purge was synced before the append).
    let mut log = LogStore::open(&path, limit).expect("reopen");
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(20)));
    assert_eq!(state.last_log_id, Some(log_id(21)));
    // openraft's own check: every index between the purge point and the last entry is there.
    let entries = log
        .get_log_entries(21..=21)
        .await
        .expect("every entry after the purge point");
    assert_eq!(entries[0].log_id, log_id(21));
}
