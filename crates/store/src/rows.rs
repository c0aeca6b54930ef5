//! What every store reads back, written once: the column lists of its
//! queries and the conversions from a row's values to model types, with one
//! set of error messages. Each backend only takes the values out of its own
//! row type ([`rusqlite::Row`], [`tokio_postgres::Row`]) and hands them here.

use std::sync::Arc;

use streamforge_model::{
    CandlePart, Gap, GapReason, GapStatus, Healing, Origin, Symbol, Tick, TickId, TickInput,
    TickRules, Timestamp,
};

use crate::{StoreError, SymbolInfo};

/// Columns of a tick row, after the symbol (known from the query).
pub(crate) const TICK_COLUMNS: &str =
    "ts, tick_id, price, size, exchange, src_id, conditions, ingested_at, source_id, origin";

/// Columns of a rollup row, in [`RollupRow`]'s order.
pub(crate) const ROLLUP_COLUMNS: &str =
    "bucket, open, open_ts, open_id, high, low, close, close_ts, close_id, volume, notional, trades";

/// Columns of a symbol row, in [`symbol_info`]'s order.
pub(crate) const SYMBOL_COLUMNS: &str = "symbol, first_ts, last_ts, ticks";

/// Columns of a gap row, in [`GapRow`]'s order.
pub(crate) const GAP_COLUMNS: &str =
    "provider, symbol, from_ts, to_ts, connection, reason, status, first_id, last_id, backfilled, detail";

/// Columns of a gap's healing, in [`Healing`]'s order, as [`healing`] reads them.
pub(crate) const HEALING_COLUMNS: &str = "status, first_id, last_id, backfilled, detail";

/// The values of one stored tick, as a backend read them.
pub(crate) struct TickRow<'r> {
    pub ts: Timestamp,
    pub tick_id: i64,
    pub price: f64,
    pub size: f64,
    pub exchange: &'r str,
    pub src_id: &'r str,
    pub conditions: Vec<String>,
    pub ingested_at: Timestamp,
    /// The venue's trade id, when it has one.
    pub source_id: Option<&'r str>,
    /// `NULL` for live trades, `backfill` for those from a venue's history.
    pub origin: Option<&'r str>,
}

/// A minute's counts, as a backend read them (ids as SQL `BIGINT`s).
#[allow(clippy::too_many_arguments)]
pub(crate) fn minute_count(
    provider: String,
    minute_index: i64,
    live: i64,
    backfill: i64,
    ids: i64,
    min_id: Option<i64>,
    max_id: Option<i64>,
) -> Result<crate::MinuteCount, StoreError> {
    let count = |v: i64, name: &str| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("ledger {name}: {v}")))
    };
    let id = |v: Option<i64>, name: &str| v.map(|v| count(v, name)).transpose();
    Ok(crate::MinuteCount {
        provider,
        minute: Timestamp::from_micros(minute_index.saturating_mul(60_000_000)),
        live: count(live, "live")?,
        backfill: count(backfill, "backfill")?,
        ids: count(ids, "ids")?,
        min_id: id(min_id, "min_id")?,
        max_id: id(max_id, "max_id")?,
        received: 0,
        rejected: 0,
        duplicates: 0,
    })
}

/// Ingest's counts of one provider's minute, as a backend summed them
/// over the producers.
pub(crate) struct LedgerRow {
    pub provider: String,
    pub minute_index: i64,
    pub received: i64,
    pub rejected: i64,
    pub duplicates: i64,
}

/// The stored counts with ingest's counts merged in (a minute ingest
/// counted but nothing of it was stored is a row too), oldest first.
pub(crate) fn with_ledger(
    mut counts: Vec<crate::MinuteCount>,
    ledger: Vec<LedgerRow>,
) -> Result<Vec<crate::MinuteCount>, StoreError> {
    let count = |v: i64, name: &str| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("ledger {name}: {v}")))
    };
    let mut index: std::collections::HashMap<(Timestamp, String), usize> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.minute, c.provider.clone()), i))
        .collect();
    for l in ledger {
        let minute = Timestamp::from_micros(l.minute_index.saturating_mul(60_000_000));
        let at = match index.get(&(minute, l.provider.clone())) {
            Some(i) => *i,
            None => {
                index.insert((minute, l.provider.clone()), counts.len());
                counts.push(minute_count(
                    l.provider,
                    l.minute_index,
                    0,
                    0,
                    0,
                    None,
                    None,
                )?);
                counts.len() - 1
            }
        };
        let c = &mut counts[at];
        c.received = count(l.received, "received")?;
        c.rejected = count(l.rejected, "rejected")?;
        c.duplicates = count(l.duplicates, "duplicates")?;
    }
    counts.sort_by(|a, b| (a.minute, &a.provider).cmp(&(b.minute, &b.provider)));
    Ok(counts)
}

