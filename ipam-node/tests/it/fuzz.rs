//! Property-based fuzzing of the HTTP surface through the router (`oneshot`, no sockets):
//! generated methods, paths, percent-encodings, query strings, headers and bodies (deep JSON,
//! huge numbers, wrong types, invalid UTF-8, oversize). Every answer: no 500, a non-2xx body
//! in the contract's error schema, and a rejected request leaves every pool and allocation unchanged.
//!
//! `IPAM_FUZZ_CASES` sets the number of cases (default 5,000); `benches/fuzz.sh` runs a long
//! campaign. `/raft/*` is left out: it speaks postcard between nodes, not the JSON contract.

use crate::common;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;

const TOKEN: &str = "fuzz-token";

#[derive(Clone, Debug)]
struct Fuzzed {
    method: Method,
    path: String,
    query: Option<String>,
    auth: Option<Vec<u8>>,
    content_type: Option<Vec<u8>>,
    extra_header: Option<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => Just(Method::GET),
        4 => Just(Method::POST),
        2 => Just(Method::DELETE),
        1 => Just(Method::PUT),
        1 => Just(Method::PATCH),
        1 => Just(Method::HEAD),
        1 => Just(Method::OPTIONS),
        1 => "[A-Z]{1,12}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// One path segment, already percent-encoded or deliberately malformed.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("p".to_string()),
        2 => "[a-z0-9._-]{1,20}",
        2 => prop::sample::select(vec![
            "10.0.0.5", "10.0.0.1", "10.0.0.0", "10.0.0.255", "::1", "fd00::1", "999.1.1.1",
            "10.0.0.5%2F24", "%00", "%2e%2e", "..", "%ff", "%zz", "%", "%E2%82%AC", "a%20b",
            "18446744073709551616", "0", "-1", "1", "2", "4294967295",
        ]).prop_map(str::to_string),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect()),
        1 => "[a-z]{300,2000}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let templates = prop::sample::select(vec![
        "/api/v1/pools",
        "/api/v1/pools/{}",
        "/api/v1/pools/{}/allocations",
        "/api/v1/pools/{}/allocations/{}",
        "/api/v1/addresses/{}",
        "/api/v1/allocations",
        "/api/v1/batch",
        "/api/v1/cluster",
        "/api/v1/cluster/init",
        "/api/v1/cluster/learners",
        "/api/v1/cluster/voters",
        "/api/v1/cluster/voters/{}",
        "/api/v1/cluster/members/{}",
        "/api/v1/{}",
        "/api/v1",
        "/api/v2/pools",
        "/healthz",
        "/readyz",
        "/metrics",
        "/{}",
        "/api/v1/pools/{}/{}/{}",
        "//api//v1//pools",
    ]);
    (templates, segment(), segment(), segment()).prop_map(|(t, a, b, c)| {
        let mut out = String::new();
        let mut segs = [a, b, c].into_iter();
        for (i, part) in t.split("{}").enumerate() {
            if i > 0 {
                out.push_str(&segs.next().unwrap_or_default());
            }
            out.push_str(part);
        }
        out
    })
}

fn query() -> impl Strategy<Value = Option<String>> {
    let key = prop::sample::select(vec![
        "consistency",
        "owner",
        "after",
        "limit",
        "force",
        "label",
        "labels",
        "x",
        "",
        "limit[]",
    ]);
    let value = prop_oneof![
        Just("local".to_string()),
        Just("linearizable".to_string()),
        Just("true".to_string()),
        Just("100".to_string()),
        Just("0".to_string()),
        Just("1001".to_string()),
        Just("-5".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("1e3".to_string()),
        Just("%ff%fe".to_string()),
        Just("10.0.0.5".to_string()),
        Just("k%3Dv".to_string()),
        "[a-zA-Z0-9%=&+]{0,30}",
    ];
    prop::option::weighted(
        0.5,
        prop::collection::vec((key, value), 1..5).prop_map(|kv| {
            kv.into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        }),
    )
}

fn auth() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        8 => Just(Some(format!("Bearer {TOKEN}").into_bytes())),
        1 => Just(None),
        1 => Just(Some(b"Bearer wrong".to_vec())),
        1 => Just(Some(format!("bearer {TOKEN}").into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        6 => Just(Some(b"application/json".to_vec())),
        1 => Just(None),
        1 => Just(Some(b"application/json; charset=utf-8".to_vec())),
        1 => Just(Some(b"text/plain".to_vec())),
        1 => Just(Some(b"application/x-postcard".to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..30).prop_map(Some),
    ]
}

fn extra_header() -> impl Strategy<Value = Option<(String, Vec<u8>)>> {
    let name = prop::sample::select(vec![
        "x-request-id",
        "content-length",
        "accept",
        "x-ipam-cluster",
        "transfer-encoding",
        "content-encoding",
        "expect",
        "x-forwarded-for",
    ]);
    prop::option::weighted(
        0.2,
        (name, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(n, v)| (n.to_string(), v)),
    )
}

fn scalar() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[ -~]{0,40}".prop_map(|s| json!(s)),
        prop::sample::select(vec![
            "10.0.0.0/24",
            "10.0.0.0/8",
            "10.1.0.0/30",
            "fd00::/120",
            "10.0.0.7",
            "p",
            "vm-1",
            "::",
            "0.0.0.0/0",
            "10.0.0.0/33",
            "",
        ])
        .prop_map(|s| json!(s)),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let keys = prop::sample::select(vec![
        "name",
        "cidr",
        "owner",
        "ip",
        "gateway",
        "reserved",
        "labels",
        "ops",
        "op",
        "pool",
        "id",
        "addr",
        "ids",
        "members",
        "generation",
        "count",
        "force",
        "x",
    ]);
    scalar().prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(str::to_string), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        6 => json_value().prop_map(|v| v.to_string().into_bytes()),
        // Plausible bodies with a field of the wrong type now and then.
        3 => (prop::sample::select(vec!["p", "q", "r"]), scalar()).prop_map(|(n, c)| json!({"name": n, "cidr": c}).to_string().into_bytes()),
        3 => scalar().prop_map(|o| json!({"owner": o}).to_string().into_bytes()),
        2 => (1usize..3000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => (1usize..3000).prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d)).into_bytes()),
        1 => Just(b"{\"name\":\"p\",\"cidr\":\"10.0.0.0/24\",\"reserved\":123456789012345678901234567890e999999}".to_vec()),
        1 => Just(b"{\"owner\":\"\xff\xfe\"}".to_vec()),
        2 => prop::collection::vec(any::<u8>(), 0..200),
        // Oversize: over the 1 MiB limit, rarely (it is slow to build).
        1 => (0u8..20).prop_map(|n| if n == 0 { vec![b' '; (1 << 20) + 1] } else { b"{}".to_vec() }),
    ]
}

