//! Behaviour every [`TickStore`] must have, run against each implementation:
//! SQLite in a temp dir, PostgreSQL on a throwaway server.

use std::sync::Arc;

use streamforge_model::Origin;
use streamforge_model::{Gap, GapReason, Interval, Symbol, Tally, Tick, Timestamp};
use streamforge_store::postgres::Mode;
use streamforge_store::MinuteCount;
use streamforge_store::{
    CandleQuery, GapQuery, Order, PostgresConfig, PostgresStore, SqliteStore, TickBatch, TickQuery,
    TickStore, WriteOutcome,
};
use streamforge_testkit::engines::shared_postgres;
use streamforge_testkit::reference;

const T0: i64 = 1_756_325_700_000; // 2025-08-27T20:15:00Z in ms

fn tick(symbol: &str, ms: i64, price: f64, size: f64) -> Tick {
    let conditions = if size > 50.0 {
        vec!["1".into(), "24".into()]
    } else {
        vec![]
    };
    streamforge_testkit::tick_with_conditions(symbol, ms, price, size, conditions)
}

fn q(symbol: &str) -> TickQuery {
    TickQuery {
        symbol: Symbol::parse(symbol).unwrap(),
        from: Timestamp::MIN,
        to: Timestamp::MAX,
        limit: 1000,
        order: Order::Asc,
    }
}

pub async fn writes_are_idempotent_and_round_trip(s: &dyn TickStore) {
    let batch: TickBatch = Arc::from(vec![
        tick("AAPL", T0, 10.0, 100.0),
        tick("AAPL", T0 + 1, 11.0, 5.0),
        tick("MSFT", T0, 20.0, 1.0),
    ]);
    assert_eq!(
        s.write_batch(batch.clone()).await.unwrap(),
        WriteOutcome {
            inserted: 3,
            duplicates: 0
        }
    );
    assert_eq!(
        s.write_batch(batch.clone()).await.unwrap(),
        WriteOutcome {
            inserted: 0,
            duplicates: 3
        }
    );
    let got = s.ticks(q("AAPL")).await.unwrap();
    assert_eq!(got, batch[..2].to_vec());
    let syms = s.symbols().await.unwrap();
    assert_eq!(syms.len(), 2);
    assert_eq!(syms[0].ticks, 2, "duplicates are not counted");
    assert_eq!(syms[0].first_ts, Timestamp::from_millis(T0));
    assert_eq!(syms[0].last_ts, Timestamp::from_millis(T0 + 1));
    assert_eq!(
        s.latest(&Symbol::parse("AAPL").unwrap())
            .await
            .unwrap()
            .unwrap()
            .price(),
        11.0
    );
    assert!(s
        .symbol(&Symbol::parse("NOPE").unwrap())
        .await
        .unwrap()
        .is_none());
    // One symbol's entry is the one the list gives.
    let msft = s
        .symbol(&Symbol::parse("MSFT").unwrap())
        .await
        .unwrap()
        .expect("MSFT is stored");
    assert_eq!(
        &msft,
        syms.iter().find(|i| i.symbol.as_str() == "MSFT").unwrap()
    );
    assert_eq!(msft.ticks, 1);
    assert!(["sqlite", "postgres"].contains(&s.kind()), "{}", s.kind());

    // A venue's trade keeps its trade id and origin; the same trade again
    // (live, then from the history) is one row.
    let numbered = |origin: Origin| {
        streamforge_model::TickRules::default()
            .check(
                streamforge_model::TickInput {
                    source_id: Some("716849523".into()),
                    origin,
                    ..streamforge_testkit::tick_input("BINANCE:BTCUSDT", T0 + 5, 58_942.01, 0.0356)
                },
                Timestamp::MAX,
            )
            .unwrap()
    };
    let live = numbered(Origin::Live);
    let backfill = numbered(Origin::Backfill);
    assert_eq!(live.tick_id(), backfill.tick_id());
    let outcome = s
        .write_batch(Arc::from(vec![backfill.clone(), live]))
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (1, 1));
    let got = s.ticks(q("BINANCE:BTCUSDT")).await.unwrap();
    assert_eq!(got, [backfill]);
    assert_eq!(got[0].source_id(), Some("716849523"));
    assert_eq!(got[0].origin(), Origin::Backfill);
}

