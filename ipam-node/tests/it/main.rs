//! `ipam-node`'s integration tests as one test binary: each module below was its own binary once,
//! and linking 66 of them across the workspace (~65 MB each) took much of CI's build time and
//! most of its disk. A module is still one scenario family, its tests named `<module>::<test>`
//! (`cargo test -p ipam-node --test it <module>::`).
//!
//! Layout:
//! - `common`, `procs`, `tlsutil`: helpers the scenario modules share;
//! - every other module: one scenario family, described in its own doc comment.

mod common;
mod procs;
mod tlsutil;

mod api;
mod binary;
mod check;
mod cluster;
mod dashboard;
mod delegate;
mod drift;
mod events;
mod fuzz;
mod idempotency;
mod leases;
mod pools;
mod run;
mod select;
mod tls;
mod tls_cluster;
mod traces;
mod ui;
