//! `ipam-node` is the raft-ipam node that operators run: the HTTP admin API of
//! `docs/api.md`, the inter-node `/raft/*` routes (mounted from `ipam-raft`) on the same
//! listener, Prometheus metrics, bearer-token authentication, configuration from flags,
//! environment and a TOML file, self-initialisation and `--join`, and graceful shutdown.
//!
//! It is a thin adapter: every decision about pools and addresses lives in `ipam-core`, every
//! decision about replication in `ipam-raft`; this crate translates HTTP to their calls.
//!
//! # Layout
//!
//! - [`config`] — [`config::Args`], the settings as flags, environment and TOML file (one
//!   struct), resolved over the defaults into [`NodeConfig`]; precedence flags > `IPAM_*`
//!   environment > file > defaults.
//! - [`api`] — [`router`]: every endpoint and the layers around them, [`AppState`].
//! - [`middleware`] — request ids, the `request` span, and the API's checks (metrics,
//!   authentication, body size, request timeout, idempotency) folded into one function.
//! - [`extract`] — JSON, path and query extractors whose rejections are contract errors.
//! - [`idempotency`] — the `Idempotency-Key` middleware: key check, request fingerprint,
//!   the raft layer's key scope around the handler.
//! - [`error`] — [`ApiError`] and its one `IntoResponse`: status, code and body per failure.
//! - [`wire`] — translation between the API's JSON types and the domain's types.
//! - [`metrics`] — the Prometheus registry and what `/metrics` renders.
//! - [`peer_metrics`] — `ipam_peer_calls_total{transport}`: how this node reaches its peers.
//! - [`select`] — `POST /api/v1/allocations` (the pool chosen by selector) and its counter.
//! - [`ui`] — the `/ui` dashboard: server-rendered pages and its login cookie.
//! - [`join`] — `--join`: add this node as a learner, then promote it, through another node.
//! - [`events`] — `GET /api/v1/events`, `/api/v1/events/watch` (server-sent events) and
//!   `/api/v1/addresses/{ip}/history`.
//! - [`check`] — `GET /api/v1/check` and the periodic integrity check.
//! - [`backup`] — `GET /api/v1/backup`, streamed; `--restore` is in [`run`].
//! - [`serve`] — the accept loop: header-read timeout, `--max-connections`, TLS, graceful
//!   shutdown, upgrades (peer streams leave it).
//! - [`tls`] — rustls server and peer-client configuration, certificate reload (SIGHUP).
//! - [`certs`] — `ipam-node certs`: a CA and per-node certificates (rcgen).
//! - `redact` — `Debug` of the configuration types without the token.
//! - [`telemetry`] — logs to stderr and, with `--otlp-endpoint`, traces over OTLP/HTTP.
//! - [`run`] — start, serve until shutdown, stop.
//! - [`allocator`] — mimalloc returns freed memory at once (the workspace's only `unsafe`).

use std::future::Future;
use std::time::Duration;

pub mod allocator;
pub mod api;
pub mod backup;
pub mod certs;
pub mod check;
pub mod config;
pub mod drift;
pub mod error;
pub mod events;
pub mod extract;
pub mod idempotency;
pub mod join;
pub mod lease_metrics;
pub mod leases;
pub mod metrics;
pub mod middleware;
pub mod peer_metrics;
pub mod pools;
mod redact;
pub mod select;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod ui;
pub mod wire;

pub use api::{router, AppState};
pub use config::{LogFormat, NodeConfig};
pub use error::ApiError;

use ipam_raft::{Ipam, IpamError, MemberRole};