pub async fn tick_queries_honor_range_limit_and_order(s: &dyn TickStore) {
    let batch: Vec<Tick> = (0..10)
        .map(|i| tick("AAPL", T0 + i * 1000, 10.0 + i as f64, 1.0))
        .collect();
    s.write_batch(Arc::from(batch.clone())).await.unwrap();
    let mut query = q("AAPL");
    query.from = Timestamp::from_millis(T0 + 2000);
    query.to = Timestamp::from_millis(T0 + 5000);
    let got = s.ticks(query.clone()).await.unwrap();
    assert_eq!(got, batch[2..5].to_vec(), "from inclusive, to exclusive");
    query.limit = 2;
    query.order = Order::Desc;
    let got = s.ticks(query).await.unwrap();
    assert_eq!(
        got.iter().map(|t| t.price()).collect::<Vec<_>>(),
        [14.0, 13.0]
    );
}

pub async fn candles_match_a_brute_force_build_for_every_interval(s: &dyn TickStore) {
    // Deterministic pseudo-random ticks over ~3 days, written out of order in
    // several batches, with some redelivered.
    let mut x: u64 = 42;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ticks: Vec<Tick> = (0..3000)
        .map(|_| {
            let ms = T0 + (next() % (3 * 86_400_000)) as i64;
            let price = 100.0 + (next() % 1000) as f64 / 100.0;
            let size = (next() % 100) as f64;
            tick("AAPL", ms, price, size)
        })
        .collect();
    for chunk in ticks.chunks(700) {
        s.write_batch(Arc::from(chunk.to_vec())).await.unwrap();
    }
    s.write_batch(Arc::from(ticks[100..400].to_vec()))
        .await
        .unwrap();
    for interval in Interval::ALL {
        let from = Timestamp::from_millis(T0 + 3_600_000);
        let to = Timestamp::from_millis(T0 + 2 * 86_400_000);
        // The redelivered batch must not count twice: the reference sees
        // each tick once. Candles starting in [from, to).
        let expected: Vec<_> = reference::candles(interval, &ticks)
            .into_iter()
            .filter(|c| c.start >= from && c.start < to)
            .collect();
        assert!(!expected.is_empty(), "{interval}: something to compare");
        let got = s
            .candles(CandleQuery {
                symbol: Symbol::parse("AAPL").unwrap(),
                interval,
                from,
                to,
                limit: 100_000,
            })
            .await
            .unwrap();
        reference::assert_candles(&got, &expected, interval.as_str());
    }
}

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("ticks.db"))
        .await
        .unwrap();
    (dir, s)
}

/// A store in TimescaleDB mode (the test fails without the extension;
/// `make test` leaves `*timescaledb*` tests out where it is missing).
async fn timescaledb() -> PostgresStore {
    shared_postgres().require_timescaledb();
    let s = postgres_in(Some(Mode::TimescaleDb)).await;
    assert_eq!(s.mode(), Mode::TimescaleDb);
    s
}

async fn postgres_in(mode: Option<Mode>) -> PostgresStore {
    let url = shared_postgres().create_database().unwrap();
    let options = PostgresConfig {
        retention_days: 0,
        mode,
        ..Default::default()
    };
    let store = PostgresStore::open(&url, options).await.unwrap();
    eprintln!("postgres store in {} mode", store.mode());
    store
}

