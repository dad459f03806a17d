//! The node's one change to mimalloc's defaults: freed memory goes back to the OS at once
//! (`purge_delay` 0 instead of 10 ms).
//!
//! With a delay, a freed page is purged only when a later page operation in the same mimalloc
//! segment finds the delay expired. The memory that churns most — redb's page buffers in a
//! snapshot build that reads the whole state, in an apply that writes a batch of a thousand
//! rows — sits in segments that then go quiet, so it stays resident. 15 s after loading a
//! million allocations (`benches/scale.sh`) the leader held 304–354 MB in 8 runs of 9 with the
//! default; 192–291 MB in 5 of 5 with 0. With 1 and 2 ms it still reached 311 and 299 MB: only
//! 0 is reliable. The price: bulk loads (batches of 1,000) ran ~13 % slower, every freed page
//! faulting back in; allocate at 1, 64 and 1,000 clients moved within noise
//! (`docs/performance.md`, "Session 12"). `MIMALLOC_PURGE_DELAY=10` brings the default back.
//!
//! This is the only `unsafe` in the workspace: two calls into mimalloc's option API, which
//! the `mimalloc` crate does not wrap. An operator's `MIMALLOC_PURGE_DELAY` (or its old name
//! `MIMALLOC_RESET_DELAY`) wins: then nothing is changed.
#![allow(unsafe_code)]

use std::ffi::c_long;

use libmimalloc_sys::{mi_option_eager_commit_delay, mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay`. mimalloc's header does not export it as a Rust constant ("not
/// exposed for stability reasons"); in mimalloc 2's `mi_option_e` it follows
/// `eager_commit_delay`. [`return_freed_memory_at_once`] checks the value it reads is the
/// documented default before writing, so a different layout changes nothing.
const PURGE_DELAY: mi_option_t = mi_option_eager_commit_delay + 1;
/// mimalloc 2's default `purge_delay`, in milliseconds.
const DEFAULT_PURGE_DELAY_MS: c_long = 10;
const ENV_NAMES: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

/// The delay the node sets, in milliseconds.
pub const NODE_PURGE_DELAY_MS: c_long = 0;

/// What [`return_freed_memory_at_once`] did, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PurgeDelay {
    /// The delay was mimalloc's default and is now [`NODE_PURGE_DELAY_MS`].
    Shortened,
    /// The environment names a delay: mimalloc's own reading of it stands.
    FromEnvironment(c_long),
    /// The option read something other than the default: left alone.
    Unexpected(c_long),
}

/// Sets mimalloc's purge delay to [`NODE_PURGE_DELAY_MS`] unless the environment sets it (see
/// the module docs). Call it once, first thing in `main`; `None` when it is set already.
pub fn return_freed_memory_at_once() -> Option<PurgeDelay> {
    let from_env = ENV_NAMES.iter().any(|n| std::env::var_os(n).is_some());
    let outcome = decide(from_env, purge_delay_ms());
    if outcome == Some(PurgeDelay::Shortened) {
        // SAFETY: `mi_option_set` only stores the value in mimalloc's option table (an
        // atomic per option); any thread may call it at any time.
        unsafe { mi_option_set(PURGE_DELAY, NODE_PURGE_DELAY_MS) };
    }
    outcome
}

/// The purge delay mimalloc uses now, in milliseconds.
fn purge_delay_ms() -> c_long {
    // SAFETY: `mi_option_get` reads mimalloc's option table (reading the environment the
    // first time); it takes any option number below `_mi_option_last`, which this is.
    unsafe { mi_option_get(PURGE_DELAY) }
}

fn decide(from_env: bool, current: c_long) -> Option<PurgeDelay> {
    Some(if from_env {
        PurgeDelay::FromEnvironment(current)
    } else if current == DEFAULT_PURGE_DELAY_MS {
        PurgeDelay::Shortened
    } else if current == NODE_PURGE_DELAY_MS {
        // Set already (a second call): nothing to do, nothing to report as odd.
        return None;
    } else {
        PurgeDelay::Unexpected(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_number_is_the_purge_delay() {
        // The neighbours hold different defaults (eager_commit_delay 1, use_numa_nodes 0),
        // so reading 10 here identifies purge_delay. Test binaries do not set the variable.
        if ENV_NAMES.iter().all(|n| std::env::var_os(n).is_none()) {
            // SAFETY: as in `purge_delay_ms`.
            let eager = unsafe { mi_option_get(mi_option_eager_commit_delay) };
            assert_eq!(eager, 1, "mimalloc 2's eager_commit_delay default");
            assert_eq!(purge_delay_ms(), DEFAULT_PURGE_DELAY_MS);
            assert_eq!(return_freed_memory_at_once(), Some(PurgeDelay::Shortened));
            assert_eq!(return_freed_memory_at_once(), None);
            assert_eq!(purge_delay_ms(), NODE_PURGE_DELAY_MS);
        }
    }

    #[test]
    fn the_environment_and_an_unknown_value_are_left_alone() {
        assert_eq!(decide(true, 10), Some(PurgeDelay::FromEnvironment(10)));
        assert_eq!(decide(true, 250), Some(PurgeDelay::FromEnvironment(250)));
        assert_eq!(decide(false, 10), Some(PurgeDelay::Shortened));
        assert_eq!(decide(false, 1), Some(PurgeDelay::Unexpected(1)));
        assert_eq!(decide(false, NODE_PURGE_DELAY_MS), None);
    }
}
