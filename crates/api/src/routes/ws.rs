//! `GET /api/v1/ws`: live ticks and candle updates over a WebSocket.
//!
//! The client sends JSON requests:
//! `{"op":"subscribe","channel":"ticks","symbols":["AAPL"]}`,
//! `{"op":"subscribe","channel":"candles","symbols":["AAPL"],"interval":"1m"}`,
//! the same with `"op":"unsubscribe"`, and `{"op":"ping"}`; `"*"` stands
//! for every symbol. Each request is answered (`subscribed`,
//! `unsubscribed`, `pong`, or `error` naming what was wrong — a bad request
//! does not end the connection). Data comes as
//! `{"type":"ticks","seq":N,"count":K,"data":[...]}` (per live batch: one
//! message with every tick for a client subscribed to `"*"`, else one per
//! subscribed symbol present in the batch) and `{"type":"candle","data":{...}}`.
//!
//! A connection holds at most [`WsOptions::max_subscriptions`] symbol
//! subscriptions; a request beyond it is answered with an `error` naming
//! the limit. Client frames and messages are at most 64 KiB, enforced
//! before they are buffered.
//!
//! The server pings every [`WsOptions::ping_every`] and closes a connection
//! that has sent nothing for [`WsOptions::idle_timeout`]. A client too slow
//! to keep up — it missed live batches, or one message took longer than
//! [`WsOptions::send_timeout`] to hand to its socket — gets
//! `{"type":"slow_consumer",...}` and a close frame (1008), and is counted;
//! the pipeline and other clients never wait for it.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use streamforge_model::{Interval, Symbol};
use streamforge_telemetry::events::Refusal;
use streamforge_telemetry::Event;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{timeout, Instant};

use crate::live::{interval_index, CandleInterest, LiveBatch};
use crate::routes::stream::ClientGuard;
use crate::routes::StreamSlots;
use crate::AppState;
use crate::LiveHub;

/// Timers of WebSocket connections.
#[derive(Clone, Copy, Debug)]
pub struct WsOptions {
    pub ping_every: Duration,
    /// A connection silent (no pong, no message) this long is closed.
    pub idle_timeout: Duration,
    /// Longest wait for one message to go to the socket.
    pub send_timeout: Duration,
    /// Most symbols one connection may be subscribed to, over both channels
    /// and every interval (`"*"` counts as one).
    pub max_subscriptions: usize,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            ping_every: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            send_timeout: Duration::from_secs(5),
            max_subscriptions: 1_000,
        }
    }
}

/// Close code for a client that cannot keep up (policy violation).
const CLOSE_SLOW: u16 = 1008;
/// Close code at server shutdown (going away).
const CLOSE_SHUTDOWN: u16 = 1001;
/// Largest request a client may send.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Live ticks and candle updates over a WebSocket
///
/// Send JSON `{"op":"subscribe"|"unsubscribe","channel":"ticks"|"candles",
/// "symbols":["AAPL"|"*"],"interval":"1m"}` or `{"op":"ping"}`; receive
/// `{"type":"ticks","seq":N,"data":[Tick]}`, `{"type":"candle","data":Candle}`
/// and answers (`subscribed`, `unsubscribed`, `pong`, `error`). The server
/// pings every 15 s; a client that cannot keep up gets
/// `{"type":"slow_consumer"}` and close code 1008.
#[utoipa::path(get, path = "/api/v1/ws", tag = "live",
    responses(
        (status = 101, description = "Switching protocols"),
        (status = 400, description = "Not a WebSocket upgrade request"),
        crate::openapi::StreamsFull,
    ))]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Extension(slots): Extension<StreamSlots>,
    ws: WebSocketUpgrade,
) -> Response {
    let slot = match slots.take(&state.metrics, state.limits.max_streams) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    // Both limits hold before anything is buffered: a larger frame or
    // message ends the connection with a close frame (1009).
    ws.max_message_size(MAX_REQUEST_BYTES)
        .max_frame_size(MAX_REQUEST_BYTES)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            serve(socket, state).await
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    op: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    symbols: Vec<String>,
    #[serde(default)]
    interval: Option<String>,
}

