//! The ingest stage: provider frames → validated ticks on the bus.
//!
//! Reads frames from the providers' bounded channel, encodes each tick in
//! the wire form keyed by symbol, and publishes them to the ticks topic;
//! rejected input goes to the dead-letter topic with its reason. Returns
//! when every provider has stopped and its last frame is published.
//!
//! When the bus does not take a publish (the broker is down past the
//! delivery timeout), ingest holds the undelivered messages and retries
//! them, taking no new frames meanwhile (the providers' bounded channel
//! fills and they wait), and afterwards records the time it could not
//! publish as a gap of every symbol it has served.
//!
//! It also keeps ingest's side of the completeness ledger: per provider,
//! symbol and minute, the trades received, rejected and duplicated since
//! the last publish, sent as tallies in the same publish as the ticks they
//! count (see [`streamforge_model::ledger`]).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streamforge_bus::message::headers;
use streamforge_bus::{Bus, Headers, Message};
use streamforge_model::ledger::minute_of;
use streamforge_model::settings::{at_least_one, duration_text, longer_than_zero, Invalid};
use streamforge_model::tick::{MAX_TICK_TIME, MIN_TICK_TIME};
use streamforge_model::{
    wire, Gap, GapReason, Symbol, Tally, TickRules, Timestamp, GAP_CONTENT_TYPE, TALLY_CONTENT_TYPE,
};
use streamforge_providers::{ProviderFrame, Rejected};
use streamforge_telemetry::events::Stage;
use streamforge_telemetry::{traces, Event, Health, Metrics};
use tracing::Instrument;

use super::events::DeadLettered;
use super::{dead_letter, publish_retrying};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames coalesced into one publish when they queue up.
const MAX_FRAMES_PER_PUBLISH: usize = 32;

/// Settings of the ingest stage: the `[ingest]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Topic for valid ticks.
    pub topic: String,
    /// Topic for rejected input, with the reason in headers.
    pub dlq_topic: String,
    /// How far ahead of the clock an event time may be (`--max-future-skew`).
    #[serde(with = "duration_text")]
    pub max_future_skew: Duration,
    /// Prices must be above 0 and below this (bounds every computation on them).
    pub max_price: f64,
    /// Sizes must be below this.
    pub max_size: f64,
    /// Most distinct symbols ingest serves (per-symbol state is bounded by
    /// it when a provider's universe is open, e.g. a recording); ticks and
    /// gaps of further symbols go to the dead-letter topic
    /// (`too_many_symbols`).
    pub max_symbols: usize,
    /// Frames buffered between providers and the bus.
    pub channel_frames: usize,
    /// A feed silent for longer than this makes `/readyz` fail (a provider
    /// with keep-alives sets its own).
    #[serde(with = "duration_text")]
    pub max_feed_silence: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            topic: "ticks".into(),
            dlq_topic: "ticks.dlq".into(),
            max_future_skew: Duration::from_secs(300),
            max_price: streamforge_model::tick::DEFAULT_MAX_PRICE,
            max_size: streamforge_model::tick::DEFAULT_MAX_SIZE,
            max_symbols: 10_000,
            channel_frames: 64,
            max_feed_silence: Duration::from_secs(30),
        }
    }
}

impl IngestConfig {
    /// The validation rules every stage applies to ticks.
    pub fn tick_rules(&self) -> TickRules {
        TickRules {
            max_future_skew: self.max_future_skew,
            max_price: self.max_price,
            max_size: self.max_size,
        }
    }

    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.topic.is_empty() || self.topic == self.dlq_topic {
            return Err(Invalid::new(
                "topic",
                "must be non-empty and differ from ingest.dlq_topic",
            ));
        }
        if self.dlq_topic.is_empty() {
            return Err(Invalid::new("dlq_topic", "must be non-empty"));
        }
        for (field, value) in [("max_price", self.max_price), ("max_size", self.max_size)] {
            if !(value.is_finite() && value > 0.0 && value <= 1e15) {
                return Err(Invalid::new(
                    field,
                    format!("must be a number above 0 and at most 1e15, got {value}"),
                ));
            }
        }
        at_least_one(&[
            ("max_symbols", self.max_symbols),
            ("channel_frames", self.channel_frames),
        ])?;
        longer_than_zero(&[("max_feed_silence", self.max_feed_silence)])
    }
}

/// Everything the stage needs.
pub struct Ingest {
    pub bus: std::sync::Arc<dyn Bus>,
    /// Its topics and the most distinct symbols it serves.
    pub config: IngestConfig,
    pub metrics: Metrics,
    pub health: Health,
    /// Publish retries give up once this fires.
    pub shutdown: CancellationToken,
}

