//! Property: whatever order ticks arrive in, however often batches are
//! redelivered, the candles a store serves from its rollups equal a
//! brute-force build from the ticks it has stored — for every interval, on
//! SQLite and on PostgreSQL (TimescaleDB mode where the extension exists).

use std::sync::Arc;

use proptest::prelude::*;
use streamforge_model::{Candle, Interval, Symbol, Tick, Timestamp};
use streamforge_store::postgres::Mode;
use streamforge_store::{
    CandleQuery, Order, PostgresConfig, PostgresStore, SqliteStore, TickQuery, TickStore,
};
use streamforge_testkit::engines::shared_postgres;
use streamforge_testkit::reference;
use streamforge_testkit::tick;

/// 2025-08-27T20:15:00Z in ms: buckets of every width start and end in the data.
const T0: i64 = 1_756_325_700_000;

/// One tick: symbol, time offset, price, size. Offsets cluster on few
/// milliseconds so equal timestamps (ordered by tick id) are common, and
/// spread over days so every width has several buckets.
fn arb_tick() -> impl Strategy<Value = Tick> {
    (
        prop_oneof![Just("AAPL"), Just("BINANCE:BTCUSDT")],
        0i64..3,     // day
        0i64..3,     // hour
        0i64..130,   // second
        0i64..4,     // ms (x 250)
        1u32..5_000, // price in cents
        0u32..40,    // size
    )
        .prop_map(|(symbol, day, hour, second, ms, price, size)| {
            let at = T0 + day * 86_400_000 + hour * 3_600_000 + second * 1_000 + ms * 250;
            tick(symbol, at, f64::from(price) / 100.0, f64::from(size))
        })
}

/// The ticks, then how they are delivered: shuffled, cut into batches, and
/// some batches delivered again later (as after a crash before a commit).
fn arb_deliveries() -> impl Strategy<Value = Vec<Vec<Tick>>> {
    prop::collection::vec(arb_tick(), 1..300)
        .prop_shuffle()
        .prop_flat_map(|ticks| {
            let n = ticks.len();
            (
                Just(ticks),
                prop::collection::vec(1usize..60, 1..12),
                prop::collection::vec((0usize..n, 1usize..40), 0..6),
            )
        })
        .prop_map(|(ticks, cuts, redeliveries)| {
            let mut batches = Vec::new();
            let mut rest = &ticks[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at((*cut).min(rest.len()));
                batches.push(head.to_vec());
                rest = tail;
            }
            for (start, len) in redeliveries {
                let end = (start + len).min(ticks.len());
                batches.push(ticks[start..end].to_vec());
            }
            batches
        })
}

fn same(got: &[Candle], expected: &[Candle], what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), expected.len(), "{}: number of candles", what);
    for (g, e) in got.iter().zip(expected) {
        prop_assert_eq!(
            (g.start, g.open, g.high, g.low, g.close, g.trades, g.first_ts, g.last_ts),
            (e.start, e.open, e.high, e.low, e.close, e.trades, e.first_ts, e.last_ts),
            "{}",
            what
        );
        // Sums are added in a different order: equal up to rounding.
        prop_assert!(
            (g.volume - e.volume).abs() <= 1e-9 * e.volume.max(1.0),
            "{what}"
        );
        prop_assert_eq!(g.vwap.is_some(), e.vwap.is_some(), "{}", what);
        if let (Some(a), Some(b)) = (g.vwap, e.vwap) {
            prop_assert!((a - b).abs() <= 1e-9 * b, "{what}: vwap {a} vs {b}");
        }
    }
    Ok(())
}

/// Writes every delivery, then checks each symbol and interval against the
/// stored ticks, over the whole range and over a window cut mid-bucket.
async fn check(store: &dyn TickStore, deliveries: &[Vec<Tick>]) -> Result<(), TestCaseError> {
    for batch in deliveries {
        store.write_batch(Arc::from(batch.clone())).await.unwrap();
    }
    for symbol in ["AAPL", "BINANCE:BTCUSDT"] {
        let symbol = Symbol::parse(symbol).unwrap();
        let stored = store
            .ticks(TickQuery {
                symbol: symbol.clone(),
                from: Timestamp::MIN,
                to: Timestamp::MAX,
                limit: usize::MAX >> 1,
                order: Order::Asc,
            })
            .await
            .unwrap();
        let windows = [
            (Timestamp::MIN, Timestamp::MAX),
            (
                Timestamp::from_millis(T0 + 3_600_000 + 30_500),
                Timestamp::from_millis(T0 + 86_400_000 + 7_300_000),
            ),
        ];
        for interval in Interval::ALL {
            for (from, to) in windows {
                // Buckets starting in [from, to), computed apart.
                let expected: Vec<_> = reference::candles(interval, &stored)
                    .into_iter()
                    .filter(|c| c.start >= from && c.start < to)
                    .collect();
                let got = store
                    .candles(CandleQuery {
                        symbol: symbol.clone(),
                        interval,
                        from,
                        to,
                        limit: 100_000,
                    })
                    .await
                    .unwrap();
                same(&got, &expected, &format!("{symbol} {interval}"))?;
            }
        }
        // A limit stops after that many candles, oldest first.
        let limited = store
            .candles(CandleQuery {
                symbol: symbol.clone(),
                interval: Interval::M5,
                from: Timestamp::MIN,
                to: Timestamp::MAX,
                limit: 2,
            })
            .await
            .unwrap();
        let expected: Vec<_> = reference::candles(Interval::M5, &stored)
            .into_iter()
            .take(2)
            .collect();
        same(&limited, &expected, &format!("{symbol} 5m limit 2"))?;
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_rollups_equal_a_brute_force_build(deliveries in arb_deliveries()) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
            check(&store, &deliveries).await
        })?;
    }
}

