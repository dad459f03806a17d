//! The node's background tasks besides openraft's own and the proposer's: keeping the commit
//! index fresh and flushing the state machine on a timer, and the leader's expiry tick (`tick`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::shared::Shared;
use crate::storage::state_db::SmShared;

/// Starts the background tasks; they stop at `shutdown`.
pub(crate) fn spawn(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) {
    tokio::spawn(track_committed(Arc::downgrade(shared), shutdown.clone()));
    tokio::spawn(flush_state(shared.sm.clone(), shutdown.clone()));
    tokio::spawn(crate::tick::run_expiry_tick(
        Arc::downgrade(shared),
        shutdown.clone(),
    ));
}

/// Keeps `Shared::committed` fresh: openraft's metrics carry no commit index.
async fn track_committed(core: Weak<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Some(c) = core.upgrade() else { return };
    let mut metrics = c.metrics.clone();
    let tick = c.config.heartbeat;
    drop(c);
    let mut seen = (None, None);
    loop {
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                // openraft 0.9.25 publishes metrics after every turn of its core loop,
                // including the turn that answers our own `with_raft_state`: reacting to each
                // publication made an idle node spin at half a core. Only an append or an
                // apply can come with a new commit index.
                let now = {
                    let m = metrics.borrow_and_update();
                    (m.last_log_index, m.last_applied.map(|l| l.index))
                };
                if now == seen {
                    continue;
                }
                seen = now;
            }
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        let Some(c) = core.upgrade() else { return };
        c.committed_index().await;
        drop(c);
        // Metrics change on every apply: asking the raft core more often than this would only
        // load it under heavy writes.
        tokio::time::sleep(Duration::from_millis(10)).await;
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