/// Per symbol served so far: its message key (allocated once) and the
/// provider that first sent it.
type Served = HashMap<Symbol, (Bytes, &'static str)>;

/// Ingest's counts for the completeness ledger since the last publish,
/// per provider, symbol and minute.
struct Ledger {
    /// This process's producer id (random per start) and its last tally's
    /// sequence number.
    producer: String,
    seq: u64,
    counts: HashMap<(&'static str, Symbol, Timestamp), Counts>,
}

#[derive(Default)]
struct Counts {
    received: u64,
    rejected: u64,
    duplicates: u64,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            producer: format!("{:016x}", rand::random::<u64>()),
            seq: 0,
            counts: HashMap::new(),
        }
    }

    /// The counts of `symbol`'s minute of `ts` (of `now` when `ts` is not
    /// a time a tick may have: a rejected trade's).
    fn at(
        &mut self,
        provider: &'static str,
        symbol: &Symbol,
        ts: Timestamp,
        now: Timestamp,
    ) -> &mut Counts {
        let ts = if (MIN_TICK_TIME..=MAX_TICK_TIME).contains(&ts) {
            ts
        } else {
            now
        };
        self.counts
            .entry((provider, symbol.clone(), minute_of(ts)))
            .or_default()
    }

    /// The tallies since the last publish, appended to it, keyed like the
    /// symbol's ticks (same partition, after them).
    fn drain_into(&mut self, served: &Served, batch: &mut Vec<Message>, metrics: &Metrics) {
        for ((provider, symbol, minute), c) in self.counts.drain() {
            let Some((key, _)) = served.get(&symbol) else {
                continue;
            };
            self.seq += 1;
            metrics.ledger_tally_published(provider);
            let tally = Tally {
                provider: provider.to_string(),
                symbol,
                minute,
                producer: self.producer.clone(),
                seq: self.seq,
                received: c.received,
                rejected: c.rejected,
                duplicates: c.duplicates,
            };
            let mut h = Headers::with_capacity(3);
            h.insert(
                headers::CONTENT_TYPE,
                Bytes::from_static(TALLY_CONTENT_TYPE.as_bytes()),
            );
            h.insert(
                headers::SCHEMA_VERSION,
                Bytes::from_static(wire::SCHEMA_VERSION.as_bytes()),
            );
            h.insert(headers::SRC_ID, Bytes::from_static(provider.as_bytes()));
            batch.push(Message {
                key: key.clone(),
                payload: tally.encode().into(),
                headers: h,
            });
        }
    }
}

impl Ingest {
    pub async fn run(self, mut frames: mpsc::Receiver<ProviderFrame>) -> anyhow::Result<()> {
        let mut keys: Served = HashMap::new();
        let mut ledger = Ledger::new();
        let mut batch: Vec<Message> = Vec::new();
        let mut dead: Vec<Message> = Vec::new();
        let mut spans: Vec<tracing::Span> = Vec::new();
        while let Some(first) = frames.recv().await {
            let mut frame = Some(first);
            while let Some(f) = frame.take() {
                spans.push(self.add_frame(f, &mut keys, &mut ledger, &mut batch, &mut dead));
                if spans.len() < MAX_FRAMES_PER_PUBLISH {
                    frame = frames.try_recv().ok();
                }
            }
            // One publish for the frames that queued up: a child of the
            // first frame's span, following from the others.
            let publish = tracing::info_span!(
                parent: &spans[0],
                "bus.publish",
                topic = %self.config.topic,
                frames = spans.len(),
                messages = batch.len(),
            );
            for s in &spans[1..] {
                publish.follows_from(s);
            }
            ledger.drain_into(&keys, &mut batch, &self.metrics);
            self.publish(&mut batch, &mut dead, &keys)
                .instrument(publish)
                .await?;
            // The frames' spans end once their messages are on the bus.
            spans.clear();
        }
        Ok(())
    }

