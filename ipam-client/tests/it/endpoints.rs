//! A client of several endpoints against small local servers, each playing one node: it skips
//! a node that cannot be reached, moves to the node that names itself the leader, and sends a
//! keyed write's retry to the next node after `no_leader`, with the same key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipam_client::types::AllocateRequest;
use ipam_client::Client;
use serde_json::json;

/// (path, Idempotency-Key) of a request.
type Seen = (String, Option<String>);

/// One scripted node.
#[derive(Clone)]
struct Node {
    /// What `GET /api/v1/cluster` says: (its id, the leader it knows); `None`: answers 500.
    status: Option<(u64, Option<u64>)>,
    /// Answer writes with 503 `no_leader`.
    leaderless: bool,
    /// (path, Idempotency-Key) of every request but the cluster lookups.
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn answer(State(node): State<Node>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/api/v1/cluster" {
        return match node.status {
            Some((id, leader)) => json_response(
                StatusCode::OK,
                json!({"id": id, "leader": leader, "term": 1, "last_log_index": 1,
                    "applied_index": 1, "members": []}),
            ),
            None => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": {"code": "internal", "message": "scripted"}}),
            ),
        };
    }
    let key = req
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    node.seen.lock().unwrap().push((path, key));
    if node.leaderless {
        let mut r = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": {"code": "no_leader", "message": "cut off"}}),
        );
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
        return r;
    }
    json_response(
        StatusCode::CREATED,
        json!({"ip": "10.0.0.2", "pool": "vms", "owner": "a", "generation": 1,
            "labels": {}, "allocated_at": "2026-01-01T00:00:00Z"}),
    )
}

/// Starts `node` on a free loopback port; its endpoint.
async fn start(node: &Node) -> String {
    let app = Router::new().fallback(answer).with_state(node.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn node(status: Option<(u64, Option<u64>)>, leaderless: bool) -> Node {
    Node {
        status,
        leaderless,
        seen: Arc::default(),
    }
}

/// An endpoint nothing listens on: a port the OS gave and took back.
async fn dead_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn req() -> AllocateRequest {
    AllocateRequest {
        owner: "a".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_unreachable_node_is_skipped_for_any_request() {
    let live = node(None, false);
    let (dead, up) = (dead_endpoint().await, start(&live).await);
    let client = Client::new(&format!("{dead},{up}"), None).unwrap();
    assert_eq!(client.endpoints(), [dead.as_str(), up.as_str()]);
    client.allocate("vms", &req()).await.expect("second node");
    assert_eq!(client.endpoint(), up, "later requests go straight there");
    client.allocate("vms", &req()).await.expect("again");
    assert_eq!(live.seen.lock().unwrap().len(), 2);

    // Every node down: the last one's error, naming it.
    let client = Client::new(&format!("{dead},{}", dead_endpoint().await), None).unwrap();
    let e = client.allocate("vms", &req()).await.expect_err("none up");
    assert!(e.is_unavailable(), "{e:?}");
}

#[tokio::test]
async fn requests_move_to_the_node_that_names_itself_leader() {
    // Node 1 believes node 3 leads, node 2 says it does itself, node 3 cannot be reached: only
    // a leader's own word counts.
    let (one, two) = (
        node(Some((1, Some(3))), false),
        node(Some((2, Some(2))), false),
    );
    let endpoints = [start(&one).await, start(&two).await, dead_endpoint().await];
    let client = Client::with_endpoints(&endpoints, None).unwrap();
    client.allocate("vms", &req()).await.expect("first write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.endpoint() != endpoints[1] {
        assert!(Instant::now() < deadline, "still on {}", client.endpoint());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.allocate("vms", &req()).await.expect("second write");
    assert_eq!(
        one.seen.lock().unwrap().len(),
        1,
        "the first write, before the lookup"
    );
    assert_eq!(two.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_keyed_retry_leaves_a_node_without_leader() {
    // No lookup answers, so only the retry can move the client.
    let (cut, fine) = (node(None, true), node(None, false));
    let endpoints = [start(&cut).await, start(&fine).await];
    let client = Client::with_endpoints(&endpoints, None)
        .unwrap()
        .with_write_retries(2);
    client
        .allocate("vms", &req())
        .await
        .expect("retried on the second node");
    let (a, b) = (
        cut.seen.lock().unwrap().clone(),
        fine.seen.lock().unwrap().clone(),
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(a[0].1.is_some());
    assert_eq!(a[0].1, b[0].1, "one key for the write and its retry");

    // Without retries the answer is the first node's.
    let client = Client::with_endpoints(&endpoints, None).unwrap();
    let e = client.allocate("vms", &req()).await.expect_err("no retry");
    assert_eq!(e.code(), Some(&ipam_client::ErrorCode::NoLeader));
}
