//! Market data queries: symbols, latest quotes, ticks and candles.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use streamforge_model::ledger::minute_of;
use streamforge_model::{Candle, Gap, GapReason, GapStatus, Interval, Symbol, Tick, Timestamp};
use streamforge_store::{
    CandleQuery, GapQuery, MinuteCount, SymbolInfo, TickQuery, MAX_COMPLETENESS_RANGE_MICROS,
};
use streamforge_telemetry::events::CacheRead;
use utoipa::ToSchema;

use crate::openapi::{query_names, ErrorBody, Limit, SymbolPath, TimeRange};
use crate::params::{Params, PathSymbol, RawQuery};
use crate::{ApiError, AppState};

/// The query parameters each handler accepts: the ones it documents.
static NO_QUERY: [&str; 0] = [];
static TICKS_QUERY: LazyLock<Vec<String>> = LazyLock::new(query_names::<__path_ticks>);
static CANDLES_QUERY: LazyLock<Vec<String>> = LazyLock::new(query_names::<__path_candles>);
static GAPS_QUERY: LazyLock<Vec<String>> = LazyLock::new(query_names::<__path_gaps>);
static COMPLETENESS_QUERY: LazyLock<Vec<String>> =
    LazyLock::new(query_names::<__path_completeness>);

/// 404 unless the store has ticks of `symbol`.
async fn known(state: &AppState, symbol: &Symbol) -> Result<SymbolInfo, ApiError> {
    state
        .store
        .symbol(symbol)
        .await?
        .ok_or_else(|| ApiError::UnknownSymbol(symbol.to_string()))
}

/// One symbol of `/api/v1/symbols`.
#[derive(Serialize, ToSchema)]
struct SymbolRow {
    symbol: Symbol,
    /// Event time of its first and last stored tick.
    first_ts: Timestamp,
    last_ts: Timestamp,
    /// Ticks stored.
    ticks: u64,
    /// Price of its latest tick, from the cache (`null` when the cache has none).
    last_price: Option<f64>,
}

/// The answer of `/api/v1/symbols`.
#[derive(Serialize, ToSchema)]
struct SymbolList {
    symbols: Vec<SymbolRow>,
}

/// Symbols with stored ticks
///
/// Every symbol the store has ticks of, with its first and last tick time,
/// its tick count and its latest price.
#[utoipa::path(
    get,
    path = "/api/v1/symbols",
    tag = "market",
    responses(
        (status = 200, description = "The stored symbols", body = SymbolList),
        (status = 400, description = "A query parameter was given (this endpoint takes none)", body = ErrorBody),
        crate::openapi::StoreUnavailable,
    )
)]
pub async fn symbols(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    Params::new(raw, &NO_QUERY)?;
    let infos = state.store.symbols().await?;
    let mut symbols = Vec::with_capacity(infos.len());
    for info in infos {
        // The cache is optional here: a cache outage must not hide the list.
        let last = state.cache.latest(&info.symbol).await.ok().flatten();
        symbols.push(SymbolRow {
            symbol: info.symbol,
            first_ts: info.first_ts,
            last_ts: info.last_ts,
            ticks: info.ticks,
            last_price: last.as_ref().map(|t| t.price()),
        });
    }
    Ok(Json(SymbolList { symbols }).into_response())
}

