//! `ipam-client` holds the JSON types of the raft-ipam HTTP API v1 and a typed HTTP client, shared
//! by `ipam-node` (server side of the types), `ipam-cli`, the integration tests and the
//! benchmarks.
//!
//! # Layout
//!
//! - [`types`] — request and response bodies, the error body.
#![deny(missing_docs)]

pub mod types;