async fn postgres(mode: Option<Mode>) -> PostgresStore {
    let url = shared_postgres().create_database().unwrap();
    let options = PostgresConfig {
        retention_days: 0,
        mode,
        ..Default::default()
    };
    PostgresStore::open(&url, options).await.unwrap()
}

proptest! {
    // Each case creates a database with the whole schema: fewer cases.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Rollup tables kept by the writer.
    #[test]
    fn plain_postgres_rollups_equal_a_brute_force_build(deliveries in arb_deliveries()) {
        runtime().block_on(async {
            check(&postgres(Some(Mode::Postgres)).await, &deliveries).await
        })?;
    }

    /// Continuous aggregates (every tick here is older than the refresh
    /// lags, so each batch refreshes the buckets it touched). Needs the
    /// TimescaleDB extension; `make test` leaves it out where it is missing.
    #[test]
    fn timescaledb_rollups_equal_a_brute_force_build(deliveries in arb_deliveries()) {
        shared_postgres().require_timescaledb();
        runtime().block_on(async {
            let store = postgres(Some(Mode::TimescaleDb)).await;
            assert_eq!(store.mode(), Mode::TimescaleDb);
            check(&store, &deliveries).await
        })?;
    }
}

/// A store opened on ticks written before the rollups existed fills them
/// from those ticks (the migration), then keeps them.
#[tokio::test]
async fn sqlite_migration_fills_rollups_from_existing_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let ticks: Vec<Tick> = (0..500)
        .map(|i| {
            tick(
                "AAPL",
                T0 + (i * 7_919) % 7_200_000,
                10.0 + (i % 13) as f64,
                1.0,
            )
        })
        .collect();
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.write_batch(Arc::from(ticks.clone())).await.unwrap();
    }
    // Back to schema 2 (no rollups, gaps without healing, no ledger) with the ticks in place.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE candles_1s; DROP TABLE candles_1m; DROP TABLE candles_1h; \
             DROP TABLE candles_1d; DROP INDEX gaps_unhealed; \
             ALTER TABLE gaps DROP COLUMN status; ALTER TABLE gaps DROP COLUMN first_id; \
             ALTER TABLE gaps DROP COLUMN last_id; ALTER TABLE gaps DROP COLUMN backfilled; \
             ALTER TABLE gaps DROP COLUMN detail; ALTER TABLE ticks DROP COLUMN source_id; \
             ALTER TABLE ticks DROP COLUMN origin; DROP TABLE ledger; PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 6);
    let expected = reference::candles(Interval::M1, &ticks);
    let got = store
        .candles(CandleQuery {
            symbol: Symbol::parse("AAPL").unwrap(),
            interval: Interval::M1,
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            limit: 1_000,
        })
        .await
        .unwrap();
    same(&got, &expected, "migrated 1m").unwrap();
}

/// TimescaleDB: a tick older than the aggregates' refresh lag lands in
/// buckets their refresh policy has already materialized (here refreshed by
/// hand, as the policy would); the write refreshes those buckets, so the
/// candles include it at once.
#[tokio::test]
async fn timescaledb_a_late_tick_corrects_materialized_candles() {
    let pg = shared_postgres();
    pg.require_timescaledb();
    let url = pg.create_database().unwrap();
    let store = PostgresStore::open(
        &url,
        PostgresConfig {
            retention_days: 0,
            mode: Some(Mode::TimescaleDb),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Three days ago, within one minute.
    let minute = Interval::M1
        .bucket_start(Timestamp::from_millis(
            Timestamp::now().as_millis() - 3 * 86_400_000,
        ))
        .as_millis();
    let first: Vec<Tick> = (0..20)
        .map(|i| tick("AAPL", minute + 10_000 + i * 1_000, 100.0 + i as f64, 1.0))
        .collect();
    store.write_batch(Arc::from(first.clone())).await.unwrap();
    for iv in ["1s", "1m", "1h", "1d"] {
        streamforge_testkit::engines::psql(
            &url,
            &format!("CALL refresh_continuous_aggregate('candles_{iv}', NULL, NULL)"),
        );
    }
    // Earlier than every trade so far, and the lowest price: a new open and low.
    let late = tick("AAPL", minute + 500, 50.0, 3.0);
    store
        .write_batch(Arc::from(vec![late.clone()]))
        .await
        .unwrap();
    let mut all = first;
    all.push(late);
    for interval in [Interval::S1, Interval::M1, Interval::H1, Interval::D1] {
        let got = store
            .candles(CandleQuery {
                symbol: Symbol::parse("AAPL").unwrap(),
                interval,
                from: Timestamp::MIN,
                to: Timestamp::MAX,
                limit: 1_000,
            })
            .await
            .unwrap();
        same(
            &got,
            &reference::candles(interval, &all),
            &format!("{interval}"),
        )
        .unwrap();
    }
}
