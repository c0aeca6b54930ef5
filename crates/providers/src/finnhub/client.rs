//! The Finnhub client: one task per WebSocket connection, each
//! subscribing its share of the symbols, reading frames through the
//! [`FrameParser`], and reconnecting with backoff.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use streamforge_model::{Gap, GapReason, Healing, Symbol, Tick, TickId, TickRules, Timestamp};
use streamforge_telemetry::events::FrameKind;
use streamforge_telemetry::{Event, Health, Metrics};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_util::sync::CancellationToken;

use super::error::{config_error, ConnectError};
use super::events::{
    ConnectFailed, Connected, Disconnected, FrameTooLarge, GapRecorded, Reconnecting, ServerError,
    TokenRejected, WentSilent,
};
use super::history::{HealRequest, Healer};
use super::messages;
use super::{FinnhubConfig, FrameParser, Parsed, CONNECT_TIMEOUT, ID, MAX_MESSAGE_BYTES};
use crate::venue::next_backoff;
use crate::Secret;
use crate::{Provider, ProviderError, ProviderFrame};

/// The provider: one task per connection.
pub struct FinnhubProvider {
    /// Where raw frames are copied to (`streamforge record`).
    tap: Option<mpsc::Sender<crate::recording::RecordedFrame>>,
    config: FinnhubConfig,
    symbols: Vec<Symbol>,
    rules: TickRules,
    metrics: Metrics,
    health: Health,
    /// Gaps of an earlier run still `open` or `healing`.
    resume: Vec<Gap>,
    /// The newest stored trade of each symbol.
    last_trades: Vec<Tick>,
    /// Ids of stored trades near the resumed gaps, per symbol.
    stored: HashMap<Symbol, HashSet<TickId>>,
}

/// How far a resumed window is widened on each side: its own bounds are
/// receive times, and trades near them may or may not have come live
/// (those that did are left out by their stored ids).
pub const RESUME_SLACK_MICROS: i64 = 2_000_000;

/// Most windows waiting for the healer; more stay `open` until a restart.
const HEAL_QUEUE: usize = 1_024;

impl std::fmt::Debug for FinnhubProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinnhubProvider")
            .field("config", &self.config)
            .finish()
    }
}

