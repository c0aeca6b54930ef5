//! What the keyless exchange feeds share (Binance, Coinbase): their
//! settings section, the connection loop and the checks on trade ids.
//!
//! A venue ([`Venue`]) says how to connect, what to send to subscribe, and
//! how to read its messages ([`VenueParser`]); [`VenueProvider`] does the
//! rest for every venue alike:
//! - symbols are spread over connections of at most
//!   [`VenueConfig::symbols_per_connection`], each subscribed with one
//!   message (the venues limit client messages per second);
//! - a connection is made again when it closes, fails or goes silent, with
//!   exponential backoff and jitter, and every outage becomes a `Gap` per
//!   symbol (reason `disconnected` or `silent`);
//! - before a venue's connection lifetime runs out
//!   ([`VenueConfig::max_lifetime`], Binance's 24 h) or when it announces a
//!   shutdown, a successor connection is made and subscribed while the old
//!   one is still read: the two overlap for a moment and nothing is lost
//!   (the trades both carry have one id, so they are stored once);
//! - trade ids are followed per symbol ([`sequence`]): a jump is a gap
//!   (reason `sequence`) even when the socket never dropped;
//! - protocol pings are answered by the WebSocket library and count as
//!   signs of life.
//!
//! # Layout
//! - this module — [`VenueConfig`], [`Venue`], [`VenueProvider`];
//! - `connection` — one WebSocket connection's loop;
//! - `backfill` — healing gaps from the venue's REST trade history;
//! - `http` — the history's HTTP client (TLS with its own roots);
//! - [`decimal`] — prices and sizes sent as decimal strings;
//! - [`sequence`] — gaps in trade ids;
//! - `events` — what happens to a connection, logged and counted once;
//! - [`simulator`] — what the venues' simulators share (market, ids, faults).

pub(crate) mod backfill;
mod connection;
pub mod decimal;
pub(crate) mod events;
pub(crate) mod http;
pub mod sequence;
pub mod simulator;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use streamforge_model::settings::{duration_text, longer_than_zero, Invalid};
use streamforge_model::{Symbol, Tick, TickRules, Timestamp};
use streamforge_telemetry::{Health, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(crate) use connection::next_backoff;

use crate::{Provider, ProviderError, ProviderFrame, Rejected};

/// Settings of one keyless venue: the `[binance]` and `[coinbase]` sections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VenueConfig {
    /// Symbols, in the venue's notation (`BTCUSDT`, `BTC-USD`) or the
    /// canonical one (`BINANCE:BTCUSDT`, `COINBASE:BTC-USD`); symbols of
    /// another venue are left to it. Empty: `--symbols`, else the venue's
    /// two most traded pairs.
    pub symbols: Vec<String>,
    /// WebSocket base URL, `ws://` or `wss://`; unset: the venue's public
    /// endpoint (Binance.US: `wss://stream.binance.us:9443`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// REST base URL of the venue's trade history, `http://` or
    /// `https://`; unset: the venue's public endpoint (Binance.US:
    /// `https://api.binance.us`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// Symbols per connection (Binance allows 1024 streams).
    pub symbols_per_connection: usize,
    /// Reconnect when nothing (trade, heartbeat or ping) arrived for this long.
    #[serde(with = "duration_text")]
    pub silence: Duration,
    /// First pause after a failure; doubles (±25% jitter) up to `backoff_max`.
    #[serde(with = "duration_text")]
    pub backoff_min: Duration,
    /// Longest pause between reconnects.
    #[serde(with = "duration_text")]
    pub backoff_max: Duration,
    /// A connection older than this is replaced by a new one, overlapping
    /// (Binance closes connections at 24 h).
    #[serde(with = "duration_text")]
    pub max_lifetime: Duration,
    /// How long a replaced connection is still read after its successor
    /// is subscribed.
    #[serde(with = "duration_text")]
    pub overlap: Duration,
    /// Heal gaps from the venue's REST trade history.
    pub history: bool,
    /// Least time between two requests to the history (Binance counts 25
    /// of its 6,000 weight a minute per request; Coinbase allows 10 a second).
    #[serde(with = "duration_text")]
    pub history_interval: Duration,
    /// A gap of more trades than this is not healed (it is `unrecoverable`).
    pub history_max_trades: u64,
}

impl Default for VenueConfig {
    fn default() -> Self {
        VenueConfig {
            symbols: Vec::new(),
            ws_url: None,
            rest_url: None,
            symbols_per_connection: 200,
            silence: Duration::from_secs(60),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(23 * 3600 + 50 * 60),
            overlap: Duration::from_secs(2),
            history: true,
            history_interval: Duration::from_secs(1),
            history_max_trades: 100_000,
        }
    }
}

