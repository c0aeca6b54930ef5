//! What the venues' simulators share: one synthetic market whose trades
//! are numbered one by one per symbol (as the venues number theirs), a
//! bounded history of them, a WebSocket server on loopback, and the faults
//! a test can inject on every connection.
//!
//! A venue's simulator ([`crate::binance::simulator`],
//! [`crate::coinbase::simulator`]) only says how its protocol reads a
//! subscription and writes a trade, a heartbeat or a shutdown notice
//! ([`SimProtocol`]). Trades are made once, for every connection alike;
//! a fault on one connection (a skipped id, a duplicate, trades out of
//! order, silence, a drop, a forced close) leaves the market and the
//! history as they are, so a test can compare what was stored with what
//! the venue made.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use streamforge_model::{Symbol, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::synthetic::Market;

/// One trade the simulated venue made.
#[derive(Clone, Debug, PartialEq)]
pub struct SimTrade {
    /// Canonical symbol (`BINANCE:BTCUSDT`).
    pub symbol: Symbol,
    /// The venue's notation (`BTCUSDT`).
    pub native: String,
    /// Sequential per symbol.
    pub id: u64,
    pub price: f64,
    pub size: f64,
    pub ts: Timestamp,
    /// The buyer was the resting order (Binance `m`; Coinbase `side` = sell).
    pub buyer_maker: bool,
}

/// What a client's message asks for.
#[derive(Debug, Default)]
pub struct ClientAction {
    /// Symbols to subscribe, in the venue's notation.
    pub subscribe: Vec<String>,
    pub unsubscribe: Vec<String>,
    /// The answer to send.
    pub reply: Option<String>,
}

/// A venue's protocol, as its simulator speaks it.
pub trait SimProtocol: Send + Sync + 'static {
    /// Prefix of the canonical symbols.
    const PREFIX: &'static str;
    /// Whether `native` is a symbol of the venue's notation.
    fn known(native: &str) -> bool;
    /// Symbols subscribed by the upgrade request's path and query.
    fn from_request(path_and_query: &str) -> Vec<String>;
    /// What a client's text message asks for.
    fn on_message(text: &str) -> ClientAction;
    /// The message of one trade.
    fn trade(t: &SimTrade) -> String;
    /// The periodic heartbeat of `native`, naming its last trade id
    /// (Coinbase); `None` when the venue sends none.
    fn heartbeat(native: &str, last_trade_id: u64, at: Timestamp) -> Option<String>;
    /// The notice sent before the server closes a connection (Binance
    /// `serverShutdown`); `None` when the venue sends none.
    fn shutdown_notice(at: Timestamp) -> Option<String>;

    /// What a REST history request (path and query) asks for, or the
    /// venue's error answer (status, body).
    fn history_request(path_and_query: &str) -> Result<HistoryAsk, (u16, String)>;

    /// The body answering a history request with `trades` (in the order
    /// the venue sends them).
    fn history_body(trades: &[SimTrade]) -> String;

    /// The body of an answer refusing the request with `status`.
    fn refusal(status: u16) -> String;
}

/// Which trades of a symbol a history request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryAsk {
    /// The venue's notation.
    pub native: String,
    pub page: Page,
    /// Most trades answered.
    pub limit: usize,
}

/// A page of the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// Ids from this one up, oldest first (Binance `fromId`).
    From(u64),
    /// Ids below this one, newest first (Coinbase `after`).
    Before(u64),
    /// The newest trades, oldest first.
    LatestAscending,
    /// The newest trades, newest first.
    LatestDescending,
}

