//! `--otlp-endpoint`: two real `ipam-node` processes export their spans to an OTLP/HTTP
//! receiver in this test. One allocation sent to the follower, inside a trace the test starts
//! (`traceparent`), shows up as one trace across both nodes: the follower's `request` →
//! `ipam.write` → `raft.write`, then on the leader `raft.propose` → `raft.write` → `apply`
//! (with the entry's log index and op count), each the child of the one before.

use crate::procs;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use procs::{spawn_with_env, wait_cluster, Api};
use prost::Message as _;
use serde_json::json;

/// One exported span, flattened.
#[derive(Clone, Debug)]
struct Span {
    node: String,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    attrs: Vec<(String, String)>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn flatten(req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let node = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.instance.id")
            .map(text)
            .unwrap_or_default();
        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            out.push(Span {
                node: node.clone(),
                name: s.name,
                trace: s.trace_id,
                id: s.span_id,
                parent: s.parent_span_id,
                attrs: s
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv)))
                    .collect(),
            });
        }
    }
    out
}

/// An OTLP/HTTP traces receiver on a loopback port: every span it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        sink.lock().unwrap().extend(flatten(req));
                        axum::http::StatusCode::OK
                    }
                    Err(_) => axum::http::StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one span named `name` on `node` in `trace`, once exported.
fn find<'a>(spans: &'a [Span], node: &str, name: &str) -> Option<&'a Span> {
    spans.iter().find(|s| s.node == node && s.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_allocation_is_one_trace_across_follower_and_leader() {
    let _serial = crate::procs::SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let (collector, spans) = receiver().await;
    let api = Api::http();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Export every 100 ms instead of every 5 s, so the test waits on spans, not on a timer.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let otlp = ["--otlp-endpoint", collector.as_str()];
    let n1 = spawn_with_env(1, "127.0.0.1:0", &tmp.path().join("n1"), &otlp, &env);
    let join = format!("http://{}", n1.addr);
    let mut args = otlp.to_vec();
    args.extend(["--join", join.as_str()]);
    let n2 = spawn_with_env(2, "127.0.0.1:0", &tmp.path().join("n2"), &args, &env);
    let nodes = [&n1, &n2];
    let leader = wait_cluster(&api, &nodes, &BTreeSet::from([1, 2]), deadline).await;
    let (follower, leader_addr, follower_addr) = if leader == 1 {
        (2, &n1.addr, &n2.addr)
    } else {
        (1, &n2.addr, &n1.addr)
    };
    let (s, v) = api
        .until_ok(
            reqwest::Method::POST,
            leader_addr,
            "/api/v1/pools",
            Some(json!({"name": "p", "cidr": "10.0.0.0/24"})),
            deadline,
        )
        .await;
    assert_eq!(s, 201, "{v}");

    // The test's own trace: the allocation's spans must all join it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = api
        .http
        .post(format!("http://{follower_addr}/api/v1/pools/p/allocations"))
        .bearer_auth(procs::TOKEN)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"owner": "traced"}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());

    let (f, l) = (follower.to_string(), leader.to_string());
    let wanted = [
        (&f, "request"),
        (&f, "ipam.write"),
        (&f, "raft.write"),
        (&l, "raft.propose"),
        (&l, "raft.write"),
        (&l, "apply"),
    ];
    let trace: Vec<Span> = loop {
        let trace: Vec<Span> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace) == trace_id)
            .cloned()
            .collect();
        if wanted
            .iter()
            .all(|(n, name)| find(&trace, n, name).is_some())
        {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace so far: {:#?}",
            trace.iter().map(|s| (&s.node, &s.name)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Each span is the child of the one before it, across the two processes.
    let mut parent = caller_span.to_string();
    for (node, name) in wanted {
        let span = find(&trace, node, name).unwrap();
        assert_eq!(
            hex(&span.parent),
            parent,
            "{name} on node {node} has the wrong parent; trace: {trace:#?}"
        );
        parent = hex(&span.id);
    }
    let apply = find(&trace, &l, "apply").unwrap();
    assert_eq!(apply.attr("ops"), Some("1"), "{apply:?}");
    let index: u64 = apply.attr("log.index").unwrap().parse().unwrap();
    assert!(index > 1, "{apply:?}");
    let write = find(&trace, &l, "raft.write").unwrap();
    assert_eq!(write.attr("index"), Some(index.to_string().as_str()));
}