/// How long in-flight requests may take to finish once shutdown began, beyond the request
/// timeout that already bounds each of them.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Error of [`run`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Invalid configuration (for example a non-loopback listener without a token).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Starting raft or storage failed.
    #[error(transparent)]
    Start(#[from] ipam_raft::StartError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
    /// Initialising a fresh node as a single-node cluster failed.
    #[error("cannot initialise a single-node cluster: {0}")]
    Init(IpamError),
    /// `--join` failed.
    #[error("cannot join the cluster: {0}")]
    Join(#[from] join::JoinError),
    /// Stopping raft or closing storage failed.
    #[error("shutdown: {0}")]
    Shutdown(IpamError),
    /// Setting up metrics or logging failed.
    #[error("setup: {0}")]
    Setup(String),
    /// `--restore` refused the backup or the data dir.
    #[error(transparent)]
    Restore(#[from] ipam_raft::RestoreError),
}

impl From<config::ConfigError> for NodeError {
    fn from(e: config::ConfigError) -> Self {
        NodeError::Config(e.to_string())
    }
}

/// The raft layer's configuration for `config`, advertising `advertise`.
pub fn raft_config(config: &NodeConfig, advertise: String) -> ipam_raft::Config {
    let mut c = ipam_raft::Config::new(config.id, config.data_dir.clone(), advertise);
    c.token = config.token.clone();
    c.heartbeat = config.heartbeat;
    c.election_timeout = config.election_timeout;
    c.snapshot_logs = config.snapshot_logs;
    c.max_in_snapshot_log_to_keep = config.snapshot_keep_logs;
    c.write_deadline = config.write_deadline;
    c.read_deadline = config.read_deadline;
    c.max_ops_per_entry = config.max_ops_per_entry;
    c.max_inflight_entries = config.max_inflight_entries;
    c.queue_capacity = config.queue_capacity;
    // At most 64 GiB (checked when the settings are read): fits a usize on 64-bit targets.
    c.state_cache_bytes = usize::try_from(config.state_cache_mib << 20).unwrap_or(usize::MAX);
    c.traces = config.otlp_endpoint.is_some();
    c.install_snapshot_timeout = config.install_snapshot_timeout;
    c
}

/// Serves a node on `listener` (API, `/raft/*`, metrics) until `shutdown` resolves, then stops
/// accepting, finishes in-flight requests and closes storage. A node with no state
/// initialises itself as a single-node cluster unless `config.join` or `config.no_init`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    config.check()?;
    let bound = listener.local_addr()?;
    config.check_listener(bound)?;
    if config.token_on_command_line {
        tracing::warn!("the token was given with --token, so `ps` shows it to every local user; prefer --token-file or IPAM_TOKEN");
    }
    let tls = config
        .tls
        .clone()
        .map(tls::Tls::load)
        .transpose()
        .map_err(|e| NodeError::Config(format!("TLS: {e}")))?
        .map(std::sync::Arc::new);
    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| bound.to_string());
    if let Some(file) = &config.restore {
        let restored = ipam_raft::restore(file, &config.data_dir, config.id, &advertise)?;
        tracing::info!(
            backup = %file.display(),
            applied_index = restored.header.applied_index(),
            from_cluster = %restored.header.cluster_id,
            cluster_id = %restored.cluster_id,
            "restored a backup as a new single-voter cluster"
        );
    }
    let mut raft = raft_config(&config, advertise.clone());
    if let Some(tls) = &tls {
        raft.http_client = Some(
            tls.peer_client(raft.rpc_timeout)
                .map_err(|e| NodeError::Config(format!("TLS: {e}")))?,
        );
        raft.peer_scheme = "https";
    }
    let ipam = Ipam::start(raft).await?;
    tracing::info!(id = config.id, %bound, %advertise, tls = tls.is_some(), data_dir = %config.data_dir.display(), "node started");

    #[cfg(unix)]
    let reloader = match &tls {
        Some(tls) => Some(serve::reload_on_sighup(tls.clone())?),
        None => None,
    };
    let result = serve_node(listener, &config, &advertise, ipam.clone(), tls, shutdown).await;
    #[cfg(unix)]
    if let Some(task) = reloader {
        task.abort();
    }
    let closed = ipam.shutdown().await.map_err(NodeError::Shutdown);
    tracing::info!("node stopped");
    result.and(closed)
}

async fn serve_node(
    listener: tokio::net::TcpListener,
    config: &NodeConfig,
    advertise: &str,
    ipam: Ipam,
    tls: Option<std::sync::Arc<tls::Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    if config.join.is_none() && !config.no_init && !ipam.status().initialized {
        match ipam.init(Vec::new()).await {
            Ok(()) => tracing::info!("initialised a single-node cluster"),
            Err(IpamError::AlreadyInitialized) => {}
            Err(e) => return Err(NodeError::Init(e)),
        }
    }
    let state = AppState::new(ipam.clone(), config.token.clone(), config.request_timeout)
        .map_err(|e| NodeError::Setup(format!("metrics: {e}")))?
        .with_secure_cookies(tls.is_some());
    let conn_metrics = serve::ConnMetrics::new(state.metrics.registry())
        .map_err(|e| NodeError::Setup(format!("metrics: {e}")))?;
    let checker = config
        .check_interval
        .map(|every| tokio::spawn(check::run_timer(state.clone(), every)));
    let closing = state.closing.clone();
    let app = router(state);

    // A failed join stops the node: it would otherwise serve as a member of no cluster.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<join::JoinError>();
    let join_task = config.join.clone().and_then(|url| {
        let me = config.id;
        let is_voter = ipam
            .status()
            .members
            .iter()
            .any(|m| m.id == me && m.role == MemberRole::Voter);
        if is_voter {
            tracing::info!("already a voter; not joining again");
            return None;
        }
        let token = config.token.clone();
        let addr = advertise.to_string();
        let timeout = config.join_timeout;
        let http = match &tls {
            Some(tls) => match tls.peer_client(Duration::from_secs(5)) {
                Ok(c) => Some(c),
                Err(e) => {
                    let _ = stop_tx.send(join::JoinError::Setup(e.to_string()));
                    return None;
                }
            },
            None => None,
        };
        Some(tokio::spawn(async move {
            let joined = join::Join {
                http,
                url: &url,
                token: token.as_deref(),
                id: me,
                addr: &addr,
                timeout,
            }
            .run()
            .await;
            if let Err(e) = joined {
                tracing::error!(error = %e, "join failed; stopping");
                let _ = stop_tx.send(e);
            }
        }))
    });

    let (join_failed_tx, join_failed_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested; draining requests"),
            Ok(e) = stop_rx => { let _ = join_failed_tx.send(e); }
        }
        // Event streams never finish on their own: end them so the drain need not wait.
        closing.send_replace(true);
    };
    let options = serve::ServeOptions {
        max_connections: config.max_connections,
        header_read_timeout: serve::HEADER_READ_TIMEOUT,
        tls,
        drain_limit: config.request_timeout + DRAIN_GRACE,
        metrics: Some(conn_metrics),
    };
    serve::serve(listener, app, options, signal).await;
    if let Some(task) = join_task {
        task.abort();
    }
    if let Some(task) = checker {
        task.abort();
    }
    match join_failed_rx.await {
        Ok(e) => Err(NodeError::Join(e)),
        Err(_) => Ok(()),
    }
}
