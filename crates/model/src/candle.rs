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
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
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

    /// The widths kept as materialized rollups by the stores; the others
    /// are folded from the coarsest of these that divides them.
    pub const ROLLUPS: [Interval; 4] = [Interval::S1, Interval::M1, Interval::H1, Interval::D1];

    /// The coarsest rollup whose buckets tile this interval's: `5m` and
    /// `15m` come from `1m`, the others are stored as they are.
    pub fn rollup(self) -> Interval {
        Interval::ROLLUPS
            .into_iter()
            .rev()
            .find(|r| self.micros() % r.micros() == 0)
            .unwrap_or(Interval::S1)
    }

    /// Start of the bucket holding `ts` ([`Timestamp::MIN`], an open
    /// bound, for the first bucket, which starts before it).
    pub fn bucket_start(self, ts: Timestamp) -> Timestamp {
        let t = ts.as_micros();
        Timestamp::from_micros(t.saturating_sub(t.rem_euclid(self.micros())))
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

/// Where a trade sits in a bucket's order: event time, then tick id (the
/// same order as [`Tick::sort_key`]).
pub type TradeKey = (Timestamp, i64);

/// A mergeable partial candle: the aggregate of some of a bucket's trades.
///
/// Merging two parts gives the part of the union of their trades, in any
/// order, so rollups can be kept incrementally (each newly stored tick
/// merged into its bucket's row) and coarse candles built from finer ones.
/// The open and close remember the key of the trade they came from, so a
/// late trade that is earlier than the stored open replaces it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CandlePart {
    pub open: (TradeKey, f64),
    pub close: (TradeKey, f64),
    pub high: f64,
    pub low: f64,
    pub volume: f64,
    /// Sum of price × size (VWAP numerator).
    pub notional: f64,
    pub trades: u64,
}

impl CandlePart {
    /// The part holding one trade.
    pub fn of(tick: &Tick) -> Self {
        let point = (tick.sort_key(), tick.price());
        CandlePart {
            open: point,
            close: point,
            high: tick.price(),
            low: tick.price(),
            volume: tick.size(),
            notional: tick.size() * tick.price(),
            trades: 1,
        }
    }

    pub fn push(&mut self, tick: &Tick) {
        self.merge(&CandlePart::of(tick));
    }

