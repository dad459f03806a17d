//! The `/raft/*` routes' guards, through `tower::ServiceExt::oneshot` (no listener).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ipam_raft::{Config, Ipam};
use tempfile::TempDir;
use tower::ServiceExt;

async fn node(dir: &TempDir, token: Option<&str>) -> Ipam {
    let mut config = Config::new(1, dir.path().join("n1"), "127.0.0.1:9");
    config.token = token.map(str::to_string);
    Ipam::start(config).await.expect("start")
}

fn vote_body() -> Vec<u8> {
    let req = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1, 2), None);
    postcard::to_allocvec(&req).expect("encode")
}

fn post(path: &str, token: Option<&str>, cluster: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::post(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(c) = cluster {
        b = b.header("x-ipam-cluster", c);
    }
    b.body(Body::from(body)).expect("request")
}

#[tokio::test]
async fn raft_routes_require_the_token() {
    let dir = TempDir::new().expect("tmp");
    let ipam = node(&dir, Some("s3cret")).await;
    let r = ipam.raft_router();
    let resp = r
        .clone()
        .oneshot(post("/raft/vote", None, None, vote_body()))
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = r
        .clone()
        .oneshot(post("/raft/vote", Some("wrong"), None, vote_body()))
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A prefix or an extension of the token is as wrong as any other guess.
    for guess in ["s3cre", "s3cret!", ""] {
        let resp = r
            .clone()
            .oneshot(post("/raft/vote", Some(guess), None, vote_body()))
            .await
            .expect("call");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "guess {guess:?}");
    }
    // Authentication comes before the body size check.
    let resp = r
        .clone()
        .oneshot(post("/raft/append", None, None, vec![0; (64 << 20) + 1]))
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = r
        .oneshot(post("/raft/vote", Some("s3cret"), None, vote_body()))
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::OK);
    ipam.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_node_adopts_the_first_cluster_id_and_refuses_others() {
    let dir = TempDir::new().expect("tmp");
    let ipam = node(&dir, None).await;
    assert_eq!(ipam.cluster_id(), None);
    let r = ipam.raft_router();
    let resp = r
        .clone()
        .oneshot(post("/raft/vote", None, Some("cluster-a"), vote_body()))
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(ipam.cluster_id().as_deref(), Some("cluster-a"));
    let resp = r
        .clone()
        .oneshot(post("/raft/vote", None, Some("cluster-b"), vote_body()))
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("cluster-a") && text.contains("cluster-b"),
        "{text}"
    );
    ipam.shutdown().await.expect("shutdown");

    // The id is recorded in the data dir.
    let ipam = node(&dir, None).await;
    assert_eq!(ipam.cluster_id().as_deref(), Some("cluster-a"));
    ipam.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_bodies_are_refused() {
    let dir = TempDir::new().expect("tmp");
    let ipam = node(&dir, None).await;
    let r = ipam.raft_router();
    let resp = r
        .clone()
        .oneshot(post("/raft/append", None, None, vec![0xff; 7]))
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = r
        .oneshot(post("/raft/append", None, None, vec![0; (64 << 20) + 1]))
        .await
        .expect("call");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    ipam.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn init_records_a_cluster_id_and_refuses_a_second_init() {
    let dir = TempDir::new().expect("tmp");
    let ipam = node(&dir, None).await;
    ipam.init(Vec::new()).await.expect("init");
    let id = ipam.cluster_id().expect("cluster id");
    assert_eq!(id.len(), 32);
    assert!(matches!(
        ipam.init(Vec::new()).await,
        Err(ipam_raft::IpamError::AlreadyInitialized)
    ));
    ipam.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_token_that_cannot_be_sent_refuses_to_start() {
    let dir = TempDir::new().expect("tmp");
    let mut config = Config::new(1, dir.path().join("n1"), "127.0.0.1:9");
    config.token = Some("line\nbreak".to_string());
    let err = match Ipam::start(config).await {
        Ok(ipam) => {
            ipam.shutdown().await.expect("shutdown");
            panic!("a token with a line break must not start a node");
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("token"), "the error names the token: {err}");
}
