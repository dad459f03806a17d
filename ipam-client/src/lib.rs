//! `ipam-client` holds the JSON types of the raft-ipam HTTP API v1 (`docs/api.md`) and a
//! typed async HTTP client of it, shared by `ipam-node` (server side of the types), `ipam-cli`,
//! the integration tests and the benchmarks.
//!
//! ```no_run
//! # async fn example() -> Result<(), ipam_client::ClientError> {
//! use ipam_client::{types::AllocateRequest, Client};
//!
//! let client = Client::new("http://127.0.0.1:7470", None)?;
//! let req = AllocateRequest { owner: "vm-42/eth0".into(), ..Default::default() };
//! let (allocation, created) = client.allocate("vms", &req).await?;
//! println!("{} (new: {created})", allocation.ip);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`types`] — request and response bodies, the error body: the wire format, written once.
//! - [`client`] — [`Client`], one method per endpoint over one pooled `reqwest::Client`;
//!   [`Consistency`] and [`AllocationQuery`] for reads; given several nodes, failover and
//!   requests to the leader (`client/endpoints.rs`).
//! - [`code`] — [`ErrorCode`]: every error code of the contract with its HTTP status, the one
//!   list the node, the CLI and the bench share.
//! - [`ops`] (`src/ops.rs`, a child of `client`) — operations endpoints: integrity check,
//!   backup; their types and calls.
//! - [`error`] — [`ClientError`]: API errors with the node's code, unreachable node, timeout,
//!   undecodable answer, TLS failures.
//! - [`retry`] — `Idempotency-Key` on writes: a fixed key, or one per logical write reused on
//!   the client's own retries after a 503 or a failed connection.
//! - [`tls`] — [`TlsOptions`]: CA and client certificate for `https://` endpoints, and a
//!   failed handshake as one readable reason.
#![deny(missing_docs)]

pub mod client;
pub mod code;
pub mod error;
pub mod retry;
pub mod tls;
pub mod types;

pub use client::{ops, AllocationQuery, Client, Consistency, EventStream};
pub use code::ErrorCode;
pub use error::ClientError;
/// HTTP status codes, as [`ClientError::Api`] carries them.
pub use reqwest::StatusCode;
pub use tls::TlsOptions;