fn scheme_is(url: &str, schemes: &[&str]) -> bool {
    schemes
        .iter()
        .any(|s| url.strip_prefix(s).is_some_and(|r| r.starts_with("://")))
}

impl VenueConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(url) = &self.ws_url {
            if !scheme_is(url, &["ws", "wss"]) {
                return Err(Invalid::new(
                    "ws_url",
                    format!("expected ws:// or wss://, got {url:?}"),
                ));
            }
        }
        if let Some(url) = &self.rest_url {
            if !scheme_is(url, &["http", "https"]) {
                return Err(Invalid::new(
                    "rest_url",
                    format!("expected http:// or https://, got {url:?}"),
                ));
            }
        }
        if !(1..=1024).contains(&self.symbols_per_connection) {
            return Err(Invalid::new(
                "symbols_per_connection",
                format!("must be 1 to 1024, got {}", self.symbols_per_connection),
            ));
        }
        longer_than_zero(&[
            ("silence", self.silence),
            ("backoff_min", self.backoff_min),
            ("backoff_max", self.backoff_max),
            ("max_lifetime", self.max_lifetime),
        ])?;
        if self.backoff_max < self.backoff_min {
            return Err(Invalid::new("backoff_max", "must be at least backoff_min"));
        }
        if self.overlap >= self.max_lifetime {
            return Err(Invalid::new("overlap", "must be shorter than max_lifetime"));
        }
        if !(1..=10_000_000).contains(&self.history_max_trades) {
            return Err(Invalid::new(
                "history_max_trades",
                format!("must be 1 to 10000000, got {}", self.history_max_trades),
            ));
        }
        Ok(())
    }

    /// These settings, on `fallback` symbols when they name none (`--symbols`).
    pub fn or_symbols(mut self, fallback: &[String]) -> Self {
        if self.symbols.is_empty() {
            self.symbols = fallback.to_vec();
        }
        self
    }
}

/// A venue's protocol: what [`VenueProvider`] needs to know of it.
pub trait Venue: Send + Sync + 'static {
    /// Provider id, each tick's `src_id` (`binance`).
    const ID: &'static str;
    /// Prefix of the canonical symbols (`BINANCE` in `BINANCE:BTCUSDT`).
    const PREFIX: &'static str;
    const DEFAULT_WS_URL: &'static str;
    const DEFAULT_REST_URL: &'static str;
    /// Symbols when none are configured, in the venue's notation.
    const DEFAULT_SYMBOLS: &'static [&'static str];

    type Parser: VenueParser + Default;

    /// Whether `native` is a symbol in the venue's notation; `Err` says
    /// what form it expects.
    fn check_native(native: &str) -> Result<(), String>;

    /// The URL a connection carrying `symbols` opens, from the base URL.
    fn connect_url(base: &str, symbols: &[Symbol]) -> String;

    /// The messages sent right after connecting to subscribe `symbols`.
    fn subscribe(symbols: &[Symbol]) -> Vec<String>;

    /// History pages come oldest first (the cursor moves up from the first
    /// id) or newest first (it moves down from the last).
    const HISTORY_ASCENDING: bool;

    /// The URL of one page of `native`'s trade history, for ids
    /// `first..=last`, at `cursor` (`None`: the first page).
    fn history_url(base: &str, native: &str, first: u64, last: u64, cursor: Option<u64>) -> String;

    /// The trades of one history page; `Err` says what does not read.
    fn history_rows(body: &[u8]) -> Result<Vec<HistoryRow>, String>;
}

/// One trade of a venue's REST history, as the venue wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    pub id: u64,
    /// Decimal strings.
    pub price: String,
    pub size: String,
    pub time: Timestamp,
}

/// The venue's notation of a canonical symbol: `BTCUSDT` of
/// `BINANCE:BTCUSDT`.
pub fn native(symbol: &Symbol) -> &str {
    symbol
        .as_str()
        .split_once(':')
        .map_or(symbol.as_str(), |(_, n)| n)
}