    /// Adds the trades of `other`.
    pub fn merge(&mut self, other: &CandlePart) {
        if other.open.0 < self.open.0 {
            self.open = other.open;
        }
        if other.close.0 > self.close.0 {
            self.close = other.close;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.volume += other.volume;
        self.notional += other.notional;
        self.trades += other.trades;
    }

    pub fn into_candle(self, symbol: Symbol, interval: Interval, start: Timestamp) -> Candle {
        Candle {
            symbol,
            interval,
            start,
            open: self.open.1,
            high: self.high,
            low: self.low,
            close: self.close.1,
            volume: self.volume,
            vwap: (self.volume > 0.0).then(|| self.notional / self.volume),
            trades: self.trades,
            first_ts: self.open.0 .0,
            last_ts: self.close.0 .0,
        }
    }
}

/// Folds parts keyed by bucket start (in ascending order, any width that
/// divides `interval`) into candles of `interval`, stopping after `limit`.
pub fn rebucket(
    symbol: &Symbol,
    interval: Interval,
    parts: impl IntoIterator<Item = (Timestamp, CandlePart)>,
    limit: usize,
) -> Vec<Candle> {
    let mut out = Vec::new();
    if limit == 0 {
        return out;
    }
    let mut current: Option<(Timestamp, CandlePart)> = None;
    for (start, part) in parts {
        let bucket = interval.bucket_start(start);
        match &mut current {
            Some((b, acc)) if *b == bucket => acc.merge(&part),
            _ => {
                if let Some((b, acc)) = current.take() {
                    out.push(acc.into_candle(symbol.clone(), interval, b));
                    if out.len() >= limit {
                        return out;
                    }
                }
                current = Some((bucket, part));
            }
        }
    }
    if let Some((b, acc)) = current {
        if out.len() < limit {
            out.push(acc.into_candle(symbol.clone(), interval, b));
        }
    }
    out
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
        let rollups: Vec<_> = Interval::ALL.iter().map(|i| i.rollup().as_str()).collect();
        assert_eq!(rollups, ["1s", "1m", "1m", "1m", "1h", "1d"]);
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
    fn a_part_takes_first_and_last_by_time_whatever_the_order() {
        let mk = tick_at;
        // 20:15:31.134 .. bucket 20:15:00, pushed out of order.
        let first = mk(1_756_325_735_000, 12.0, 1.0);
        let mut part = CandlePart::of(&first);
        part.push(&mk(1_756_325_731_134, 10.0, 1.0));
        part.push(&mk(1_756_325_733_000, 15.0, 2.0));
        part.push(&mk(1_756_325_734_000, 9.0, 0.0));
        let start = Interval::M1.bucket_start(first.ts());
        assert_eq!(start, Timestamp::from_millis(1_756_325_700_000));
        let c = &part.into_candle(first.symbol().clone(), Interval::M1, start);
        assert_eq!(c.first_ts, Timestamp::from_millis(1_756_325_731_134));
        assert_eq!(c.last_ts, Timestamp::from_millis(1_756_325_735_000));
        assert_eq!((c.open, c.high, c.low, c.close), (10.0, 15.0, 9.0, 12.0));
        assert_eq!(c.volume, 4.0);
        assert_eq!(c.trades, 4);
        assert_eq!(c.vwap, Some((12.0 + 10.0 + 30.0) / 4.0));
    }

    fn tick_at(ms: i64, price: f64, size: f64) -> Tick {
        let now = Timestamp::from_millis(1_756_330_000_000);
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
    }

    #[test]
    fn first_start_from_rounds_up_to_a_bucket_start() {
        let on = Timestamp::from_millis(1_756_325_700_000); // 20:15:00
        assert_eq!(Interval::M1.first_start_from(on), on);
        let inside = Timestamp::from_millis(1_756_325_700_001);
        assert_eq!(
            Interval::M1.first_start_from(inside),
            Timestamp::from_millis(1_756_325_760_000)
        );
        assert_eq!(Interval::M5.to_string(), "5m");
        assert_eq!(format!("{}", Interval::D1), "1d");
    }

    #[test]
    fn merging_keeps_the_earliest_open_and_latest_close_by_key() {
        let a = tick_at(1_756_325_701_000, 10.0, 1.0);
        let b = tick_at(1_756_325_702_000, 20.0, 1.0);
        let c = tick_at(1_756_325_703_000, 30.0, 1.0);
        let mut part = CandlePart::of(&b);
        part.merge(&CandlePart::of(&c));
        assert_eq!((part.open.1, part.close.1), (20.0, 30.0));
        part.merge(&CandlePart::of(&a));
        assert_eq!((part.open.1, part.close.1), (10.0, 30.0));
        // A part of the same trade key leaves open and close as they are.
        let mut same = CandlePart::of(&a);
        same.open.1 = 99.0;
        same.close.1 = 99.0;
        let mut single = CandlePart::of(&a);
        single.merge(&same);
        assert_eq!((single.open.1, single.close.1), (10.0, 10.0));
        // An earlier close does not replace a later one.
        let mut later = CandlePart::of(&c);
        later.merge(&CandlePart::of(&b));
        assert_eq!(later.close.1, 30.0);
        assert_eq!(later.open.1, 20.0);
    }

    #[test]
    fn a_candle_of_zero_sizes_has_no_vwap() {
        let t = tick_at(1_756_325_701_000, 10.0, 0.0);
        let c = CandlePart::of(&t).into_candle(t.symbol().clone(), Interval::M1, t.ts());
        assert_eq!(c.vwap, None);
        assert_eq!(c.volume, 0.0);
    }

    #[test]
    fn rebucket_folds_fine_parts_into_coarse_candles_up_to_a_limit() {
        let m0 = 1_756_325_700_000; // 20:15:00, a 5-minute boundary
        let parts: Vec<(Timestamp, CandlePart)> = [0, 1, 4, 5, 6, 11]
            .iter()
            .map(|&minute| {
                let t = tick_at(m0 + minute * 60_000 + 500, 100.0 + minute as f64, 1.0);
                (Interval::M1.bucket_start(t.ts()), CandlePart::of(&t))
            })
            .collect();
        let symbol = Symbol::parse("AAPL").unwrap();
        let all = rebucket(&symbol, Interval::M5, parts.clone(), 10);
        let starts: Vec<i64> = all.iter().map(|c| c.start.as_millis()).collect();
        assert_eq!(starts, [m0, m0 + 300_000, m0 + 600_000]);
        let summary: Vec<(f64, f64, u64)> =
            all.iter().map(|c| (c.open, c.close, c.trades)).collect();
        assert_eq!(
            summary,
            [(100.0, 104.0, 3), (105.0, 106.0, 2), (111.0, 111.0, 1)]
        );
        let two = rebucket(&symbol, Interval::M5, parts.clone(), 2);
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].trades, 2);
        let parts_again = || parts.clone();
        let one = rebucket(&symbol, Interval::M5, parts.clone(), 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].trades, 3);
        assert!(rebucket(&symbol, Interval::M5, Vec::new(), 5).is_empty());
        assert!(
            rebucket(&symbol, Interval::M5, parts_again(), 0).is_empty(),
            "limit 0"
        );
    }
}
