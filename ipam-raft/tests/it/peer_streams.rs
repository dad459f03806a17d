//! Peer streams (`/raft/stream`): nodes call each other over upgraded connections, reuse them,
//! and call a peer that takes no stream (an older release) over HTTP instead.

use crate::support;
use crate::support::nodes::SERIAL;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use ipam_raft::{Config, Consistency, Ipam};
use tempfile::TempDir;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

/// A node; `streams: false` serves it as a release before peer streams (404 on the route).
async fn start(id: u64, dir: &std::path::Path, streams: bool) -> (Ipam, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let ipam = Ipam::start(Config::new(id, dir.join(format!("n{id}")), addr.clone()))
        .await
        .expect("start");
    let mut router = ipam.raft_router();
    if !streams {
        router = router.layer(middleware::from_fn(no_stream_route));
    }
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (ipam, addr)
}

async fn no_stream_route(req: Request, next: Next) -> Response {
    if req.uri().path() == "/raft/stream" {
        return StatusCode::NOT_FOUND.into_response();
    }
    next.run(req).await
}

/// Three nodes, `old` (1-based ids) without streams; a pool and 30 allocations through every
/// node, checked on every node.
async fn cluster_with(old: &[u64]) -> (TempDir, Vec<(Ipam, String)>) {
    let dir = TempDir::new().expect("tempdir");
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(id, dir.path(), !old.contains(&id)).await);
    }
    let members = nodes
        .iter()
        .enumerate()
        .map(|(i, (_, addr))| (i as u64 + 1, addr.clone()))
        .collect();
    nodes[0].0.init(members).await.expect("init");
    for (ipam, _) in &nodes {
        ipam.wait_for(WAIT, |s| s.leader.is_some())
            .await
            .expect("leader known");
    }
    nodes[2]
        .0
        .create_pool(support::pools::vms("10.0.0.0/24"))
        .await
        .expect("pool");
    let mut tasks = Vec::new();
    for i in 0..30u32 {
        let ipam = nodes[(i % 3) as usize].0.clone();
        tasks.push(tokio::spawn(async move {
            ipam.allocate("vms", &format!("vm-{i}"), None, BTreeMap::new())
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("allocate");
    }
    for (ipam, _) in &nodes {
        let pool = ipam
            .pool("vms", Consistency::Linearizable)
            .await
            .expect("read");
        assert_eq!(pool.stats.allocated, 30);
    }
    (dir, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_call_each_other_over_reused_streams() {
    let _serial = SERIAL.lock().await;
    let (_dir, nodes) = cluster_with(&[]).await;
    let (mut calls, mut opened) = (0, 0);
    for (ipam, addr) in &nodes {
        let c = ipam.peer_calls();
        assert_eq!(c.http, 0, "{addr} made HTTP calls: {c:?}");
        assert!(c.stream > 0, "{addr} made no stream calls: {c:?}");
        calls += c.stream;
        opened += c.streams_opened;
    }
    // Streams are kept and reused: far fewer opened than calls made.
    assert!(
        opened * 4 <= calls,
        "{opened} streams opened for {calls} calls"
    );
    for (ipam, _) in nodes {
        ipam.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_streams_is_called_over_http() {
    let _serial = SERIAL.lock().await;
    let (_dir, nodes) = cluster_with(&[3]).await;
    let old_addr = nodes[2].1.clone();
    // The leader replicates to node 3 whoever leads: some node calls it, and only over HTTP.
    let http: u64 = nodes[..2]
        .iter()
        .map(|(ipam, _)| ipam.peer_calls().http)
        .sum();
    assert!(http > 0, "nobody called {old_addr} over HTTP");
    // Node 3 itself still calls the others over streams.
    let old = nodes[2].0.peer_calls();
    assert!(old.stream > 0, "node 3 made no stream calls: {old:?}");
    for (ipam, _) in nodes {
        ipam.shutdown().await.expect("shutdown");
    }
}
