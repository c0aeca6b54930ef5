//! `GET /api/v1/stream`: live ticks and candle updates as Server-Sent Events.
//!
//! Each tick is an event `tick` whose data is the tick's JSON; each candle
//! update (with `candles=1m,...`) an event `candle`. Event ids are
//! `<epoch>-<batch>:<index>` (the epoch names the server process); a client reconnecting with `Last-Event-ID` gets what
//! it missed if that is still within the hub's resume window, else an event
//! `reset` saying data was missed, then live data. A client that falls too
//! far behind receives an event `lagged` saying how many batches it missed,
//! then continues with current data. Streams end at shutdown. At most
//! `api.max_streams` streams (SSE and WebSocket together) are open at once;
//! a client that does not read is closed by the server's write timeout.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use futures::{Stream, StreamExt};
use streamforge_model::{Interval, Symbol};
use streamforge_telemetry::Metrics;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::OwnedSemaphorePermit;

use crate::live::{CandleInterest, LiveBatch, Resume};
use crate::params::{Params, RawQuery};
use crate::routes::StreamSlots;
use crate::{ApiError, AppState};

/// Counts the client while its stream lives.
pub(crate) struct ClientGuard(pub(crate) Metrics);

impl ClientGuard {
    pub(crate) fn new(metrics: Metrics) -> Self {
        metrics.stream_client(1);
        ClientGuard(metrics)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.stream_client(-1);
    }
}

/// What one SSE client asked for.
struct Wants {
    /// Symbols; `None` for all.
    symbols: Option<HashSet<Symbol>>,
    candles: Vec<Interval>,
}

impl Wants {
    fn symbol(&self, s: &Symbol) -> bool {
        self.symbols.as_ref().is_none_or(|f| f.contains(s))
    }

    /// The events of `batch` after item `after` (ticks first, then candles).
    fn events(
        &self,
        epoch: u64,
        batch: &LiveBatch,
        after: Option<usize>,
        out: &mut VecDeque<Event>,
    ) {
        let first = after.map_or(0, |i| i.saturating_add(1));
        let ticks = batch.ticks.len();
        let json = batch.tick_json();
        for (i, tick) in batch.ticks.iter().enumerate().skip(first) {
            if self.symbol(tick.symbol()) {
                out.push_back(
                    Event::default()
                        .event("tick")
                        .id(format!("{epoch:x}-{}:{i}", batch.seq))
                        .data(&json[i]),
                );
            }
        }
        for (j, candle) in batch.candles.iter().enumerate() {
            let i = ticks + j;
            if i < first || !self.candles.contains(&candle.interval) || !self.symbol(&candle.symbol)
            {
                continue;
            }
            if let Ok(event) = Event::default()
                .event("candle")
                .id(format!("{epoch:x}-{}:{i}", batch.seq))
                .json_data(candle)
            {
                out.push_back(event);
            }
        }
    }
}

struct Client {
    rx: broadcast::Receiver<Arc<LiveBatch>>,
    wants: Wants,
    /// Batches to send before live ones (a resume).
    replay: VecDeque<Arc<LiveBatch>>,
    /// Resume point inside the first replayed batch.
    resume_after: Option<(u64, usize)>,
    /// The newest batch sent; live batches up to it were replayed.
    sent_through: u64,
    pending: VecDeque<Event>,
    guard: ClientGuard,
    /// Keeps the candle intervals asked for tracked while the stream lives.
    _interests: Vec<CandleInterest>,
    /// This stream's place under `api.max_streams`.
    _slot: OwnedSemaphorePermit,
}

/// `<epoch>-<batch>:<index>` from a `Last-Event-ID` header.
fn last_event_id(headers: &HeaderMap) -> Result<Option<(u64, u64, usize)>, ApiError> {
    headers
        .get("last-event-id")
        .map(parse_last_event_id)
        .transpose()
}

/// `(epoch, batch, index)` of a `Last-Event-ID` value; the error names the header.
pub fn parse_last_event_id(v: &axum::http::HeaderValue) -> Result<(u64, u64, usize), ApiError> {
    let bad = || {
        ApiError::bad(
            "Last-Event-ID",
            format!("expected <epoch>-<batch>:<index> as sent in an event id, got {v:?}"),
        )
    };
    let (epoch, rest) = v
        .to_str()
        .map_err(|_| bad())?
        .split_once('-')
        .ok_or_else(bad)?;
    let (seq, i) = rest.split_once(':').ok_or_else(bad)?;
    // Parsed as the types they were sent as: a larger number is no id of ours.
    let index: u32 = i.parse().map_err(|_| bad())?;
    Ok((
        u64::from_str_radix(epoch, 16).map_err(|_| bad())?,
        seq.parse().map_err(|_| bad())?,
        index as usize,
    ))
}

