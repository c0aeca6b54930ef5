//! Reference results computed apart from the code under test, so that a
//! test compares StreamForge against something it does not share code with.
//!
//! The candle rule, as the API documents it: ticks fall into the bucket of
//! their event time (`start = ts - ts mod width`, UTC); within a bucket
//! they are ordered by event time, then by tick id as a signed 64-bit
//! integer (the order SQL `BIGINT` sorts in); the open is the first
//! trade's price, the close the last one's, high/low the extremes, volume
//! the sum of sizes, VWAP the size-weighted mean price (none when every
//! size is 0).

use streamforge_model::{Candle, Interval, Tick, Timestamp};

/// Width of a bucket of `interval`, in microseconds (written out here, not
/// taken from the model).
pub fn width_micros(interval: Interval) -> i64 {
    let s = 1_000_000;
    match interval.as_str() {
        "1s" => s,
        "1m" => 60 * s,
        "5m" => 300 * s,
        "15m" => 900 * s,
        "1h" => 3_600 * s,
        "1d" => 86_400 * s,
        other => panic!("no reference width for interval {other}"),
    }
}

/// The order trades take within a bucket and for "the newest tick":
/// event time, then tick id as a signed integer.
pub fn trade_order(t: &Tick) -> (i64, i64) {
    (t.ts().as_micros(), t.tick_id().as_i64())
}

/// The newest of `ticks` by [`trade_order`].
pub fn newest(ticks: &[Tick]) -> Option<&Tick> {
    ticks.iter().max_by_key(|t| trade_order(t))
}

/// Candles of `interval` over all of `ticks`, by symbol, then bucket start:
/// a sort and one fold, no code shared with the stores.
pub fn candles(interval: Interval, ticks: &[Tick]) -> Vec<Candle> {
    let width = width_micros(interval);
    let mut sorted: Vec<&Tick> = ticks.iter().collect();
    sorted.sort_by(|a, b| {
        (a.symbol().as_str(), trade_order(a)).cmp(&(b.symbol().as_str(), trade_order(b)))
    });
    let mut out: Vec<Candle> = Vec::new();
    let mut notional = 0.0;
    for t in sorted {
        let ts = t.ts().as_micros();
        let start = ts - ts.rem_euclid(width);
        let (price, size) = (t.price(), t.size());
        match out.last_mut() {
            Some(c) if c.symbol == *t.symbol() && c.start.as_micros() == start => {
                c.high = c.high.max(price);
                c.low = c.low.min(price);
                c.close = price;
                c.volume += size;
                c.trades += 1;
                c.last_ts = t.ts();
                notional += price * size;
            }
            _ => {
                if let Some(c) = out.last_mut() {
                    c.vwap = (c.volume > 0.0).then(|| notional / c.volume);
                }
                notional = price * size;
                out.push(Candle {
                    symbol: t.symbol().clone(),
                    interval,
                    start: Timestamp::from_micros(start),
                    open: price,
                    high: price,
                    low: price,
                    close: price,
                    volume: size,
                    vwap: None,
                    trades: 1,
                    first_ts: t.ts(),
                    last_ts: t.ts(),
                });
            }
        }
    }
    if let Some(c) = out.last_mut() {
        c.vwap = (c.volume > 0.0).then(|| notional / c.volume);
    }
    out
}

/// The [`candles`] whose buckets lie wholly inside `[from, to)`.
pub fn candles_within(
    interval: Interval,
    ticks: &[Tick],
    from: Timestamp,
    to: Timestamp,
) -> Vec<Candle> {
    let width = width_micros(interval);
    candles(interval, ticks)
        .into_iter()
        .filter(|c| c.start >= from && c.start.as_micros() + width <= to.as_micros())
        .collect()
}

