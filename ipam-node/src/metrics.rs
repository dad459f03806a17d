//! Prometheus metrics on the node's own [`Registry`]: request and allocation histograms that
//! handlers feed, and gauges refreshed from the local replica and raft at each scrape.

use std::time::Duration;

use axum::http::StatusCode;
use ipam_core::Labels;
use ipam_raft::{Consistency, Ipam};
use prometheus::{
    exponential_buckets, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    pool_capacity: GaugeVec,
    pool_allocated: GaugeVec,
    allocation_duration: Histogram,
    allocation_errors: IntCounterVec,
    cache_hits: IntCounter,
    early_answers: IntCounter,
    cache_misses: IntCounter,
    raft_term: IntGauge,
    raft_is_leader: IntGauge,
    raft_commit_index: IntGauge,
    raft_applied_index: IntGauge,
    raft_last_log_index: IntGauge,
    raft_purged_index: IntGauge,
    snapshot_installs: IntCounter,
    http_duration: HistogramVec,
    leases: crate::lease_metrics::LeaseMetrics,
    /// `ipam_pool_ranges{pool}` and `ipam_pool_frozen{pool}`.
    pool_shape: crate::pools::PoolGauges,
    /// Problems the last integrity check found (set by `check.rs`).
    pub integrity_problems: IntGauge,
    /// `ipam_reconcile_changes_total{kind}` (counted by `drift.rs`).
    pub reconcile: crate::drift::ReconcileMetrics,
    /// `ipam_selections_total{pool,result}` (fed by `select.rs`).
    pub selections: crate::select::SelectionMetrics,
    /// `ipam_request_records`: decided requests kept for exactly-once answers.
    request_records: IntGauge,
    peers: crate::peer_metrics::PeerCallMetrics,
    // Scrapes reset and refill the per-pool gauges; one at a time so none sees a half-filled set.
    scrape: tokio::sync::Mutex<()>,
}

/// Error of building or rendering the metrics (a programming error, never input).
pub type MetricsError = prometheus::Error;

