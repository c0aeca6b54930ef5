//! [`PostgresStore`]: the production tick store (`postgres://...`),
//! TimescaleDB when the extension exists, plain PostgreSQL (≥ 14) otherwise.
//!
//! A batch is written in one transaction: binary `COPY` into a temporary
//! staging table, then `INSERT ... SELECT ... ON CONFLICT DO NOTHING` on the
//! key `(symbol, ts, tick_id)`, with the per-symbol summary in `symbols`
//! updated from the rows actually inserted, and so are the candle rollups
//! (`candles_1s`, `_1m`, `_1h`, `_1d`; the statement answers the keys it
//! inserted, the writer folds those ticks into parts per bucket and merges
//! them into the rollup tables): a redelivered tick changes nothing, a late
//! one corrects its buckets. Candles are read from the coarsest
//! rollup that tiles the interval. Schema and modes: [`migrations`].

pub mod migrations;
pub mod tls;
mod types;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::pin_mut;
use parking_lot::Mutex;
use streamforge_model::settings::{duration_text, longer_than_zero, Invalid};
use streamforge_model::{
    rebucket, Candle, CandlePart, Gap, Interval, Symbol, Tally, Tick, Timestamp,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

pub use migrations::{Mode, SchemaStatus};
use types::PgTime;

use crate::rows::{
    self, GapRow, RollupRow, TickReader, TickRow, GAP_COLUMNS, HEALING_COLUMNS, ROLLUP_COLUMNS,
    SYMBOL_COLUMNS, TICK_COLUMNS,
};

use crate::{
    CandleQuery, GapQuery, Order, StoreError, SymbolInfo, TickBatch, TickQuery, TickStore,
    WriteOutcome,
};

/// Connections in the pool.
const POOL_SIZE: usize = 8;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The PostgreSQL tick store. Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    options: PostgresConfig,
    mode: Mode,
    /// Plain mode: day partitions known to exist (days since the epoch).
    partitions: Arc<Mutex<HashSet<i64>>>,
    /// TimescaleDB: set once this role was refused an aggregate refresh
    /// (it is not the owner), so the warning is logged once.
    refresh_refused: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("mode", &self.mode)
            .finish()
    }
}

/// Settings of a `postgres://` store: the `[postgres]` section.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// The mode of a new schema: `auto` (TimescaleDB when the extension can
    /// be created), `timescaledb` or `postgres`. An existing schema keeps its own.
    #[serde(with = "mode_choice")]
    pub mode: Option<Mode>,
    /// Chunk (TimescaleDB) or partition (plain) width, in days.
    pub chunk_days: u32,
    /// TimescaleDB: compress chunks older than this many days.
    pub compress_after_days: u32,
    /// Drop ticks older than this many days; 0 keeps everything.
    pub retention_days: u32,
    /// Plain mode: daily partitions kept ready ahead of today.
    pub partitions_ahead: u32,
    /// How often persist runs store upkeep (partitions ahead, retention).
    #[serde(with = "duration_text")]
    pub housekeeping_every: Duration,
    /// Opening a connection (TCP and authentication), unless the URL sets
    /// `connect_timeout`.
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    /// The server's `statement_timeout` for every statement of the store,
    /// unless the URL's `options` set one. The store also gives up on any
    /// call after this plus two seconds, so a database that answers nothing
    /// at all (frozen, or a network black hole) is an error, not a hang.
    #[serde(with = "duration_text")]
    pub statement_timeout: Duration,
    /// Waiting for a free connection of the pool.
    #[serde(with = "duration_text")]
    pub pool_wait_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            mode: None,
            chunk_days: 1,
            compress_after_days: 7,
            retention_days: 30,
            partitions_ahead: 2,
            housekeeping_every: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
            pool_wait_timeout: Duration::from_secs(5),
        }
    }
}

impl PostgresConfig {
    /// When the store gives up on a call the server has not answered.
    pub fn call_timeout(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(2)
    }

    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.chunk_days == 0 {
            return Err(Invalid::new("chunk_days", "must be at least 1"));
        }
        longer_than_zero(&[
            ("housekeeping_every", self.housekeeping_every),
            ("connect_timeout", self.connect_timeout),
            ("statement_timeout", self.statement_timeout),
            ("pool_wait_timeout", self.pool_wait_timeout),
        ])
    }
}

/// `mode` as text: `auto` is no fixed mode.
mod mode_choice {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Mode;

