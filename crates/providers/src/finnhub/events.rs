//! What happens to a Finnhub connection, each logged and counted by one
//! `emit()` (`telemetry::events`). Per-frame counts (`provider_frames`) are
//! figures of the hot path, not events.

use std::time::Duration;

use streamforge_model::{GapReason, Timestamp};
use streamforge_telemetry::events::{FrameKind, ProviderErrorKind};
use streamforge_telemetry::{Event, Metrics};

use super::ID;

/// A connection is up and subscribed.
pub(super) struct Connected {
    pub connection: u32,
    pub symbols: usize,
}

impl Event for Connected {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_connected(ID, true);
        tracing::info!(
            connection = self.connection,
            symbols = self.symbols,
            "finnhub connected and subscribed"
        );
    }
}

/// A connection that was up ended (also at shutdown: `reason` is `None`).
pub(super) struct Disconnected {
    pub connection: u32,
    pub reason: Option<GapReason>,
}

impl Event for Disconnected {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_connected(ID, false);
        if let Some(reason) = self.reason {
            tracing::warn!(
                connection = self.connection,
                reason = reason.as_str(),
                "finnhub feed lost; reconnecting"
            );
        }
    }
}

/// A connection is tried again.
pub(super) struct Reconnecting;

impl Event for Reconnecting {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_reconnect(ID);
    }
}

/// Connecting or subscribing failed; the client backs off and tries again.
pub(super) struct ConnectFailed<'a> {
    pub connection: u32,
    /// `connection` or `subscribe`.
    pub step: &'static str,
    /// Already redacted of the token.
    pub error: &'a dyn std::fmt::Display,
}

impl Event for ConnectFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(ID, ProviderErrorKind::Connect);
        tracing::warn!(
            connection = self.connection,
            step = self.step,
            error = %self.error,
            "finnhub {} failed",
            self.step
        );
    }
}

/// Finnhub refused the token (HTTP 401).
pub(super) struct TokenRejected {
    pub connection: u32,
    pub retry_in: Duration,
}

impl Event for TokenRejected {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(ID, ProviderErrorKind::Unauthorized);
        tracing::error!(
            connection = self.connection,
            retry_in = ?self.retry_in,
            "finnhub rejected the token (HTTP 401): check FINNHUB_TOKEN / [finnhub] token"
        );
    }
}

/// No message within `finnhub.silence`: the connection is made again.
pub(super) struct WentSilent {
    pub connection: u32,
    pub silence: Duration,
}

impl Event for WentSilent {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(ID, ProviderErrorKind::Silent);
        tracing::warn!(
            connection = self.connection,
            silence = ?self.silence,
            "finnhub sent nothing within the silence limit"
        );
    }
}

/// A message over the size limit was refused before it was buffered.
pub(super) struct FrameTooLarge<'a> {
    pub connection: u32,
    pub error: &'a str,
}

impl Event for FrameTooLarge<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(ID, ProviderErrorKind::FrameTooLarge);
        tracing::warn!(
            connection = self.connection,
            error = self.error,
            "finnhub message refused"
        );
    }
}

/// Finnhub sent an `error` message.
pub(super) struct ServerError<'a> {
    pub connection: u32,
    pub message: &'a str,
}

impl ServerError<'_> {
    /// What the message says went wrong.
    pub fn kind(&self) -> ProviderErrorKind {
        if self.message.contains("too many symbols") {
            ProviderErrorKind::TooManySymbols
        } else if self.message.starts_with("Invalid symbol") {
            ProviderErrorKind::InvalidSymbol
        } else {
            ProviderErrorKind::ServerError
        }
    }
}

impl Event for ServerError<'_> {
    fn emit(self, metrics: &Metrics) {
        let kind = self.kind();
        metrics.provider_frame(ID, FrameKind::Error);
        metrics.provider_error(ID, kind);
        tracing::error!(
            connection = self.connection,
            kind = kind.as_str(),
            message = self.message,
            "finnhub reported an error"
        );
    }
}

/// The feed was down from `from` to `to`: one gap per symbol of the
/// connection goes downstream.
pub(super) struct GapRecorded {
    pub connection: u32,
    pub reason: GapReason,
    pub from: Timestamp,
    pub to: Timestamp,
    pub symbols: usize,
}

impl Event for GapRecorded {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_gap(
            ID,
            self.reason,
            (self.to.as_micros() - self.from.as_micros()) as f64 / 1e6,
        );
        tracing::warn!(
            connection = self.connection,
            reason = self.reason.as_str(),
            from = %self.from,
            to = %self.to,
            symbols = self.symbols,
            "finnhub feed gap recorded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_by_their_message() {
        let kind = |message| {
            ServerError {
                connection: 0,
                message,
            }
            .kind()
        };
        assert_eq!(
            kind("Subscribing to too many symbols"),
            ProviderErrorKind::TooManySymbols
        );
        assert_eq!(
            kind("Invalid symbol ZZZZ"),
            ProviderErrorKind::InvalidSymbol
        );
        assert_eq!(kind("something else"), ProviderErrorKind::ServerError);
    }

    #[test]
    fn emitting_counts_by_enum_label() {
        let m = Metrics::new();
        ServerError {
            connection: 1,
            message: "Invalid symbol X",
        }
        .emit(&m);
        WentSilent {
            connection: 1,
            silence: Duration::from_secs(1),
        }
        .emit(&m);
        GapRecorded {
            connection: 1,
            reason: GapReason::Silent,
            from: Timestamp::from_millis(0),
            to: Timestamp::from_millis(2_000),
            symbols: 3,
        }
        .emit(&m);
        let stats = m.snapshot();
        let finnhub = &stats.providers["finnhub"];
        assert_eq!(finnhub.errors.get("invalid_symbol"), Some(&1));
        assert_eq!(finnhub.errors.get("silent"), Some(&1));
        assert_eq!(finnhub.frames.get("error"), Some(&1));
        assert_eq!(finnhub.gaps.get("silent"), Some(&1));
    }
}
