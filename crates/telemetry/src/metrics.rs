//! [`Metrics`]: every StreamForge metric, registered in one place.
//!
//! Names follow `streamforge_<stage>_<noun>_<unit>[_total]`. Things that
//! happen are recorded through the event methods below, which count and,
//! where useful, log in the same place. Hot paths call them once per batch.
//! `docs/metrics.md` lists every metric; a test keeps it in step with
//! [`Metrics::describe`].

use std::time::Duration;

use crate::events::{CacheRead, FrameKind, ProviderErrorKind, Refusal, Stage};
use crate::exposition::{encode_openmetrics, Exposition};
use streamforge_model::{GapReason, GapStatus};

use prometheus::{
    core::Collector, CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for latencies from microseconds to tens of seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for batch sizes in rows.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
];

/// The registry and every metric in it. Cheap to clone: one shared
/// allocation (every request's handler state holds a clone).
#[derive(Clone)]
pub struct Metrics(std::sync::Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;
    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

/// The handles behind [`Metrics`].
#[doc(hidden)]
pub struct MetricSet {
    registry: Registry,
    provider_ticks: IntCounterVec,
    rejected_ticks: IntCounterVec,
    bus_published_messages: IntCounterVec,
    bus_published_bytes: IntCounterVec,
    bus_consumed_messages: IntCounterVec,
    bus_dlq_messages: IntCounterVec,
    store_batches: IntCounter,
    store_rows_written: IntCounter,
    store_rows_deduplicated: IntCounter,
    store_write_errors: IntCounter,
    store_batch_rows: Histogram,
    store_write_duration: Histogram,
    cache_updates: IntCounter,
    cache_errors: IntCounter,
    ingest_to_stored: Histogram,
    api_requests: IntCounterVec,
    api_request_duration: HistogramVec,
    stream_clients: IntGauge,
    api_connections: IntGauge,
    stream_lagged_batches: IntCounter,
    stream_slow_disconnects: IntCounter,
    api_refused: IntCounterVec,
    api_auth_failures: IntCounterVec,
    api_rate_limited: IntCounterVec,
    bus_tail_skipped_messages: IntCounter,
    persist_paused: IntGauge,
    persist_pauses: IntCounter,
    provider_connections: IntGaugeVec,
    provider_reconnects: IntCounterVec,
    provider_frames: IntCounterVec,
    provider_errors: IntCounterVec,
    provider_gaps: IntCounterVec,
    provider_gap_heals: IntCounterVec,
    provider_backfilled_ticks: IntCounterVec,
    ledger_trades: IntCounterVec,
    ledger_tallies: IntCounterVec,
    provider_gap_seconds: CounterVec,
    provider_symbol_last_trade: GaugeVec,
    bus_consumer_lag: IntGaugeVec,
    bus_publish_errors: IntCounterVec,
    bus_publish_duration: HistogramVec,
    bus_consumed_bytes: IntCounterVec,
    cache_reads: IntCounterVec,
    exchange_to_ingested: Histogram,
    ingested_to_cached: Histogram,
    store_gaps_written: IntCounter,
    bus_commit_errors: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric, plus process metrics on Linux.
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }
        let api_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "streamforge_api_request_duration_seconds",
                "HTTP request duration by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        r.register(Box::new(api_request_duration.clone()))
            .expect("unique metric");
        let stream_clients = IntGauge::new(
            "streamforge_api_stream_clients",
            "Live-stream clients connected now.",
        )
        .expect("valid metric");
        r.register(Box::new(stream_clients.clone()))
            .expect("unique metric");
        let api_connections = IntGauge::new(
            "streamforge_api_connections",
            "HTTP connections open now (at most http.max_connections).",
        )
        .expect("valid metric");
        r.register(Box::new(api_connections.clone()))
            .expect("unique metric");
        let provider_connections = IntGaugeVec::new(
            Opts::new(
                "streamforge_provider_connections",
                "Provider connections up now (connected and subscribed).",
            ),
            &["provider"],
        )
        .expect("valid metric");
        r.register(Box::new(provider_connections.clone()))
            .expect("unique metric");
        let provider_gap_seconds = CounterVec::new(
            Opts::new(
                "streamforge_provider_gap_seconds_total",
                "Seconds of feed outage recorded as gaps, by provider.",
            ),
            &["provider"],
        )
        .expect("valid metric");
        r.register(Box::new(provider_gap_seconds.clone()))
            .expect("unique metric");
        let provider_symbol_last_trade = GaugeVec::new(
            Opts::new(
                "streamforge_provider_symbol_last_trade_timestamp_seconds",
                "When a provider last received a trade of a symbol (Unix seconds); time() minus this is the symbol's silence.",
            ),
            &["provider", "symbol"],
        )
        .expect("valid metric");
        r.register(Box::new(provider_symbol_last_trade.clone()))
            .expect("unique metric");
        let bus_consumer_lag = IntGaugeVec::new(
            Opts::new(
                "streamforge_bus_consumer_lag",
                "Messages in a partition not yet consumed by this process's durable group (high watermark minus position).",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        r.register(Box::new(bus_consumer_lag.clone()))
            .expect("unique metric");
        let bus_publish_duration = HistogramVec::new(
            HistogramOpts::new(
                "streamforge_bus_publish_duration_seconds",
                "Time from publishing a batch to the bus until it held (acknowledged) every message, by topic.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["topic"],
        )
        .expect("valid metric");
        r.register(Box::new(bus_publish_duration.clone()))
            .expect("unique metric");
        let persist_paused = IntGauge::new(
            "streamforge_persist_paused",
            "1 while persist holds its consumer paused because the store does not keep up or is down.",
        )
        .expect("valid metric");
        r.register(Box::new(persist_paused.clone()))
            .expect("unique metric");
        Metrics(std::sync::Arc::new(MetricSet {
            provider_ticks: counter_vec(
                &r,
                "streamforge_provider_ticks_total",
                "Valid ticks produced by providers.",
                &["provider"],
            ),
            rejected_ticks: counter_vec(
                &r,
                "streamforge_pipeline_rejected_ticks_total",
                "Ticks or messages rejected, by stage and reason; each goes to the dead-letter topic.",
                &["stage", "reason"],
            ),
            bus_published_messages: counter_vec(
                &r,
                "streamforge_bus_published_messages_total",
                "Messages published to the bus, by topic.",
                &["topic"],
            ),
            bus_published_bytes: counter_vec(
                &r,
                "streamforge_bus_published_bytes_total",
                "Payload bytes published to the bus, by topic.",
                &["topic"],
            ),
            bus_consumed_messages: counter_vec(
                &r,
                "streamforge_bus_consumed_messages_total",
                "Messages consumed from the bus, by topic.",
                &["topic"],
            ),
            bus_dlq_messages: counter_vec(
                &r,
                "streamforge_bus_dlq_messages_total",
                "Messages written to the dead-letter topic, by reason.",
                &["reason"],
            ),
            store_batches: counter(
                &r,
                "streamforge_store_batches_total",
                "Batches committed to the tick store.",
            ),
            store_rows_written: counter(
                &r,
                "streamforge_store_rows_written_total",
                "Tick rows inserted into the store (new ticks).",
            ),
            store_rows_deduplicated: counter(
                &r,
                "streamforge_store_rows_deduplicated_total",
                "Ticks already in the store when written again (redeliveries).",
            ),
            store_write_errors: counter(
                &r,
                "streamforge_store_write_errors_total",
                "Failed batch writes to the tick store.",
            ),
            store_batch_rows: histogram(
                &r,
                "streamforge_store_batch_rows",
                "Rows per batch written to the tick store.",
                BATCH_BUCKETS,
            ),
            store_write_duration: histogram(
                &r,
                "streamforge_store_write_duration_seconds",
                "Time to write and commit one batch to the tick store.",
                LATENCY_BUCKETS,
            ),
            cache_updates: counter(
                &r,
                "streamforge_cache_updates_total",
                "Latest-quote entries replaced with newer ticks.",
            ),
            cache_errors: counter(
                &r,
                "streamforge_cache_errors_total",
                "Failed cache updates.",
            ),
            ingest_to_stored: histogram(
                &r,
                "streamforge_pipeline_ingest_to_stored_seconds",
                "Time from a tick's arrival in StreamForge to the commit of its store batch.",
                LATENCY_BUCKETS,
            ),
            api_requests: counter_vec(
                &r,
                "streamforge_api_requests_total",
                "HTTP requests by route and status code.",
                &["route", "status"],
            ),
            api_request_duration,
            stream_clients,
            api_connections,
            stream_lagged_batches: counter(
                &r,
                "streamforge_api_stream_lagged_batches_total",
                "Live tick batches that slow stream clients missed.",
            ),
            stream_slow_disconnects: counter(
                &r,
                "streamforge_api_stream_slow_disconnects_total",
                "WebSocket clients disconnected because they could not keep up.",
            ),
            api_refused: counter_vec(
                &r,
                "streamforge_api_refused_total",
                "Connections, requests and streams refused or cut by a server limit, by limit.",
                &["limit"],
            ),
            api_auth_failures: counter_vec(
                &r,
                "streamforge_api_auth_failures_total",
                "Requests refused for want of a valid API key or scope, by reason.",
                &["reason"],
            ),
            api_rate_limited: counter_vec(
                &r,
                "streamforge_api_rate_limited_total",
                "Requests answered 429 for being over their rate, by key id (anonymous callers: anonymous).",
                &["key"],
            ),
            bus_tail_skipped_messages: counter(
                &r,
                "streamforge_bus_tail_skipped_messages_total",
                "Messages the live-stream tail of the bus skipped because it fell behind.",
            ),
            provider_connections,
            provider_gap_seconds,
            provider_symbol_last_trade,
            bus_consumer_lag,
            bus_publish_duration,
            bus_publish_errors: counter_vec(
                &r,
                "streamforge_bus_publish_errors_total",
                "Batches the bus did not take (not acknowledged in time, broker down), by topic.",
                &["topic"],
            ),
            bus_consumed_bytes: counter_vec(
                &r,
                "streamforge_bus_consumed_bytes_total",
                "Payload bytes consumed from the bus by persist, by topic.",
                &["topic"],
            ),
            cache_reads: counter_vec(
                &r,
                "streamforge_cache_reads_total",
                "Latest-quote reads from the cache by result (hit, miss, error).",
                &["result"],
            ),
            exchange_to_ingested: histogram(
                &r,
                "streamforge_pipeline_exchange_to_ingested_seconds",
                "Time from a trade's exchange time to its arrival in StreamForge (negative clock skew counts as 0).",
                LATENCY_BUCKETS,
            ),
            ingested_to_cached: histogram(
                &r,
                "streamforge_pipeline_ingested_to_cached_seconds",
                "Time from a tick's arrival in StreamForge to the cache update of its batch.",
                LATENCY_BUCKETS,
            ),
            provider_reconnects: counter_vec(
                &r,
                "streamforge_provider_reconnects_total",
                "Connection attempts after the first, by provider.",
                &["provider"],
            ),
            provider_frames: counter_vec(
                &r,
                "streamforge_provider_frames_total",
                "Messages received from providers, by kind (trade, ping, control: subscription replies, heartbeats and shutdown notices, error, malformed).",
                &["provider", "kind"],
            ),
            provider_errors: counter_vec(
                &r,
                "streamforge_provider_errors_total",
                "Provider failures by kind (connect, unauthorized, silent, too_many_symbols, invalid_symbol, server_error, frame_too_large, rate_limited, history).",
                &["provider", "kind"],
            ),
            provider_gaps: counter_vec(
                &r,
                "streamforge_provider_gaps_total",
                "Feed outages recorded as gaps, by provider and reason (disconnected, silent, sequence: a jump in the venue's trade ids, downtime: the process was stopped, bus_unavailable: ingest could not publish).",
                &["provider", "reason"],
            ),
            provider_gap_heals: counter_vec(
                &r,
                "streamforge_provider_gap_heals_total",
                "Gaps whose healing from the venue's trade history ended, by provider and result (healed, unrecoverable).",
                &["provider", "result"],
            ),
            provider_backfilled_ticks: counter_vec(
                &r,
                "streamforge_provider_backfilled_ticks_total",
                "Trades taken from venues' trade histories to fill gaps, by provider.",
                &["provider"],
            ),
            ledger_trades: counter_vec(
                &r,
                "streamforge_ledger_trades_total",
                "Trades in the completeness ledger's counts from ingest, as persist wrote them with the ticks, by provider and count (received: from the feed or the history, rejected: to the dead-letter topic, duplicates: sent by the provider before).",
                &["provider", "count"],
            ),
            ledger_tallies: counter_vec(
                &r,
                "streamforge_ledger_tallies_published_total",
                "Completeness-ledger tallies ingest published with the ticks (one per provider, symbol and minute of each publish), by provider.",
                &["provider"],
            ),
            bus_commit_errors: counter(
                &r,
                "streamforge_bus_commit_errors_total",
                "Offset commits the bus refused or failed (a rebalance moved the partitions, the broker was down); the next commit covers them, or the partitions' new owner receives the messages again.",
            ),
            store_gaps_written: counter(
                &r,
                "streamforge_store_gaps_written_total",
                "Gap records written to the store (one per symbol and outage).",
            ),
            persist_paused,
            persist_pauses: counter(
                &r,
                "streamforge_persist_pauses_total",
                "Times persist paused consumption while the store was down or behind.",
            ),
            registry: r,
        }))
    }

    /// Every metric in `format` (see [`Exposition::negotiate`]). Labelled
    /// metrics with no series yet are listed by their `# HELP` and `# TYPE`
    /// lines, so a scrape shows every metric the process can export.
    pub fn render_as(&self, format: Exposition) -> String {
        let mut families = self.registry.gather();
        let present: std::collections::HashSet<String> =
            families.iter().map(|f| f.name().to_string()).collect();
        let unobserved: Vec<_> = self
            .unobserved_families()
            .into_iter()
            .filter(|f| !present.contains(f.name()))
            .collect();
        match format {
            Exposition::Prometheus => {
                let mut buf = Vec::new();
                TextEncoder::new()
                    .encode(&families, &mut buf)
                    .expect("text encoding into a Vec");
                let mut text = String::from_utf8(buf).unwrap_or_default();
                for f in &unobserved {
                    let kind = format!("{:?}", f.get_field_type()).to_lowercase();
                    let help = f.help().replace('\\', "\\\\").replace('\n', "\\n");
                    text.push_str(&format!(
                        "# HELP {} {help}\n# TYPE {} {kind}\n",
                        f.name(),
                        f.name()
                    ));
                }
                text
            }
            Exposition::OpenMetrics => {
                families.extend(unobserved);
                families.sort_by(|a, b| a.name().cmp(b.name()));
                encode_openmetrics(&families)
            }
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.render_as(Exposition::Prometheus)
    }

    /// Name, type and help of every StreamForge metric (process metrics excluded).
    pub fn describe(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = self
            .registry
            .gather()
            .into_iter()
            .chain(self.unobserved_families())
            .filter(|f| f.name().starts_with("streamforge_"))
            .map(|f| {
                (
                    f.name().to_string(),
                    format!("{:?}", f.get_field_type()).to_lowercase(),
                    f.help().to_string(),
                )
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Label vectors without children do not show in `gather`; describe them too.
    fn unobserved_families(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::proto::MetricType::{COUNTER, GAUGE, HISTOGRAM};
        let vecs: [(&dyn Collector, prometheus::proto::MetricType); 27] = [
            (&self.api_refused, COUNTER),
            (&self.api_rate_limited, COUNTER),
            (&self.api_auth_failures, COUNTER),
            (&self.bus_publish_errors, COUNTER),
            (&self.bus_publish_duration, HISTOGRAM),
            (&self.bus_consumed_bytes, COUNTER),
            (&self.cache_reads, COUNTER),
            (&self.bus_consumer_lag, GAUGE),
            (&self.provider_symbol_last_trade, GAUGE),
            (&self.provider_ticks, COUNTER),
            (&self.rejected_ticks, COUNTER),
            (&self.bus_published_messages, COUNTER),
            (&self.bus_published_bytes, COUNTER),
            (&self.bus_consumed_messages, COUNTER),
            (&self.bus_dlq_messages, COUNTER),
            (&self.api_requests, COUNTER),
            (&self.api_request_duration, HISTOGRAM),
            (&self.provider_connections, GAUGE),
            (&self.provider_reconnects, COUNTER),
            (&self.provider_frames, COUNTER),
            (&self.provider_errors, COUNTER),
            (&self.provider_gaps, COUNTER),
            (&self.provider_gap_heals, COUNTER),
            (&self.provider_backfilled_ticks, COUNTER),
            (&self.ledger_trades, COUNTER),
            (&self.ledger_tallies, COUNTER),
            (&self.provider_gap_seconds, COUNTER),
        ];
        let mut out = Vec::new();
        for (c, kind) in vecs {
            for d in c.desc() {
                let mut f = prometheus::proto::MetricFamily::default();
                f.set_name(d.fq_name.clone());
                f.set_help(d.help.clone());
                f.set_field_type(kind);
                out.push(f);
            }
        }
        out
    }

    /// The pipeline's figures now, read from the metrics (not their text).
    pub fn snapshot(&self) -> crate::stats::PipelineStats {
        use crate::stats::{by_label, histogram, label, series, Labels, ProviderStats, StoreStats};
        let mut providers: std::collections::BTreeMap<String, ProviderStats> = Default::default();
        type Add<'a> = &'a dyn Fn(&mut ProviderStats, &Labels, f64);
        let mut add = |c: &dyn prometheus::core::Collector, f: Add| {
            for (labels, v) in series(c) {
                let p = providers
                    .entry(label(&labels, "provider").to_string())
                    .or_default();
                f(p, &labels, v);
            }
        };
        add(&self.provider_ticks, &|p, _, v| p.ticks += v as u64);
        add(&self.provider_connections, &|p, _, v| {
            p.connections += v as i64
        });
        add(&self.provider_reconnects, &|p, _, v| {
            p.reconnects += v as u64
        });
        add(&self.provider_gaps, &|p, l, v| {
            *p.gaps.entry(label(l, "reason").to_string()).or_default() += v as u64
        });
        add(&self.provider_gap_heals, &|p, l, v| {
            *p.heals.entry(label(l, "result").to_string()).or_default() += v as u64
        });
        add(&self.provider_backfilled_ticks, &|p, _, v| {
            p.backfilled += v as u64
        });
        add(&self.ledger_tallies, &|p, _, v| {
            p.ledger.tallies += v as u64
        });
        add(&self.ledger_trades, &|p, l, v| match label(l, "count") {
            "received" => p.ledger.received += v as u64,
            "rejected" => p.ledger.rejected += v as u64,
            _ => p.ledger.duplicates += v as u64,
        });
        add(&self.provider_frames, &|p, l, v| {
            *p.frames.entry(label(l, "kind").to_string()).or_default() += v as u64
        });
        add(&self.provider_errors, &|p, l, v| {
            *p.errors.entry(label(l, "kind").to_string()).or_default() += v as u64
        });
        let mut consumer_lag = std::collections::BTreeMap::new();
        for (labels, v) in series(&self.bus_consumer_lag) {
            *consumer_lag
                .entry(label(&labels, "topic").to_string())
                .or_insert(0i64) += v as i64;
        }
        crate::stats::PipelineStats {
            providers,
            rejected: by_label(&self.rejected_ticks, &["stage", "reason"]),
            published: by_label(&self.bus_published_messages, &["topic"]),
            consumed: by_label(&self.bus_consumed_messages, &["topic"]),
            dead_letters: by_label(&self.bus_dlq_messages, &["reason"]),
            consumer_lag,
            store: StoreStats {
                batches: self.store_batches.get(),
                rows_written: self.store_rows_written.get(),
                rows_deduplicated: self.store_rows_deduplicated.get(),
                write_errors: self.store_write_errors.get(),
                gaps_written: self.store_gaps_written.get(),
            },
            cache_updates: self.cache_updates.get(),
            cache_errors: self.cache_errors.get(),
            ingest_to_stored: histogram(&self.ingest_to_stored),
            stream_clients: self.stream_clients.get(),
            http_connections: self.api_connections.get(),
            persist_paused: self.persist_paused.get() != 0,
            persist_pauses: self.persist_pauses.get(),
            publish_errors: by_label(&self.bus_publish_errors, &["topic"]),
            refused: by_label(&self.api_refused, &["limit"]),
            auth_failures: by_label(&self.api_auth_failures, &["reason"]),
            rate_limited: by_label(&self.api_rate_limited, &["key"]),
        }
    }

    // ---- named events ----

    /// A provider emitted a frame's worth of valid ticks.
    pub fn provider_ticks(&self, provider: &str, ticks: usize) {
        self.provider_ticks
            .with_label_values(&[provider])
            .inc_by(ticks as u64);
    }

    /// Ticks were rejected at `stage` for `reason` and sent to the dead-letter topic.
    pub fn ticks_rejected(&self, stage: Stage, reason: &str, count: usize) {
        self.rejected_ticks
            .with_label_values(&[stage.as_str(), reason])
            .inc_by(count as u64);
        self.bus_dlq_messages
            .with_label_values(&[reason])
            .inc_by(count as u64);
    }

    /// A batch was accepted by the bus.
    pub fn bus_published(&self, topic: &str, messages: usize, bytes: usize) {
        self.bus_published_messages
            .with_label_values(&[topic])
            .inc_by(messages as u64);
        self.bus_published_bytes
            .with_label_values(&[topic])
            .inc_by(bytes as u64);
    }

    /// A batch was received from the bus.
    pub fn bus_consumed(&self, topic: &str, messages: usize, bytes: usize) {
        self.bus_consumed_messages
            .with_label_values(&[topic])
            .inc_by(messages as u64);
        self.bus_consumed_bytes
            .with_label_values(&[topic])
            .inc_by(bytes as u64);
    }

    /// A publish to `topic` was acknowledged after `duration`.
    pub fn bus_publish_took(&self, topic: &str, duration: Duration) {
        self.bus_publish_duration
            .with_label_values(&[topic])
            .observe(duration.as_secs_f64());
    }

    /// An offset commit failed (the caller reports the error).
    pub fn bus_commit_failed(&self) {
        self.bus_commit_errors.inc();
    }

    /// A publish to `topic` failed (the caller reports the error).
    pub fn bus_publish_failed(&self, topic: &str) {
        self.bus_publish_errors.with_label_values(&[topic]).inc();
    }

    /// Seconds from exchange time to arrival, one per tick of a frame.
    pub fn exchange_to_ingested(&self, seconds: impl Iterator<Item = f64>) {
        let local = self.exchange_to_ingested.local();
        for s in seconds {
            local.observe(s.max(0.0));
        }
    }

    /// Seconds from arrival to the cache update, one per tick of a batch.
    pub fn ingested_to_cached(&self, seconds: impl Iterator<Item = f64>) {
        let local = self.ingested_to_cached.local();
        for s in seconds {
            local.observe(s.max(0.0));
        }
    }

    /// A latest-quote read from the cache.
    pub fn cache_read(&self, result: CacheRead) {
        self.cache_reads.with_label_values(&[result.as_str()]).inc();
    }

    /// A batch was committed to the store. `latencies` are the seconds from
    /// ingest to commit of each tick in it.
    pub fn batch_stored(
        &self,
        rows: usize,
        inserted: usize,
        duration: Duration,
        latencies: impl Iterator<Item = f64>,
    ) {
        self.store_batches.inc();
        self.store_rows_written.inc_by(inserted as u64);
        self.store_rows_deduplicated
            .inc_by(rows.saturating_sub(inserted) as u64);
        self.store_batch_rows.observe(rows as f64);
        self.store_write_duration.observe(duration.as_secs_f64());
        let local = self.ingest_to_stored.local();
        for l in latencies {
            local.observe(l);
        }
        local.flush();
        tracing::debug!(
            rows,
            inserted,
            ms = duration.as_secs_f64() * 1e3,
            "batch stored"
        );
    }

    /// A store write failed (the persist stage's event logs it).
    pub fn store_write_failed(&self) {
        self.store_write_errors.inc();
    }

    /// Latest quotes were replaced by newer ticks.
    pub fn cache_updated(&self, entries: usize) {
        self.cache_updates.inc_by(entries as u64);
    }

    /// A cache update failed (the persist stage's event logs it).
    pub fn cache_failed(&self) {
        self.cache_errors.inc();
    }

    /// An HTTP request finished.
    pub fn api_request(&self, route: &str, status: u16, duration: Duration) {
        self.api_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.api_request_duration
            .with_label_values(&[route])
            .observe(duration.as_secs_f64());
    }

    /// An HTTP connection was accepted (+1) or ended (-1).
    pub fn api_connection(&self, delta: i64) {
        self.api_connections.add(delta);
    }

    /// A live-stream client connected (+1) or left (-1).
    pub fn stream_client(&self, delta: i64) {
        self.stream_clients.add(delta);
    }

    /// A WebSocket client was disconnected for being too slow.
    pub fn stream_slow_disconnect(&self) {
        self.stream_slow_disconnects.inc();
    }

    /// A request was refused: `missing_key`, `invalid_key` or `missing_scope`.
    pub fn auth_failed(&self, reason: &'static str) {
        self.api_auth_failures.with_label_values(&[reason]).inc();
    }

    /// A request was over the rate of its key (`anonymous`: of its address).
    pub fn rate_limited(&self, key: &str) {
        self.api_rate_limited.with_label_values(&[key]).inc();
    }

    /// A server limit refused or cut a client.
    pub fn http_refused(&self, limit: Refusal) {
        self.api_refused.with_label_values(&[limit.as_str()]).inc();
    }

    /// A slow live-stream client missed `n` batches.
    pub fn stream_lagged(&self, n: u64) {
        self.stream_lagged_batches.inc_by(n);
    }

    /// A provider connection came up (`true`) or went down (`false`).
    pub fn provider_connected(&self, provider: &str, up: bool) {
        let g = self.provider_connections.with_label_values(&[provider]);
        if up {
            g.inc();
        } else {
            g.dec();
        }
    }

    /// A provider tries to connect again.
    pub fn provider_reconnect(&self, provider: &str) {
        self.provider_reconnects
            .with_label_values(&[provider])
            .inc();
    }

    /// A provider received a message of `kind`.
    pub fn provider_frame(&self, provider: &str, kind: FrameKind) {
        self.provider_frames
            .with_label_values(&[provider, kind.as_str()])
            .inc();
    }

    /// A provider failed in a way of `kind` (the provider's event logs it).
    pub fn provider_error(&self, provider: &str, kind: ProviderErrorKind) {
        self.provider_errors
            .with_label_values(&[provider, kind.as_str()])
            .inc();
    }

    /// The durable consumer of `topic` is `lag` messages behind in `partition`.
    pub fn bus_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.bus_consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// A provider received a trade of `symbol` at `at` (Unix seconds).
    /// Label values are the provider's configured symbols (a fixed set).
    pub fn provider_symbol_trade(&self, provider: &str, symbol: &str, at: f64) {
        self.provider_symbol_last_trade
            .with_label_values(&[provider, symbol])
            .set(at);
    }

    /// A provider recorded an outage of `seconds`.
    pub fn provider_gap(&self, provider: &str, reason: GapReason, seconds: f64) {
        self.provider_gaps
            .with_label_values(&[provider, reason.as_str()])
            .inc();
        self.provider_gap_seconds
            .with_label_values(&[provider])
            .inc_by(seconds.max(0.0));
    }

    /// Healing a gap from `provider`'s trade history ended as `result`
    /// (healed or unrecoverable).
    pub fn provider_gap_healed(&self, provider: &str, result: GapStatus) {
        self.provider_gap_heals
            .with_label_values(&[provider, result.as_str()])
            .inc();
    }

    /// `n` trades were taken from `provider`'s trade history.
    pub fn provider_backfilled(&self, provider: &str, n: usize) {
        self.provider_backfilled_ticks
            .with_label_values(&[provider])
            .inc_by(n as u64);
    }

    /// Ingest published a ledger tally of `provider`.
    pub fn ledger_tally_published(&self, provider: &str) {
        self.ledger_tallies.with_label_values(&[provider]).inc();
    }

    /// Persist wrote ingest's ledger `tallies` with their ticks.
    pub fn ledger_written(&self, tallies: &[streamforge_model::Tally]) {
        for t in tallies {
            for (count, n) in [
                ("received", t.received),
                ("rejected", t.rejected),
                ("duplicates", t.duplicates),
            ] {
                if n > 0 {
                    self.ledger_trades
                        .with_label_values(&[t.provider.as_str(), count])
                        .inc_by(n);
                }
            }
        }
    }

    /// Persist stored `n` gap records.
    pub fn gaps_stored(&self, n: usize) {
        self.store_gaps_written.inc_by(n as u64);
    }

    /// Persist paused (`true`) or resumed (`false`) consumption.
    pub fn persist_paused(&self, paused: bool) {
        self.persist_paused.set(i64::from(paused));
        if paused {
            self.persist_pauses.inc();
        }
    }

    /// The live tail of the bus fell behind and skipped `n` messages.
    pub fn tail_skipped(&self, n: u64) {
        self.bus_tail_skipped_messages.inc_by(n);
        tracing::debug!(missed = n, "live tail fell behind the bus");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_events() {
        let m = Metrics::new();
        m.provider_ticks("synthetic", 5);
        m.batch_stored(10, 8, Duration::from_millis(3), [0.001, 0.002].into_iter());
        let text = m.render();
        assert!(
            text.contains("streamforge_provider_ticks_total{provider=\"synthetic\"} 5"),
            "{text}"
        );
        assert!(text.contains("streamforge_store_rows_written_total 8"));
        assert!(text.contains("streamforge_store_rows_deduplicated_total 2"));
        assert!(text.contains("streamforge_pipeline_ingest_to_stored_seconds_count 2"));
    }

    #[test]
    fn describes_metrics_even_before_they_are_observed() {
        let names: Vec<String> = Metrics::new().describe().into_iter().map(|d| d.0).collect();
        assert!(names.contains(&"streamforge_bus_dlq_messages_total".to_string()));
        assert!(names.contains(&"streamforge_api_request_duration_seconds".to_string()));
        assert!(names.contains(&"streamforge_store_batches_total".to_string()));
    }
}
