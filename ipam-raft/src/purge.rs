//! The log purge: how far a node deletes its log behind its newest snapshot.
//!
//! The policy is openraft's — keep `max_in_snapshot_log_to_keep` entries behind the snapshot —
//! but openraft's own purge is turned off (`handle.rs`) and this task runs it instead, because
//! openraft only spares entries a replication is sending at that moment, not those a member
//! will ask for next. A snapshot built while another one is on its way to a new member moves
//! the purge past the one being sent; once installed, the member needs the entries after it,
//! finds them gone and gets a second snapshot (measured with `benches/scale.sh`: a new member
//! of a 1,090,000-allocation cluster took 14.1 s with two installs, 7.8 s with this). So a
//! leader holds its purge at the snapshot a member is receiving, then at what that member
//! matches, until it passes the newest snapshot — or its last chunk is older than
//! `install_snapshot_timeout` (a member gone must not pin the log).

use std::time::{Duration, Instant};

use openraft::metrics::Metric;
use openraft::ServerState;
use tokio::sync::watch;

use crate::transport::sent::Sent;
use crate::types::{LogId, NodeId, Raft};

/// How often the purge is reconsidered; a snapshot is built every thousands of entries, so a
/// purge a quarter of a second late costs nothing.
const CHECK: Duration = Duration::from_millis(250);

/// A member that was sent a snapshot, as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Receiver {
    /// The last log index of the snapshot sent to it.
    pub(crate) sent: u64,
    /// Its highest log index known to match the leader's.
    pub(crate) matched: Option<u64>,
}

/// The highest log index to purge up to (inclusive) now, if that is past `purged`: the policy's
/// point, `snapshot - keep`, held at each receiver's position.
pub(crate) fn upto(
    snapshot: Option<u64>,
    keep: u64,
    purged: Option<u64>,
    receivers: impl IntoIterator<Item = Receiver>,
) -> Option<u64> {
    let policy = snapshot?.checked_sub(keep)?;
    let held = receivers
        .into_iter()
        .map(|r| r.matched.map_or(r.sent, |m| m.max(r.sent)))
        .fold(policy, u64::min);
    (Some(held) > purged).then_some(held)
}

/// Whether the leader stops holding the purge for a member sent a snapshot: its log has passed
/// the newest snapshot (the policy never purges past that), or its last chunk went out longer
/// than `expire` ago.
pub(crate) fn released(
    sent: &Sent,
    matched: Option<u64>,
    snapshot: Option<u64>,
    now: Instant,
    expire: Duration,
) -> bool {
    let passed = matched.is_some_and(|m| Some(m) >= snapshot);
    passed || now.saturating_duration_since(sent.at) > expire
}

/// Runs the purge until `shutdown`: after each snapshot this node builds (`built`), as
/// openraft did, and every [`CHECK`] for the holds. `keep` is `max_in_snapshot_log_to_keep`,
/// `expire` `install_snapshot_timeout`.
pub(crate) async fn run(
    raft: Raft,
    net: std::sync::Arc<crate::transport::client::NetShared>,
    mut built: watch::Receiver<Option<LogId>>,
    keep: u64,
    expire: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut asked: Option<u64> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = built.changed() => {
                if changed.is_err() {
                    return;
                }
                // openraft records a snapshot once its build returns: wait for that, briefly.
                let id = *built.borrow_and_update();
                let _ = raft
                    .wait(Some(CHECK))
                    .ge(Metric::Snapshot(id), "the built snapshot recorded")
                    .await;
            }
            _ = shutdown.changed() => return,
        }
        let (snapshot, purged, leading, replication) = {
            let m = raft.metrics();
            let m = m.borrow();
            (
                m.snapshot.map(|l| l.index),
                m.purged.map(|l| l.index),
                m.state == ServerState::Leader,
                m.replication.clone(),
            )
        };
        let matched = |id: NodeId| {
            replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map(|l| l.index)
        };
        let now = Instant::now();
        // Only a leader replicates; a send recorded while leading is no one's concern after.
        net.snapshots_sent
            .forget(|id, s| !leading || released(s, matched(id), snapshot, now, expire));
        let receivers = net
            .snapshots_sent
            .list()
            .into_iter()
            .map(|(id, s)| Receiver {
                sent: s.index,
                matched: matched(id),
            });
        let Some(to) = upto(snapshot, keep, purged.max(asked), receivers) else {
            continue;
        };
        if raft.trigger().purge_log(to).await.is_err() {
            return; // openraft has stopped
        }
        asked = Some(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sent: u64, matched: Option<u64>) -> Receiver {
        Receiver { sent, matched }
    }

    #[test]
    fn the_policy_keeps_entries_behind_the_snapshot() {
        assert_eq!(upto(None, 0, None, []), None);
        assert_eq!(upto(Some(399), 0, None, []), Some(399));
        assert_eq!(upto(Some(399), 10, None, []), Some(389));
        assert_eq!(upto(Some(399), 10, Some(388), []), Some(389));
        assert_eq!(upto(Some(399), 10, Some(389), []), None);
        // Fewer entries than `keep`: nothing to purge.
        assert_eq!(upto(Some(5), 10, None, []), None);
        assert_eq!(upto(Some(10), 10, None, []), Some(0));
    }

    #[test]
    fn a_member_sent_a_snapshot_holds_the_purge_at_its_position() {
        // Snapshot 299 on its way, 399 built meanwhile: the member will need 300 onwards.
        assert_eq!(upto(Some(399), 10, Some(289), [r(299, None)]), Some(299));
        assert_eq!(upto(Some(399), 10, Some(299), [r(299, None)]), None);
        // Installed, and replicating from there: held at what it matches.
        assert_eq!(
            upto(Some(399), 10, Some(299), [r(299, Some(350))]),
            Some(350)
        );
        // A matched index behind the snapshot sent (reported before the install) counts as
        // the snapshot.
        assert_eq!(upto(Some(399), 10, None, [r(299, Some(7))]), Some(299));
        // The lowest of several members holds.
        assert_eq!(
            upto(Some(999), 0, None, [r(500, Some(800)), r(299, None)]),
            Some(299)
        );
        // The policy's point when it is lower.
        assert_eq!(upto(Some(399), 200, None, [r(299, Some(390))]), Some(199));
    }

    #[test]
    fn the_hold_ends_when_the_member_passes_the_snapshot_or_its_send_is_old() {
        let t = Instant::now();
        let sent = Sent { index: 299, at: t };
        let expire = Duration::from_secs(300);
        assert!(!released(&sent, None, Some(399), t, expire));
        assert!(!released(&sent, Some(398), Some(399), t, expire));
        assert!(released(&sent, Some(399), Some(399), t, expire));
        assert!(!released(&sent, None, Some(399), t + expire, expire));
        assert!(released(
            &sent,
            None,
            Some(399),
            t + expire + Duration::from_millis(1),
            expire
        ));
        // No snapshot at all (cannot be: one was sent), yet a matched member is released.
        assert!(released(&sent, Some(0), None, t, expire));
    }
}
