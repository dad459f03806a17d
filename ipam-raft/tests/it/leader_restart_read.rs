//! A leader that restarts after a power cut must not answer a read below its last acknowledged
//! write.
//!
//! openraft 0.9 would resume leading at once in the term of a committed vote naming the node,
//! with a restored commit index that lags the last entry (it is stored with the next append);
//! the read floor (`Shared::read_floor`) was the answer to that. Since a leader's own appends
//! are acknowledged before they are on disk, a restarted leader may also lack entries its
//! followers hold, so it no longer resumes its term at all (`storage::log::leader::restart_vote`): it
//! waits as a candidate and wins, if it does, a higher term. Here the leader's disk loses power
//! right after its last acknowledged write, and on restart its followers hold every append
//! that would tell it how far they match (an append with entries or a previous log id) while
//! letting votes and heartbeats through. It must come back in a new term, and a read in that
//! window must fail or see every acknowledged write, never miss one.

use crate::support;
use crate::support::nodes::SERIAL;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use ipam_raft::types::AppendEntriesRequest;
use ipam_raft::{Config, Consistency, Ipam};
use support::power_cut::{Cut, PowerCutDisk};
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(20);
const WRITES: usize = 5;

type Slot = Arc<Mutex<Option<axum::Router>>>;

/// A node's listener (kept across restarts), its current instance and its disk.
struct Node {
    id: u64,
    addr: String,
    dir: std::path::PathBuf,
    slot: Slot,
    disk: Arc<PowerCutDisk>,
    ipam: Option<Ipam>,
    _server: tokio::task::JoinHandle<()>,
}

/// Whether the followers hold the appends that carry matching information.
type Hold = tokio::sync::watch::Receiver<bool>;

/// An append that can move the leader's view of a follower's log: not a bare heartbeat.
fn carries_progress(body: &[u8]) -> bool {
    postcard::from_bytes::<AppendEntriesRequest>(body)
        .map(|r| r.prev_log_id.is_some() || !r.entries.is_empty())
        .unwrap_or(false)
}

async fn listen(id: u64, root: &std::path::Path, hold: Hold) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let slot: Slot = Arc::default();
    let current = slot.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let router = current.lock().expect("slot").clone();
        let mut hold = hold.clone();
        async move {
            let Some(router) = router else {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            };
            // No peer streams here: the hold below sees `/raft/append` only as HTTP calls, so
            // the nodes must call each other the way they call a release without streams.
            if req.uri().path() == "/raft/stream" {
                return StatusCode::NOT_FOUND.into_response();
            }
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            if parts.uri.path() == "/raft/append" && carries_progress(&bytes) {
                let _ = hold.wait_for(|held| !held).await;
            }
            let req = Request::from_parts(parts, Body::from(bytes));
            router.oneshot(req).await.into_response()
        }
    });
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Node {
        id,
        addr,
        dir: root.join(format!("n{id}")),
        slot,
        disk: PowerCutDisk::new(id),
        ipam: None,
        _server: server,
    }
}

/// Node 1 leads: the others' election timeout is ten times its.
fn config(node: &Node) -> Config {
    let mut c = Config::new(node.id, &node.dir, node.addr.clone());
    c.set_disk(node.disk.disk());
    c.heartbeat = Duration::from_millis(50);
    c.election_timeout = if node.id == 1 {
        (Duration::from_millis(150), Duration::from_millis(300))
    } else {
        // Long enough that node 1 leads first, short enough that their leader lease of
        // node 1's old term runs out and they grant the restarted node 1 a new term.
        (Duration::from_secs(3), Duration::from_millis(3100))
    };
    // Applies are never made durable on their own, and no snapshot makes them so.
    c.durable_every_entries = 1_000_000;
    c.durable_interval = Duration::from_secs(3600);
    c.snapshot_logs = 100_000;
    c.read_deadline = Duration::from_secs(1);
    c
}

