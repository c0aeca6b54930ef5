//! Schema migrations of the PostgreSQL store, embedded in the binary.
//!
//! Two modes, chosen once when the schema is first created:
//! - `timescaledb` when the extension can be created: `ticks` is a
//!   hypertable on `ts` with compression and retention policies, and
//!   continuous aggregates hold 1m and 1h candles;
//! - `postgres` otherwise (PostgreSQL ≥ 14): `ticks` is range-partitioned
//!   by day; partitions are created ahead and dropped past retention by
//!   [`super::PostgresStore::housekeeping`].
//!
//! The mode is recorded in `streamforge_schema`; queries work the same in
//! both.

use std::fmt;

use deadpool_postgres::Client;
use streamforge_model::Interval;

use crate::StoreError;

/// Settings that shape the schema.
#[derive(Clone, Debug, PartialEq)]
pub struct PgSchemaOptions {
    /// Chunk (TimescaleDB) or partition (plain) width, in days.
    pub chunk_days: u32,
    /// TimescaleDB: compress chunks older than this many days.
    pub compress_after_days: u32,
    /// Drop ticks older than this many days (0 keeps everything).
    pub retention_days: u32,
    /// Plain mode: daily partitions kept ready ahead of today.
    pub partitions_ahead: u32,
    /// The mode of a new schema; `None` picks TimescaleDB when available.
    pub mode: Option<Mode>,
}

impl Default for PgSchemaOptions {
    fn default() -> Self {
        PgSchemaOptions {
            chunk_days: 1,
            compress_after_days: 7,
            retention_days: 30,
            partitions_ahead: 2,
            mode: None,
        }
    }
}

/// Which engine features the schema uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    TimescaleDb,
    Postgres,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::TimescaleDb => "timescaledb",
            Mode::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "timescaledb" => Some(Mode::TimescaleDb),
            "postgres" => Some(Mode::Postgres),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `migrate status` reports.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaStatus {
    /// `None` before the first migration.
    pub mode: Option<Mode>,
    pub version: u32,
    pub latest: u32,
}

impl fmt::Display for SchemaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            None => write!(f, "no schema yet (latest version {})", self.latest),
            Some(m) => write!(
                f,
                "mode {m}, schema version {} of {}{}",
                self.version,
                self.latest,
                if self.version == self.latest {
                    " (up to date)"
                } else {
                    " (migrations pending)"
                }
            ),
        }
    }
}

/// One step; `up` and `down` are SQL for the mode.
struct Migration {
    name: &'static str,
    up: fn(Mode, &PgSchemaOptions) -> String,
    down: fn(Mode) -> String,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "ticks and symbols",
        up: ticks_up,
        down: |_| "DROP TABLE IF EXISTS ticks CASCADE; DROP TABLE IF EXISTS symbols;".into(),
    },
    Migration {
        name: "candle aggregates",
        up: candles_up,
        down: |mode| match mode {
            Mode::TimescaleDb => "DROP MATERIALIZED VIEW IF EXISTS candles_1h CASCADE; \
                                  DROP MATERIALIZED VIEW IF EXISTS candles_1m CASCADE;"
                .into(),
            Mode::Postgres => String::new(),
        },
    },
    Migration {
        name: "feed gaps",
        up: |_, _| {
            "CREATE TABLE gaps (
                 provider   TEXT        NOT NULL,
                 symbol     TEXT COLLATE \"C\" NOT NULL,
                 from_ts    TIMESTAMPTZ NOT NULL,
                 to_ts      TIMESTAMPTZ NOT NULL,
                 connection INTEGER     NOT NULL,
                 reason     TEXT        NOT NULL,
                 PRIMARY KEY (symbol, from_ts, provider));
             CREATE INDEX gaps_by_time ON gaps (from_ts);"
                .into()
        },
        down: |_| "DROP TABLE IF EXISTS gaps;".into(),
    },
    Migration {
        name: "candle rollups",
        up: |mode, _| match mode {
            Mode::Postgres => rollups_up(),
            Mode::TimescaleDb => continuous_rollups_up(),
        },
        down: |mode| {
            let kind = match mode {
                Mode::Postgres => "TABLE",
                Mode::TimescaleDb => "MATERIALIZED VIEW",
            };
            let mut sql: String = Interval::ROLLUPS
                .iter()
                .rev()
                .map(|iv| format!("DROP {kind} IF EXISTS candles_{iv} CASCADE;"))
                .collect();
            if mode == Mode::TimescaleDb {
                sql.push_str(&candles_up(mode, &PgSchemaOptions::default()));
            }
            sql
        },
    },
];