    /// Encodes one frame's messages; returns the frame's span, the root of
    /// its trace, which its messages carry in `traceparent`.
    fn add_frame(
        &self,
        frame: ProviderFrame,
        keys: &mut Served,
        ledger: &mut Ledger,
        batch: &mut Vec<Message>,
        dead: &mut Vec<Message>,
    ) -> tracing::Span {
        let provider = frame.provider;
        let span = tracing::info_span!(
            parent: None,
            "ingest.frame",
            provider,
            ticks = frame.ticks.len(),
            gaps = frame.gaps.len(),
            rejected = frame.rejects.len(),
        );
        let entered = span.enter();
        self.health.seen(&feed_check(provider));
        self.metrics.provider_ticks(provider, frame.ticks.len());
        // Trades from a venue's history are old by design: not a feed delay.
        self.metrics.exchange_to_ingested(
            frame
                .ticks
                .iter()
                .filter(|t| t.origin().is_live())
                .map(|t| (t.ingested_at().as_micros() - t.ts().as_micros()) as f64 / 1e6),
        );
        let src = Bytes::from_static(provider.as_bytes());
        let trace = match traces::span_traceparent(&span) {
            Some(t) => Bytes::from(t),
            None => untraced_traceparent(),
        };
        // Every message of the frame shares one set of headers per kind.
        let h = message_headers(wire::CONTENT_TYPE, &src, &trace);
        batch.reserve(frame.ticks.len() + frame.gaps.len());
        let mut refused: Vec<(Vec<u8>, &Symbol)> = Vec::new();
        let now = Timestamp::now();
        for tick in &frame.ticks {
            let mut payload = Vec::with_capacity(224);
            wire::encode_into(tick, &mut payload);
            match symbol_key(keys, tick.symbol(), provider, self.config.max_symbols) {
                Some(key) => {
                    ledger.at(provider, tick.symbol(), tick.ts(), now).received += 1;
                    batch.push(Message {
                        key,
                        payload: payload.into(),
                        headers: h.clone(),
                    })
                }
                None => refused.push((payload, tick.symbol())),
            }
        }
        for (symbol, ts) in &frame.duplicates {
            if keys.contains_key(symbol) {
                ledger.at(provider, symbol, *ts, now).duplicates += 1;
            }
        }
        for (symbol, ts) in frame.rejects.iter().filter_map(|r| r.trade.as_ref()) {
            if symbol_key(keys, symbol, provider, self.config.max_symbols).is_some() {
                let c = ledger.at(provider, symbol, *ts, now);
                c.received += 1;
                c.rejected += 1;
            }
        }
        if !frame.gaps.is_empty() {
            // Keyed by symbol: in the symbol's partition, in order with its ticks.
            let h = message_headers(GAP_CONTENT_TYPE, &src, &trace);
            for gap in &frame.gaps {
                let payload = gap.encode();
                match symbol_key(keys, &gap.symbol, provider, self.config.max_symbols) {
                    Some(key) => batch.push(Message {
                        key,
                        payload: payload.into(),
                        headers: h.clone(),
                    }),
                    None => refused.push((payload, &gap.symbol)),
                }
            }
        }
        let mut rejects = frame.rejects;
        if let Some((_, symbol)) = refused.first() {
            tracing::warn!(provider, refused = refused.len(), symbol = %symbol, max_symbols = self.config.max_symbols,
                "ticks of more symbols than ingest.max_symbols refused to the dead-letter topic");
        }
        rejects.extend(refused.into_iter().map(|(raw, symbol)| {
            Rejected::new(
                raw,
                "too_many_symbols",
                format!(
                    "symbol: {symbol} is beyond the {} distinct symbols ingest serves (ingest.max_symbols)",
                    self.config.max_symbols
                ),
            )
        }));
        // One line per frame, not per tick: the first error stands for the rest.
        let mut tally = DeadLettered::new(Stage::Ingest);
        for r in rejects {
            tally.add(r.reason, || {
                (format!("provider {provider}"), r.error.clone())
            });
            let mut h = Headers::with_capacity(8);
            h.insert(headers::SRC_ID, src.clone());
            h.insert(headers::TRACEPARENT, trace.clone());
            h.insert(headers::DLQ_STAGE, Bytes::from_static(b"ingest"));
            h.insert(headers::DLQ_REASON, Bytes::from_static(r.reason.as_bytes()));
            h.insert(headers::DLQ_ERROR, dead_letter::error(&r.error));
            let payload = dead_letter::payload(r.raw.into(), &mut h);
            dead.push(Message {
                key: Bytes::new(),
                payload,
                headers: h,
            });
        }
        tally.emit(&self.metrics);
        drop(entered);
        span
    }

