//! [`KafkaBus`]: the bus on Kafka or a Kafka-compatible broker
//! (`kafka://host:port[,host:port...]`), with rdkafka.
//!
//! - Producer: idempotence on, `acks=all`, lz4, a linger in milliseconds.
//!   [`Bus::publish`] returns once the broker acknowledged every message of
//!   the batch; a full local queue makes it wait (backpressure).
//! - Topics are created with the configured partition count when missing.
//! - Consumers: one group each, auto-commit off; offsets are committed
//!   explicitly by the [`Committer`] after the batch is stored. A consumer
//!   that stops without committing leaves its messages to the next member of
//!   the group (at least once).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use streamforge_telemetry::{Health, Metrics};

use crate::{
    Bus, BusError, Committer, Consumer, ConsumerOptions, Delivery, Headers, Message, Offset,
    Polled, StartFrom,
};

/// Settings of the Kafka bus.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaOptions {
    /// Partitions of topics created by StreamForge.
    pub partitions: i32,
    /// Replication factor of topics created by StreamForge.
    pub replication: i32,
    /// Producer linger (`linger.ms`).
    pub linger: Duration,
    /// Longest wait for a message's acknowledgement (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// A consumer that misses heartbeats this long leaves its group
    /// (`session.timeout.ms`): how fast a crashed member's partitions move.
    pub session_timeout: Duration,
    /// A consumer that neither receives nor idles this long leaves its group
    /// (`max.poll.interval.ms`).
    pub max_poll_interval: Duration,
    /// How often durable consumers report their lag (one watermark query per
    /// assigned partition to the broker).
    pub lag_report_every: Duration,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            partitions: 6,
            replication: 1,
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            max_poll_interval: Duration::from_secs(300),
            lag_report_every: Duration::from_secs(30),
        }
    }
}

fn kafka_err(e: KafkaError) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Until the consumer is dropped, every `every`: per assigned
/// partition, the high watermark minus the consumer's position. On its own
/// timer, so a caught-up consumer waiting for messages reports 0, not the
/// last backlog it saw.
async fn report_lag(consumer: std::sync::Weak<StreamConsumer>, metrics: Metrics, every: Duration) {
    let mut every = tokio::time::interval(every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(consumer) = consumer.upgrade() else {
            return;
        };
        let metrics = metrics.clone();
        // Position is local; the watermarks are a broker round trip.
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer.position() else {
                return;
            };
            for e in positions.elements() {
                let KafkaOffset::Offset(position) = e.offset() else {
                    continue;
                };
                if let Ok((_, high)) =
                    consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
                {
                    metrics.bus_consumer_lag(e.topic(), e.partition(), (high - position).max(0));
                }
            }
        })
        .await;
    }
}

/// Keeps the readiness check `consumer <topic>` up to date: ready while
/// the group has assigned this consumer at least one partition.
async fn report_assignment(
    consumer: std::sync::Weak<StreamConsumer>,
    health: Health,
    topic: String,
) {
    let check = format!("consumer {topic}");
    health.set(&check, false, "waiting for the group to assign partitions");
    let mut every = tokio::time::interval(ASSIGNMENT_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(consumer) = consumer.upgrade() else {
            health.remove(&check);
            return;
        };
        // The assignment is local state: no broker round trip.
        match consumer.assignment() {
            Ok(a) if a.count() > 0 => {
                health.set(&check, true, format!("{} partitions assigned", a.count()))
            }
            Ok(_) => health.set(
                &check,
                false,
                "no partitions assigned (joining the group, or more members than partitions)",
            ),
            Err(e) => health.set(&check, false, e.to_string()),
        }
    }
}

/// How often a durable consumer's assignment is checked for `/readyz`.
const ASSIGNMENT_CHECK: Duration = Duration::from_secs(1);

