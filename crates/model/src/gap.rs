//! [`Gap`]: a span of time in which a feed may have missed trades.
//!
//! Providers record one when their connection drops or goes silent; no
//! provider replays what was missed, so a gap is the only trace of it.
//! Gaps travel on the bus beside ticks (content type [`GAP_CONTENT_TYPE`])
//! and are stored per symbol.

use serde::{Deserialize, Serialize};

use crate::{Symbol, Timestamp};

/// The bus `content-type` of a gap message.
pub const GAP_CONTENT_TYPE: &str = "application/vnd.streamforge.gap+json";

/// Why a feed had a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The connection closed or failed.
    Disconnected,
    /// The connection stayed open but nothing arrived for the silence window.
    Silent,
    /// The bus did not take ingest's messages (the broker was unreachable
    /// past the delivery timeout); ingest held them and took no new input.
    BusUnavailable,
}

impl GapReason {
    pub const ALL: [GapReason; 3] = [
        GapReason::Disconnected,
        GapReason::Silent,
        GapReason::BusUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Disconnected => "disconnected",
            GapReason::Silent => "silent",
            GapReason::BusUnavailable => "bus_unavailable",
        }
    }

    pub fn parse(text: &str) -> Option<GapReason> {
        GapReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// A span `[from, to)` in which `provider` may have missed trades of
/// `symbol`: from the last message before the failure to the moment the
/// feed was subscribed again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub provider: String,
    /// Which of the provider's connections (0-based).
    pub connection: u32,
    pub symbol: Symbol,
    pub from: Timestamp,
    pub to: Timestamp,
    pub reason: GapReason,
}

impl Gap {
    /// The gap's length in seconds.
    pub fn seconds(&self) -> f64 {
        self.to
            .as_micros()
            .saturating_sub(self.from.as_micros())
            .max(0) as f64
            / 1e6
    }

    /// The bus form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the bus form; the error says what was wrong.
    pub fn decode(bytes: &[u8]) -> Result<Gap, String> {
        let gap: Gap = serde_json::from_slice(bytes).map_err(|e| format!("gap: {e}"))?;
        for (field, t) in [("from", gap.from), ("to", gap.to)] {
            if !(Timestamp::from_micros(0)..=crate::tick::MAX_TICK_TIME).contains(&t) {
                return Err(format!(
                    "gap: {field} ({t}) is outside 1970-01-01 to 9999-12-31"
                ));
            }
        }
        if gap.to < gap.from {
            return Err(format!(
                "gap: to ({}) is before from ({})",
                gap.to, gap.from
            ));
        }
        Ok(gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_of_range_are_refused_and_lengths_never_overflow() {
        let json = |from: i64, to: i64| {
            format!(
                r#"{{"provider":"finnhub","connection":0,"symbol":"AAPL","from":{from},"to":{to},"reason":"silent"}}"#
            )
        };
        let e = Gap::decode(json(i64::MIN, i64::MAX).as_bytes()).unwrap_err();
        assert!(e.contains("from"), "{e}");
        let e = Gap::decode(json(1_700_000_000_000, i64::MAX).as_bytes()).unwrap_err();
        assert!(e.contains("to"), "{e}");
        // An empty span (from = to) is a gap of zero seconds, not an error.
        let empty = Gap::decode(json(1_700_000_000_000, 1_700_000_000_000).as_bytes()).unwrap();
        assert_eq!(empty.seconds(), 0.0);
        assert!(Gap::decode(json(1_700_000_000_001, 1_700_000_000_000).as_bytes()).is_err());
        let wide = Gap {
            provider: "p".into(),
            connection: 0,
            symbol: crate::Symbol::parse("AAPL").unwrap(),
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            reason: GapReason::Silent,
        };
        assert!(wide.seconds().is_finite() && wide.seconds() > 0.0);
    }

    #[test]
    fn round_trips_and_rejects_inverted_spans() {
        let gap = Gap {
            provider: "finnhub".into(),
            connection: 1,
            symbol: Symbol::parse("AAPL").unwrap(),
            from: Timestamp::from_millis(1_000),
            to: Timestamp::from_millis(3_500),
            reason: GapReason::Silent,
        };
        let bytes = gap.encode();
        assert!(String::from_utf8_lossy(&bytes).contains(r#""reason":"silent""#));
        assert_eq!(Gap::decode(&bytes).unwrap(), gap);
        assert_eq!(gap.seconds(), 2.5);
        let inverted = Gap {
            to: Timestamp::from_millis(0),
            ..gap
        };
        assert!(Gap::decode(&inverted.encode())
            .unwrap_err()
            .contains("before"));
        assert!(Gap::decode(b"{}").unwrap_err().starts_with("gap:"));
    }

    #[test]
    fn reasons_have_stable_names() {
        let names: Vec<&str> = GapReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["disconnected", "silent", "bus_unavailable"]);
        for r in GapReason::ALL {
            assert_eq!(GapReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(GapReason::parse("Silent"), None);
        assert_eq!(GapReason::parse(""), None);
    }
}