/// Latest tick of a symbol
///
/// From the cache, falling back to the store; the `x-streamforge-source`
/// header says which (`cache` or `store`).
#[utoipa::path(
    get,
    path = "/api/v1/quotes/{symbol}/latest",
    tag = "market",
    params(SymbolPath),
    responses(
        (status = 200, description = "The symbol's latest tick", body = Tick,
            headers(("x-streamforge-source" = String, description = "cache or store"))),
        (status = 400, description = "A bad symbol, or a query parameter (this endpoint takes none)", body = ErrorBody),
        crate::openapi::UnknownSymbol,
        crate::openapi::StoreUnavailable,
    )
)]
pub async fn latest_quote(
    State(state): State<AppState>,
    PathSymbol(symbol): PathSymbol,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    Params::new(raw, &NO_QUERY)?;
    let cached = match state.cache.latest(&symbol).await {
        Ok(t) => {
            state.metrics.cache_read(if t.is_some() {
                CacheRead::Hit
            } else {
                CacheRead::Miss
            });
            t
        }
        Err(e) => {
            state.metrics.cache_read(CacheRead::Error);
            tracing::warn!(error = %e, "cache read failed; answering from the store");
            None
        }
    };
    let (tick, source) = match cached {
        Some(t) => (t, "cache"),
        None => match state.store.latest(&symbol).await? {
            Some(t) => (t, "store"),
            None => return Err(ApiError::UnknownSymbol(symbol.to_string())),
        },
    };
    let mut response = Json(tick).into_response();
    response
        .headers_mut()
        .insert("x-streamforge-source", HeaderValue::from_static(source));
    Ok(response)
}

/// How ticks are ordered, by event time.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // describes the `order` parameter, which `Params::order` reads
pub(crate) enum TickOrder {
    Asc,
    Desc,
}

/// Ticks of a symbol in a time range
///
/// Ticks with event time in `[from, to)`, in event-time order, at most `limit`.
#[utoipa::path(
    get,
    path = "/api/v1/ticks/{symbol}",
    tag = "market",
    params(
        SymbolPath,
        TimeRange,
        Limit,
        ("order" = Option<TickOrder>, Query, description = "asc (the default) or desc, by event time."),
    ),
    responses(
        (status = 200, description = "A page of ticks", body = TickPage),
        crate::openapi::BadParameter,
        crate::openapi::UnknownSymbol,
        crate::openapi::StoreUnavailable,
    )
)]
pub async fn ticks(
    State(state): State<AppState>,
    PathSymbol(symbol): PathSymbol,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::new(raw, &TICKS_QUERY)?;
    let (from, to) = params.range(&state.limits)?;
    let limit = params.limit(&state.limits)?;
    let order = params.order()?;
    let ticks = state
        .store
        .ticks(TickQuery {
            symbol: symbol.clone(),
            from,
            to,
            limit,
            order,
        })
        .await?;
    if ticks.is_empty() {
        // An empty page of a known symbol, or a symbol never seen.
        known(&state, &symbol).await?;
    }
    let page = TickPage {
        symbol: &symbol,
        from,
        to,
        limit,
        count: ticks.len(),
        ticks: &ticks,
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        page.to_json(),
    )
        .into_response())
}

/// The answer of `/api/v1/ticks/{symbol}`, serialized as it is.
#[derive(Serialize, ToSchema)]
struct TickPage<'a> {
    symbol: &'a Symbol,
    /// The range asked, defaults filled in.
    from: Timestamp,
    to: Timestamp,
    limit: usize,
    /// Ticks in this page.
    count: usize,
    ticks: &'a [Tick],
}

impl TickPage<'_> {
    /// The page as its `Serialize` form writes it, the ticks written by the
    /// wire encoder (a page is mostly ticks).
    fn to_json(&self) -> Vec<u8> {
        fn field<T: Serialize>(out: &mut Vec<u8>, name: &str, value: &T) {
            out.extend_from_slice(name.as_bytes());
            // Symbols, times and integers always serialize.
            let _ = serde_json::to_writer(&mut *out, value);
        }
        let mut out = Vec::with_capacity(128 + self.ticks.len() * 224);
        field(&mut out, "{\"symbol\":", self.symbol);
        field(&mut out, ",\"from\":", &self.from);
        field(&mut out, ",\"to\":", &self.to);
        field(&mut out, ",\"limit\":", &self.limit);
        field(&mut out, ",\"count\":", &self.count);
        out.extend_from_slice(b",\"ticks\":[");
        for (i, tick) in self.ticks.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            streamforge_model::wire::encode_into(tick, &mut out);
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// One candle of `/api/v1/candles/{symbol}`: complete unless a recorded
/// gap overlaps it; `gap_ids` are the indexes in the page's `gaps` of the
/// gaps that do (at most [`MAX_GAPS_PER_CANDLE`]).
#[derive(Serialize, ToSchema)]
#[schema(as = Candle)]
struct CandleRow<'a> {
    /// Bucket start (inclusive); the bucket ends at start + interval.
    start: Timestamp,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    /// Sum of trade sizes.
    volume: f64,
    /// Volume-weighted average price; `null` when every trade had size 0.
    vwap: Option<f64>,
    /// Trades in the bucket.
    trades: u64,
    /// Event time of the first and last trade in the bucket.
    first_ts: Timestamp,
    last_ts: Timestamp,
    /// `false` when a recorded feed gap overlaps the bucket: trades may be missing.
    complete: bool,
    /// Ids (in the page's `gaps`) of the gaps overlapping the bucket, at
    /// most 100; only when `complete` is false.
    #[serde(skip_serializing_if = "<[usize]>::is_empty")]
    gap_ids: &'a [usize],
    /// Present and true when more than 100 gaps overlap the bucket.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    gaps_truncated: bool,
    /// Present and true on an interval without trades filled by `fill=previous`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    filled: bool,
}

