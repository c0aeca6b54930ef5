//! [`BusError`]: what can go wrong talking to a bus.

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
}

impl BusError {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BusError::Unavailable(_))
    }
}
