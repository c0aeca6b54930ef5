//! [`TickId`]: the deterministic identity of a trade.
//!
//! The id is an XXH3-64 hash of the provider id, symbol, event time, price,
//! size and condition codes, seeded with the trade's occurrence index among
//! identical trades in the same provider frame. The same trade delivered
//! twice (a retry, a Kafka redelivery, a replayed recording) gets the same
//! id, and two genuinely identical trades in one frame get different ones.
//! Stores key on `(symbol, ts, tick_id)`, which makes every write idempotent.
//!
//! A trade that carries its venue's trade id (`source_id`: Binance `t`,
//! Coinbase `trade_id`) is identified by that instead
//! ([`TickId::from_source`]): a hash of the provider id, symbol and source
//! id. Two identical trades in different frames stay two trades, and the
//! same trade seen on the WebSocket and again in the venue's REST history
//! is one row.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::Xxh3;

use crate::{Symbol, Timestamp};

/// A 64-bit tick id; shown as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TickId(pub u64);

impl TickId {
    /// Computes the id from the fields named in the module docs.
    pub fn compute(
        src_id: &str,
        symbol: &Symbol,
        ts: Timestamp,
        price: f64,
        size: f64,
        conditions: &[String],
        occurrence: u32,
    ) -> TickId {
        let mut h = Xxh3::with_seed(u64::from(occurrence));
        h.update(src_id.as_bytes());
        h.update(&[0xff]);
        h.update(symbol.as_str().as_bytes());
        h.update(&[0xff]);
        h.update(&ts.as_micros().to_le_bytes());
        h.update(&normalized_bits(price).to_le_bytes());
        h.update(&normalized_bits(size).to_le_bytes());
        for c in conditions {
            h.update(c.as_bytes());
            h.update(&[0xfe]);
        }
        TickId(h.digest())
    }

    /// The id of a trade the venue numbered: provider id, symbol and the
    /// venue's trade id, whatever its price, size or frame.
    pub fn from_source(src_id: &str, symbol: &Symbol, source_id: &str) -> TickId {
        // Seeded apart from `compute`'s occurrence seeds (0, 1, 2, ...).
        let mut h = Xxh3::with_seed(SOURCE_SEED);
        h.update(src_id.as_bytes());
        h.update(&[0xff]);
        h.update(symbol.as_str().as_bytes());
        h.update(&[0xff]);
        h.update(source_id.as_bytes());
        TickId(h.digest())
    }

    /// The id as a signed integer, the way SQL `BIGINT` columns hold it.
    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }

    pub fn from_i64(v: i64) -> Self {
        TickId(v as u64)
    }
}

/// Seed of [`TickId::from_source`]: never an occurrence index.
const SOURCE_SEED: u64 = 0x5f0u64 << 48 | 0x7263_6964;

/// `-0.0` and `0.0` are the same size.
fn normalized_bits(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

impl fmt::Display for TickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for TickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TickId({self})")
    }
}

/// Not 1 to 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tick_id: expected 1 to 16 hex digits, got {0:?}")]
pub struct TickIdError(pub String);

impl FromStr for TickId {
    type Err = TickIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 {
            return Err(TickIdError(s.chars().take(40).collect()));
        }
        u64::from_str_radix(s, 16)
            .map(TickId)
            .map_err(|_| TickIdError(s.chars().take(40).collect()))
    }
}

impl TickId {
    /// The 16 lowercase hex digits of [`fmt::Display`], on the stack.
    pub(crate) fn hex(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, digit) in out.iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[(self.0 >> ((15 - i) * 4)) as usize & 0xf];
        }
        out
    }
}

impl Serialize for TickId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex = self.hex();
        // Hex digits only.
        match std::str::from_utf8(&hex) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for TickId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Counts identical trades within one provider frame.
///
/// Feed it the occurrence-0 id of each trade in frame order; it answers the
/// occurrence index to use. Reuse one counter across frames (call
/// [`OccurrenceCounter::reset`] between frames) to avoid allocations.
#[derive(Debug, Default)]
pub struct OccurrenceCounter {
    seen: HashMap<TickId, u32>,
}

impl OccurrenceCounter {
    pub fn reset(&mut self) {
        self.seen.clear();
    }

