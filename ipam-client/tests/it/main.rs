//! `ipam-client`'s integration tests as one test binary: each module below was its own binary once,
//! and linking 66 of them across the workspace (~65 MB each) took much of CI's build time and
//! most of its disk. A module is still one scenario family, its tests named `<module>::<test>`
//! (`cargo test -p ipam-client --test it <module>::`).
//!
//! Layout:
//! - every module: one scenario family, described in its own doc comment.

mod client;
mod endpoints;
mod retry;
