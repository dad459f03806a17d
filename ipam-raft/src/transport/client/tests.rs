//! The client's stream pool against small servers: stale streams, peers without the
//! route, reuse across a cluster id's adoption.
use super::*;
use axum::response::IntoResponse as _;

/// A server whose `/raft/stream` serves one call per stream, then closes it; `upgrade`
/// false answers the route 404 (a release without streams) and serves `/raft/hello`.
async fn server(upgrade: bool) -> String {
    async fn one_call(mut req: axum::extract::Request) -> axum::response::Response {
        let Some(on) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return axum::http::StatusCode::NOT_IMPLEMENTED.into_response();
        };
        tokio::spawn(async move {
            let Ok(up) = on.await else { return };
            let mut io = tokio::io::BufReader::new(hyper_util::rt::TokioIo::new(up));
            let Ok(call) = frame::read_call(&mut io).await else {
                return;
            };
            let answer = frame::encode_answer(200, &call.body);
            let _ = tokio::io::AsyncWriteExt::write_all(&mut io, &answer).await;
            // Dropping `io` closes the stream: the client's idle copy is now stale.
        });
        (
            axum::http::StatusCode::SWITCHING_PROTOCOLS,
            [
                (axum::http::header::CONNECTION, "upgrade"),
                (axum::http::header::UPGRADE, frame::PROTOCOL),
            ],
        )
            .into_response()
    }
    async fn hello(body: axum::body::Bytes) -> Vec<u8> {
        body.to_vec()
    }
    let mut app = axum::Router::new().route(super::super::rpc::HELLO, axum::routing::post(hello));
    if upgrade {
        app = app.route(STREAM, axum::routing::get(one_call));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Answers every call with its body, on streams it keeps open.
#[derive(Clone)]
struct Echo;

impl stream::Dispatch for Echo {
    fn refusal(&self) -> Option<(u16, &'static str)> {
        None
    }
    async fn call(&self, _: Kind, body: &[u8], _: Option<String>) -> (u16, Vec<u8>) {
        (200, body.to_vec())
    }
}

async fn keeping_server() -> String {
    async fn upgrade(mut req: axum::extract::Request) -> axum::response::Response {
        let Some(on) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return axum::http::StatusCode::NOT_IMPLEMENTED.into_response();
        };
        tokio::spawn(async move {
            let Ok(up) = on.await else { return };
            let (_stop, never) = tokio::sync::watch::channel(false);
            stream::serve(Echo, hyper_util::rt::TokioIo::new(up), never).await;
        });
        (
            axum::http::StatusCode::SWITCHING_PROTOCOLS,
            [
                (axum::http::header::CONNECTION, "upgrade"),
                (axum::http::header::UPGRADE, frame::PROTOCOL),
            ],
        )
            .into_response()
    }
    let app = axum::Router::new().route(STREAM, axum::routing::get(upgrade));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_reused_but_not_across_adopting_a_cluster_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let addr = keeping_server().await;
    echo(&net, &addr, 1).await;
    echo(&net, &addr, 2).await;
    assert_eq!(
        net.peer_calls().streams_opened,
        1,
        "the idle stream is reused"
    );
    net.set_cluster_id("c1").expect("cluster id");
    echo(&net, &addr, 3).await;
    echo(&net, &addr, 4).await;
    // The stream opened without the id (unchecked by the peer) is not used again.
    assert_eq!(net.peer_calls().streams_opened, 2);
}

/// One call that the test servers answer with its own body.
async fn echo(net: &NetShared, addr: &str, i: u64) {
    let back: u64 = net
        .post(addr, super::super::rpc::HELLO, &i, Duration::from_secs(5))
        .await
        .expect("call");
    assert_eq!(back, i);
}

fn net(dir: &Path) -> NetShared {
    NetShared::new(
        None,
        None,
        dir,
        crate::disk::Disk::default(),
        Duration::from_secs(5),
        None,
        "http",
    )
    .expect("net")
}

/// Three calls from a fresh client to a test server, with or without the stream route.
async fn three_echoes(stream_route: bool) -> (tempfile::TempDir, NetShared, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net(dir.path());
    let addr = server(stream_route).await;
    for i in 0..3 {
        echo(&net, &addr, i).await;
    }
    (dir, net, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_closed_while_idle_is_replaced_without_failing_the_call() {
    let (_dir, net, _addr) = three_echoes(true).await;
    let calls = net.peer_calls();
    // Every call after the first found its idle stream closed and opened another.
    assert_eq!((calls.stream, calls.http), (5, 0), "{calls:?}");
    assert_eq!(calls.streams_opened, 3, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_know_the_route_is_called_over_http() {
    let (_dir, net, addr) = three_echoes(false).await;
    let calls = net.peer_calls();
    assert_eq!((calls.stream, calls.http, calls.streams_opened), (0, 3, 0));
    // Asked once, then not again until `HTTP_ONLY_FOR` has passed.
    assert!(!net.streams.usable(&addr, Instant::now()));
}
