//! What goes wrong with Finnhub: settings it cannot run with, and why a
//! connection attempt failed.

use crate::ProviderError;

use super::ID;

pub(super) fn config_error(reason: impl Into<String>) -> ProviderError {
    ProviderError::Config {
        provider: ID,
        reason: reason.into(),
    }
}

/// Why a connection attempt failed.
pub(super) enum ConnectError {
    Unauthorized,
    Other(String),
}