/// The SQL width of a stored rollup.
pub(crate) fn sql_interval(iv: Interval) -> &'static str {
    match iv {
        Interval::S1 => "1 second",
        Interval::M1 => "1 minute",
        Interval::M5 => "5 minutes",
        Interval::M15 => "15 minutes",
        Interval::H1 => "1 hour",
        Interval::D1 => "1 day",
    }
}

/// `INSERT` of the rollup rows of `interval` aggregated from `source` (rows
/// with `symbol, ts, tick_id, price, size`), merged into existing rows: the
/// open/close of the earlier/later trade by `(ts, tick_id)`, extremes,
/// sums. Rows are written in key order so concurrent writers cannot deadlock.
pub(crate) fn rollup_upsert(interval: Interval, source: &str) -> String {
    format!(
        "INSERT INTO candles_{iv} AS c
              (symbol, bucket, open, open_ts, open_id, high, low, close, close_ts, close_id,
               volume, notional, trades)
         SELECT symbol, date_bin(INTERVAL '{width}', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b,
                (array_agg(price ORDER BY ts, tick_id))[1], min(ts),
                (array_agg(tick_id ORDER BY ts, tick_id))[1],
                max(price), min(price),
                (array_agg(price ORDER BY ts DESC, tick_id DESC))[1], max(ts),
                (array_agg(tick_id ORDER BY ts DESC, tick_id DESC))[1],
                sum(size), sum(price * size), count(*)
           FROM {source} GROUP BY symbol, b ORDER BY symbol, b
         {merge}",
        iv = interval.as_str(),
        width = sql_interval(interval),
        merge = ROLLUP_MERGE,
    )
}

/// `INSERT` of rollup rows of `interval` already aggregated by the writer,
/// one array parameter per column (`$1` symbols ... `$13` trade counts, in
/// key order), merged into existing rows like [`rollup_upsert`].
pub(crate) fn rollup_merge_parts(interval: Interval) -> String {
    format!(
        "INSERT INTO candles_{iv} AS c
              (symbol, bucket, open, open_ts, open_id, high, low, close, close_ts, close_id,
               volume, notional, trades)
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::timestamptz[],
                              $5::int8[], $6::float8[], $7::float8[], $8::float8[],
                              $9::timestamptz[], $10::int8[], $11::float8[], $12::float8[],
                              $13::int8[])
         {merge}",
        iv = interval.as_str(),
        merge = ROLLUP_MERGE,
    )
}

/// How a rollup row takes in a part of the same bucket: the earlier open
/// and later close by `(ts, tick_id)`, extremes, sums.
const ROLLUP_MERGE: &str = "ON CONFLICT (symbol, bucket) DO UPDATE SET
             open = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                         THEN EXCLUDED.open ELSE c.open END,
             open_id = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                            THEN EXCLUDED.open_id ELSE c.open_id END,
             open_ts = LEAST(EXCLUDED.open_ts, c.open_ts),
             close = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                          THEN EXCLUDED.close ELSE c.close END,
             close_id = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                             THEN EXCLUDED.close_id ELSE c.close_id END,
             close_ts = GREATEST(EXCLUDED.close_ts, c.close_ts),
             high = GREATEST(EXCLUDED.high, c.high), low = LEAST(EXCLUDED.low, c.low),
             volume = c.volume + EXCLUDED.volume, notional = c.notional + EXCLUDED.notional,
             trades = c.trades + EXCLUDED.trades";

/// How a continuous aggregate is refreshed: materialized from `start` to
/// `end` before now, every `every`. Newer buckets come from real-time
/// aggregation; see [`REFRESH_LAG`].
struct Refresh {
    start: &'static str,
    end: &'static str,
    every: &'static str,
}

fn refresh_of(iv: Interval) -> Refresh {
    let (start, end, every) = match iv {
        Interval::S1 => ("1 hour", "10 seconds", "30 seconds"),
        Interval::H1 => ("3 days", "1 hour", "30 minutes"),
        Interval::D1 => ("30 days", "1 day", "1 hour"),
        _ => ("6 hours", "1 minute", "1 minute"),
    };
    Refresh { start, end, every }
}

/// TimescaleDB: how far behind now a continuous aggregate's materialized
/// part can end (its refresh policy's end offset, in microseconds). A
/// tick newer than that is always in the real-time part; an older one may
/// land in a bucket already materialized, which the writer then refreshes.
pub(crate) fn refresh_lag(iv: Interval) -> i64 {
    let s = 1_000_000;
    match iv {
        Interval::S1 => 10 * s,
        Interval::H1 => 3_600 * s,
        Interval::D1 => 86_400 * s,
        _ => 60 * s,
    }
}

