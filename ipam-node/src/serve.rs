//! The accept loop: plain TCP or TLS, HTTP/1.1 through hyper with a header-read timer, a cap
//! on open connections, and graceful shutdown.
//!
//! `axum::serve` sets no timer (so hyper's header-read timeout is off) and speaks no TLS; this
//! loop replaces it. HTTP/1.1 only: hyper's HTTP/2 and its version sniffing have no
//! header-read timer, so a silent client there would hold its connection forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::tls::Tls;

/// The accept loop's metrics.
#[derive(Clone)]
pub struct ConnMetrics {
    open: prometheus::IntGauge,
    refused: prometheus::IntCounter,
    handshake_failures: prometheus::IntCounter,
}

impl std::fmt::Debug for ConnMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnMetrics")
            .field("open", &self.open.get())
            .field("refused", &self.refused.get())
            .field("handshake_failures", &self.handshake_failures.get())
            .finish()
    }
}

impl ConnMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &prometheus::Registry) -> Result<ConnMetrics, prometheus::Error> {
        let m = ConnMetrics::unregistered()?;
        registry.register(Box::new(m.open.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.handshake_failures.clone()))?;
        Ok(m)
    }

    /// Metrics that no registry exports (a server in a test).
    pub fn unregistered() -> Result<ConnMetrics, prometheus::Error> {
        Ok(ConnMetrics {
            open: prometheus::IntGauge::new(
                "ipam_http_connections_open",
                "Connections open on the listener",
            )?,
            refused: prometheus::IntCounter::new(
                "ipam_http_connections_refused_total",
                "Connections closed at accept because --max-connections were open",
            )?,
            handshake_failures: prometheus::IntCounter::new(
                "ipam_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out",
            )?,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> i64 {
        self.open.get()
    }

    /// Connections refused at the limit so far.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// TLS handshakes that failed so far.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.get()
    }
}

/// Decrements the open-connections gauge when the connection's task ends.
struct OpenGuard(prometheus::IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// How long a request's headers (and a TLS handshake) may take to arrive, counted from the
/// connection opening or the previous response.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How a listener is served.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// Serve HTTPS with this state; `None`: plain HTTP.
    pub tls: Option<Arc<Tls>>,
    /// Once `shutdown` resolved, how long in-flight requests may still run.
    pub drain_limit: Duration,
    /// Where connection counts go; `None`: nowhere.
    pub metrics: Option<ConnMetrics>,
}

impl ServeOptions {
    /// Plain HTTP with the default limits.
    pub fn new(drain_limit: Duration) -> ServeOptions {
        ServeOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            tls: None,
            drain_limit,
            metrics: None,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets open
/// connections finish their current request (at most `drain_limit`) and returns.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let metrics = match options.metrics.clone() {
        Some(m) => m,
        // Unregistered metrics cannot fail to build (fixed names), but never panic here.
        None => match ConnMetrics::unregistered() {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot create connection metrics");
                return;
            }
        },
    };
    // Every connection task holds a receiver: `true` asks it to finish its current request
    // and close, and the sender's `closed()` resolves once the last one has gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        // Refused before anything is spawned or read: the cost of a connection over the cap
        // is one accept and one close.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(tcp);
            metrics.refused.inc();
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    max = options.max_connections,
                    refused,
                    "connection limit reached; refusing new connections"
                );
            }
            continue;
        };
        // Small request/response pairs: without TCP_NODELAY, Nagle plus delayed ACKs add tens
        // of milliseconds to a keep-alive client's next request.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone());
        let http = http.clone();
        let stop = stop_rx.clone();
        let tls = options.tls.clone();
        let handshake_timeout = options.header_read_timeout;
        metrics.open.inc();
        let open = OpenGuard(metrics.open.clone());
        let handshake_failures = metrics.handshake_failures.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let result = match tls {
                None => {
                    let conn = http.serve_connection(TokioIo::new(tcp), service);
                    drive(conn.with_upgrades(), stop).await
                }
                Some(tls) => {
                    let Some(stream) = handshake(&tls, tcp, handshake_timeout, peer).await else {
                        handshake_failures.inc();
                        return;
                    };
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    drive(conn.with_upgrades(), stop).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    tokio::select! {
        () = stop_tx.closed() => {}
        () = tokio::time::sleep(options.drain_limit) => {
            tracing::warn!("requests still running after {} s; stopping anyway", options.drain_limit.as_secs());
        }
    }
}

/// Serves one connection until it ends, or until `stop` turns true: then it finishes the
/// request in progress and closes. Upgrades are allowed (peer streams, `/raft/stream`): an
/// upgraded connection leaves this function, the connection limit and the drain, and is
/// ended by its node's own shutdown instead.
async fn drive<I, S, B>(
    conn: hyper::server::conn::http1::UpgradeableConnection<I, S>,
    mut stop: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    conn.await
}

/// The TLS handshake, bounded like a request's headers; a failure is the client's problem and
/// only logged.
async fn handshake(
    tls: &Tls,
    tcp: TcpStream,
    timeout: Duration,
    peer: std::net::SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, tls.acceptor().accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// An accept error: a connection that died in the backlog is skipped; anything else (out of
/// file descriptors) is logged and retried after a pause, as `axum::serve` does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Reloads the certificate and key on every SIGHUP until the process ends.
#[cfg(unix)]
pub fn reload_on_sighup(tls: Arc<Tls>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload(&tls);
        }
    }))
}

/// Reloads the certificate and key, logging the outcome; on failure the old ones stay.
pub fn reload(tls: &Tls) -> bool {
    match tls.reload() {
        Ok(()) => {
            tracing::info!(cert = %tls.files().cert.display(), "reloaded the TLS certificate and key");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot reload the TLS certificate; keeping the current one");
            false
        }
    }
}