    /// Publishes the batch and its dead letters, holding and retrying them
    /// while the bus is unavailable; an outage becomes gap records.
    async fn publish(
        &self,
        batch: &mut Vec<Message>,
        dead: &mut Vec<Message>,
        served: &Served,
    ) -> anyhow::Result<()> {
        let (bus, m, h, stop) = (&*self.bus, &self.metrics, &self.health, &self.shutdown);
        let ticks = std::mem::take(batch);
        let outage = publish_retrying(bus, m, h, &self.config.topic, ticks, stop).await?;
        let dead_outage = publish_retrying(
            bus,
            m,
            h,
            &self.config.dlq_topic,
            std::mem::take(dead),
            stop,
        )
        .await?;
        match outage.into_iter().chain(dead_outage).min() {
            Some(since) => self.record_outage(since, served).await,
            None => Ok(()),
        }
    }

    /// Records `[since, now)`, when the bus took nothing, as a gap of every
    /// symbol served: the providers waited meanwhile and may have missed trades.
    async fn record_outage(&self, since: Timestamp, served: &Served) -> anyhow::Result<()> {
        let to = Timestamp::now();
        let mut gaps = Vec::with_capacity(served.len());
        for (symbol, (key, provider)) in served {
            let gap = Gap {
                provider: provider.to_string(),
                connection: 0,
                symbol: symbol.clone(),
                from: since,
                to,
                reason: GapReason::BusUnavailable,
                healing: streamforge_model::Healing::default(),
            };
            self.metrics
                .provider_gap(provider, GapReason::BusUnavailable, gap.seconds());
            let src = Bytes::from_static(provider.as_bytes());
            gaps.push(Message {
                key: key.clone(),
                payload: gap.encode().into(),
                headers: message_headers(GAP_CONTENT_TYPE, &src, &untraced_traceparent()),
            });
        }
        tracing::warn!(
            from = %since,
            to = %to,
            symbols = gaps.len(),
            "recorded the time the bus was unavailable as a gap of every symbol served"
        );
        let (bus, m, h, stop) = (&*self.bus, &self.metrics, &self.health, &self.shutdown);
        publish_retrying(bus, m, h, &self.config.topic, gaps, stop).await?;
        Ok(())
    }
}

/// The headers of a frame's messages of one content type.
fn message_headers(content_type: &'static str, src: &Bytes, trace: &Bytes) -> Headers {
    let mut h = Headers::with_capacity(4);
    h.insert(
        headers::CONTENT_TYPE,
        Bytes::from_static(content_type.as_bytes()),
    );
    h.insert(
        headers::SCHEMA_VERSION,
        Bytes::from_static(wire::SCHEMA_VERSION.as_bytes()),
    );
    h.insert(headers::SRC_ID, src.clone());
    h.insert(headers::TRACEPARENT, trace.clone());
    h
}

/// The message key of `symbol`, allocated once per symbol (which also
/// remembers the symbol as served by `provider`); `None` for a new symbol
/// when `max_symbols` are served already.
fn symbol_key(
    keys: &mut Served,
    symbol: &Symbol,
    provider: &'static str,
    max_symbols: usize,
) -> Option<Bytes> {
    if let Some((k, _)) = keys.get(symbol) {
        return Some(k.clone());
    }
    if keys.len() >= max_symbols {
        return None;
    }
    let k = Bytes::copy_from_slice(symbol.as_str().as_bytes());
    keys.insert(symbol.clone(), (k.clone(), provider));
    Some(k)
}

/// A W3C `traceparent` for a frame when no tracer is installed (tools,
/// tests): every message of the frame still carries one id, so the frame
/// can be followed across processes (`00-<trace id>-<span id>-00`, not sampled).
fn untraced_traceparent() -> Bytes {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    Bytes::from(format!("00-{trace:032x}-{span:016x}-00"))
}

