//! Where ticks come to rest: the tick store and the latest-quote cache.
//!
//! A [`TickStore`] writes batches idempotently (key `(symbol, ts, tick_id)`,
//! so a redelivered tick is never stored twice) and answers time-range
//! queries for ticks and candles. A [`Cache`] keeps the latest tick per
//! symbol and only ever replaces it with a newer one; it can always be
//! rebuilt from the store.
//!
//! # Layout
//! - [`error`] — [`StoreError`], [`CacheError`].
//! - [`query`] — [`TickQuery`], [`CandleQuery`], [`SymbolInfo`], [`WriteOutcome`].
//! - [`sqlite`] — [`SqliteStore`] (`sqlite://path`), the embedded store.
//! - [`memory_cache`] — [`MemoryCache`] (`memory://`), the embedded cache.
//! - [`postgres`] — [`PostgresStore`] (`postgres://`), TimescaleDB or plain PostgreSQL.
//! - [`redis_cache`] — [`RedisCache`] (`redis://`).
//! - [`open_store`], [`open_cache`]: the registries that pick an
//!   implementation by URL scheme.

pub mod error;
pub mod memory_cache;
pub mod postgres;
pub mod query;
pub mod redis_cache;
mod rows;
pub mod sqlite;
pub mod timed;

use std::sync::Arc;

use async_trait::async_trait;
use streamforge_model::{Candle, Gap, Symbol, Tally, Tick};

pub use error::{CacheError, StoreError};
pub use memory_cache::MemoryCache;
pub use postgres::{PostgresConfig, PostgresStore};

pub use query::{
    CandleQuery, GapQuery, MinuteCount, Order, SymbolInfo, TickQuery, WriteOutcome,
    MAX_COMPLETENESS_RANGE_MICROS,
};
pub use redis_cache::RedisCache;
pub use sqlite::SqliteStore;

/// A batch of ticks shared between the store write and the cache update.
pub type TickBatch = Arc<[Tick]>;

/// Durable storage of ticks with time-series queries.
#[async_trait]
pub trait TickStore: Send + Sync {
    /// The URL scheme of this implementation, e.g. `sqlite`.
    fn kind(&self) -> &'static str;

    /// Writes a batch in one transaction. Ticks already stored are skipped.
    /// When this returns `Ok`, the batch is durable.
    async fn write_batch(&self, batch: TickBatch) -> Result<WriteOutcome, StoreError> {
        self.write_counted(batch, &[]).await
    }

    /// Writes a batch and ingest's ledger `tallies` in one transaction
    /// (either may be empty). A tally is added to its row (provider,
    /// symbol, minute, producer) only when its sequence number is above
    /// the row's last, so a tally delivered again is applied once.
    async fn write_counted(
        &self,
        batch: TickBatch,
        tallies: &[Tally],
    ) -> Result<WriteOutcome, StoreError>;

    /// Ticks of one symbol in `[from, to)`, ordered by time.
    async fn ticks(&self, query: TickQuery) -> Result<Vec<Tick>, StoreError>;

    /// Candles of one symbol for buckets starting in `[from, to)`.
    async fn candles(&self, query: CandleQuery) -> Result<Vec<Candle>, StoreError>;

    /// Every symbol with stored ticks.
    async fn symbols(&self) -> Result<Vec<SymbolInfo>, StoreError>;

    /// One symbol's summary; `None` when nothing is stored for it.
    async fn symbol(&self, symbol: &Symbol) -> Result<Option<SymbolInfo>, StoreError>;

    /// The newest stored tick of a symbol (the cache's fallback).
    async fn latest(&self, symbol: &Symbol) -> Result<Option<Tick>, StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records feed gaps; writing a gap again changes nothing (a replayed
    /// one may only widen its end).
    async fn write_gaps(&self, gaps: &[Gap]) -> Result<(), StoreError>;

    /// Gaps overlapping `[from, to)`, of one symbol or all, oldest first.
    async fn gaps(&self, query: GapQuery) -> Result<Vec<Gap>, StoreError>;

    /// `provider`'s gaps still `open` or `healing`, oldest first, at most
    /// `limit`: what a restarted provider goes on healing.
    async fn unhealed_gaps(&self, provider: &str, limit: usize) -> Result<Vec<Gap>, StoreError>;

    /// Per provider and minute of `[from, to)`, what is stored of `symbol`
    /// (live, backfilled, venue trade ids) and what ingest counted of it
    /// (received, rejected, duplicates): oldest first. The range is at
    /// most [`MAX_COMPLETENESS_RANGE_MICROS`] (callers check).
    async fn minute_counts(
        &self,
        symbol: &Symbol,
        from: streamforge_model::Timestamp,
        to: streamforge_model::Timestamp,
    ) -> Result<Vec<MinuteCount>, StoreError>;

    /// Periodic upkeep (partitions ahead, retention); run by persist.
    async fn housekeeping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The latest tick per symbol.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The URL scheme of this implementation, e.g. `memory`.
    fn kind(&self) -> &'static str;

    /// Offers ticks; each replaces its symbol's entry only when newer by
    /// [`Tick::sort_key`]. Returns how many entries changed.
    async fn update_latest(&self, ticks: &[Tick]) -> Result<usize, CacheError>;

    async fn latest(&self, symbol: &Symbol) -> Result<Option<Tick>, CacheError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), CacheError>;
}

/// Store URL schemes [`open_store`] understands.
pub const STORE_SCHEMES: &[&str] = &["sqlite", "postgres", "postgresql"];
/// Cache URL schemes [`open_cache`] understands.
pub const CACHE_SCHEMES: &[&str] = &["memory", "redis"];

fn split_url(url: &str) -> Option<(&str, &str)> {
    url.split_once("://")
}

pub use streamforge_model::settings::redact_url;

/// Settings of store implementations.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    pub postgres: PostgresConfig,
}

/// Opens the tick store named by `url`, creating and migrating it if needed.
pub async fn open_store(url: &str) -> Result<Arc<dyn TickStore>, StoreError> {
    open_store_with(url, &StoreOptions::default()).await
}

/// [`open_store`] with settings.
pub async fn open_store_with(
    url: &str,
    options: &StoreOptions,
) -> Result<Arc<dyn TickStore>, StoreError> {
    let bad = |reason: String| StoreError::Url {
        url: redact_url(url),
        reason,
    };
    let (scheme, rest) = split_url(url).ok_or_else(|| bad("expected SCHEME://...".into()))?;
    match scheme {
        "sqlite" => Ok(Arc::new(SqliteStore::open(rest).await?)),
        "postgres" | "postgresql" => {
            let store = PostgresStore::open(url, options.postgres.clone()).await?;
            Ok(Arc::new(timed::Timed::new(
                Arc::new(store),
                options.postgres.call_timeout(),
            )))
        }
        other => Err(bad(format!(
            "unknown scheme {other:?}; this build supports: {}",
            STORE_SCHEMES.join(", ")
        ))),
    }
}

/// Opens the cache named by `url`.
pub async fn open_cache(url: &str) -> Result<Arc<dyn Cache>, CacheError> {
    let bad = |reason: String| CacheError::Url {
        url: redact_url(url),
        reason,
    };
    let (scheme, _rest) = split_url(url).ok_or_else(|| bad("expected SCHEME://...".into()))?;
    match scheme {
        "memory" => Ok(Arc::new(MemoryCache::new())),
        "redis" | "rediss" => Ok(Arc::new(RedisCache::new(url)?)),
        other => Err(bad(format!(
            "unknown scheme {other:?}; this build supports: {}",
            CACHE_SCHEMES.join(", ")
        ))),
    }
}
