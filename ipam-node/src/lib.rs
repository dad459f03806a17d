//! `ipam-node` is the raft-ipam node: the HTTP admin API of `../shared/api.md`, the inter-node
//! `/raft/*` routes (mounted from `ipam-raft`), metrics, authentication and configuration.
//!
//! STUB SIGNATURES (to be implemented by the node work): the shape other crates code against.
//!
//! # Layout
//!
//! - [`config`] — [`NodeConfig`]: flags, `IPAM_*` environment, TOML file.
//! - [`run`] — serves a node on a bound listener until `shutdown` resolves.

use std::future::Future;

pub mod config;

pub use config::NodeConfig;

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
}

/// Serves a node on `listener` (API, `/raft/*`, metrics) until `shutdown` resolves, then stops
/// accepting, finishes in-flight requests and closes storage. A node with no state
/// initialises itself as a single-node cluster unless `config.join` or `config.no_init`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let _ = (listener, config, shutdown);
    todo!("NODE-HELPER")
}