/// The Kafka bus.
pub struct KafkaBus {
    metrics: Option<Metrics>,
    health: Option<Health>,
    brokers: String,
    options: KafkaOptions,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
    /// Topics known to exist.
    topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl KafkaBus {
    /// Durable consumers keep a `consumer <topic>` readiness check in
    /// `health`: ready once the group assigned them partitions.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// `url` is `kafka://host:port[,host:port...]`. With `metrics`, durable
    /// consumers report their lag per partition.
    pub fn connect(
        url: &str,
        options: KafkaOptions,
        metrics: Option<Metrics>,
    ) -> Result<Self, BusError> {
        let bad = |reason: &str| BusError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let brokers = url
            .strip_prefix("kafka://")
            .ok_or_else(|| bad("expected kafka://host:port[,host:port...]"))?
            .trim_end_matches('/')
            .to_string();
        if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
            return Err(bad("expected kafka://host:port[,host:port...]"));
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", options.linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                options.delivery_timeout.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", "200000")
            // A 1 MiB value (oversized input bound for the dead-letter topic)
            // must still be deliverable; brokers cap it on their side.
            .set("message.max.bytes", "4194304")
            .create()
            .map_err(kafka_err)?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .map_err(kafka_err)?;
        Ok(KafkaBus {
            metrics,
            health: None,
            brokers,
            options,
            producer,
            admin: Arc::new(admin),
            topics: Mutex::default(),
        })
    }

    /// Creates `topic` with the configured partitions when it is missing.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        if self.topics.lock().contains(topic) {
            return Ok(());
        }
        if self.topic_exists(topic).await? {
            self.topics.lock().insert(topic.to_string());
            return Ok(());
        }
        let new = NewTopic::new(
            topic,
            self.options.partitions,
            TopicReplication::Fixed(self.options.replication),
        );
        let results = self
            .admin
            .create_topics(
                &[new],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(kafka_err)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Unavailable(format!(
                        "creating topic {name}: {code}"
                    )))
                }
            }
        }
        self.topics.lock().insert(topic.to_string());
        Ok(())
    }
}

impl KafkaBus {
    /// Whether the cluster has `topic` (a metadata request for all topics,
    /// which never creates one).
    async fn topic_exists(&self, topic: &str) -> Result<bool, BusError> {
        let admin = self.admin.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let metadata = admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(10))
                .map_err(kafka_err)?;
            Ok(metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
    }
}

#[async_trait]
impl Bus for KafkaBus {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn publish(&self, topic: &str, batch: Vec<Message>) -> Result<(), BusError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.ensure_topic(topic).await?;
        let mut pending = Vec::with_capacity(batch.len());
        for m in &batch {
            let mut headers = OwnedHeaders::new_with_capacity(4);
            for (name, value) in m.headers.iter() {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .payload(m.payload.as_ref())
                .headers(headers);
            if !m.key.is_empty() {
                record = record.key(m.key.as_ref());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // The local queue is full: let deliveries drain, then retry.
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(kafka_err(e)),
                }
            }
        }
        let mut failed = 0usize;
        let mut first_error = None;
        for d in pending {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
                Err(_) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| "producer dropped the message".into());
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(BusError::Unavailable(format!(
                "{failed} of {} messages to {topic} were not delivered: {e}",
                batch.len()
            ))),
        }
    }

    async fn consumer(
        &self,
        topic: &str,
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>, BusError> {
        self.ensure_topic(topic).await?;
        let reset = match options.start {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &options.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            .set(
                "session.timeout.ms",
                self.options.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.options.session_timeout.as_millis() / 10)
                    .max(100)
                    .to_string(),
            )
            .set(
                "max.poll.interval.ms",
                self.options.max_poll_interval.as_millis().to_string(),
            )
            .set("queued.max.messages.kbytes", "65536")
            .create()
            .map_err(kafka_err)?;
        consumer.subscribe(&[topic]).map_err(kafka_err)?;
        let consumer = Arc::new(consumer);
        if let Some(health) = self.health.clone().filter(|_| options.durable) {
            tokio::spawn(report_assignment(
                Arc::downgrade(&consumer),
                health,
                topic.to_string(),
            ));
        }
        if let Some(metrics) = self.metrics.clone().filter(|_| options.durable) {
            tokio::spawn(report_lag(
                Arc::downgrade(&consumer),
                metrics,
                self.options.lag_report_every,
            ));
        }
        Ok(Box::new(KafkaConsumer {
            committer: Arc::new(KafkaCommitter {
                consumer: consumer.clone(),
            }),
            consumer,
            held: Vec::new(),
            paused: TopicPartitionList::new(),
        }))
    }

    async fn close_topic(&self, _topic: &str) {
        // Other processes may still publish; nothing to close here.
    }

    fn is_durable(&self) -> bool {
        true
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?
            .map_err(|e| {
                BusError::Unavailable(format!(
                    "{} messages not delivered: {e}",
                    self.producer.in_flight_count()
                ))
            })
    }
}

struct KafkaConsumer {
    consumer: Arc<StreamConsumer>,
    committer: Arc<KafkaCommitter>,
    /// Messages received while idling (from partitions assigned after the
    /// pause); handed out first by the next `recv`.
    held: Vec<Delivery>,
    /// Partitions paused by `idle`, resumed by the next `recv`.
    paused: TopicPartitionList,
}

