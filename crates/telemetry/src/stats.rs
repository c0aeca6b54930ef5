//! [`PipelineStats`]: a typed snapshot of the pipeline's figures, read
//! from the metrics themselves (never from their text exposition). The
//! replay summary, the dashboard's pipeline panel (through
//! `GET /api/v1/pipeline`) and tests read it.

use std::collections::BTreeMap;

use prometheus::core::Collector;
use serde::{Deserialize, Serialize};

/// What one provider did since the process started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderStats {
    /// Valid ticks emitted.
    pub ticks: u64,
    /// Frames received, by kind (`trade`, `ping`, ...).
    pub frames: BTreeMap<String, u64>,
    /// Connections open now.
    pub connections: i64,
    pub reconnects: u64,
    /// Errors, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Feed gaps recorded, by reason.
    pub gaps: BTreeMap<String, u64>,
    /// Gaps whose healing ended, by result (`healed`, `unrecoverable`).
    pub heals: BTreeMap<String, u64>,
    /// Trades taken from the venue's history.
    pub backfilled: u64,
    /// The completeness ledger's counts from ingest, as persist wrote them.
    pub ledger: LedgerStats,
}

/// Trades the completeness ledger counted for one provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerStats {
    /// From the feed or the history, rejected ones and duplicates included.
    pub received: u64,
    /// Sent to the dead-letter topic.
    pub rejected: u64,
    /// Sent by the provider before (stored once).
    pub duplicates: u64,
    /// Tallies ingest published (messages on the ticks topic besides the
    /// ticks and gaps).
    pub tallies: u64,
}

/// A latency histogram: observations, their sum, and cumulative counts by
/// upper bound in seconds (the last bound is `+Inf`, written as `null`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Histogram {
    pub count: u64,
    pub sum_seconds: f64,
    #[schema(schema_with = bucket_schema)]
    pub buckets: Vec<(Option<f64>, u64)>,
}

/// `[upper bound in seconds or null for +Inf, cumulative count]` pairs.
fn bucket_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                            Type::Number,
                            Type::Null,
                        ]))
                        .minimum(Some(0.0)),
                )
                .min_items(Some(2))
                .max_items(Some(2)),
        )
        .description(Some(
            "Cumulative counts by upper bound: [bound in seconds, or null for +Inf, count]",
        ))
        .build()
}

impl Histogram {
    /// The smallest bucket bound at or below which `q` (0–1) of the
    /// observations fall; `None` without observations, or when it is past
    /// the largest finite bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let want = q * self.count as f64;
        self.buckets
            .iter()
            .find(|(_, n)| *n as f64 >= want)
            .and_then(|(le, _)| *le)
    }
}

/// The pipeline's figures since the process started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PipelineStats {
    /// Per provider id.
    pub providers: BTreeMap<String, ProviderStats>,
    /// Ticks rejected, by `stage/reason`.
    pub rejected: BTreeMap<String, u64>,
    /// Messages the bus took, by topic.
    pub published: BTreeMap<String, u64>,
    /// Messages received from the bus, by topic.
    pub consumed: BTreeMap<String, u64>,
    /// Dead letters, by reason.
    pub dead_letters: BTreeMap<String, u64>,
    /// Consumer lag summed over partitions, by topic (persist only).
    pub consumer_lag: BTreeMap<String, i64>,
    pub store: StoreStats,
    pub cache_updates: u64,
    pub cache_errors: u64,
    /// Ingest → committed to the store, per tick.
    pub ingest_to_stored: Histogram,
    /// Live-stream clients connected now.
    pub stream_clients: i64,
    /// HTTP connections open now.
    pub http_connections: i64,
    /// Whether persist has paused fetching (the store is down).
    pub persist_paused: bool,
    /// Times persist paused fetching.
    pub persist_pauses: u64,
    /// Publishes the bus failed, by topic.
    pub publish_errors: BTreeMap<String, u64>,
    /// Requests and streams refused at a limit, by limit.
    pub refused: BTreeMap<String, u64>,
    /// Requests refused for want of a valid API key or scope, by reason.
    pub auth_failures: BTreeMap<String, u64>,
    /// Requests answered 429, by key id (`anonymous` for callers without one).
    pub rate_limited: BTreeMap<String, u64>,
}

/// What the persist stage wrote.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreStats {
    pub batches: u64,
    /// New rows.
    pub rows_written: u64,
    /// Rows already stored (a redelivery or replay).
    pub rows_deduplicated: u64,
    pub write_errors: u64,
    pub gaps_written: u64,
}

impl PipelineStats {
    /// Valid ticks of every provider.
    pub fn provider_ticks(&self) -> u64 {
        self.providers.values().map(|p| p.ticks).sum()
    }

    /// Dead letters of every reason.
    pub fn dead_letter_total(&self) -> u64 {
        self.dead_letters.values().sum()
    }
}

/// A series' labels by name.
pub(crate) type Labels = BTreeMap<String, String>;

/// One series of a labelled metric: its labels, and its value.
pub(crate) type Series = (Labels, f64);