/// A recorded feed gap: a span `[from, to)` in which a provider may have
/// missed trades of a symbol (with its `id` in candle pages, its symbol in
/// gap pages).
#[derive(Serialize, ToSchema)]
#[schema(as = Gap)]
struct GapRow<'a> {
    /// In a candle page: the gap's index, which candles' `gap_ids` reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<usize>,
    provider: &'a str,
    /// Which of the provider's connections (0-based).
    connection: u32,
    /// In a gap page: the symbol.
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a Symbol>,
    from: Timestamp,
    to: Timestamp,
    /// Length in seconds.
    seconds: f64,
    reason: GapReason,
    /// Healing from the venue's history: `open` (nothing heals it yet),
    /// `healing`, `healed` or `unrecoverable`.
    status: GapStatus,
    /// The venue trade ids missed, where the venue numbers its trades.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_id: Option<u64>,
    /// Trades taken from the venue's history.
    backfilled: u64,
    /// Why it cannot heal, or what healing could not take.
    #[serde(skip_serializing_if = "str::is_empty")]
    detail: &'a str,
}

impl<'a> GapRow<'a> {
    fn of(g: &'a Gap) -> Self {
        GapRow {
            id: None,
            provider: &g.provider,
            connection: g.connection,
            symbol: None,
            from: g.from,
            to: g.to,
            seconds: g.seconds(),
            reason: g.reason,
            status: g.healing.status,
            first_id: g.healing.first_id,
            last_id: g.healing.last_id,
            backfilled: g.healing.backfilled,
            detail: &g.healing.detail,
        }
    }
}

/// The answer of `/api/v1/candles/{symbol}`.
#[derive(Serialize, ToSchema)]
struct CandlePage<'a> {
    symbol: &'a Symbol,
    interval: Interval,
    /// The range asked, defaults filled in.
    from: Timestamp,
    to: Timestamp,
    limit: usize,
    fill: Fill,
    /// Candles in this page.
    count: usize,
    candles: Vec<CandleRow<'a>>,
    /// Every recorded gap of the symbol in the range, once, each with an
    /// `id` (its index here) that candles reference.
    gaps: Vec<GapRow<'a>>,
}

/// The answer of `/api/v1/gaps`.
#[derive(Serialize, ToSchema)]
struct GapPage<'a> {
    /// The symbol asked, `null` for all.
    symbol: Option<&'a Symbol>,
    /// The range asked, defaults filled in.
    from: Timestamp,
    to: Timestamp,
    limit: usize,
    /// Gaps in this page.
    count: usize,
    gaps: Vec<GapRow<'a>>,
}

/// How intervals with no trades are answered: `none` (the default), they
/// are absent; `previous`, they are present between two candles with
/// open = high = low = close = the previous close, volume 0 and
/// `filled: true`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Fill {
    /// Absent (the default): a missing candle means no trade was stored.
    None,
    /// Present with open = high = low = close = the previous close, no
    /// volume, and `"filled": true`.
    Previous,
}

