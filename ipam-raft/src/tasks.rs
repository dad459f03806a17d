//! The node's background tasks besides openraft's own and the proposer's: flushing the state
//! machine on a timer, the leader's expiry tick (`tick`), the log purge (`purge`), and sending
//! followers the commit indexes the transport held back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::shared::Shared;
use crate::storage::state_db::SmShared;
use crate::storage::wal::LogDurable;
use crate::transport::client::NetShared;

/// Starts the background tasks; they stop at `shutdown`.
pub(crate) fn spawn(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) {
    tokio::spawn(flush_state(shared.sm.clone(), shutdown.clone()));
    tokio::spawn(crate::tick::run_expiry_tick(
        Arc::downgrade(shared),
        shutdown.clone(),
    ));
    tokio::spawn(crate::purge::run(
        shared.raft.clone(),
        shared.net.clone(),
        shared.sm.built.subscribe(),
        shared.config.max_in_snapshot_log_to_keep,
        shared.config.install_snapshot_timeout,
        shutdown.clone(),
    ));
    // The transport has the log's sync watch from start-up (`Ipam::start` sets it first).
    if let Some(durable) = shared.net.log_durable() {
        tokio::spawn(pay_held_commits(
            shared.net.clone(),
            durable,
            shared.config.heartbeat,
            shutdown.clone(),
        ));
    }
}

/// Sends each follower the commit index the transport cut from its append requests
/// (`transport::held`) once the log's sync covers it. Idle unless something is owed: the
/// log's syncs (one per write at low load) do not wake it.
async fn pay_held_commits(
    net: Arc<NetShared>,
    mut durable: watch::Receiver<LogDurable>,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if !net.held.any() {
            tokio::select! {
                () = net.held.changed.notified() => continue,
                _ = shutdown.changed() => return,
            }
        }
        let on_disk = durable.borrow_and_update().last;
        for owed in net.held.due(on_disk) {
            let net = net.clone();
            tokio::spawn(async move { net.pay(owed, timeout).await });
        }
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            () = net.held.changed.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Makes non-durable applies durable at least every `durable_interval`.
async fn flush_state(sm: Arc<SmShared>, mut shutdown: watch::Receiver<bool>) {
    // Checking twice per interval bounds the non-durable window to about 1.5 intervals.
    let tick = (sm.durable_interval() / 2).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        if sm.flush_due() {
            let sm = sm.clone();
            let res = tokio::task::spawn_blocking(move || sm.make_durable()).await;
            if let Ok(Err(e)) = res {
                tracing::warn!(error = %e, "periodic state flush failed");
            }
        }
    }
}
