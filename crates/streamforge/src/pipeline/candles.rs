//! [`CandleTracker`]: the live stage's candles. It turns the live ticks
//! into candle updates: the current candle of each symbol and of each
//! interval some stream client wants, seeded from the store's rollup the
//! first time the bucket is seen, then merged with every newer live tick.
//! The API's `LiveHub` only fans the updates out.

use std::collections::{HashMap, HashSet};

use streamforge_model::{Candle, CandlePart, Interval, Symbol, Tick, Timestamp};
use streamforge_store::{CandleQuery, TickStore};

/// The current candle of one symbol and interval.
#[derive(Clone, Copy, Debug)]
struct Current {
    start: Timestamp,
    part: CandlePart,
    /// Ticks at or before this time were in the seed from the store.
    seeded_through: Option<Timestamp>,
}

/// Candle updates from live ticks, for every interval.
///
/// A bucket first seen mid-way (the server started, or the live tail
/// skipped data) is seeded from the store's rollup; live ticks not newer
/// than the seed's last trade are taken as already in it. From then on
/// every live tick of the bucket is merged, and a tick of a later bucket
/// starts it afresh. A late tick of an earlier bucket is not streamed: the
/// store corrects that candle, and `GET /api/v1/candles` serves it.
#[derive(Default)]
pub struct CandleTracker {
    current: HashMap<(Symbol, Interval), Current>,
}

impl CandleTracker {
    /// Forgets everything: after missed ticks, buckets are seeded again.
    pub fn reset(&mut self) {
        self.current.clear();
    }

    /// Symbols and intervals tracked now.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Merges a batch of live ticks into the candles of the `wanted`
    /// intervals (the others are forgotten); returns the candles it
    /// changed, one per symbol and interval. Buckets seen for the first
    /// time are seeded from `store`, concurrently; a seed that fails leaves
    /// the bucket unseeded (the candle then covers the live ticks only).
    pub async fn update(
        &mut self,
        ticks: &[Tick],
        store: &dyn TickStore,
        wanted: &[Interval],
    ) -> Vec<Candle> {
        self.current.retain(|(_, i), _| wanted.contains(i));
        if wanted.is_empty() {
            return Vec::new();
        }
        // Seeds for the symbols and intervals not tracked yet, at the
        // bucket of their first tick in this batch.
        let mut unseeded: HashMap<(Symbol, Interval), Timestamp> = HashMap::new();
        for tick in ticks {
            for &interval in wanted {
                let key = (tick.symbol().clone(), interval);
                if !self.current.contains_key(&key) {
                    unseeded
                        .entry(key)
                        .or_insert_with(|| interval.bucket_start(tick.ts()));
                }
            }
        }
        let seeds = futures::future::join_all(unseeded.into_iter().map(
            |((symbol, interval), start)| async move {
                let part = seed(store, &symbol, interval, start).await;
                ((symbol, interval), start, part)
            },
        ))
        .await;
        for (key, start, part) in seeds {
            if let Some(part) = part {
                let seeded_through = Some(part.close.0 .0);
                self.current.insert(
                    key,
                    Current {
                        start,
                        part,
                        seeded_through,
                    },
                );
            }
        }
        let mut changed: HashSet<(Symbol, Interval)> = HashSet::new();
        for tick in ticks {
            for &interval in wanted {
                let start = interval.bucket_start(tick.ts());
                let key = (tick.symbol().clone(), interval);
                let Some(entry) = self.current.get_mut(&key) else {
                    // Nothing stored of this bucket: its first tick starts it.
                    self.current.insert(
                        key.clone(),
                        Current {
                            start,
                            part: CandlePart::of(tick),
                            seeded_through: None,
                        },
                    );
                    changed.insert(key);
                    continue;
                };
                if start < entry.start {
                    continue;
                }
                if start > entry.start {
                    // A new bucket: it began after the one tracked.
                    *entry = Current {
                        start,
                        part: CandlePart::of(tick),
                        seeded_through: None,
                    };
                    changed.insert(key);
                    continue;
                }
                if entry.seeded_through.is_some_and(|s| tick.ts() <= s) {
                    continue;
                }
                entry.part.push(tick);
                changed.insert(key);
            }
        }
        let mut out: Vec<Candle> = changed
            .into_iter()
            .filter_map(|key| {
                let c = self.current.get(&key)?;
                Some(c.part.into_candle(key.0, key.1, c.start))
            })
            .collect();
        out.sort_by(|a, b| (&a.symbol, a.interval).cmp(&(&b.symbol, b.interval)));
        out
    }
}

/// The stored candle of one bucket, as a part.
async fn seed(
    store: &dyn TickStore,
    symbol: &Symbol,
    interval: Interval,
    start: Timestamp,
) -> Option<CandlePart> {
    let query = CandleQuery {
        symbol: symbol.clone(),
        interval,
        from: start,
        to: start.saturating_add_micros(interval.micros()),
        limit: 1,
    };
    match store.candles(query).await {
        Ok(c) => c.into_iter().next().map(|c| CandlePart {
            open: ((c.first_ts, i64::MIN), c.open),
            close: ((c.last_ts, i64::MAX), c.close),
            high: c.high,
            low: c.low,
            volume: c.volume,
            notional: c.vwap.unwrap_or(0.0) * c.volume,
            trades: c.trades,
        }),
        Err(e) => {
            tracing::warn!(error = %e, %symbol, %interval, "cannot seed a live candle from the store");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use streamforge_store::SqliteStore;

    const T0: i64 = 1_756_325_700_000;

    fn tick(symbol: &str, ms: i64, price: f64) -> Tick {
        streamforge_testkit::tick(symbol, ms, price, 10.0)
    }

    #[tokio::test]
    async fn live_candles_start_from_the_stored_bucket_and_add_only_newer_ticks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap())
            .await
            .unwrap();
        let stored = [
            tick("AAPL", T0 + 1_000, 10.0),
            tick("AAPL", T0 + 2_000, 14.0),
        ];
        store.write_batch(Arc::from(stored.to_vec())).await.unwrap();
        let mut tracker = CandleTracker::default();
        // The live tail sees the last stored tick again, then a new one.
        let live = [stored[1].clone(), tick("AAPL", T0 + 3_000, 9.0)];
        let all = Interval::ALL;
        assert!(
            tracker.update(&live, &store, &[]).await.is_empty(),
            "nothing tracked when nobody wants candles"
        );
        let updates = tracker.update(&live, &store, &all).await;
        let m1 = updates.iter().find(|c| c.interval == Interval::M1).unwrap();
        assert_eq!(
            (m1.open, m1.high, m1.low, m1.close, m1.trades),
            (10.0, 14.0, 9.0, 9.0, 3),
            "stored ticks counted once"
        );
        assert_eq!(updates.len(), Interval::ALL.len());
        assert_eq!(tracker.len(), Interval::ALL.len());
        // A tick of the next minute starts that candle afresh.
        let next = tracker
            .update(&[tick("AAPL", T0 + 61_000, 20.0)], &store, &all)
            .await;
        let m1 = next.iter().find(|c| c.interval == Interval::M1).unwrap();
        assert_eq!(
            (m1.open, m1.trades, m1.start),
            (20.0, 1, Timestamp::from_millis(T0 + 60_000))
        );
        let m5 = next.iter().find(|c| c.interval == Interval::M5).unwrap();
        assert_eq!((m5.open, m5.close, m5.trades), (10.0, 20.0, 4));
        tracker.reset();
        assert!(tracker.is_empty());
    }
}