/// TimescaleDB: the rollups as continuous aggregates with real-time
/// aggregation: `1s` and `1m` over the ticks, `1h` over `1m`, `1d` over
/// `1h` (hierarchical), with the same columns as the plain-mode tables.
/// Replaces the 1m/1h aggregates of migration 2.
fn continuous_rollups_up() -> String {
    let mut sql = String::from(
        "DROP MATERIALIZED VIEW IF EXISTS candles_1h CASCADE;
         DROP MATERIALIZED VIEW IF EXISTS candles_1m CASCADE;",
    );
    for iv in Interval::ROLLUPS {
        let width = sql_interval(iv);
        let select = match iv {
            Interval::S1 | Interval::M1 => format!(
                "SELECT symbol, time_bucket(INTERVAL '{width}', ts) AS bucket,
                        (array_agg(price ORDER BY ts, tick_id))[1] AS open, min(ts) AS open_ts,
                        (array_agg(tick_id ORDER BY ts, tick_id))[1] AS open_id,
                        max(price) AS high, min(price) AS low,
                        (array_agg(price ORDER BY ts DESC, tick_id DESC))[1] AS close,
                        max(ts) AS close_ts,
                        (array_agg(tick_id ORDER BY ts DESC, tick_id DESC))[1] AS close_id,
                        sum(size) AS volume, sum(price * size) AS notional, count(*) AS trades
                   FROM ticks GROUP BY symbol, time_bucket(INTERVAL '{width}', ts)"
            ),
            _ => {
                let finer = if iv == Interval::H1 { "1m" } else { "1h" };
                format!(
                    "SELECT symbol, time_bucket(INTERVAL '{width}', bucket) AS bucket,
                            (array_agg(open ORDER BY open_ts, open_id))[1] AS open,
                            min(open_ts) AS open_ts,
                            (array_agg(open_id ORDER BY open_ts, open_id))[1] AS open_id,
                            max(high) AS high, min(low) AS low,
                            (array_agg(close ORDER BY close_ts DESC, close_id DESC))[1] AS close,
                            max(close_ts) AS close_ts,
                            (array_agg(close_id ORDER BY close_ts DESC, close_id DESC))[1] AS close_id,
                            sum(volume) AS volume, sum(notional) AS notional,
                            sum(trades)::BIGINT AS trades
                       FROM candles_{finer} GROUP BY symbol, time_bucket(INTERVAL '{width}', bucket)"
                )
            }
        };
        let Refresh { start, end, every } = refresh_of(iv);
        sql.push_str(&format!(
            "CREATE MATERIALIZED VIEW candles_{iv}
                 WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                 {select} WITH NO DATA;
             SELECT add_continuous_aggregate_policy('candles_{iv}',
                 start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}',
                 schedule_interval => INTERVAL '{every}');"
        ));
    }
    sql
}

/// Rollup tables for the stored widths, filled from the ticks already there.
fn rollups_up() -> String {
    Interval::ROLLUPS
        .iter()
        .map(|&iv| {
            format!(
                "CREATE TABLE candles_{iv} (
                     symbol   TEXT COLLATE \"C\" NOT NULL,
                     bucket   TIMESTAMPTZ      NOT NULL,
                     open     DOUBLE PRECISION NOT NULL,
                     open_ts  TIMESTAMPTZ      NOT NULL,
                     open_id  BIGINT           NOT NULL,
                     high     DOUBLE PRECISION NOT NULL,
                     low      DOUBLE PRECISION NOT NULL,
                     close    DOUBLE PRECISION NOT NULL,
                     close_ts TIMESTAMPTZ      NOT NULL,
                     close_id BIGINT           NOT NULL,
                     volume   DOUBLE PRECISION NOT NULL,
                     notional DOUBLE PRECISION NOT NULL,
                     trades   BIGINT           NOT NULL,
                     PRIMARY KEY (symbol, bucket));
                 {};",
                rollup_upsert(iv, "ticks")
            )
        })
        .collect()
}