/// Each series of a labelled counter or gauge.
pub(crate) fn series(c: &dyn Collector) -> Vec<Series> {
    use prometheus::proto::MetricType;
    let mut out = Vec::new();
    for family in c.collect() {
        let kind = family.get_field_type();
        for m in family.get_metric() {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            let value = match kind {
                MetricType::COUNTER => m.get_counter().get_value(),
                MetricType::GAUGE => m.get_gauge().get_value(),
                _ => continue,
            };
            out.push((labels, value));
        }
    }
    out
}

/// The value of label `name`.
pub(crate) fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.get(name).map_or("", String::as_str)
}

/// Values summed by the labels `names` (joined by `/`).
pub(crate) fn by_label(c: &dyn Collector, names: &[&str]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (labels, v) in series(c) {
        let key = names
            .iter()
            .map(|n| label(&labels, n))
            .collect::<Vec<_>>()
            .join("/");
        *out.entry(key).or_default() += v as u64;
    }
    out
}

/// The snapshot of a histogram.
pub(crate) fn histogram(h: &prometheus::Histogram) -> Histogram {
    let mut out = Histogram::default();
    for family in h.collect() {
        for m in family.get_metric() {
            let hist = m.get_histogram();
            out.count = hist.get_sample_count();
            out.sum_seconds = hist.get_sample_sum();
            out.buckets = hist
                .get_bucket()
                .iter()
                .map(|b| (Some(b.upper_bound()), b.cumulative_count()))
                .collect();
            out.buckets.push((None, out.count));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::events::{FrameKind, ProviderErrorKind, Refusal, Stage};
    use crate::Metrics;
    use streamforge_model::GapReason;

    #[test]
    fn the_snapshot_reads_each_figure_by_its_labels() {
        let m = Metrics::new();
        m.provider_ticks("finnhub", 7);
        m.provider_ticks("synthetic", 3);
        m.provider_ticks("finnhub", 5);
        m.provider_frame("finnhub", FrameKind::Trade);
        m.provider_frame("finnhub", FrameKind::Ping);
        m.provider_frame("finnhub", FrameKind::Trade);
        m.provider_error("finnhub", ProviderErrorKind::Silent);
        m.provider_reconnect("finnhub");
        m.provider_connected("finnhub", true);
        m.provider_gap("finnhub", GapReason::Silent, 2.0);
        m.provider_gap("finnhub", GapReason::Disconnected, 1.0);
        m.provider_gap("finnhub", GapReason::Silent, 1.0);
        m.http_refused(Refusal::MaxStreams);
        m.bus_publish_failed("ticks");
        m.ticks_rejected(Stage::Ingest, "price_too_large", 2);
        m.ticks_rejected(Stage::Persist, "malformed_json", 1);
        m.bus_published("ticks", 12, 1200);
        m.bus_consumed("ticks", 10, 1000);
        m.bus_consumer_lag("ticks", 0, 4);
        m.bus_consumer_lag("ticks", 1, 6);
        m.batch_stored(
            10,
            8,
            Duration::from_millis(3),
            [0.0004, 0.02, 7.0].into_iter(),
        );
        m.gaps_stored(1);
        m.cache_updated(3);
        m.stream_client(2);
        m.persist_paused(true);

        let s = m.snapshot();
        let f = &s.providers["finnhub"];
        assert_eq!((f.ticks, f.reconnects, f.connections), (12, 1, 1));
        assert_eq!((f.gaps["silent"], f.gaps["disconnected"]), (2, 1));
        assert_eq!(
            (s.refused["max_streams"], s.publish_errors["ticks"]),
            (1, 1)
        );
        assert_eq!(
            (f.frames["trade"], f.frames["ping"], f.errors["silent"]),
            (2, 1, 1)
        );
        assert_eq!(s.providers["synthetic"].ticks, 3);
        assert_eq!(s.provider_ticks(), 15);
        assert_eq!(s.rejected["ingest/price_too_large"], 2);
        assert_eq!(s.rejected["persist/malformed_json"], 1);
        assert_eq!(s.dead_letters["price_too_large"], 2);
        assert_eq!(s.dead_letter_total(), 3);
        assert_eq!((s.published["ticks"], s.consumed["ticks"]), (12, 10));
        assert_eq!(s.consumer_lag["ticks"], 10);
        assert_eq!(
            (
                s.store.batches,
                s.store.rows_written,
                s.store.rows_deduplicated,
                s.store.gaps_written
            ),
            (1, 8, 2, 1)
        );
        assert_eq!((s.cache_updates, s.stream_clients), (3, 2));
        assert!(s.persist_paused);
        assert_eq!(s.persist_pauses, 1);
        let h = &s.ingest_to_stored;
        assert_eq!(h.count, 3);
        assert!((h.sum_seconds - 7.0204).abs() < 1e-9);
        assert_eq!(h.buckets.last(), Some(&(None, 3)));
        assert_eq!(h.quantile_bound(0.3), Some(0.0005));
        assert_eq!(h.quantile_bound(0.6), Some(0.025));
        assert_eq!(h.quantile_bound(0.99), Some(10.0));
        let json = serde_json::to_value(&s).unwrap();
        let back: crate::PipelineStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }
}
