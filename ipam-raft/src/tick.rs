//! The leader's expiry tick: with no other traffic, a lease that falls due still needs an entry
//! for the state machine to release it (expiry is decided in `apply`, on the entry's stamp).
//! Every ~500 ms the leader looks at the earliest lease end and, when it has passed by its own
//! clock, appends an entry with no command.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::route::Target;
use crate::shared::Shared;
use crate::types::Request;

/// How often the leader looks for a due lease: with the commit round trip, a lease is gone
/// well within 2 s of its end.
const TICK: Duration = Duration::from_millis(500);

pub(crate) async fn run_expiry_tick(core: Weak<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        let Some(core) = core.upgrade() else { return };
        if let Err(e) = tick_once(&core).await {
            tracing::debug!(error = %e, "expiry tick");
        }
    }
}

async fn tick_once(core: &Arc<Shared>) -> Result<(), String> {
    if !matches!(core.target(), Target::Local) {
        return Ok(());
    }
    let db = core.sm.db().map_err(|e| e.to_string())?;
    let due = tokio::task::spawn_blocking(move || {
        let rtx = redb::ReadableDatabase::begin_read(&db.db).map_err(|e| e.to_string())?;
        ipam_core::state::next_expiry(&rtx).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let Some(due) = due else { return Ok(()) };
    let stamp = core.clock.next();
    if stamp < due {
        return Ok(());
    }
    core.raft
        .client_write(Request {
            stamp,
            commands: Vec::new(),
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
