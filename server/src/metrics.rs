//! `/metrics` in the Prometheus (OpenMetrics) text format, and the per-request
//! middleware that feeds it and opens a tracing span for every request.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};

use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_store::Storage;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use super::AppState;
use super::error::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

type DurationFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

/// The server's metrics: HTTP requests by method and code, their durations, and the
/// store's counters read at every scrape.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily,
    pub(crate) connections: crate::connections::ConnectionMetrics,
    /// Bytes received by the image registry (blobs and manifests).
    pub(crate) registry_pushed: Counter,
    /// Bytes sent by the image registry (blobs and manifests).
    pub(crate) registry_pulled: Counter,
    /// `POST /transactions` answered, by result (`committed`, `dryRun`, `refused`).
    pub(crate) transactions: Family<ResultLabels, Counter>,
    /// Operations of the transactions answered, by result as above.
    pub(crate) transaction_operations: Family<ResultLabels, Counter>,
}

/// The result of a transaction, as a metric label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub(crate) result: &'static str,
}

fn duration_histogram() -> Histogram {
    // 100 µs to ~3.3 s: store writes are flushed to disk, so milliseconds are normal.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    /// Metrics exporting `store`'s statistics alongside the request metrics.
    pub fn new(store: Arc<dyn Storage>, auth: &crate::auth::Auth) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "corral_authorization_denied",
            "Authenticated requests refused as forbidden (403)",
            auth.denied_counter(),
        );
        registry.register(
            "corral_authentication_failed",
            "Requests refused as unauthenticated (401): no credential, or one that proves nothing",
            auth.unauthenticated_counter(),
        );
        registry.register(
            "corral_audit_records_dropped",
            "Audit records dropped because the audit log's writer fell behind",
            auth.audit.dropped_counter(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("corral_http_requests", "HTTP requests served, by method and status code", requests.clone());
        let durations: DurationFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "corral_http_request_duration_seconds",
            "Time to answer an HTTP request up to its response head (watch streams last longer)",
            durations.clone(),
        );
        let connections = crate::connections::ConnectionMetrics::default();
        registry.register("corral_http_connections_open", "HTTP connections open now", connections.open.clone());
        registry.register(
            "corral_http_connections_refused",
            "HTTP connections answered 429 and closed for being over the server's or a client's cap",
            connections.refused.clone(),
        );
        registry.register(
            "corral_http_connections_stalled",
            "HTTP connections closed because the client read nothing for the write-stall timeout",
            connections.stalled.clone(),
        );
        let registry_pushed = Counter::default();
        registry.register(
            "corral_registry_pushed_bytes",
            "Bytes of blobs and manifests pushed to the image registry",
            registry_pushed.clone(),
        );
        let registry_pulled = Counter::default();
        registry.register(
            "corral_registry_pulled_bytes",
            "Bytes of blobs and manifests pulled from the image registry",
            registry_pulled.clone(),
        );
        let transactions = Family::<ResultLabels, Counter>::default();
        registry.register(
            "corral_transactions",
            "POST /transactions answered, by result: committed, dryRun or refused",
            transactions.clone(),
        );
        let transaction_operations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "corral_transaction_operations",
            "Operations of the transactions answered, by the transaction's result",
            transaction_operations.clone(),
        );
        registry.register_collector(Box::new(StoreCollector { store }));
        Metrics {
            registry,
            requests,
            durations,
            connections,
            registry_pushed,
            registry_pulled,
            transactions,
            transaction_operations,
        }
    }

    /// Records one answered transaction of `operations` operations.
    pub(crate) fn observe_transaction(&self, result: &'static str, operations: usize) {
        self.transactions.get_or_create(&ResultLabels { result }).inc();
        self.transaction_operations.get_or_create(&ResultLabels { result }).inc_by(operations as u64);
    }

    /// Records one answered request.
    pub fn observe(&self, method: &str, code: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { method: method.to_string(), code: code.to_string() }).inc();
        self.durations.get_or_create(&MethodLabels { method: method.to_string() }).observe(seconds);
    }
}

/// Reads the store's counters at scrape time, so they are never stale.
struct StoreCollector {
    store: Arc<dyn Storage>,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCollector").finish_non_exhaustive()
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.store.stats();
        let gauges = [
            ("corral_store_revision", "Current store revision.", s.revision),
            ("corral_store_compacted_revision", "Events at or below this revision are compacted away.", s.compacted),
            ("corral_store_objects", "Objects held by the store.", s.objects),
            ("corral_store_watchers", "Open watches.", s.watchers),
            ("corral_store_live_bytes", "Bytes of the current objects.", s.live_bytes),
            (
                "corral_store_history_bytes",
                "Bytes of retained history (events after the compacted revision).",
                s.history_bytes,
            ),
            ("corral_store_history_revisions", "Revisions of retained history.", s.history_revisions),
            (
                "corral_store_recent_bytes",
                "Bytes of the newest events held in memory for live watches.",
                s.recent_bytes,
            ),
            ("corral_store_db_bytes", "Bytes the store takes on disk.", s.db_bytes),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters = [
            ("corral_store_flushes", "Durable flushes performed.", s.flushes),
            ("corral_store_writes", "Writes acknowledged, one per revision.", s.writes),
            ("corral_store_watch_wakeups", "Times a write woke a watch.", s.watch_wakeups),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// `GET /metrics`: the server's metrics and those of anything else in the process that
/// added its registry (a controller manager), as OpenMetrics for scrapers that ask for
/// it, otherwise the classic Prometheus text format (what `promtool` reads).
pub async fn serve(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let extra = state.extra_metrics.read().clone();
    let parts = std::iter::once(corral_telemetry::exposition::encode(&state.metrics.registry))
        .chain(extra.iter().map(|r| r.encode()))
        .collect::<Result<Vec<_>, _>>();
    match parts {
        Ok(parts) => corral_telemetry::exposition::respond(&parts, &headers),
        Err(e) => ApiError::internal(format!("cannot encode metrics: {e}")).into_response(),
    }
}

/// Keeps label values to a fixed set so a client cannot blow up the label space.
fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware: a span per request, the request metrics, and a log line at the end.
/// Its state is the metrics alone: cloning the whole server state for every request
/// costs a dozen contended reference counts.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %req.uri().path(),
        status = tracing::field::Empty,
    );
    let start = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let code = resp.status().as_u16();
    span.record("status", code);
    metrics.observe(method, code, elapsed.as_secs_f64());
    span.in_scope(|| {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if resp.status().is_server_error() {
            tracing::warn!(micros, "request failed");
        } else {
            tracing::debug!(micros, "request served");
        }
    });
    resp
}
