//! [`Gap`]: a span of time in which a feed may have missed trades.
//!
//! Providers record one when their connection drops or goes silent, or
//! when a venue's trade ids jump. A venue with a trade history heals it:
//! the gap moves `open → healing → healed | unrecoverable` ([`GapStatus`]),
//! each step a new record of the same gap (same provider, symbol and
//! start) that the store folds into one row. Where nothing heals it, the
//! gap is the only trace of what was missed.
//! Gaps travel on the bus beside ticks (content type [`GAP_CONTENT_TYPE`])
//! and are stored per symbol.

use serde::{Deserialize, Serialize};

use crate::{Symbol, Timestamp};

/// Longest `detail` a gap carries.
pub const MAX_DETAIL: usize = 512;

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
    /// The venue's trade ids jumped: trades were missed while the
    /// connection stayed up.
    Sequence,
    /// The process was stopped: from its last trade to when it ran again.
    Downtime,
}

impl GapReason {
    pub const ALL: [GapReason; 5] = [
        GapReason::Disconnected,
        GapReason::Silent,
        GapReason::BusUnavailable,
        GapReason::Sequence,
        GapReason::Downtime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Disconnected => "disconnected",
            GapReason::Silent => "silent",
            GapReason::BusUnavailable => "bus_unavailable",
            GapReason::Sequence => "sequence",
            GapReason::Downtime => "downtime",
        }
    }

    pub fn parse(text: &str) -> Option<GapReason> {
        GapReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Where healing a gap stands.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GapStatus {
    /// Recorded; nothing has healed it (yet).
    #[default]
    Open,
    /// The venue's history is being read.
    Healing,
    /// Every missed trade was taken from the venue's history.
    Healed,
    /// It cannot heal (`detail` says why); what could be taken was stored.
    Unrecoverable,
}

impl GapStatus {
    pub const ALL: [GapStatus; 4] = [
        GapStatus::Open,
        GapStatus::Healing,
        GapStatus::Healed,
        GapStatus::Unrecoverable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GapStatus::Open => "open",
            GapStatus::Healing => "healing",
            GapStatus::Healed => "healed",
            GapStatus::Unrecoverable => "unrecoverable",
        }
    }

    pub fn parse(text: &str) -> Option<GapStatus> {
        GapStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Healed or unrecoverable: nothing more happens to the gap.
    pub fn is_final(self) -> bool {
        matches!(self, GapStatus::Healed | GapStatus::Unrecoverable)
    }
}

/// What healing a gap knows and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Healing {
    pub status: GapStatus,
    /// The first venue trade id missed, when the venue numbers trades.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_id: Option<u64>,
    /// The last venue trade id missed, once known (for an outage: when the
    /// first trade after it arrives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_id: Option<u64>,
    /// Trades taken from the venue's history.
    #[serde(skip_serializing_if = "is_zero")]
    pub backfilled: u64,
    /// Why the gap cannot heal, or what healing could not take.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Healing {
    /// This record of a gap over `earlier` (the same gap, stored before):
    /// the status only moves forward, known ids stay known, the counts
    /// and the reason of the later step win.
    pub fn merge(&self, earlier: &Healing) -> Healing {
        let later_wins = self.status >= earlier.status;
        let (newer, older) = if later_wins {
            (self, earlier)
        } else {
            (earlier, self)
        };
        Healing {
            status: newer.status,
            first_id: newer.first_id.or(older.first_id),
            last_id: newer.last_id.or(older.last_id),
            backfilled: self.backfilled.max(earlier.backfilled),
            detail: if newer.detail.is_empty() {
                older.detail.clone()
            } else {
                newer.detail.clone()
            },
        }
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
    /// Healing from the venue's history (additive on the bus).
    #[serde(flatten)]
    pub healing: Healing,
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
        if let (Some(first), Some(last)) = (gap.healing.first_id, gap.healing.last_id) {
            if last < first {
                return Err(format!(
                    "gap: last_id ({last}) is before first_id ({first})"
                ));
            }
        }
        if gap.healing.detail.len() > MAX_DETAIL {
            return Err(format!(
                "gap: detail is {} bytes, more than {MAX_DETAIL}",
                gap.healing.detail.len()
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
            healing: crate::gap::Healing::default(),
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
            healing: crate::gap::Healing::default(),
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
    fn healing_only_moves_forward_and_old_records_still_read() {
        let old = br#"{"provider":"finnhub","connection":0,"symbol":"AAPL","from":1,"to":2,"reason":"silent"}"#;
        let g = Gap::decode(old).unwrap();
        assert_eq!(g.healing, Healing::default());
        assert_eq!(g.healing.status, GapStatus::Open);
        let mut healing = g.clone();
        healing.healing = Healing {
            status: GapStatus::Healing,
            first_id: Some(10),
            last_id: Some(19),
            ..Healing::default()
        };
        let back = Gap::decode(&healing.encode()).unwrap();
        assert_eq!(back, healing);
        let healed = Healing {
            status: GapStatus::Healed,
            backfilled: 10,
            ..Healing::default()
        };
        let merged = healed.merge(&healing.healing);
        assert_eq!(
            (
                merged.status,
                merged.first_id,
                merged.last_id,
                merged.backfilled
            ),
            (GapStatus::Healed, Some(10), Some(19), 10)
        );
        // A late `open` (a redelivery) does not move it back.
        let again = Healing::default().merge(&merged);
        assert_eq!(again.status, GapStatus::Healed);
        assert_eq!(again.backfilled, 10);
        let mut inverted = healing.clone();
        inverted.healing.last_id = Some(3);
        assert!(Gap::decode(&inverted.encode())
            .unwrap_err()
            .contains("last_id"));
        for s in GapStatus::ALL {
            assert_eq!(GapStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn reasons_have_stable_names() {
        let names: Vec<&str> = GapReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "disconnected",
                "silent",
                "bus_unavailable",
                "sequence",
                "downtime"
            ]
        );
        for r in GapReason::ALL {
            assert_eq!(GapReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(GapReason::parse("Silent"), None);
        assert_eq!(GapReason::parse(""), None);
    }
}