/// Settings of a simulated venue.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on (port 0 picks a free one).
    pub addr: SocketAddr,
    /// The symbols it trades, in the venue's notation.
    pub symbols: Vec<String>,
    /// Trades per second across all symbols.
    pub rate: f64,
    pub seed: Option<u64>,
    /// How often trades are made (and sent).
    pub slice: Duration,
    /// WebSocket pings (Binance: 20 s).
    pub ping_every: Duration,
    /// Heartbeats per subscribed symbol, where the venue sends them.
    pub heartbeat_every: Duration,
    /// Trades kept per symbol for the history.
    pub history: usize,
    /// Faults, on every connection: the TCP connection ends abruptly after
    /// this long.
    pub drop_every: Option<Duration>,
    /// Nothing more is sent after this long; the TCP connection stays open.
    pub silent_after: Option<Duration>,
    /// The server closes the connection after this long, sending its
    /// shutdown notice `notice_lead` before (the 24 h limit, shortened).
    pub close_after: Option<Duration>,
    pub notice_lead: Duration,
    /// Every Nth trade of a connection is not sent (its id is skipped).
    pub skip_every: Option<u64>,
    /// Every Nth trade of a connection is sent twice.
    pub duplicate_every: Option<u64>,
    /// Every Nth trade of a connection is sent after the one that follows it.
    pub out_of_order_every: Option<u64>,
    /// Every Nth slice of a connection, a malformed message is sent.
    pub malformed_every: Option<u64>,
    /// Every Nth trade of a connection is sent with a price of zero (a
    /// trade the pipeline refuses; the history has it right).
    pub corrupt_every: Option<u64>,
    /// Keep every trade sent in the log (tests).
    pub record: bool,
    /// Address of the REST trade history (port 0 picks a free one).
    pub rest_addr: SocketAddr,
    /// Every Nth history request is answered 429 with `Retry-After: 1`.
    pub rest_429_every: Option<u64>,
    /// Every history request is refused with this status (a venue that
    /// wants a key for its history: 401, 403).
    pub rest_status: Option<u16>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            symbols: Vec::new(),
            rate: 50.0,
            seed: None,
            slice: Duration::from_millis(50),
            ping_every: Duration::from_secs(20),
            heartbeat_every: Duration::from_secs(1),
            history: 100_000,
            drop_every: None,
            silent_after: None,
            close_after: None,
            notice_lead: Duration::from_millis(500),
            skip_every: None,
            duplicate_every: None,
            out_of_order_every: None,
            malformed_every: None,
            corrupt_every: None,
            record: false,
            rest_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            rest_429_every: None,
            rest_status: None,
        }
    }
}

/// What the simulated venue did, for tests.
#[derive(Debug, Default)]
pub struct SimLog {
    /// Connections accepted.
    pub connections: u64,
    /// Subscriptions received, in order: (connection, native symbol).
    pub subscriptions: Vec<(u64, String)>,
    /// Every trade sent, per connection (with `record`).
    pub sent: Vec<(u64, SimTrade)>,
    /// Trades not sent because of `skip_every`: (symbol, id).
    pub skipped: Vec<(Symbol, u64)>,
    pub duplicates_sent: u64,
    pub out_of_order_sent: u64,
    pub malformed_sent: u64,
    /// Trades sent with a zero price (`corrupt_every`).
    pub corrupted: Vec<(Symbol, u64)>,
    pub shutdown_notices_sent: u64,
    /// Connections closed by the server on `close_after`.
    pub forced_closes: u64,
    /// History requests received, and those answered 429.
    pub rest_requests: u64,
    pub rest_rate_limited: u64,
}

/// The market's trades, numbered, and the bounded history.
struct Exchange {
    /// Next trade id per symbol.
    next_id: HashMap<Symbol, u64>,
    history: HashMap<Symbol, VecDeque<SimTrade>>,
    keep: usize,
}

impl Exchange {
    fn number(&mut self, t: &mut SimTrade) {
        let next = self.next_id.entry(t.symbol.clone()).or_insert_with(|| {
            // Venue ids are large and differ per symbol.
            1_000_000 + (t.symbol.as_str().len() as u64) * 1_000
        });
        t.id = *next;
        *next += 1;
        let h = self.history.entry(t.symbol.clone()).or_default();
        if h.len() >= self.keep {
            h.pop_front();
        }
        h.push_back(t.clone());
    }
}