/// Asserts that candles served as JSON (the API's `candles` array) equal
/// `expected` value by value: the same buckets, open, high, low, close and
/// trades; volume and VWAP equal up to rounding (sums added in another
/// order).
pub fn assert_json_candles(got: &[serde_json::Value], expected: &[Candle], what: &str) {
    let starts = |c: &[serde_json::Value]| -> Vec<String> {
        c.iter().map(|k| k["start"].to_string()).collect()
    };
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: candle count; got starts {:?}",
        starts(got)
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    for (g, e) in got.iter().zip(expected) {
        let start = Timestamp::parse(g["start"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{what}: candle start {g}: {e}"));
        assert_eq!(start, e.start, "{what}: bucket start");
        let f = |k: &str| {
            g[k].as_f64()
                .unwrap_or_else(|| panic!("{what}: no number {k} in {g}"))
        };
        assert_eq!(f("open"), e.open, "{what} {start}: open = first trade");
        assert_eq!(f("close"), e.close, "{what} {start}: close = last trade");
        assert_eq!(f("high"), e.high, "{what} {start}: high = max");
        assert_eq!(f("low"), e.low, "{what} {start}: low = min");
        assert_eq!(
            g["trades"].as_u64(),
            Some(e.trades),
            "{what} {start}: trades"
        );
        assert!(
            close(f("volume"), e.volume),
            "{what} {start}: volume {} vs {}",
            f("volume"),
            e.volume
        );
        match (g["vwap"].as_f64(), e.vwap) {
            (Some(a), Some(b)) => assert!(close(a, b), "{what} {start}: vwap {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{what} {start}: vwap"),
        }
    }
}

/// Asserts that `got` equals `expected` candle by candle: the same
/// buckets, open, high, low, close, trades and first/last trade times;
/// volume and VWAP equal up to rounding (sums added in another order).
pub fn assert_candles(got: &[Candle], expected: &[Candle], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: candle count");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(
            (g.start, g.open, g.high, g.low, g.close, g.trades, g.first_ts, g.last_ts),
            (e.start, e.open, e.high, e.low, e.close, e.trades, e.first_ts, e.last_ts),
            "{what}"
        );
        assert!(
            close(g.volume, e.volume),
            "{what} {}: volume {} vs {}",
            e.start,
            g.volume,
            e.volume
        );
        match (g.vwap, e.vwap) {
            (Some(a), Some(b)) => assert!(close(a, b), "{what} {}: vwap {a} vs {b}", e.start),
            (a, b) => assert_eq!(a, b, "{what} {}: vwap", e.start),
        }
    }
}

/// Asserts that a quote served as JSON is `tick`: its price, size and time.
pub fn assert_json_quote(q: &serde_json::Value, tick: &Tick) {
    assert_eq!(q["price"].as_f64(), Some(tick.price()), "{q}");
    assert_eq!(q["size"].as_f64(), Some(tick.size()), "{q}");
    let ts = q["ts"].as_str().and_then(|t| Timestamp::parse(t).ok());
    assert_eq!(ts, Some(tick.ts()), "{q}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_computed_minute() {
        let base = 1_756_325_700_000; // 20:15:00 UTC
        let ticks = [
            crate::tick("AAPL", base + 35_000, 12.0, 1.0),
            crate::tick("AAPL", base + 31_134, 10.0, 1.0),
            crate::tick("AAPL", base + 33_000, 15.0, 2.0),
            crate::tick("AAPL", base + 34_000, 9.0, 0.0),
            crate::tick("AAPL", base + 60_000, 7.0, 0.0),
            crate::tick("MSFT", base + 1, 1.0, 1.0),
        ];
        let c = candles(Interval::M1, &ticks);
        assert_eq!(c.len(), 3);
        assert_eq!(
            (c[0].open, c[0].high, c[0].low, c[0].close),
            (10.0, 15.0, 9.0, 12.0)
        );
        assert_eq!((c[0].volume, c[0].trades), (4.0, 4));
        assert_eq!(c[0].vwap, Some((12.0 + 10.0 + 30.0) / 4.0));
        assert_eq!(c[0].first_ts, Timestamp::from_millis(base + 31_134));
        assert_eq!(c[0].last_ts, Timestamp::from_millis(base + 35_000));
        assert_eq!(c[1].start, Timestamp::from_millis(base + 60_000));
        assert_eq!(c[1].vwap, None, "every size 0");
        assert_eq!(c[2].symbol.as_str(), "MSFT");
    }

    #[test]
    fn ties_in_time_go_by_signed_id() {
        let ms = 1_756_325_700_000;
        // Two trades at one instant whose ids differ in sign.
        let (mut pos, mut neg) = (None, None);
        for k in 0..200 {
            let t = crate::tick("AAPL", ms, 100.0 + k as f64, 1.0);
            if t.tick_id().as_i64() >= 0 {
                pos.get_or_insert(t);
            } else {
                neg.get_or_insert(t);
            }
        }
        let (pos, neg) = (pos.unwrap(), neg.unwrap());
        let c = candles(Interval::S1, &[pos.clone(), neg.clone()]);
        assert_eq!(c[0].open, neg.price(), "the negative id sorts first");
        assert_eq!(c[0].close, pos.price());
        assert_eq!(newest(&[neg, pos.clone()]).unwrap(), &pos);
    }
}
