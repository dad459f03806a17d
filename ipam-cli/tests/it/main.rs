//! `ipam-cli`'s integration tests as one test binary: each module below was its own binary once,
//! and linking 66 of them across the workspace (~65 MB each) took much of CI's build time and
//! most of its disk. A module is still one scenario family, its tests named `<module>::<test>`
//! (`cargo test -p ipam-cli --test it <module>::`).
//!
//! Layout:
//! - `common`: helpers the scenario modules share;
//! - every other module: one scenario family, described in its own doc comment.

mod common;

mod backup;
mod check;
mod cli;
mod drift;
mod events;
mod freeze;
mod idempotency;
mod select;
mod tls;
mod transfer;