/// How often an idling consumer polls (well inside `max.poll.interval.ms`).
const IDLE_POLL: Duration = Duration::from_millis(500);

impl KafkaConsumer {
    /// Pauses every assigned partition not paused yet. librdkafka drops
    /// what it prefetched for them and fetches again from the position after
    /// the last message handed out, so nothing is skipped on resume.
    fn pause_assigned(&mut self) -> Result<(), BusError> {
        let assigned = self.consumer.assignment().map_err(kafka_err)?;
        let mut fresh = TopicPartitionList::new();
        for e in assigned.elements() {
            if self
                .paused
                .find_partition(e.topic(), e.partition())
                .is_none()
            {
                fresh.add_partition(e.topic(), e.partition());
            }
        }
        if fresh.count() == 0 {
            return Ok(());
        }
        self.consumer.pause(&fresh).map_err(kafka_err)?;
        for e in fresh.elements() {
            self.paused.add_partition(e.topic(), e.partition());
        }
        tracing::info!(
            partitions = fresh.count(),
            "paused consumption until the consumer's owner takes messages again"
        );
        Ok(())
    }

    /// Resumes what `idle` paused (partitions revoked meanwhile are skipped).
    fn resume_paused(&mut self) -> Result<(), BusError> {
        if self.paused.count() == 0 {
            return Ok(());
        }
        let assigned = self.consumer.assignment().map_err(kafka_err)?;
        let mut still = TopicPartitionList::new();
        for e in self.paused.elements() {
            if assigned.find_partition(e.topic(), e.partition()).is_some() {
                still.add_partition(e.topic(), e.partition());
            }
        }
        self.paused = TopicPartitionList::new();
        if still.count() > 0 {
            self.consumer.resume(&still).map_err(kafka_err)?;
            tracing::info!(partitions = still.count(), "resumed consumption");
        }
        Ok(())
    }
}

fn to_delivery(m: &rdkafka::message::BorrowedMessage<'_>, topics: &mut Vec<Arc<str>>) -> Delivery {
    let topic = match topics.iter().find(|t| ***t == *m.topic()) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = Arc::from(m.topic());
            topics.push(t.clone());
            t
        }
    };
    let mut headers = Headers::default();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            headers.insert(
                h.key.to_string(),
                Bytes::copy_from_slice(h.value.unwrap_or_default()),
            );
        }
    }
    Delivery {
        topic,
        partition: m.partition(),
        offset: m.offset(),
        message: Arc::new(Message {
            key: Bytes::copy_from_slice(m.key().unwrap_or_default()),
            payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
            headers,
        }),
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn recv(&mut self, max: usize) -> Result<Polled, BusError> {
        self.resume_paused()?;
        if !self.held.is_empty() {
            let n = self.held.len().min(max);
            return Ok(Polled::Messages(self.held.drain(..n).collect()));
        }
        let mut topics = Vec::new();
        let first = self.consumer.recv().await.map_err(kafka_err)?;
        let mut out = vec![to_delivery(&first, &mut topics)];
        drop(first);
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(to_delivery(&m, &mut topics)),
                Some(Err(e)) => return Err(kafka_err(e)),
                None => break,
            }
        }
        Ok(Polled::Messages(out))
    }

    async fn idle(&mut self) -> Result<(), BusError> {
        let mut topics = Vec::new();
        loop {
            // Each round also pauses partitions assigned by a rebalance
            // since the last one; polling keeps the membership alive.
            self.pause_assigned()?;
            match tokio::time::timeout(IDLE_POLL, self.consumer.recv()).await {
                Ok(Ok(m)) => self.held.push(to_delivery(&m, &mut topics)),
                Ok(Err(e)) => return Err(kafka_err(e)),
                Err(_) => {}
            }
        }
    }

    fn committer(&self) -> Arc<dyn Committer> {
        self.committer.clone()
    }
}

struct KafkaCommitter {
    consumer: Arc<StreamConsumer>,
}

#[async_trait]
impl Committer for KafkaCommitter {
    async fn commit(&self, offsets: &[Offset]) -> Result<(), BusError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for o in offsets {
            tpl.add_partition_offset(&o.topic, o.partition, KafkaOffset::Offset(o.offset + 1))
                .map_err(kafka_err)?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?
            .map_err(kafka_err)
    }
}

#[cfg(test)]
mod tests;
