//! [`SqliteStore`]: the embedded tick store (`sqlite://path/to/file.db`).
//!
//! One file in WAL mode: a single writer connection commits each batch in
//! one transaction (`INSERT OR IGNORE` on the primary key
//! `(symbol, ts, tick_id)`), while a small pool of reader connections serves
//! queries concurrently. Candles are read from rollup tables (`candles_1s`,
//! `_1m`, `_1h`, `_1d`) that the writer keeps in the same transaction as the
//! ticks, from the ticks newly inserted. The schema is migrated on open
//! (`PRAGMA user_version` records the version).
//!
//! `synchronous=NORMAL` in WAL mode: a committed batch survives a crash of
//! the process; a power loss may lose the last transactions, never corrupt
//! the file. Checkpoints run on a background thread, off the write path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use streamforge_model::ledger::minute_of;
use streamforge_model::{
    rebucket, Candle, CandlePart, Gap, Interval, Symbol, Tally, Tick, Timestamp,
};

use crate::rows::{
    self, GapRow, RollupRow, TickReader, TickRow, GAP_COLUMNS, HEALING_COLUMNS, ROLLUP_COLUMNS,
    SYMBOL_COLUMNS, TICK_COLUMNS,
};
use crate::{
    CandleQuery, GapQuery, Order, StoreError, SymbolInfo, TickBatch, TickQuery, TickStore,
    WriteOutcome,
};

/// Schema migrations, applied in order; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    include_str!("0001_ticks.sql"),
    include_str!("0002_gaps.sql"),
    include_str!("0003_candles.sql"),
    include_str!("0004_gap_healing.sql"),
    include_str!("0005_trade_ids.sql"),
    include_str!("0006_ledger.sql"),
];

/// Reader connections: at most this many queries run at once (the rest
/// wait their turn without holding a thread), and they stay open between
/// queries. Bounding them bounds the memory of concurrent large queries and
/// keeps blocking threads free for the writer.
const MAX_READERS: usize = 4;

/// The SQLite tick store. Cloning shares it.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per query running; [`MAX_READERS`] in all.
    reading: Arc<tokio::sync::Semaphore>,
    /// Dropping it stops the checkpoint thread.
    _stop_checkpoints: std::sync::mpsc::SyncSender<()>,
}

/// How often the background thread checkpoints the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Copies the WAL into the database file off the write path.
///
/// The writer connection has automatic checkpoints turned off: a checkpoint
/// ends with an fsync, and doing it inside a batch commit would add its
/// duration to that batch's latency. A PASSIVE checkpoint from this thread
/// never blocks the writer; once it has copied everything, the next write
/// transaction starts the WAL over, so it does not grow without bound.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "sqlite checkpoint failed; will retry");
        }
    }
}

/// The single writer connection and the symbol ids it has committed.
struct Writer {
    conn: Connection,
    ids: HashMap<Symbol, i64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn open_connection(path: &Path, write: bool) -> Result<Connection, StoreError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open_err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    if write {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
    }
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(open_err)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(open_err)?;
    Ok(conn)
}

/// Applies pending migrations; returns the schema version.
fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "sqlite store migrated");
    }
    Ok(MIGRATIONS.len().max(current))
}

