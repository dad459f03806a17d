//! An example VM orchestrator that embeds raft-ipam: each orchestrator node runs an
//! [`ipam_raft::Ipam`] (one raft group for the orchestrator cluster), allocates every NIC of a
//! VM in one atomic batch when it creates the VM, hands a (mock) VM backend each NIC's network
//! configuration, and releases the addresses when the VM is deleted or its creation fails.
//!
//! Run it: `cargo run -p vm-orchestrator -- serve` starts a one-node orchestrator on
//! `127.0.0.1:7480`; `cargo run -p vm-orchestrator -- pool create web 10.0.0.0/24` and
//! `cargo run -p vm-orchestrator -- vm create web-1 --ip-pool web` drive it. `docs/embedding.md`
//! walks through the code.
//!
//! # Layout
//!
//! - [`orchestrator`] — create / delete / show / list VMs over the embedded `Ipam`.
//! - [`netconfig`] — a NIC's network configuration and its systemd-networkd rendering.
//! - [`backend`] — the VM backend trait and an in-memory mock that can fail on demand.
//! - [`retry`] — which IPAM errors are retried, and the retry loop.
//! - [`api`] — the orchestrator's HTTP API, mounted next to `Ipam::raft_router`.

pub mod api;
pub mod backend;
pub mod netconfig;
pub mod orchestrator;
pub mod retry;

pub use backend::{MockBackend, VmBackend};
pub use orchestrator::{NicRequest, NicTarget, Orchestrator, Vm, VmError};
