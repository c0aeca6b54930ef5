//! The PostgreSQL schema: migrations up, down and status, day partitions and
//! retention in plain mode, the TimescaleDB mode where the extension exists.

use std::sync::Arc;

use streamforge_model::{Symbol, Timestamp};
use streamforge_store::postgres::{migrate, MigrateAction, Mode};
use streamforge_store::{Order, PostgresConfig, PostgresStore, TickQuery, TickStore};
use streamforge_testkit::engines::{psql, shared_postgres};

const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn plain_postgres_migrations_go_up_and_down_and_report_the_mode() {
    migrations_go_up_and_down_and_report_the_mode(Mode::Postgres).await;
}

#[tokio::test]
async fn timescaledb_migrations_go_up_and_down_and_report_the_mode() {
    shared_postgres().require_timescaledb();
    migrations_go_up_and_down_and_report_the_mode(Mode::TimescaleDb).await;
}

async fn migrations_go_up_and_down_and_report_the_mode(want: Mode) {
    let pg = shared_postgres();
    let url = pg.create_database().unwrap();
    let o = PostgresConfig {
        mode: Some(want),
        ..PostgresConfig::default()
    };
    let s = migrate(&url, MigrateAction::Status, &o).await.unwrap();
    assert_eq!((s.mode, s.version), (None, 0));
    assert!(s.to_string().contains("no schema"));

    let s = migrate(&url, MigrateAction::Up, &o).await.unwrap();
    assert_eq!(s.version, s.latest);
    let mode = s.mode.unwrap();
    assert_eq!(mode, want, "the mode asked for");
    assert!(
        s.to_string().contains(mode.as_str()) && s.to_string().contains("up to date"),
        "{s}"
    );
    // Idempotent.
    assert_eq!(migrate(&url, MigrateAction::Up, &o).await.unwrap(), s);

    // Each `down` undoes one migration, to an empty schema.
    for expected in (0..s.latest).rev() {
        let down = migrate(&url, MigrateAction::Down, &o).await.unwrap();
        assert_eq!(down.version, expected);
    }
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM pg_class WHERE relname = 'ticks'"
        ),
        "0"
    );
    let again = migrate(&url, MigrateAction::Up, &o).await.unwrap();
    assert_eq!(again.version, again.latest);
}