impl SqliteStore {
    /// Opens (creating directories and the file if needed) and migrates.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, StoreError> {
        if path.as_os_str().is_empty() {
            return Err(StoreError::Url {
                url: "sqlite://".into(),
                reason: "no file path after sqlite://".into(),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: dir.display().to_string(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        }
        let mut conn = open_connection(&path, true)?;
        migrate(&mut conn)?;
        let ids = {
            let mut stmt = conn.prepare("SELECT symbol, id FROM symbols")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut ids = HashMap::new();
            for row in rows {
                let (symbol, id) = row?;
                let symbol =
                    Symbol::parse(&symbol).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                ids.insert(symbol, id);
            }
            ids
        };
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = open_connection(&path, true)?;
        let (stop_tx, stop_rx) = std::sync::mpsc::sync_channel(0);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop_rx))
            .map_err(|e| StoreError::Worker(format!("starting the checkpoint thread: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                _stop_checkpoints: stop_tx,
                writer: Mutex::new(Writer { conn, ids }),
                readers: Mutex::new(Vec::new()),
                reading: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version in the file.
    pub async fn schema_version(&self) -> Result<usize, StoreError> {
        self.read(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
            .await
    }

    /// Runs `f` with a reader connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        // Held by the blocking task itself: a caller that gives up does not
        // free the slot of a query still running.
        let permit = self
            .inner
            .reading
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = inner.readers.lock().pop();
            let conn = match conn {
                Some(c) => c,
                None => open_connection(&inner.path, false)?,
            };
            let result = f(&conn);
            inner.readers.lock().push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }
}

/// Per-symbol bookkeeping of one batch.
struct SymbolAcc {
    id: i64,
    first_ts: i64,
    last_ts: i64,
    inserted: u64,
}

fn write_batch_blocking(
    writer: &mut Writer,
    batch: &[Tick],
    tallies: &[Tally],
) -> Result<WriteOutcome, StoreError> {
    let Writer { conn, ids } = writer;
    let tx = conn.transaction()?;
    let mut per_symbol: HashMap<&Symbol, SymbolAcc> = HashMap::new();
    let mut new_symbols: Vec<(Symbol, i64)> = Vec::new();
    for t in batch {
        if per_symbol.contains_key(t.symbol()) {
            continue;
        }
        let id = match ids.get(t.symbol()) {
            Some(id) => *id,
            None => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO symbols (symbol, first_ts, last_ts, ticks) \
                     VALUES (?1, 9223372036854775807, -9223372036854775808, 0)",
                )?
                .execute([t.symbol().as_str()])?;
                let id: i64 = tx
                    .prepare_cached("SELECT id FROM symbols WHERE symbol = ?1")?
                    .query_row([t.symbol().as_str()], |r| r.get(0))?;
                new_symbols.push((t.symbol().clone(), id));
                id
            }
        };
        per_symbol.insert(
            t.symbol(),
            SymbolAcc {
                id,
                first_ts: i64::MAX,
                last_ts: i64::MIN,
                inserted: 0,
            },
        );
    }
    let mut inserted = 0usize;
    let mut rollups = Rollups::default();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO ticks \
             (symbol_id, ts, tick_id, price, size, exchange, src_id, conditions, ingested_at, \
              source_id, origin) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut conditions = String::new();
        for t in batch {
            conditions.clear();
            if !t.conditions().is_empty() {
                conditions = serde_json::to_string(t.conditions()).unwrap_or_default();
            }
            let acc = per_symbol
                .get_mut(t.symbol())
                .expect("every symbol of the batch has an id");
            let ts = t.ts().as_micros();
            let n = stmt.execute(params![
                acc.id,
                ts,
                t.tick_id().as_i64(),
                t.price(),
                t.size(),
                t.exchange(),
                t.src_id(),
                conditions,
                t.ingested_at().as_micros(),
                t.source_id(),
                rows::origin_value(t.origin()),
            ])?;
            if n == 1 {
                inserted += 1;
                acc.first_ts = acc.first_ts.min(ts);
                acc.last_ts = acc.last_ts.max(ts);
                acc.inserted += 1;
                rollups.push(acc.id, t);
            }
        }
    }
    rollups.write(&tx)?;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE symbols SET first_ts = min(first_ts, ?2), last_ts = max(last_ts, ?3), \
             ticks = ticks + ?4 WHERE id = ?1",
        )?;
        for acc in per_symbol.values().filter(|a| a.inserted > 0) {
            stmt.execute(params![
                acc.id,
                acc.first_ts,
                acc.last_ts,
                acc.inserted as i64
            ])?;
        }
    }
    if !tallies.is_empty() {
        // In tally order: each is added only when newer than the row's last.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO ledger (symbol, minute, provider, producer, received, rejected, \
                                 duplicates, last_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (symbol, minute, provider, producer) DO UPDATE SET \
                 received = received + excluded.received, \
                 rejected = rejected + excluded.rejected, \
                 duplicates = duplicates + excluded.duplicates, \
                 last_seq = excluded.last_seq \
             WHERE excluded.last_seq > ledger.last_seq",
        )?;
        for t in tallies {
            stmt.execute(params![
                t.symbol.as_str(),
                t.minute.as_micros(),
                t.provider,
                t.producer,
                t.received as i64,
                t.rejected as i64,
                t.duplicates as i64,
                t.seq as i64,
            ])?;
        }
    }
    tx.commit()?;
    // Only ids that are now durable are remembered.
    ids.extend(new_symbols);
    Ok(WriteOutcome {
        inserted,
        duplicates: batch.len() - inserted,
    })
}