    /// 0 the first time `base` is seen in this frame, then 1, 2, ...
    pub fn next(&mut self, base: TickId) -> u32 {
        let n = self.seen.entry(base).or_insert(0);
        let occurrence = *n;
        *n += 1;
        occurrence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    #[test]
    fn id_is_stable_across_releases() {
        // If this changes, every stored tick would be written again: never change it.
        let id = TickId::compute(
            "finnhub",
            &sym("AAPL"),
            Timestamp::from_millis(1_628_238_530_221),
            146.76,
            43.0,
            &["1".into(), "24".into()],
            0,
        );
        assert_eq!(id.to_string(), "be43776dcb2319ba");
        assert_eq!(id, id.to_string().parse().unwrap());
        assert_eq!(TickId::from_i64(id.as_i64()), id);
        let again = TickId::compute(
            "finnhub",
            &sym("AAPL"),
            Timestamp::from_millis(1_628_238_530_221),
            146.76,
            43.0,
            &["1".into(), "24".into()],
            0,
        );
        assert_eq!(id, again);
    }

    #[test]
    fn every_field_and_the_occurrence_change_the_id() {
        let base = |src: &str, s: &str, ms: i64, p: f64, v: f64, c: &[String], o: u32| {
            TickId::compute(src, &sym(s), Timestamp::from_millis(ms), p, v, c, o)
        };
        let a = base("finnhub", "AAPL", 1, 1.0, 1.0, &[], 0);
        assert_ne!(a, base("synthetic", "AAPL", 1, 1.0, 1.0, &[], 0));
        assert_ne!(a, base("finnhub", "MSFT", 1, 1.0, 1.0, &[], 0));
        assert_ne!(a, base("finnhub", "AAPL", 2, 1.0, 1.0, &[], 0));
        assert_ne!(a, base("finnhub", "AAPL", 1, 1.5, 1.0, &[], 0));
        assert_ne!(a, base("finnhub", "AAPL", 1, 1.0, 2.0, &[], 0));
        assert_ne!(a, base("finnhub", "AAPL", 1, 1.0, 1.0, &["1".into()], 0));
        assert_ne!(a, base("finnhub", "AAPL", 1, 1.0, 1.0, &[], 1));
        // Condition boundaries matter: ["12"] is not ["1", "2"].
        assert_ne!(
            base("f", "A", 1, 1.0, 1.0, &["12".into()], 0),
            base("f", "A", 1, 1.0, 1.0, &["1".into(), "2".into()], 0)
        );
    }

    #[test]
    fn a_venue_trade_id_alone_identifies_the_trade() {
        let a = TickId::from_source("binance", &sym("BINANCE:BTCUSDT"), "4133");
        // Stable across releases, like `compute`: never change it.
        assert_eq!(a.to_string(), "3bf5e77378057794");
        assert_ne!(
            a,
            TickId::from_source("binance", &sym("BINANCE:BTCUSDT"), "4134")
        );
        assert_ne!(
            a,
            TickId::from_source("binance", &sym("BINANCE:ETHUSDT"), "4133")
        );
        assert_ne!(
            a,
            TickId::from_source("coinbase", &sym("BINANCE:BTCUSDT"), "4133")
        );
        // Field boundaries matter.
        assert_ne!(
            TickId::from_source("b", &sym("A1"), "2"),
            TickId::from_source("b", &sym("A"), "12")
        );
    }

    #[test]
    fn occurrence_counter_numbers_repeats() {
        let mut c = OccurrenceCounter::default();
        assert_eq!(c.next(TickId(7)), 0);
        assert_eq!(c.next(TickId(8)), 0);
        assert_eq!(c.next(TickId(7)), 1);
        assert_eq!(c.next(TickId(7)), 2);
        c.reset();
        assert_eq!(c.next(TickId(7)), 0);
    }

    #[test]
    fn parse_rejects_non_hex() {
        assert!("xyz".parse::<TickId>().is_err());
        assert!("".parse::<TickId>().is_err());
        assert!("00000000000000001".parse::<TickId>().is_err());
    }

    #[test]
    fn ids_print_as_sixteen_hex_digits() {
        let id = TickId::from_i64(0x1f);
        assert_eq!(id.to_string(), "000000000000001f");
        assert_eq!(format!("{id:?}"), "TickId(000000000000001f)");
    }
}
