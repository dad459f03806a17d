//! The client against a tiny local axum server that records every request and answers from a
//! script: checks the requests each method builds and how answers and errors decode.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipam_client::types::{AllocateRequest, BatchOp, CreatePoolRequest, GatewayField, NodeAddr};
use ipam_client::{AllocationQuery, Client, ClientError, Consistency, ErrorCode};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    query: Option<String>,
    auth: Option<String>,
    content_type: Option<String>,
    body: Option<Value>,
}

type Canned = (StatusCode, Vec<(&'static str, &'static str)>, String);

#[derive(Clone, Default)]
struct Script {
    seen: Arc<Mutex<Vec<Recorded>>>,
    answers: Arc<Mutex<VecDeque<Canned>>>,
}

impl Script {
    fn answer(&self, status: u16, body: Value) {
        self.answer_raw(status, vec![], body.to_string());
    }

    fn answer_raw(&self, status: u16, headers: Vec<(&'static str, &'static str)>, body: String) {
        self.answers.lock().unwrap().push_back((
            StatusCode::from_u16(status).unwrap(),
            headers,
            body,
        ));
    }

    fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn record(
    State(script): State<Script>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    script.seen.lock().unwrap().push(Recorded {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        auth: header("authorization"),
        content_type: header("content-type"),
        body: (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap()),
    });
    let Some((status, extra, body)) = script.answers.lock().unwrap().pop_front() else {
        return (StatusCode::IM_A_TEAPOT, "no answer scripted").into_response();
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (k, v) in extra {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

async fn server() -> (Client, Script) {
    let script = Script::default();
    let app = Router::new().fallback(record).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = Client::new(&format!("http://{addr}"), Some("s3cret".to_string())).unwrap();
    (client, script)
}

fn pool_json(name: &str) -> Value {
    json!({
        "name": name, "cidr": "10.0.0.0/24", "gateway": "10.0.0.1", "reserved": [],
        "labels": {"env": "prod"}, "description": "", "created_at": "2026-01-01T00:00:00Z",
        "stats": {"capacity": "252", "allocated": "2", "free": "250", "utilization": 0.0079}
    })
}

fn allocation_json(ip: &str, owner: &str) -> Value {
    json!({"ip": ip, "pool": "vms", "owner": owner, "generation": 7,
           "allocated_at": "2026-01-01T00:00:00Z", "labels": {}})
}

#[tokio::test]
async fn pool_calls_build_the_contracts_requests() {
    let (client, script) = server().await;

    script.answer(201, pool_json("vms"));
    let req = CreatePoolRequest {
        name: "vms".into(),
        cidr: "10.0.0.0/24".into(),
        gateway: GatewayField::None,
        reserved: vec!["10.0.0.2-10.0.0.9".into()],
        ..Default::default()
    };
    let pool = client.create_pool(&req).await.unwrap();
    assert_eq!(pool.name, "vms");
    assert_eq!(pool.stats.capacity, "252");

    script.answer(200, json!({"pools": [pool_json("a"), pool_json("b")]}));
    let pools = client
        .list_pools(&[("env".into(), "prod".into()), ("team".into(), "a b".into())])
        .await
        .unwrap();
    assert_eq!(pools.len(), 2);

    script.answer(200, pool_json("vms"));
    client.get_pool("vms").await.unwrap();

    script.answer_raw(204, vec![], String::new());
    client.delete_pool("vms", true).await.unwrap();
    script.answer_raw(204, vec![], String::new());
    client.delete_pool("vms", false).await.unwrap();

    let seen = script.take();
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].path, "/api/v1/pools");
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer s3cret"));
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].body,
        Some(
            json!({"name": "vms", "cidr": "10.0.0.0/24", "gateway": null,
                    "reserved": ["10.0.0.2-10.0.0.9"]})
        )
    );
    assert_eq!(seen[1].method, Method::GET);
    assert_eq!(seen[1].path, "/api/v1/pools");
    assert_eq!(
        seen[1].query.as_deref(),
        Some("label=env%3Dprod&label=team%3Da+b")
    );
    assert_eq!(seen[2].path, "/api/v1/pools/vms");
    assert_eq!(seen[2].query, None);
    assert_eq!(seen[3].method, Method::DELETE);
    assert_eq!(seen[3].path, "/api/v1/pools/vms");
    assert_eq!(seen[3].query.as_deref(), Some("force=true"));
    assert_eq!(seen[4].query, None);
}