/// Symbols of one channel: every symbol, or a set.
#[derive(Default)]
struct Selection {
    all: bool,
    some: HashSet<Symbol>,
}

impl Selection {
    /// Subscriptions it holds (`"*"` is one).
    fn count(&self) -> usize {
        usize::from(self.all) + self.some.len()
    }

    /// What it would hold after `apply(true, symbols)`.
    fn count_after_subscribe(&self, symbols: &Symbols) -> usize {
        match symbols {
            Symbols::All => usize::from(true) + self.some.len(),
            Symbols::Some(s) => self.count() + s.iter().filter(|x| !self.some.contains(*x)).count(),
        }
    }

    fn contains(&self, s: &Symbol) -> bool {
        self.all || self.some.contains(s)
    }

    fn is_empty(&self) -> bool {
        !self.all && self.some.is_empty()
    }

    fn apply(&mut self, subscribe: bool, symbols: &Symbols) {
        match (subscribe, symbols) {
            (true, Symbols::All) => self.all = true,
            (false, Symbols::All) => *self = Selection::default(),
            (true, Symbols::Some(s)) => self.some.extend(s.iter().cloned()),
            (false, Symbols::Some(s)) => s.iter().for_each(|x| {
                self.some.remove(x);
            }),
        }
    }
}

enum Symbols {
    All,
    Some(Vec<Symbol>),
}

#[derive(Default)]
struct Subscriptions {
    ticks: Selection,
    candles: [Selection; Interval::ALL.len()],
    /// Held while the interval has a subscription: it is tracked for us.
    interests: [Option<CandleInterest>; Interval::ALL.len()],
}

/// A subscription change: subscribe (or not), which symbols, and the
/// candle interval (`None` for the ticks channel).
type Change = (bool, Symbols, Option<Interval>);

/// What a request asks (`None` for a ping), or what is wrong with it.
fn parse_request(text: &str) -> Result<(Request, Option<Change>), String> {
    let req: Request = serde_json::from_str(text).map_err(|e| format!("not a request: {e}"))?;
    let subscribe = match req.op.as_str() {
        "ping" => return Ok((req, None)),
        "subscribe" => true,
        "unsubscribe" => false,
        other => {
            return Err(format!(
                "unknown op {other:?}; expected subscribe, unsubscribe or ping"
            ))
        }
    };
    if req.symbols.is_empty() {
        return Err("symbols: give at least one symbol, or \"*\" for all".into());
    }
    let symbols = if req.symbols.iter().any(|s| s == "*") {
        Symbols::All
    } else {
        Symbols::Some(
            req.symbols
                .iter()
                .map(|s| Symbol::parse(s).map_err(|e| format!("symbols: {e}")))
                .collect::<Result<_, _>>()?,
        )
    };
    let interval = match req.channel.as_deref() {
        Some("ticks") => None,
        Some("candles") => Some(
            req.interval
                .as_deref()
                .ok_or("interval: required for the candles channel")?
                .parse::<Interval>()
                .map_err(|e| format!("interval: {e}"))?,
        ),
        other => return Err(format!("channel: expected ticks or candles, got {other:?}")),
    };
    Ok((req, Some((subscribe, symbols, interval))))
}

fn text(value: serde_json::Value) -> Message {
    Message::Text(value.to_string().into())
}

/// The messages of one batch for this client's subscriptions.
fn batch_messages(subs: &Subscriptions, batch: &LiveBatch, out: &mut Vec<Message>) {
    if subs.ticks.all && !batch.ticks.is_empty() {
        out.push(Message::Text(batch.all_ticks_message()));
    } else if !subs.ticks.is_empty() {
        // Shared per-symbol messages: the work per client is one lookup per
        // subscribed symbol, not one per tick.
        let messages = batch.symbol_messages();
        if subs.ticks.some.len() <= messages.len() {
            for symbol in &subs.ticks.some {
                if let Some(m) = messages.get(symbol) {
                    out.push(Message::Text(m.clone()));
                }
            }
        } else {
            for (symbol, m) in messages {
                if subs.ticks.some.contains(symbol) {
                    out.push(Message::Text(m.clone()));
                }
            }
        }
    }
    for candle in &batch.candles {
        if subs.candles[interval_index(candle.interval)].contains(&candle.symbol) {
            out.push(text(json!({"type": "candle", "data": candle})));
        }
    }
}