    pub fn serialize<S: Serializer>(mode: &Option<Mode>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(mode.map_or("auto", Mode::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "auto" => Ok(None),
            other => Mode::parse(other).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "expected auto, postgres or timescaledb, got {other:?}"
                ))
            }),
        }
    }
}

/// The pool for `url`, without touching the schema.
fn pool(url: &str, timeouts: &PostgresConfig) -> Result<Pool, StoreError> {
    let tls = tls::settings(url)?;
    let connector = tls::connector(&tls, url)?;
    let mut config: tokio_postgres::Config =
        tls.driver_url.parse().map_err(|e| StoreError::Url {
            url: crate::redact_url(url),
            reason: format!("{e}"),
        })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeouts.connect_timeout);
    }
    let options = config.get_options().unwrap_or_default().to_string();
    if !options.contains("statement_timeout") {
        let ms = timeouts.statement_timeout.as_millis().max(1);
        config.options(format!("{options} -c statement_timeout={ms}").trim());
    }
    let manager = Manager::from_config(
        config,
        connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(timeouts.pool_wait_timeout))
        .create_timeout(Some(timeouts.connect_timeout + Duration::from_secs(1)))
        .recycle_timeout(Some(timeouts.connect_timeout))
        .build()
        .map_err(|e| StoreError::Pool(e.to_string()))
}

/// Runs `up`, `down` or `status` on the database at `url`.
pub async fn migrate(
    url: &str,
    action: MigrateAction,
    options: &PostgresConfig,
) -> Result<SchemaStatus, StoreError> {
    let pool = pool(url, options)?;
    let mut client = pool.get().await?;
    // A migration may rewrite a large table: no statement timeout.
    client.simple_query("SET statement_timeout = 0").await?;
    match action {
        MigrateAction::Up => migrations::up(&mut client, options).await,
        MigrateAction::Down => migrations::down(&mut client).await,
        MigrateAction::Status => migrations::status(&client).await,
    }
}

/// Creates (or updates) the writer and reader roles and grants them their
/// rights on the schema at `url` (connect as its owner, after `up`).
pub async fn grant_roles(
    url: &str,
    options: &PostgresConfig,
    writer: Option<&migrations::RoleSpec>,
    reader: Option<&migrations::RoleSpec>,
) -> Result<(), StoreError> {
    let pool = pool(url, options)?;
    let client = pool.get().await?;
    migrations::grant_roles(&client, writer, reader).await
}

/// What [`migrate`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateAction {
    Up,
    Down,
    Status,
}

/// SQLSTATE 42501: the role lacks a right.
fn insufficient_privilege(e: &StoreError) -> bool {
    match e {
        StoreError::Postgres(e) => {
            e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
        }
        _ => false,
    }
}

fn day_of(ts: Timestamp) -> i64 {
    ts.as_micros().div_euclid(MICROS_PER_DAY)
}

fn partition_name(day: i64) -> String {
    let start = Timestamp::from_micros(day * MICROS_PER_DAY).to_string();
    format!("ticks_p{}", start[..10].replace('-', ""))
}

