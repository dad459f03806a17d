//! Helpers shared by several test binaries of this crate (each uses a part of them).
#![allow(dead_code)]

pub mod nodes;
pub mod pools;
pub mod power_cut;
