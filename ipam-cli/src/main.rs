//! `ipam-cli` is the operator's command line for raft-ipam: it manages pools, allocates and
//! releases addresses and changes cluster membership through any node's HTTP API
//! (`docs/api.md`), printing aligned tables for people or the API's JSON (`-o json`) for
//! scripts. It is thin: it parses, calls `ipam-client`, and prints.
//!
//! Exit statuses: 0 success, 1 other failure (including 400 `invalid_argument`), 2 usage,
//! 3 not found (404), 4 conflict (409), 5 node unreachable, timed out or unavailable (503),
//! 6 unauthorized (401). A TLS handshake failure (untrusted, expired or misnamed certificate,
//! client certificate refused) exits 1 with one line naming the cause; unusable TLS files
//! exit 2. `README.md` beside this crate is the user's guide.
//!
//! # Layout
//!
//! - [`args`] — the clap command line.
//! - [`commands`] — `run`: one command → client calls → output.
//! - [`pool_args`], [`pool_cmds`] — `ip-pool update`, `add-range`, `remove-range`,
//!   `freeze`, `unfreeze`, `next-free` and the settings shared with `create`.
//! - [`select`] — `ip allocate --selector`: the pool chosen by the cluster.
//! - [`render`] — tables, key/value listings, number formatting.
//! - [`exit`] — exit statuses and the one-line error message.
//! - [`transfer`] — import/export file formats; [`plan`] — checking an import's rows;
//!   [`transfer_cmd`] — `export` and `import` (batches, progress, report).
//! - [`backup_cmd`] — `backup`: download and verify a backup.
//! - [`check_cmd`] — `check`: every member's integrity check at one common applied index.
//! - [`drift_cmd`] — `drift` and `reconcile`: inventory files, drift and plan tables.
//! - [`events_cmd`] — `events` (a listing, or `--follow`) and `ip history`.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod backup_cmd;
mod check_cmd;
mod commands;
mod drift_cmd;
mod events_cmd;
mod exit;
mod leases;
mod plan;
mod pool_args;
mod pool_cmds;
mod render;
mod select;
mod transfer;
mod transfer_cmd;

fn main() -> ExitCode {
    // Usage errors exit here with clap's status 2.
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return exit::report(&anyhow::Error::new(e).context("starting the runtime")),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => exit::report(&e),
    }
}
