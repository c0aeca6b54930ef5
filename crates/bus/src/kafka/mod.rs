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
//! - Any librdkafka setting (TLS, SASL, tuning) passes through
//!   [`KafkaOptions::properties`], except the few StreamForge's guarantees
//!   rest on ([`RESERVED_PROPERTIES`]); secret values never appear in
//!   errors or logs ([`redact_properties`]).
//! - Reachability: while librdkafka reports every broker down, the
//!   readiness check `bus` fails; the next delivery or fetch clears it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use streamforge_model::settings::{duration_text, Invalid};
use streamforge_telemetry::{Health, Metrics, Tasks};

use crate::message::headers;
use crate::{
    Bus, BusError, Committer, Consumer, ConsumerOptions, Delivery, Headers, Message, Offset,
    Polled, StartFrom,
};

/// Settings of the Kafka bus: the `[kafka]` section.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaOptions {
    /// Partitions of topics created by StreamForge.
    pub partitions: i32,
    /// Replication factor of topics created by StreamForge.
    pub replication: i32,
    /// Producer linger (`linger.ms`).
    #[serde(with = "duration_text")]
    pub linger: Duration,
    /// Longest wait for a message's acknowledgement (`message.timeout.ms`).
    #[serde(with = "duration_text")]
    pub delivery_timeout: Duration,
    /// A consumer that misses heartbeats this long leaves its group
    /// (`session.timeout.ms`): how fast a crashed member's partitions move.
    #[serde(with = "duration_text")]
    pub session_timeout: Duration,
    /// A consumer that neither receives nor idles this long leaves its group
    /// (`max.poll.interval.ms`).
    #[serde(with = "duration_text")]
    pub max_poll_interval: Duration,
    /// How often durable consumers report their lag (one watermark query per
    /// assigned partition to the broker).
    #[serde(with = "duration_text")]
    pub lag_report_every: Duration,
    /// librdkafka settings for every client (producer, consumers, admin),
    /// e.g. `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`. Applied after StreamForge's own
    /// defaults, so they can tune those too, but not the
    /// [`RESERVED_PROPERTIES`]. Also from the environment:
    /// `STREAMFORGE_KAFKA__PROPERTIES__SASL_PASSWORD=...` sets
    /// `sasl.password`. Secret values are shown as `***`.
    pub properties: KafkaProperties,
}

/// librdkafka settings by name. `Debug` shows secret values as `***`
/// ([`is_secret_property`]); [`KafkaProperties::redacted`] does the same
/// for printing a configuration.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    /// The same settings with every secret value replaced by `***`.
    pub fn redacted(&self) -> KafkaProperties {
        KafkaProperties(
            self.0
                .iter()
                .map(|(k, v)| {
                    let v = if is_secret_property(k) {
                        "***".to_string()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.redacted().0).finish()
    }
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
            properties: KafkaProperties::default(),
        }
    }
}

/// librdkafka settings StreamForge sets itself because its delivery
/// guarantees depend on them (or the URL and the config tree say them).
pub const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "session.timeout.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
];

/// Whether the value of librdkafka setting `name` is a secret (passwords,
/// keys, JAAS lines, OAuth settings): never printed.
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "oauthbearer.config",
        ".pem",
        "token",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// `text` with the value of every secret setting of `properties` replaced
/// by `***` (librdkafka may quote a value in an error).
pub fn redact_properties(text: &str, properties: &KafkaProperties) -> String {
    let mut out = text.to_string();
    for (name, value) in properties.iter() {
        if is_secret_property(name) && !value.is_empty() {
            out = out.replace(value.as_str(), "***");
        }
    }
    out
}

