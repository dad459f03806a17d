//! `/ui` driven with `oneshot` against a real single-node `Ipam`: every page renders with the
//! data, client-supplied text is escaped, and the login cookie guards `/ui` (and only `/ui`).

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::json;

use crate::common::{start, Reply, TestNode};

/// A GET with optional cookie, without the bearer header (a browser sends none).
async fn browse(n: &TestNode, uri: &str, cookie: Option<&str>) -> Reply {
    let mut b = Request::builder().method(Method::GET).uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    n.send(b.body(Body::empty()).unwrap()).await
}

async fn seed(n: &TestNode) {
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "vms", "cidr": "10.0.0.0/28", "labels": {"env": "prod"},
                   "description": "VM network"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "edge", "cidr": "192.168.0.0/24"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for i in 0..3 {
        let r = n
            .post(
                "/api/v1/pools/vms/allocations",
                json!({"owner": format!("vm-{i}/eth0")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
}

fn assert_html(r: &Reply) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8",
        "{:?}",
        r.headers
    );
    assert!(r.text.starts_with("<!DOCTYPE html>"), "{}", r.text);
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src 'unsafe-inline'"), "{csp}");
}

#[tokio::test]
async fn pages_render_the_cluster_and_the_data() {
    let n = start(None, true).await;
    seed(&n).await;

    let r = browse(&n, "/ui", None).await;
    assert_html(&r);
    assert!(
        r.text
            .contains(r#"<dd id="leader">node 1 (127.0.0.1:1)</dd>"#),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(r#"<span id="pool-count">2</span>"#),
        "{}",
        r.text
    );
    assert!(r.text.contains(r#"href="/ui/pools/vms""#), "{}", r.text);
    assert!(
        r.text.contains(r#"<td class="num allocated">3</td>"#),
        "{}",
        r.text
    );
    // /28: 16 - network - broadcast - gateway.
    assert!(
        r.text.contains(r#"<td class="num capacity">13</td>"#),
        "{}",
        r.text
    );
    assert!(r.text.contains("voter"), "{}", r.text);
    // The leader tracks its own progress: matched index and lag 0.
    assert!(r.text.contains("(this node)"), "{}", r.text);
    assert!(r.text.contains("<script>"), "overview reloads itself");

    let r = browse(&n, "/ui/pools/vms", None).await;
    assert_html(&r);
    assert!(
        r.text.contains(r#"<dd id="cidr">10.0.0.0/28</dd>"#),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(r#"<dd id="allocated">3</dd>"#),
        "{}",
        r.text
    );
    assert!(r.text.contains("VM network"), "{}", r.text);
    assert!(r.text.contains("env=prod"), "{}", r.text);
    assert!(r.text.contains("vm-0/eth0"), "{}", r.text);
    assert!(
        r.text.contains(r#"href="/ui/owners?owner=vm-0%2Feth0""#),
        "{}",
        r.text
    );
    assert!(!r.text.contains("<script>"), "only the overview reloads");

    let r = browse(&n, "/ui/addresses/10.0.0.2", None).await;
    assert_html(&r);
    assert!(r.text.contains("vm-0/eth0"), "{}", r.text);
    assert!(r.text.contains(r#"href="/ui/pools/vms""#), "{}", r.text);
    let r = browse(&n, "/ui/addresses/10.0.0.9", None).await;
    assert_html(&r);
    assert!(r.text.contains("free"), "{}", r.text);

    let r = browse(&n, "/ui/owners?owner=vm-1%2Feth0", None).await;
    assert_html(&r);
    assert!(r.text.contains("10.0.0.3"), "{}", r.text);

    let r = browse(&n, "/ui/pools/nope", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(r.text.contains("nope"), "{}", r.text);
    let r = browse(&n, "/ui/addresses/not-an-ip", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test]
async fn allocations_are_paged() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "big", "cidr": "10.1.0.0/24"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ops: Vec<_> = (0..60)
        .map(|i| json!({"op": "allocate", "pool": "big", "owner": format!("o{i}")}))
        .collect();
    let r = n.post("/api/v1/batch", json!({ "ops": ops })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let r = browse(&n, "/ui/pools/big", None).await;
    assert_html(&r);
    assert_eq!(
        r.text.matches("<tr><td><a href=\"/ui/addresses/").count(),
        50
    );
    // The 50th allocated address is 10.1.0.51 (10.1.0.1 is the gateway).
    assert!(
        r.text.contains(r#"href="/ui/pools/big?after=10.1.0.51""#),
        "{}",
        r.text
    );
    let r = browse(&n, "/ui/pools/big?after=10.1.0.51", None).await;
    assert_html(&r);
    assert_eq!(
        r.text.matches("<tr><td><a href=\"/ui/addresses/").count(),
        10
    );
    assert!(!r.text.contains(r#"id="next""#), "{}", r.text);
}

#[tokio::test]
async fn search_goes_to_the_address_the_pool_or_the_owner() {
    let n = start(None, true).await;
    seed(&n).await;
    let location = |r: &Reply| r.headers[header::LOCATION].to_str().unwrap().to_string();
    let r = browse(&n, "/ui/search?q=+10.0.0.2+", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/addresses/10.0.0.2");
    let r = browse(&n, "/ui/search?q=vms", None).await;
    assert_eq!(location(&r), "/ui/pools/vms");
    let r = browse(&n, "/ui/search?q=vm-2%2Feth0", None).await;
    assert_eq!(location(&r), "/ui/owners?owner=vm-2%2Feth0");
    let r = browse(&n, "/ui/search?q=", None).await;
    assert_eq!(location(&r), "/ui");
}

#[tokio::test]
async fn owner_strings_and_labels_are_escaped() {
    let n = start(None, true).await;
    let evil = r#"<script>alert(1)</script>"#;
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "x", "cidr": "10.2.0.0/24",
                   "labels": {"k": "<img src=x onerror=alert(2)>"},
                   "description": "\"><b>bold</b>"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = n
        .post("/api/v1/pools/x/allocations", json!({"owner": evil}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ip = r.json()["ip"].as_str().unwrap().to_string();

    for uri in [
        "/ui".to_string(),
        "/ui/pools/x".to_string(),
        format!("/ui/addresses/{ip}"),
        format!(
            "/ui/owners?owner={}",
            ipam_node::ui::pages::encode_component(evil)
        ),
    ] {
        let r = browse(&n, &uri, None).await;
        assert_html(&r);
        assert!(!r.text.contains("<script>alert"), "{uri}: {}", r.text);
        assert!(!r.text.contains("<img src=x"), "{uri}: {}", r.text);
        assert!(!r.text.contains("<b>bold"), "{uri}: {}", r.text);
    }
    let r = browse(&n, &format!("/ui/addresses/{ip}"), None).await;
    assert!(
        r.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.text
    );
    let r = browse(&n, "/ui/pools/x", None).await;
    assert!(
        r.text.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{}",
        r.text
    );
    // In an attribute the owner is percent-encoded.
    assert!(
        r.text
            .contains("owner=%3Cscript%3Ealert%281%29%3C%2Fscript%3E"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_token_node_asks_for_the_token_and_keeps_it_in_a_ui_cookie() {
    let n = start(Some("s3cret"), true).await;
    seed(&n).await;

    // Without the cookie: the login form, with 401, and no data.
    for uri in [
        "/ui",
        "/ui/pools/vms",
        "/ui/addresses/10.0.0.2",
        "/ui/search?q=vms",
    ] {
        let r = browse(&n, uri, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}: {}", r.text);
        assert!(r.text.contains(r#"action="/ui/login""#), "{}", r.text);
        assert!(!r.text.contains("vm-0"), "{}", r.text);
    }
    let r = browse(&n, "/ui/login", None).await;
    assert_eq!(r.status, StatusCode::OK);

    let login = |token: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/ui/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let r = n.send(login("wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    assert!(r.text.contains("wrong token"), "{}", r.text);

    let r = n.send(login("s3cret")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(
        !set.contains("s3cret"),
        "the cookie is not the token: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();

    let r = browse(&n, "/ui", Some(&cookie)).await;
    assert_html(&r);
    assert!(
        r.text.contains(r#"<span id="pool-count">2</span>"#),
        "{}",
        r.text
    );
    assert!(r.text.contains(r#"action="/ui/logout""#), "{}", r.text);
    let r = browse(&n, "/ui/pools/vms", Some(&cookie)).await;
    assert_html(&r);

    // The bearer header works on /ui too (scripts); the cookie opens /ui only: the API still
    // needs the bearer token.
    let r = n.get("/ui/pools/vms").await;
    assert_html(&r);
    let r = browse(&n, "/api/v1/pools", Some(&cookie)).await;
    r.expect(401, "unauthorized");
    let r = browse(&n, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK, "metrics stay open");

    // A cookie made from another token does not pass.
    let forged = format!(
        "{}={}",
        ipam_node::ui::auth::COOKIE,
        ipam_node::ui::auth::cookie_value("other")
    );
    let r = browse(&n, "/ui", Some(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = n
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/ui/logout")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn the_pool_page_shows_ranges_network_lifecycle_and_next_free() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "lab", "cidr": "10.9.0.0/29", "dns": ["10.9.0.53", "1.1.1.1"],
                   "mtu": 9000, "routes": [{"dst": "10.10.0.0/16", "via": "10.9.0.1"}],
                   "domain": "lab.example", "reuse_cooldown_seconds": 600,
                   "default_ttl_seconds": 5400}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = n
        .post(
            "/api/v1/pools/lab/ranges",
            json!({"cidr": "10.9.1.0/29", "gateway": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = n
        .post("/api/v1/pools/lab/allocations", json!({"owner": "a"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let r = browse(&n, "/ui/pools/lab", None).await;
    assert_html(&r);
    for want in [
        "<td>10.9.0.0/29</td><td>10.9.0.1</td>",
        "<td>10.9.1.0/29</td><td><span class=\"muted\">none</span></td>",
        r#"<dd id="dns"><span class="tag">10.9.0.53</span><span class="tag">1.1.1.1</span></dd>"#,
        r#"<dd id="mtu">9000</dd>"#,
        r#"<span class="tag">10.10.0.0/16 via 10.9.0.1</span>"#,
        r#"<dd id="domain">lab.example</dd>"#,
        r#"<dd id="revision">2</dd>"#,
        r#"<dd id="frozen">no</dd>"#,
        r#"<dd id="default-ttl">1 h 30 min</dd>"#,
        r#"<dd id="cooldown">10 min</dd>"#,
        // 10.9.0.2 is taken; the /29's last usable address is .6, then the second range.
        r#"<dd id="next-free"><span class="tag">10.9.0.3</span><span class="tag">10.9.0.4</span><span class="tag">10.9.0.5</span><span class="tag">10.9.0.6</span><span class="tag">10.9.1.1</span></dd>"#,
    ] {
        assert!(r.text.contains(want), "{want} missing from:\n{}", r.text);
    }
}
