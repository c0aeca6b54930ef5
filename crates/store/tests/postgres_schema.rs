//! The PostgreSQL schema: migrations up, down and status, day partitions and
//! retention in plain mode, the TimescaleDB mode where the extension exists.

use std::sync::Arc;

use streamforge_model::{Symbol, Timestamp};
use streamforge_store::postgres::{migrate, MigrateAction, Mode};
use streamforge_store::{Order, PgSchemaOptions, PostgresStore, TickQuery, TickStore};
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
    let o = PgSchemaOptions {
        mode: Some(want),
        ..PgSchemaOptions::default()
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
        PgSchemaOptions {
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
    let w = store
        .write_batch(Arc::from(vec![old.clone(), new.clone()]))
        .await
        .unwrap();
    assert_eq!(w.inserted, 2);
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
    assert_eq!(left, vec![new], "only the tick inside retention is left");
}

#[tokio::test]
async fn timescaledb_mode_uses_a_hypertable_and_continuous_aggregates() {
    let pg = shared_postgres();
    pg.require_timescaledb();
    let url = pg.create_database().unwrap();
    let store = PostgresStore::open(
        &url,
        PgSchemaOptions {
            mode: Some(Mode::TimescaleDb),
            ..PgSchemaOptions::default()
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
