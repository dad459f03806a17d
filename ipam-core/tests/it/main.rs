//! `ipam-core`'s integration tests as one test binary: each module below was its own binary once,
//! and linking 66 of them across the workspace (~65 MB each) took much of CI's build time and
//! most of its disk. A module is still one scenario family, its tests named `<module>::<test>`
//! (`cargo test -p ipam-core --test it <module>::`).
//!
//! Layout:
//! - `common`: helpers the scenario modules share;
//! - every other module: one scenario family, described in its own doc comment.

mod common;

mod apply;
mod check;
mod delegate;
mod events;
mod feature_level;
mod lease;
mod lease_model;
mod model;
mod reconcile;
mod requests;
mod robust;
mod select;
mod select_index;
mod select_model;
mod validate;