impl FinnhubProvider {
    pub fn new(
        config: FinnhubConfig,
        rules: TickRules,
        metrics: Metrics,
        health: Health,
    ) -> Result<Self, ProviderError> {
        config.validate().map_err(|e| config_error(e.to_string()))?;
        if !config.enabled() {
            return Err(config_error(
                "token: not set (FINNHUB_TOKEN or [finnhub] token)",
            ));
        }
        if config.symbols.is_empty() {
            return Err(config_error("symbols: at least one is needed"));
        }
        let mut symbols: Vec<Symbol> = Vec::new();
        for s in &config.symbols {
            let sym = Symbol::parse(s).map_err(|e| config_error(format!("symbols: {e}")))?;
            if !symbols.contains(&sym) {
                symbols.push(sym);
            }
        }
        config
            .connections_for(symbols.len())
            .map_err(|e| config_error(e.to_string()))?;
        // wss:// needs a TLS crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(FinnhubProvider {
            tap: None,
            config,
            symbols,
            rules,
            metrics,
            health,
            resume: Vec::new(),
            last_trades: Vec::new(),
            stored: HashMap::new(),
        })
    }

    /// Goes on healing `gaps` of an earlier run (still `open` or
    /// `healing`, from the store), and records the time since each
    /// symbol's newest stored trade (`last_trades`) as a `downtime` gap,
    /// healed once the symbol's first trade arrives.
    pub fn resuming(mut self, gaps: Vec<Gap>, last_trades: Vec<Tick>) -> Self {
        self.resume = gaps;
        self.last_trades = last_trades;
        self
    }

    /// Stored trades near the resumed gaps and at each symbol's newest
    /// stored millisecond: left out when a window is healed again.
    pub fn knowing_stored(mut self, ticks: &[Tick]) -> Self {
        for t in ticks.iter().filter(|t| t.src_id() == ID) {
            self.stored
                .entry(t.symbol().clone())
                .or_default()
                .insert(t.tick_id());
        }
        self
    }

    /// What the last run left: per symbol, a `downtime` gap from its
    /// newest stored trade to `now`, waiting (with the last run's gaps
    /// after that trade) for the symbol's first trade to close one window
    /// from that trade; and the windows of older unhealed gaps, to heal
    /// at once.
    fn resume_plan(&self, now: Timestamp) -> Resume {
        let mut plan = Resume::default();
        for symbol in &self.symbols {
            let last = self
                .last_trades
                .iter()
                .find(|t| t.src_id() == ID && t.symbol() == symbol);
            let (before, after): (Vec<Gap>, Vec<Gap>) = self
                .resume
                .iter()
                .filter(|g| g.provider == ID && g.symbol == *symbol)
                .cloned()
                .partition(|g| last.is_some_and(|t| g.to <= t.ts()));
            let stored = self.stored.get(symbol).cloned().unwrap_or_default();
            for g in before {
                // Up to just before the last stored trade, where the
                // downtime's window opens: the history holds it already, so
                // the window is read whole at once.
                let last_ts = last.map_or(g.to, |t| t.ts().saturating_sub_micros(1));
                plan.heal_now.push(HealRequest {
                    from: g.from.saturating_sub_micros(RESUME_SLACK_MICROS),
                    to: g.to.saturating_add_micros(RESUME_SLACK_MICROS).min(last_ts),
                    known: stored.clone(),
                    gaps: vec![g],
                });
            }
            // The window opens at the last stored trade, or earlier where a
            // resumed gap began before it (its stored trades are known).
            let Some(start) = last
                .map(Tick::ts)
                .into_iter()
                .chain(
                    after
                        .iter()
                        .map(|g| g.from.saturating_sub_micros(RESUME_SLACK_MICROS)),
                )
                .min()
            else {
                continue;
            };
            let from = after
                .iter()
                .map(|g| g.to)
                .fold(start, Timestamp::max)
                .min(now);
            let downtime = Gap {
                provider: ID.to_string(),
                connection: 0,
                symbol: symbol.clone(),
                from,
                to: now,
                reason: GapReason::Downtime,
                healing: Healing::default(),
            };
            plan.downtime.push(downtime.clone());
            let mut gaps = after;
            gaps.push(downtime);
            plan.waiting.insert(
                symbol.clone(),
                Pending {
                    gaps,
                    from: start,
                    known: stored.into_iter().chain(last.map(Tick::tick_id)).collect(),
                },
            );
        }
        plan
    }
}

impl FinnhubProvider {
    /// Also sends every raw frame received, with its receive time and
    /// connection, to `tap` (waiting when it is full: a recording is complete).
    pub fn record_to(mut self, tap: mpsc::Sender<crate::recording::RecordedFrame>) -> Self {
        self.tap = Some(tap);
        self
    }
}

/// What a start takes over from the last run.
#[derive(Default)]
struct Resume {
    /// Per symbol, the window waiting for its first trade.
    waiting: HashMap<Symbol, Pending>,
    /// The new `downtime` gaps, to record.
    downtime: Vec<Gap>,
    /// Windows whose ends are known.
    heal_now: Vec<HealRequest>,
}