#[tokio::test]
async fn allocate_tells_new_from_existing() {
    let (client, script) = server().await;
    let req = AllocateRequest {
        owner: "vm-42/eth0".into(),
        ip: Some("10.0.0.7".into()),
        labels: [("k".to_string(), "v".to_string())].into(),
        ttl_seconds: None,
    };
    script.answer(201, allocation_json("10.0.0.7", "vm-42/eth0"));
    let (a, created) = client.allocate("vms", &req).await.unwrap();
    assert!(created);
    assert_eq!(a.generation, 7);
    script.answer(200, allocation_json("10.0.0.7", "vm-42/eth0"));
    let (_, created) = client.allocate("vms", &req).await.unwrap();
    assert!(!created);

    let seen = script.take();
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].path, "/api/v1/pools/vms/allocations");
    assert_eq!(
        seen[0].body,
        Some(json!({"owner": "vm-42/eth0", "ip": "10.0.0.7", "labels": {"k": "v"}}))
    );
}

#[tokio::test]
async fn allocation_reads_and_releases() {
    let (client, script) = server().await;

    script.answer(
        200,
        json!({"allocations": [allocation_json("10.0.0.2", "a")], "next": "10.0.0.2"}),
    );
    let page = client
        .list_allocations(
            "vms",
            &AllocationQuery {
                owner: Some("a&b".into()),
                after: Some("10.0.0.1".into()),
                limit: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(page.next.as_deref(), Some("10.0.0.2"));

    script.answer_raw(204, vec![], String::new());
    client.release("vms", "fd00::7", Some(9)).await.unwrap();
    script.answer(200, json!({"released": ["10.0.0.2"]}));
    let released = client.release_owner("vms", "vm 1").await.unwrap();
    assert_eq!(released.released, vec!["10.0.0.2"]);
    script.answer(200, json!({"pool": "vms", "allocation": null}));
    let info = client.address("10.0.0.9").await.unwrap();
    assert_eq!(info.pool.as_deref(), Some("vms"));
    assert!(info.allocation.is_none());
    script.answer(
        200,
        json!({"allocations": [allocation_json("10.0.0.2", "a")]}),
    );
    assert_eq!(client.owner_allocations("a").await.unwrap().len(), 1);

    let seen = script.take();
    assert_eq!(seen[0].path, "/api/v1/pools/vms/allocations");
    assert_eq!(
        seen[0].query.as_deref(),
        Some("owner=a%26b&after=10.0.0.1&limit=1")
    );
    assert_eq!(seen[1].method, Method::DELETE);
    assert_eq!(seen[1].path, "/api/v1/pools/vms/allocations/fd00::7");
    assert_eq!(seen[1].query.as_deref(), Some("generation=9"));
    assert_eq!(seen[2].method, Method::DELETE);
    assert_eq!(seen[2].path, "/api/v1/pools/vms/allocations");
    assert_eq!(seen[2].query.as_deref(), Some("owner=vm+1"));
    assert_eq!(seen[3].path, "/api/v1/addresses/10.0.0.9");
    assert_eq!(seen[4].path, "/api/v1/allocations");
    assert_eq!(seen[4].query.as_deref(), Some("owner=a"));
}

#[tokio::test]
async fn local_consistency_goes_on_reads_only() {
    let (client, script) = server().await;
    let client = client.with_consistency(Consistency::Local);
    script.answer(200, json!({"pools": []}));
    client
        .list_pools(&[("env".into(), "prod".into())])
        .await
        .unwrap();
    script.answer(200, json!({"allocations": []}));
    client
        .list_allocations("vms", &AllocationQuery::default())
        .await
        .unwrap();
    script.answer(201, allocation_json("10.0.0.2", "a"));
    client
        .allocate(
            "vms",
            &AllocateRequest {
                owner: "a".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let seen = script.take();
    assert_eq!(
        seen[0].query.as_deref(),
        Some("consistency=local&label=env%3Dprod")
    );
    assert_eq!(seen[1].query.as_deref(), Some("consistency=local"));
    assert_eq!(seen[2].query, None);
}

#[tokio::test]
async fn list_all_allocations_follows_next() {
    let (client, script) = server().await;
    script.answer(200, json!({"allocations": [allocation_json("10.0.0.2", "a"), allocation_json("10.0.0.3", "b")], "next": "10.0.0.3"}));
    script.answer(
        200,
        json!({"allocations": [allocation_json("10.0.0.4", "c")]}),
    );
    let all = client
        .list_all_allocations(
            "vms",
            &AllocationQuery {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ips: Vec<_> = all.iter().map(|a| a.ip.as_str()).collect();
    assert_eq!(ips, ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    let seen = script.take();
    assert_eq!(seen[0].query.as_deref(), Some("limit=2"));
    assert_eq!(seen[1].query.as_deref(), Some("after=10.0.0.3&limit=2"));
}

#[tokio::test]
async fn list_all_allocations_stops_on_a_cursor_that_does_not_move() {
    let (client, script) = server().await;
    script.answer(200, json!({"allocations": [], "next": "10.0.0.3"}));
    script.answer(200, json!({"allocations": [], "next": "10.0.0.3"}));
    let err = client
        .list_all_allocations("vms", &AllocationQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn batch_and_cluster_calls() {
    let (client, script) = server().await;

    script.answer(
        200,
        json!({"results": [allocation_json("10.0.0.2", "a"), {}]}),
    );
    let resp = client
        .batch(vec![
            BatchOp::Allocate {
                pool: "vms".into(),
                owner: "a".into(),
                ip: None,
                labels: Default::default(),
                ttl_seconds: Some(60),
            },
            BatchOp::Release {
                pool: "vms".into(),
                ip: "10.0.0.9".into(),
                generation: Some(3),
            },
        ])
        .await
        .unwrap();
    assert_eq!(resp.results.len(), 2);

    let status_json = json!({"id": 1, "leader": 1, "term": 2, "last_log_index": 10,
        "applied_index": 10, "members": [{"id": 1, "addr": "127.0.0.1:7470", "role": "voter"}]});
    script.answer(200, status_json.clone());
    let status = client.cluster_status().await.unwrap();
    assert_eq!(status.leader, Some(1));
    assert_eq!(status.commit_index, 0);

    for _ in 0..6 {
        script.answer(200, status_json.clone());
    }
    let after = client
        .cluster_init(vec![NodeAddr {
            id: 1,
            addr: "127.0.0.1:1".into(),
        }])
        .await
        .unwrap();
    assert_eq!(after, status);
    client.cluster_init(vec![]).await.unwrap();
    client.add_learner(2, "127.0.0.1:2").await.unwrap();
    client.promote_voter(2).await.unwrap();
    client.set_voters(vec![1, 2]).await.unwrap();
    client.remove_member(3).await.unwrap();
    // Membership calls answer the cluster status: anything else is a decode error.
    script.answer_raw(200, vec![], String::new());
    let err = client.remove_member(3).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");

    let seen = script.take();
    assert_eq!(seen[0].path, "/api/v1/batch");
    assert_eq!(
        seen[0].body,
        Some(json!({"ops": [
            {"op": "allocate", "pool": "vms", "owner": "a", "ttl_seconds": 60},
            {"op": "release", "pool": "vms", "ip": "10.0.0.9", "generation": 3}
        ]}))
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("GET", "/api/v1/cluster")
    );
    assert_eq!(seen[2].path, "/api/v1/cluster/init");
    assert_eq!(
        seen[2].body,
        Some(json!({"members": [{"id": 1, "addr": "127.0.0.1:1"}]}))
    );
    assert_eq!(seen[3].body, Some(json!({})));
    assert_eq!(seen[4].path, "/api/v1/cluster/learners");
    assert_eq!(seen[4].body, Some(json!({"id": 2, "addr": "127.0.0.1:2"})));
    assert_eq!(
        (seen[5].method.as_str(), seen[5].path.as_str()),
        ("POST", "/api/v1/cluster/voters/2")
    );
    assert_eq!(seen[6].path, "/api/v1/cluster/voters");
    assert_eq!(seen[6].body, Some(json!({"ids": [1, 2]})));
    assert_eq!(
        (seen[7].method.as_str(), seen[7].path.as_str()),
        ("DELETE", "/api/v1/cluster/members/3")
    );
}

#[tokio::test]
async fn operations_endpoints() {
    let (client, script) = server().await;
    script.answer_raw(200, vec![], "ok".into());
    client.healthz().await.unwrap();
    script.answer_raw(200, vec![], "ok".into());
    assert!(client.readyz().await.unwrap());
    script.answer(
        503,
        json!({"error": {"code": "no_leader", "message": "no leader"}}),
    );
    assert!(!client.readyz().await.unwrap());
    script.answer_raw(200, vec![], "ipam_raft_term 3\n".into());
    assert_eq!(client.metrics().await.unwrap(), "ipam_raft_term 3\n");
    let seen = script.take();
    let paths: Vec<_> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/healthz", "/readyz", "/readyz", "/metrics"]);
}

#[tokio::test]
async fn api_errors_carry_code_message_and_extras() {
    let (client, script) = server().await;
    script.answer(
        404,
        json!({"error": {"code": "pool_not_found", "message": "no pool named vms"}}),
    );
    let err = client.get_pool("vms").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.code(), Some(&ErrorCode::PoolNotFound));
    assert_eq!(err.to_string(), "pool_not_found: no pool named vms");

    script.answer(
        409,
        json!({"error": {"code": "pool_exhausted", "message": "full", "index": 1}}),
    );
    let err = client.batch(vec![]).await.unwrap_err();
    match err {
        ClientError::Api {
            status,
            index,
            may_have_committed,
            ..
        } => {
            assert_eq!(status, StatusCode::CONFLICT);
            assert_eq!(index, Some(1));
            assert!(!may_have_committed);
        }
        other => panic!("{other:?}"),
    }

    script.answer_raw(
        503,
        vec![("retry-after", "2")],
        json!({"error": {"code": "deadline_exceeded", "message": "slow", "may_have_committed": true}}).to_string(),
    );
    let err = client
        .allocate(
            "vms",
            &AllocateRequest {
                owner: "a".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_unavailable());
    assert!(err.may_have_committed());
    assert!(
        matches!(err, ClientError::Api { retry_after: Some(d), .. } if d == Duration::from_secs(2))
    );
}

#[tokio::test]
async fn undecodable_answers_are_decode_errors() {
    let (client, script) = server().await;
    script.answer_raw(200, vec![], "{\"name\": 3}".into());
    let err = client.get_pool("vms").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Decode { status, .. } if status == StatusCode::OK),
        "{err:?}"
    );
    script.answer_raw(502, vec![], "<html>proxy</html>".into());
    let err = client.get_pool("vms").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
    assert!(err.to_string().contains("HTTP 502"), "{err}");
}

#[tokio::test]
async fn a_node_that_is_not_running_is_unreachable_in_one_line() {
    // Bind then drop: the port is very likely closed afterwards.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(&format!("http://{addr}"), None).unwrap();
    let err = client.healthz().await.unwrap_err();
    assert!(err.is_unavailable());
    assert!(!err.may_have_committed());
    assert_eq!(
        err.to_string(),
        format!("cannot reach http://{addr}: connection refused")
    );
}

#[tokio::test]
async fn timeouts_are_their_own_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and never answers.
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let client = Client::new(&format!("http://{addr}"), None)
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let err = client.healthz().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(err.may_have_committed());
    hold.abort();
}
