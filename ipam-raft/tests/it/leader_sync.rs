//! A leader acknowledges its own log appends to openraft before their sync (`storage::log`),
//! so openraft may count the leader's copy toward a commit while it is only in the page cache.
//! What that must never allow: an entry answered to its caller, or applied on any replica,
//! before the leader's copy is on disk too — a power cut of the leader could then let the
//! other two elect a leader without it, and a replica that applied it could not take it back.
//!
//! Here the leader's log syncs are held (a simulated disk): its write reaches both followers and
//! openraft commits it, yet no replica applies it and the caller has no answer until the
//! leader's sync goes through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::nodes::{spec, voters, TestNode, SERIAL, WAIT};
use crate::support::power_cut::{is_wal, PowerCutDisk, SyncHold};
use ipam_core::Allocation;
use ipam_raft::{Ipam, IpamError};
use tempfile::TempDir;

/// A failed assertion must not leave the held sync blocking the runtime's shutdown.
struct ReleaseOnDrop(Arc<SyncHold>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

fn calls(p: ipam_raft::PeerCalls) -> u64 {
    p.stream + p.http
}

/// A cluster whose leader holds its log syncs, with one write in flight that openraft has
/// committed (both followers have it on disk) while the leader's sync is held.
struct Held {
    _dir: TempDir,
    nodes: Vec<TestNode>,
    /// The leader's position in `nodes`.
    l: usize,
    leader: Ipam,
    hold: ReleaseOnDrop,
    /// The held write's log index.
    index: u64,
    write: tokio::task::JoinHandle<Result<(Allocation, bool), IpamError>>,
}

/// Three voters on simulated disks (`tweak` applied to each config), pool `vms`, one write
/// with every sync going through; then the leader's log syncs are held and a second write is
/// proposed, and this returns once openraft has committed it and the leader's sync is waiting.
async fn held_write(tweak: impl Fn(&mut ipam_raft::Config)) -> Held {
    let dir = TempDir::new().expect("tempdir");
    let disks: Vec<Arc<PowerCutDisk>> = (1..=3).map(PowerCutDisk::new).collect();
    let (nodes, st) = voters(3, dir.path(), 0, |c| {
        let disk = &disks[usize::try_from(c.id).expect("id") - 1];
        c.set_disk(disk.disk());
        tweak(c);
    })
    .await;
    let l = nodes
        .iter()
        .position(|n| Some(n.ipam.id()) == st.leader)
        .expect("the leader is one of the nodes");
    let leader = nodes[l].ipam.clone();
    leader
        .create_pool(spec("vms", "10.0.0.0/24"))
        .await
        .expect("pool");
    leader
        .allocate("vms", "before", None, BTreeMap::new())
        .await
        .expect("an allocation with every sync going through");

    let hold = ReleaseOnDrop(disks[l].hold_syncs(is_wal));
    let index = leader.status().last_log_index + 1;
    let writer = leader.clone();
    let write =
        tokio::spawn(async move { writer.allocate("vms", "held", None, BTreeMap::new()).await });
    // Both followers have it on disk and answered: openraft commits it, counting the leader's
    // unsynced copy.
    leader
        .wait_for(WAIT, |s| s.committed_index >= index)
        .await
        .expect("openraft commits the entry");
    // The background sync may start after the commit on a loaded machine: wait for it to be
    // held, so the checks look at a leader whose copy is known not to be on disk.
    leader
        .wait_for(WAIT, |_| hold.0.waiting() >= 1)
        .await
        .expect("the leader's sync is held");
    Held {
        _dir: dir,
        nodes,
        l,
        leader,
        hold,
        index,
        write,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_applies_before_the_leaders_own_copy_is_on_disk() {
    let _serial = SERIAL.lock().await;
    let Held {
        _dir,
        nodes,
        l,
        leader,
        hold,
        index,
        write,
    } = held_write(|_| {}).await;
    // openraft sends a new commit index to the followers at once, and with every heartbeat:
    // let a few more calls go out before looking.
    let sent = calls(leader.peer_calls());
    leader
        .wait_for(WAIT, |_| calls(leader.peer_calls()) >= sent + 4)
        .await
        .expect("more calls to the followers");

    for (i, n) in nodes.iter().enumerate() {
        let s = n.ipam.status();
        assert!(
            s.applied_index < index,
            "node {} applied entry {index} before the leader's copy was on disk",
            s.id
        );
        if i != l {
            assert!(
                s.committed_index < index,
                "node {} heard entry {index} committed before the leader's copy was on disk",
                s.id
            );
        }
    }
    assert!(
        !write.is_finished(),
        "the write was answered before the leader's copy was on disk"
    );

    drop(hold);
    let (allocation, existing) = write.await.expect("join").expect("allocated");
    assert!(!existing);
    assert_eq!(allocation.owner, "held");
    for n in &nodes {
        n.ipam
            .wait_for(WAIT, |s| s.applied_index >= index)
            .await
            .expect("every replica applies it once the leader's copy is on disk");
    }
}

/// The commit the transport held back reaches the followers as soon as the leader's sync goes
/// through, not at the next heartbeat: here heartbeats are 60 s apart, and nothing else is
/// written after the held entry, so only that send can tell the followers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_back_commit_is_sent_when_the_sync_lands() {
    let _serial = SERIAL.lock().await;
    let Held {
        _dir,
        nodes,
        hold,
        index,
        write,
        ..
    } = held_write(|c| {
        c.heartbeat = Duration::from_secs(60);
        c.election_timeout = (Duration::from_secs(120), Duration::from_secs(180));
    })
    .await;
    drop(hold);
    write.await.expect("join").expect("allocated");
    for n in &nodes {
        n.ipam
            .wait_for(WAIT, |s| s.applied_index >= index)
            .await
            .expect("every replica applies it well before the next heartbeat");
    }
}