/// A running simulated venue.
#[derive(Clone)]
pub struct SimServer {
    /// The WebSocket's address.
    pub addr: SocketAddr,
    /// The REST history's address.
    pub rest_addr: SocketAddr,
    pub log: Arc<Mutex<SimLog>>,
    exchange: Arc<Mutex<Exchange>>,
    stop: CancellationToken,
    /// A child of `stop`: the market and the WebSocket.
    feed: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SimServer {
    /// Binds and serves protocol `P` in the background until [`SimServer::stop`].
    pub async fn start<P: SimProtocol>(config: SimConfig) -> std::io::Result<SimServer> {
        let symbols: Vec<Symbol> = config
            .symbols
            .iter()
            .filter_map(|n| Symbol::parse(&format!("{}:{n}", P::PREFIX)).ok())
            .collect();
        if symbols.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the simulator needs at least one valid symbol",
            ));
        }
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let rest = TcpListener::bind(config.rest_addr).await?;
        let stop = CancellationToken::new();
        let server = SimServer {
            addr,
            rest_addr: rest.local_addr()?,
            log: Arc::default(),
            exchange: Arc::new(Mutex::new(Exchange {
                next_id: HashMap::new(),
                history: HashMap::new(),
                keep: config.history.max(1),
            })),
            feed: stop.child_token(),
            stop,
            tasks: tokio_util::task::TaskTracker::new(),
        };
        let config = Arc::new(config);
        let (trades_tx, _) = broadcast::channel::<Arc<Vec<SimTrade>>>(4_096);
        server.tasks.spawn(make_trades(
            symbols,
            config.clone(),
            server.exchange.clone(),
            trades_tx.clone(),
            server.feed.clone(),
        ));
        let s = server.clone();
        let rest_config = config.clone();
        server.tasks.spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = s.stop.cancelled() => return,
                    a = rest.accept() => match a {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                let (s2, config) = (s.clone(), rest_config.clone());
                s.tasks
                    .spawn(async move { s2.answer::<P>(stream, &config).await });
            }
        });
        let s = server.clone();
        server.tasks.spawn(async move {
            let mut next_id = 0u64;
            loop {
                let (stream, _) = tokio::select! {
                    biased;
                    _ = s.feed.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "simulator accept failed");
                            continue;
                        }
                    },
                };
                next_id += 1;
                let conn = Conn {
                    id: next_id,
                    config: config.clone(),
                    log: s.log.clone(),
                    stop: s.feed.clone(),
                };
                let trades = trades_tx.subscribe();
                s.tasks.spawn(conn.serve::<P>(stream, trades));
            }
        });
        Ok(server)
    }

    /// The trades a history request asks for, in the order it wants them.
    pub fn page(&self, symbol: &Symbol, page: Page, limit: usize) -> Vec<SimTrade> {
        let ex = self.exchange.lock();
        let Some(h) = ex.history.get(symbol) else {
            return Vec::new();
        };
        match page {
            Page::From(id) => h
                .iter()
                .filter(|t| t.id >= id)
                .take(limit)
                .cloned()
                .collect(),
            Page::Before(id) => h
                .iter()
                .rev()
                .filter(|t| t.id < id)
                .take(limit)
                .cloned()
                .collect(),
            Page::LatestDescending => h.iter().rev().take(limit).cloned().collect(),
            Page::LatestAscending => {
                let mut v: Vec<SimTrade> = h.iter().rev().take(limit).cloned().collect();
                v.reverse();
                v
            }
        }
    }

    /// Answers one HTTP request of the REST history, then closes.
    async fn answer<P: SimProtocol>(&self, mut stream: tokio::net::TcpStream, config: &SimConfig) {
        let Some(head) = read_head(&mut stream).await else {
            return;
        };
        let head = String::from_utf8_lossy(&head);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or("")
            .to_string();
        let n = {
            let mut log = self.log.lock();
            log.rest_requests += 1;
            log.rest_requests
        };
        let (status, body, extra) = if let Some(status) = config.rest_status {
            (status, P::refusal(status), "")
        } else if config
            .rest_429_every
            .is_some_and(|k| k > 0 && n.is_multiple_of(k))
        {
            self.log.lock().rest_rate_limited += 1;
            (429, P::refusal(429), "Retry-After: 1\r\n")
        } else {
            match P::history_request(&target) {
                Ok(ask) => match Symbol::parse(&format!("{}:{}", P::PREFIX, ask.native)) {
                    Ok(symbol) if config.symbols.contains(&ask.native) => {
                        let trades = self.page(&symbol, ask.page, ask.limit);
                        (200, P::history_body(&trades), "")
                    }
                    _ => (404, P::refusal(404), ""),
                },
                Err((status, body)) => (status, body, ""),
            }
        };
        respond(&mut stream, status, extra, &body).await;
    }

    /// Stops making and streaming trades (open connections end, new ones
    /// are refused); the REST history still answers.
    pub fn stop_feed(&self) {
        self.feed.cancel();
    }

    /// Every trade the venue made that it still holds, per symbol.
    pub fn made(&self) -> HashMap<Symbol, Vec<SimTrade>> {
        let ex = self.exchange.lock();
        ex.history
            .iter()
            .map(|(s, h)| (s.clone(), h.iter().cloned().collect()))
            .collect()
    }

    /// Stops making trades, accepting and serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// [`SimServer::stop`], and returns once every task has ended: the log
    /// then holds exactly what was sent.
    pub async fn stop_and_wait(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Makes the market's trades every slice, numbers them and sends them to
/// every connection.
async fn make_trades(
    symbols: Vec<Symbol>,
    config: Arc<SimConfig>,
    exchange: Arc<Mutex<Exchange>>,
    out: broadcast::Sender<Arc<Vec<SimTrade>>>,
    stop: CancellationToken,
) {
    let mut market = Market::new(&symbols, config.seed, Arc::from("simulator"));
    let mut slice = tokio::time::interval(config.slice);
    let micros = config.slice.as_micros() as i64;
    let mut inputs = Vec::new();
    let mut flip = config.seed.unwrap_or(7);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = slice.tick() => {}
        }
        let count = market.arrivals(config.rate, micros);
        if count == 0 {
            continue;
        }
        let now = Timestamp::now();
        inputs.clear();
        market.trades(
            count,
            now.saturating_sub_micros(micros),
            now,
            now,
            &mut inputs,
        );
        let mut trades: Vec<SimTrade> = inputs
            .iter()
            .map(|i| {
                flip = flip.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                SimTrade {
                    native: i
                        .symbol
                        .as_str()
                        .split_once(':')
                        .map_or(i.symbol.as_str(), |(_, n)| n)
                        .to_string(),
                    symbol: i.symbol.clone(),
                    id: 0,
                    price: i.price,
                    size: i.size,
                    ts: i.ts,
                    buyer_maker: flip >> 63 == 1,
                }
            })
            .collect();
        {
            let mut ex = exchange.lock();
            for t in &mut trades {
                ex.number(t);
            }
        }
        // No connection listening is fine: the history still has them.
        let _ = out.send(Arc::new(trades));
    }
}

