//! The persist stage: bus → store → cache → commit.
//!
//! Receives from the ticks topic in a durable consumer group, fills a batch
//! by size or time, decodes it (undecodable messages go to the dead-letter
//! topic with their partition, offset and error), writes it to the store in
//! one transaction, offers it to the cache, and only then commits the
//! offsets (in order, from a task of their own, so the next write does not
//! wait for the broker's answer). A failed store write is retried with
//! backoff; nothing is committed before it succeeds. When the store refuses
//! a batch for its data (a value out of range, a constraint), the batch is
//! split in halves until the refused rows are alone: they go to the
//! dead-letter topic with the database's error, the rest is stored and the
//! offsets committed, so no single message can stop a partition.
//! Returns when the bus is closed and drained.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streamforge_bus::message::last_offsets;
use streamforge_bus::{Bus, Committer, Consumer, Delivery, Headers, Message, Offset, Polled};
use streamforge_model::settings::{duration_text, Invalid};
use streamforge_model::{
    wire, Gap, Tally, Tick, TickRules, Timestamp, GAP_CONTENT_TYPE, TALLY_CONTENT_TYPE,
};
use streamforge_store::{Cache, StoreError, TickBatch, TickStore};
use streamforge_telemetry::traces::{self, SpanContext};
use streamforge_telemetry::{Event, Health, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::events::{
    CacheUpdateFailed, DeadLettered, OffsetCommitRefused, PersistPaused, StoreWriteFailed,
};
use super::retry::Backoff;
use super::{dead_letter, publish_retrying, StoredHook};
use streamforge_bus::message::headers;
use streamforge_telemetry::events::Stage;

/// DLQ reason of records the store refused.
const STORE_REFUSED: &str = "store_refused";

/// Longest pause between store retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Settings of the persist stage: the `[persist]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistConfig {
    /// Consumer group of the persist stage.
    pub group: String,
    /// Most ticks written in one transaction (`--batch-size`).
    pub batch_size: usize,
    /// Longest wait for a batch to fill once its first tick arrived
    /// (`--batch-timeout`).
    #[serde(with = "duration_text")]
    pub batch_timeout: Duration,
    /// First pause before retrying a failed store write; doubles up to 30s.
    #[serde(with = "duration_text")]
    pub retry_backoff: Duration,
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            group: "streamforge-persist".into(),
            batch_size: 5_000,
            batch_timeout: Duration::from_millis(10),
            retry_backoff: Duration::from_millis(100),
        }
    }
}

impl PersistConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.group.is_empty() {
            return Err(Invalid::new("group", "must be non-empty"));
        }
        if self.batch_size == 0 || self.batch_size > 1_000_000 {
            return Err(Invalid::new(
                "batch_size",
                format!("must be 1 to 1000000, got {}", self.batch_size),
            ));
        }
        if self.retry_backoff.is_zero() {
            return Err(Invalid::new("retry_backoff", "must be longer than 0"));
        }
        Ok(())
    }
}

/// Everything the stage needs.
pub struct Persist {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn TickStore>,
    pub cache: Arc<dyn Cache>,
    /// Where refused ticks go (`ingest.dlq_topic`).
    pub dlq_topic: String,
    /// Batch size, wait and retry pause.
    pub config: PersistConfig,
    pub rules: TickRules,
    pub metrics: Metrics,
    pub health: Health,
    /// Fires when the pipeline shuts down: store retries give up then.
    pub shutdown: CancellationToken,
    /// Called after each committed batch (a harness's hook; `None` in production).
    pub on_stored: Option<StoredHook>,
}

/// A decoded batch on its way to the store.
struct Prepared {
    ticks: TickBatch,
    /// The delivery each tick came from (for dead-lettering a tick the
    /// store refuses).
    tick_sources: Vec<Delivery>,
    /// Feed gaps recorded by providers, stored with the ticks.
    gaps: Vec<Gap>,
    gap_sources: Vec<Delivery>,
    /// Ingest's ledger counts, written in the same transaction as the ticks.
    tallies: Vec<Tally>,
    dead: Vec<Message>,
    /// What to commit once the batch is durable.
    offsets: Vec<Offset>,
    /// The batch's span: a child of the first sampled provider frame among
    /// its messages, linked to the other frames.
    span: tracing::Span,
}