/// Why a connection ended, for the log.
enum End {
    ClientClosed,
    Slow(String),
    Idle,
    Shutdown,
    SocketError(String),
}

async fn serve(mut socket: WebSocket, state: AppState) {
    let options = state.ws;
    let _guard = ClientGuard::new(state.metrics.clone());
    let mut rx = state.live.subscribe();
    let mut session = Session::new(
        state.live.clone(),
        state.metrics.clone(),
        options.max_subscriptions,
    );
    let mut ping =
        tokio::time::interval_at(Instant::now() + options.ping_every, options.ping_every);
    let mut last_heard = Instant::now();
    let mut out: Vec<Message> = Vec::new();
    let end = loop {
        out.clear();
        tokio::select! {
            _ = state.shutdown.cancelled() => break End::Shutdown,
            incoming = socket.recv() => {
                last_heard = Instant::now();
                match incoming {
                    None | Some(Ok(Message::Close(_))) => break End::ClientClosed,
                    Some(Err(e)) => break End::SocketError(e.to_string()),
                    Some(Ok(Message::Text(t))) => out.push(session.answer(t.as_str())),
                    Some(Ok(Message::Binary(_))) => out.push(text(json!({
                        "type": "error", "error": "binary messages are not understood; send JSON text",
                    }))),
                    Some(Ok(_)) => {} // ping / pong: already counted as heard
                }
            }
            batch = rx.recv() => match batch {
                Ok(batch) => batch_messages(&session.subs, &batch, &mut out),
                Err(RecvError::Lagged(missed)) => {
                    state.metrics.stream_lagged(missed);
                    break End::Slow(format!(
                        "missed {missed} live batches: the connection does not read fast enough"
                    ));
                }
                Err(RecvError::Closed) => break End::Shutdown,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > options.idle_timeout {
                    break End::Idle;
                }
                out.push(Message::Ping(Default::default()));
            }
        }
        let mut failed = None;
        for msg in out.drain(..) {
            match timeout(options.send_timeout, socket.send(msg)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed = Some(End::SocketError(e.to_string()));
                    break;
                }
                Err(_) => {
                    failed = Some(End::Slow(format!(
                        "a message waited more than {:?} for the socket",
                        options.send_timeout
                    )));
                    break;
                }
            }
        }
        if let Some(end) = failed {
            break end;
        }
    };
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.to_string()),
        }))
    };
    match end {
        End::Slow(detail) => {
            crate::events::SlowClientDisconnected { detail: &detail }.emit(&state.metrics);
            // Best effort: a stuck client may not take even this.
            let tell = async {
                socket
                    .send(text(json!({"type": "slow_consumer", "detail": detail})))
                    .await?;
                socket.send(close(CLOSE_SLOW, "slow consumer")).await
            };
            let _ = timeout(options.send_timeout, tell).await;
        }
        End::Idle => {
            tracing::info!("closing a WebSocket client that stopped answering pings");
            let _ = timeout(
                options.send_timeout,
                socket.send(close(CLOSE_SLOW, "no pong")),
            )
            .await;
        }
        End::Shutdown => {
            let _ = timeout(
                options.send_timeout,
                socket.send(close(CLOSE_SHUTDOWN, "server shutting down")),
            )
            .await;
        }
        End::SocketError(e) => tracing::debug!(error = %e, "WebSocket connection failed"),
        End::ClientClosed => {}
    }
}

impl Subscriptions {
    /// Every subscription held, over both channels and all intervals.
    fn count(&self) -> usize {
        self.ticks.count() + self.candles.iter().map(Selection::count).sum::<usize>()
    }
}

/// One connection's subscriptions, changed by its requests. Public so
/// the request handling can be driven without a socket (the fuzz target).
pub struct Session {
    subs: Subscriptions,
    hub: LiveHub,
    metrics: streamforge_telemetry::Metrics,
    max_subscriptions: usize,
}

impl Session {
    pub fn new(
        hub: LiveHub,
        metrics: streamforge_telemetry::Metrics,
        max_subscriptions: usize,
    ) -> Self {
        Session {
            subs: Subscriptions::default(),
            hub,
            metrics,
            max_subscriptions,
        }
    }