/// The canonical symbols of `configured` that belong to venue `V`: bare
/// ones (the venue's notation) and those with its prefix; those of other
/// venues are left out. Errors name the symbol and the form expected.
pub fn venue_symbols<V: Venue>(configured: &[String]) -> Result<Vec<Symbol>, String> {
    let mut out: Vec<Symbol> = Vec::new();
    let wanted: Vec<&str> = if configured.is_empty() {
        V::DEFAULT_SYMBOLS.to_vec()
    } else {
        configured.iter().map(String::as_str).collect()
    };
    for s in wanted {
        let upper = s.trim().to_ascii_uppercase();
        let native = match upper.split_once(':') {
            Some((venue, n)) if venue == V::PREFIX => n.to_string(),
            Some(_) => continue,
            None => upper.clone(),
        };
        V::check_native(&native).map_err(|e| format!("symbols: {s:?}: {e}"))?;
        let symbol = Symbol::parse(&format!("{}:{native}", V::PREFIX))
            .map_err(|e| format!("symbols: {s:?}: {e}"))?;
        if !out.contains(&symbol) {
            out.push(symbol);
        }
    }
    Ok(out)
}

/// What one message from a venue is.
#[derive(Debug)]
pub enum Parsed {
    /// Trades (each with its venue trade id) and what could not become one.
    Trades {
        ticks: Vec<Tick>,
        rejects: Vec<Rejected>,
    },
    /// The venue says the last trade of `symbol` has id `last_trade_id`.
    Heartbeat { symbol: Symbol, last_trade_id: u64 },
    /// A reply to our subscription, or another message without trades.
    Control,
    /// The server will close this connection soon: make a new one.
    Shutdown,
    /// The venue reported an error.
    Error(String),
    /// Not a message of the protocol: dead-lettered.
    Malformed(Rejected),
}

impl Parsed {
    /// Input that is not a message of the protocol, with the reason code
    /// and the error naming what was wrong.
    pub fn malformed(raw: &[u8], reason: &'static str, error: String) -> Parsed {
        Parsed::Malformed(Rejected::new(raw.to_vec(), reason, error))
    }
}

/// Makes a venue's trades into ticks: its canonical symbols (one
/// allocation per symbol), exchange and provider id shared by every tick.
#[derive(Debug)]
pub struct TickMaker {
    symbols: streamforge_model::SymbolInterner,
    prefix: &'static str,
    exchange: std::sync::Arc<str>,
    src_id: std::sync::Arc<str>,
    name: String,
}

impl TickMaker {
    /// For venue `V`: exchange `V::PREFIX`, provider `V::ID`.
    pub fn of<V: Venue>() -> Self {
        TickMaker {
            symbols: streamforge_model::SymbolInterner::default(),
            prefix: V::PREFIX,
            exchange: std::sync::Arc::from(V::PREFIX),
            src_id: std::sync::Arc::from(V::ID),
            name: String::with_capacity(32),
        }
    }

    /// The canonical symbol of `native` (`BTCUSDT` → `BINANCE:BTCUSDT`).
    pub fn symbol(&mut self, native: &str) -> Result<Symbol, streamforge_model::TickError> {
        self.name.clear();
        self.name.push_str(self.prefix);
        self.name.push(':');
        self.name.push_str(native);
        self.symbols.parse(&self.name)
    }

    /// The validated tick of one trade with the venue's `trade_id`, live
    /// or from the history (`origin`).
    #[allow(clippy::too_many_arguments)]
    pub fn tick(
        &mut self,
        native: &str,
        ts: Timestamp,
        price: f64,
        size: f64,
        trade_id: u64,
        origin: streamforge_model::Origin,
        rules: &TickRules,
        received: Timestamp,
        checked_at: Timestamp,
    ) -> Result<Tick, streamforge_model::TickError> {
        let symbol = self.symbol(native)?;
        rules.check(
            streamforge_model::TickInput {
                symbol,
                ts,
                price,
                size,
                exchange: self.exchange.clone(),
                src_id: self.src_id.clone(),
                conditions: Vec::new(),
                occurrence: 0,
                tick_id: None,
                ingested_at: received,
                source_id: Some(trade_id.to_string().into_boxed_str()),
                origin,
            },
            checked_at,
        )
    }
}

/// Reads a venue's messages.
pub trait VenueParser: Send {
    /// The message `raw`, its trades validated with `rules` against the
    /// clock `checked_at`, received at `received`.
    fn parse(
        &mut self,
        raw: &[u8],
        rules: &TickRules,
        received: Timestamp,
        checked_at: Timestamp,
    ) -> Parsed;
}

/// Any venue's parser, as a recording's replay uses it.
pub struct ReplayParser<V: Venue> {
    inner: V::Parser,
}

impl<V: Venue> Default for ReplayParser<V> {
    fn default() -> Self {
        ReplayParser {
            inner: V::Parser::default(),
        }
    }
}

