//! What happens to a venue connection, each logged and counted by one
//! `emit()` (`telemetry::events`). Per-frame counts (`provider_frames`) are
//! figures of the hot path, not events.

use std::time::Duration;

use streamforge_model::{GapReason, Symbol, Timestamp};
use streamforge_telemetry::events::{FrameKind, ProviderErrorKind};
use streamforge_telemetry::{Event, Metrics};

/// A connection is up and subscribed.
pub(super) struct Connected {
    pub provider: &'static str,
    pub connection: u32,
    pub symbols: usize,
    /// It replaces a connection that is still open (lifetime, shutdown notice).
    pub successor: bool,
}

impl Event for Connected {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_connected(self.provider, true);
        tracing::info!(
            provider = self.provider,
            connection = self.connection,
            symbols = self.symbols,
            successor = self.successor,
            "{} connected and subscribed",
            self.provider
        );
    }
}

/// A connection that was up ended (at shutdown or when replaced: no reason).
pub(super) struct Disconnected {
    pub provider: &'static str,
    pub connection: u32,
    pub reason: Option<GapReason>,
}

impl Event for Disconnected {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_connected(self.provider, false);
        if let Some(reason) = self.reason {
            tracing::warn!(
                provider = self.provider,
                connection = self.connection,
                reason = reason.as_str(),
                "{} feed lost; reconnecting",
                self.provider
            );
        }
    }
}

/// A connection is tried again.
pub(super) struct Reconnecting {
    pub provider: &'static str,
}

impl Event for Reconnecting {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_reconnect(self.provider);
    }
}

/// A connection is renewed before the venue closes it.
pub(super) struct Renewing {
    pub provider: &'static str,
    pub connection: u32,
    /// `lifetime` or `shutdown notice`.
    pub why: &'static str,
}

impl Event for Renewing {
    fn emit(self, _metrics: &Metrics) {
        tracing::info!(
            provider = self.provider,
            connection = self.connection,
            why = self.why,
            "{} connection renewed, overlapping",
            self.provider
        );
    }
}

/// Connecting or subscribing failed; the client backs off and tries again.
pub(super) struct ConnectFailed<'a> {
    pub provider: &'static str,
    pub connection: u32,
    pub error: &'a dyn std::fmt::Display,
}

impl Event for ConnectFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(self.provider, ProviderErrorKind::Connect);
        tracing::warn!(
            provider = self.provider,
            connection = self.connection,
            error = %self.error,
            "{} connection failed",
            self.provider
        );
    }
}

/// No message within the silence limit: the connection is made again.
pub(super) struct WentSilent {
    pub provider: &'static str,
    pub connection: u32,
    pub silence: Duration,
}

impl Event for WentSilent {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(self.provider, ProviderErrorKind::Silent);
        tracing::warn!(
            provider = self.provider,
            connection = self.connection,
            silence = ?self.silence,
            "{} sent nothing within the silence limit",
            self.provider
        );
    }
}

/// A message over the size limit was refused before it was buffered.
pub(super) struct FrameTooLarge<'a> {
    pub provider: &'static str,
    pub connection: u32,
    pub error: &'a str,
}

impl Event for FrameTooLarge<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(self.provider, ProviderErrorKind::FrameTooLarge);
        tracing::warn!(
            provider = self.provider,
            connection = self.connection,
            error = self.error,
            "{} message refused",
            self.provider
        );
    }
}

/// The venue sent an error message.
pub(super) struct ServerError<'a> {
    pub provider: &'static str,
    pub connection: u32,
    pub message: &'a str,
}

impl Event for ServerError<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_frame(self.provider, FrameKind::Error);
        metrics.provider_error(self.provider, ProviderErrorKind::ServerError);
        tracing::error!(
            provider = self.provider,
            connection = self.connection,
            message = self.message,
            "{} reported an error",
            self.provider
        );
    }
}

/// The feed was down from `from` to `to`: one gap per symbol of the
/// connection goes downstream.
pub(crate) struct GapRecorded {
    pub provider: &'static str,
    pub connection: u32,
    pub reason: GapReason,
    pub from: Timestamp,
    pub to: Timestamp,
    pub symbols: usize,
}

impl Event for GapRecorded {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_gap(
            self.provider,
            self.reason,
            (self.to.as_micros() - self.from.as_micros()) as f64 / 1e6,
        );
        tracing::warn!(
            provider = self.provider,
            connection = self.connection,
            reason = self.reason.as_str(),
            from = %self.from,
            to = %self.to,
            symbols = self.symbols,
            "{} feed gap recorded",
            self.provider
        );
    }
}

/// The venue's trade ids of `symbol` jumped over `first..=last`.
pub(super) struct SequenceGap<'a> {
    pub provider: &'static str,
    pub connection: u32,
    pub symbol: &'a Symbol,
    pub first: u64,
    pub last: u64,
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Event for SequenceGap<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_gap(
            self.provider,
            GapReason::Sequence,
            (self.to.as_micros() - self.from.as_micros()).max(0) as f64 / 1e6,
        );
        tracing::warn!(
            provider = self.provider,
            connection = self.connection,
            symbol = %self.symbol,
            first_missing = self.first,
            last_missing = self.last,
            missing = self.last - self.first + 1,
            "{} trade ids jumped: trades missed with the connection up",
            self.provider
        );
    }
}

/// The venue's history answered 429 or 418: the healer waits `wait`.
pub(crate) struct HistoryRateLimited {
    pub provider: &'static str,
    pub status: u16,
    pub wait: Duration,
}

impl Event for HistoryRateLimited {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(self.provider, ProviderErrorKind::RateLimited);
        tracing::warn!(
            provider = self.provider,
            status = self.status,
            wait = ?self.wait,
            "{} history rate limit: waiting as asked",
            self.provider
        );
    }
}

/// A request to the venue's history failed (it may be tried again).
pub(crate) struct HistoryFailed<'a> {
    pub provider: &'static str,
    pub error: &'a str,
}

impl Event for HistoryFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_error(self.provider, ProviderErrorKind::History);
        tracing::warn!(
            provider = self.provider,
            error = self.error,
            "{} history request failed",
            self.provider
        );
    }
}

/// Healing a gap ended: healed, or unrecoverable with the reason.
pub(crate) struct GapHealEnded<'a> {
    pub provider: &'static str,
    pub gap: &'a streamforge_model::Gap,
}

impl Event for GapHealEnded<'_> {
    fn emit(self, metrics: &Metrics) {
        let (g, provider) = (self.gap, self.provider);
        metrics.provider_gap_healed(provider, g.healing.status);
        if g.healing.status == streamforge_model::GapStatus::Healed {
            tracing::info!(
                provider,
                symbol = %g.symbol,
                from = %g.from,
                backfilled = g.healing.backfilled,
                "{provider} gap healed from the trade history"
            );
        } else {
            tracing::warn!(
                provider,
                symbol = %g.symbol,
                from = %g.from,
                backfilled = g.healing.backfilled,
                detail = %g.healing.detail,
                "{provider} gap cannot heal"
            );
        }
    }
}