/// Gaps: written idempotently (a replay may only widen the end), listed by
/// overlap with the range, per symbol or all, oldest first.
pub async fn gaps_are_idempotent_and_found_by_overlap(s: &dyn TickStore) {
    let gap = |symbol: &str, from_s: i64, to_s: i64, reason| Gap {
        provider: "finnhub".into(),
        connection: 0,
        symbol: Symbol::parse(symbol).unwrap(),
        from: Timestamp::from_millis(T0 + from_s * 1000),
        to: Timestamp::from_millis(T0 + to_s * 1000),
        reason,
        healing: streamforge_model::Healing::default(),
    };
    let written = [
        gap("AAPL", 0, 10, GapReason::Disconnected),
        gap("MSFT", 0, 10, GapReason::Disconnected),
        gap("AAPL", 60, 65, GapReason::Silent),
    ];
    s.write_gaps(&written).await.unwrap();
    s.write_gaps(&written[..1]).await.unwrap();
    // The same gap seen again with a later end keeps the later end.
    s.write_gaps(&[gap("AAPL", 60, 70, GapReason::Silent)])
        .await
        .unwrap();
    let query = |symbol: Option<&str>, from_s: i64, to_s: i64| GapQuery {
        symbol: symbol.map(|x| Symbol::parse(x).unwrap()),
        from: Timestamp::from_millis(T0 + from_s * 1000),
        to: Timestamp::from_millis(T0 + to_s * 1000),
        limit: 100,
    };
    let aapl = s.gaps(query(Some("AAPL"), -100, 100)).await.unwrap();
    assert_eq!(aapl.len(), 2, "{aapl:?}");
    assert_eq!(aapl[0], written[0]);
    assert_eq!(aapl[1], gap("AAPL", 60, 70, GapReason::Silent));
    // Overlap, not containment: [5, 6) touches the first gaps.
    let all = s.gaps(query(None, 5, 6)).await.unwrap();
    let symbols: Vec<&str> = all.iter().map(|g| g.symbol.as_str()).collect();
    assert_eq!(symbols, ["AAPL", "MSFT"]);
    assert!(s.gaps(query(None, 10, 60)).await.unwrap().is_empty());
    let mut limited = query(None, -100, 100);
    limited.limit = 1;
    assert_eq!(s.gaps(limited).await.unwrap().len(), 1);
}