    /// Subscriptions held now; never more than the limit.
    pub fn subscriptions(&self) -> usize {
        self.subs.count()
    }

    /// Applies one client request; the answer, as JSON text.
    pub fn handle(&mut self, request: &str) -> String {
        match self.answer(request) {
            Message::Text(t) => t.to_string(),
            _ => String::new(),
        }
    }

    /// Applies one request and says how it went.
    fn answer(&mut self, text_in: &str) -> Message {
        let subs = &mut self.subs;
        match parse_request(text_in) {
            Err(e) => text(json!({"type": "error", "error": e, "request": truncate(text_in)})),
            Ok((_, None)) => text(json!({"type": "pong"})),
            Ok((req, Some((subscribe, symbols, interval)))) => {
                let selection = match interval {
                    None => &subs.ticks,
                    Some(i) => &subs.candles[interval_index(i)],
                };
                let after =
                    subs.count() - selection.count() + selection.count_after_subscribe(&symbols);
                if subscribe && after > self.max_subscriptions {
                    crate::events::LimitReached {
                        limit: Refusal::MaxSubscriptions,
                    }
                    .emit(&self.metrics);
                    return text(json!({
                        "type": "error",
                        "error": format!(
                            "symbols: a connection may hold at most {} subscriptions (api.ws_max_subscriptions); it holds {}, unsubscribe first",
                            self.max_subscriptions,
                            subs.count()
                        ),
                        "channel": req.channel,
                        "request": truncate(text_in),
                    }));
                }
                match interval {
                    None => subs.ticks.apply(subscribe, &symbols),
                    Some(i) => {
                        let at = interval_index(i);
                        subs.candles[at].apply(subscribe, &symbols);
                        let wanted = !subs.candles[at].is_empty();
                        match (&subs.interests[at], wanted) {
                            (None, true) => subs.interests[at] = Some(self.hub.want_candles(i)),
                            (Some(_), false) => subs.interests[at] = None,
                            _ => {}
                        }
                    }
                }
                text(json!({
                    "type": if subscribe { "subscribed" } else { "unsubscribed" },
                    "channel": req.channel,
                    "symbols": req.symbols,
                    "interval": req.interval,
                }))
            }
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_type(s: &mut Session, request: &str) -> serde_json::Value {
        serde_json::from_str(&s.handle(request)).unwrap()
    }

    #[test]
    fn subscriptions_are_capped_over_channels_and_intervals() {
        let mut s = Session::new(LiveHub::default(), streamforge_telemetry::Metrics::new(), 3);
        let sub = |channel: &str, symbols: &str, interval: &str| {
            format!(r#"{{"op":"subscribe","channel":"{channel}","symbols":{symbols}{interval}}}"#)
        };
        let a = answer_type(&mut s, &sub("ticks", r#"["AAPL","MSFT"]"#, ""));
        assert_eq!(a["type"], "subscribed");
        // Re-subscribing what is held costs nothing.
        let a = answer_type(&mut s, &sub("ticks", r#"["AAPL"]"#, ""));
        assert_eq!(a["type"], "subscribed");
        let a = answer_type(
            &mut s,
            &sub("candles", r#"["AAPL","MSFT"]"#, r#","interval":"1m""#),
        );
        assert_eq!(a["type"], "error", "{a}");
        assert!(a["error"].as_str().unwrap().contains("at most 3"), "{a}");
        assert_eq!(s.subscriptions(), 2, "a refused request changes nothing");
        let a = answer_type(&mut s, &sub("candles", r#"["*"]"#, r#","interval":"5m""#));
        assert_eq!(a["type"], "subscribed", "\"*\" is one subscription");
        assert_eq!(s.subscriptions(), 3);
        let a = answer_type(
            &mut s,
            r#"{"op":"unsubscribe","channel":"ticks","symbols":["MSFT"]}"#,
        );
        assert_eq!(a["type"], "unsubscribed");
        let a = answer_type(&mut s, &sub("ticks", r#"["IBM"]"#, ""));
        assert_eq!(a["type"], "subscribed", "room again after an unsubscribe");
        assert_eq!(s.subscriptions(), 3);
    }
}
