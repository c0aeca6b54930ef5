//! Healing gaps from a venue's REST trade history.
//!
//! A connection hands over each gap whose missing trade ids are known: a
//! jump in the ids, or an outage once the first trade after it arrived.
//! The healer takes them one at a time: the gap goes out as `healing`,
//! the history is read page by page (at most one request per
//! `history_interval`; a 429 or 418 waits the `Retry-After` the venue
//! asks for), the missing trades go out as ticks with `origin = backfill`
//! — through the same validation, bus and store as live ones, and a trade
//! also seen live is one row, by its id — and the gap goes out `healed`,
//! or `unrecoverable` with the reason (the venue refused the history,
//! trades no longer in it, a gap too large).

use std::collections::HashSet;
use std::marker::PhantomData;
use std::time::Duration;

use streamforge_model::{Gap, GapStatus, Origin, TickRules, Timestamp};
use streamforge_telemetry::{Event, Metrics};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{GapHealEnded, HistoryFailed, HistoryRateLimited};
use super::http::HttpClient;
use super::{decimal, native, TickMaker, Venue, VenueConfig};
use crate::{ProviderError, ProviderFrame, Rejected};

/// Longest wait for one history request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest history page taken (a page of 1000 trades is ~150 KB).
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Tries of a request that fails (network, 5xx) before the gap is given up.
const TRIES: u32 = 5;
/// 429s in a row for one gap before it is given up.
const MAX_RATE_LIMITED: u32 = 30;
/// Longest `Retry-After` obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Gaps waiting to heal; more are given up (`unrecoverable`) at once.
pub(crate) const QUEUE: usize = 1_024;

/// An HTTP client for a trade history: [`REQUEST_TIMEOUT`], [`MAX_BODY`].
pub(crate) fn history_client() -> Result<HttpClient, String> {
    HttpClient::new(REQUEST_TIMEOUT, MAX_BODY).map_err(|e| format!("history client: {e}"))
}

/// Why reading the history stopped.
pub(crate) enum Stop {
    /// Shutdown: the gap stays `healing`.
    Cancelled,
    /// The gap cannot heal: why.
    Refused(String),
}

/// The healer of venue `V`'s gaps.
pub(super) struct Healer<V: Venue> {
    pub config: VenueConfig,
    pub base: String,
    pub rules: TickRules,
    pub metrics: Metrics,
    pub client: HttpClient,
    pub venue: PhantomData<V>,
}

impl<V: Venue> Healer<V> {
    /// An HTTP client for the history.
    pub fn client() -> Result<HttpClient, String> {
        history_client()
    }