impl PostgresStore {
    /// Connects and brings the schema up to date (the same as `migrate up`)
    /// when it is not; a schema already up to date is not touched, so a
    /// writer or reader role without DDL rights opens it.
    pub async fn open(url: &str, options: PostgresConfig) -> Result<Self, StoreError> {
        let pool = pool(url, &options)?;
        let status = {
            let mut client = pool.get().await?;
            let current = migrations::status(&client).await?;
            if current.mode.is_some() && current.version == current.latest {
                current
            } else {
                // A migration may rewrite a large table: no statement timeout
                // while it runs; the connection's default comes back after.
                client.simple_query("SET statement_timeout = 0").await?;
                let status = migrations::up(&mut client, &options).await?;
                client.simple_query("RESET statement_timeout").await?;
                status
            }
        };
        let mode = status.mode.unwrap_or(Mode::Postgres);
        let store = PostgresStore {
            pool,
            options,
            mode,
            partitions: Arc::default(),
            refresh_refused: Arc::default(),
        };
        match store.partitions_housekeeping().await {
            Err(e) if insufficient_privilege(&e) => tracing::info!(
                "this database role may not manage partitions (a read-only role); the writer's persist does"
            ),
            other => other?,
        }
        Ok(store)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Plain mode: creates the partitions of the days ahead and drops those
    /// past retention. TimescaleDB runs its own policies.
    async fn partitions_housekeeping(&self) -> Result<(), StoreError> {
        if self.mode != Mode::Postgres {
            return Ok(());
        }
        let today = day_of(Timestamp::now());
        let days: Vec<i64> = (today..=today + i64::from(self.options.partitions_ahead)).collect();
        self.ensure_partitions(&days).await?;
        if self.options.retention_days > 0 {
            let cutoff = today - i64::from(self.options.retention_days);
            let client = self.pool.get().await?;
            let dropped = client
                .query("SELECT streamforge_drop_partitions_before($1)", &[&cutoff])
                .await?;
            for r in dropped {
                let name: String = r.get(0);
                tracing::info!(partition = %name, "dropped partition past retention");
            }
            self.partitions.lock().retain(|d| *d >= cutoff);
        }
        Ok(())
    }

    /// Plain mode: makes sure a partition exists for each day.
    async fn ensure_partitions(&self, days: &[i64]) -> Result<(), StoreError> {
        let missing: Vec<i64> = {
            let known = self.partitions.lock();
            days.iter()
                .copied()
                .filter(|d| !known.contains(d))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        for day in missing {
            // Through the owner's function: a writer role has no DDL rights.
            let made = client
                .execute("SELECT streamforge_add_partition($1)", &[&day])
                .await;
            if let Err(e) = made {
                // Another process may have created it at the same moment.
                let exists = client
                    .query_opt(
                        "SELECT 1 FROM pg_class WHERE relname = $1",
                        &[&partition_name(day)],
                    )
                    .await?
                    .is_some();
                if !exists {
                    return Err(e.into());
                }
            }
            self.partitions.lock().insert(day);
        }
        Ok(())
    }

    async fn write(&self, batch: &[Tick], tallies: &[Tally]) -> Result<WriteOutcome, StoreError> {
        if self.mode == Mode::Postgres {
            let mut days: Vec<i64> = batch.iter().map(|t| day_of(t.ts())).collect();
            days.sort_unstable();
            days.dedup();
            self.ensure_partitions(&days).await?;
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // One round trip; the notice that the table exists (every batch
        // but a connection's first) is not worth sending.
        tx.batch_execute(
            "SET LOCAL client_min_messages TO warning;
             CREATE TEMP TABLE IF NOT EXISTS ticks_stage
                 (LIKE ticks INCLUDING DEFAULTS EXCLUDING CONSTRAINTS EXCLUDING INDEXES)
                 ON COMMIT DELETE ROWS",
        )
        .await?;
        let sink = tx
            .copy_in(
                "COPY ticks_stage (symbol, ts, tick_id, price, size, exchange, src_id, conditions, \
                 ingested_at, source_id, origin) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::INT8,
                Type::FLOAT8,
                Type::FLOAT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT_ARRAY,
                Type::TIMESTAMPTZ,
                Type::TEXT,
                Type::TEXT,
            ],
        );
        pin_mut!(writer);
        for t in batch {
            let conditions: &[String] = t.conditions();
            writer
                .as_mut()
                .write(&[
                    &t.symbol().as_str(),
                    &PgTime(t.ts()),
                    &t.tick_id().as_i64(),
                    &t.price(),
                    &t.size(),
                    &t.exchange(),
                    &t.src_id(),
                    &conditions,
                    &PgTime(t.ingested_at()),
                    &t.source_id(),
                    &rows::origin_value(t.origin()),
                ])
                .await?;
        }
        writer.finish().await?;
        let inserted = match self.mode {
            // The writer merges the rows actually inserted into the rollups.
            Mode::Postgres => {
                let insert = tx.prepare_cached(INSERT_RETURNING_KEYS.as_str()).await?;
                let new = tx.query(&insert, &[]).await?;
                let rollups = if new.len() == batch.len() {
                    Rollups::of(batch.iter())
                } else {
                    // Some were stored already (or twice in this batch):
                    // each inserted key counts once.
                    let mut keys: HashSet<(&str, i64, i64)> = new
                        .iter()
                        .map(|r| {
                            Ok((
                                r.try_get::<_, &str>(0)?,
                                r.try_get::<_, PgTime>(1)?.0.as_micros(),
                                r.try_get::<_, i64>(2)?,
                            ))
                        })
                        .collect::<Result<_, StoreError>>()?;
                    Rollups::of(batch.iter().filter(|t| {
                        keys.remove(&(
                            t.symbol().as_str(),
                            t.ts().as_micros(),
                            t.tick_id().as_i64(),
                        ))
                    }))
                };
                rollups.write(&tx).await?;
                new.len() as i64
            }
            // Continuous aggregates follow the ticks by themselves.
            Mode::TimescaleDb => tx
                .query_one(
                    &format!("{INSERT_CTES} SELECT coalesce(sum(n), 0)::BIGINT FROM agg"),
                    &[],
                )
                .await?
                .get(0),
        };
        write_ledger(&tx, tallies).await?;
        tx.commit().await?;
        if self.mode == Mode::TimescaleDb && inserted > 0 {
            match self.refresh_late(&client, batch).await {
                // A writer role does not own the aggregates: the refresh
                // policies correct those buckets on their next run.
                Err(e) if insufficient_privilege(&e) => {
                    if !self
                        .refresh_refused
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::warn!(
                            error = %e,
                            "late ticks' candles are corrected by the refresh policies' next run, \
                             not at once: only the aggregates' owner may refresh them"
                        );
                    }
                }
                other => other?,
            }
        }
        let inserted = inserted as usize;
        Ok(WriteOutcome {
            inserted,
            duplicates: batch.len().saturating_sub(inserted),
        })
    }
}

impl PostgresStore {
    /// TimescaleDB: ticks older than an aggregate's refresh lag may belong
    /// to buckets it has already materialized, which real-time aggregation
    /// does not revisit; refreshes those buckets now (finer levels first),
    /// so a late tick corrects its candles as soon as it is stored. Only
    /// the buckets touched are refreshed (a refresh costs time in
    /// proportion to its window, not to the ticks in it): runs of nearby
    /// buckets are refreshed as one window.
    async fn refresh_late(
        &self,
        client: &deadpool_postgres::Client,
        batch: &[Tick],
    ) -> Result<(), StoreError> {
        let now = Timestamp::now().as_micros();
        for iv in Interval::ROLLUPS {
            let horizon = Timestamp::from_micros(now - migrations::refresh_lag(iv));
            let mut buckets: Vec<i64> = batch
                .iter()
                .filter(|t| t.ts() < horizon)
                .map(|t| iv.bucket_start(t.ts()).as_micros())
                .collect();
            buckets.sort_unstable();
            buckets.dedup();
            for (from, to) in refresh_windows(&buckets, iv.micros()) {
                client
                    .batch_execute(&format!(
                        "CALL refresh_continuous_aggregate('candles_{iv}', '{}', '{}')",
                        Timestamp::from_micros(from),
                        Timestamp::from_micros(to)
                    ))
                    .await?;
            }
        }
        Ok(())
    }
}

/// Buckets closer than this (in buckets) are refreshed in one window.
const REFRESH_MERGE_BUCKETS: i64 = 16;

/// Refresh windows `[from, to)` covering the sorted bucket starts, runs of
/// nearby buckets merged.
fn refresh_windows(buckets: &[i64], width: i64) -> Vec<(i64, i64)> {
    let mut windows: Vec<(i64, i64)> = Vec::new();
    for &b in buckets {
        match windows.last_mut() {
            Some((_, to)) if b <= *to + REFRESH_MERGE_BUCKETS * width => *to = b + width,
            _ => windows.push((b, b + width)),
        }
    }
    windows
}

/// The write statement's common part: insert the staged ticks that are new
/// (`ins`), and fold them into the per-symbol summary (`agg`, `up`).
const INSERT_CTES: &str = "WITH ins AS (
         INSERT INTO ticks SELECT * FROM ticks_stage
         ON CONFLICT (symbol, ts, tick_id) DO NOTHING
         RETURNING symbol, ts, tick_id),
     agg AS (
         SELECT symbol, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n
           FROM ins GROUP BY symbol),
     up AS (
         INSERT INTO symbols (symbol, first_ts, last_ts, ticks)
         SELECT symbol, first_ts, last_ts, n FROM agg
         ON CONFLICT (symbol) DO UPDATE SET
             first_ts = LEAST(symbols.first_ts, EXCLUDED.first_ts),
             last_ts = GREATEST(symbols.last_ts, EXCLUDED.last_ts),
             ticks = symbols.ticks + EXCLUDED.ticks
         RETURNING 1)";