/// The rollup rows a batch changes: newly inserted ticks merged per
/// stored width, symbol and bucket, before they are merged into the tables.
#[derive(Default)]
struct Rollups {
    parts: [HashMap<(i64, i64), CandlePart>; Interval::ROLLUPS.len()],
}

impl Rollups {
    fn push(&mut self, symbol_id: i64, tick: &Tick) {
        for (interval, parts) in Interval::ROLLUPS.iter().zip(&mut self.parts) {
            let bucket = interval.bucket_start(tick.ts()).as_micros();
            parts
                .entry((symbol_id, bucket))
                .and_modify(|p| p.push(tick))
                .or_insert_with(|| CandlePart::of(tick));
        }
    }

    /// Merges the parts into the rollup tables (in key order, like every writer).
    fn write(self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        for (interval, parts) in Interval::ROLLUPS.iter().zip(self.parts) {
            if parts.is_empty() {
                continue;
            }
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO candles_{iv} AS c (symbol_id, bucket, open, open_ts, open_id, high, low, \
                     close, close_ts, close_id, volume, notional, trades) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (symbol_id, bucket) DO UPDATE SET \
                     open = iif((excluded.open_ts, excluded.open_id) < (c.open_ts, c.open_id), excluded.open, c.open), \
                     open_id = iif((excluded.open_ts, excluded.open_id) < (c.open_ts, c.open_id), excluded.open_id, c.open_id), \
                     open_ts = min(excluded.open_ts, c.open_ts), \
                     close = iif((excluded.close_ts, excluded.close_id) > (c.close_ts, c.close_id), excluded.close, c.close), \
                     close_id = iif((excluded.close_ts, excluded.close_id) > (c.close_ts, c.close_id), excluded.close_id, c.close_id), \
                     close_ts = max(excluded.close_ts, c.close_ts), \
                     high = max(excluded.high, c.high), low = min(excluded.low, c.low), \
                     volume = c.volume + excluded.volume, notional = c.notional + excluded.notional, \
                     trades = c.trades + excluded.trades",
                iv = interval.as_str()
            ))?;
            let mut parts: Vec<_> = parts.into_iter().collect();
            parts.sort_unstable_by_key(|(k, _)| *k);
            for ((symbol_id, bucket), p) in parts {
                stmt.execute(params![
                    symbol_id,
                    bucket,
                    p.open.1,
                    p.open.0 .0.as_micros(),
                    p.open.0 .1,
                    p.high,
                    p.low,
                    p.close.1,
                    p.close.0 .0.as_micros(),
                    p.close.0 .1,
                    p.volume,
                    p.notional,
                    p.trades as i64,
                ])?;
            }
        }
        Ok(())
    }
}

/// `symbol_id` of the symbol bound as `?1`.
///
/// Every `LIMIT` here is written `LIMIT +?N`: SQLite's planner reads the
/// value of a bare `LIMIT ?N`, so each new binding recompiles the statement
/// (a parse and plan per query, a tenth of a REST tick page's CPU); the
/// unary plus keeps the value out of the plan and the cached statement valid.
const SYMBOL_ID: &str = "(SELECT id FROM symbols WHERE symbol = ?1)";