fn request() -> impl Strategy<Value = Fuzzed> {
    (
        method(),
        path(),
        query(),
        auth(),
        content_type(),
        extra_header(),
        body(),
    )
        .prop_map(
            |(method, path, query, auth, content_type, extra_header, body)| Fuzzed {
                method,
                path,
                query,
                auth,
                content_type,
                extra_header,
                body,
            },
        )
}

fn build(f: &Fuzzed) -> Option<Request<Body>> {
    let uri = match &f.query {
        Some(q) => format!("{}?{q}", f.path),
        None => f.path.clone(),
    };
    let mut b = Request::builder().method(f.method.clone()).uri(uri);
    if let Some(a) = &f.auth {
        b = b.header(header::AUTHORIZATION, HeaderValue::from_bytes(a).ok()?);
    }
    if let Some(ct) = &f.content_type {
        b = b.header(header::CONTENT_TYPE, HeaderValue::from_bytes(ct).ok()?);
    }
    if let Some((n, v)) = &f.extra_header {
        b = b.header(n.as_str(), HeaderValue::from_bytes(v).ok()?);
    }
    b.body(Body::from(f.body.clone())).ok()
}

/// What a request can change: every pool and every allocation as the API reads them. Not the
/// state digest: a request the state machine refuses (a 409 decided in `apply`) still goes
/// through the log, and its entry moves log time (part of the digest) without changing
/// anything a caller sees.
async fn content(node: &common::TestNode) -> [u8; 32] {
    use ipam_raft::Consistency;
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let pools = node
        .ipam
        .pools(&Default::default(), Consistency::Local)
        .await
        .unwrap();
    for pool in pools {
        h.update(format!("{pool:?}").as_bytes());
        let mut after = None;
        loop {
            let page = node
                .ipam
                .allocations(&pool.name, None, after, 1_000, Consistency::Local)
                .await
                .unwrap();
            for a in &page.allocations {
                h.update(format!("{a:?}").as_bytes());
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    h.finalize().into()
}

/// `digest`: the content (see [`content`]) before this request; updated after an accepted one.
async fn check(
    node: &common::TestNode,
    digest: &std::cell::Cell<[u8; 32]>,
    f: &Fuzzed,
) -> Result<(), TestCaseError> {
    // A request the HTTP layer itself could not carry (an invalid URI or header value) is
    // not a case.
    let Some(req) = build(f) else {
        return Ok(());
    };
    let reply = node.send(req).await;
    let status = reply.status.as_u16();
    prop_assert!(status != 500, "500 for {f:?}: {}", reply.text);
    if reply.status.is_success() || f.method == Method::HEAD {
        digest.set(content(node).await);
        return Ok(());
    }
    let body: serde_json::Value = serde_json::from_str(&reply.text).map_err(|e| {
        TestCaseError::fail(format!(
            "{status} body is not JSON ({e}): {:?} for {f:?}",
            reply.text
        ))
    })?;
    let code = body["error"]["code"].as_str().unwrap_or("");
    prop_assert!(
        !code.is_empty()
            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && body["error"]["message"].is_string(),
        "{status} body not in the error schema: {} for {f:?}",
        reply.text
    );
    let after = content(node).await;
    prop_assert_eq!(
        digest.get(),
        after,
        "rejected request {:?} changed the state",
        f
    );
    Ok(())
}

#[test]
fn generated_requests_never_500_and_rejections_change_nothing() {
    let cases: u32 = std::env::var("IPAM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = rt.block_on(async {
        let node = common::start(Some(TOKEN), true).await;
        node.wait_ready().await;
        let r = node
            .post("/api/v1/pools", json!({"name": "p", "cidr": "10.0.0.0/24"}))
            .await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text);
        for i in 0..5 {
            let r = node
                .post(
                    "/api/v1/pools/p/allocations",
                    json!({ "owner": format!("vm-{i}") }),
                )
                .await;
            assert_eq!(r.status.as_u16(), 201, "{}", r.text);
        }
        node
    });
    let digest = std::cell::Cell::new(rt.block_on(content(&node)));
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(), |f| rt.block_on(check(&node, &digest, &f)));
    eprintln!("{cases} fuzz cases in {:?}", started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
}
