//! Lease metrics: `ipam_pool_cooling{pool}` and `ipam_lease_expirations_total{pool}`, refreshed
//! at each scrape from this node's replica and its state machine's counts; and
//! `ipam_event_watchers`, the open event watches of this node.

use ipam_raft::{Consistency, Ipam};
use prometheus::{GaugeVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::metrics::MetricsError;

/// The lease gauges and counters of one node.
pub struct LeaseMetrics {
    cooling: GaugeVec,
    expirations: IntCounterVec,
    watchers: IntGauge,
}

impl LeaseMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<LeaseMetrics, MetricsError> {
        let cooling = GaugeVec::new(
            Opts::new(
                "ipam_pool_cooling",
                "Free addresses of the pool still cooling after their release",
            ),
            &["pool"],
        )?;
        let expirations = IntCounterVec::new(
            Opts::new(
                "ipam_lease_expirations_total",
                "Leases released on expiry by this node's state machine since it started",
            ),
            &["pool"],
        )?;
        let watchers = IntGauge::new(
            "ipam_event_watchers",
            "Open event watches (GET /api/v1/events/watch streams and embedded watches)",
        )?;
        registry.register(Box::new(cooling.clone()))?;
        registry.register(Box::new(expirations.clone()))?;
        registry.register(Box::new(watchers.clone()))?;
        Ok(LeaseMetrics {
            cooling,
            expirations,
            watchers,
        })
    }

    /// Refreshes from `ipam` for the pools named in `pools` (the caller holds the scrape lock).
    pub async fn refresh(&self, ipam: &Ipam, pools: &[String]) {
        self.watchers
            .set(i64::try_from(ipam.event_watchers()).unwrap_or(i64::MAX));
        self.cooling.reset();
        for name in pools {
            match ipam.cooling(name, Consistency::Local).await {
                Ok(n) => self.cooling.with_label_values(&[name]).set(n as f64),
                Err(e) => tracing::warn!(error = %e, pool = %name, "metrics: cannot read cooling"),
            }
        }
        // Every pool has a series from its first scrape, so a rate over it starts at 0
        // rather than at the first expiry.
        for name in pools {
            self.expirations.with_label_values(&[name]);
        }
        for (pool, total) in ipam.lease_expirations() {
            let c = self.expirations.with_label_values(&[&pool]);
            // The node counts since start; the counter moves forward by the difference.
            c.inc_by(total.saturating_sub(c.get()));
        }
    }
}
