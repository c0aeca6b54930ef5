//! A Finnhub trade WebSocket on loopback, driven by the synthetic market, so
//! the provider can be tested (and demonstrated) without internet.
//!
//! It checks the token (HTTP 401 on the upgrade otherwise), caps symbols per
//! connection with Finnhub's error text, sends batched trade frames of the
//! subscribed symbols and `{"type":"ping"}` keep-alives, and injects faults
//! on demand: dropped connections, silence with the TCP connection open, no
//! pings, malformed frames, duplicated frames, trades out of order. It logs every trade it sent,
//! so tests can compare with what was stored.
//!
//! Its market goes on when a client is not listening: a silent connection
//! keeps making trades it does not send, and a symbol subscribed again
//! gets the trades of the time since its last one first (not sent
//! either). Every trade made is on its tape ([`Simulator::made`]), which
//! the same port serves as Finnhub's REST trade history
//! (`GET /api/v1/stock/tick`) to a paid plan ([`HistoryPlan::Paid`]); a
//! free plan gets Finnhub's HTTP 403.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::Deserialize;
use streamforge_model::{Symbol, Timestamp};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::{http, Message as WsMessage};
use tokio_util::sync::CancellationToken;

use crate::synthetic::Market;

/// Settings of the simulator.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// Address to listen on (port 0 picks a free one).
    pub addr: SocketAddr,
    /// The token accepted.
    pub token: String,
    /// More tokens accepted. Each token may hold one open connection at a
    /// time, as Finnhub documents; a second gets HTTP 429.
    pub more_tokens: Vec<String>,
    /// The instruments it knows; subscribing to another gets Finnhub's
    /// "Invalid symbol" error. Empty: any well-formed symbol.
    pub symbols: Vec<String>,
    /// Trades per second per connection, across its subscribed symbols.
    pub rate: f64,
    pub seed: Option<u64>,
    /// Finnhub's free tier: 50.
    pub max_symbols: usize,
    /// How often a trade frame is sent.
    pub slice: Duration,
    pub ping_every: Duration,
    /// Faults.
    pub drop_every: Option<Duration>,
    pub silent_after: Option<Duration>,
    pub no_pings: bool,
    pub malformed_every: Option<u64>,
    pub duplicate_every: Option<u64>,
    /// Every Nth frame carries its trades newest first.
    pub out_of_order_every: Option<u64>,
    /// Keep a log of every trade sent (tests).
    pub record: bool,
    /// Raw messages the first connection sends, one per slice, in place of
    /// its 4th, 5th, … trade frames: bad input with live traffic around it.
    pub inject: Vec<String>,
    /// What the REST trade history answers.
    pub history: HistoryPlan,
}

/// The plan the simulated key is on, as far as the trade history goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HistoryPlan {
    /// `/stock/tick` answers HTTP 403, as for a free key.
    #[default]
    Free,
    /// `/stock/tick` serves the tape.
    Paid,
}

/// Most trades kept on the tape per symbol (the oldest go first).
const TAPE_KEEP: usize = 500_000;

/// Every trade the market made, per symbol as subscribed, in time order.
type Tape = HashMap<String, VecDeque<SentTrade>>;

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
            token: "sandbox".into(),
            more_tokens: Vec::new(),
            symbols: Vec::new(),
            rate: 200.0,
            seed: None,
            max_symbols: 50,
            slice: Duration::from_millis(100),
            ping_every: Duration::from_secs(60),
            drop_every: None,
            silent_after: None,
            no_pings: false,
            malformed_every: None,
            duplicate_every: None,
            out_of_order_every: None,
            record: false,
            inject: Vec::new(),
            history: HistoryPlan::Free,
        }
    }
}

/// One trade as the simulator sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct SentTrade {
    pub connection: u64,
    pub symbol: String,
    pub price: f64,
    pub ts_ms: i64,
    pub volume: f64,
    pub conditions: Vec<String>,
}