/// How a tick's origin is stored: `NULL` for live (most rows), else its name.
pub(crate) fn origin_value(origin: Origin) -> Option<&'static str> {
    (!origin.is_live()).then(|| origin.as_str())
}

/// Rebuilds stored ticks of one query, sharing one allocation per distinct
/// exchange code and provider id (a page of one symbol has few of each).
#[derive(Default)]
pub(crate) struct TickReader {
    exchange: Option<Arc<str>>,
    src_id: Option<Arc<str>>,
}

/// The shared string equal to `text`: the last one when it matches.
fn reuse(last: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    match last {
        Some(a) if **a == *text => a.clone(),
        _ => last.insert(Arc::from(text)).clone(),
    }
}

impl TickReader {
    /// The tick of `symbol` a row holds. Stored ticks were validated on
    /// the way in and are checked again (a damaged database is reported,
    /// never served), except against the clock.
    pub fn tick(&mut self, symbol: &Symbol, row: TickRow<'_>) -> Result<Tick, StoreError> {
        let origin = match row.origin {
            None => Origin::Live,
            Some(text) => Origin::parse(text).ok_or_else(|| {
                StoreError::Corrupt(format!("ticks row of {symbol}: origin {text:?}"))
            })?,
        };
        let input = TickInput {
            symbol: symbol.clone(),
            ts: row.ts,
            tick_id: Some(TickId::from_i64(row.tick_id)),
            price: row.price,
            size: row.size,
            exchange: reuse(&mut self.exchange, row.exchange),
            src_id: reuse(&mut self.src_id, row.src_id),
            conditions: row.conditions,
            occurrence: 0,
            ingested_at: row.ingested_at,
            source_id: row.source_id.map(Box::from),
            origin,
        };
        TickRules::default()
            .check(input, Timestamp::MAX)
            .map_err(|e| StoreError::Corrupt(format!("ticks row of {symbol}: {e}")))
    }
}

/// A symbol row.
pub(crate) fn symbol_info(
    symbol: &str,
    first_ts: Timestamp,
    last_ts: Timestamp,
    ticks: i64,
) -> Result<SymbolInfo, StoreError> {
    Ok(SymbolInfo {
        symbol: Symbol::parse(symbol)
            .map_err(|e| StoreError::Corrupt(format!("symbols.symbol: {e}")))?,
        first_ts,
        last_ts,
        ticks: u64::try_from(ticks)
            .map_err(|_| StoreError::Corrupt(format!("symbols.ticks of {symbol}: {ticks}")))?,
    })
}

/// The values of one gap row.
pub(crate) struct GapRow<'r> {
    pub provider: String,
    pub symbol: &'r str,
    pub from: Timestamp,
    pub to: Timestamp,
    pub connection: i64,
    pub reason: &'r str,
    pub status: &'r str,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    pub backfilled: i64,
    pub detail: String,
}

/// A gap's healing, as stored.
pub(crate) fn healing(
    status: &str,
    first_id: Option<i64>,
    last_id: Option<i64>,
    backfilled: i64,
    detail: String,
) -> Result<Healing, StoreError> {
    let id = |v: Option<i64>, name: &str| {
        v.map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("gaps.{name}: {v}"))))
            .transpose()
    };
    Ok(Healing {
        status: GapStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("gaps.status: unknown {status:?}")))?,
        first_id: id(first_id, "first_id")?,
        last_id: id(last_id, "last_id")?,
        backfilled: u64::try_from(backfilled)
            .map_err(|_| StoreError::Corrupt(format!("gaps.backfilled: {backfilled}")))?,
        detail,
    })
}

/// The values a gap's healing is stored as: its status, ids, count, detail.
pub(crate) fn healing_values(h: &Healing) -> (&'static str, Option<i64>, Option<i64>, i64, &str) {
    let id = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    (
        h.status.as_str(),
        id(h.first_id),
        id(h.last_id),
        i64::try_from(h.backfilled).unwrap_or(i64::MAX),
        &h.detail,
    )
}

impl GapRow<'_> {
    pub fn gap(self) -> Result<Gap, StoreError> {
        Ok(Gap {
            provider: self.provider,
            symbol: Symbol::parse(self.symbol)
                .map_err(|e| StoreError::Corrupt(format!("gaps.symbol: {e}")))?,
            from: self.from,
            to: self.to,
            connection: u32::try_from(self.connection).map_err(|_| {
                StoreError::Corrupt(format!("gaps.connection: {}", self.connection))
            })?,
            reason: GapReason::parse(self.reason).ok_or_else(|| {
                StoreError::Corrupt(format!("gaps.reason: unknown {:?}", self.reason))
            })?,
            healing: healing(
                self.status,
                self.first_id,
                self.last_id,
                self.backfilled,
                self.detail,
            )?,
        })
    }
}