fn ticks_up(mode: Mode, o: &PgSchemaOptions) -> String {
    let columns = "
        symbol      TEXT COLLATE \"C\" NOT NULL,
        ts          TIMESTAMPTZ      NOT NULL,
        tick_id     BIGINT           NOT NULL,
        price       DOUBLE PRECISION NOT NULL,
        size        DOUBLE PRECISION NOT NULL,
        exchange    TEXT             NOT NULL,
        src_id      TEXT             NOT NULL,
        conditions  TEXT[]           NOT NULL,
        ingested_at TIMESTAMPTZ      NOT NULL,
        PRIMARY KEY (symbol, ts, tick_id)";
    let symbols = "CREATE TABLE symbols (
        symbol   TEXT COLLATE \"C\" PRIMARY KEY,
        first_ts TIMESTAMPTZ NOT NULL,
        last_ts  TIMESTAMPTZ NOT NULL,
        ticks    BIGINT      NOT NULL);";
    match mode {
        Mode::Postgres => {
            format!("CREATE TABLE ticks ({columns}) PARTITION BY RANGE (ts); {symbols}")
        }
        Mode::TimescaleDb => {
            let mut sql = format!(
                "CREATE TABLE ticks ({columns}); {symbols}
                 SELECT create_hypertable('ticks', 'ts', chunk_time_interval => INTERVAL '{} days');
                 ALTER TABLE ticks SET (timescaledb.compress,
                     timescaledb.compress_segmentby = 'symbol',
                     timescaledb.compress_orderby = 'ts DESC, tick_id DESC');
                 SELECT add_compression_policy('ticks', INTERVAL '{} days');",
                o.chunk_days.max(1),
                o.compress_after_days.max(1)
            );
            if o.retention_days > 0 {
                sql.push_str(&format!(
                    "SELECT add_retention_policy('ticks', INTERVAL '{} days');",
                    o.retention_days
                ));
            }
            sql
        }
    }
}

fn candles_up(mode: Mode, _o: &PgSchemaOptions) -> String {
    match mode {
        Mode::Postgres => String::new(),
        Mode::TimescaleDb => ["1m", "1h"]
            .iter()
            .map(|iv| {
                let (width, start, end, every) = match *iv {
                    "1m" => ("1 minute", "2 hours", "1 minute", "1 minute"),
                    _ => ("1 hour", "2 days", "1 hour", "30 minutes"),
                };
                format!(
                    "CREATE MATERIALIZED VIEW candles_{iv} WITH (timescaledb.continuous) AS
                     SELECT symbol, time_bucket(INTERVAL '{width}', ts) AS bucket,
                            first(price, ts) AS open, max(price) AS high, min(price) AS low,
                            last(price, ts) AS close, sum(size) AS volume,
                            sum(price * size) AS notional, count(*) AS trades,
                            min(ts) AS first_ts, max(ts) AS last_ts
                       FROM ticks GROUP BY symbol, bucket WITH NO DATA;
                     ALTER MATERIALIZED VIEW candles_{iv} SET (timescaledb.materialized_only = false);
                     SELECT add_continuous_aggregate_policy('candles_{iv}',
                         start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}',
                         schedule_interval => INTERVAL '{every}');"
                )
            })
            .collect(),
    }
}

/// The latest schema version.
pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}

async fn ensure_bookkeeping(client: &Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS streamforge_schema (
                 version    INTEGER     PRIMARY KEY,
                 name       TEXT        NOT NULL,
                 mode       TEXT        NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    Ok(())
}

/// The schema's mode and version. Reads only: creating the bookkeeping
/// table here would race with a concurrent `migrate up` (`CREATE TABLE IF
/// NOT EXISTS` is not safe against another session creating it).
pub async fn status(client: &Client) -> Result<SchemaStatus, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('streamforge_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(SchemaStatus {
            mode: None,
            version: 0,
            latest: latest(),
        });
    }
    let row = client
        .query_opt(
            "SELECT version, mode FROM streamforge_schema ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(match row {
        None => SchemaStatus {
            mode: None,
            version: 0,
            latest: latest(),
        },
        Some(r) => SchemaStatus {
            mode: Mode::parse(r.get::<_, &str>(1)),
            version: r.get::<_, i32>(0) as u32,
            latest: latest(),
        },
    })
}

/// Picks the mode for a new schema: the one asked for, else TimescaleDB
/// when its extension can be created in this database.
async fn choose_mode(client: &Client, wanted: Option<Mode>) -> Result<Mode, StoreError> {
    match wanted {
        Some(Mode::Postgres) => Ok(Mode::Postgres),
        Some(Mode::TimescaleDb) => {
            client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                .await?;
            Ok(Mode::TimescaleDb)
        }
        None => Ok(detect_mode(client).await),
    }
}