fn fill_param(params: &Params) -> Result<Fill, ApiError> {
    match params.get("fill") {
        None | Some("none") => Ok(Fill::None),
        Some("previous") => Ok(Fill::Previous),
        Some(other) => Err(ApiError::bad(
            "fill",
            format!("expected none or previous, got {other:?}"),
        )),
    }
}

/// Most gaps looked up for one candle request.
const MAX_GAPS: usize = 10_000;

/// Most gap ids one candle lists; `"gaps_truncated": true` says more overlap it.
const MAX_GAPS_PER_CANDLE: usize = 100;

/// One candle as answered, `overlapping` being the ids of the gaps that
/// overlap it.
fn candle_row<'a>(c: &Candle, filled: bool, overlapping: &'a [usize]) -> CandleRow<'a> {
    let shown = &overlapping[..overlapping.len().min(MAX_GAPS_PER_CANDLE)];
    CandleRow {
        start: c.start,
        open: c.open,
        high: c.high,
        low: c.low,
        close: c.close,
        volume: c.volume,
        vwap: c.vwap,
        trades: c.trades,
        first_ts: c.first_ts,
        last_ts: c.last_ts,
        complete: overlapping.is_empty(),
        gap_ids: shown,
        gaps_truncated: shown.len() < overlapping.len(),
        filled,
    }
}

/// For each candle (ascending by start), the ids of the gaps overlapping
/// it (`gaps` in any order), in one sweep: each gap is added once and
/// dropped once, so the work is the size of the answer.
fn overlaps(candles: &[(Candle, bool)], gaps: &[Gap]) -> Vec<Vec<usize>> {
    let mut by_from: Vec<usize> = (0..gaps.len()).collect();
    by_from.sort_by_key(|&i| gaps[i].from);
    let mut next = 0;
    let mut active: Vec<usize> = Vec::new();
    candles
        .iter()
        .map(|(c, _)| {
            let end = c.start.saturating_add_micros(c.interval.micros());
            while next < by_from.len() && gaps[by_from[next]].from < end {
                active.push(by_from[next]);
                next += 1;
            }
            active.retain(|&i| gaps[i].to > c.start);
            let mut ids: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&i| gaps[i].from < end)
                .collect();
            ids.sort_unstable();
            ids
        })
        .collect()
}

/// The candles with every empty interval between two of them filled from
/// the previous close, at most `limit` in all.
fn fill_previous(candles: Vec<Candle>, limit: usize) -> Vec<(Candle, bool)> {
    let mut out: Vec<(Candle, bool)> = Vec::with_capacity(candles.len());
    for c in candles {
        if let Some((prev, _)) = out.last() {
            let step = prev.interval.micros();
            let mut start = prev.start.saturating_add_micros(step);
            let prev = prev.clone();
            while start < c.start && out.len() < limit {
                out.push((
                    Candle {
                        start,
                        open: prev.close,
                        high: prev.close,
                        low: prev.close,
                        volume: 0.0,
                        vwap: None,
                        trades: 0,
                        first_ts: start,
                        last_ts: start,
                        ..prev.clone()
                    },
                    true,
                ));
                start = start.saturating_add_micros(step);
            }
        }
        if out.len() >= limit {
            break;
        }
        out.push((c, false));
    }
    out
}