#[async_trait]
impl Provider for FinnhubProvider {
    fn id(&self) -> &'static str {
        ID
    }

    fn max_silence(&self) -> Option<Duration> {
        Some(self.config.silence)
    }

    async fn run(
        self: Box<Self>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        // One token per connection (checked in `new`: there are enough).
        let tokens = self.config.all_tokens();
        let (heal, to_heal) = mpsc::channel::<HealRequest>(HEAL_QUEUE);
        let mut tasks = tokio::task::JoinSet::new();
        if self.config.history {
            let healer = Healer {
                config: self.config.clone(),
                base: self.config.rest_base(),
                token: tokens[0].clone(),
                rules: self.rules,
                metrics: self.metrics.clone(),
                client: crate::venue::backfill::history_client().map_err(config_error)?,
            };
            let (out, cancel) = (out.clone(), cancel.clone());
            tasks.spawn(async move { healer.run(to_heal, out, cancel).await });
        } else {
            drop(to_heal);
        }
        // The last run's gaps: older ones heal now; the time since each
        // symbol's newest stored trade waits for its first trade.
        let now = Timestamp::now();
        let Resume {
            waiting: mut downtime,
            downtime: mut recorded,
            heal_now,
        } = self.resume_plan(now);
        if !self.resume.is_empty() {
            tracing::info!(
                provider = ID,
                gaps = self.resume.len(),
                "healing the gaps of the last run"
            );
        }
        for request in heal_now.into_iter().filter(|_| self.config.history) {
            if heal.try_send(request).is_err() {
                tracing::warn!(
                    provider = ID,
                    "too many gaps to heal at once: the rest heal on a later start"
                );
                break;
            }
        }
        if !recorded.is_empty() {
            GapRecorded {
                connection: 0,
                reason: GapReason::Downtime,
                from: recorded.iter().map(|g| g.from).min().unwrap_or(now),
                to: now,
                symbols: recorded.len(),
            }
            .emit(&self.metrics);
        }
        let mut connections: Vec<Connection> = self
            .symbols
            .chunks(self.config.max_symbols_per_connection)
            .zip(tokens)
            .enumerate()
            .map(|(i, (chunk, token))| Connection {
                tap: self.tap.clone(),
                id: i as u32,
                token,
                symbols: chunk.to_vec(),
                config: self.config.clone(),
                rules: self.rules,
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                heal: heal.clone(),
                waiting: HashMap::new(),
                edges: HashMap::new(),
            })
            .collect();
        drop(heal);
        for c in &mut connections {
            for s in &c.symbols {
                if let Some(mut p) = downtime.remove(s) {
                    for g in &mut p.gaps {
                        if g.reason == GapReason::Downtime {
                            g.connection = c.id;
                        }
                    }
                    for g in &mut recorded {
                        if g.symbol == *s && g.reason == GapReason::Downtime {
                            g.connection = c.id;
                        }
                    }
                    c.waiting.insert(s.clone(), p);
                }
            }
        }
        if !recorded.is_empty() {
            let frame = ProviderFrame {
                provider: ID,
                gaps: recorded,
                ..ProviderFrame::default()
            };
            out.send(frame)
                .await
                .map_err(|_| ProviderError::OutputClosed { provider: ID })?;
        }
        tracing::info!(
            symbols = self.symbols.len(),
            connections = connections.len(),
            url = %self.config.url,
            "finnhub provider started"
        );
        for c in &connections {
            for s in &c.symbols {
                self.health
                    .expect_fresh_advisory(&symbol_check(s), self.config.symbol_silence);
            }
        }
        for c in connections {
            let (out, cancel) = (out.clone(), cancel.clone());
            tasks.spawn(async move { c.run(out, cancel).await });
        }
        drop(out);
        let mut result = Ok(());
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    cancel.cancel();
                    result = Err(e);
                }
                Err(e) => {
                    cancel.cancel();
                    result = Err(config_error(format!("a connection task failed: {e}")));
                }
            }
        }
        result
    }
}

/// Name of a symbol's advisory freshness check in `/readyz`.
pub fn symbol_check(symbol: &Symbol) -> String {
    format!("symbol:{ID}:{symbol}")
}

