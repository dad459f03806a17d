//! The client's `Idempotency-Key`: one key per logical write, the same on its retries after a
//! 503; a fixed key on every write; none on reads and cluster calls.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipam_client::types::AllocateRequest;
use ipam_client::Client;
use serde_json::json;

/// (path, Idempotency-Key) of a request.
type Seen = (String, Option<String>);

#[derive(Clone, Default)]
struct Script {
    /// Every request.
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Statuses to answer, in order; 201 with an allocation after they run out.
    statuses: Arc<Mutex<VecDeque<StatusCode>>>,
}

async fn record(State(s): State<Script>, req: Request) -> Response {
    let key = req
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    s.seen
        .lock()
        .unwrap()
        .push((req.uri().path().to_string(), key));
    let status = s.statuses.lock().unwrap().pop_front();
    match status {
        Some(StatusCode::SERVICE_UNAVAILABLE) => {
            let body = json!({"error": {"code": "no_leader", "message": "election"}});
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        _ => {
            let body = json!({"ip": "10.0.0.2", "pool": "vms", "owner": "a", "generation": 1,
                "labels": {}, "allocated_at": "2026-01-01T00:00:00Z"});
            let mut r = (StatusCode::CREATED, body.to_string()).into_response();
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
    }
}

async fn server() -> (Client, Script) {
    let script = Script::default();
    let app = Router::new().fallback(record).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        Client::new(&format!("http://{addr}"), None).unwrap(),
        script,
    )
}

fn req() -> AllocateRequest {
    AllocateRequest {
        owner: "a".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_retried_write_resends_its_key_and_a_new_write_gets_a_new_one() {
    let (client, script) = server().await;
    let client = client.with_write_retries(3);
    script.statuses.lock().unwrap().extend([
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::SERVICE_UNAVAILABLE,
    ]);
    let (a, created) = client.allocate("vms", &req()).await.expect("third attempt");
    assert!(created);
    assert_eq!(a.ip, "10.0.0.2");
    client.allocate("vms", &req()).await.expect("second write");
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    let keys: Vec<_> = seen
        .iter()
        .map(|(_, k)| k.clone().expect("keyed"))
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[1], keys[2]);
    assert_ne!(keys[2], keys[3], "one key per logical write");
}

#[tokio::test]
async fn retries_stop_after_the_limit() {
    let (client, script) = server().await;
    let client = client.with_write_retries(1);
    script
        .statuses
        .lock()
        .unwrap()
        .extend([StatusCode::SERVICE_UNAVAILABLE; 3]);
    let e = client.allocate("vms", &req()).await.expect_err("503 twice");
    assert!(e.is_unavailable(), "{e:?}");
    assert_eq!(script.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_fixed_key_goes_on_writes_only() {
    let (client, script) = server().await;
    let client = client.with_idempotency_key("mine");
    client.allocate("vms", &req()).await.expect("write");
    let _ = client.cluster_status().await;
    let _ = client.get_pool("vms").await;
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen[0].1.as_deref(), Some("mine"));
    assert!(seen[1..].iter().all(|(_, k)| k.is_none()), "{seen:?}");
}

#[tokio::test]
async fn without_options_nothing_is_keyed() {
    let (client, script) = server().await;
    client.allocate("vms", &req()).await.expect("write");
    assert_eq!(script.seen.lock().unwrap()[0].1, None);
}