impl KafkaOptions {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.partitions < 1 {
            return Err(Invalid::new("partitions", "must be at least 1"));
        }
        if self.replication < 1 {
            return Err(Invalid::new("replication", "must be at least 1"));
        }
        if let Err(e) = self.check_properties() {
            let reason = e.to_string();
            let reason = reason.trim_start_matches("bus configuration: kafka.properties: ");
            return Err(Invalid::new("properties", reason));
        }
        if self.lag_report_every < Duration::from_secs(1) {
            return Err(Invalid::new("lag_report_every", "must be at least 1s"));
        }
        if self.session_timeout < Duration::from_secs(1) {
            return Err(Invalid::new("session_timeout", "must be at least 1s"));
        }
        if self.max_poll_interval < self.session_timeout {
            return Err(Invalid::new(
                "max_poll_interval",
                "must be at least kafka.session_timeout",
            ));
        }
        if self.delivery_timeout.is_zero() {
            return Err(Invalid::new("delivery_timeout", "must be longer than 0"));
        }
        Ok(())
    }

    /// Checks [`KafkaOptions::properties`]: names are librdkafka's
    /// (lower-case, dotted) and none is reserved. The error names the key.
    pub fn check_properties(&self) -> Result<(), BusError> {
        for name in self.properties.0.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
            {
                return Err(BusError::Config(format!(
                    "kafka.properties: {name:?} is not a librdkafka setting name (lower-case words joined by dots, e.g. security.protocol)"
                )));
            }
            if RESERVED_PROPERTIES.contains(&name.as_str()) {
                return Err(BusError::Config(format!(
                    "kafka.properties: {name} is set by StreamForge (its delivery guarantees depend on it, or the bus URL and the kafka section say it); remove it"
                )));
            }
        }
        Ok(())
    }

    /// A client configuration: StreamForge's `defaults`, then the user's properties.
    fn client_config(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, v);
        }
        for (k, v) in self.properties.iter() {
            c.set(k, v);
        }
        c
    }

    /// A librdkafka error with secret values redacted, as a bus error.
    fn config_error(&self, what: &str, e: KafkaError) -> BusError {
        BusError::Config(redact_properties(&format!("{what}: {e}"), &self.properties))
    }
}

/// What every client of one bus shares with librdkafka's callbacks.
#[derive(Default)]
struct ClientState {
    /// Where reachability is reported (the `bus` readiness check).
    health: parking_lot::Mutex<Option<Health>>,
    /// The last authentication failure librdkafka reported.
    auth_error: parking_lot::Mutex<Option<String>>,
    /// Set while librdkafka reports every broker down.
    brokers_down: AtomicBool,
    /// The user's properties, to redact what librdkafka reports.
    properties: KafkaProperties,
}

/// The librdkafka client context of every client of a [`KafkaBus`]:
/// routes librdkafka's logs and errors to `tracing` and readiness.
#[derive(Clone, Default)]
struct BusContext(Arc<ClientState>);

impl BusContext {
    /// A delivery or fetch succeeded: the cluster is reachable again.
    fn reachable(&self) {
        if self.0.brokers_down.swap(false, Ordering::Relaxed) {
            tracing::info!("kafka brokers reachable again");
            if let Some(h) = self.0.health.lock().as_ref() {
                h.set("bus", true, "brokers reachable");
            }
        }
    }
}

impl ClientContext for BusContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = redact_properties(message, &self.0.properties);
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = redact_properties(reason, &self.0.properties);
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                tracing::warn!(error = %reason, "kafka authentication failed");
                *self.0.auth_error.lock() = Some(reason);
            }
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                if !self.0.brokers_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %reason, "every kafka broker is unreachable; retrying");
                }
                if let Some(h) = self.0.health.lock().as_ref() {
                    h.set("bus", false, format!("all brokers down: {reason}"));
                }
            }
            // Connection failures are retried by librdkafka and summed up
            // by AllBrokersDown; one line each would flood an outage.
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!(error = %reason, "kafka broker connection failed")
            }
            _ => tracing::warn!(error = %error, reason = %reason, "kafka client error"),
        }
    }
}

impl ConsumerContext for BusContext {}

/// The consumer type of every [`KafkaBus`] consumer.
type KafkaStream = StreamConsumer<BusContext>;

/// Whether a consumer error is passing: librdkafka reconnects, refetches or
/// rejoins by itself, so the consumer keeps going.
fn consumer_error_is_transient(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageConsumption(_) | KafkaError::PartitionEOF(_)
    )
}

