//! A single-node `Ipam` in a temp dir and a router around it, driven with `oneshot`.

#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use ipam_node::{router, AppState};
use ipam_raft::Ipam;
use serde_json::Value;
use tower::ServiceExt;

pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub ipam: Ipam,
    pub router: Router,
    pub token: Option<String>,
}

/// Starts a node; `init`: as an initialised single-node cluster, waiting (with a deadline)
/// until it leads.
pub async fn start(token: Option<&str>, init: bool) -> TestNode {
    start_with(token, init, |_| {}).await
}

/// [`start`] with `configure` applied to the raft settings first.
pub async fn start_with(
    token: Option<&str>,
    init: bool,
    configure: impl FnOnce(&mut ipam_raft::Config),
) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ipam_raft::Config::new(1, dir.path(), "127.0.0.1:1");
    config.token = token.map(str::to_string);
    configure(&mut config);
    let ipam = Ipam::start(config).await.unwrap();
    if init {
        ipam.init(Vec::new()).await.unwrap();
        ipam.wait_for(Duration::from_secs(20), |s| {
            s.leader == Some(1) && s.applied_index >= s.committed_index
        })
        .await
        .expect("no leadership within 20 s");
    }
    let state = AppState::new(
        ipam.clone(),
        token.map(str::to_string),
        Duration::from_secs(30),
    )
    .unwrap();
    TestNode {
        dir,
        router: router(state),
        ipam,
        token: token.map(str::to_string),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// The error code of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text))
            .to_string()
    }

    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.code(), code, "body: {}", self.text);
        assert!(
            self.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "no message: {}",
            self.text
        );
    }
}

impl TestNode {
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn builder(&self, method: Method, uri: &str) -> axum::http::request::Builder {
        let b = Request::builder().method(method).uri(uri);
        match &self.token {
            Some(t) => b.header(header::AUTHORIZATION, format!("Bearer {t}")),
            None => b,
        }
    }

    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let b = self.builder(method, uri);
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut b = self.builder(method, uri);
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        self.send(b.body(Body::from(body.to_string())).unwrap())
            .await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    pub async fn delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, None).await
    }

    /// Creates pool `name` on `cidr` (defaults otherwise) and checks the 201.
    pub async fn create_pool(&self, name: &str, cidr: &str) {
        let r = self
            .post(
                "/api/v1/pools",
                serde_json::json!({"name": name, "cidr": cidr}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
}

impl TestNode {
    /// Waits (with a deadline) until `/readyz` answers 200: readiness is momentary (an entry
    /// committed but not yet applied makes it 503), so tests wait for it instead of assuming.
    pub async fn wait_ready(&self) {
        ipam_tests::wait_until("/readyz to answer 200", Duration::from_secs(20), || async {
            let req = Request::get("/readyz").body(Body::empty()).unwrap();
            match self.send(req).await {
                r if r.status == StatusCode::OK => Ok(()),
                r => Err(format!("{}: {}", r.status, r.text)),
            }
        })
        .await
    }
}
