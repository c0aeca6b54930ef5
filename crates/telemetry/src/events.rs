//! Events: a thing that happens is one type, defined beside the component
//! it happens in, whose [`Event::emit`] both logs it and counts it — so a
//! log line and its metric can never disagree or be forgotten one without
//! the other. Label values are the enums below (or the model's own enums,
//! such as `GapReason`), never free strings, so a metric's label set is
//! fixed by the code.
//!
//! Figures counted on the hot path for every message (frames, ticks,
//! bytes) are not events: they are counted per batch with no log line.

use crate::Metrics;

/// Something that happened, logged and counted by [`Event::emit`].
pub trait Event {
    /// Logs the event and updates its metrics.
    fn emit(self, metrics: &Metrics);
}

/// Defines a label-value enum with its Prometheus text, in one place.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}

labels! {
    /// `kind` of `streamforge_provider_errors_total`.
    ProviderErrorKind {
        /// Connecting or subscribing failed.
        Connect => "connect",
        /// The provider refused the credentials.
        Unauthorized => "unauthorized",
        /// No message within the silence limit.
        Silent => "silent",
        /// A message over the size limit.
        FrameTooLarge => "frame_too_large",
        /// The provider refused the subscription: too many symbols.
        TooManySymbols => "too_many_symbols",
        /// The provider refused a symbol.
        InvalidSymbol => "invalid_symbol",
        /// Any other error the provider reported.
        ServerError => "server_error",
        /// The venue's REST history answered 429 (or 418): requests wait.
        RateLimited => "rate_limited",
        /// A request to the venue's REST history failed.
        History => "history",
    }
}

labels! {
    /// `kind` of `streamforge_provider_frames_total`.
    FrameKind {
        Trade => "trade",
        Ping => "ping",
        /// Subscription replies, heartbeats, shutdown notices.
        Control => "control",
        Error => "error",
        Malformed => "malformed",
    }
}

labels! {
    /// `result` of `streamforge_cache_reads_total`.
    CacheRead {
        Hit => "hit",
        Miss => "miss",
        Error => "error",
    }
}

labels! {
    /// `limit` of `streamforge_http_refused_total`: the server limit that
    /// refused or cut a client.
    Refusal {
        MaxConnections => "max_connections",
        MaxStreams => "max_streams",
        RequestTimeout => "request_timeout",
        MaxSubscriptions => "max_subscriptions",
    }
}

labels! {
    /// `stage` of `streamforge_rejected_ticks_total`: where input was
    /// refused to the dead-letter topic.
    Stage {
        Ingest => "ingest",
        Persist => "persist",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_distinct_snake_case() {
        for all in [
            ProviderErrorKind::ALL
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>(),
            FrameKind::ALL.iter().map(|v| v.as_str()).collect(),
            CacheRead::ALL.iter().map(|v| v.as_str()).collect(),
            Refusal::ALL.iter().map(|v| v.as_str()).collect(),
            Stage::ALL.iter().map(|v| v.as_str()).collect(),
        ] {
            let mut seen = std::collections::HashSet::new();
            for v in all {
                assert!(
                    v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{v}"
                );
                assert!(seen.insert(v), "{v} twice");
            }
        }
    }
}