async fn start(node: &mut Node) {
    let ipam = Ipam::start(config(node)).await.expect("start");
    *node.slot.lock().expect("slot") = Some(ipam.raft_router());
    node.ipam = Some(ipam);
}

async fn stop(node: &mut Node) {
    *node.slot.lock().expect("slot") = None;
    if let Some(ipam) = node.ipam.take() {
        let _ = ipam.shutdown().await;
    }
}

fn ipam(n: &Node) -> &Ipam {
    n.ipam.as_ref().expect("running")
}

/// The owners of pool `vms`'s allocations, read through a linearizable barrier.
async fn owners(ipam: &Ipam) -> Result<Vec<String>, ipam_raft::IpamError> {
    let page = ipam
        .allocations("vms", None, None, 1000, Consistency::Linearizable)
        .await?;
    Ok(page.allocations.into_iter().map(|a| a.owner).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_takes_a_new_term_and_never_reads_below_its_last_entry() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let (hold_tx, hold) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(listen(id, root.path(), hold.clone()).await);
    }
    for n in nodes.iter_mut() {
        start(n).await;
    }
    let members = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    let leader = ipam(&nodes[0]);
    leader.init(members).await.expect("init");
    let st = leader
        .wait_for(WAIT, |s| s.leader.is_some())
        .await
        .expect("leader");
    assert_eq!(
        st.leader,
        Some(1),
        "node 1 has the only short election timeout"
    );
    leader
        .create_pool(support::pools::vms("10.0.0.0/24"))
        .await
        .expect("pool");
    let mut acked = Vec::new();
    for i in 0..WRITES {
        let owner = format!("vm-{i}");
        leader
            .allocate("vms", &owner, None, BTreeMap::new())
            .await
            .expect("allocate");
        acked.push(owner);
    }
    let before = leader.status();

    // Power cut on the leader alone: its log entries were synced, its applies were not.
    nodes[0].disk.cut(Cut::AllPendingLost);
    stop(&mut nodes[0]).await;
    nodes[0].disk.power_on();
    hold_tx.send_replace(true);
    start(&mut nodes[0]).await;
    let leader = ipam(&nodes[0]);
    // openraft restores a node whose committed vote names it as leader at once; the old term
    // must not come back (it would show within a heartbeat or two of the start).
    let resumed = leader
        .wait_for(Duration::from_secs(1), |s| {
            s.leader == Some(1) && s.term == before.term
        })
        .await;
    assert!(
        resumed.is_err(),
        "the restarted leader resumed its term {}: {resumed:?}",
        before.term
    );
    let st = leader
        .wait_for(WAIT, |s| s.leader.is_some() && s.term > before.term)
        .await
        .expect("a leader in a new term");
    assert!(
        st.term > before.term,
        "a restarted leader resumed its term {} (now {}): entries it lost could be rewritten \
         under log ids its followers hold",
        before.term,
        st.term
    );

    // The followers hold every append that could raise the commit index: the read index is
    // fixed now. It may fail; it must not miss an acknowledged write.
    let first = owners(leader).await;
    let after = leader.status();
    if let Ok(seen) = &first {
        for owner in &acked {
            assert!(
                seen.contains(owner),
                "read right after the restart misses acknowledged {owner}: saw {seen:?} \
                 (commit {} applied {} of last entry {})",
                after.committed_index,
                after.applied_index,
                before.last_log_index
            );
        }
    }

    hold_tx.send_replace(false);
    let deadline = Instant::now() + WAIT;
    let seen = loop {
        match owners(leader).await {
            Ok(seen) => break seen,
            Err(e) => assert!(Instant::now() < deadline, "no read after release: {e}"),
        }
    };
    for owner in &acked {
        assert!(seen.contains(owner), "{owner} lost: saw {seen:?}");
    }
    println!(
        "first read after restart: {}",
        match first {
            Ok(_) => "answered with every acknowledged write".to_string(),
            Err(e) => format!("failed ({e})"),
        }
    );
    for n in nodes.iter_mut() {
        stop(n).await;
    }
}