/// Decoded batches waiting for the writer; one in hand plus this many.
const PREPARED_AHEAD: usize = 2;

/// Stored batches whose commit may wait for the one in flight.
const COMMITS_AHEAD: usize = 2;

/// How long the fetcher waits for the writer before pausing the consumer.
/// Longer than a healthy batch write, so normal backpressure never pauses.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

impl Persist {
    /// Receiving and decoding the next batch overlaps with writing the
    /// previous one; writes and commits stay in order.
    pub async fn run(self, mut consumer: Box<dyn Consumer>) -> anyhow::Result<()> {
        let committer = consumer.committer();
        let (tx, mut rx) = mpsc::channel::<Prepared>(PREPARED_AHEAD);
        let fetch = async {
            let mut batch: Vec<Delivery> = Vec::with_capacity(self.config.batch_size);
            let mut decoder = wire::Decoder::default();
            loop {
                let closed = self.fill(&mut *consumer, &mut batch).await?;
                if !batch.is_empty() {
                    // Decoding is CPU work: on a blocking thread, so the
                    // writer (the same task) goes on meanwhile.
                    let deliveries =
                        std::mem::replace(&mut batch, Vec::with_capacity(self.config.batch_size));
                    let (metrics, rules) = (self.metrics.clone(), self.rules);
                    let mut d = std::mem::take(&mut decoder);
                    let (prepared, d) = tokio::task::spawn_blocking(move || {
                        (prepare(&metrics, &rules, &mut d, &deliveries), d)
                    })
                    .await
                    .context("decoding a batch")?;
                    decoder = d;
                    let Some(permit) = self.reserve(&tx, &mut *consumer).await? else {
                        // The writer failed; its error is the one reported.
                        return Ok(());
                    };
                    permit.send(prepared);
                }
                if closed {
                    drop(tx);
                    return Ok::<(), anyhow::Error>(());
                }
            }
        };
        // Offsets of stored batches, committed in order by their own task
        // so that the next write need not wait for the broker's answer.
        let (commit_tx, mut commit_rx) =
            mpsc::channel::<(Vec<Offset>, tracing::Span)>(COMMITS_AHEAD);
        let write = async {
            while let Some(p) = rx.recv().await {
                let offsets = p.offsets.clone();
                let span = p.span.clone();
                self.store_batch(p).await?;
                if commit_tx.send((offsets, span)).await.is_err() {
                    break;
                }
            }
            drop(commit_tx);
            Ok::<(), anyhow::Error>(())
        };
        let commit = async {
            while let Some((offsets, batch)) = commit_rx.recv().await {
                self.commit(&*committer, &offsets)
                    .instrument(tracing::info_span!(
                        parent: &batch,
                        "bus.commit",
                        partitions = offsets.len()
                    ))
                    .await;
            }
            Ok::<(), anyhow::Error>(())
        };
        tokio::try_join!(fetch, write, commit)?;
        Ok(())
    }

    /// Commits the offsets of a stored batch. A refusal is counted and
    /// logged, never fatal: a rebalance that moved the partitions (or a
    /// broker outage) refused it, and either a later commit covers these
    /// offsets or the partitions' new owner receives the messages again and
    /// the store keeps them once.
    async fn commit(&self, committer: &dyn Committer, offsets: &[Offset]) {
        if let Err(error) = committer.commit(offsets).await {
            OffsetCommitRefused {
                error: &error,
                partitions: offsets.len(),
            }
            .emit(&self.metrics);
        }
    }

