//! Prometheus exposition (`--metrics-bind`). The edge records through the
//! `metrics` facade, as moq-relay-ietf does, so one exporter serves both:
//!
//! - `moq_edge_coordinator_calls_total{method,code}` and
//!   `moq_edge_coordinator_call_seconds{method}` (histogram): every Worker call.
//! - `moq_edge_cache_hits_total{method}`, `moq_edge_cache_misses_total{method}`.
//! - `moq_edge_cache_invalidation_events_total`: invalidations received.
//! - `moq_edge_cache_resyncs_total`: hellos after the first on a channel.
//! - `moq_edge_watch_ended_total{reason}`: channels lost (gap, closed,
//!   silent) or not opened (failed).
//! - `moq_edge_watch_channels` (scopes watched), `moq_edge_watch_channels_up`.
//! - `moq_edge_sessions_accepted_total{interface}` (internal: a relay peer;
//!   public: a client) and `moq_edge_sessions_refused_total` (scope resolution
//!   refused the connection path): every inbound session.
//! - `moq_edge_upstream_links_opened_total`: upstream relays (per scope)
//!   first handed to the relay to dial.
//! - `moq_edge_peer_pages_total`: ListPeers pages read (peer lists longer
//!   than one Heartbeat answer).
//! - `moq_edge_watch_released_total{reason}`: scopes released with their
//!   channel and cached state (idle, or cap: least recently read past
//!   `--watch-scopes`).

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Latency buckets, in seconds: from a cache-fast 0.5 ms to a slow 5 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Install the global recorder and serve it on `addr` (any path answers;
/// scrape /metrics). Must run inside the Tokio runtime.
pub fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install()?;
    Ok(())
}