async fn detect_mode(client: &Client) -> Mode {
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .is_some();
    if !available {
        return Mode::Postgres;
    }
    // Creating the extension without it being preloaded ends the session
    // with a FATAL error, so check first.
    let preloaded = client
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .await
        .map(|r| r.get::<_, String>(0).contains("timescaledb"))
        .unwrap_or(false);
    if !preloaded {
        tracing::warn!(
            "timescaledb is installed but not in shared_preload_libraries; using plain PostgreSQL"
        );
        return Mode::Postgres;
    }
    match client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
    {
        Ok(()) => Mode::TimescaleDb,
        Err(e) => {
            let detail = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            tracing::warn!(error = %detail, "cannot create the timescaledb extension; using plain PostgreSQL");
            Mode::Postgres
        }
    }
}

/// Applies every pending migration, each in its own transaction, holding
/// an advisory lock so concurrent `migrate`/`persist` processes take turns.
pub async fn up(
    client: &mut Client,
    options: &PgSchemaOptions,
) -> Result<SchemaStatus, StoreError> {
    client.batch_execute(LOCK).await?;
    let result = async {
        ensure_bookkeeping(client).await?;
        let current = status(client).await?;
        let mode = match current.mode {
            Some(m) => m,
            None => choose_mode(client, options.mode).await?,
        };
        for (i, m) in MIGRATIONS.iter().enumerate().skip(current.version as usize) {
            let version = i as i32 + 1;
            let tx = client.transaction().await?;
            let sql = (m.up)(mode, options);
            if !sql.trim().is_empty() {
                tx.batch_execute(&sql).await?;
            }
            tx.execute(
                "INSERT INTO streamforge_schema (version, name, mode) VALUES ($1, $2, $3)",
                &[&version, &m.name, &mode.as_str()],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(version, name = m.name, %mode, "postgres store migrated");
            if mode == Mode::TimescaleDb && m.name == "candle rollups" {
                // Materialize the history (refreshes cannot run in a transaction);
                // finer levels first, as the coarser ones read them.
                for iv in Interval::ROLLUPS {
                    client
                        .batch_execute(&format!(
                            "CALL refresh_continuous_aggregate('candles_{iv}', NULL, NULL)"
                        ))
                        .await?;
                }
            }
        }
        status(client).await
    }
    .await;
    client.batch_execute(UNLOCK).await?;
    result
}

/// The advisory lock every schema change holds, so that concurrent
/// `migrate` and `persist` processes take turns.
const LOCK: &str = "SELECT pg_advisory_lock(727274)";
const UNLOCK: &str = "SELECT pg_advisory_unlock(727274)";

/// Reverts the latest migration (under the same lock as [`up`]).
pub async fn down(client: &mut Client) -> Result<SchemaStatus, StoreError> {
    client.batch_execute(LOCK).await?;
    let result = down_locked(client).await;
    client.batch_execute(UNLOCK).await?;
    result
}

async fn down_locked(client: &mut Client) -> Result<SchemaStatus, StoreError> {
    let current = status(client).await?;
    let Some(mode) = current.mode else {
        return Ok(current);
    };
    let m = &MIGRATIONS[current.version as usize - 1];
    let tx = client.transaction().await?;
    let sql = (m.down)(mode);
    if !sql.trim().is_empty() {
        tx.batch_execute(&sql).await?;
    }
    tx.execute(
        "DELETE FROM streamforge_schema WHERE version = $1",
        &[&(current.version as i32)],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        version = current.version,
        name = m.name,
        "postgres migration reverted"
    );
    status(client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `"10 seconds"` → microseconds.
    fn micros_of(text: &str) -> i64 {
        let (n, unit) = text.split_once(' ').unwrap();
        let n: i64 = n.parse().unwrap();
        let unit_s = match unit.trim_end_matches('s') {
            "second" => 1,
            "minute" => 60,
            "hour" => 3_600,
            "day" => 86_400,
            other => panic!("unit {other}"),
        };
        n * unit_s * 1_000_000
    }

    /// The writer refreshes what the policy may have materialized: its lag
    /// must be the policy's end offset, level by level, and each level's
    /// refresh window must reach further back than its lag.
    #[test]
    fn refresh_lags_are_the_policies_end_offsets() {
        let expected = [
            (Interval::S1, 10_000_000),
            (Interval::M1, 60_000_000),
            (Interval::H1, 3_600_000_000),
            (Interval::D1, 86_400_000_000),
        ];
        for (iv, lag) in expected {
            let r = refresh_of(iv);
            assert_eq!(refresh_lag(iv), lag, "{iv}");
            assert_eq!(micros_of(r.end), lag, "{iv}: policy end offset {}", r.end);
            assert!(
                micros_of(r.start) > lag + iv.micros(),
                "{iv}: start {}",
                r.start
            );
            assert!(
                micros_of(r.every) <= micros_of(r.start),
                "{iv}: every {}",
                r.every
            );
        }
    }
}
