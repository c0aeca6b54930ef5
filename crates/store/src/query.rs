//! Query and result types shared by every store.

use serde::Serialize;
use streamforge_model::{Interval, Symbol, Timestamp};

/// Sort order of a tick query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// Ticks of `symbol` with `from <= ts < to`, at most `limit`.
#[derive(Clone, Debug)]
pub struct TickQuery {
    pub symbol: Symbol,
    pub from: Timestamp,
    pub to: Timestamp,
    pub limit: usize,
    pub order: Order,
}

/// Gaps overlapping `[from, to)`, of `symbol` or of every symbol, at most
/// `limit`, oldest first.
#[derive(Clone, Debug)]
pub struct GapQuery {
    pub symbol: Option<Symbol>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub limit: usize,
}

/// Candles of `symbol` whose bucket starts in `[from, to)`, at most `limit`,
/// oldest first.
#[derive(Clone, Debug)]
pub struct CandleQuery {
    pub symbol: Symbol,
    pub interval: Interval,
    pub from: Timestamp,
    pub to: Timestamp,
    pub limit: usize,
}

/// What the store knows of a symbol.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SymbolInfo {
    pub symbol: Symbol,
    /// Event time of the oldest and newest stored tick.
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    /// Number of stored ticks.
    pub ticks: u64,
}

/// Result of writing one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Ticks newly stored.
    pub inserted: usize,
    /// Ticks that were already stored (redeliveries).
    pub duplicates: usize,
}

/// What one provider's stored trades of a symbol are in one minute (of
/// event time): the rows of the completeness ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteCount {
    pub provider: String,
    /// The minute's start.
    pub minute: Timestamp,
    /// Rows stored from the live feed, and from the venue's history.
    pub live: u64,
    pub backfill: u64,
    /// Rows with a numeric venue trade id, and the lowest and highest id.
    pub ids: u64,
    pub min_id: Option<u64>,
    pub max_id: Option<u64>,
    /// What ingest counted (the ledger's tallies): trades received from
    /// the provider, rejected to the dead-letter topic, and duplicates.
    pub received: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

/// The longest range a completeness query covers.
pub const MAX_COMPLETENESS_RANGE_MICROS: i64 = 24 * 3_600 * 1_000_000;
