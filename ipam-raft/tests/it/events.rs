//! Events through `Ipam`: watches on the leader and on a follower deliver every event once, in
//! id order, across many concurrent writes; a watch resumes from an id; listing and history
//! agree with the watch; streams end on shutdown and the watcher count follows them.

use crate::support;
use crate::support::nodes::SERIAL;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipam_core::{Event, EventKind};
use ipam_raft::events::EventWatch;
use ipam_raft::{Consistency, Ipam};
use support::nodes::{spec, voters, WAIT};
use tempfile::TempDir;

/// Reads `watch` until it delivered the event with id `last`, failing after `WAIT`.
async fn collect_until(watch: &mut EventWatch, last: u64) -> Vec<Event> {
    let until = Instant::now() + WAIT;
    let mut got: Vec<Event> = Vec::new();
    while got.last().map(|e| e.id) != Some(last) {
        let left = until.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, watch.next())
            .await
            .unwrap_or_else(|_| panic!("watch stalled after {:?}", got.last().map(|e| e.id)));
        let event = next.expect("stream open").expect("event");
        assert!(event.id <= last, "event {} beyond {last}", event.id);
        got.push(event);
    }
    got
}

/// Every kept event, oldest first, through the paged listing.
async fn all_events(ipam: &Ipam, pool: Option<&str>) -> Vec<Event> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = ipam
            .events(after, pool, 50, Consistency::Linearizable)
            .await
            .expect("events");
        out.extend(page.events);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_deliver_every_event_once_in_order() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let (nodes, _) = voters(3, dir.path(), 0, |_| {}).await;
    let leader = nodes[0].ipam.clone();
    leader
        .create_pool(spec("a", "10.0.0.0/24"))
        .await
        .expect("pool a");
    // From now on: the pool's creation is not delivered.
    let follower = nodes[2].ipam.clone();
    let mut on_leader = leader.watch(None, None).await.expect("watch leader");
    let mut on_follower = follower.watch(None, None).await.expect("watch follower");
    let mut only_b = follower
        .watch(None, Some("b".to_string()))
        .await
        .expect("watch b");
    assert_eq!(leader.event_watchers(), 1);
    assert_eq!(follower.event_watchers(), 2);

    leader
        .create_pool(spec("b", "10.1.0.0/24"))
        .await
        .expect("pool b");
    // Concurrent writers through every node: coalesced entries carry many events each.
    let mut writers = Vec::new();
    for (w, node) in nodes.iter().enumerate() {
        let ipam = node.ipam.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                let pool = if i % 2 == 0 { "a" } else { "b" };
                let owner = format!("w{w}-{i}");
                let (a, _) = ipam
                    .allocate(pool, &owner, None, BTreeMap::new())
                    .await
                    .expect("allocate");
                if i % 3 == 0 {
                    ipam.release(pool, a.ip, None).await.expect("release");
                }
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    leader.delete_pool("b", true).await.expect("delete b");

    let listed = all_events(&leader, None).await;
    let last = listed.last().expect("events").id;
    let first_watched = 2; // event 1 is pool a's creation, before the watches began
    assert_eq!(listed.len() as u64, last, "ids are 1..=last");
    let expected: Vec<Event> = listed[first_watched as usize - 1..].to_vec();
    let got_leader = collect_until(&mut on_leader, last).await;
    let got_follower = collect_until(&mut on_follower, last).await;
    assert_eq!(got_leader, expected);
    assert_eq!(got_follower, expected);
    // 120 allocations; 42 releases (i % 3 == 0), and the 39 allocations pool b still held
    // when it was deleted with force (60 made there, 21 of them released before).
    let count = |k: EventKind| expected.iter().filter(|e| e.kind == k).count();
    assert_eq!(count(EventKind::Allocated), 120);
    assert_eq!(count(EventKind::PoolCreated), 1);
    assert_eq!(count(EventKind::PoolDeleted), 1);
    assert_eq!(count(EventKind::Released), 42 + 39);

    let b_events: Vec<Event> = expected.iter().filter(|e| e.pool == "b").cloned().collect();
    assert_eq!(all_events(&follower, Some("b")).await, b_events);
    let got_b = collect_until(&mut only_b, b_events.last().expect("b").id).await;
    assert_eq!(got_b, b_events);

    // Resume from an id: exactly what follows it.
    let mid = last / 2;
    let mut resumed = follower.watch(Some(mid), None).await.expect("resume");
    let got = collect_until(&mut resumed, last).await;
    assert_eq!(got, listed[mid as usize..].to_vec());

    // An address's history, newest first, from any replica.
    let ip = expected
        .iter()
        .find(|e| e.kind == EventKind::Released && e.pool == "a")
        .and_then(|e| e.ip)
        .expect("a released address");
    let history = follower
        .history(ip, 1000, Consistency::Linearizable)
        .await
        .expect("history");
    let want: Vec<Event> = listed
        .iter()
        .rev()
        .filter(|e| e.ip == Some(ip))
        .cloned()
        .collect();
    assert_eq!(history, want);

    drop(resumed);
    drop(only_b);
    let until = Instant::now() + WAIT;
    while follower.event_watchers() != 1 {
        assert!(Instant::now() < until, "watcher count did not drop");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Shutdown ends the streams.
    for n in nodes {
        n.ipam.shutdown().await.expect("shutdown");
        n.server.abort();
    }
    for w in [&mut on_leader, &mut on_follower] {
        let end = tokio::time::timeout(WAIT, w.next()).await.expect("ends");
        assert!(end.is_none(), "stream ended with {end:?}");
    }
}
