//! `ipam-raft`'s integration tests as one test binary: each module below was its own binary once,
//! and linking 66 of them across the workspace (~65 MB each) took much of CI's build time and
//! most of its disk. A module is still one scenario family, its tests named `<module>::<test>`
//! (`cargo test -p ipam-raft --test it <module>::`).
//!
//! Layout:
//! - `support`: helpers the scenario modules share;
//! - every other module: one scenario family, described in its own doc comment.

mod support;

mod backup;
mod backup_fixture;
mod check;
mod cluster;
mod crash;
mod events;
mod exactly_once;
mod fixture;
mod leader_restart_read;
mod leader_sync;
mod leases;
mod log_format;
mod peer_streams;
mod power_cut_disk;
mod power_loss;
mod power_loss_cluster;
mod purge;
mod routes;
mod snapshot_names;
mod storage_faults;
mod store_suite;
mod stores;