    /// A slot for the next batch. While the writer stays behind (the store
    /// is down or slow) the consumer idles: a broker consumer pauses fetching
    /// and keeps its group membership. `None` when the writer is gone.
    async fn reserve<'a>(
        &self,
        tx: &'a mpsc::Sender<Prepared>,
        consumer: &mut dyn Consumer,
    ) -> anyhow::Result<Option<mpsc::Permit<'a, Prepared>>> {
        if let Ok(permit) = tokio::time::timeout(PAUSE_AFTER, tx.reserve()).await {
            return Ok(permit.ok());
        }
        PersistPaused(true).emit(&self.metrics);
        let permit = tokio::select! {
            p = tx.reserve() => p.ok(),
            r = consumer.idle() => {
                PersistPaused(false).emit(&self.metrics);
                r.context("holding the consumer while the store is behind")?;
                return Ok(None);
            }
        };
        PersistPaused(false).emit(&self.metrics);
        Ok(permit)
    }

    /// Receives until the batch is full, the batch timeout after its first
    /// message passes, or the bus closes (returns `true`).
    async fn fill(
        &self,
        consumer: &mut dyn Consumer,
        batch: &mut Vec<Delivery>,
    ) -> anyhow::Result<bool> {
        let mut deadline: Option<tokio::time::Instant> = None;
        while batch.len() < self.config.batch_size {
            let want = self.config.batch_size - batch.len();
            let polled = match deadline {
                // On a broker, shutdown stops consuming (the rest stays in the
                // topic); an in-process bus is drained until it closes.
                None if self.bus.is_durable() => tokio::select! {
                    p = consumer.recv(want) => p,
                    _ = self.shutdown.cancelled() => return Ok(true),
                },
                None => consumer.recv(want).await,
                Some(d) => match tokio::time::timeout_at(d, consumer.recv(want)).await {
                    Ok(p) => p,
                    Err(_) => return Ok(false),
                },
            }
            .context("receiving from the bus")?;
            match polled {
                Polled::Messages(m) => {
                    if let Some(first) = m.first() {
                        let bytes = m.iter().map(|d| d.message.payload.len()).sum();
                        self.metrics.bus_consumed(&first.topic, m.len(), bytes);
                    }
                    batch.extend(m);
                    deadline.get_or_insert_with(|| {
                        tokio::time::Instant::now() + self.config.batch_timeout
                    });
                }
                Polled::Lagged(n) => {
                    // A durable group is never trimmed past; this would be a bus bug.
                    anyhow::bail!(
                        "persist consumer lost {n} messages: the bus trimmed uncommitted data"
                    );
                }
                Polled::Closed => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Store, then cache, then dead letters; the commit follows.
    async fn store_batch(&self, p: Prepared) -> anyhow::Result<()> {
        let span = p.span.clone();
        self.store_prepared(p).instrument(span).await
    }

    async fn store_prepared(&self, p: Prepared) -> anyhow::Result<()> {
        let Prepared {
            ticks,
            tick_sources,
            gaps,
            gap_sources,
            tallies,
            mut dead,
            ..
        } = p;
        let rows = ticks.len();
        let refused = self
            .write_isolating(&ticks, tallies)
            .instrument(tracing::info_span!(
                "store.write",
                rows,
                store = self.store.kind()
            ))
            .await?;
        // The rows the store refused are dead letters; the rest is stored.
        let ticks = if refused.is_empty() {
            ticks
        } else {
            self.refused_to_dead_letters(&refused, &tick_sources, "ticks", &mut dead);
            let skip: std::collections::HashSet<usize> = refused.iter().map(|(i, _)| *i).collect();
            let kept: Vec<Tick> = (0..ticks.len())
                .filter(|i| !skip.contains(i))
                .map(|i| ticks[i].clone())
                .collect();
            Arc::from(kept)
        };
        if !gaps.is_empty() {
            let refused = self
                .write_gaps(&gaps)
                .instrument(tracing::info_span!("store.write_gaps", gaps = gaps.len()))
                .await?;
            self.refused_to_dead_letters(&refused, &gap_sources, "gap records", &mut dead);
        }
        if !ticks.is_empty() {
            let update = self
                .cache
                .update_latest(&ticks)
                .instrument(tracing::info_span!(
                    "cache.update",
                    ticks = ticks.len(),
                    cache = self.cache.kind()
                ));
            match update.await {
                Ok(n) => {
                    self.metrics.cache_updated(n);
                    let cached_at = Timestamp::now();
                    self.metrics
                        .ingested_to_cached(ticks.iter().map(|t| seconds_between(t, cached_at)));
                }
                Err(error) => CacheUpdateFailed { error: &error }.emit(&self.metrics),
            }
        }
        if !dead.is_empty() {
            let n = dead.len();
            let (bus, m, h) = (&*self.bus, &self.metrics, &self.health);
            publish_retrying(bus, m, h, &self.dlq_topic, dead, &self.shutdown)
                .instrument(
                    tracing::info_span!("bus.publish", topic = %self.dlq_topic, messages = n),
                )
                .await?;
        }
        Ok(())
    }

    /// Dead letters (reason `store_refused`, the database's error) for the
    /// records at the `refused` indexes of `sources`.
    fn refused_to_dead_letters(
        &self,
        refused: &[(usize, StoreError)],
        sources: &[Delivery],
        what: &str,
        dead: &mut Vec<Message>,
    ) {
        let Some((first, e)) = refused.first() else {
            return;
        };
        let d = &sources[*first];
        let mut tally = DeadLettered::new(Stage::Persist);
        tally.add_n(STORE_REFUSED, refused.len(), || {
            (
                format!("partition {} offset {}", d.partition, d.offset),
                format!("the store refused {what} (the rest of the batch is stored): {e}"),
            )
        });
        tally.emit(&self.metrics);
        for (i, e) in refused {
            dead.push(dead_letter(&sources[*i], STORE_REFUSED, &e.to_string()));
        }
    }

    /// Writes gap records with retries, like ticks; returns the ones the
    /// store refused (each written alone, so one bad record refuses only itself).
    async fn write_gaps(&self, gaps: &[Gap]) -> anyhow::Result<Vec<(usize, StoreError)>> {
        match self
            .write_retrying("gap records", || self.store.write_gaps(gaps))
            .await?
        {
            Ok(()) => {
                self.metrics.gaps_stored(gaps.len());
                return Ok(Vec::new());
            }
            Err(e) if gaps.len() == 1 => return Ok(vec![(0, e)]),
            Err(_) => {}
        }
        let mut refused = Vec::new();
        for (i, gap) in gaps.iter().enumerate() {
            let one = std::slice::from_ref(gap);
            match self
                .write_retrying("a gap record", || self.store.write_gaps(one))
                .await?
            {
                Ok(()) => self.metrics.gaps_stored(1),
                Err(e) => refused.push((i, e)),
            }
        }
        Ok(refused)
    }

    /// Writes `ticks` with the ledger's `tallies` in one transaction; when
    /// the store refuses the batch for its data, writes the tallies alone,
    /// then splits the ticks in halves until the refused ones are alone,
    /// stores the rest and returns the refused ones (index in `ticks`, the
    /// store's error).
    async fn write_isolating(
        &self,
        ticks: &TickBatch,
        mut tallies: Vec<Tally>,
    ) -> anyhow::Result<Vec<(usize, StoreError)>> {
        let mut refused = Vec::new();
        // Ranges still to write, last first.
        let mut todo = if ticks.is_empty() {
            Vec::new()
        } else {
            vec![(0, ticks.len())]
        };
        while let Some((from, to)) = todo.pop() {
            let part: TickBatch = if (from, to) == (0, ticks.len()) {
                ticks.clone()
            } else {
                Arc::from(&ticks[from..to])
            };
            match self.write(&part, &tallies).await? {
                Ok(()) => tallies.clear(),
                Err(e) if to - from == 1 && tallies.is_empty() => refused.push((from, e)),
                Err(e) => {
                    if (from, to) == (0, ticks.len()) {
                        tracing::warn!(rows = ticks.len(), error = %e, "the store refused a batch for its data; splitting it to find the rows it refuses");
                    }
                    if !tallies.is_empty() {
                        self.write_tallies(std::mem::take(&mut tallies)).await?;
                        todo.push((from, to));
                        continue;
                    }
                    let mid = from + (to - from) / 2;
                    todo.push((mid, to));
                    todo.push((from, mid));
                }
            }
        }
        if !tallies.is_empty() {
            self.write_tallies(tallies).await?;
        }
        Ok(refused)
    }

    /// Writes ledger tallies without ticks (none came with them, or the
    /// store refused their batch); tallies the store refuses are logged
    /// and left out: the ledger then undercounts, the ticks are unharmed.
    async fn write_tallies(&self, tallies: Vec<Tally>) -> anyhow::Result<()> {
        let none: TickBatch = Arc::from(Vec::new());
        let written = self
            .write_retrying("ledger counts", || {
                self.store.write_counted(none.clone(), &tallies)
            })
            .await?;
        if written.is_ok() {
            self.metrics.ledger_written(&tallies);
        }
        if let Err(e) = written {
            tracing::warn!(
                tallies = tallies.len(),
                provider = %tallies[0].provider,
                symbol = %tallies[0].symbol,
                error = %e,
                "the store refused ledger counts; the completeness ledger undercounts these minutes"
            );
        }
        Ok(())
    }

    /// Writes with retries. `Ok(Ok)` once the batch is durable; `Ok(Err)`
    /// when the store refuses its data (see [`StoreError::is_data_error`]).
    async fn write(
        &self,
        ticks: &TickBatch,
        tallies: &[Tally],
    ) -> anyhow::Result<Result<(), StoreError>> {
        let started = Instant::now();
        let outcome = self
            .write_retrying("ticks", || self.store.write_counted(ticks.clone(), tallies))
            .await?;
        if let Ok(outcome) = outcome {
            self.metrics.ledger_written(tallies);
            let stored_at = Timestamp::now();
            self.health.set("store", true, self.store.kind());
            self.metrics.batch_stored(
                ticks.len(),
                outcome.inserted,
                started.elapsed(),
                ticks.iter().map(|t| seconds_between(t, stored_at)),
            );
            if let Some(hook) = &self.on_stored {
                hook(ticks, stored_at);
            }
            return Ok(Ok(()));
        }
        Ok(outcome.map(|_| ()))
    }

    /// Runs a store write until it succeeds or the store refuses its data,
    /// retrying every other failure with backoff: a connection lost, a
    /// timeout, but also a schema or permission problem an operator can
    /// fix while persist waits (`/readyz` says what is wrong meanwhile).
    /// `Err` only at shutdown, with what was not written.
    async fn write_retrying<T, F, Fut>(
        &self,
        what: &str,
        mut attempt: F,
    ) -> anyhow::Result<Result<T, StoreError>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Backoff::new(self.config.retry_backoff, MAX_BACKOFF);
        loop {
            let e = match attempt().await {
                Ok(v) => return Ok(Ok(v)),
                Err(e) if e.is_data_error() => return Ok(Err(e)),
                Err(e) => e,
            };
            StoreWriteFailed {
                error: &e,
                retry_in: backoff.next(),
            }
            .emit(&self.metrics);
            self.health.set("store", false, e.to_string());
            if self.shutdown.is_cancelled() {
                return Err(e).context(format!(
                    "shutting down with {what} not written to the store"
                ));
            }
            backoff.wait(&self.shutdown).await;
        }
    }
}

/// Decodes a batch; what does not decode becomes a dead letter.
fn prepare(
    metrics: &Metrics,
    rules: &TickRules,
    decoder: &mut wire::Decoder,
    batch: &[Delivery],
) -> Prepared {
    let span = batch_span(batch);
    let _entered = span.enter();
    let now = Timestamp::now();
    let mut ticks = Vec::with_capacity(batch.len());
    let mut tick_sources = Vec::with_capacity(batch.len());
    let mut gaps = Vec::new();
    let mut gap_sources = Vec::new();
    let mut tallies = Vec::new();
    let mut dead = Vec::new();
    let mut tally = DeadLettered::new(Stage::Persist);
    let where_ = |d: &Delivery| format!("partition {} offset {}", d.partition, d.offset);
    for d in batch {
        let content_type = d.message.headers.get_str(headers::CONTENT_TYPE);
        if content_type == Some(TALLY_CONTENT_TYPE) {
            match Tally::decode(&d.message.payload) {
                Ok(t) => tallies.push(t),
                Err(e) => {
                    tally.add("malformed_tally", || {
                        (where_(d), format!("undecodable ledger tally: {e}"))
                    });
                    dead.push(dead_letter(d, "malformed_tally", &e));
                }
            }
            continue;
        }
        if content_type == Some(GAP_CONTENT_TYPE) {
            match Gap::decode(&d.message.payload) {
                Ok(g) => {
                    gaps.push(g);
                    gap_sources.push(d.clone());
                }
                Err(e) => {
                    tally.add("malformed_gap", || {
                        (where_(d), format!("undecodable gap record: {e}"))
                    });
                    dead.push(dead_letter(d, "malformed_gap", &e));
                }
            }
            continue;
        }
        let decoded =
            wire::check_schema_version(d.message.headers.get_str(headers::SCHEMA_VERSION))
                .and_then(|()| decoder.decode(&d.message.payload, rules, now));
        match decoded {
            Ok(t) => {
                ticks.push(t);
                tick_sources.push(d.clone());
            }
            Err(e) => {
                let error = e.to_string();
                tally.add(e.reason(), || (where_(d), error.clone()));
                dead.push(dead_letter(d, e.reason(), &error));
            }
        }
    }
    // One line per batch, not per message.
    tally.emit(metrics);
    drop(_entered);
    Prepared {
        ticks: Arc::from(ticks),
        tick_sources,
        gaps,
        gap_sources,
        tallies,
        dead,
        offsets: last_offsets(batch),
        span,
    }
}

/// Most frames a batch span links to besides its parent.
const MAX_LINKS: usize = 16;

/// The span of a batch of deliveries, continuing the trace of the first
/// sampled provider frame among them (or, when none is sampled, of the first
/// frame, so the batch is not sampled either).
fn batch_span(batch: &[Delivery]) -> tracing::Span {
    let span = tracing::info_span!(parent: None, "persist.batch", messages = batch.len());
    let mut first: Option<SpanContext> = None;
    let mut sampled = false;
    let mut links = Vec::new();
    let mut previous: &[u8] = &[];
    for d in batch {
        // Messages of one frame share one header: parse each value once.
        let Some(value) = d.message.headers.get(headers::TRACEPARENT) else {
            continue;
        };
        if value == previous {
            continue;
        }
        previous = value;
        let Some(sc) = std::str::from_utf8(value)
            .ok()
            .and_then(traces::parse_traceparent)
        else {
            continue;
        };
        if first.is_none() || (!sampled && sc.is_sampled()) {
            if let Some(replaced) = first.replace(sc.clone()) {
                links.push(replaced);
            }
            sampled = sc.is_sampled();
        } else if links.len() < MAX_LINKS && !links.contains(&sc) {
            links.push(sc);
        }
    }
    if let Some(parent) = first {
        traces::continue_trace(&span, parent);
    }
    for l in links.into_iter().take(MAX_LINKS) {
        traces::link(&span, l);
    }
    span
}

fn seconds_between(t: &Tick, stored_at: Timestamp) -> f64 {
    (stored_at.as_micros() - t.ingested_at().as_micros()).max(0) as f64 / 1e6
}

/// The dead-letter form of an undecodable delivery: the original payload
/// and key, the original headers, and where and why it failed.
fn dead_letter(d: &Delivery, reason: &'static str, error: &str) -> Message {
    let mut h = Headers::with_capacity(8);
    // The original headers, as far as they fit the dead letter's budget.
    let mut budget = dead_letter::MAX_HEADERS;
    for (name, value) in d.message.headers.iter() {
        let size = name.len() + value.len();
        if size > budget {
            h.insert(headers::DLQ_TRUNCATED, Bytes::from_static(b"true"));
            break;
        }
        budget -= size;
        h.insert(name.to_string(), Bytes::copy_from_slice(value));
    }
    h.insert(headers::DLQ_STAGE, Bytes::from_static(b"persist"));
    h.insert(headers::DLQ_REASON, Bytes::from_static(reason.as_bytes()));
    h.insert(headers::DLQ_ERROR, dead_letter::error(error));
    h.insert(headers::DLQ_SOURCE_TOPIC, Bytes::from(d.topic.to_string()));
    h.insert(
        headers::DLQ_SOURCE_PARTITION,
        Bytes::from(d.partition.to_string()),
    );
    h.insert(
        headers::DLQ_SOURCE_OFFSET,
        Bytes::from(d.offset.to_string()),
    );
    let payload = dead_letter::payload(d.message.payload.clone(), &mut h);
    Message {
        key: d.message.key.clone(),
        payload,
        headers: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(headers: Headers) -> Delivery {
        Delivery {
            topic: Arc::from("ticks"),
            partition: 3,
            offset: 41,
            message: Arc::new(Message {
                key: Bytes::from_static(b"AAPL"),
                payload: Bytes::from_static(b"not a tick"),
                headers,
            }),
        }
    }

    #[test]
    fn a_dead_letter_keeps_the_original_headers_up_to_its_budget() {
        // Two headers that fill the budget exactly, then one more.
        let first = ("a".to_string(), vec![b'x'; 1_000]);
        let second_len = dead_letter::MAX_HEADERS - 1 - 1_000 - 1;
        let mut h = Headers::default();
        h.insert(first.0.clone(), first.1.clone());
        h.insert("b", vec![b'y'; second_len]);
        let fits = dead_letter(&delivery(h.clone()), "undecodable", "bad json");
        assert_eq!(fits.headers.get("a").map(|v| v.len()), Some(1_000));
        assert_eq!(fits.headers.get("b").map(|v| v.len()), Some(second_len));
        assert_eq!(fits.headers.get_str(headers::DLQ_TRUNCATED), None);
        h.insert("c", vec![b'z'; 1]);
        let over = dead_letter(&delivery(h), "undecodable", "bad json");
        assert_eq!(over.headers.get("c"), None, "over the budget");
        assert_eq!(over.headers.get_str(headers::DLQ_TRUNCATED), Some("true"));
        assert!(over.headers.get("b").is_some());
        for (name, value) in [
            (headers::DLQ_STAGE, "persist"),
            (headers::DLQ_REASON, "undecodable"),
            (headers::DLQ_SOURCE_TOPIC, "ticks"),
            (headers::DLQ_SOURCE_PARTITION, "3"),
            (headers::DLQ_SOURCE_OFFSET, "41"),
        ] {
            assert_eq!(over.headers.get_str(name), Some(value), "{name}");
        }
        assert_eq!(over.payload, Bytes::from_static(b"not a tick"));
        assert_eq!(over.key, Bytes::from_static(b"AAPL"));
    }

    #[test]
    fn latency_is_in_seconds_and_never_negative() {
        let t = streamforge_testkit::tick("AAPL", 1_756_325_700_000, 1.0, 1.0);
        let later = t.ingested_at().saturating_add_micros(1_500_000);
        assert_eq!(seconds_between(&t, later), 1.5);
        let earlier = t.ingested_at().saturating_sub_micros(10);
        assert_eq!(seconds_between(&t, earlier), 0.0);
    }
}