/// The range query of [`TickStore::ticks`].
fn ticks_sql(order: Order) -> String {
    let order = match order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    format!(
        "SELECT {TICK_COLUMNS} FROM ticks \
         WHERE symbol_id = {SYMBOL_ID} AND ts >= ?2 AND ts < ?3 \
         ORDER BY ts {order}, tick_id {order} LIMIT +?4"
    )
}

/// The text in column `i`, borrowed from the row.
fn text<'r>(row: &'r Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    row.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
            .into()
    })
}

/// A text column that may be `NULL`.
fn text_or_null<'r>(row: &'r Row<'_>, i: usize) -> Result<Option<&'r str>, StoreError> {
    row.get_ref(i)?.as_str_or_null().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
            .into()
    })
}

/// The gaps of rows selected with [`GAP_COLUMNS`].
fn gap_rows(rows: &mut rusqlite::Rows<'_>) -> Result<Vec<Gap>, StoreError> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(
            GapRow {
                provider: row.get(0)?,
                symbol: text(row, 1)?,
                from: Timestamp::from_micros(row.get(2)?),
                to: Timestamp::from_micros(row.get(3)?),
                connection: row.get(4)?,
                reason: text(row, 5)?,
                status: text(row, 6)?,
                first_id: row.get(7)?,
                last_id: row.get(8)?,
                backfilled: row.get(9)?,
                detail: row.get(10)?,
            }
            .gap()?,
        );
    }
    Ok(out)
}

/// The values of a row selected with [`TICK_COLUMNS`].
fn tick_row<'r>(row: &'r Row<'_>) -> Result<TickRow<'r>, StoreError> {
    let conditions = text(row, 6)?;
    let conditions: Vec<String> = if conditions.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(conditions)
            .map_err(|e| StoreError::Corrupt(format!("ticks.conditions {conditions:?}: {e}")))?
    };
    Ok(TickRow {
        ts: Timestamp::from_micros(row.get(0)?),
        tick_id: row.get(1)?,
        price: row.get(2)?,
        size: row.get(3)?,
        exchange: text(row, 4)?,
        src_id: text(row, 5)?,
        conditions,
        ingested_at: Timestamp::from_micros(row.get(7)?),
        source_id: text_or_null(row, 8)?,
        origin: text_or_null(row, 9)?,
    })
}

/// A row selected with [`SYMBOL_COLUMNS`].
fn symbol_info_from_row(row: &Row<'_>) -> Result<SymbolInfo, StoreError> {
    rows::symbol_info(
        text(row, 0)?,
        Timestamp::from_micros(row.get(1)?),
        Timestamp::from_micros(row.get(2)?),
        row.get(3)?,
    )
}

/// A row selected with [`ROLLUP_COLUMNS`].
fn part_from_row(r: &Row<'_>) -> Result<(Timestamp, CandlePart), StoreError> {
    RollupRow {
        bucket: Timestamp::from_micros(r.get(0)?),
        open: r.get(1)?,
        open_ts: Timestamp::from_micros(r.get(2)?),
        open_id: r.get(3)?,
        high: r.get(4)?,
        low: r.get(5)?,
        close: r.get(6)?,
        close_ts: Timestamp::from_micros(r.get(7)?),
        close_id: r.get(8)?,
        volume: r.get(9)?,
        notional: r.get(10)?,
        trades: r.get(11)?,
    }
    .part()
}