impl Metrics {
    /// The registry, for metrics kept by other modules (the accept loop's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        // 50 µs .. ~13 s, doubling.
        let latency = exponential_buckets(0.000_05, 2.0, 19)?;
        let pool_capacity = GaugeVec::new(
            Opts::new(
                "ipam_pool_capacity_total",
                "Allocatable addresses of the pool (an IPv6 pool may exceed f64 precision)",
            ),
            &["pool"],
        )?;
        let pool_allocated = GaugeVec::new(
            Opts::new("ipam_pool_allocated", "Allocated addresses of the pool"),
            &["pool"],
        )?;
        let allocation_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ipam_allocation_duration_seconds",
                "Time to answer an allocation request through the API",
            )
            .buckets(latency.clone()),
        )?;
        let allocation_errors = IntCounterVec::new(
            Opts::new(
                "ipam_allocation_errors_total",
                "Allocation requests that failed, by pool and error code",
            ),
            &["pool", "reason"],
        )?;
        let cache_hits = IntCounter::new(
            "ipam_cache_hits_total",
            "Allocations answered from the read-through cache",
        )?;
        let cache_misses = IntCounter::new(
            "ipam_cache_misses_total",
            "Allocations that went through the raft log",
        )?;
        let early_answers = IntCounter::new(
            "ipam_raft_early_answers_total",
            "Proposals (a write of this node's, or a list a follower forwarded) answered by this node's apply before openraft's answer",
        )?;
        let raft_term = IntGauge::new("ipam_raft_term", "Current raft term")?;
        let raft_is_leader =
            IntGauge::new("ipam_raft_is_leader", "1 when this node is the raft leader")?;
        let raft_commit_index = IntGauge::new(
            "ipam_raft_commit_index",
            "Commit index as this node knows it",
        )?;
        let raft_applied_index =
            IntGauge::new("ipam_raft_applied_index", "Last log index applied here")?;
        let raft_last_log_index =
            IntGauge::new("ipam_raft_last_log_index", "Last log index stored here")?;
        let raft_purged_index = IntGauge::new(
            "ipam_raft_purged_index",
            "Highest log index purged here behind a snapshot (0: none)",
        )?;
        let snapshot_installs = IntCounter::new(
            "ipam_raft_snapshot_installs_total",
            "Snapshots this node installed from a leader",
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "ipam_http_request_duration_seconds",
                "HTTP request duration by route template and status",
            )
            .buckets(latency),
            &["route", "status"],
        )?;
        registry.register(Box::new(pool_capacity.clone()))?;
        registry.register(Box::new(pool_allocated.clone()))?;
        registry.register(Box::new(allocation_duration.clone()))?;
        registry.register(Box::new(allocation_errors.clone()))?;
        registry.register(Box::new(cache_hits.clone()))?;
        registry.register(Box::new(cache_misses.clone()))?;
        registry.register(Box::new(early_answers.clone()))?;
        registry.register(Box::new(raft_term.clone()))?;
        registry.register(Box::new(raft_is_leader.clone()))?;
        registry.register(Box::new(raft_commit_index.clone()))?;
        registry.register(Box::new(raft_applied_index.clone()))?;
        registry.register(Box::new(raft_last_log_index.clone()))?;
        registry.register(Box::new(raft_purged_index.clone()))?;
        registry.register(Box::new(snapshot_installs.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        let leases = crate::lease_metrics::LeaseMetrics::new(&registry)?;
        let pool_shape = crate::pools::PoolGauges::register(&registry)?;
        let integrity_problems = IntGauge::new(
            "ipam_integrity_problems",
            "Problems the last integrity check of this node's state found (0: consistent)",
        )?;
        registry.register(Box::new(integrity_problems.clone()))?;
        let reconcile = crate::drift::ReconcileMetrics::new(&registry)?;
        let selections = crate::select::SelectionMetrics::new(&registry)?;
        let request_records = IntGauge::new(
            "ipam_request_records",
            "Decided requests (request ids, idempotency keys) whose answers this replica keeps",
        )?;
        registry.register(Box::new(request_records.clone()))?;
        let peers = crate::peer_metrics::PeerCallMetrics::new(&registry)?;
        Ok(Metrics {
            peers,
            reconcile,
            selections,
            request_records,
            pool_shape,
            registry,
            pool_capacity,
            pool_allocated,
            allocation_duration,
            allocation_errors,
            cache_hits,
            cache_misses,
            early_answers,
            raft_term,
            raft_is_leader,
            raft_commit_index,
            raft_applied_index,
            raft_last_log_index,
            raft_purged_index,
            snapshot_installs,
            http_duration,
            leases,
            integrity_problems,
            scrape: tokio::sync::Mutex::new(()),
        })
    }

    /// Records one answered allocation request.
    pub fn observe_allocation(&self, elapsed: Duration) {
        self.allocation_duration.observe(elapsed.as_secs_f64());
    }

    /// Records one failed allocation request. `pool` is `""` unless the failure proves the pool
    /// exists, so requests naming arbitrary pools cannot grow the label set without bound.
    pub fn allocation_error(&self, pool: &str, reason: &str) {
        self.allocation_errors
            .with_label_values(&[pool, reason])
            .inc();
    }

    /// Records one HTTP request. `route` is the matched path template.
    pub fn observe_http(&self, route: &str, status: StatusCode, elapsed: Duration) {
        // `as_str` is a static string: no allocation per request for the label.
        self.http_duration
            .with_label_values(&[route, status.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// Refreshes the gauges from `ipam` and renders every metric in the text format.
    pub async fn render(&self, ipam: &Ipam) -> Result<String, MetricsError> {
        let _one_scrape = self.scrape.lock().await;
        let status = ipam.status();
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.raft_term.set(gauge(status.term));
        self.raft_is_leader
            .set(i64::from(status.leader == Some(status.id)));
        self.raft_commit_index.set(gauge(status.committed_index));
        self.raft_applied_index.set(gauge(status.applied_index));
        self.raft_last_log_index.set(gauge(status.last_log_index));
        self.raft_purged_index
            .set(gauge(ipam.purged_index().unwrap_or(0)));
        self.peers.refresh(ipam);
        let (hits, misses) = ipam.cache_stats();
        // The handle counts since start; counters only move forward by the difference.
        self.cache_hits
            .inc_by(hits.saturating_sub(self.cache_hits.get()));
        self.cache_misses
            .inc_by(misses.saturating_sub(self.cache_misses.get()));
        self.early_answers.inc_by(
            ipam.early_answers()
                .saturating_sub(self.early_answers.get()),
        );
        self.snapshot_installs.inc_by(
            ipam.snapshots_installed()
                .saturating_sub(self.snapshot_installs.get()),
        );
        match ipam.pools(&Labels::new(), Consistency::Local).await {
            Ok(pools) => {
                self.pool_capacity.reset();
                self.pool_allocated.reset();
                let names: Vec<String> = pools.iter().map(|p| p.name.clone()).collect();
                self.leases.refresh(ipam, &names).await;
                self.pool_shape.fill(&pools);
                for p in pools {
                    self.pool_capacity
                        .with_label_values(&[&p.name])
                        .set(p.stats.capacity as f64);
                    self.pool_allocated
                        .with_label_values(&[&p.name])
                        .set(p.stats.allocated as f64);
                }
            }
            // Keep the last values: a scrape should not fail because one read did.
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read pools"),
        }
        match ipam.request_records().await {
            Ok(n) => self.request_records.set(gauge(n)),
            Err(e) => tracing::warn!(error = %e, "metrics: cannot count request records"),
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}
