//! `ipam-node`: parses flags, binds, prints `listening on <addr>`, and runs the node until
//! SIGTERM or ctrl-c (SIGHUP reloads the TLS certificate); `ipam-node certs` writes a CA and
//! node certificates instead.

use anyhow::Context;
use clap::Parser;
use ipam_node::config::Args;

/// glibc's malloc spent ~19 % of a loaded node's CPU (redb page buffers, bodies, futures),
/// much of it consolidating arenas across the runtime's threads; mimalloc's per-thread heaps
/// do not (`docs/performance.md`). mimalloc 2 (the crate's `v2` feature), not 3: v3 holds
/// freed memory for a second before returning it, and a node that had just loaded a million
/// allocations kept 275–390 MB resident against 250–290 MB with v2, at the same speed. Its
/// purge delay is set to 0 first thing ([`ipam_node::allocator`]).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let purge = ipam_node::allocator::return_freed_memory_at_once();
    let mut args = Args::parse();
    if let Some(ipam_node::certs::Command::Certs(certs)) = args.command.take() {
        let now = time::OffsetDateTime::now_utc();
        for path in ipam_node::certs::write(&certs, now)? {
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    let config = args.resolve()?;
    // The runtime is built after the settings are read: its thread count is one of them.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = config.worker_threads {
        runtime.worker_threads(n);
    }
    runtime
        .build()
        .context("cannot start the async runtime")?
        .block_on(node(config, purge))
}

async fn node(
    config: ipam_node::config::NodeConfig,
    purge: Option<ipam_node::allocator::PurgeDelay>,
) -> anyhow::Result<()> {
    let telemetry = ipam_node::telemetry::init(
        &config.log_level,
        config.log_format,
        config.otlp_endpoint.as_deref(),
        config.id,
    )?;
    tracing::info!(
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        "async runtime started"
    );
    match purge {
        Some(ipam_node::allocator::PurgeDelay::FromEnvironment(ms)) => {
            tracing::info!(ms, "allocator purge delay from MIMALLOC_PURGE_DELAY")
        }
        Some(ipam_node::allocator::PurgeDelay::Unexpected(ms)) => tracing::warn!(
            ms,
            "the allocator's purge delay was not mimalloc 2's default; left unchanged"
        ),
        _ => {}
    }
    // Refuse an unprotected public listener before binding it, not after.
    let addrs = tokio::net::lookup_host(&config.listen)
        .await
        .with_context(|| format!("cannot resolve --listen {}", config.listen))?;
    for addr in addrs {
        config.check_listener(addr)?;
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    config.check_listener(bound)?;
    println!("listening on {bound}");
    let served = ipam_node::run(listener, config, shutdown_signal()).await;
    telemetry.shutdown().await;
    served?;
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
