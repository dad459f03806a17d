//! `ipam_peer_calls_total{transport}` and `ipam_peer_streams_opened_total`: how this node
//! reaches its peers. In a cluster of one release every call goes over peer streams; calls
//! over `http` mean a peer takes no stream (an older release during a rolling upgrade).

use ipam_raft::Ipam;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The peer-call counters, refreshed from the raft handle at each scrape.
pub struct PeerCallMetrics {
    calls: IntCounterVec,
    opened: IntCounter,
}

impl PeerCallMetrics {
    /// Creates the counters and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<PeerCallMetrics, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "ipam_peer_calls_total",
                "Calls this node made to its peers (raft RPCs and forwarded requests), by transport",
            ),
            &["transport"],
        )?;
        let opened = IntCounter::new(
            "ipam_peer_streams_opened_total",
            "Peer streams this node opened (one upgraded connection each)",
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(opened.clone()))?;
        Ok(PeerCallMetrics { calls, opened })
    }

    /// Brings the counters up to the handle's totals since start.
    pub fn refresh(&self, ipam: &Ipam) {
        let now = ipam.peer_calls();
        for (transport, total) in [("stream", now.stream), ("http", now.http)] {
            let c = self.calls.with_label_values(&[transport]);
            c.inc_by(total.saturating_sub(c.get()));
        }
        self.opened
            .inc_by(now.streams_opened.saturating_sub(self.opened.get()));
    }
}
