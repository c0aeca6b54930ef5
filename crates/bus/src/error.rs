//! [`BusError`]: what can go wrong talking to a bus.

use crate::Message;

/// A bus failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("the bus is closed")]
    Closed,
    #[error("consumer group {group:?} already has an active consumer on topic {topic:?}")]
    GroupBusy { topic: String, group: String },
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// Part of a published batch was not acknowledged (the broker was
    /// unreachable past the delivery timeout, say). The rest was; publishing
    /// `undelivered` again completes the batch.
    #[error("{} of {of} messages to {topic} were not delivered: {reason}", undelivered.len())]
    Undelivered {
        topic: String,
        of: usize,
        undelivered: Vec<Message>,
        reason: String,
    },
    /// The client's settings are wrong (an unknown property, a bad value,
    /// credentials the broker refused); the message names the setting.
    #[error("bus configuration: {0}")]
    Config(String),
}

impl BusError {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BusError::Unavailable(_) | BusError::Undelivered { .. }
        )
    }
}
