//! The message bus between ingest and the sinks.
//!
//! A [`Bus`] publishes batches of [`Message`]s (keyed by symbol, with
//! headers) to a topic and hands out [`Consumer`]s that receive them and
//! acknowledge by committing offsets. Delivery is at least once: whatever a
//! consumer group received but did not commit is delivered again to the next
//! consumer of that group.
//!
//! # Layout
//! - [`message`] — [`Message`], [`Headers`], [`Delivery`], [`Offset`].
//! - [`error`] — [`BusError`].
//! - [`memory`] — [`MemoryBus`], the bounded in-process bus (`memory://`).
//! - [`kafka`] — [`KafkaBus`], Kafka or a compatible broker (`kafka://`).
//! - [`connect`] — the registry that picks an implementation by URL scheme.

pub mod error;
pub mod kafka;
pub mod memory;
pub mod message;

use std::sync::Arc;

use async_trait::async_trait;

pub use error::BusError;
pub use kafka::{KafkaBus, KafkaOptions, KafkaProperties};
pub use memory::{MemoryBus, MemoryBusConfig};
pub use message::{Delivery, Headers, Message, Offset};

/// Where a consumer group with no committed offset starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest message the bus still holds.
    Earliest,
    /// Only messages published after the consumer was created.
    Latest,
}

/// How a consumer takes part in its topic.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Consumer group id; offsets are committed per group.
    pub group: String,
    pub start: StartFrom,
    /// A durable group holds messages until it commits them (and so slows
    /// producers when it falls behind). A non-durable one (a live tail)
    /// never slows anyone: when it falls behind it is told how many messages
    /// it missed.
    pub durable: bool,
}

/// What one [`Consumer::recv`] returned.
#[derive(Debug)]
pub enum Polled {
    /// One or more messages, in offset order per partition.
    Messages(Vec<Delivery>),
    /// A non-durable consumer fell behind and skipped this many messages.
    Lagged(u64),
    /// The bus was closed and every message has been received.
    Closed,
}

/// A message bus.
#[async_trait]
pub trait Bus: Send + Sync {
    /// The URL scheme of this implementation, e.g. `memory`.
    fn kind(&self) -> &'static str;

    /// Publishes a batch to `topic`; returns once the bus holds every message
    /// of it. Waits while the bus is full (backpressure).
    async fn publish(&self, topic: &str, batch: Vec<Message>) -> Result<(), BusError>;

    /// A consumer of `topic`.
    async fn consumer(
        &self,
        topic: &str,
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>, BusError>;

    /// Declares that nothing more will be published to `topic` from this
    /// process. On an in-process bus, further publishes fail and consumers
    /// receive what is left, then [`Polled::Closed`]. On a shared broker this
    /// is a no-op: other producers may still publish.
    async fn close_topic(&self, topic: &str);

    /// Whether messages survive this process (a broker). When they do not,
    /// consumers must drain a topic before the process exits.
    fn is_durable(&self) -> bool;

    /// Waits until everything published was delivered, at most `timeout`;
    /// the error says how many messages were not.
    async fn flush(&self, timeout: std::time::Duration) -> Result<(), BusError> {
        let _ = timeout;
        Ok(())
    }
}

/// Receives messages from one topic for one group.
#[async_trait]
pub trait Consumer: Send {
    /// Waits for messages and returns up to `max` of them.
    async fn recv(&mut self, max: usize) -> Result<Polled, BusError>;

    /// Holds the consumer's place while its owner cannot take messages (the
    /// store is down, say): a broker consumer pauses fetching and keeps its
    /// group membership alive, so a long outage causes no rebalance and
    /// no unbounded buffering. Returns only on error; stop idling by dropping
    /// the future, and resume by calling [`Consumer::recv`].
    async fn idle(&mut self) -> Result<(), BusError> {
        std::future::pending().await
    }

    /// A handle that commits this consumer's offsets from another task, so
    /// that receiving the next batch need not wait for the last one's commit.
    fn committer(&self) -> Arc<dyn Committer>;

    /// Acknowledges every message up to and including each given offset.
    async fn commit(&mut self, offsets: &[Offset]) -> Result<(), BusError> {
        self.committer().commit(offsets).await
    }
}

/// Commits offsets for a consumer group.
#[async_trait]
pub trait Committer: Send + Sync {
    /// Acknowledges every message up to and including each given offset.
    async fn commit(&self, offsets: &[Offset]) -> Result<(), BusError>;
}

/// Settings shared by bus implementations.
#[derive(Clone, Debug, Default)]
pub struct BusOptions {
    /// `memory://` settings.
    pub memory: MemoryBusConfig,
    /// `kafka://`: producer and topic settings.
    pub kafka: KafkaOptions,
    /// Where bus clients report what only they know (consumer lag).
    pub metrics: Option<streamforge_telemetry::Metrics>,
    /// Where durable consumers report whether they have partitions.
    pub health: Option<streamforge_telemetry::Health>,
    /// The task tree the bus's own background tasks join.
    pub tasks: Option<streamforge_telemetry::Tasks>,
}

/// How long [`connect`] waits for a broker's first answer.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// URL schemes [`connect`] understands.
pub const SCHEMES: &[&str] = &["memory", "kafka"];

/// Opens the bus named by `url`; the scheme picks the implementation.
pub async fn connect(url: &str, options: &BusOptions) -> Result<Arc<dyn Bus>, BusError> {
    let (scheme, _rest) = url.split_once("://").ok_or_else(|| BusError::Url {
        url: streamforge_model::settings::redact_url(url),
        reason: "expected SCHEME://...".into(),
    })?;
    match scheme {
        "memory" => Ok(Arc::new(MemoryBus::new(options.memory.capacity))),
        "kafka" => {
            let bus = KafkaBus::connect(url, options.kafka.clone(), options.metrics.clone())?;
            let bus = match &options.health {
                Some(h) => bus.with_health(h.clone()),
                None => bus,
            };
            let bus = match &options.tasks {
                Some(t) => bus.with_tasks(t.clone()),
                None => bus,
            };
            // Wrong credentials or an unreachable cluster fail here, at start-up.
            bus.check(CONNECT_TIMEOUT).await?;
            Ok(Arc::new(bus))
        }
        other => Err(BusError::Url {
            url: streamforge_model::settings::redact_url(url),
            reason: format!(
                "unknown scheme {other:?}; this build supports: {}",
                SCHEMES.join(", ")
            ),
        }),
    }
}
