//! A Finnhub trade WebSocket on loopback, driven by the synthetic market, so
//! the provider can be tested (and demonstrated) without internet.
//!
//! It checks the token (HTTP 401 on the upgrade otherwise), caps symbols per
//! connection with Finnhub's error text, sends batched trade frames of the
//! subscribed symbols and `{"type":"ping"}` keep-alives, and injects faults
//! on demand: dropped connections, silence with the TCP connection open, no
//! pings, malformed frames, duplicated frames, trades out of order. It logs every trade it sent,
//! so tests can compare with what was stored.

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
}

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
}

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<SimulatorLog>>,
    stop: CancellationToken,
    /// The accept loop and every connection's task.
    tasks: tokio_util::task::TaskTracker,
}

impl Simulator {
    /// Binds and serves in the background until [`Simulator::stop`].
    pub async fn start(config: SimulatorConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(SimulatorLog::default()));
        let stop = CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let sim = Simulator {
            addr,
            log: log.clone(),
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
                next_id += 1;
                let (config, log, stop) = (config.clone(), log.clone(), stop.clone());
                let id = next_id;
                connections.spawn(async move {
                    serve(stream, id, config, log, stop).await;
                });
            }
        });
        Ok(sim)
    }

    /// The URL the provider connects to (without the token).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// [`Simulator::stop`], and returns once every connection has ended:
    /// the log then holds exactly what was sent, and nothing more comes.
    pub async fn stop_and_wait(&self) {
        self.stop.cancel();
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
                    None
                } else if let Some(m) = market.as_mut() {
                    frames += 1;
                    let injected = (id == 1 && frames > 3)
                        .then(|| config.inject.get((frames - 4) as usize))
                        .flatten();
                    match injected {
                        Some(raw) => Some(raw.clone()),
                        None => trade_frame(m, &config, id, frames, &mut last_frame, &log),
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
fn trade_frame(
    market: &mut Market,
    config: &SimulatorConfig,
    connection: u64,
    n: u64,
    last: &mut Option<(String, Vec<SentTrade>)>,
    log: &Mutex<SimulatorLog>,
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
    let micros = config.slice.as_micros() as i64;
    let count = market.arrivals(config.rate, micros);
    if count == 0 {
        return None;
    }
    let now = Timestamp::now();
    let mut inputs = Vec::with_capacity(count);
    market.trades(
        count,
        now.saturating_sub_micros(micros),
        now,
        now,
        &mut inputs,
    );
    if config
        .out_of_order_every
        .is_some_and(|k| k > 0 && n.is_multiple_of(k))
    {
        inputs.reverse();
    }
    let trades: Vec<SentTrade> = inputs
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
        .collect();
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
