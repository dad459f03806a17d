//! `Idempotency-Key` over the router: a repeat gets the recorded answer and executes nothing,
//! another request with the key is 422, a bad key is 400, keys survive a restart, and cluster
//! routes ignore nothing (they refuse nothing either: the header is not read there).

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::common::{start, Reply, TestNode};

async fn keyed(n: &TestNode, method: Method, uri: &str, key: &str, body: Option<Value>) -> Reply {
    let b = Request::builder()
        .method(method)
        .uri(uri)
        .header("Idempotency-Key", key);
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    };
    n.send(req.expect("request")).await
}

/// A single node with pool `vms` (10.0.0.0/24).
async fn with_pool() -> TestNode {
    let n = start(None, true).await;
    n.create_pool("vms", "10.0.0.0/24").await;
    n
}

async fn allocated(n: &TestNode) -> u64 {
    let r = n.get("/api/v1/pools/vms").await;
    r.json()["stats"]["allocated"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.text))
}

#[tokio::test]
async fn a_repeated_key_gets_the_recorded_answer() {
    let n = with_pool().await;
    let uri = "/api/v1/pools/vms/allocations";
    let body = json!({"owner": "vm-1"});
    let first = keyed(&n, Method::POST, uri, "k-1", Some(body.clone())).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    // The same request again: the recorded 201 and body, not the owner's existing 200.
    let again = keyed(&n, Method::POST, uri, "k-1", Some(body.clone())).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.json(), first.json());
    // Without a key the same body is an ordinary call (the owner's existing address, 200).
    let plain = n.post(uri, body).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text);
    // The key with another request.
    keyed(&n, Method::POST, uri, "k-1", Some(json!({"owner": "vm-2"})))
        .await
        .expect(422, "idempotency_key_reused");
    assert_eq!(allocated(&n).await, 1, "the reused key executed nothing");

    // A release repeated after the address went to someone else does not free it.
    let ip = first.json()["ip"].as_str().expect("ip").to_string();
    let del = format!("{uri}/{ip}");
    let r = keyed(&n, Method::DELETE, &del, "rel-1", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = n.post(uri, json!({"owner": "vm-3"})).await;
    assert_eq!(r.json()["ip"].as_str(), Some(ip.as_str()));
    let r = keyed(&n, Method::DELETE, &del, "rel-1", None).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "the recorded answer: {}",
        r.text
    );
    let r = n.get(&format!("/api/v1/addresses/{ip}")).await;
    assert_eq!(r.json()["allocation"]["owner"], "vm-3", "{}", r.text);

    // A recorded error is an answer too.
    keyed(&n, Method::DELETE, "/api/v1/pools/nope", "del-1", None)
        .await
        .expect(404, "pool_not_found");
    n.post(
        "/api/v1/pools",
        json!({"name": "nope", "cidr": "10.9.0.0/24"}),
    )
    .await;
    keyed(&n, Method::DELETE, "/api/v1/pools/nope", "del-1", None)
        .await
        .expect(404, "pool_not_found");
    assert_eq!(n.get("/api/v1/pools/nope").await.status, StatusCode::OK);

    // Every executed write is recorded (keyed or not; a repeat answered from a record and the
    // cache-hit allocate are not): 2 pools, 2 allocations, 1 release, 1 failed delete.
    let metrics = n.get("/metrics").await.text;
    let records: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ipam_request_records "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ipam_request_records in\n{metrics}"));
    assert_eq!(records, 6);
}

#[tokio::test]
async fn answers_decided_before_the_log_are_not_recorded() {
    let n = with_pool().await;
    let uri = "/api/v1/pools/vms/allocations";
    // 400 on the body: not recorded, so the key is still free for a good request.
    keyed(&n, Method::POST, uri, "k", Some(json!({"owner": ""})))
        .await
        .expect(400, "invalid_argument");
    let r = keyed(&n, Method::POST, uri, "k", Some(json!({"owner": "a"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn malformed_keys_are_400_and_cluster_routes_ignore_the_header() {
    let n = start(None, true).await;
    let body = json!({"name": "vms", "cidr": "10.0.0.0/24"});
    for bad in ["", "has space", &"k".repeat(129)] {
        keyed(&n, Method::POST, "/api/v1/pools", bad, Some(body.clone()))
            .await
            .expect(400, "invalid_argument");
    }
    assert_eq!(
        n.get("/api/v1/pools/vms").await.status,
        StatusCode::NOT_FOUND
    );
    let r = keyed(
        &n,
        Method::POST,
        "/api/v1/cluster/init",
        "",
        Some(json!({})),
    )
    .await;
    assert_ne!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // A keyed write of at most 128 visible characters is accepted.
    let r = keyed(
        &n,
        Method::POST,
        "/api/v1/pools",
        &"k".repeat(128),
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let n = with_pool().await;
    let uri = "/api/v1/pools/vms/allocations";
    let first = keyed(&n, Method::POST, uri, "boot", Some(json!({"owner": "a"}))).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let dir = n.dir;
    n.ipam.shutdown().await.expect("shutdown");
    let config = ipam_raft::Config::new(1, dir.path(), "127.0.0.1:1");
    let ipam = ipam_raft::Ipam::start(config).await.expect("restart");
    ipam.wait_for(Duration::from_secs(20), |s| {
        s.leader == Some(1) && s.applied_index >= s.committed_index
    })
    .await
    .expect("leader after restart");
    let state =
        ipam_node::AppState::new(ipam.clone(), None, Duration::from_secs(30)).expect("state");
    let n = TestNode {
        dir,
        router: ipam_node::router(state),
        ipam,
        token: None,
    };
    let again = keyed(&n, Method::POST, uri, "boot", Some(json!({"owner": "a"}))).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.json(), first.json());
    keyed(&n, Method::POST, uri, "boot", Some(json!({"owner": "b"})))
        .await
        .expect(422, "idempotency_key_reused");
}