impl<V: Venue> crate::FrameParse for ReplayParser<V> {
    fn parse_frame(
        &mut self,
        frame: &[u8],
        rules: &TickRules,
        ingested_at: Timestamp,
        checked_at: Timestamp,
    ) -> Option<ProviderFrame> {
        match self.inner.parse(frame, rules, ingested_at, checked_at) {
            Parsed::Trades { ticks, rejects } => Some(ProviderFrame {
                provider: V::ID,
                ticks,
                rejects,
                ..Default::default()
            }),
            Parsed::Malformed(r) => Some(ProviderFrame {
                provider: V::ID,
                rejects: vec![r],
                ..ProviderFrame::default()
            }),
            _ => None,
        }
    }
}

/// The provider of venue `V`: one task per connection.
pub struct VenueProvider<V: Venue> {
    /// Gaps of an earlier run to go on healing.
    resume: Vec<streamforge_model::Gap>,
    /// The newest stored trade of each symbol.
    last_trades: Vec<Tick>,
    config: VenueConfig,
    ws_url: String,
    symbols: Vec<Symbol>,
    rules: TickRules,
    metrics: Metrics,
    health: Health,
    venue: std::marker::PhantomData<V>,
}

impl<V: Venue> std::fmt::Debug for VenueProvider<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VenueProvider")
            .field("venue", &V::ID)
            .field("config", &self.config)
            .finish()
    }
}

impl<V: Venue> VenueProvider<V> {
    pub fn new(
        config: VenueConfig,
        rules: TickRules,
        metrics: Metrics,
        health: Health,
    ) -> Result<Self, ProviderError> {
        let config_error = |reason: String| ProviderError::Config {
            provider: V::ID,
            reason,
        };
        config
            .validate()
            .map_err(|e| config_error(e.within(V::ID).to_string()))?;
        let symbols = venue_symbols::<V>(&config.symbols)
            .map_err(|e| config_error(format!("{}.{e}", V::ID)))?;
        if symbols.is_empty() {
            return Err(config_error(format!(
                "{}.symbols: none of {:?} is a {} symbol (use {}:SYMBOL or the venue's notation)",
                V::ID,
                config.symbols,
                V::ID,
                V::PREFIX
            )));
        }
        // wss:// needs a TLS crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(VenueProvider {
            resume: Vec::new(),
            last_trades: Vec::new(),
            ws_url: config
                .ws_url
                .clone()
                .unwrap_or_else(|| V::DEFAULT_WS_URL.to_string()),
            config,
            symbols,
            rules,
            metrics,
            health,
            venue: std::marker::PhantomData,
        })
    }

    /// Goes on healing `gaps` of an earlier run (still `open` or
    /// `healing`): those whose missed ids are known are healed at once;
    /// an outage whose last missed id was not known yet (the process
    /// stopped first) is closed by its symbol's first trade now. A symbol
    /// whose newest stored trade (`last_trades`) no such gap follows — the
    /// process did not stop cleanly — gets a `downtime` gap from that trade.
    pub fn resuming(mut self, gaps: Vec<streamforge_model::Gap>, last_trades: Vec<Tick>) -> Self {
        self.resume = gaps;
        self.last_trades = last_trades;
        self
    }

    /// `downtime` gaps from the newest stored trade of each symbol that no
    /// gap of the last run follows.
    fn crash_gaps(&self, now: Timestamp) -> Vec<streamforge_model::Gap> {
        self.last_trades
            .iter()
            .filter(|t| self.symbols.contains(t.symbol()))
            .filter(|t| {
                !self
                    .resume
                    .iter()
                    .any(|g| g.symbol == *t.symbol() && g.healing.first_id.is_some())
            })
            .filter_map(|t| {
                let id: u64 = t.source_id()?.parse().ok()?;
                Some(streamforge_model::Gap {
                    provider: V::ID.to_string(),
                    connection: 0,
                    symbol: t.symbol().clone(),
                    from: t.ts().min(now),
                    to: now,
                    reason: streamforge_model::GapReason::Downtime,
                    healing: streamforge_model::Healing {
                        first_id: Some(id.saturating_add(1)),
                        ..Default::default()
                    },
                })
            })
            .collect()
    }

    /// The canonical symbols this provider subscribes.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }
}

/// Name of a symbol's advisory freshness check in `/readyz`.
pub fn symbol_check(provider: &str, symbol: &Symbol) -> String {
    format!("symbol:{provider}:{symbol}")
}

/// A symbol without trades this long shows as silent in `/readyz` (advisory).
const SYMBOL_SILENCE: Duration = Duration::from_secs(300);