/// Why a connection ended.
enum Ended {
    /// Shutdown: no gap.
    Cancelled,
    /// The feed was down from `since` (the last message received).
    Down { since: Timestamp, reason: GapReason },
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One WebSocket connection and the symbols it carries.
struct Connection {
    tap: Option<mpsc::Sender<crate::recording::RecordedFrame>>,
    id: u32,
    /// This connection's API token (one connection per token).
    token: Secret,
    symbols: Vec<Symbol>,
    config: FinnhubConfig,
    rules: TickRules,
    metrics: Metrics,
    health: Health,
    /// Where closed windows go to heal.
    heal: mpsc::Sender<HealRequest>,
    /// Per symbol, gaps waiting for its first trade to close their window.
    waiting: HashMap<Symbol, Pending>,
    /// Per symbol, its newest live trade: time and the ids at that time.
    edges: HashMap<Symbol, (Timestamp, HashSet<TickId>)>,
}

/// A symbol's gaps waiting for its next trade: the window starts at
/// `from` (its last live trade before them), less the `known` trades.
#[derive(Debug)]
struct Pending {
    gaps: Vec<Gap>,
    from: Timestamp,
    known: HashSet<TickId>,
}

impl Connection {
    async fn run(
        mut self,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        let mut parser = FrameParser::default();
        let mut backoff = self.config.backoff_min;
        // Set while the feed is down: since when, and why.
        let mut down: Option<(Timestamp, GapReason)> = None;
        let mut attempts: u64 = 0;
        loop {
            if cancel.is_cancelled() {
                return self.close_gap(&out, down).await;
            }
            if attempts > 0 {
                Reconnecting.emit(&self.metrics);
            }
            attempts += 1;
            let pause = match self.connect().await {
                Ok(mut ws) => match self.subscribe(&mut ws).await {
                    Ok(()) => {
                        let subscribed = Timestamp::now();
                        Connected {
                            connection: self.id,
                            symbols: self.symbols.len(),
                        }
                        .emit(&self.metrics);
                        if let Some((from, reason)) = down.take() {
                            self.send_gaps(&out, from, subscribed, reason).await?;
                        }
                        backoff = self.config.backoff_min;
                        let ended = self.read(&mut ws, &mut parser, &out, &cancel).await;
                        Disconnected {
                            connection: self.id,
                            reason: match &ended {
                                Ok(Ended::Down { reason, .. }) => Some(*reason),
                                _ => None,
                            },
                        }
                        .emit(&self.metrics);
                        match ended? {
                            Ended::Cancelled => {
                                let _ = ws.close(None).await;
                                return Ok(());
                            }
                            Ended::Down { since, reason } => {
                                down = Some((since, reason));
                                Duration::ZERO
                            }
                        }
                    }
                    Err(e) => {
                        down.get_or_insert((Timestamp::now(), GapReason::Disconnected));
                        ConnectFailed {
                            connection: self.id,
                            step: "subscribe",
                            error: &e,
                        }
                        .emit(&self.metrics);
                        next_backoff(&mut backoff, self.config.backoff_max)
                    }
                },
                Err(ConnectError::Unauthorized) => {
                    down.get_or_insert((Timestamp::now(), GapReason::Disconnected));
                    TokenRejected {
                        connection: self.id,
                        retry_in: self.config.unauthorized_retry,
                    }
                    .emit(&self.metrics);
                    self.health
                        .set(&crate::feed_check(ID), false, "token rejected (HTTP 401)");
                    self.config.unauthorized_retry
                }
                Err(ConnectError::Other(e)) => {
                    down.get_or_insert((Timestamp::now(), GapReason::Disconnected));
                    ConnectFailed {
                        connection: self.id,
                        step: "connection",
                        error: &e,
                    }
                    .emit(&self.metrics);
                    next_backoff(&mut backoff, self.config.backoff_max)
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return self.close_gap(&out, down).await,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    async fn connect(&self) -> Result<Socket, ConnectError> {
        let base = &self.config.url;
        let url = format!("{}token={}", with_query(base), self.token.expose());
        let redact = |e: String| self.token.redact(&e);
        let limits = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(limits), false);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => Err(ConnectError::Other(format!(
                "no connection to {base} within {CONNECT_TIMEOUT:?}"
            ))),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(res))) if res.status().as_u16() == 401 => {
                Err(ConnectError::Unauthorized)
            }
            Ok(Err(tungstenite::Error::Http(res))) => Err(ConnectError::Other(format!(
                "{base} answered HTTP {} to the upgrade",
                res.status()
            ))),
            Ok(Err(e)) => Err(ConnectError::Other(redact(format!("{base}: {e}")))),
        }
    }

    async fn subscribe(&self, ws: &mut Socket) -> Result<(), String> {
        for s in &self.symbols {
            let msg = messages::subscribe(s);
            ws.feed(WsMessage::text(msg))
                .await
                .map_err(|e| self.token.redact(&e.to_string()))?;
        }
        ws.flush()
            .await
            .map_err(|e| self.token.redact(&e.to_string()))
    }

