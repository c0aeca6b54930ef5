//! Healing Finnhub gaps from its trade history, `GET /stock/tick` (a paid
//! plan; a free key gets HTTP 403 and the gap is `unrecoverable` with
//! that reason).
//!
//! Finnhub numbers no trade, so a gap is a time window: from the
//! symbol's last live trade before the outage to its first live trade
//! after it, both inclusive, less the trades at those two edges that were
//! received live (their ids are handed over with the window; anything else
//! in it was missed). The history is read by date (`date`, `skip`,
//! `limit`; trades in time order within a date): the dates around the
//! window (one before and after, for the exchanges' local dates), in each
//! the first trade at or after the window found by bisection on `skip`,
//! then pages until a trade after the window. A window the history does
//! not reach past yet (Finnhub publishes a day's trades after it ends) is
//! read again every `history_retry`, for up to [`WAIT_FOR_HISTORY`]; its
//! trades go out only once, when it is read whole.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use streamforge_model::tick::Origin;
use streamforge_model::{
    Gap, GapStatus, OccurrenceCounter, Symbol, Tick, TickId, TickInput, TickRules, Timestamp,
};
use streamforge_telemetry::{Event, Metrics};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{FinnhubConfig, ID};
use crate::venue::backfill::{fetch_page, PageRequest, Stop};
use crate::venue::events::GapHealEnded;
use crate::venue::http::HttpClient;
use crate::{ProviderError, ProviderFrame, Rejected, Secret};

/// Finnhub's REST API.
pub const DEFAULT_REST_URL: &str = "https://finnhub.io/api/v1";

/// Most trades one history request asks for (Finnhub's maximum).
pub const PAGE_LIMIT: u64 = 25_000;

/// How long a window the history does not reach past yet is read again.
pub const WAIT_FOR_HISTORY: Duration = Duration::from_secs(2 * 86_400);

/// Ticks per frame sent out.
const FRAME_TICKS: usize = 1_000;

/// What to heal: the gaps of one symbol and the window they missed.
#[derive(Clone, Debug)]
pub(super) struct HealRequest {
    /// One symbol's gaps (consecutive outages before a trade came back).
    pub gaps: Vec<Gap>,
    /// The symbol's last live trade before the outage (or the gap's start).
    pub from: Timestamp,
    /// Its first live trade after (or the gap's end).
    pub to: Timestamp,
    /// Ids of the live trades at `from` and `to`: received already.
    pub known: HashSet<TickId>,
}

impl HealRequest {
    fn symbol(&self) -> &Symbol {
        &self.gaps[0].symbol
    }
}

/// One page of `GET /stock/tick`: parallel lists, in time order.
#[derive(Debug, Deserialize)]
pub(super) struct TickPage {
    /// Trades of the date in all.
    #[serde(default)]
    pub total: u64,
    /// Trades in this page.
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub p: Vec<f64>,
    #[serde(default)]
    pub v: Vec<f64>,
    /// Epoch milliseconds.
    #[serde(default)]
    pub t: Vec<i64>,
    /// Condition codes of each trade.
    #[serde(default)]
    pub c: Vec<serde_json::Value>,
}

impl TickPage {
    /// Reads a page; the lists must be as long as each other.
    pub fn read(body: &[u8]) -> Result<TickPage, String> {
        let page: TickPage = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let n = page.t.len();
        if page.p.len() != n || page.v.len() != n || !(page.c.is_empty() || page.c.len() == n) {
            return Err(format!(
                "lists of different lengths: t {n}, p {}, v {}, c {}",
                page.p.len(),
                page.v.len(),
                page.c.len()
            ));
        }
        Ok(page)
    }