/// The write statement of plain PostgreSQL mode: answers the key of every
/// tick it inserted, so the writer folds exactly those into the rollups.
static INSERT_RETURNING_KEYS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{INSERT_CTES} SELECT symbol, ts, tick_id FROM ins"));

/// The rollup rows a batch changes: its newly inserted ticks merged per
/// stored width, symbol and bucket by the writer (cheaper than the server
/// sorting every tick four times), then merged into the rollup tables.
#[derive(Default)]
struct Rollups<'a> {
    parts: [std::collections::HashMap<(&'a str, i64), CandlePart>; Interval::ROLLUPS.len()],
}

impl<'a> Rollups<'a> {
    fn of(ticks: impl Iterator<Item = &'a Tick>) -> Self {
        let mut r = Rollups::default();
        for tick in ticks {
            for (interval, parts) in Interval::ROLLUPS.iter().zip(&mut r.parts) {
                let bucket = interval.bucket_start(tick.ts()).as_micros();
                parts
                    .entry((tick.symbol().as_str(), bucket))
                    .and_modify(|p| p.push(tick))
                    .or_insert_with(|| CandlePart::of(tick));
            }
        }
        r
    }

    /// One statement per width, pipelined, rows in key order (like every
    /// writer, so concurrent writers cannot deadlock).
    async fn write(self, tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
        let mut statements = Vec::new();
        for (interval, parts) in Interval::ROLLUPS.iter().zip(self.parts) {
            if parts.is_empty() {
                continue;
            }
            let mut parts: Vec<_> = parts.into_iter().collect();
            parts.sort_unstable_by_key(|(k, _)| *k);
            let statement = tx
                .prepare_cached(&migrations::rollup_merge_parts(*interval))
                .await?;
            statements.push((statement, RollupColumns::of(&parts)));
        }
        let params: Vec<_> = statements.iter().map(|(_, c)| c.params()).collect();
        let writes = statements
            .iter()
            .zip(&params)
            .map(|((statement, _), p)| tx.execute(statement, &p[..]));
        futures::future::try_join_all(writes).await?;
        Ok(())
    }
}

/// Rollup parts as one array per column (the parameters of
/// [`migrations::rollup_merge_parts`]).
struct RollupColumns<'a> {
    symbol: Vec<&'a str>,
    bucket: Vec<PgTime>,
    open: Vec<f64>,
    open_ts: Vec<PgTime>,
    open_id: Vec<i64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    close_ts: Vec<PgTime>,
    close_id: Vec<i64>,
    volume: Vec<f64>,
    notional: Vec<f64>,
    trades: Vec<i64>,
}