    /// Reads until the connection ends, goes silent, or shutdown.
    async fn read(
        &mut self,
        ws: &mut Socket,
        parser: &mut FrameParser,
        out: &mpsc::Sender<ProviderFrame>,
        cancel: &CancellationToken,
    ) -> Result<Ended, ProviderError> {
        let feed = crate::feed_check(ID);
        let mut last = Timestamp::now();
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return Ok(Ended::Cancelled),
                n = tokio::time::timeout(self.config.silence, ws.next()) => n,
            };
            let msg = match next {
                Err(_) => {
                    WentSilent {
                        connection: self.id,
                        silence: self.config.silence,
                    }
                    .emit(&self.metrics);
                    return Ok(Ended::Down {
                        since: last,
                        reason: GapReason::Silent,
                    });
                }
                Ok(None) => {
                    return Ok(Ended::Down {
                        since: last,
                        reason: GapReason::Disconnected,
                    })
                }
                Ok(Some(Err(tungstenite::Error::Capacity(e)))) => {
                    // Refused before it was buffered: the content is gone,
                    // the dead letter says what came.
                    let error = format!(
                        "frame: the server sent a message over {MAX_MESSAGE_BYTES} bytes ({e}); the connection is made again"
                    );
                    FrameTooLarge {
                        connection: self.id,
                        error: &error,
                    }
                    .emit(&self.metrics);
                    let frame = ProviderFrame {
                        provider: ID,
                        rejects: vec![crate::Rejected::new(Vec::new(), "frame_too_large", error)],
                        ..ProviderFrame::default()
                    };
                    if out.send(frame).await.is_err() {
                        return Err(ProviderError::OutputClosed { provider: ID });
                    }
                    return Ok(Ended::Down {
                        since: last,
                        reason: GapReason::Disconnected,
                    });
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(connection = self.id, error = %self.token.redact(&e.to_string()), "finnhub read failed");
                    return Ok(Ended::Down {
                        since: last,
                        reason: GapReason::Disconnected,
                    });
                }
                Ok(Some(Ok(m))) => m,
            };
            let received = Timestamp::now();
            last = received;
            self.health.set(&feed, true, "");
            self.health.seen(&feed);
            let raw: &[u8] = match &msg {
                WsMessage::Text(t) => t.as_bytes(),
                WsMessage::Binary(b) => b,
                // Protocol pings are answered by the library; they show the
                // connection is alive.
                _ => continue,
            };
            if let Some(tap) = &self.tap {
                let recorded = crate::recording::RecordedFrame {
                    provider: ID.to_string(),
                    received,
                    connection: self.id,
                    frame: String::from_utf8_lossy(raw).into_owned(),
                };
                if tap.send(recorded).await.is_err() {
                    return Err(ProviderError::OutputClosed { provider: ID });
                }
            }
            match parser.parse(raw, &self.rules, received, received) {
                Parsed::Trades {
                    mut ticks,
                    mut rejects,
                } => {
                    self.metrics.provider_frame(ID, FrameKind::Trade);
                    // Trades of symbols this connection did not subscribe
                    // are refused: per-symbol state downstream stays
                    // bounded by the configured universe.
                    if ticks.iter().any(|t| !self.symbols.contains(t.symbol())) {
                        let (kept, foreign): (Vec<_>, Vec<_>) = ticks
                            .into_iter()
                            .partition(|t| self.symbols.contains(t.symbol()));
                        ticks = kept;
                        rejects.extend(foreign.into_iter().map(|t| {
                            crate::Rejected::new(
                                streamforge_model::wire::encode(&t),
                                "unsubscribed_symbol",
                                format!(
                                    "symbol: {} is not subscribed on this connection",
                                    t.symbol()
                                ),
                            )
                        }));
                    }
                    let mut seen: Vec<&Symbol> = Vec::new();
                    let at = received.as_micros() as f64 / 1e6;
                    for t in &ticks {
                        // Only this connection's symbols: a fixed label set.
                        if !seen.contains(&t.symbol()) {
                            seen.push(t.symbol());
                            self.health.seen(&symbol_check(t.symbol()));
                            self.metrics
                                .provider_symbol_trade(ID, t.symbol().as_str(), at);
                        }
                    }
                    self.note_trades(&ticks);
                    let frame = ProviderFrame {
                        provider: ID,
                        ticks,
                        rejects,
                        ..ProviderFrame::default()
                    };
                    if out.send(frame).await.is_err() {
                        return Err(ProviderError::OutputClosed { provider: ID });
                    }
                }
                Parsed::Ping => self.metrics.provider_frame(ID, FrameKind::Ping),
                Parsed::Error(msg) => {
                    ServerError {
                        connection: self.id,
                        message: &msg,
                    }
                    .emit(&self.metrics);
                }
                Parsed::Malformed(r) => {
                    self.metrics.provider_frame(ID, FrameKind::Malformed);
                    let frame = ProviderFrame {
                        provider: ID,
                        rejects: vec![r],
                        ..ProviderFrame::default()
                    };
                    if out.send(frame).await.is_err() {
                        return Err(ProviderError::OutputClosed { provider: ID });
                    }
                }
            }
        }
    }

    /// At shutdown during an outage: the outage so far is a gap too.
    async fn close_gap(
        &mut self,
        out: &mpsc::Sender<ProviderFrame>,
        down: Option<(Timestamp, GapReason)>,
    ) -> Result<(), ProviderError> {
        match down {
            Some((from, reason)) => self.send_gaps(out, from, Timestamp::now(), reason).await,
            None => Ok(()),
        }
    }

    /// One gap per symbol of this connection.
    async fn send_gaps(
        &mut self,
        out: &mpsc::Sender<ProviderFrame>,
        from: Timestamp,
        to: Timestamp,
        reason: GapReason,
    ) -> Result<(), ProviderError> {
        let gaps: Vec<Gap> = self
            .symbols
            .iter()
            .map(|s| Gap {
                provider: ID.to_string(),
                connection: self.id,
                symbol: s.clone(),
                from,
                to,
                reason,
                healing: streamforge_model::Healing::default(),
            })
            .collect();
        for g in &gaps {
            let edge = self.edges.get(&g.symbol);
            let pending = self
                .waiting
                .entry(g.symbol.clone())
                .or_insert_with(|| Pending {
                    gaps: Vec::new(),
                    from: edge.map_or(g.from, |(ts, _)| (*ts).min(g.from)),
                    known: edge.map(|(_, ids)| ids.clone()).unwrap_or_default(),
                });
            pending.gaps.push(g.clone());
        }
        GapRecorded {
            connection: self.id,
            reason,
            from,
            to,
            symbols: gaps.len(),
        }
        .emit(&self.metrics);
        let frame = ProviderFrame {
            provider: ID,
            gaps,
            ..ProviderFrame::default()
        };
        out.send(frame)
            .await
            .map_err(|_| ProviderError::OutputClosed { provider: ID })
    }
}

