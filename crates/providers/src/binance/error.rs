//! Why a Binance message was refused: reason codes of the dead-letter path.

use crate::venue::decimal::DecimalError;

/// A trade event that could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum TradeError {
    #[error("trade: {0}")]
    Json(#[from] serde_json::Error),
    #[error("p (price): {0}")]
    Price(DecimalError),
    #[error("q (quantity): {0}")]
    Quantity(DecimalError),
}

impl TradeError {
    /// The reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            TradeError::Json(_) => "malformed_trade",
            TradeError::Price(_) => "invalid_price",
            TradeError::Quantity(_) => "invalid_size",
        }
    }
}