/// What the simulator did, for tests.
#[derive(Debug, Default)]
pub struct SimulatorLog {
    pub sent: Vec<SentTrade>,
    /// Connections accepted (after the token check).
    pub connections: u64,
    /// Upgrades refused for a bad token.
    pub unauthorized: u64,
    /// Connections refused because their token already had one open.
    pub second_connections: u64,
    /// Tokens with a connection open now (the values, for the check).
    pub open_tokens: Vec<String>,
    /// Subscriptions received, in order: (connection, symbol).
    pub subscriptions: Vec<(u64, String)>,
    pub malformed_sent: u64,
    pub duplicate_frames_sent: u64,
    /// Time of the last message sent on each connection that went silent.
    pub went_silent: Vec<(u64, Timestamp)>,
    /// REST history requests answered (any status).
    pub rest_requests: u64,
}

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<SimulatorLog>>,
    tape: Arc<Mutex<Tape>>,
    stop: CancellationToken,
    /// Ends the WebSocket feed (the REST API stays).
    feed: CancellationToken,
    /// The accept loop and every connection's task.
    tasks: tokio_util::task::TaskTracker,
    /// The WebSocket connections' tasks.
    feeds: tokio_util::task::TaskTracker,
}

impl Simulator {
    /// Binds and serves in the background until [`Simulator::stop`].
    pub async fn start(config: SimulatorConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(SimulatorLog::default()));
        let stop = CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let tape: Arc<Mutex<Tape>> = Arc::default();
        let feed = stop.child_token();
        let feeds = tokio_util::task::TaskTracker::new();
        let sim = Simulator {
            feed: feed.clone(),
            feeds: feeds.clone(),
            addr,
            log: log.clone(),
            tape: tape.clone(),
            stop: stop.clone(),
            tasks: tasks.clone(),
        };
        let config = Arc::new(config);
        let connections = tasks.clone();
        tasks.spawn(async move {
            let mut next_id = 0u64;
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "simulator accept failed");
                            continue;
                        }
                    },
                };
                let (config, log, tape) = (config.clone(), log.clone(), tape.clone());
                if is_rest(&stream).await {
                    connections.spawn(async move { answer(stream, &config, &log, &tape).await });
                    continue;
                }
                if feed.is_cancelled() {
                    continue;
                }
                next_id += 1;
                let id = next_id;
                let feed = feed.clone();
                feeds.spawn(async move {
                    serve(stream, id, config, log, tape, feed).await;
                });
            }
        });
        Ok(sim)
    }

    /// The URL the provider connects to (without the token).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The base URL of its REST API (the same port).
    pub fn rest_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Every trade the market made (sent or not), per symbol in time order.
    pub fn made(&self) -> Vec<SentTrade> {
        self.tape
            .lock()
            .values()
            .flat_map(|t| t.iter().cloned())
            .collect()
    }

    /// Ends the WebSocket feed (open connections close, new ones are
    /// refused) and returns once every connection has ended: the tape is
    /// final. The REST history still answers.
    pub async fn stop_feed(&self) {
        self.feed.cancel();
        self.feeds.close();
        self.feeds.wait().await;
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// [`Simulator::stop`], and returns once every connection has ended:
    /// the log then holds exactly what was sent, and nothing more comes.
    pub async fn stop_and_wait(&self) {
        self.stop.cancel();
        self.feeds.close();
        self.feeds.wait().await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    symbol: Option<String>,
}

fn token_of(req: &Request) -> Option<String> {
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
    })
}