/// OHLCV candles of a symbol
///
/// Served from the store's rollups: buckets starting in `[from, to)`. The
/// answer lists every gap in the range once, each with an `id`, so a chart
/// can show outages with no candle; a candle overlapping gaps says
/// `"complete": false` and lists their ids in `gap_ids` (at most 100;
/// `"gaps_truncated": true` beyond), so the answer grows with candles plus
/// gaps, not their product. Intervals with no trades are absent unless
/// `fill=previous`.
#[utoipa::path(
    get,
    path = "/api/v1/candles/{symbol}",
    tag = "market",
    params(
        SymbolPath,
        ("interval" = Option<Interval>, Query, description = "Candle width; default 1m."),
        TimeRange,
        Limit,
        ("fill" = Option<Fill>, Query, description = "none (the default) or previous."),
    ),
    responses(
        (status = 200, description = "A page of candles and the gaps they overlap", body = CandlePage),
        crate::openapi::BadParameter,
        crate::openapi::UnknownSymbol,
        crate::openapi::StoreUnavailable,
    )
)]
pub async fn candles(
    State(state): State<AppState>,
    PathSymbol(symbol): PathSymbol,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::new(raw, &CANDLES_QUERY)?;
    let interval = params.interval()?;
    let (from, to) = params.range(&state.limits)?;
    let limit = params.limit(&state.limits)?;
    let fill = fill_param(&params)?;
    let candles = state
        .store
        .candles(CandleQuery {
            symbol: symbol.clone(),
            interval,
            from,
            to,
            limit,
        })
        .await?;
    if candles.is_empty() {
        // No trade in the range of a known symbol, or a symbol never seen.
        known(&state, &symbol).await?;
    }
    let gaps = state
        .store
        .gaps(GapQuery {
            symbol: Some(symbol.clone()),
            from: interval.bucket_start(from),
            to: interval.first_start_from(to),
            limit: MAX_GAPS,
        })
        .await?;
    // A healed gap holds every trade again: its candles are complete.
    let gaps: Vec<Gap> = gaps
        .into_iter()
        .filter(|g| g.healing.status != GapStatus::Healed)
        .collect();
    let candles = match fill {
        Fill::None => candles.into_iter().map(|c| (c, false)).collect(),
        Fill::Previous => fill_previous(candles, limit),
    };
    let ids = overlaps(&candles, &gaps);
    let rows: Vec<CandleRow> = candles
        .iter()
        .zip(&ids)
        .map(|((c, filled), ids)| candle_row(c, *filled, ids))
        .collect();
    Ok(Json(CandlePage {
        symbol: &symbol,
        interval,
        from,
        to,
        limit,
        fill,
        count: rows.len(),
        candles: rows,
        gaps: gaps
            .iter()
            .enumerate()
            .map(|(id, g)| GapRow {
                id: Some(id),
                ..GapRow::of(g)
            })
            .collect(),
    })
    .into_response())
}

/// Recorded feed outages (gaps)
///
/// A gap is a span in which a provider may have missed trades of a symbol:
/// from its last message before a disconnect or silence to the moment the
/// symbol was subscribed again, or around a jump in the venue's trade ids.
/// Where the venue keeps a trade history the gap heals from it (`status`).
/// Gaps overlapping `[from, to)` are listed, of one symbol or all, oldest
/// first.
#[utoipa::path(
    get,
    path = "/api/v1/gaps",
    tag = "market",
    params(
        ("symbol" = Option<Symbol>, Query, description = "Only gaps of this instrument; all symbols when absent."),
        TimeRange,
        Limit,
    ),
    responses(
        (status = 200, description = "A page of gaps", body = GapPage),
        crate::openapi::BadParameter,
        crate::openapi::StoreUnavailable,
    )
)]
pub async fn gaps(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::new(raw, &GAPS_QUERY)?;
    let symbol = params
        .get("symbol")
        .map(crate::params::path_symbol)
        .transpose()?;
    let (from, to) = params.range(&state.limits)?;
    let limit = params.limit(&state.limits)?;
    let gaps = state
        .store
        .gaps(GapQuery {
            symbol: symbol.clone(),
            from,
            to,
            limit,
        })
        .await?;
    let rows: Vec<GapRow> = gaps
        .iter()
        .map(|g| GapRow {
            symbol: Some(&g.symbol),
            ..GapRow::of(g)
        })
        .collect();
    Ok(Json(GapPage {
        symbol: symbol.as_ref(),
        from,
        to,
        limit,
        count: rows.len(),
        gaps: rows,
    })
    .into_response())
}