#[async_trait]
impl TickStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn write_counted(
        &self,
        batch: TickBatch,
        tallies: &[Tally],
    ) -> Result<WriteOutcome, StoreError> {
        if batch.is_empty() && tallies.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let inner = self.inner.clone();
        let tallies = tallies.to_vec();
        tokio::task::spawn_blocking(move || {
            write_batch_blocking(&mut inner.writer.lock(), &batch, &tallies)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    async fn ticks(&self, q: TickQuery) -> Result<Vec<Tick>, StoreError> {
        self.read(move |c| {
            let sql = ticks_sql(q.order);
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![
                q.symbol.as_str(),
                q.from.as_micros(),
                q.to.as_micros(),
                q.limit as i64
            ])?;
            let (mut out, mut reader) = (Vec::new(), TickReader::default());
            while let Some(row) = rows.next()? {
                out.push(reader.tick(&q.symbol, tick_row(row)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn candles(&self, q: CandleQuery) -> Result<Vec<Candle>, StoreError> {
        self.read(move |c| {
            let rollup = q.interval.rollup();
            let (from, to) = (
                q.interval.first_start_from(q.from).as_micros(),
                q.interval.first_start_from(q.to).as_micros(),
            );
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ROLLUP_COLUMNS} FROM candles_{} WHERE symbol_id = {SYMBOL_ID} AND bucket >= ?2 AND bucket < ?3 \
                  ORDER BY bucket LIMIT +?4",
                rollup.as_str()
            ))?;
            let rows = stmt.query_and_then(
                params![
                    q.symbol.as_str(),
                    from,
                    to,
                    rows::rollup_rows_for(q.interval, q.limit)
                ],
                part_from_row,
            )?;
            let parts = rows.collect::<Result<Vec<_>, _>>()?;
            Ok(rebucket(&q.symbol, q.interval, parts, q.limit))
        })
        .await
    }

    async fn symbols(&self) -> Result<Vec<SymbolInfo>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SYMBOL_COLUMNS} FROM symbols WHERE ticks > 0 ORDER BY symbol"
            ))?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(symbol_info_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn symbol(&self, symbol: &Symbol) -> Result<Option<SymbolInfo>, StoreError> {
        let symbol = symbol.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SYMBOL_COLUMNS} FROM symbols WHERE symbol = ?1 AND ticks > 0"
            ))?;
            let mut rows = stmt.query([symbol.as_str()])?;
            rows.next()?.map(symbol_info_from_row).transpose()
        })
        .await
    }

    async fn latest(&self, symbol: &Symbol) -> Result<Option<Tick>, StoreError> {
        let symbol = symbol.clone();
        self.read(move |c| {
            let sql = format!(
                "SELECT {TICK_COLUMNS} FROM ticks WHERE symbol_id = {SYMBOL_ID} \
                 ORDER BY ts DESC, tick_id DESC LIMIT 1"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query([symbol.as_str()])?;
            rows.next()?
                .map(|r| TickReader::default().tick(&symbol, tick_row(r)?))
                .transpose()
        })
        .await
    }

    async fn write_gaps(&self, gaps: &[Gap]) -> Result<(), StoreError> {
        if gaps.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let gaps = gaps.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut writer = inner.writer.lock();
            let tx = writer.conn.transaction()?;
            {
                // A replayed gap keeps the widest end seen; its healing
                // only moves forward (`Healing::merge`, one rule for every store).
                let mut current = tx.prepare_cached(&format!(
                    "SELECT {HEALING_COLUMNS} FROM gaps \
                     WHERE symbol = ?1 AND from_ts = ?2 AND provider = ?3"
                ))?;
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO gaps (provider, symbol, from_ts, to_ts, connection, reason, \
                                       status, first_id, last_id, backfilled, detail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT (symbol, from_ts, provider) DO UPDATE SET \
                         to_ts = max(to_ts, excluded.to_ts), status = excluded.status, \
                         first_id = excluded.first_id, last_id = excluded.last_id, \
                         backfilled = excluded.backfilled, detail = excluded.detail",
                )?;
                for g in &gaps {
                    let stored = current
                        .query_row(
                            params![g.symbol.as_str(), g.from.as_micros(), g.provider],
                            |r| {
                                Ok((
                                    r.get::<_, String>(0)?,
                                    r.get(1)?,
                                    r.get(2)?,
                                    r.get(3)?,
                                    r.get(4)?,
                                ))
                            },
                        )
                        .optional()?;
                    let merged = match stored {
                        Some((status, first, last, n, detail)) => g
                            .healing
                            .merge(&rows::healing(&status, first, last, n, detail)?),
                        None => g.healing.clone(),
                    };
                    let (status, first_id, last_id, backfilled, detail) =
                        rows::healing_values(&merged);
                    stmt.execute(params![
                        g.provider,
                        g.symbol.as_str(),
                        g.from.as_micros(),
                        g.to.as_micros(),
                        g.connection,
                        g.reason.as_str(),
                        status,
                        first_id,
                        last_id,
                        backfilled,
                        detail
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    async fn gaps(&self, q: GapQuery) -> Result<Vec<Gap>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {GAP_COLUMNS} FROM gaps \
                 WHERE (?1 IS NULL OR symbol = ?1) AND to_ts > ?2 AND from_ts < ?3 \
                 ORDER BY from_ts, symbol, provider LIMIT +?4"
            ))?;
            let mut rows = stmt.query(params![
                q.symbol.as_ref().map(|s| s.as_str()),
                q.from.as_micros(),
                q.to.as_micros(),
                q.limit as i64
            ])?;
            gap_rows(&mut rows)
        })
        .await
    }

    async fn minute_counts(
        &self,
        symbol: &Symbol,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<crate::MinuteCount>, StoreError> {
        let symbol = symbol.as_str().to_string();
        self.read(move |c| {
            // Ids of 1 to 18 digits only: every one fits a signed 64-bit integer.
            let mut stmt = c.prepare_cached(
                "SELECT src_id, ts / 60000000 AS m, \
                        sum(origin IS NULL), sum(origin IS NOT NULL), \
                        sum(numeric), min(CASE WHEN numeric THEN CAST(source_id AS INTEGER) END), \
                        max(CASE WHEN numeric THEN CAST(source_id AS INTEGER) END) \
                 FROM (SELECT src_id, ts, origin, source_id, \
                              coalesce(length(source_id) BETWEEN 1 AND 18 \
                                       AND source_id NOT GLOB '*[^0-9]*', 0) AS numeric \
                       FROM ticks \
                       WHERE symbol_id = (SELECT id FROM symbols WHERE symbol = ?1) \
                         AND ts >= ?2 AND ts < ?3) \
                 GROUP BY src_id, m ORDER BY m, src_id",
            )?;
            let mut rows = stmt.query(params![symbol, from.as_micros(), to.as_micros()])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(rows::minute_count(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                )?);
            }
            drop(rows);
            // Ingest's counts of the minutes starting in the range.
            let mut stmt = c.prepare_cached(
                "SELECT provider, minute / 60000000, sum(received), sum(rejected), \
                        sum(duplicates) \
                 FROM ledger WHERE symbol = ?1 AND minute >= ?2 AND minute < ?3 \
                 GROUP BY provider, minute",
            )?;
            let first = minute_of(from).as_micros();
            let mut rows = stmt.query(params![symbol, first, to.as_micros()])?;
            let mut ledger = Vec::new();
            while let Some(r) = rows.next()? {
                ledger.push(rows::LedgerRow {
                    provider: r.get(0)?,
                    minute_index: r.get(1)?,
                    received: r.get(2)?,
                    rejected: r.get(3)?,
                    duplicates: r.get(4)?,
                });
            }
            rows::with_ledger(out, ledger)
        })
        .await
    }

    async fn unhealed_gaps(&self, provider: &str, limit: usize) -> Result<Vec<Gap>, StoreError> {
        let provider = provider.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {GAP_COLUMNS} FROM gaps \
                 WHERE provider = ?1 AND status IN ('open', 'healing') \
                 ORDER BY from_ts, symbol LIMIT +?2"
            ))?;
            let mut rows = stmt.query(params![provider, limit as i64])?;
            gap_rows(&mut rows)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .optional()
                .map(|_| ())
                .map_err(StoreError::from)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