// The handshake callback's error type is tungstenite's (an HTTP response).
#[allow(clippy::result_large_err)]
async fn serve(
    stream: tokio::net::TcpStream,
    id: u64,
    config: Arc<SimulatorConfig>,
    log: Arc<Mutex<SimulatorLog>>,
    tape: Arc<Mutex<Tape>>,
    stop: CancellationToken,
) {
    let accepted: Vec<String> = std::iter::once(config.token.clone())
        .chain(config.more_tokens.iter().cloned())
        .collect();
    let refused = log.clone();
    let taken: Arc<Mutex<Option<String>>> = Arc::default();
    let holds = taken.clone();
    let check = move |req: &Request, res: Response| -> Result<Response, ErrorResponse> {
        let token = token_of(req).unwrap_or_default();
        let mut log = refused.lock();
        if !accepted.contains(&token) {
            log.unauthorized += 1;
            let mut e = http::Response::new(Some("Unauthorized".to_string()));
            *e.status_mut() = http::StatusCode::UNAUTHORIZED;
            return Err(e);
        }
        if log.open_tokens.contains(&token) {
            log.second_connections += 1;
            let mut e = http::Response::new(Some(
                "Too many connections: one connection per API key".to_string(),
            ));
            *e.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
            return Err(e);
        }
        log.open_tokens.push(token.clone());
        *holds.lock() = Some(token);
        Ok(res)
    };
    /// Gives the token's connection back when the connection ends.
    struct Held(Arc<Mutex<SimulatorLog>>, Arc<Mutex<Option<String>>>);
    impl Drop for Held {
        fn drop(&mut self) {
            if let Some(token) = self.1.lock().take() {
                self.0.lock().open_tokens.retain(|t| *t != token);
            }
        }
    }
    let _held = Held(log.clone(), taken);
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    log.lock().connections += 1;
    let (mut tx, mut rx) = ws.split();
    let mut subscribed: Vec<Symbol> = Vec::new();
    let mut market: Option<Market> = None;
    let mut slice = tokio::time::interval(config.slice);
    let mut ping = tokio::time::interval(config.ping_every);
    ping.tick().await;
    let started = tokio::time::Instant::now();
    let drop_at = config.drop_every.map(|d| started + d);
    let silent_at = config.silent_after.map(|d| started + d);
    let mut frames: u64 = 0;
    let mut last_frame: Option<(String, Vec<SentTrade>)> = None;
    let mut last_sent = Timestamp::now();
    let mut silent = false;
    // Trades sent on this connection start after its subscriptions.
    let mut live_from = Timestamp::now();
    let far = started + Duration::from_secs(86_400 * 365);
    loop {
        if !silent && silent_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
            silent = true;
            log.lock().went_silent.push((id, last_sent));
        }
        let out: Option<String> = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(drop_at.unwrap_or(far)) => {
                // Abrupt: no close frame, the TCP connection just ends.
                return;
            }
            m = rx.next() => match m {
                Some(Ok(WsMessage::Text(t))) => {
                    let Ok(msg) = serde_json::from_str::<ClientMessage>(&t) else { continue };
                    let symbol = msg.symbol.unwrap_or_default();
                    match msg.kind.as_str() {
                        "subscribe" => {
                            log.lock().subscriptions.push((id, symbol.clone()));
                            let known = config.symbols.is_empty()
                                || config.symbols.iter().any(|k| k.eq_ignore_ascii_case(&symbol));
                            match Symbol::parse(&symbol) {
                                Err(_) => Some(format!(r#"{{"type":"error","msg":"Invalid symbol {symbol}"}}"#)),
                                Ok(_) if !known => Some(format!(r#"{{"type":"error","msg":"Invalid symbol {symbol}"}}"#)),
                                Ok(_) if subscribed.len() >= config.max_symbols => {
                                    Some(r#"{"type":"error","msg":"Subscribing to too many symbols"}"#.to_string())
                                }
                                Ok(s) => {
                                    if !subscribed.contains(&s) {
                                        live_from = catch_up(&s, &config, id, subscribed.len() + 1, &tape);
                                        subscribed.push(s);
                                        market = Some(Market::new(&subscribed, config.seed.map(|x| x ^ id), Arc::from("finnhub")));
                                    }
                                    None
                                }
                            }
                        }
                        "unsubscribe" => {
                            if let Ok(s) = Symbol::parse(&symbol) {
                                subscribed.retain(|x| *x != s);
                                market = (!subscribed.is_empty()).then(|| Market::new(&subscribed, config.seed.map(|x| x ^ id), Arc::from("finnhub")));
                            }
                            None
                        }
                        _ => None,
                    }
                }
                Some(Ok(_)) => None,
                Some(Err(_)) | None => return,
            },
            _ = ping.tick() => (!config.no_pings && !silent).then(|| r#"{"type":"ping"}"#.to_string()),
            _ = slice.tick() => {
                if silent {
                    // The market goes on; nothing is sent.
                    if let Some(m) = market.as_mut() {
                        make(m, &config, id, &mut live_from, &tape);
                    }
                    None
                } else if let Some(m) = market.as_mut() {
                    frames += 1;
                    let injected = (id == 1 && frames > 3)
                        .then(|| config.inject.get((frames - 4) as usize))
                        .flatten();
                    match injected {
                        Some(raw) => Some(raw.clone()),
                        None => trade_frame(m, &config, id, frames, &mut live_from, &mut last_frame, &log, &tape),
                    }
                } else {
                    None
                }
            }
        };
        if let Some(text) = out {
            if tx.send(WsMessage::text(text)).await.is_err() {
                return;
            }
            last_sent = Timestamp::now();
        }
    }
}

/// The next trade frame (or a fault in its place); logs what it carries.
#[allow(clippy::too_many_arguments)]
fn trade_frame(
    market: &mut Market,
    config: &SimulatorConfig,
    connection: u64,
    n: u64,
    since: &mut Timestamp,
    last: &mut Option<(String, Vec<SentTrade>)>,
    log: &Mutex<SimulatorLog>,
    tape: &Mutex<Tape>,
) -> Option<String> {
    if config
        .malformed_every
        .is_some_and(|k| k > 0 && n.is_multiple_of(k))
    {
        log.lock().malformed_sent += 1;
        return Some(r#"{"type":"trade","data":[{"s":"#.to_string());
    }
    if config
        .duplicate_every
        .is_some_and(|k| k > 0 && n.is_multiple_of(k))
    {
        if let Some((text, trades)) = last.clone() {
            let mut l = log.lock();
            l.duplicate_frames_sent += 1;
            if config.record {
                l.sent.extend(trades);
            }
            return Some(text);
        }
    }
    let mut trades = make(market, config, connection, since, tape);
    if trades.is_empty() {
        return None;
    }
    if config
        .out_of_order_every
        .is_some_and(|k| k > 0 && n.is_multiple_of(k))
    {
        trades.reverse();
    }
    let data: Vec<serde_json::Value> = trades
        .iter()
        .map(|t| {
            let mut o =
                serde_json::json!({"s": t.symbol, "p": t.price, "t": t.ts_ms, "v": t.volume});
            if !t.conditions.is_empty() {
                o["c"] = serde_json::json!(t.conditions);
            }
            o
        })
        .collect();
    let text = serde_json::json!({"type": "trade", "data": data}).to_string();
    if config.record {
        log.lock().sent.extend(trades.iter().cloned());
    }
    *last = Some((text.clone(), trades));
    Some(text)
}

/// The trades of one slice (up to now, from `since` at the earliest),
/// put on the tape.
fn make(
    market: &mut Market,
    config: &SimulatorConfig,
    connection: u64,
    since: &mut Timestamp,
    tape: &Mutex<Tape>,
) -> Vec<SentTrade> {
    let micros = config.slice.as_micros() as i64;
    let count = market.arrivals(config.rate, micros);
    if count == 0 {
        return Vec::new();
    }
    let now = Timestamp::now();
    // Slices follow each other: a frame's trades are never older than
    // the ones before it.
    let from = now.saturating_sub_micros(micros).max(*since);
    *since = now;
    let mut inputs = Vec::with_capacity(count);
    market.trades(count, from, now, now, &mut inputs);
    let trades = sent(connection, &inputs);
    put_on_tape(tape, &trades);
    trades
}

fn sent(connection: u64, inputs: &[streamforge_model::TickInput]) -> Vec<SentTrade> {
    inputs
        .iter()
        .map(|i| SentTrade {
            connection,
            symbol: i.symbol.to_string(),
            price: i.price,
            ts_ms: i.ts.as_millis(),
            volume: i.size,
            conditions: if i.ts.as_micros() % 3 == 0 {
                vec!["1".into(), "12".into()]
            } else {
                Vec::new()
            },
        })
        .collect()
}

fn put_on_tape(tape: &Mutex<Tape>, trades: &[SentTrade]) {
    let mut tape = tape.lock();
    for t in trades {
        let list = tape.entry(t.symbol.clone()).or_default();
        // In time order: a trade older than the newest goes in its place.
        let at = list.partition_point(|x| x.ts_ms <= t.ts_ms);
        list.insert(at, t.clone());
        if list.len() > TAPE_KEEP {
            list.pop_front();
        }
    }
}

/// A symbol subscribed again: the trades the market made since its last
/// one (at the connection's rate shared by its symbols), on the tape but
/// not sent. Returns when trades sent from now on start.
fn catch_up(
    symbol: &Symbol,
    config: &SimulatorConfig,
    connection: u64,
    symbols: usize,
    tape: &Mutex<Tape>,
) -> Timestamp {
    let now = Timestamp::now();
    let last = tape
        .lock()
        .get(symbol.as_str())
        .and_then(|t| t.back().map(|x| x.ts_ms));
    let Some(last_ms) = last else {
        return now;
    };
    let from = Timestamp::from_micros((last_ms + 1) * 1_000);
    let span = now.as_micros() - from.as_micros();
    if span <= 0 {
        return now;
    }
    let mut market = Market::new(
        std::slice::from_ref(symbol),
        config.seed.map(|x| x ^ connection ^ 0x5eed),
        Arc::from("finnhub"),
    );
    let count = market.arrivals(config.rate / symbols.max(1) as f64, span);
    let mut inputs = Vec::with_capacity(count);
    market.trades(count, from, now, now, &mut inputs);
    put_on_tape(tape, &sent(connection, &inputs));
    now
}

/// Whether a new connection asks for the REST API (`GET /api/…`) rather
/// than the WebSocket: its request line, peeked.
async fn is_rest(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n >= 9 {
            return buf.starts_with(b"GET /api/");
        }
        if n == 0 {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Answers one REST request: the trade history (`/stock/tick`) to a
/// known token on a paid plan, Finnhub's errors otherwise; then closes.
async fn answer(
    mut stream: tokio::net::TcpStream,
    config: &SimulatorConfig,
    log: &Mutex<SimulatorLog>,
    tape: &Mutex<Tape>,
) {
    let Some(head) = crate::venue::simulator::read_head(&mut stream).await else {
        return;
    };
    log.lock().rest_requests += 1;
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or("")
        .to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let header_token = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-finnhub-token")
            .then(|| value.trim().to_string())
    });
    let token = param("token").or(header_token).unwrap_or_default();
    let known = token == config.token || config.more_tokens.contains(&token);
    let (status, body) = if !known {
        (401, r#"{"error":"Invalid API key"}"#.to_string())
    } else if path != "/api/v1/stock/tick" {
        (404, r#"{"error":"Not found"}"#.to_string())
    } else if config.history == HistoryPlan::Free {
        (
            403,
            r#"{"error":"You don't have access to this resource."}"#.to_string(),
        )
    } else {
        match (
            param("symbol"),
            param("date"),
            param("limit").and_then(|v| v.parse::<usize>().ok()),
            param("skip").map_or(Some(0), |v| v.parse::<usize>().ok()),
        ) {
            (Some(symbol), Some(date), Some(limit), Some(skip)) => (
                200,
                tick_page(tape, &symbol, &date, skip, limit.min(25_000)),
            ),
            _ => (
                422,
                r#"{"error":"Wrong parameters: symbol, date, limit and skip are needed."}"#
                    .to_string(),
            ),
        }
    };
    crate::venue::simulator::respond(&mut stream, status, "", &body).await;
}

/// A `/stock/tick` page of `symbol`'s trades on `date` (UTC), in time order.
fn tick_page(tape: &Mutex<Tape>, symbol: &str, date: &str, skip: usize, limit: usize) -> String {
    let day: Vec<SentTrade> = {
        let tape = tape.lock();
        tape.get(symbol)
            .map(|list| {
                list.iter()
                    .filter(|t| {
                        Timestamp::from_micros(t.ts_ms * 1_000)
                            .to_datetime()
                            .is_some_and(|d| d.date_naive().to_string() == date)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let page: Vec<&SentTrade> = day.iter().skip(skip).take(limit).collect();
    serde_json::json!({
        "s": symbol,
        "skip": skip,
        "count": page.len(),
        "total": day.len(),
        "v": page.iter().map(|t| t.volume).collect::<Vec<_>>(),
        "p": page.iter().map(|t| t.price).collect::<Vec<_>>(),
        "t": page.iter().map(|t| t.ts_ms).collect::<Vec<_>>(),
        "x": page.iter().map(|_| "SIM").collect::<Vec<_>>(),
        "c": page.iter().map(|t| t.conditions.clone()).collect::<Vec<_>>(),
    })
    .to_string()
}
