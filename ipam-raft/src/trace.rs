//! Traces across nodes: the W3C `traceparent` a forwarded write carries, and the `apply` span
//! of an entry.
//!
//! The crate only emits `tracing` spans (`ipam.write`, `raft.write`, `raft.propose`) and, when
//! the embedding process installed an OpenTelemetry layer and propagator (`ipam-node
//! --otlp-endpoint`), links them: a call to another node carries the current span's context,
//! and the receiving node parents its span on it, so one trace shows the follower and the
//! leader. Without that layer every span context is invalid and nothing here does any work.
//!
//! `apply` runs on openraft's state-machine task, which knows nothing of the proposal that
//! produced the entry. The state machine notes when it applied each entry ([`ApplyLog`], only
//! when [`crate::Config::traces`] is on); the proposer, whose `client_write` returns after the
//! apply with the entry's index, then emits the `apply` span under its `raft.write` span with
//! those recorded start and end times.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Applied entries remembered for the proposer; a proposer reads its own within
/// milliseconds, so a short ring is plenty and a slow reader only loses a span.
const APPLY_LOG_LEN: usize = 256;

/// Adds the current span's trace context to an outgoing request's headers (nothing when the
/// span is not recorded by an OpenTelemetry layer).
pub(crate) fn inject_current(headers: &mut axum::http::HeaderMap) {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

/// Parents `span` on the trace context an incoming request carries, if any.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if cx.span().span_context().is_valid() {
        // Fails only when the span is not recorded (no OpenTelemetry layer): nothing to link.
        let _ = span.set_parent(cx);
    }
}

/// When the state machine applied one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) index: u64,
    pub(crate) ops: usize,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
}

/// The recent applies, for the proposer's `apply` spans. Off unless traces are exported.
#[derive(Debug, Default)]
pub(crate) struct ApplyLog {
    enabled: AtomicBool,
    recent: Mutex<VecDeque<Applied>>,
}

impl ApplyLog {
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, applied: impl IntoIterator<Item = Applied>) {
        if let Ok(mut recent) = self.recent.lock() {
            for a in applied {
                if recent.len() == APPLY_LOG_LEN {
                    recent.pop_front();
                }
                recent.push_back(a);
            }
        }
    }

    /// The apply of entry `index`, if still remembered.
    pub(crate) fn find(&self, index: u64) -> Option<Applied> {
        let recent = self.recent.lock().ok()?;
        recent.iter().rev().find(|a| a.index == index).copied()
    }
}

/// Emits the `apply` span of entry `index` under the current (`raft.write`) span.
pub(crate) fn emit_apply(log: &ApplyLog, index: u64) {
    if !log.enabled() {
        return;
    }
    let parent = tracing::Span::current().context();
    if !parent.span().span_context().is_valid() {
        return;
    }
    let Some(a) = log.find(index) else { return };
    let tracer = opentelemetry::global::tracer("ipam-raft");
    let mut span = tracer
        .span_builder("apply")
        .with_start_time(a.start)
        .with_attributes([
            KeyValue::new("log.index", i64::try_from(a.index).unwrap_or(i64::MAX)),
            KeyValue::new("ops", i64::try_from(a.ops).unwrap_or(i64::MAX)),
        ])
        .start_with_context(&tracer, &parent);
    span.end_with_timestamp(a.end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn applied(index: u64) -> Applied {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(index);
        Applied {
            index,
            ops: 1,
            start,
            end: start,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_applies() {
        let log = ApplyLog::default();
        log.record((1..=APPLY_LOG_LEN as u64 + 10).map(applied));
        assert_eq!(log.find(1), None);
        assert_eq!(log.find(11), Some(applied(11)));
        let last = APPLY_LOG_LEN as u64 + 10;
        assert_eq!(log.find(last), Some(applied(last)));
    }

    #[test]
    fn a_request_without_a_recorded_span_carries_no_context() {
        let mut headers = axum::http::HeaderMap::new();
        inject_current(&mut headers);
        assert!(headers.is_empty());
    }
}
