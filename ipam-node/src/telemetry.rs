//! Logging and, with `--otlp-endpoint`, trace export over OTLP/HTTP.
//!
//! Logs go to stderr through `tracing-subscriber`'s fmt layer, filtered by `--log-level`.
//! Traces are a second layer with its own filter (this project's spans at info and above), so
//! a quiet log level does not hide spans and a verbose one does not flood the collector with
//! openraft's internals. Spans: `request` (one HTTP request) → `ipam.write` → `raft.write`
//! (one log entry) → `apply`; a follower's forwarded entry continues on the leader as
//! `raft.propose` through the W3C `traceparent` header (`ipam_raft::adopt_remote_parent`).
//! Without `--otlp-endpoint` no OpenTelemetry layer exists and spans cost what they did.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;
use crate::NodeError;

/// The spans exported: this project's crates, at info and above, and the `request` span,
/// which is at debug so that the log (at its default `info`) does not record it per request.
pub const TRACE_FILTER: &str = "ipam_node=info,ipam_raft=info,ipam_node::http=debug";

/// The OTLP/HTTP traces URL for `--otlp-endpoint`: a collector's base URL gets the standard
/// `/v1/traces` path (as `OTEL_EXPORTER_OTLP_ENDPOINT` does); a URL that already ends in it is
/// kept.
///
/// # Errors
///
/// Not an `http://` or `https://` URL with a host.
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("--otlp-endpoint {endpoint:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "--otlp-endpoint {endpoint:?} must be an http:// or https:// URL with a host"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "--otlp-endpoint {endpoint:?} must not carry a query or fragment"
        ));
    }
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        Ok(base.to_string())
    } else {
        Ok(format!("{base}/v1/traces"))
    }
}

/// What must outlive serving: the trace exporter, flushed by [`Telemetry::shutdown`].
#[derive(Debug, Default)]
#[must_use = "call shutdown() before exit, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered and stops the exporter. Blocking: its HTTP client is
    /// a blocking one, so this runs on a blocking thread.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "trace exporter shutdown"),
                Err(e) => tracing::warn!(error = %e, "trace exporter shutdown task"),
            }
        }
    }
}

/// Installs the global `tracing` subscriber: logs to stderr (stdout carries only the
/// `listening on` line) filtered by `level`, and, when `otlp` gives a traces URL, spans
/// exported there in batches as this node (`service.instance.id` = `node`).
///
/// # Errors
///
/// An invalid `level`, an exporter that cannot be built, or a subscriber already installed.
pub fn init(
    level: &str,
    format: LogFormat,
    otlp: Option<&str>,
    node: u64,
) -> Result<Telemetry, NodeError> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| NodeError::Config(format!("invalid --log-level {level:?}: {e}")))?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let (otel, provider) = match otlp {
        None => (None, None),
        Some(url) => {
            let provider = provider(url, node)?;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("ipam-node"))
                .with_filter(EnvFilter::new(TRACE_FILTER));
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            // `ipam-raft` emits its `apply` spans through the global provider.
            opentelemetry::global::set_tracer_provider(provider.clone());
            (Some(layer), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| NodeError::Setup(format!("cannot install the logger: {e}")))?;
    Ok(Telemetry { provider })
}

fn provider(url: &str, node: u64) -> Result<SdkTracerProvider, NodeError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| NodeError::Setup(format!("cannot build the OTLP exporter for {url}: {e}")))?;
    let resource = Resource::builder()
        .with_service_name("raft-ipam")
        .with_attributes([
            KeyValue::new("service.instance.id", node.to_string()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn a_base_url_gets_the_traces_path() {
        for (given, want) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("https://c.example/otlp", "https://c.example/otlp/v1/traces"),
            (
                "http://127.0.0.1:9/v1/traces",
                "http://127.0.0.1:9/v1/traces",
            ),
        ] {
            assert_eq!(traces_url(given).as_deref(), Ok(want), "{given}");
        }
    }

    #[test]
    fn only_http_urls_are_accepted() {
        for bad in [
            "collector:4318",
            "ftp://c/",
            "http://",
            "not a url",
            "http://c/?x=1",
        ] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    /// The names of the spans a layer filtered by `filter` sees when a request span is made.
    fn spans_seen(filter: &str) -> Vec<&'static str> {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::{Context, SubscriberExt as _};
        use tracing_subscriber::Layer;

        struct Names(Arc<Mutex<Vec<&'static str>>>);
        impl<S: tracing::Subscriber> Layer<S> for Names {
            fn on_new_span(
                &self,
                attrs: &tracing::span::Attributes<'_>,
                _: &tracing::span::Id,
                _: Context<'_, S>,
            ) {
                self.0.lock().expect("lock").push(attrs.metadata().name());
            }
        }
        let names = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry()
            .with(Names(names.clone()).with_filter(super::EnvFilter::new(filter)));
        tracing::subscriber::with_default(subscriber, || {
            let req = axum::extract::Request::get("/api/v1/pools")
                .body(axum::body::Body::empty())
                .expect("request");
            let _span = crate::middleware::request_span(&req);
        });
        let seen = names.lock().expect("lock").clone();
        seen
    }

    #[test]
    fn the_default_log_level_skips_the_request_span_and_traces_keep_it() {
        assert_eq!(
            spans_seen(crate::config::DEFAULT_LOG_LEVEL),
            Vec::<&str>::new()
        );
        assert_eq!(spans_seen(super::TRACE_FILTER), vec!["request"]);
        // What docs/operations.md tells operators who want it on every log line.
        assert_eq!(spans_seen("info,ipam_node::http=debug"), vec!["request"]);
        assert_eq!(spans_seen("debug"), vec!["request"]);
    }
}
