//! [`Candle`]: OHLCV over one time bucket, and the [`Interval`]s supported.
//!
//! Buckets are aligned to the Unix epoch in UTC (a `1d` candle starts at
//! midnight UTC). Within a bucket, ticks are ordered by [`Tick::sort_key`]
//! (event time, then tick id): the open is the first, the close the last.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Symbol, Tick, Timestamp};

/// A candle width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Interval {
    #[serde(rename = "1s")]
    S1,
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "1d")]
    D1,
}

/// Not one of the supported intervals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of 1s, 1m, 5m, 15m, 1h, 1d, got {0:?}")]
pub struct IntervalError(pub String);

impl Interval {
    pub const ALL: [Interval; 6] = [
        Interval::S1,
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::H1,
        Interval::D1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::S1 => "1s",
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        }
    }

    pub fn micros(self) -> i64 {
        let s = Timestamp::MICROS_PER_SECOND;
        match self {
            Interval::S1 => s,
            Interval::M1 => 60 * s,
            Interval::M5 => 300 * s,
            Interval::M15 => 900 * s,
            Interval::H1 => 3_600 * s,
            Interval::D1 => 86_400 * s,
        }
    }

    /// Start of the bucket holding `ts`.
    pub fn bucket_start(self, ts: Timestamp) -> Timestamp {
        let w = self.micros();
        Timestamp::from_micros(ts.as_micros().div_euclid(w) * w)
    }

    /// The first bucket start at or after `ts`. Buckets starting in
    /// `[from, to)` hold exactly the ticks in
    /// `[first_start_from(from), first_start_from(to))`.
    pub fn first_start_from(self, ts: Timestamp) -> Timestamp {
        let start = self.bucket_start(ts);
        if start == ts {
            start
        } else {
            start.saturating_add_micros(self.micros())
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = IntervalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| IntervalError(s.chars().take(40).collect()))
    }
}

/// Open, high, low, close and volume of one symbol over one bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub symbol: Symbol,
    pub interval: Interval,
    /// Bucket start (inclusive); the bucket ends at `start + interval`.
    pub start: Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Sum of trade sizes.
    pub volume: f64,
    /// Volume-weighted average price; `None` when every trade had size 0.
    pub vwap: Option<f64>,
    /// Number of trades in the bucket.
    pub trades: u64,
    /// Event time of the first and last trade in the bucket.
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
}

/// Builds candles from ticks one at a time: the reference the SQL stores are
/// checked against. Ticks may come in any order.
#[derive(Debug)]
pub struct CandleBuilder {
    interval: Interval,
    candles: std::collections::BTreeMap<(Symbol, Timestamp), Acc>,
}

#[derive(Debug)]
struct Acc {
    first: ((Timestamp, i64), f64),
    last: ((Timestamp, i64), f64),
    high: f64,
    low: f64,
    volume: f64,
    notional: f64,
    trades: u64,
}

impl CandleBuilder {
    pub fn new(interval: Interval) -> Self {
        CandleBuilder {
            interval,
            candles: Default::default(),
        }
    }

    pub fn push(&mut self, tick: &Tick) {
        let key = (tick.symbol().clone(), self.interval.bucket_start(tick.ts()));
        let point = (tick.sort_key(), tick.price());
        let acc = self.candles.entry(key).or_insert(Acc {
            first: point,
            last: point,
            high: tick.price(),
            low: tick.price(),
            volume: 0.0,
            notional: 0.0,
            trades: 0,
        });
        if point.0 < acc.first.0 {
            acc.first = point;
        }
        if point.0 > acc.last.0 {
            acc.last = point;
        }
        acc.high = acc.high.max(tick.price());
        acc.low = acc.low.min(tick.price());
        acc.volume += tick.size();
        acc.notional += tick.size() * tick.price();
        acc.trades += 1;
    }

    /// The candles, ordered by symbol and bucket start.
    pub fn finish(self) -> Vec<Candle> {
        let interval = self.interval;
        self.candles
            .into_iter()
            .map(|((symbol, start), a)| Candle {
                symbol,
                interval,
                start,
                open: a.first.1,
                high: a.high,
                low: a.low,
                close: a.last.1,
                volume: a.volume,
                vwap: (a.volume > 0.0).then(|| a.notional / a.volume),
                trades: a.trades,
                first_ts: a.first.0 .0,
                last_ts: a.last.0 .0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::tests::input;
    use crate::{TickInput, TickRules};

    #[test]
    fn intervals_parse_and_align() {
        for i in Interval::ALL {
            assert_eq!(i.as_str().parse::<Interval>().unwrap(), i);
        }
        assert!("2m".parse::<Interval>().is_err());
        let ts = Timestamp::parse("2025-08-27T20:15:31.134Z").unwrap();
        assert_eq!(
            Interval::M1.bucket_start(ts).to_string(),
            "2025-08-27T20:15:00Z"
        );
        assert_eq!(
            Interval::M15.bucket_start(ts).to_string(),
            "2025-08-27T20:15:00Z"
        );
        assert_eq!(
            Interval::H1.bucket_start(ts).to_string(),
            "2025-08-27T20:00:00Z"
        );
        assert_eq!(
            Interval::D1.bucket_start(ts).to_string(),
            "2025-08-27T00:00:00Z"
        );
    }

    #[test]
    fn builder_takes_first_and_last_by_time_whatever_the_order() {
        let now = Timestamp::from_millis(1_756_325_800_000);
        let mk = |ms: i64, price: f64, size: f64| {
            TickRules::default()
                .check(
                    TickInput {
                        ts: Timestamp::from_millis(ms),
                        price,
                        size,
                        ..input()
                    },
                    now,
                )
                .unwrap()
        };
        let mut b = CandleBuilder::new(Interval::M1);
        // 20:15:31.134 .. bucket 20:15:00
        b.push(&mk(1_756_325_735_000, 12.0, 1.0));
        b.push(&mk(1_756_325_731_134, 10.0, 1.0));
        b.push(&mk(1_756_325_733_000, 15.0, 2.0));
        b.push(&mk(1_756_325_734_000, 9.0, 0.0));
        let c = b.finish();
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!((c.open, c.high, c.low, c.close), (10.0, 15.0, 9.0, 12.0));
        assert_eq!(c.volume, 4.0);
        assert_eq!(c.trades, 4);
        assert_eq!(c.vwap, Some((12.0 + 10.0 + 30.0) / 4.0));
    }
}