#[async_trait]
impl<V: Venue> Provider for VenueProvider<V> {
    fn id(&self) -> &'static str {
        V::ID
    }

    fn max_silence(&self) -> Option<Duration> {
        Some(self.config.silence)
    }

    async fn run(
        self: Box<Self>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        tracing::info!(
            provider = V::ID,
            symbols = self.symbols.len(),
            url = %self.ws_url,
            "venue provider started"
        );
        for s in &self.symbols {
            self.health
                .expect_fresh_advisory(&symbol_check(V::ID, s), SYMBOL_SILENCE);
        }
        let mut tasks = tokio::task::JoinSet::new();
        let (heal, to_heal) = mpsc::channel(backfill::QUEUE);
        let healer = backfill::Healer::<V> {
            base: self
                .config
                .rest_url
                .clone()
                .unwrap_or_else(|| V::DEFAULT_REST_URL.to_string()),
            config: self.config.clone(),
            rules: self.rules,
            metrics: self.metrics.clone(),
            client: backfill::Healer::<V>::client().map_err(|reason| ProviderError::Config {
                provider: V::ID,
                reason,
            })?,
            venue: std::marker::PhantomData,
        };
        {
            let (out, cancel) = (out.clone(), cancel.clone());
            tasks.spawn(async move { healer.run(to_heal, out, cancel).await });
        }
        // The time down after a crash: from the newest stored trade.
        let crashed = self.crash_gaps(Timestamp::now());
        if !crashed.is_empty() {
            tracing::warn!(
                provider = V::ID,
                symbols = crashed.len(),
                "the last run did not stop cleanly: the time since its last stored trades is a gap"
            );
            let frame = ProviderFrame {
                provider: V::ID,
                gaps: crashed.clone(),
                ..ProviderFrame::default()
            };
            out.send(frame)
                .await
                .map_err(|_| ProviderError::OutputClosed { provider: V::ID })?;
        }
        // Gaps of an earlier run: healed now, or closed by the next trade.
        let (known, waiting): (Vec<_>, Vec<_>) = self
            .resume
            .iter()
            .filter(|g| self.symbols.contains(&g.symbol) && g.healing.first_id.is_some())
            .cloned()
            .chain(crashed)
            .partition(|g| g.healing.last_id.is_some());
        if !known.is_empty() {
            tracing::info!(
                provider = V::ID,
                gaps = known.len(),
                "healing the gaps of the last run"
            );
            let (heal, cancel) = (heal.clone(), cancel.clone());
            tasks.spawn(async move {
                for g in known {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        sent = heal.send(g) => if sent.is_err() { break },
                    }
                }
                Ok(())
            });
        }
        for (i, chunk) in self
            .symbols
            .chunks(self.config.symbols_per_connection)
            .enumerate()
        {
            let c = connection::Connection::<V> {
                id: i as u32,
                url: V::connect_url(&self.ws_url, chunk),
                symbols: chunk.to_vec(),
                config: self.config.clone(),
                rules: self.rules,
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                heal: heal.clone(),
                resume: waiting
                    .iter()
                    .filter(|g| chunk.contains(&g.symbol))
                    .cloned()
                    .collect(),
                venue: std::marker::PhantomData,
            };
            let (out, cancel) = (out.clone(), cancel.clone());
            tasks.spawn(async move { c.run(out, cancel).await });
        }
        drop((out, heal));
        let mut result = Ok(());
        while let Some(r) = tasks.join_next().await {
            let failed = match r {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => ProviderError::Config {
                    provider: V::ID,
                    reason: format!("a connection task failed: {e}"),
                },
            };
            cancel.cancel();
            result = Err(failed);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_limits_are_checked_by_name() {
        assert!(VenueConfig::default().validate().is_ok());
        let bad = |c: VenueConfig| c.validate().unwrap_err().to_string();
        assert!(bad(VenueConfig {
            ws_url: Some("http://x".into()),
            ..VenueConfig::default()
        })
        .starts_with("ws_url:"));
        assert!(bad(VenueConfig {
            rest_url: Some("wss://x".into()),
            ..VenueConfig::default()
        })
        .starts_with("rest_url:"));
        assert!(bad(VenueConfig {
            symbols_per_connection: 0,
            ..VenueConfig::default()
        })
        .starts_with("symbols_per_connection:"));
        assert!(bad(VenueConfig {
            backoff_max: Duration::from_millis(1),
            ..VenueConfig::default()
        })
        .starts_with("backoff_max:"));
    }
}
