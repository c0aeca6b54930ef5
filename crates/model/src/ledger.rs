//! [`Tally`]: what ingest counted of one provider's symbol in one minute.
//!
//! The completeness ledger keeps, per provider, symbol and minute, what
//! happened to the trades: received, rejected, duplicates (counted where
//! they happen, in ingest and the providers) and stored live or by
//! backfill (counted from the stored rows). The first three cross the bus
//! as tallies (content type [`TALLY_CONTENT_TYPE`]) keyed by symbol, in the
//! same publish as the ticks they count, and persist writes them in the
//! same transaction as the ticks of its batch.
//!
//! A tally is a delta. Each carries the id of the ingest process that
//! counted it (`producer`) and that process's sequence number, increasing
//! across its tallies, so a tally delivered again (after a crash between
//! the store's commit and the bus's) is applied once: the store keeps the
//! highest sequence applied per row and skips any tally at or below it.

use serde::{Deserialize, Serialize};

use crate::tick::{MAX_TICK_TIME, MIN_TICK_TIME};
use crate::{Symbol, Timestamp};

/// The bus `content-type` of a tally message.
pub const TALLY_CONTENT_TYPE: &str = "application/vnd.streamforge.tally+json";

/// Longest producer id a tally carries.
pub const MAX_PRODUCER: usize = 64;

/// Counts of one provider's trades of one symbol in one minute, from one
/// publish of one ingest process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub provider: String,
    pub symbol: Symbol,
    /// The minute's start (trade time; receipt time for a trade whose own
    /// time could not be read).
    pub minute: Timestamp,
    /// The ingest process that counted (random per process start).
    pub producer: String,
    /// The producer's sequence number of this tally.
    pub seq: u64,
    /// Trades the provider read (from its feed or its history), including
    /// those rejected and the duplicates.
    pub received: u64,
    /// Trades sent to the dead-letter topic.
    pub rejected: u64,
    /// Trades the provider had already sent (a venue resending a trade id,
    /// two connections overlapping at renewal), dropped before the bus.
    pub duplicates: u64,
}

/// The start of the minute `t` falls in.
pub fn minute_of(t: Timestamp) -> Timestamp {
    Timestamp::from_micros(
        t.as_micros()
            .div_euclid(60_000_000)
            .saturating_mul(60_000_000),
    )
}

impl Tally {
    /// The bus form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the bus form; the error says what was wrong.
    pub fn decode(bytes: &[u8]) -> Result<Tally, String> {
        let t: Tally = serde_json::from_slice(bytes).map_err(|e| format!("tally: {e}"))?;
        if !(minute_of(MIN_TICK_TIME)..=MAX_TICK_TIME).contains(&t.minute) {
            return Err(format!(
                "tally: minute ({}) is outside 1990-01-01 to 9999-12-31",
                t.minute
            ));
        }
        if minute_of(t.minute) != t.minute {
            return Err(format!(
                "tally: minute ({}) is not the start of a minute",
                t.minute
            ));
        }
        if t.provider.is_empty() || t.provider.len() > MAX_PRODUCER {
            return Err(format!(
                "tally: provider must have 1 to {MAX_PRODUCER} bytes, got {}",
                t.provider.len()
            ));
        }
        if t.producer.is_empty() || t.producer.len() > MAX_PRODUCER {
            return Err(format!(
                "tally: producer must have 1 to {MAX_PRODUCER} bytes, got {}",
                t.producer.len()
            ));
        }
        // Stored as signed 64-bit integers.
        for (field, n) in [
            ("seq", t.seq),
            ("received", t.received),
            ("rejected", t.rejected),
            ("duplicates", t.duplicates),
        ] {
            if n > i64::MAX as u64 {
                return Err(format!("tally: {field} ({n}) is above {}", i64::MAX));
            }
        }
        if t.rejected + t.duplicates > t.received {
            return Err(format!(
                "tally: rejected ({}) and duplicates ({}) exceed received ({})",
                t.rejected, t.duplicates, t.received
            ));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> Tally {
        Tally {
            provider: "binance".into(),
            symbol: Symbol::parse("BINANCE:BTCUSDT").unwrap(),
            minute: Timestamp::from_micros(1_756_325_700_000_000),
            producer: "a1b2".into(),
            seq: 7,
            received: 10,
            rejected: 1,
            duplicates: 2,
        }
    }

    #[test]
    fn round_trips() {
        let t = tally();
        assert_eq!(Tally::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn minutes_start_on_the_minute_also_before_1970() {
        assert_eq!(
            minute_of(Timestamp::from_micros(1_756_325_759_999_999)),
            Timestamp::from_micros(1_756_325_700_000_000)
        );
        assert_eq!(
            minute_of(Timestamp::from_micros(-1)),
            Timestamp::from_micros(-60_000_000)
        );
    }

    type Spoil = fn(&mut Tally);

    #[test]
    fn bad_tallies_say_what_is_wrong() {
        let cases: [(Spoil, &str); 5] = [
            (
                |t| t.minute = t.minute.saturating_add_micros(1),
                "not the start",
            ),
            (|t| t.producer.clear(), "producer"),
            (|t| t.provider = "x".repeat(65), "provider"),
            (|t| t.received = 2, "exceed received"),
            (|t| t.seq = u64::MAX, "seq"),
        ];
        for (change, expected) in cases {
            let mut t = tally();
            change(&mut t);
            let e = Tally::decode(&t.encode()).unwrap_err();
            assert!(e.contains(expected), "{e}");
        }
        let e = Tally::decode(b"{").unwrap_err();
        assert!(e.starts_with("tally: "), "{e}");
    }
}