/// Comma-separated intervals of the `candles` parameter.
fn intervals(params: &Params) -> Result<Vec<Interval>, ApiError> {
    params.get("candles").map_or(Ok(Vec::new()), |v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|e: streamforge_model::IntervalError| {
                    ApiError::bad("candles", e.to_string())
                })
            })
            .collect()
    })
}

/// Live ticks and candle updates as Server-Sent Events
///
/// Each tick is an event `tick` whose data is the tick's JSON; with
/// `candles=1m,...` each candle update is an event `candle`. Event ids are
/// `<epoch>-<batch>:<index>` (the epoch names the server process);
/// reconnecting with `Last-Event-ID` resumes within the last 60 s / 4096
/// batches of the same process, else an event `reset` says data was
/// missed. A client that falls behind gets an event `lagged`.
#[utoipa::path(get, path = "/api/v1/stream", tag = "live",
    params(
        ("symbols" = Option<String>, Query, description = "Comma-separated symbols; all when omitted.",
            example = "AAPL,MSFT"),
        ("candles" = Option<String>, Query,
            description = "Comma-separated intervals (1s,1m,5m,15m,1h,1d) whose candle updates to stream.",
            example = "1m"),
        ("Last-Event-ID" = Option<String>, Header,
            description = "The id of the last event received (<epoch>-<batch>:<index>), to resume after it."),
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        crate::openapi::BadParameter,
        crate::openapi::StreamsFull,
    ))]
pub(crate) async fn sse(
    State(state): State<AppState>,
    Extension(slots): Extension<StreamSlots>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    static QUERY: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(crate::openapi::query_names::<__path_sse>);
    let params = Params::new(raw, &QUERY)?;
    let slot = slots.take(&state.metrics, state.limits.max_streams)?;
    let wants = Wants {
        symbols: params
            .symbols("symbols")?
            .map(|v| v.into_iter().collect::<HashSet<_>>()),
        candles: intervals(&params)?,
    };
    let resume = last_event_id(&headers)?;
    // Subscribe before looking back, so nothing falls between the two.
    let rx = state.live.subscribe();
    let interests = wants
        .candles
        .iter()
        .map(|i| state.live.want_candles(*i))
        .collect();
    let mut client = Client {
        rx,
        wants,
        replay: VecDeque::new(),
        resume_after: None,
        sent_through: 0,
        pending: VecDeque::new(),
        guard: ClientGuard::new(state.metrics.clone()),
        _interests: interests,
        _slot: slot,
    };
    client
        .pending
        .push_back(Event::default().comment("connected"));
    let epoch = state.live.epoch();
    if let Some((their_epoch, seq, index)) = resume {
        match state.live.resume(their_epoch, seq.saturating_sub(1)) {
            Resume::Replay(batches) => {
                client.replay = batches.into();
                client.resume_after = Some((seq, index));
            }
            Resume::TooOld => client.pending.push_back(
                Event::default().event("reset").data(format!(
                    r#"{{"reason":"Last-Event-ID {their_epoch:x}-{seq}:{index} is outside the resume window or from another server; events were missed"}}"#
                )),
            ),
        }
    }
    let events = futures::stream::unfold(client, move |mut c| async move {
        loop {
            if let Some(event) = c.pending.pop_front() {
                return Some((Ok(event), c));
            }
            if let Some(batch) = c.replay.pop_front() {
                let after = c
                    .resume_after
                    .take()
                    .filter(|(seq, _)| *seq == batch.seq)
                    .map(|(_, i)| i);
                c.wants.events(epoch, &batch, after, &mut c.pending);
                c.sent_through = batch.seq;
                continue;
            }
            match c.rx.recv().await {
                Ok(batch) if batch.seq <= c.sent_through => {}
                Ok(batch) => {
                    c.wants.events(epoch, &batch, None, &mut c.pending);
                    c.sent_through = batch.seq;
                }
                Err(RecvError::Lagged(missed)) => {
                    c.guard.0.stream_lagged(missed);
                    c.pending.push_back(
                        Event::default()
                            .event("lagged")
                            .data(format!(r#"{{"missed_batches":{missed}}}"#)),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let events = events.take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
