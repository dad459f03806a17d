//! The event log on [`Ipam`]: a page of events, an address's history, and [`Ipam::watch`],
//! which follows the local replica's event table as entries apply.
//!
//! A watch is a task that reads the events table from its cursor (the last id it delivered)
//! and waits for the replica's applied index to move when it has caught up. Reading the table
//! rather than relaying what `apply` produced is what makes delivery exact: a slow consumer,
//! a snapshot install or a reconnect resumes from the cursor, so no event is skipped or
//! delivered twice, always in id order. Events pruned before a slow watcher read them end
//! its stream with `history_truncated`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use ipam_core::{Event, EventPage, QueryError};
use tokio::sync::mpsc;

use crate::config::Consistency;
use crate::error::IpamError;
use crate::handle::Ipam;

/// Events a watch reads from the table per read transaction.
const WATCH_CHUNK: usize = 1000;
/// Events buffered between a watch's task and its consumer.
const WATCH_BUFFER: usize = 256;

/// A stream of events in id order, none skipped, none twice (see [`Ipam::watch`]). Ends
/// (`None`) when the node shuts down; an `Err` item is the last one.
#[derive(Debug)]
pub struct EventWatch {
    rx: mpsc::Receiver<Result<Event, IpamError>>,
}

impl EventWatch {
    /// The next event; `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Result<Event, IpamError>> {
        self.rx.recv().await
    }
}

/// Decrements the watcher count when a watch's task ends, however it ends.
struct WatcherGuard(Ipam);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.core.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Ipam {
    /// Up to `limit` (1..=1000) events after id `after` (from the oldest kept when `None`),
    /// oldest first, only `pool`'s when given. `Err(Query(HistoryTruncated))` when events after
    /// `after` were pruned.
    pub async fn events(
        &self,
        after: Option<u64>,
        pool: Option<&str>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<EventPage, IpamError> {
        let pool = pool.map(str::to_string);
        self.read(consistency, move |rtx| {
            Ok(ipam_core::query::events(
                rtx,
                after,
                pool.as_deref(),
                limit,
            )?)
        })
        .await
    }

    /// Up to `limit` (1..=1000) events of address `ip`, newest first.
    pub async fn history(
        &self,
        ip: IpAddr,
        limit: usize,
        consistency: Consistency,
    ) -> Result<Vec<Event>, IpamError> {
        self.read(consistency, move |rtx| {
            Ok(ipam_core::query::history(rtx, ip, limit)?)
        })
        .await
    }

    /// The newest `count` (1..=1000) events, newest first (the dashboard's recent events).
    pub async fn recent_events(
        &self,
        count: usize,
        consistency: Consistency,
    ) -> Result<Vec<Event>, IpamError> {
        self.read(consistency, move |rtx| {
            let Some((first, last)) =
                ipam_core::query::event_bounds(rtx).map_err(QueryError::from)?
            else {
                return Ok(Vec::new());
            };
            let after = last.saturating_sub(count as u64).max(first - 1);
            let mut page = ipam_core::query::events(rtx, Some(after), None, count)?;
            page.events.reverse();
            Ok(page.events)
        })
        .await
    }

    /// Number of open [`Ipam::watch`] streams on this node.
    pub fn event_watchers(&self) -> u64 {
        self.core.watchers.load(Ordering::Relaxed)
    }

    /// Follows the event log from id `after` (exclusive), or from now on when `None`, only
    /// `pool`'s events when given. Every event reaches the stream once, in id order, as this
    /// node applies it; the stream ends when the node shuts down or the [`EventWatch`] is
    /// dropped.
    ///
    /// # Errors
    ///
    /// The read barrier's errors, and `Query(HistoryTruncated)` when events after `after` were
    /// already pruned.
    pub async fn watch(
        &self,
        after: Option<u64>,
        pool: Option<String>,
    ) -> Result<EventWatch, IpamError> {
        self.linearize().await?;
        let start = self
            .local_read(move |rtx| {
                let bounds = ipam_core::query::event_bounds(rtx).map_err(QueryError::from)?;
                match after {
                    Some(after) => {
                        ipam_core::query::check_after(rtx, after)?;
                        Ok(after)
                    }
                    None => Ok(bounds.map_or(0, |(_, last)| last)),
                }
            })
            .await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        self.core.watchers.fetch_add(1, Ordering::Relaxed);
        let guard = WatcherGuard(self.clone());
        tokio::spawn(follow(guard, start, pool, tx));
        Ok(EventWatch { rx })
    }
}

/// A watch's task: deliver events after `cursor` until the consumer leaves or the node stops.
async fn follow(
    guard: WatcherGuard,
    mut cursor: u64,
    pool: Option<String>,
    tx: mpsc::Sender<Result<Event, IpamError>>,
) {
    let ipam = &guard.0;
    let mut applied = ipam.core.metrics.clone();
    let mut shutdown = ipam.core.shutdown_tx.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Marked seen before reading: an apply that commits after this read changes the
        // metrics afterwards, so the wait below cannot miss it.
        applied.borrow_and_update();
        let after = cursor;
        let page = ipam
            .local_read(move |rtx| {
                Ok(ipam_core::query::events(
                    rtx,
                    Some(after),
                    None,
                    WATCH_CHUNK,
                )?)
            })
            .await;
        let page = match page {
            Ok(page) => page,
            Err(IpamError::ShuttingDown) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if page.events.is_empty() {
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
            continue;
        }
        for event in page.events {
            cursor = event.id;
            if pool.as_ref().is_some_and(|p| *p != event.pool) {
                continue;
            }
            // A consumer that stops reading must not keep the task past shutdown.
            tokio::select! {
                sent = tx.send(Ok(event)) => if sent.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(feature = "testing")]
impl Ipam {
    /// Keeps only the newest `retention` events from the next applied entry on. Every node of
    /// a cluster must use the same value (pruning is part of the replicated state); only tests
    /// lower the contract's 1,000,000.
    pub fn set_event_retention(&self, retention: u64) {
        self.core
            .sm
            .event_retention
            .store(retention.max(1), Ordering::Relaxed);
    }
}