/// One client connection of the simulated venue.
struct Conn {
    id: u64,
    config: Arc<SimConfig>,
    log: Arc<Mutex<SimLog>>,
    stop: CancellationToken,
}

impl Conn {
    async fn serve<P: SimProtocol>(
        self,
        stream: tokio::net::TcpStream,
        mut trades: broadcast::Receiver<Arc<Vec<SimTrade>>>,
    ) {
        let from_url: Arc<Mutex<Vec<String>>> = Arc::default();
        let url_symbols = from_url.clone();
        #[allow(clippy::result_large_err)]
        let check = move |req: &Request, res: Response| -> Result<Response, ErrorResponse> {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            *url_symbols.lock() = P::from_request(&path);
            Ok(res)
        };
        // A connection that raced the venue's stop is not served.
        let ws = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return,
            ws = tokio_tungstenite::accept_hdr_async(stream, check) => match ws {
                Ok(ws) => ws,
                Err(_) => return,
            },
        };
        self.log.lock().connections += 1;
        let (mut tx, mut rx) = ws.split();
        let mut subscribed: Vec<String> = Vec::new();
        for n in from_url.lock().drain(..) {
            self.subscribe::<P>(&mut subscribed, n);
        }
        let started = tokio::time::Instant::now();
        let far = started + Duration::from_secs(86_400 * 365);
        let drop_at = self.config.drop_every.map_or(far, |d| started + d);
        let silent_at = self.config.silent_after.map_or(far, |d| started + d);
        let close_at = self.config.close_after.map_or(far, |d| started + d);
        let notice_at = self
            .config
            .close_after
            .map_or(far, |d| started + d.saturating_sub(self.config.notice_lead));
        let mut ping = tokio::time::interval(self.config.ping_every);
        ping.tick().await;
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_every);
        let mut noticed = false;
        let mut n_trades: u64 = 0;
        let mut n_batches: u64 = 0;
        let mut held: Option<SimTrade> = None;
        // The last trade id this connection has dealt with, per symbol
        // (sent or skipped): what its heartbeats name.
        let mut last_id: HashMap<String, u64> = HashMap::new();
        loop {
            let silent = tokio::time::Instant::now() >= silent_at;
            let mut out: Vec<String> = Vec::new();
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep_until(drop_at) => return, // abrupt: no close frame
                _ = tokio::time::sleep_until(close_at) => {
                    self.log.lock().forced_closes += 1;
                    let _ = tx.send(WsMessage::Close(None)).await;
                    return;
                }
                _ = tokio::time::sleep_until(notice_at), if !noticed => {
                    noticed = true;
                    if let Some(notice) = P::shutdown_notice(Timestamp::now()) {
                        self.log.lock().shutdown_notices_sent += 1;
                        out.push(notice);
                    }
                }
                m = rx.next() => match m {
                    Some(Ok(WsMessage::Text(t))) => {
                        let action = P::on_message(&t);
                        for n in action.subscribe {
                            self.subscribe::<P>(&mut subscribed, n);
                        }
                        subscribed.retain(|s| !action.unsubscribe.contains(s));
                        out.extend(action.reply);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
                _ = ping.tick() => {
                    if !silent && tx.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
                        return;
                    }
                }
                // Not while a trade is held back: it has not been dealt with yet.
                _ = heartbeat.tick(), if held.is_none() => {
                    if !silent {
                        for n in &subscribed {
                            if let Some(last) = last_id.get(n) {
                                out.extend(P::heartbeat(n, *last, Timestamp::now()));
                            }
                        }
                    }
                }
                batch = trades.recv() => match batch {
                    // Silent: trades are neither sent nor logged.
                    Ok(_) if silent => {}
                    Ok(batch) => {
                        n_batches += 1;
                        if self.config.malformed_every.is_some_and(|k| k > 0 && n_batches.is_multiple_of(k)) {
                            self.log.lock().malformed_sent += 1;
                            out.push(r#"{"e":"trade","s":"#.to_string());
                        }
                        for t in batch.iter().filter(|t| subscribed.contains(&t.native)) {
                            n_trades += 1;
                            last_id.insert(t.native.clone(), t.id);
                            self.faulty_send::<P>(t, n_trades, &mut held, &mut out);
                        }
                    }
                    // This connection fell behind the market: those trades are
                    // lost to it, like a venue dropping a slow client's messages.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
            if silent {
                continue;
            }
            for text in out {
                if tx.send(WsMessage::text(text)).await.is_err() {
                    return;
                }
            }
        }
    }

    fn subscribe<P: SimProtocol>(&self, subscribed: &mut Vec<String>, native: String) {
        self.log
            .lock()
            .subscriptions
            .push((self.id, native.clone()));
        if P::known(&native) && !subscribed.contains(&native) {
            subscribed.push(native);
        }
    }

    /// Sends `t` (the connection's `n`th trade), or a fault in its place.
    fn faulty_send<P: SimProtocol>(
        &self,
        t: &SimTrade,
        n: u64,
        held: &mut Option<SimTrade>,
        out: &mut Vec<String>,
    ) {
        let every = |k: Option<u64>| k.is_some_and(|k| k > 0 && n.is_multiple_of(k));
        let mut log = self.log.lock();
        if every(self.config.skip_every) {
            log.skipped.push((t.symbol.clone(), t.id));
            return;
        }
        if every(self.config.corrupt_every) {
            log.corrupted.push((t.symbol.clone(), t.id));
            out.push(P::trade(&SimTrade {
                price: 0.0,
                ..t.clone()
            }));
            return;
        }
        if every(self.config.out_of_order_every) && held.is_none() {
            *held = Some(t.clone());
            log.out_of_order_sent += 1;
            return;
        }
        let mut send = |t: &SimTrade, log: &mut SimLog| {
            out.push(P::trade(t));
            if self.config.record {
                log.sent.push((self.id, t.clone()));
            }
        };
        send(t, &mut log);
        if every(self.config.duplicate_every) {
            log.duplicates_sent += 1;
            send(t, &mut log);
        }
        if let Some(late) = held.take() {
            send(&late, &mut log);
        }
    }
}

/// The head of one HTTP request (up to the blank line), or `None` when
/// the client sends none within 5 s or more than 16 KiB of it.
pub(crate) async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 && head.len() < 16 * 1024 => head.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(head)
}

/// Writes a simulated REST answer (JSON `body`, `extra` header lines each
/// ending in CRLF) and closes the connection.
pub(crate) async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: u16,
    extra: &str,
    body: &str,
) {
    use tokio::io::AsyncWriteExt;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
