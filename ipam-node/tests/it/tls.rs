//! TLS and connection limits in-process: an mTLS node refuses bad clients at the handshake and
//! keeps serving; a certificate reload changes what new handshakes see but not open
//! connections; idle connections and a slowloris neither starve a request nor stay open;
//! connections over `--max-connections` are closed at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tlsutil::*;
use axum::routing::get;
use ipam_node::serve::{self, ServeOptions};
use ipam_node::tls::Tls;
use ipam_node::{run, NodeConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a GET on an open connection and returns the response head and body as text.
async fn get_raw<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
            .await
            .expect("no response within 30 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// Whether the peer closed `s` (EOF or reset) before `deadline`, without sending anything.
async fn closed_without_answer(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut chunk = [0u8; 256];
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, s.read(&mut chunk)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&chunk[..n])
        ),
    }
}

fn app() -> axum::Router {
    axum::Router::new().route("/x", get(|| async { "ok" }))
}

struct Server {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_server(options: ServeOptions) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve::serve(listener, app(), options, async move {
        let _ = stopped.await;
    }));
    Server { addr, stop, task }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server did not stop within 30 s")
            .unwrap();
    }
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

fn peer_leaf(s: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_der(pem: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "c.pem", pem);
    ipam_node::tls::read_certs(&p).unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_node_refuses_bad_clients_at_the_handshake_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (ca("test CA"), ca("other CA"));
    let files = write_node(&dir.path().join("tls"), "node", &ca, &node_cert(&ca), true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = NodeConfig {
        data_dir: dir.path().join("data"),
        tls: Some(files),
        ..Default::default()
    };
    let node = tokio::spawn(run(listener, config, async move {
        let _ = stopped.await;
    }));
    let base = format!("https://{addr}");
    let good = https_client(&ca, Some(&client_cert(&ca)));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = good.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "node not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let no_cert = https_client(&ca, None);
    assert!(no_cert.get(format!("{base}/readyz")).send().await.is_err());
    let other_ca_cert = https_client(&ca, Some(&client_cert(&other)));
    assert!(other_ca_cert
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_err());
    let plain = reqwest::Client::new();
    assert!(plain
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .is_err());

    // The typed client names the cause in one line.
    let untrusting = ipam_client::Client::with_http_client(
        &base,
        None,
        https_client(&other, Some(&client_cert(&ca))),
    )
    .unwrap();
    match untrusting.cluster_status().await {
        Err(ipam_client::ClientError::Tls { reason, .. }) => {
            assert!(reason.contains("trusted CA"), "{reason}")
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    let certless = ipam_client::Client::with_http_client(&base, None, no_cert).unwrap();
    match certless.cluster_status().await {
        Err(e @ ipam_client::ClientError::Tls { .. }) => {
            assert!(e.to_string().contains("--client-cert"), "{e}")
        }
        Err(ipam_client::ClientError::Unreachable { .. }) => {}
        other => panic!("expected a TLS error, got {other:?}"),
    }

    // Counted: at least the three refused handshakes above.
    let text = good
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ipam_tls_handshake_failures_total "))
        .expect("handshake failure counter exported")
        .trim()
        .parse()
        .unwrap();
    assert!(failures >= 3.0, "{failures}");
    assert!(text.contains("ipam_http_connections_open "), "{text}");

    // Still serving.
    let r = good
        .post(format!("{base}/api/v1/pools"))
        .json(&serde_json::json!({"name": "p", "cidr": "10.0.0.0/24"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .expect("node did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_certificate_for_new_handshakes_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("test CA");
    let first = node_cert(&ca);
    let files = write_node(dir.path(), "node", &ca, &first, false);
    let tls = Arc::new(Tls::load(files.clone()).unwrap());
    let mut options = ServeOptions::new(Duration::from_secs(5));
    options.tls = Some(tls.clone());
    let server = start_server(options).await;
    let mut before = tls_connect(server.addr, rustls_client(&ca, None)).await;
    assert_eq!(peer_leaf(&before), leaf_der(&first.cert_pem));
    assert!(get_raw(&mut before, "/x").await.ends_with("ok"));

    let second = node_cert(&ca);
    std::fs::write(&files.cert, &second.cert_pem).unwrap();
    std::fs::write(&files.key, &second.key_pem).unwrap();
    assert!(serve::reload(&tls));

    assert!(
        get_raw(&mut before, "/x").await.ends_with("ok"),
        "the open connection keeps working"
    );
    // A fresh client: one that resumes its earlier session would see that session's
    // certificate.
    let mut after = tls_connect(server.addr, rustls_client(&ca, None)).await;
    assert_eq!(peer_leaf(&after), leaf_der(&second.cert_pem));
    assert!(get_raw(&mut after, "/x").await.ends_with("ok"));

    // A broken new file keeps the current certificate.
    std::fs::write(&files.key, "not a key").unwrap();
    assert!(!serve::reload(&tls));
    let mismatched = node_cert(&ca);
    std::fs::write(&files.key, &mismatched.key_pem).unwrap();
    assert!(
        !serve::reload(&tls),
        "a key of another certificate is refused"
    );
    let again = tls_connect(server.addr, rustls_client(&ca, None)).await;
    assert_eq!(peer_leaf(&again), leaf_der(&second.cert_pem));
    drop((before, after, again));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_slowloris_neither_starve_a_request_nor_stay_open() {
    let server = start_server(ServeOptions::new(Duration::from_secs(5))).await;
    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let addr = server.addr;
    let slowloris = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let head = b"GET /x HTTP/1.1\r\nHost: test\r\nX-Slow: ";
        let mut chunk = [0u8; 64];
        for i in 0.. {
            let byte = head.get(i).copied().unwrap_or(b'a');
            if s.write_all(&[byte]).await.is_err() {
                return started.elapsed();
            }
            // One byte a second; a read that ends is the server closing the connection.
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut chunk)).await {
                Err(_) => {}
                Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                Ok(Ok(n)) => {
                    // hyper may answer 408 before closing.
                    let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "slowloris still open after 60 s"
            );
        }
        unreachable!()
    });

    let http = reqwest::Client::new();
    let t = Instant::now();
    let r = http
        .get(format!("http://{}/x", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eprintln!(
        "request beside 2,000 idle connections and a slowloris: {:?}",
        t.elapsed()
    );

    let held = tokio::time::timeout(Duration::from_secs(90), slowloris)
        .await
        .expect("slowloris task did not end")
        .unwrap();
    eprintln!("slowloris closed after {held:?}");
    // The idle connections are closed too (their header timer ran out).
    let deadline = Instant::now() + Duration::from_secs(60);
    assert!(closed_without_answer_or_408(&mut idle[0], deadline).await);
    assert!(closed_without_answer_or_408(&mut idle[1_999], deadline).await);
    drop(idle);
    server.stop().await;
}

/// Like [`closed_without_answer`], tolerating hyper's `408 Request Timeout` before the close.
async fn closed_without_answer_or_408(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_at_once() {
    let mut options = ServeOptions::new(Duration::from_secs(5));
    options.max_connections = 4;
    let metrics = serve::ConnMetrics::unregistered().unwrap();
    options.metrics = Some(metrics.clone());
    let server = start_server(options).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        assert!(get_raw(&mut s, "/x").await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    let _ = over
        .write_all(b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    assert!(
        closed_without_answer(&mut over, Instant::now() + Duration::from_secs(30)).await,
        "a connection over the limit is closed unanswered"
    );
    assert_eq!(metrics.refused(), 1);
    assert_eq!(metrics.open(), 4);
    // The held ones still work.
    assert!(get_raw(&mut held[0], "/x")
        .await
        .starts_with("HTTP/1.1 200"));
    // A freed slot is usable again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let _ = s.write_all(b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n").await;
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            if n > 0 && buf.starts_with(b"HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    server.stop().await;
}
