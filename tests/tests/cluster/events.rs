//! The event log across a cluster: a watcher on a follower's HTTP API loses its connection
//! while the leader is stopped and writes continue, reconnects with `Last-Event-ID`, and has
//! seen every event exactly once, in id order; every replica lists the same events.

use std::time::{Duration, Instant};

use ipam_client::types::Event;
use ipam_client::{Client, EventStream};
use ipam_node::{router, AppState};
use ipam_raft::{Consistency, Ipam};
use ipam_tests::{bounded, Cluster, WAIT};

const POOL: &str = "vms";

/// Serves `ipam`'s HTTP API on a port-0 listener; returns its base URL.
async fn serve_api(ipam: &Ipam) -> (String, tokio::task::JoinHandle<()>) {
    let state = AppState::new(ipam.clone(), None, Duration::from_secs(30)).expect("state");
    let app = router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// Reads `stream` until it delivered id `last`, appending to `seen`.
async fn read_until(stream: &mut EventStream, seen: &mut Vec<Event>, last: u64) {
    let until = Instant::now() + WAIT;
    while seen.last().and_then(Event::id_number) != Some(last) {
        let left = until.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no event after {:?}", seen.last().map(|e| &e.id)));
        seen.push(next.expect("stream open").expect("event"));
    }
}

/// Every event `ipam` keeps, from its own replica.
async fn listed(ipam: &Ipam) -> Vec<ipam_core::Event> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = ipam
            .events(after, None, 1000, Consistency::Local)
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
async fn a_watcher_resumes_with_last_event_id_across_a_leader_stop() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = Cluster::builder(3)
            .config(|c| c.write_deadline = Duration::from_secs(3))
            .start()
            .await;
        let leader = cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let follower = cluster.followers(leader)[0];
        let (url, server) = serve_api(cluster.ipam(follower)).await;
        let client = Client::new(&url, None).expect("client");

        // From the first event on.
        let mut stream = client.watch(Some(0), None, None).await.expect("watch");
        let mut seen = Vec::new();
        cluster
            .allocate_many(&cluster.running(), POOL, "before", 60)
            .await;
        let last = listed(cluster.ipam(leader))
            .await
            .last()
            .expect("events")
            .id;
        read_until(&mut stream, &mut seen, last).await;

        // The connection drops; the leader stops; writes go on through the survivors.
        drop(stream);
        cluster.stop(leader).await;
        let survivors = cluster.running();
        cluster.wait_new_leader(leader).await;
        cluster.allocate_many(&survivors, POOL, "after", 60).await;
        let releaser = cluster.ipam(survivors[0]).clone();
        releaser
            .release_owner(POOL, "before-1")
            .await
            .expect("release");

        // Reconnect: `Last-Event-ID` names the last event seen (`after` is ignored).
        let resume = stream_last(&seen);
        let mut stream = client
            .watch(Some(0), None, Some(resume))
            .await
            .expect("resume");
        cluster.converge().await;
        let last = listed(cluster.ipam(follower))
            .await
            .last()
            .expect("events")
            .id;
        read_until(&mut stream, &mut seen, last).await;
        let ids: Vec<u64> = seen.iter().filter_map(Event::id_number).collect();
        assert_eq!(
            ids,
            (1..=last).collect::<Vec<_>>(),
            "every event once, in order"
        );
        let allocated = seen.iter().filter(|e| e.kind == "allocated").count();
        assert_eq!(allocated, 120);
        assert_eq!(seen.last().map(|e| e.kind.as_str()), Some("released"));

        // The stopped leader catches up; every replica lists the same events.
        cluster.restart(leader).await;
        cluster.converge().await;
        let reference = listed(cluster.ipam(follower)).await;
        assert_eq!(reference.len() as u64, last);
        for id in cluster.running() {
            assert_eq!(listed(cluster.ipam(id)).await, reference, "node {id}");
        }
        drop(stream);
        server.abort();
        cluster.shutdown().await;
    })
    .await;
}

/// The id of the last event in `seen`.
fn stream_last(seen: &[Event]) -> u64 {
    seen.last()
        .and_then(Event::id_number)
        .expect("an event seen")
}