/// One provider's minute of `/api/v1/completeness`.
#[derive(Serialize, ToSchema)]
struct MinuteRow<'a> {
    /// The minute's start (event time).
    minute: Timestamp,
    provider: &'a str,
    /// Trades stored from the live feed.
    stored_live: u64,
    /// Trades stored from the venue's history (healed gaps).
    stored_backfill: u64,
    /// Venue trade ids stored in the minute.
    ids_stored: u64,
    /// Ids the venue numbered in the minute: from the one after the last
    /// id of the provider's previous minute in the range (in its first
    /// minute, from its own first id) to its last.
    ids_expected: u64,
    /// `ids_expected - ids_stored`: trades the venue made that are not stored.
    ids_missing: u64,
    /// Trades ingest received from the provider (its feed or its
    /// history), rejected ones and duplicates included. When nothing is
    /// lost or still on its way, `received = rejected + duplicates +
    /// stored_live + stored_backfill`.
    received: u64,
    /// Trades sent to the dead-letter topic.
    rejected: u64,
    /// Trades the provider had sent already (a venue resending an id,
    /// connections overlapping at renewal); stored once.
    duplicates: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_id: Option<u64>,
    /// No id is missing and no gap that has not healed overlaps the minute.
    complete: bool,
}

/// The sums of a completeness page.
#[derive(Default, Serialize, ToSchema)]
struct CompletenessTotals {
    minutes: usize,
    complete_minutes: usize,
    stored_live: u64,
    stored_backfill: u64,
    ids_stored: u64,
    ids_expected: u64,
    ids_missing: u64,
    received: u64,
    rejected: u64,
    duplicates: u64,
}

/// The answer of `/api/v1/completeness`.
#[derive(Serialize, ToSchema)]
struct CompletenessPage<'a> {
    symbol: &'a Symbol,
    /// The range answered: the one asked, defaults filled in, widened to
    /// whole minutes, `from` moved up to 24 h before `to` when it was
    /// further.
    from: Timestamp,
    to: Timestamp,
    totals: CompletenessTotals,
    minutes: Vec<MinuteRow<'a>>,
    /// The gaps overlapping the range, every status.
    gaps: Vec<GapRow<'a>>,
}

/// The ledger rows of `counts` (oldest first), `gaps` marking minutes
/// incomplete unless healed.
fn ledger<'a>(counts: &'a [MinuteCount], gaps: &[Gap]) -> (Vec<MinuteRow<'a>>, CompletenessTotals) {
    let mut last_id: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut totals = CompletenessTotals::default();
    let rows: Vec<MinuteRow> = counts
        .iter()
        .map(|c| {
            let expected = match (c.min_id, c.max_id) {
                (Some(min), Some(max)) => {
                    let from = match last_id.get(c.provider.as_str()) {
                        Some(prev) if *prev < min => prev + 1,
                        _ => min,
                    };
                    last_id.insert(&c.provider, max);
                    (max - from + 1).max(c.ids)
                }
                _ => c.ids,
            };
            let start = c.minute.as_micros();
            let end = start + 60_000_000;
            let unhealed = gaps.iter().any(|g| {
                g.healing.status != GapStatus::Healed
                    && g.from.as_micros() < end
                    && g.to.as_micros() >= start
            });
            let missing = expected - c.ids;
            let row = MinuteRow {
                minute: c.minute,
                provider: &c.provider,
                stored_live: c.live,
                stored_backfill: c.backfill,
                ids_stored: c.ids,
                ids_expected: expected,
                ids_missing: missing,
                received: c.received,
                rejected: c.rejected,
                duplicates: c.duplicates,
                first_id: c.min_id,
                last_id: c.max_id,
                complete: missing == 0 && !unhealed,
            };
            totals.minutes += 1;
            totals.complete_minutes += usize::from(row.complete);
            totals.stored_live += c.live;
            totals.stored_backfill += c.backfill;
            totals.ids_stored += c.ids;
            totals.ids_expected += expected;
            totals.ids_missing += missing;
            totals.received += c.received;
            totals.rejected += c.rejected;
            totals.duplicates += c.duplicates;
            row
        })
        .collect();
    (rows, totals)
}