    /// The condition codes of trade `i`, as the WebSocket gives them.
    fn conditions(&self, i: usize) -> Vec<String> {
        match self.c.get(i) {
            Some(serde_json::Value::Array(codes)) => codes
                .iter()
                .map(|c| match c {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// How reading a window ended.
enum Outcome {
    /// Read whole (or given up): the gaps are final.
    Done,
    /// The history does not reach past the window yet: read it again later.
    NotYet,
}

/// The healer of Finnhub's gaps.
pub(super) struct Healer {
    pub config: FinnhubConfig,
    /// The REST API's base URL.
    pub base: String,
    /// The key the history is read with (sent as `X-Finnhub-Token`, never
    /// in a URL).
    pub token: Secret,
    pub rules: TickRules,
    pub metrics: Metrics,
    pub client: HttpClient,
}

impl Healer {
    /// Heals the windows of `requests` until they end or shutdown.
    pub async fn run(
        self,
        mut requests: mpsc::Receiver<HealRequest>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        let mut last_request: Option<Instant> = None;
        // Windows the history does not reach past yet: when to read again.
        let mut later: Vec<(Instant, HealRequest)> = Vec::new();
        loop {
            let due = later.iter().map(|(at, _)| *at).min();
            let request = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = requests.recv() => match r {
                    Some(r) => r,
                    None => return Ok(()),
                },
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    let i = later
                        .iter()
                        .position(|(at, _)| Some(*at) == due)
                        .unwrap_or(0);
                    later.swap_remove(i).1
                }
            };
            match self
                .heal(&request, &mut last_request, &out, &cancel)
                .await?
            {
                Outcome::Done => {}
                Outcome::NotYet => {
                    later.push((Instant::now() + self.config.history_retry, request));
                }
            }
        }
    }

    async fn send(
        out: &mpsc::Sender<ProviderFrame>,
        frame: ProviderFrame,
    ) -> Result<(), ProviderError> {
        crate::send_frame(out, ID, frame).await
    }

    async fn send_gaps(
        out: &mpsc::Sender<ProviderFrame>,
        gaps: Vec<Gap>,
    ) -> Result<(), ProviderError> {
        let frame = ProviderFrame {
            provider: ID,
            gaps,
            ..ProviderFrame::default()
        };
        Self::send(out, frame).await
    }

    /// Ends every gap of `request` with `status`; `backfilled` are the
    /// times of the trades taken, each counted in the gap it falls in.
    async fn finish(
        &self,
        out: &mpsc::Sender<ProviderFrame>,
        request: &HealRequest,
        status: GapStatus,
        backfilled: &[Timestamp],
        detail: &str,
    ) -> Result<(), ProviderError> {
        let mut gaps = request.gaps.clone();
        let mut counted = vec![0u64; gaps.len()];
        for ts in backfilled {
            let i = gaps
                .iter()
                .position(|g| g.from <= *ts && *ts <= g.to)
                .unwrap_or(0);
            counted[i] += 1;
        }
        for (gap, n) in gaps.iter_mut().zip(counted) {
            gap.healing.status = status;
            gap.healing.backfilled = n;
            gap.healing.detail = detail.to_string();
            GapHealEnded { provider: ID, gap }.emit(&self.metrics);
        }
        Self::send_gaps(out, gaps).await
    }

    async fn heal(
        &self,
        request: &HealRequest,
        last_request: &mut Option<Instant>,
        out: &mpsc::Sender<ProviderFrame>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, ProviderError> {
        if !self.config.history || request.gaps.is_empty() {
            return Ok(Outcome::Done);
        }
        if request
            .gaps
            .iter()
            .any(|g| g.healing.status != GapStatus::Healing)
        {
            let mut healing = request.gaps.clone();
            for g in &mut healing {
                g.healing.status = GapStatus::Healing;
            }
            Self::send_gaps(out, healing).await?;
        }
        let mut read = Read::default();
        let mut stopped: Option<String> = None;
        for day in days_around(request.from, request.to) {
            match self
                .read_date(request, day, &mut read, last_request, cancel)
                .await
            {
                Ok(()) => {}
                Err(Stop::Cancelled) => return Ok(Outcome::Done),
                Err(Stop::Refused(why)) => {
                    stopped = Some(why);
                    break;
                }
            }
            if read.past_window {
                break;
            }
        }
        if let Some(why) = stopped {
            return self
                .finish(
                    out,
                    request,
                    GapStatus::Unrecoverable,
                    &[],
                    &self.redact(&why),
                )
                .await
                .map(|()| Outcome::Done);
        }
        if !read.past_window {
            let waited = Timestamp::now().as_micros() - request.to.as_micros();
            if waited < WAIT_FOR_HISTORY.as_micros() as i64 {
                tracing::info!(
                    provider = ID,
                    symbol = %request.symbol(),
                    retry_in = ?self.config.history_retry,
                    "finnhub's history does not reach past the gap yet (a day's trades are published after it ends); reading it again later"
                );
                return Ok(Outcome::NotYet);
            }
        }
        // The window is read whole: its missed trades go out once.
        let mut ticks = read.ticks;
        let mut counter = OccurrenceCounter::default();
        Tick::number_identical(&mut ticks, &mut counter);
        ticks.retain(|t| !request.known.contains(&t.tick_id()));
        let times: Vec<Timestamp> = ticks.iter().map(Tick::ts).collect();
        self.metrics.provider_backfilled(ID, ticks.len());
        let mut rejects = read.rejects;
        while !ticks.is_empty() || !rejects.is_empty() {
            let rest = ticks.split_off(ticks.len().min(FRAME_TICKS));
            let frame = ProviderFrame {
                provider: ID,
                ticks: std::mem::replace(&mut ticks, rest),
                rejects: std::mem::take(&mut rejects),
                ..ProviderFrame::default()
            };
            Self::send(out, frame).await?;
        }
        self.finish(out, request, GapStatus::Healed, &times, "")
            .await
            .map(|()| Outcome::Done)
    }

    /// The trades of `request`'s window on `day` (days since 1970-01-01).
    async fn read_date(
        &self,
        request: &HealRequest,
        day: i64,
        read: &mut Read,
        last_request: &mut Option<Instant>,
        cancel: &CancellationToken,
    ) -> Result<(), Stop> {
        // Whole milliseconds inside the window: the stored trades known
        // to the request are those from `from` on, to the microsecond.
        let from_ms = (request.from.as_micros() + Timestamp::MICROS_PER_MILLI - 1)
            .div_euclid(Timestamp::MICROS_PER_MILLI);
        let to_ms = request.to.as_millis();
        let date = date_of(day);
        let first = self
            .page(request.symbol(), &date, 0, 1, last_request, cancel)
            .await?;
        let total = first.total.max(first.count);
        match first.t.first() {
            None => return Ok(()),
            Some(&t) if t > to_ms => {
                read.past_window = true;
                return Ok(());
            }
            Some(_) => {}
        }
        // The last trade of the date: when before the window, nothing here.
        if total > 1 {
            let last = self
                .page(request.symbol(), &date, total - 1, 1, last_request, cancel)
                .await?;
            if last.t.first().is_some_and(|&t| t < from_ms) {
                return Ok(());
            }
        }
        // The first trade at or after the window's start.
        let (mut lo, mut hi) = (0u64, total);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let probe = self
                .page(request.symbol(), &date, mid, 1, last_request, cancel)
                .await?;
            match probe.t.first() {
                Some(&t) if t < from_ms => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let mut skip = lo;
        loop {
            read.pages += 1;
            if read.pages > self.config.history_max_pages {
                return Err(Stop::Refused(format!(
                    "the gap's history is longer than finnhub.history_max_pages ({}) pages of {PAGE_LIMIT} trades",
                    self.config.history_max_pages
                )));
            }
            let page = self
                .page(
                    request.symbol(),
                    &date,
                    skip,
                    PAGE_LIMIT,
                    last_request,
                    cancel,
                )
                .await?;
            let now = Timestamp::now();
            for i in 0..page.t.len() {
                let t = page.t[i];
                // The window's last trade is in the history: it reaches
                // the window's end.
                read.past_window |= t >= to_ms;
                if t > to_ms {
                    return Ok(());
                }
                if t < from_ms {
                    continue;
                }
                self.take(request.symbol(), &page, i, now, read);
            }
            let n = page.t.len() as u64;
            if n == 0 || n < PAGE_LIMIT {
                return Ok(());
            }
            skip += n;
        }
    }

    /// Trade `i` of `page` as a backfilled tick, or a reject saying why not.
    fn take(&self, symbol: &Symbol, page: &TickPage, i: usize, now: Timestamp, read: &mut Read) {
        let (t, p, v) = (page.t[i], page.p[i], page.v[i]);
        let conditions = page.conditions(i);
        let Some(micros) = t.checked_mul(Timestamp::MICROS_PER_MILLI) else {
            read.rejects.push(Rejected::new(
                history_json(symbol, t, p, v),
                "ts_too_old",
                format!("history trade of {symbol}: t {t} is not epoch milliseconds"),
            ));
            return;
        };
        let ts = Timestamp::from_micros(micros);
        let input = TickInput {
            symbol: symbol.clone(),
            ts,
            price: p,
            size: v,
            exchange: "".into(),
            src_id: ID.into(),
            conditions,
            occurrence: 0,
            tick_id: None,
            ingested_at: now,
            source_id: None,
            origin: Origin::Backfill,
        };
        match self.rules.check(input, now) {
            Ok(tick) => read.ticks.push(tick),
            Err(e) => read.rejects.push(
                Rejected::new(
                    history_json(symbol, t, p, v),
                    e.reason(),
                    format!("history trade of {symbol}: {e}"),
                )
                .of(symbol.clone(), ts),
            ),
        }
    }

    /// One paced request of the history.
    async fn page(
        &self,
        symbol: &Symbol,
        date: &str,
        skip: u64,
        limit: u64,
        last_request: &mut Option<Instant>,
        cancel: &CancellationToken,
    ) -> Result<TickPage, Stop> {
        if let Some(at) = *last_request {
            let next = at + self.config.history_interval;
            tokio::select! {
                _ = cancel.cancelled() => return Err(Stop::Cancelled),
                _ = tokio::time::sleep_until(next) => {}
            }
        }
        let url = tick_url(&self.base, symbol, date, skip, limit);
        let headers = [("X-Finnhub-Token", self.token.expose())];
        let request = PageRequest {
            provider: ID,
            client: &self.client,
            url: &url,
            headers: &headers,
            backoff_min: self.config.backoff_min,
            backoff_max: self.config.backoff_max,
            metrics: &self.metrics,
        };
        let body = fetch_page(&request, last_request, cancel).await?;
        TickPage::read(&body)
            .map_err(|e| Stop::Refused(format!("finnhub history page does not read: {e}")))
    }

    fn redact(&self, text: &str) -> String {
        self.token.redact(text)
    }
}

/// What reading a window found so far.
#[derive(Default)]
struct Read {
    ticks: Vec<Tick>,
    rejects: Vec<Rejected>,
    /// A trade at the window's end or after was seen: the history covers it.
    past_window: bool,
    pages: u64,
}

/// `GET {base}/stock/tick?symbol=…&date=…&limit=…&skip=…&format=json`.
pub(super) fn tick_url(base: &str, symbol: &Symbol, date: &str, skip: u64, limit: u64) -> String {
    format!(
        "{}/stock/tick?symbol={}&date={date}&limit={limit}&skip={skip}&format=json",
        base.trim_end_matches('/'),
        encode(symbol.as_str())
    )
}

/// Percent-encodes what a query value cannot hold as is (`:` of
/// `BINANCE:BTCUSDT`, `/`, `&`, …).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Days since 1970-01-01 whose history may hold `from..=to`: one more on
/// each side, since exchanges date trades in their own time zone.
fn days_around(from: Timestamp, to: Timestamp) -> std::ops::RangeInclusive<i64> {
    const DAY: i64 = 86_400_000_000;
    let today = Timestamp::now().as_micros().div_euclid(DAY);
    let first = from.as_micros().div_euclid(DAY) - 1;
    let last = (to.as_micros().div_euclid(DAY) + 1).min(today + 1);
    first..=last.max(first)
}

/// `YYYY-MM-DD` of `day` (days since 1970-01-01).
fn date_of(day: i64) -> String {
    let start = Timestamp::from_micros(day.saturating_mul(86_400_000_000));
    match start.to_datetime() {
        Some(dt) => dt.date_naive().to_string(),
        None => "1970-01-01".to_string(),
    }
}

fn history_json(symbol: &Symbol, t: i64, p: f64, v: f64) -> Vec<u8> {
    serde_json::json!({"s": symbol.as_str(), "t": t, "p": p, "v": v, "origin": "history"})
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_and_bad_ones_say_why() {
        let body = br#"{"s":"AAPL","skip":0,"count":2,"total":2,"v":[10,5],"p":[187.5,187.51],"t":[1733500800000,1733500800001],"x":["Q","N"],"c":[["1","12"],[]]}"#;
        let page = TickPage::read(body).unwrap();
        assert_eq!((page.total, page.t.len()), (2, 2));
        assert_eq!(page.conditions(0), ["1", "12"]);
        assert!(page.conditions(1).is_empty());
        let e = TickPage::read(br#"{"t":[1,2],"p":[1],"v":[1,2]}"#).unwrap_err();
        assert!(e.contains("different lengths") && e.contains("p 1"), "{e}");
        assert!(TickPage::read(b"[").is_err());
    }

    #[test]
    fn the_url_names_the_date_and_encodes_the_symbol() {
        let s = Symbol::parse("BINANCE:BTCUSDT").unwrap();
        assert_eq!(
            tick_url("https://finnhub.io/api/v1/", &s, "2026-12-06", 25_000, 1),
            "https://finnhub.io/api/v1/stock/tick?symbol=BINANCE%3ABTCUSDT&date=2026-12-06&limit=1&skip=25000&format=json"
        );
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(20_428), "2025-12-06");
    }

    #[test]
    fn the_days_read_surround_the_window() {
        let day = 86_400_000_000i64;
        let at = |d: i64, h: i64| Timestamp::from_micros(d * day + h * 3_600_000_000);
        assert_eq!(days_around(at(20_000, 3), at(20_000, 4)), 19_999..=20_001);
        assert_eq!(days_around(at(20_000, 23), at(20_001, 1)), 19_999..=20_002);
    }
}