#[tokio::test]
async fn plain_mode_partitions_by_day_and_drops_past_retention() {
    let pg = shared_postgres();
    let url = pg.create_database().unwrap();
    let store = PostgresStore::open(
        &url,
        PostgresConfig {
            retention_days: 5,
            partitions_ahead: 2,
            mode: Some(Mode::Postgres),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(store.mode(), Mode::Postgres);
    let today = Timestamp::now().as_millis() / DAY_MS * DAY_MS;
    // Partitions exist ahead of today.
    let ahead = psql(&url, "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'ticks'");
    assert!(ahead.parse::<i32>().unwrap() >= 3, "{ahead} partitions");

    let old = streamforge_testkit::tick("AAPL", today - 10 * DAY_MS + 1000, 1.0, 1.0);
    let new = streamforge_testkit::tick("AAPL", Timestamp::now().as_millis() - 1000, 2.0, 1.0);
    // The edges: the first day kept (today - 5) and the last dropped.
    let kept_edge = streamforge_testkit::tick("AAPL", today - 5 * DAY_MS + 1000, 3.0, 1.0);
    let dropped_edge = streamforge_testkit::tick("AAPL", today - 5 * DAY_MS - 1000, 4.0, 1.0);
    let w = store
        .write_batch(Arc::from(vec![
            old.clone(),
            new.clone(),
            kept_edge.clone(),
            dropped_edge,
        ]))
        .await
        .unwrap();
    assert_eq!(w.inserted, 4);
    let old_day = old.ts().to_string()[..10].replace('-', "");
    assert_eq!(
        psql(&url, &format!("SELECT count(*) FROM ticks_p{old_day}")),
        "1",
        "old day got its own partition"
    );

    TickStore::housekeeping(&store).await.unwrap();
    assert_eq!(
        psql(
            &url,
            &format!("SELECT count(*) FROM pg_class WHERE relname = 'ticks_p{old_day}'")
        ),
        "0"
    );
    let left = store
        .ticks(TickQuery {
            symbol: Symbol::parse("AAPL").unwrap(),
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            limit: 10,
            order: Order::Asc,
        })
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![kept_edge, new],
        "only the ticks of the 5 days kept are left"
    );
}

#[tokio::test]
async fn timescaledb_mode_uses_a_hypertable_and_continuous_aggregates() {
    let pg = shared_postgres();
    pg.require_timescaledb();
    let url = pg.create_database().unwrap();
    let store = PostgresStore::open(
        &url,
        PostgresConfig {
            mode: Some(Mode::TimescaleDb),
            ..PostgresConfig::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(store.mode(), Mode::TimescaleDb);
    assert_eq!(psql(&url, "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'ticks'"), "1");
    // The candle rollups, with real-time aggregation and a refresh policy each.
    assert_eq!(
        psql(
            &url,
            "SELECT string_agg(view_name || ':' || materialized_only, ',' ORDER BY view_name) \
             FROM timescaledb_information.continuous_aggregates"
        ),
        "candles_1d:false,candles_1h:false,candles_1m:false,candles_1s:false"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM timescaledb_information.jobs \
             WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        ),
        "4"
    );
    let jobs = psql(&url, "SELECT string_agg(proc_name, ',' ORDER BY proc_name) FROM timescaledb_information.jobs WHERE hypertable_name = 'ticks'");
    assert!(
        jobs.contains("policy_compression") && jobs.contains("policy_retention"),
        "{jobs}"
    );
    let t = streamforge_testkit::tick("AAPL", Timestamp::now().as_millis() - 1000, 2.0, 1.0);
    assert_eq!(
        store
            .write_batch(Arc::from(vec![t.clone(), t]))
            .await
            .unwrap()
            .inserted,
        1
    );
}

/// Ticks stored, the rollup migration reverted and applied again: the
/// rollups are rebuilt from the ticks already there, equal to a fold over
/// them (computed apart, `testkit::reference`).
async fn rollups_are_backfilled_from_existing_ticks(want: Mode) {
    use streamforge_model::Interval;
    use streamforge_store::CandleQuery;

    let pg = shared_postgres();
    let url = pg.create_database().unwrap();
    let o = PostgresConfig {
        mode: Some(want),
        ..PostgresConfig::default()
    };
    let store = PostgresStore::open(&url, o.clone()).await.unwrap();
    // Three days of trades, 37 s apart with ties, a few minutes back from now
    // (inside retention, outside the real-time edge of the aggregates).
    let now = Timestamp::now().as_millis();
    let start = now - 3 * DAY_MS;
    let ticks: Vec<_> = (0..7_000i64)
        .map(|i| {
            let ms = start + (i / 2) * 37_000 + (i % 2) * 250;
            streamforge_testkit::tick("AAPL", ms, 100.0 + (i % 97) as f64, (i % 5) as f64)
        })
        .collect();
    store.write_batch(Arc::from(ticks.clone())).await.unwrap();
    drop(store);
    let latest = migrate(&url, MigrateAction::Status, &o)
        .await
        .unwrap()
        .latest;
    // Down to just below the rollups (migration 4), later ones first.
    let mut down = migrate(&url, MigrateAction::Down, &o).await.unwrap();
    while down.version >= 4 {
        down = migrate(&url, MigrateAction::Down, &o).await.unwrap();
    }
    assert_eq!(down.version, 3);
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM pg_class WHERE relname = 'candles_1s'"
        ),
        "0",
        "the rollups are gone"
    );
    assert_eq!(psql(&url, "SELECT count(*) FROM ticks"), "7000");
    let up = migrate(&url, MigrateAction::Up, &o).await.unwrap();
    assert_eq!(up.version, latest);
    let store = PostgresStore::open(&url, o).await.unwrap();
    for interval in Interval::ALL {
        let got = store
            .candles(CandleQuery {
                symbol: Symbol::parse("AAPL").unwrap(),
                interval,
                from: Timestamp::MIN,
                to: Timestamp::MAX,
                limit: 100_000,
            })
            .await
            .unwrap();
        let expected = streamforge_testkit::reference::candles(interval, &ticks);
        streamforge_testkit::reference::assert_candles(&got, &expected, interval.as_str());
    }
}

#[tokio::test]
async fn plain_postgres_rollups_are_backfilled_from_existing_ticks() {
    rollups_are_backfilled_from_existing_ticks(Mode::Postgres).await;
}

#[tokio::test]
async fn timescaledb_rollups_are_backfilled_from_existing_ticks() {
    shared_postgres().require_timescaledb();
    rollups_are_backfilled_from_existing_ticks(Mode::TimescaleDb).await;
}

/// Four `migrate up` at once on an empty database: the advisory lock makes
/// them take turns, so each succeeds and every migration is applied once.
async fn concurrent_migrations_take_turns(want: Mode) {
    let url = shared_postgres().create_database().unwrap();
    let o = PostgresConfig {
        mode: Some(want),
        ..PostgresConfig::default()
    };
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (url, o) = (url.clone(), o.clone());
            tokio::spawn(async move { migrate(&url, MigrateAction::Up, &o).await })
        })
        .collect();
    for run in runs {
        let s = run
            .await
            .unwrap()
            .expect("every concurrent migrate up succeeds");
        assert_eq!(s.version, s.latest);
    }
    let latest = migrate(&url, MigrateAction::Status, &o)
        .await
        .unwrap()
        .latest;
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) || ' ' || count(DISTINCT version) || ' ' || max(version) FROM streamforge_schema"
        ),
        format!("{latest} {latest} {latest}"),
        "each migration recorded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_postgres_concurrent_migrate_up_takes_turns() {
    concurrent_migrations_take_turns(Mode::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescaledb_concurrent_migrate_up_takes_turns() {
    shared_postgres().require_timescaledb();
    concurrent_migrations_take_turns(Mode::TimescaleDb).await;
}

#[tokio::test]
async fn a_postgres_store_prints_its_mode_and_never_its_url() {
    let url = shared_postgres().create_database().unwrap();
    let store = PostgresStore::open(
        &url,
        PostgresConfig {
            mode: Some(Mode::Postgres),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let shown = format!("{store:?}");
    assert_eq!(shown, "PostgresStore { mode: Postgres }");
}