/// Completeness ledger: what is stored, minute by minute
///
/// Per provider and minute of event time in `[from, to)` (at most 24 h;
/// a longer range is answered for its last 24 h, `from` in the answer says):
/// trades stored live and from the venue's history, and — for venues that
/// number their trades — the ids the venue made against the ids stored;
/// beside them what ingest counted: trades received, rejected and
/// duplicated. A minute is complete when no id is missing and no gap that
/// has not healed overlaps it. The stored counts are built from the stored
/// trades themselves; ingest's are written with them.
#[utoipa::path(
    get,
    path = "/api/v1/completeness",
    tag = "market",
    params(
        ("symbol" = Symbol, Query, description = "The instrument."),
        TimeRange,
    ),
    responses(
        (status = 200, description = "The minutes of the range with stored trades", body = CompletenessPage),
        crate::openapi::BadParameter,
        crate::openapi::UnknownSymbol,
        crate::openapi::StoreUnavailable,
    )
)]
pub async fn completeness(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::new(raw, &COMPLETENESS_QUERY)?;
    let symbol = crate::params::path_symbol(
        params
            .get("symbol")
            .ok_or_else(|| ApiError::bad("symbol", "is required"))?,
    )?;
    let (from, to) = params.range(&state.limits)?;
    // Whole minutes, at most 24 h: a longer range is answered for its last 24 h.
    // (The last minute a time may have is kept as it is.)
    let to = match minute_of(to).saturating_add_micros(60_000_000) {
        next if minute_of(to) != to && next <= streamforge_model::tick::MAX_TICK_TIME => next,
        _ => to,
    };
    let from = minute_of(from).max(to.saturating_sub_micros(MAX_COMPLETENESS_RANGE_MICROS));
    let counts = state.store.minute_counts(&symbol, from, to).await?;
    if counts.is_empty() {
        known(&state, &symbol).await?;
    }
    let gaps = state
        .store
        .gaps(GapQuery {
            symbol: Some(symbol.clone()),
            from,
            to,
            limit: MAX_GAPS,
        })
        .await?;
    let (minutes, totals) = ledger(&counts, &gaps);
    Ok(Json(CompletenessPage {
        symbol: &symbol,
        from,
        to,
        totals,
        minutes,
        gaps: gaps.iter().map(GapRow::of).collect(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamforge_model::{GapReason, Interval, Timestamp};

    #[test]
    fn the_ledger_counts_ids_across_minutes_and_marks_unhealed_gaps() {
        let m = |k: i64| Timestamp::from_millis(1_756_325_700_000 + k * 60_000);
        let count = |k, provider: &str, ids, min, max| MinuteCount {
            provider: provider.into(),
            minute: m(k),
            live: ids,
            backfill: 0,
            ids,
            min_id: min,
            max_id: max,
            received: ids + 1,
            rejected: 1,
            duplicates: 0,
        };
        let counts = [
            count(0, "binance", 3, Some(10), Some(12)),
            // 13 and 14 missing: the minute starts after 12.
            count(1, "binance", 2, Some(15), Some(16)),
            count(1, "synthetic", 0, None, None),
            count(2, "binance", 3, Some(17), Some(19)),
        ];
        let gap = |k: i64, status| Gap {
            provider: "binance".into(),
            connection: 0,
            symbol: Symbol::parse("BINANCE:BTCUSDT").unwrap(),
            from: m(k).saturating_add_micros(5_000_000),
            to: m(k).saturating_add_micros(6_000_000),
            reason: GapReason::Sequence,
            healing: streamforge_model::Healing {
                status,
                ..Default::default()
            },
        };
        let (rows, totals) = ledger(
            &counts,
            &[gap(2, GapStatus::Unrecoverable), gap(0, GapStatus::Healed)],
        );
        let got: Vec<(u64, u64, bool)> = rows
            .iter()
            .map(|r| (r.ids_expected, r.ids_missing, r.complete))
            .collect();
        assert_eq!(
            got,
            [(3, 0, true), (4, 2, false), (0, 0, true), (3, 0, false)]
        );
        assert_eq!(
            (
                totals.minutes,
                totals.complete_minutes,
                totals.ids_missing,
                totals.ids_expected
            ),
            (4, 2, 2, 10)
        );
        assert_eq!(
            (totals.received, totals.rejected, totals.stored_live),
            (12, 4, 8),
            "ingest's counts are summed beside the stored ones"
        );
    }

    #[test]
    fn a_tick_page_is_written_as_its_serialize_form() {
        let ticks: Vec<Tick> = (0..5)
            .map(|i| {
                streamforge_testkit::tick_with_conditions(
                    "BINANCE:BTCUSDT",
                    1_756_325_700_000 + i,
                    100.0 + i as f64 / 3.0,
                    i as f64,
                    if i % 2 == 0 {
                        vec!["\"q\\".into()]
                    } else {
                        vec![]
                    },
                )
            })
            .collect();
        let symbol = Symbol::parse("BINANCE:BTCUSDT").unwrap();
        for ticks in [&ticks[..], &ticks[..1], &[]] {
            let page = TickPage {
                symbol: &symbol,
                from: Timestamp::MIN,
                to: Timestamp::from_millis(1_756_325_800_000),
                limit: 100,
                count: ticks.len(),
                ticks,
            };
            assert_eq!(
                String::from_utf8(page.to_json()).unwrap(),
                serde_json::to_string(&page).unwrap()
            );
        }
    }

    fn candle(start_min: i64) -> (Candle, bool) {
        let start = Timestamp::from_millis(start_min * 60_000);
        (
            Candle {
                symbol: Symbol::parse("AAPL").unwrap(),
                interval: Interval::M1,
                start,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
                vwap: Some(1.0),
                trades: 1,
                first_ts: start,
                last_ts: start,
            },
            false,
        )
    }

    fn gap(from_min: f64, to_min: f64) -> Gap {
        Gap {
            provider: "finnhub".into(),
            connection: 0,
            symbol: Symbol::parse("AAPL").unwrap(),
            from: Timestamp::from_micros((from_min * 60e6) as i64),
            to: Timestamp::from_micros((to_min * 60e6) as i64),
            reason: GapReason::Disconnected,
            healing: streamforge_model::Healing::default(),
        }
    }

    #[test]
    fn each_candle_gets_the_ids_of_exactly_the_gaps_overlapping_it() {
        let candles: Vec<_> = (0..6).map(candle).collect();
        // Out of order on purpose; [from, to) in minutes.
        let gaps = vec![gap(4.5, 4.6), gap(0.5, 2.5), gap(1.2, 1.3), gap(6.0, 7.0)];
        let ids = overlaps(&candles, &gaps);
        assert_eq!(
            ids,
            vec![vec![1], vec![1, 2], vec![1], vec![], vec![0], vec![]]
        );
        // The same as checking every pair.
        for (c, got) in candles.iter().zip(&ids) {
            let end = c.0.start.saturating_add_micros(c.0.interval.micros());
            let want: Vec<usize> = (0..gaps.len())
                .filter(|&i| gaps[i].from < end && gaps[i].to > c.0.start)
                .collect();
            assert_eq!(got, &want);
        }
    }

    #[test]
    fn a_page_grows_with_candles_plus_gaps_not_their_product() {
        let candles: Vec<_> = (0..1_000).map(candle).collect();
        let gaps: Vec<_> = (0..1_000).map(|_| gap(0.0, 1_000.0)).collect();
        let ids = overlaps(&candles, &gaps);
        let row = serde_json::to_value(candle_row(&candles[0].0, false, &ids[0])).unwrap();
        assert_eq!(
            row["gap_ids"].as_array().unwrap().len(),
            MAX_GAPS_PER_CANDLE
        );
        assert_eq!(row["gaps_truncated"], true);
        assert_eq!(row["complete"], false);
        assert!(row.get("filled").is_none(), "{row}");
        let alone = serde_json::to_value(candle_row(&candles[0].0, true, &[])).unwrap();
        assert_eq!(alone["complete"], true);
        assert_eq!(alone["filled"], true);
        assert!(alone.get("gap_ids").is_none() && alone.get("gaps_truncated").is_none());
    }
}