pub use streamforge_providers::feed_check;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use streamforge_bus::{ConsumerOptions, Polled, StartFrom};
    use streamforge_model::{TickInput, TickRules};
    use streamforge_testkit::metric;

    use super::*;

    /// A tick `lag_ms` older than its ingestion time.
    fn tick(symbol: &str, ms: i64, lag_ms: i64) -> streamforge_model::Tick {
        let ts = Timestamp::from_millis(ms);
        let at = Timestamp::from_millis(ms + lag_ms);
        TickRules::default()
            .check(
                TickInput {
                    symbol: Symbol::parse(symbol).unwrap(),
                    ts,
                    price: 10.0,
                    size: 1.0,
                    exchange: Arc::from(""),
                    src_id: Arc::from("synthetic"),
                    conditions: Vec::new(),
                    occurrence: 0,
                    tick_id: None,
                    ingested_at: at,
                    source_id: None,
                    origin: streamforge_model::tick::Origin::Live,
                },
                at,
            )
            .unwrap()
    }

    #[tokio::test]
    async fn frames_become_keyed_messages_and_latency_is_counted_in_seconds() {
        let bus = streamforge_bus::connect("memory://", &Default::default())
            .await
            .unwrap();
        let mut consumer = bus
            .consumer(
                "ticks",
                ConsumerOptions {
                    group: "t".into(),
                    start: StartFrom::Earliest,
                    durable: false,
                },
            )
            .await
            .unwrap();
        let metrics = Metrics::new();
        let ingest = Ingest {
            bus: bus.clone(),
            config: IngestConfig {
                max_symbols: 2,
                ..IngestConfig::default()
            },
            metrics: metrics.clone(),
            health: Health::new(),
            shutdown: CancellationToken::new(),
        };
        let (tx, rx) = mpsc::channel(4);
        let t0 = 1_756_325_700_000;
        tx.send(ProviderFrame {
            provider: "synthetic",
            ticks: vec![
                tick("AAPL", t0, 250),
                tick("MSFT", t0 + 1, 750),
                tick("AAPL", t0 + 2, 1_000),
                // A third symbol: over `max_symbols`, dead-lettered.
                tick("IBM", t0 + 3, 0),
            ],
            // The last AAPL trade was sent before; one MSFT trade was refused.
            duplicates: vec![(
                Symbol::parse("AAPL").unwrap(),
                Timestamp::from_millis(t0 + 2),
            )],
            rejects: vec![
                Rejected::new(b"{}".to_vec(), "invalid_price", "price: 0".into()).of(
                    Symbol::parse("MSFT").unwrap(),
                    Timestamp::from_millis(t0 + 5),
                ),
            ],
            gaps: Vec::new(),
        })
        .await
        .unwrap();
        drop(tx);
        ingest.run(rx).await.unwrap();
        let text = metrics.render();
        let series = "streamforge_pipeline_exchange_to_ingested_seconds";
        assert_eq!(metric(&text, &format!("{series}_count")), 4.0);
        assert!(
            (metric(&text, &format!("{series}_sum")) - 2.0).abs() < 1e-9,
            "0.25 + 0.75 + 1.0 + 0 seconds:\n{text}"
        );
        let got = match tokio::time::timeout(Duration::from_secs(5), consumer.recv(100))
            .await
            .unwrap()
            .unwrap()
        {
            Polled::Messages(m) => m,
            other => panic!("{other:?}"),
        };
        // The ledger's tallies follow the ticks, one per symbol and minute.
        let (got, tallies) = got.split_at(3);
        let mut tallies: Vec<Tally> = tallies
            .iter()
            .map(|d| {
                assert_eq!(
                    d.message.headers.get_str(headers::CONTENT_TYPE),
                    Some(TALLY_CONTENT_TYPE)
                );
                let t = Tally::decode(&d.message.payload).unwrap();
                assert_eq!(d.message.key.as_ref(), t.symbol.as_str().as_bytes());
                t
            })
            .collect();
        tallies.sort_by_key(|t| t.symbol.clone());
        let counts: Vec<(&str, i64, u64, u64, u64)> = tallies
            .iter()
            .map(|t| {
                (
                    t.symbol.as_str(),
                    t.minute.as_millis(),
                    t.received,
                    t.rejected,
                    t.duplicates,
                )
            })
            .collect();
        assert_eq!(counts, [("AAPL", t0, 2, 0, 1), ("MSFT", t0, 2, 1, 0)]);
        assert!(tallies.iter().all(|t| t.producer == tallies[0].producer));
        assert_ne!(tallies[0].seq, tallies[1].seq);
        let keys: Vec<&[u8]> = got.iter().map(|d| d.message.key.as_ref()).collect();
        assert_eq!(
            keys,
            [&b"AAPL"[..], b"MSFT", b"AAPL"],
            "keyed by symbol, IBM refused"
        );
        for d in got {
            assert_eq!(
                d.message.headers.get_str(headers::CONTENT_TYPE),
                Some(wire::CONTENT_TYPE)
            );
            assert_eq!(
                d.message.headers.get_str(headers::SRC_ID),
                Some("synthetic")
            );
            // One W3C trace context per frame, even with no tracer installed.
            let tp = d.message.headers.get_str(headers::TRACEPARENT).unwrap();
            let parts: Vec<&str> = tp.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [2, 32, 16, 2],
                "{tp}"
            );
            assert_ne!(parts[1], "0".repeat(32), "{tp}");
            assert_eq!(
                Some(tp),
                got[0].message.headers.get_str(headers::TRACEPARENT),
                "one frame, one trace"
            );
        }
    }
}
