//! The node's background tasks besides openraft's own and the proposer's: flushing the state
//! machine on a timer, and the leader's expiry tick (`tick`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::shared::Shared;
use crate::storage::state_db::SmShared;

/// Starts the background tasks; they stop at `shutdown`.
pub(crate) fn spawn(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) {
    tokio::spawn(flush_state(shared.sm.clone(), shutdown.clone()));
    tokio::spawn(crate::tick::run_expiry_tick(
        Arc::downgrade(shared),
        shutdown.clone(),
    ));
    tokio::spawn(send_held_commit(Arc::downgrade(shared), shutdown.clone()));
}

/// Sends followers a commit index the transport held back (it was past this leader's log on
/// disk, `transport::client::commit_to_send`) as soon as the log's sync reaches it: under load
/// the next append carries it anyway, but after a lone write the followers would otherwise
/// hear it only at the next heartbeat. Idle unless something is held back: the log's syncs
/// (one per write at low load) do not wake it.
async fn send_held_commit(shared: std::sync::Weak<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Some((mut durable, net)) = shared
        .upgrade()
        .and_then(|s| Some((s.net.log_durable()?, s.net.clone())))
    else {
        return;
    };
    loop {
        if net.held_back() == 0 {
            tokio::select! {
                () = net.held_back_set.notified() => continue,
                _ = shutdown.changed() => return,
            }
        }
        let on_disk = durable.borrow_and_update().last.map_or(0, |l| l.index);
        if net.release_held_back(on_disk) {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let _ = shared.raft.trigger().heartbeat().await;
            continue;
        }
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            () = net.held_back_set.notified() => {}
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