    /// Heals the gaps of `requests` until they end or shutdown.
    pub async fn run(
        self,
        mut requests: mpsc::Receiver<Gap>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        let mut ticks = TickMaker::of::<V>();
        let mut last_request: Option<Instant> = None;
        loop {
            let gap = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                g = requests.recv() => match g {
                    Some(g) => g,
                    None => return Ok(()),
                },
            };
            self.heal(gap, &mut ticks, &mut last_request, &out, &cancel)
                .await?;
        }
    }

    async fn send(
        out: &mpsc::Sender<ProviderFrame>,
        frame: ProviderFrame,
    ) -> Result<(), ProviderError> {
        crate::send_frame(out, V::ID, frame).await
    }

    async fn send_gap(out: &mpsc::Sender<ProviderFrame>, gap: &Gap) -> Result<(), ProviderError> {
        let frame = ProviderFrame {
            provider: V::ID,
            gaps: vec![gap.clone()],
            ..ProviderFrame::default()
        };
        Self::send(out, frame).await
    }

    async fn finish(
        &self,
        out: &mpsc::Sender<ProviderFrame>,
        mut gap: Gap,
        status: GapStatus,
        backfilled: u64,
        detail: String,
    ) -> Result<(), ProviderError> {
        gap.healing.status = status;
        gap.healing.backfilled = backfilled;
        gap.healing.detail = detail;
        GapHealEnded {
            provider: V::ID,
            gap: &gap,
        }
        .emit(&self.metrics);
        Self::send_gap(out, &gap).await
    }

    async fn heal(
        &self,
        mut gap: Gap,
        ticks: &mut TickMaker,
        last_request: &mut Option<Instant>,
        out: &mpsc::Sender<ProviderFrame>,
        cancel: &CancellationToken,
    ) -> Result<(), ProviderError> {
        let (Some(first), Some(last)) = (gap.healing.first_id, gap.healing.last_id) else {
            return Ok(());
        };
        if last < first {
            return self
                .finish(out, gap, GapStatus::Healed, 0, String::new())
                .await;
        }
        let expected = last - first + 1;
        if !self.config.history {
            return Ok(());
        }
        if expected > self.config.history_max_trades {
            let detail = format!(
                "{expected} trades missed, more than {}.history_max_trades ({})",
                V::ID,
                self.config.history_max_trades
            );
            return self
                .finish(out, gap, GapStatus::Unrecoverable, 0, detail)
                .await;
        }
        gap.healing.status = GapStatus::Healing;
        Self::send_gap(out, &gap).await?;
        let native = native(&gap.symbol).to_string();
        let mut found: HashSet<u64> = HashSet::new();
        let mut cursor: Option<u64> = None;
        // Enough pages for every id, and a few for pages the venue cuts short.
        let max_pages = expected / 100 + 10;
        let mut stopped: Option<String> = None;
        for _ in 0..max_pages {
            if let Some(at) = *last_request {
                let next = at + self.config.history_interval;
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(next) => {}
                }
            }
            let url = V::history_url(&self.base, &native, first, last, cursor);
            let page = PageRequest {
                provider: V::ID,
                client: &self.client,
                url: &url,
                headers: &[],
                backoff_min: self.config.backoff_min,
                backoff_max: self.config.backoff_max,
                metrics: &self.metrics,
            };
            let body = match fetch_page(&page, last_request, cancel).await {
                Ok(b) => b,
                Err(Stop::Cancelled) => return Ok(()),
                Err(Stop::Refused(why)) => {
                    stopped = Some(why);
                    break;
                }
            };
            let rows = match V::history_rows(&body) {
                Ok(r) => r,
                Err(e) => {
                    stopped = Some(format!("{} history page does not read: {e}", V::ID));
                    break;
                }
            };
            if rows.is_empty() {
                break;
            }
            let (lowest, highest) = rows
                .iter()
                .fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r.id), hi.max(r.id)));
            let now = Timestamp::now();
            let mut frame = ProviderFrame {
                provider: V::ID,
                ..ProviderFrame::default()
            };
            for r in rows {
                if !(first..=last).contains(&r.id) || found.contains(&r.id) {
                    continue;
                }
                let tick = match (decimal::parse(&r.price), decimal::parse(&r.size)) {
                    (Ok(price), Ok(size)) => ticks
                        .tick(
                            &native,
                            r.time,
                            price,
                            size,
                            r.id,
                            Origin::Backfill,
                            &self.rules,
                            now,
                            now,
                        )
                        .map_err(|e| (e.reason(), e.to_string())),
                    (Err(e), _) => Err(("invalid_price", format!("price: {e}"))),
                    (_, Err(e)) => Err(("invalid_size", format!("size: {e}"))),
                };
                match tick {
                    Ok(t) => {
                        found.insert(r.id);
                        frame.ticks.push(t);
                    }
                    Err((reason, error)) => frame.rejects.push(
                        Rejected::new(
                            format!(
                                r#"{{"provider":"{}","symbol":"{}","id":{},"price":{:?},"size":{:?},"time":"{}"}}"#,
                                V::ID, gap.symbol, r.id, r.price, r.size, r.time
                            )
                            .into_bytes(),
                            reason,
                            format!("history trade {} of {}: {error}", r.id, gap.symbol),
                        )
                        .of(gap.symbol.clone(), r.time),
                    ),
                }
            }
            self.metrics.provider_backfilled(V::ID, frame.ticks.len());
            Self::send(out, frame).await?;
            let next = if V::HISTORY_ASCENDING {
                (highest < last).then(|| highest + 1)
            } else {
                (lowest > first).then_some(lowest)
            };
            match next {
                // A cursor that does not move would ask the same page again.
                Some(n) if Some(n) != cursor => cursor = Some(n),
                _ => break,
            }
        }
        let got = found.len() as u64;
        if got == expected {
            return self
                .finish(out, gap, GapStatus::Healed, got, String::new())
                .await;
        }
        let detail = match stopped {
            Some(why) => format!("{why}; {got} of {expected} missed trades taken"),
            None => format!(
                "{} of {expected} missed trades are not in {}'s history",
                expected - got,
                V::ID
            ),
        };
        self.finish(out, gap, GapStatus::Unrecoverable, got, detail)
            .await
    }
}

/// Where and how one history page is asked for.
pub(crate) struct PageRequest<'a> {
    pub provider: &'static str,
    pub client: &'a HttpClient,
    pub url: &'a str,
    /// More request headers (an API key).
    pub headers: &'a [(&'a str, &'a str)],
    /// Pauses between failed tries.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub metrics: &'a Metrics,
}

/// One page: waits out rate limits (429, 418: the `Retry-After` asked
/// for), retries failures (network, 5xx) a few times with backoff; a
/// refusal (another 4xx) ends it with the reason.
pub(crate) async fn fetch_page(
    page: &PageRequest<'_>,
    last_request: &mut Option<Instant>,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, Stop> {
    let provider = page.provider;
    let mut failures = 0u32;
    let mut limited = 0u32;
    let mut backoff = page.backoff_min;
    loop {
        *last_request = Some(Instant::now());
        let sent = tokio::select! {
            _ = cancel.cancelled() => return Err(Stop::Cancelled),
            r = page.client.get_with(page.url, page.headers) => r,
        };
        let pause = match sent {
            Ok(a) if (200..300).contains(&a.status) => return Ok(a.body),
            Ok(a) if matches!(a.status, 429 | 418) => {
                limited += 1;
                let wait = a
                    .retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .min(MAX_RETRY_AFTER);
                HistoryRateLimited {
                    provider,
                    status: a.status,
                    wait,
                }
                .emit(page.metrics);
                if limited > MAX_RATE_LIMITED {
                    return Err(Stop::Refused(format!(
                        "{provider} kept answering HTTP {} (rate limit)",
                        a.status
                    )));
                }
                wait
            }
            Ok(a) if (400..500).contains(&a.status) => {
                let hint = if matches!(a.status, 401 | 403) {
                    " (the trade history needs an API key here, or a paid plan)"
                } else {
                    ""
                };
                let detail = format!(
                    "{provider} refused the history request with HTTP {}{hint}: {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                );
                HistoryFailed {
                    provider,
                    error: &detail,
                }
                .emit(page.metrics);
                return Err(Stop::Refused(detail));
            }
            other => {
                failures += 1;
                let e = match other {
                    Ok(a) => format!("{provider} history answered HTTP {}", a.status),
                    Err(e) => format!("{provider} history: {e}"),
                };
                HistoryFailed {
                    provider,
                    error: &e,
                }
                .emit(page.metrics);
                if failures >= TRIES {
                    return Err(Stop::Refused(e));
                }
                super::next_backoff(&mut backoff, page.backoff_max)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return Err(Stop::Cancelled),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