type Param<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);

impl<'a> RollupColumns<'a> {
    fn params(&self) -> [Param<'_>; 13] {
        [
            &self.symbol,
            &self.bucket,
            &self.open,
            &self.open_ts,
            &self.open_id,
            &self.high,
            &self.low,
            &self.close,
            &self.close_ts,
            &self.close_id,
            &self.volume,
            &self.notional,
            &self.trades,
        ]
    }

    fn of(parts: &[((&'a str, i64), CandlePart)]) -> Self {
        let n = parts.len();
        let mut c = RollupColumns {
            symbol: Vec::with_capacity(n),
            bucket: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            open_ts: Vec::with_capacity(n),
            open_id: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            close_ts: Vec::with_capacity(n),
            close_id: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
            notional: Vec::with_capacity(n),
            trades: Vec::with_capacity(n),
        };
        for ((symbol, bucket), p) in parts {
            c.symbol.push(symbol);
            c.bucket.push(PgTime(Timestamp::from_micros(*bucket)));
            c.open.push(p.open.1);
            c.open_ts.push(PgTime(p.open.0 .0));
            c.open_id.push(p.open.0 .1);
            c.high.push(p.high);
            c.low.push(p.low);
            c.close.push(p.close.1);
            c.close_ts.push(PgTime(p.close.0 .0));
            c.close_id.push(p.close.0 .1);
            c.volume.push(p.volume);
            c.notional.push(p.notional);
            c.trades.push(p.trades as i64);
        }
        c
    }
}

/// The values of a row selected with [`TICK_COLUMNS`].
fn tick_row(row: &Row) -> Result<TickRow<'_>, StoreError> {
    Ok(TickRow {
        ts: row.try_get::<_, PgTime>(0)?.0,
        tick_id: row.try_get(1)?,
        price: row.try_get(2)?,
        size: row.try_get(3)?,
        exchange: row.try_get(4)?,
        src_id: row.try_get(5)?,
        conditions: row.try_get(6)?,
        ingested_at: row.try_get::<_, PgTime>(7)?.0,
        source_id: row.try_get(8)?,
        origin: row.try_get(9)?,
    })
}

/// A row selected with [`ROLLUP_COLUMNS`].
fn part_from_row(r: &Row) -> Result<(Timestamp, CandlePart), StoreError> {
    RollupRow {
        bucket: r.try_get::<_, PgTime>(0)?.0,
        open: r.try_get(1)?,
        open_ts: r.try_get::<_, PgTime>(2)?.0,
        open_id: r.try_get(3)?,
        high: r.try_get(4)?,
        low: r.try_get(5)?,
        close: r.try_get(6)?,
        close_ts: r.try_get::<_, PgTime>(7)?.0,
        close_id: r.try_get(8)?,
        volume: r.try_get(9)?,
        notional: r.try_get(10)?,
        trades: r.try_get(11)?,
    }
    .part()
}

/// Adds ingest's ledger tallies in the transaction `tx`: each only when
/// its sequence number is above its row's last (a tally delivered again
/// adds nothing), those of one row in one batch summed.
async fn write_ledger(
    tx: &deadpool_postgres::Transaction<'_>,
    tallies: &[Tally],
) -> Result<(), StoreError> {
    if tallies.is_empty() {
        return Ok(());
    }
    let n = tallies.len();
    let (mut symbol, mut minute, mut provider, mut producer) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut received, mut rejected, mut duplicates, mut seq) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for t in tallies {
        symbol.push(t.symbol.as_str());
        minute.push(PgTime(t.minute));
        provider.push(t.provider.as_str());
        producer.push(t.producer.as_str());
        received.push(t.received as i64);
        rejected.push(t.rejected as i64);
        duplicates.push(t.duplicates as i64);
        seq.push(t.seq as i64);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO ledger AS l (symbol, minute, provider, producer, received, rejected, \
                                      duplicates, last_seq) \
             SELECT t.symbol, t.minute, t.provider, t.producer, sum(t.received), \
                    sum(t.rejected), sum(t.duplicates), max(t.seq) \
             FROM unnest($1::TEXT[], $2::TIMESTAMPTZ[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], \
                         $6::BIGINT[], $7::BIGINT[], $8::BIGINT[]) \
                  AS t (symbol, minute, provider, producer, received, rejected, duplicates, seq) \
             WHERE t.seq > coalesce((SELECT o.last_seq FROM ledger o \
                                     WHERE o.symbol = t.symbol AND o.minute = t.minute \
                                       AND o.provider = t.provider \
                                       AND o.producer = t.producer), -1) \
             GROUP BY t.symbol, t.minute, t.provider, t.producer \
             ORDER BY t.symbol, t.minute, t.provider, t.producer \
             ON CONFLICT (symbol, minute, provider, producer) DO UPDATE SET \
                 received = l.received + excluded.received, \
                 rejected = l.rejected + excluded.rejected, \
                 duplicates = l.duplicates + excluded.duplicates, \
                 last_seq = greatest(l.last_seq, excluded.last_seq)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &symbol,
            &minute,
            &provider,
            &producer,
            &received,
            &rejected,
            &duplicates,
            &seq,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl TickStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn write_counted(
        &self,
        batch: TickBatch,
        tallies: &[Tally],
    ) -> Result<WriteOutcome, StoreError> {
        if !batch.is_empty() {
            return self.write(&batch, tallies).await;
        }
        if !tallies.is_empty() {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            write_ledger(&tx, tallies).await?;
            tx.commit().await?;
        }
        Ok(WriteOutcome::default())
    }

    async fn ticks(&self, q: TickQuery) -> Result<Vec<Tick>, StoreError> {
        let order = match q.order {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        };
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {TICK_COLUMNS} FROM ticks WHERE symbol = $1 AND ts >= $2 AND ts < $3 \
                     ORDER BY ts {order}, tick_id {order} LIMIT $4"
                ),
                &[
                    &q.symbol.as_str(),
                    &PgTime(q.from),
                    &PgTime(q.to),
                    &(q.limit as i64),
                ],
            )
            .await?;
        let mut reader = TickReader::default();
        rows.iter()
            .map(|r| reader.tick(&q.symbol, tick_row(r)?))
            .collect()
    }