fn kafka_err(e: KafkaError) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Until the consumer is dropped, every `every`: per assigned
/// partition, the high watermark minus the consumer's position. On its own
/// timer, so a caught-up consumer waiting for messages reports 0, not the
/// last backlog it saw.
async fn report_lag(consumer: std::sync::Weak<KafkaStream>, metrics: Metrics, every: Duration) {
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
async fn report_assignment(consumer: std::sync::Weak<KafkaStream>, health: Health, topic: String) {
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
    /// Where the consumers' lag and assignment reporters run.
    tasks: Tasks,
    brokers: String,
    options: KafkaOptions,
    context: BusContext,
    producer: FutureProducer<BusContext>,
    admin: Arc<AdminClient<BusContext>>,
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
    /// `health`, and every client the `bus` check (brokers reachable).
    pub fn with_health(mut self, health: Health) -> Self {
        *self.context.0.health.lock() = Some(health.clone());
        self.health = Some(health);
        self
    }

    /// Runs the consumers' reporters (lag, assignment) in `tasks`, so they
    /// stop with it; without it they stop when their consumer is dropped.
    pub fn with_tasks(mut self, tasks: Tasks) -> Self {
        self.tasks = tasks;
        self
    }

    /// `url` is `kafka://host:port[,host:port...]`. With `metrics`, durable
    /// consumers report their lag per partition. Creates the clients only;
    /// [`KafkaBus::check`] talks to the cluster.
    pub fn connect(
        url: &str,
        options: KafkaOptions,
        metrics: Option<Metrics>,
    ) -> Result<Self, BusError> {
        let bad = |reason: &str| BusError::Url {
            url: streamforge_model::settings::redact_url(url),
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
        options.check_properties()?;
        let context = BusContext(Arc::new(ClientState {
            properties: options.properties.clone(),
            ..ClientState::default()
        }));
        let producer: FutureProducer<BusContext> = options
            .client_config(&[
                ("bootstrap.servers", brokers.clone()),
                ("enable.idempotence", "true".into()),
                ("acks", "all".into()),
                ("compression.type", "lz4".into()),
                ("linger.ms", options.linger.as_millis().to_string()),
                (
                    "message.timeout.ms",
                    options.delivery_timeout.as_millis().to_string(),
                ),
                ("queue.buffering.max.messages", "200000".into()),
                // A 1 MiB value (oversized input bound for the dead-letter
                // topic) must still be deliverable; brokers cap it on their side.
                ("message.max.bytes", "4194304".into()),
                // Back within a second of a broker's return, not ten.
                ("reconnect.backoff.max.ms", "1000".into()),
            ])
            .create_with_context(context.clone())
            .map_err(|e| options.config_error("creating the Kafka producer", e))?;
        let admin: AdminClient<BusContext> = options
            .client_config(&[
                ("bootstrap.servers", brokers.clone()),
                ("reconnect.backoff.max.ms", "1000".into()),
            ])
            .create_with_context(context.clone())
            .map_err(|e| options.config_error("creating the Kafka admin client", e))?;
        Ok(KafkaBus {
            metrics,
            health: None,
            tasks: Tasks::default(),
            brokers,
            options,
            context,
            producer,
            admin: Arc::new(admin),
            topics: Mutex::default(),
        })
    }

    /// One metadata round trip to the cluster, at most `timeout`. Refused
    /// credentials are a [`BusError::Config`] naming the settings to check;
    /// an unreachable cluster is [`BusError::Unavailable`].
    pub async fn check(&self, timeout: Duration) -> Result<(), BusError> {
        let admin = self.admin.clone();
        let result = tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(None, timeout).map(|_| ())
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
        if let Some(auth) = self.context.0.auth_error.lock().take() {
            return Err(BusError::Config(format!(
                "the Kafka cluster at {} refused the credentials (check kafka.properties \
                 security.protocol, sasl.mechanism, sasl.username and sasl.password): {auth}",
                self.brokers
            )));
        }
        result.map_err(|e| {
            BusError::Unavailable(redact_properties(
                &format!(
                    "no answer from the Kafka cluster at {} within {timeout:?}: {e}",
                    self.brokers
                ),
                &self.options.properties,
            ))
        })?;
        self.context.reachable();
        Ok(())
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
        // The controller has the topic; the broker's metadata may not yet.
        // A consumer subscribing before it does would wait for its next
        // metadata refresh, so wait until the topic is visible.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.topic_exists(topic).await? {
            if tokio::time::Instant::now() > deadline {
                return Err(BusError::Unavailable(format!(
                    "topic {topic} was created but is not in the cluster's metadata after 10s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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
        if let Err(e) = self.ensure_topic(topic).await {
            // Nothing was sent: all of it can be published again.
            return Err(BusError::Undelivered {
                topic: topic.to_string(),
                of: batch.len(),
                undelivered: batch,
                reason: e.to_string(),
            });
        }
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
        let mut undelivered = Vec::new();
        let mut first_error = None;
        for (d, m) in pending.into_iter().zip(&batch) {
            let failure = match d.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e.to_string(),
                Err(_) => "the producer dropped the message".into(),
            };
            first_error.get_or_insert(failure);
            undelivered.push(m.clone());
        }
        match first_error {
            None => {
                self.context.reachable();
                Ok(())
            }
            Some(reason) => Err(BusError::Undelivered {
                topic: topic.to_string(),
                of: batch.len(),
                undelivered,
                reason: redact_properties(&reason, &self.options.properties),
            }),
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
        let o = &self.options;
        let consumer: StreamConsumer<BusContext> = o
            .client_config(&[
                ("bootstrap.servers", self.brokers.clone()),
                ("group.id", options.group.clone()),
                ("enable.auto.commit", "false".into()),
                ("enable.auto.offset.store", "false".into()),
                ("auto.offset.reset", reset.into()),
                (
                    "session.timeout.ms",
                    o.session_timeout.as_millis().to_string(),
                ),
                (
                    "heartbeat.interval.ms",
                    (o.session_timeout.as_millis() / 10).max(100).to_string(),
                ),
                (
                    "max.poll.interval.ms",
                    o.max_poll_interval.as_millis().to_string(),
                ),
                ("queued.max.messages.kbytes", "65536".into()),
                ("reconnect.backoff.max.ms", "1000".into()),
                // A subscribed topic missing from metadata (created a moment
                // ago by another process) is looked up again soon, not in 5 min.
                ("topic.metadata.refresh.interval.ms", "10000".into()),
            ])
            .create_with_context(self.context.clone())
            .map_err(|e| o.config_error("creating a Kafka consumer", e))?;
        consumer.subscribe(&[topic]).map_err(kafka_err)?;
        let consumer = Arc::new(consumer);
        if let Some(health) = self.health.clone().filter(|_| options.durable) {
            self.tasks.spawn(
                "kafka assignment reporter",
                report_assignment(Arc::downgrade(&consumer), health, topic.to_string()),
            );
        }
        if let Some(metrics) = self.metrics.clone().filter(|_| options.durable) {
            self.tasks.spawn(
                "kafka lag reporter",
                report_lag(
                    Arc::downgrade(&consumer),
                    metrics,
                    self.options.lag_report_every,
                ),
            );
        }
        Ok(Box::new(KafkaConsumer {
            committer: Arc::new(KafkaCommitter {
                consumer: consumer.clone(),
            }),
            context: self.context.clone(),
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
    consumer: Arc<KafkaStream>,
    context: BusContext,
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
    /// Pauses every assigned partition (again: a rebalance may have given
    /// one back unpaused). librdkafka drops what it prefetched for them and
    /// fetches again from the position after the last message handed out,
    /// so nothing is skipped on resume.
    fn pause_assigned(&mut self) -> Result<(), BusError> {
        let assigned = self.consumer.assignment().map_err(kafka_err)?;
        if assigned.count() == 0 {
            return Ok(());
        }
        self.consumer.pause(&assigned).map_err(kafka_err)?;
        let mut fresh = 0;
        for e in assigned.elements() {
            if self
                .paused
                .find_partition(e.topic(), e.partition())
                .is_none()
            {
                self.paused.add_partition(e.topic(), e.partition());
                fresh += 1;
            }
        }
        if fresh > 0 {
            tracing::info!(
                partitions = fresh,
                "paused consumption until the consumer's owner takes messages again"
            );
        }
        Ok(())
    }

    /// A passing consumer error: logged, and the consumer goes on (the
    /// `bus` readiness check already says when no broker answers).
    fn passing(&self, e: &KafkaError) {
        tracing::debug!(error = %e, "kafka consumer error; librdkafka retries");
    }

    /// Resumes what `idle` paused. Partitions revoked meanwhile are resumed
    /// too: librdkafka keeps a partition's pause across a rebalance, so one
    /// revoked while paused and assigned again later would otherwise never
    /// be fetched again (a group rejoin revokes everything for a moment).
    fn resume_paused(&mut self) -> Result<(), BusError> {
        if self.paused.count() == 0 {
            return Ok(());
        }
        let paused = std::mem::replace(&mut self.paused, TopicPartitionList::new());
        self.consumer.resume(&paused).map_err(kafka_err)?;
        tracing::info!(partitions = paused.count(), "resumed consumption");
        Ok(())
    }
}

/// Header names every StreamForge message carries, so receiving one does
/// not allocate its names again.
const KNOWN_HEADERS: &[&str] = &[
    headers::CONTENT_TYPE,
    headers::SCHEMA_VERSION,
    headers::SRC_ID,
    headers::TRACEPARENT,
];

fn header_name(name: &str) -> std::borrow::Cow<'static, str> {
    match KNOWN_HEADERS.iter().find(|k| **k == name) {
        Some(k) => std::borrow::Cow::Borrowed(k),
        None => std::borrow::Cow::Owned(name.to_string()),
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
                header_name(h.key),
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
        let first = loop {
            match self.consumer.recv().await {
                Ok(m) => break m,
                Err(e) if consumer_error_is_transient(&e) => self.passing(&e),
                Err(e) => return Err(kafka_err(e)),
            }
        };
        self.context.reachable();
        let mut out = vec![to_delivery(&first, &mut topics)];
        drop(first);
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(to_delivery(&m, &mut topics)),
                Some(Err(e)) if consumer_error_is_transient(&e) => {
                    self.passing(&e);
                    break;
                }
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
                Ok(Err(e)) if consumer_error_is_transient(&e) => self.passing(&e),
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
    consumer: Arc<KafkaStream>,
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