impl Connection {
    /// Follows each symbol's newest trade, and hands the windows of gaps
    /// waiting for a symbol's first trade to the healer: up to the
    /// earliest of its trades in this frame, less those received.
    fn note_trades(&mut self, ticks: &[Tick]) {
        let mut firsts: HashMap<&Symbol, (Timestamp, HashSet<TickId>)> = HashMap::new();
        for t in ticks {
            let (ts, id) = (t.ts(), t.tick_id());
            // Looked up before inserting: no symbol clone per trade.
            let edge = match self.edges.get_mut(t.symbol()) {
                Some(edge) => edge,
                None => self
                    .edges
                    .entry(t.symbol().clone())
                    .or_insert_with(|| (ts, HashSet::new())),
            };
            if ts > edge.0 {
                *edge = (ts, HashSet::new());
            }
            if ts == edge.0 && edge.1.len() < MAX_EDGE_IDS {
                edge.1.insert(id);
            }
            if self.waiting.contains_key(t.symbol()) {
                let first = firsts
                    .entry(t.symbol())
                    .or_insert_with(|| (ts, HashSet::new()));
                if ts < first.0 {
                    *first = (ts, HashSet::new());
                }
                if ts == first.0 {
                    first.1.insert(id);
                }
            }
        }
        for (symbol, (to, ids)) in firsts {
            let Some(p) = self.waiting.remove(symbol) else {
                continue;
            };
            let mut known = p.known;
            known.extend(ids);
            let request = HealRequest {
                gaps: p.gaps,
                from: p.from.min(to),
                to,
                known,
            };
            if self.config.history && self.heal.try_send(request).is_err() {
                tracing::warn!(
                    provider = ID,
                    symbol = %symbol,
                    "too many gaps waiting to heal: this one stays open until a restart"
                );
            }
        }
    }
}

/// Most ids of trades at one instant remembered per symbol.
const MAX_EDGE_IDS: usize = 4_096;

/// `url` ready for one more query parameter: a path of at least `/`
/// (`wss://ws.finnhub.io` has none), then `?` or `&`.
fn with_query(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let path_sep = if authority_and_path.contains('/') {
        ""
    } else {
        "/"
    };
    match query {
        Some(q) if !q.is_empty() => format!("{scheme}://{authority_and_path}{path_sep}?{q}&"),
        _ => format!("{scheme}://{authority_and_path}{path_sep}?"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_into_a_well_formed_query() {
        assert_eq!(with_query("wss://ws.finnhub.io"), "wss://ws.finnhub.io/?");
        assert_eq!(with_query("ws://127.0.0.1:9001/"), "ws://127.0.0.1:9001/?");
        assert_eq!(with_query("ws://h:1/feed?x=1"), "ws://h:1/feed?x=1&");
    }
}