/// The values of one rollup row, selected as [`ROLLUP_COLUMNS`].
pub(crate) struct RollupRow {
    pub bucket: Timestamp,
    pub open: f64,
    pub open_ts: Timestamp,
    pub open_id: i64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub close_ts: Timestamp,
    pub close_id: i64,
    pub volume: f64,
    pub notional: f64,
    pub trades: i64,
}

impl RollupRow {
    /// The bucket's start and its part of a candle.
    pub fn part(self) -> Result<(Timestamp, CandlePart), StoreError> {
        Ok((
            self.bucket,
            CandlePart {
                open: ((self.open_ts, self.open_id), self.open),
                high: self.high,
                low: self.low,
                close: ((self.close_ts, self.close_id), self.close),
                volume: self.volume,
                notional: self.notional,
                trades: u64::try_from(self.trades).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "rollup row at {}: trades {}",
                        self.bucket, self.trades
                    ))
                })?,
            },
        ))
    }
}

/// How many rollup rows a query of `limit` candles of `interval` may fold.
pub(crate) fn rollup_rows_for(interval: streamforge_model::Interval, limit: usize) -> i64 {
    let per_candle = (interval.micros() / interval.rollup().micros()) as usize;
    limit.saturating_mul(per_candle).min(i64::MAX as usize) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(exchange: &'a str, price: f64) -> TickRow<'a> {
        TickRow {
            ts: Timestamp::from_millis(1_756_325_731_200),
            tick_id: 42,
            price,
            size: 1.0,
            exchange,
            src_id: "synthetic",
            conditions: Vec::new(),
            ingested_at: Timestamp::from_millis(1_756_325_731_300),
            source_id: None,
            origin: None,
        }
    }

    #[test]
    fn ticks_of_one_page_share_their_strings() {
        let symbol = Symbol::parse("AAPL").unwrap();
        let mut reader = TickReader::default();
        let a = reader.tick(&symbol, row("XNAS", 1.0)).unwrap();
        let b = reader.tick(&symbol, row("XNAS", 2.0)).unwrap();
        let c = reader.tick(&symbol, row("ARCX", 3.0)).unwrap();
        assert!(std::ptr::eq(a.exchange(), b.exchange()));
        assert_eq!(c.exchange(), "ARCX");
        assert_eq!(b.price(), 2.0);
        assert_eq!(a.tick_id(), TickId::from_i64(42));
    }

    #[test]
    fn damaged_rows_are_errors_that_say_where() {
        let symbol = Symbol::parse("AAPL").unwrap();
        let err = TickReader::default()
            .tick(&symbol, row("XNAS", f64::NAN))
            .unwrap_err();
        assert!(err.to_string().contains("ticks row of AAPL"), "{err}");
        let mut bad = row("XNAS", 1.0);
        bad.origin = Some("guessed");
        let err = TickReader::default().tick(&symbol, bad).unwrap_err();
        assert!(err.to_string().contains("origin \"guessed\""), "{err}");
        let mut numbered = row("BINANCE", 1.0);
        numbered.source_id = Some("716849523");
        numbered.origin = Some("backfill");
        let t = TickReader::default().tick(&symbol, numbered).unwrap();
        assert_eq!(
            (t.source_id(), t.origin()),
            (Some("716849523"), Origin::Backfill)
        );
        assert_eq!(t.tick_id(), TickId::from_i64(42), "the stored id is kept");
        let err = GapRow {
            provider: "synthetic".into(),
            symbol: "AAPL",
            from: Timestamp::from_millis(0),
            to: Timestamp::from_millis(1),
            connection: 0,
            reason: "sunspots",
            status: "open",
            first_id: None,
            last_id: None,
            backfilled: 0,
            detail: String::new(),
        }
        .gap()
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("gaps.reason: unknown \"sunspots\""),
            "{err}"
        );
        let err = healing("mended", None, None, 0, String::new()).unwrap_err();
        assert!(err.to_string().contains("gaps.status"), "{err}");
        let err = healing("open", Some(-1), None, 0, String::new()).unwrap_err();
        assert!(err.to_string().contains("gaps.first_id: -1"), "{err}");
        let err = symbol_info("AAPL", Timestamp::MIN, Timestamp::MAX, -1).unwrap_err();
        assert!(err.to_string().contains("symbols.ticks of AAPL"), "{err}");
    }
}