/// A gap's healing is one row that only moves forward: `open`, then
/// `healing` with the ids, then `healed` with the count; a late `open`
/// (a redelivery) changes nothing, and known ids stay known.
pub async fn gap_healing_only_moves_forward(s: &dyn TickStore) {
    let step = |status, first: Option<u64>, last: Option<u64>, n: u64, detail: &str| Gap {
        provider: "binance".into(),
        connection: 1,
        symbol: Symbol::parse("BINANCE:BTCUSDT").unwrap(),
        from: Timestamp::from_millis(T0),
        to: Timestamp::from_millis(T0 + 5_000),
        reason: GapReason::Sequence,
        healing: streamforge_model::Healing {
            status,
            first_id: first,
            last_id: last,
            backfilled: n,
            detail: detail.into(),
        },
    };
    use streamforge_model::GapStatus::*;
    s.write_gaps(&[step(Open, Some(41), None, 0, "")])
        .await
        .unwrap();
    s.write_gaps(&[step(Healing, None, Some(57), 0, "")])
        .await
        .unwrap();
    // Both in one batch, the later last.
    s.write_gaps(&[
        step(Healed, None, None, 17, ""),
        step(Open, None, None, 0, ""),
    ])
    .await
    .unwrap();
    let got = s
        .gaps(GapQuery {
            symbol: None,
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(got, [step(Healed, Some(41), Some(57), 17, "")]);
    // Unrecoverable keeps its reason.
    let mut other = step(Unrecoverable, Some(1), Some(2), 0, "HTTP 403: needs a key");
    other.symbol = Symbol::parse("BINANCE:ETHUSDT").unwrap();
    s.write_gaps(std::slice::from_ref(&other)).await.unwrap();
    let got = s
        .gaps(GapQuery {
            symbol: Some(other.symbol.clone()),
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(got, [other]);
    // Only open and healing gaps are left to heal; this one is healed,
    // and `other` is unrecoverable.
    assert!(s.unhealed_gaps("binance", 10).await.unwrap().is_empty());
    let mut open = step(Open, Some(5), None, 0, "");
    open.from = Timestamp::from_millis(T0 + 60_000);
    let mut healing = step(Healing, Some(7), Some(9), 0, "");
    healing.from = Timestamp::from_millis(T0 + 30_000);
    let mut elsewhere = healing.clone();
    elsewhere.provider = "coinbase".into();
    s.write_gaps(&[open.clone(), healing.clone(), elsewhere])
        .await
        .unwrap();
    assert_eq!(
        s.unhealed_gaps("binance", 10).await.unwrap(),
        [healing.clone(), open],
        "oldest first, of that provider only"
    );
    assert_eq!(s.unhealed_gaps("binance", 1).await.unwrap(), [healing]);
}

/// The ledger's minutes: per provider and minute, rows live and
/// backfilled, and the venue ids stored with their lowest and highest.
pub async fn minute_counts_add_up(s: &dyn TickStore) {
    let trade = |ms: i64, id: Option<&str>, origin: Origin, src: &str| {
        streamforge_model::TickRules::default()
            .check(
                streamforge_model::TickInput {
                    source_id: id.map(Into::into),
                    origin,
                    src_id: std::sync::Arc::from(src),
                    ..streamforge_testkit::tick_input(
                        "COINBASE:BTC-USD",
                        ms,
                        100.0 + ms as f64 / 1e9,
                        1.0,
                    )
                },
                Timestamp::MAX,
            )
            .unwrap()
    };
    // T0 is a minute's start.
    let batch = vec![
        trade(T0 + 1, Some("10"), Origin::Live, "coinbase"),
        trade(T0 + 2, Some("11"), Origin::Backfill, "coinbase"),
        trade(T0 + 3, Some("13"), Origin::Live, "coinbase"),
        trade(T0 + 59_999, Some("x9"), Origin::Live, "coinbase"),
        trade(T0 + 60_000, Some("14"), Origin::Live, "coinbase"),
        trade(T0 + 60_001, None, Origin::Live, "synthetic"),
    ];
    s.write_batch(Arc::from(batch)).await.unwrap();
    let symbol = Symbol::parse("COINBASE:BTC-USD").unwrap();
    let got = s
        .minute_counts(
            &symbol,
            Timestamp::from_millis(T0),
            Timestamp::from_millis(T0 + 120_000),
        )
        .await
        .unwrap();
    let m = |k: i64| Timestamp::from_millis(T0 + k * 60_000);
    let row = |provider: &str, minute, live, backfill, ids, min_id, max_id| MinuteCount {
        provider: provider.into(),
        minute,
        live,
        backfill,
        ids,
        min_id,
        max_id,
        received: 0,
        rejected: 0,
        duplicates: 0,
    };
    assert_eq!(
        got,
        [
            row("coinbase", m(0), 3, 1, 3, Some(10), Some(13)),
            row("coinbase", m(1), 1, 0, 1, Some(14), Some(14)),
            row("synthetic", m(1), 1, 0, 0, None, None),
        ]
    );
    // The range is half-open and by event time.
    let first = s
        .minute_counts(
            &symbol,
            Timestamp::from_millis(T0),
            Timestamp::from_millis(T0 + 60_000),
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(s
        .minute_counts(
            &Symbol::parse("NONE").unwrap(),
            Timestamp::MIN,
            Timestamp::MAX
        )
        .await
        .unwrap()
        .is_empty());
}

/// Ingest's tallies: written with the ticks, summed per provider and
/// minute over producers, and each applied once however often delivered.
pub async fn ledger_tallies_are_applied_once(s: &dyn TickStore) {
    let symbol = Symbol::parse("BINANCE:BTCUSDT").unwrap();
    let m = |k: i64| Timestamp::from_millis(T0 + k * 60_000);
    let tally = |k: i64, producer: &str, seq, received, rejected, duplicates| Tally {
        provider: "binance".into(),
        symbol: symbol.clone(),
        minute: m(k),
        producer: producer.into(),
        seq,
        received,
        rejected,
        duplicates,
    };
    let ticks: Vec<Tick> = (0..2)
        .map(|i| {
            let mut input = streamforge_testkit::tick_input("BINANCE:BTCUSDT", T0 + i, 10.0, 1.0);
            input.src_id = Arc::from("binance");
            streamforge_model::TickRules::default()
                .check(input, Timestamp::MAX)
                .unwrap()
        })
        .collect();
    let first = [
        tally(0, "a", 1, 3, 1, 0),
        tally(0, "a", 2, 2, 0, 1),
        tally(1, "b", 1, 5, 0, 0),
    ];
    let outcome = s
        .write_counted(Arc::from(ticks.clone()), &first)
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 2);
    /// Per minute: (start, stored live, received, rejected, duplicates).
    async fn counts(
        s: &dyn TickStore,
        symbol: &Symbol,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<(Timestamp, u64, u64, u64, u64)> {
        s.minute_counts(symbol, from, to)
            .await
            .unwrap()
            .iter()
            .map(|c| (c.minute, c.live, c.received, c.rejected, c.duplicates))
            .collect()
    }
    assert_eq!(
        counts(s, &symbol, m(0), m(2)).await,
        [(m(0), 2, 5, 1, 1), (m(1), 0, 5, 0, 0)],
        "a minute ingest counted but nothing was stored of is a row too"
    );
    // Delivered again (with the ticks, and alone), and one new tally.
    s.write_counted(Arc::from(ticks), &first).await.unwrap();
    s.write_counted(
        Arc::from(Vec::new()),
        &[tally(0, "a", 2, 2, 0, 1), tally(0, "a", 3, 1, 1, 0)],
    )
    .await
    .unwrap();
    // Another producer (the next ingest process) counts in the same row's minute.
    s.write_counted(Arc::from(Vec::new()), &[tally(0, "c", 1, 4, 0, 4)])
        .await
        .unwrap();
    assert_eq!(
        counts(s, &symbol, m(0), m(2)).await,
        [(m(0), 2, 10, 2, 5), (m(1), 0, 5, 0, 0)]
    );
    // Minutes that start before `from` are not in the answer.
    assert_eq!(counts(s, &symbol, m(1), m(2)).await, [(m(1), 0, 5, 0, 0)]);
}

#[tokio::test]
async fn sqlite_ledger_tallies_are_applied_once() {
    ledger_tallies_are_applied_once(&sqlite().await.1).await;
}

#[tokio::test]
async fn plain_postgres_ledger_tallies_are_applied_once() {
    ledger_tallies_are_applied_once(&postgres_in(Some(Mode::Postgres)).await).await;
}

#[tokio::test]
async fn timescaledb_ledger_tallies_are_applied_once() {
    ledger_tallies_are_applied_once(&timescaledb().await).await;
}

#[tokio::test]
async fn sqlite_minute_counts_add_up() {
    minute_counts_add_up(&sqlite().await.1).await;
}

#[tokio::test]
async fn plain_postgres_minute_counts_add_up() {
    minute_counts_add_up(&postgres_in(Some(Mode::Postgres)).await).await;
}

#[tokio::test]
async fn timescaledb_minute_counts_add_up() {
    minute_counts_add_up(&timescaledb().await).await;
}

#[tokio::test]
async fn sqlite_gap_healing_only_moves_forward() {
    gap_healing_only_moves_forward(&sqlite().await.1).await;
}

#[tokio::test]
async fn plain_postgres_gap_healing_only_moves_forward() {
    gap_healing_only_moves_forward(&postgres_in(Some(Mode::Postgres)).await).await;
}

#[tokio::test]
async fn timescaledb_gap_healing_only_moves_forward() {
    gap_healing_only_moves_forward(&timescaledb().await).await;
}

#[tokio::test]
async fn sqlite_gaps_are_idempotent_and_found_by_overlap() {
    gaps_are_idempotent_and_found_by_overlap(&sqlite().await.1).await;
}

#[tokio::test]
async fn timescaledb_gaps_are_idempotent_and_found_by_overlap() {
    gaps_are_idempotent_and_found_by_overlap(&timescaledb().await).await;
}

#[tokio::test]
async fn plain_postgres_writes_queries_and_candles() {
    let s = postgres_in(Some(Mode::Postgres)).await;
    gaps_are_idempotent_and_found_by_overlap(&s).await;
    writes_are_idempotent_and_round_trip(&s).await;
    tick_queries_honor_range_limit_and_order(&s).await;
    candles_match_a_brute_force_build_for_every_interval(&s).await;
}

#[tokio::test]
async fn sqlite_writes_are_idempotent_and_round_trip() {
    writes_are_idempotent_and_round_trip(&sqlite().await.1).await;
}

#[tokio::test]
async fn sqlite_tick_queries_honor_range_limit_and_order() {
    tick_queries_honor_range_limit_and_order(&sqlite().await.1).await;
}

#[tokio::test]
async fn sqlite_candles_match_a_brute_force_build() {
    candles_match_a_brute_force_build_for_every_interval(&sqlite().await.1).await;
}

#[tokio::test]
async fn timescaledb_writes_are_idempotent_and_round_trip() {
    writes_are_idempotent_and_round_trip(&timescaledb().await).await;
}

#[tokio::test]
async fn timescaledb_tick_queries_honor_range_limit_and_order() {
    tick_queries_honor_range_limit_and_order(&timescaledb().await).await;
}

#[tokio::test]
async fn timescaledb_candles_match_a_brute_force_build() {
    candles_match_a_brute_force_build_for_every_interval(&timescaledb().await).await;
}
