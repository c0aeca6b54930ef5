//! The API's events, each logged and counted by one `emit()`
//! (`telemetry::events`).

use streamforge_telemetry::events::Refusal;
use streamforge_telemetry::{Event, Metrics};

/// A server limit refused or cut a client (it gets a 503, a close, or an
/// error message saying which limit).
pub(crate) struct LimitReached {
    pub limit: Refusal,
}

impl Event for LimitReached {
    fn emit(self, metrics: &Metrics) {
        metrics.http_refused(self.limit);
        // Debug only: under a flood this is one line per refused request.
        tracing::debug!(
            limit = self.limit.as_str(),
            "a server limit refused a client"
        );
    }
}

/// A WebSocket client did not read fast enough and is disconnected.
pub(crate) struct SlowClientDisconnected<'a> {
    pub detail: &'a str,
}

impl Event for SlowClientDisconnected<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.stream_slow_disconnect();
        tracing::info!(
            detail = self.detail,
            "disconnecting a slow WebSocket client"
        );
    }
}