    async fn candles(&self, q: CandleQuery) -> Result<Vec<Candle>, StoreError> {
        let rollup = q.interval.rollup();
        let (from, to) = (
            q.interval.first_start_from(q.from),
            q.interval.first_start_from(q.to),
        );
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {ROLLUP_COLUMNS} FROM candles_{rollup} \
                      WHERE symbol = $1 AND bucket >= $2 AND bucket < $3 ORDER BY bucket LIMIT $4"
                ),
                &[
                    &q.symbol.as_str(),
                    &PgTime(from),
                    &PgTime(to),
                    &rows::rollup_rows_for(q.interval, q.limit),
                ],
            )
            .await?;
        let parts = rows
            .iter()
            .map(part_from_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(rebucket(&q.symbol, q.interval, parts, q.limit))
    }

    async fn symbols(&self) -> Result<Vec<SymbolInfo>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {SYMBOL_COLUMNS} FROM symbols WHERE ticks > 0 ORDER BY symbol"),
                &[],
            )
            .await?;
        rows.iter().map(symbol_info).collect()
    }

    async fn symbol(&self, symbol: &Symbol) -> Result<Option<SymbolInfo>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {SYMBOL_COLUMNS} FROM symbols WHERE symbol = $1 AND ticks > 0"),
                &[&symbol.as_str()],
            )
            .await?;
        row.as_ref().map(symbol_info).transpose()
    }

    async fn latest(&self, symbol: &Symbol) -> Result<Option<Tick>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {TICK_COLUMNS} FROM ticks WHERE symbol = $1 \
                     ORDER BY ts DESC, tick_id DESC LIMIT 1"
                ),
                &[&symbol.as_str()],
            )
            .await?;
        row.as_ref()
            .map(|r| TickReader::default().tick(symbol, tick_row(r)?))
            .transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn housekeeping(&self) -> Result<(), StoreError> {
        self.partitions_housekeeping().await
    }

    async fn write_gaps(&self, gaps: &[Gap]) -> Result<(), StoreError> {
        if gaps.is_empty() {
            return Ok(());
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // A replayed gap keeps the widest end seen; its healing only moves
        // forward (`Healing::merge`, one rule for every store).
        let current = tx
            .prepare_cached(&format!(
                "SELECT {HEALING_COLUMNS} FROM gaps \
                 WHERE symbol = $1 AND from_ts = $2 AND provider = $3 FOR UPDATE"
            ))
            .await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO gaps (provider, symbol, from_ts, to_ts, connection, reason, \
                                   status, first_id, last_id, backfilled, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (symbol, from_ts, provider) \
                 DO UPDATE SET to_ts = GREATEST(gaps.to_ts, excluded.to_ts), \
                     status = excluded.status, first_id = excluded.first_id, \
                     last_id = excluded.last_id, backfilled = excluded.backfilled, \
                     detail = excluded.detail",
            )
            .await?;
        for g in gaps {
            let stored = tx
                .query_opt(
                    &current,
                    &[&g.symbol.as_str(), &PgTime(g.from), &g.provider],
                )
                .await?;
            let merged = match stored {
                Some(r) => g.healing.merge(&rows::healing(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                )?),
                None => g.healing.clone(),
            };
            let (status, first_id, last_id, backfilled, detail) = rows::healing_values(&merged);
            tx.execute(
                &stmt,
                &[
                    &g.provider,
                    &g.symbol.as_str(),
                    &PgTime(g.from),
                    &PgTime(g.to),
                    &(g.connection as i32),
                    &g.reason.as_str(),
                    &status,
                    &first_id,
                    &last_id,
                    &backfilled,
                    &detail,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn gaps(&self, q: GapQuery) -> Result<Vec<Gap>, StoreError> {
        let client = self.pool.get().await?;
        let symbol = q.symbol.as_ref().map(|s| s.as_str().to_string());
        let rows = client
            .query(
                &format!(
                    "SELECT {GAP_COLUMNS} FROM gaps \
                     WHERE ($1::text IS NULL OR symbol = $1) AND to_ts > $2 AND from_ts < $3 \
                     ORDER BY from_ts, symbol, provider LIMIT $4"
                ),
                &[&symbol, &PgTime(q.from), &PgTime(q.to), &(q.limit as i64)],
            )
            .await?;
        rows.iter().map(gap_row).collect()
    }

    async fn minute_counts(
        &self,
        symbol: &Symbol,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<crate::MinuteCount>, StoreError> {
        let client = self.pool.get().await?;
        // Ids of 1 to 18 digits only: every one fits a BIGINT.
        let rows = client
            .query(
                "SELECT src_id, floor(extract(epoch FROM ts) / 60)::BIGINT AS m, \
                        count(*) FILTER (WHERE origin IS NULL), \
                        count(*) FILTER (WHERE origin IS NOT NULL), \
                        count(*) FILTER (WHERE source_id ~ '^[0-9]{1,18}$'), \
                        min(CASE WHEN source_id ~ '^[0-9]{1,18}$' THEN source_id::BIGINT END), \
                        max(CASE WHEN source_id ~ '^[0-9]{1,18}$' THEN source_id::BIGINT END) \
                 FROM ticks WHERE symbol = $1 AND ts >= $2 AND ts < $3 \
                 GROUP BY src_id, m ORDER BY m, src_id",
                &[&symbol.as_str(), &PgTime(from), &PgTime(to)],
            )
            .await?;
        let counts = rows
            .iter()
            .map(|r| {
                rows::minute_count(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    r.try_get(6)?,
                )
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Ingest's counts of the minutes starting in the range.
        let ledger = client
            .query(
                "SELECT provider, floor(extract(epoch FROM minute) / 60)::BIGINT, \
                        sum(received)::BIGINT, sum(rejected)::BIGINT, sum(duplicates)::BIGINT \
                 FROM ledger WHERE symbol = $1 AND minute >= $2 AND minute < $3 \
                 GROUP BY provider, minute",
                &[
                    &symbol.as_str(),
                    &PgTime(streamforge_model::ledger::minute_of(from)),
                    &PgTime(to),
                ],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(rows::LedgerRow {
                    provider: r.try_get(0)?,
                    minute_index: r.try_get(1)?,
                    received: r.try_get(2)?,
                    rejected: r.try_get(3)?,
                    duplicates: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        rows::with_ledger(counts, ledger)
    }

    async fn unhealed_gaps(&self, provider: &str, limit: usize) -> Result<Vec<Gap>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {GAP_COLUMNS} FROM gaps \
                     WHERE provider = $1 AND status IN ('open', 'healing') \
                     ORDER BY from_ts, symbol LIMIT $2"
                ),
                &[&provider, &(limit as i64)],
            )
            .await?;
        rows.iter().map(gap_row).collect()
    }
}

/// A row selected with [`GAP_COLUMNS`].
fn gap_row(r: &Row) -> Result<Gap, StoreError> {
    GapRow {
        provider: r.try_get(0)?,
        symbol: r.try_get(1)?,
        from: r.try_get::<_, PgTime>(2)?.0,
        to: r.try_get::<_, PgTime>(3)?.0,
        connection: i64::from(r.try_get::<_, i32>(4)?),
        reason: r.try_get(5)?,
        status: r.try_get(6)?,
        first_id: r.try_get(7)?,
        last_id: r.try_get(8)?,
        backfilled: r.try_get(9)?,
        detail: r.try_get(10)?,
    }
    .gap()
}

/// A row selected with [`SYMBOL_COLUMNS`].
fn symbol_info(r: &Row) -> Result<SymbolInfo, StoreError> {
    rows::symbol_info(
        r.try_get(0)?,
        r.try_get::<_, PgTime>(1)?.0,
        r.try_get::<_, PgTime>(2)?.0,
        r.try_get(3)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_partitions_named_by_day() {
        assert_eq!(
            crate::redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            crate::redact_url("postgres://app@db/x"),
            "postgres://app@db/x"
        );
        assert_eq!(
            crate::redact_url("redis://:pw@cache:6379/"),
            "redis://:***@cache:6379/"
        );
        let day = day_of(Timestamp::parse("2026-11-28T13:00:00Z").unwrap());
        assert_eq!(partition_name(day), "ticks_p20261128");
    }

    #[test]
    fn late_buckets_are_refreshed_in_few_small_windows() {
        assert_eq!(refresh_windows(&[], 10), []);
        assert_eq!(
            refresh_windows(&[0, 10, 30, 1_000, 2_000, 2_010], 10),
            [(0, 40), (1_000, 1_010), (2_000, 2_020)]
        );
    }
}
