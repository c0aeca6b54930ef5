//! Why a Coinbase message was refused: reason codes of the dead-letter path.

use crate::venue::decimal::DecimalError;

/// A `match` or `heartbeat` that could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum MessageError {
    #[error("{kind}: {source}")]
    Json {
        kind: &'static str,
        source: serde_json::Error,
    },
    #[error("price: {0}")]
    Price(DecimalError),
    #[error("size: {0}")]
    Size(DecimalError),
    #[error("time: not an RFC 3339 time: {0:?}")]
    Time(String),
}

impl MessageError {
    /// The reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            MessageError::Json { .. } => "malformed_trade",
            MessageError::Price(_) => "invalid_price",
            MessageError::Size(_) => "invalid_size",
            MessageError::Time(_) => "invalid_ts",
        }
    }
}
