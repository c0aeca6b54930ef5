//! The Finnhub trade WebSocket (`wss://ws.finnhub.io?token=KEY`).
//!
//! Symbols are spread over connections of at most
//! [`FinnhubConfig::max_symbols_per_connection`] each, one API token per
//! connection: Finnhub's documentation allows one open connection per key,
//! so more symbols than one connection takes need more tokens
//! ([`FinnhubConfig::tokens`]). Every connection:
//! - subscribes each of its symbols (again after every reconnect);
//! - parses frames into ticks (see [`parse`]); malformed input goes to the
//!   dead-letter path, never stops the feed;
//! - reconnects when the socket closes or fails, or when nothing at all
//!   (trade or ping) arrived for the silence window — the watchdog for
//!   connections that stay open but go quiet;
//! - backs off exponentially with jitter on failures; a rejected token
//!   (HTTP 401) is a configuration error, logged as such and retried slowly;
//! - records a `Gap` per symbol for every outage, from the last message
//!   before it to the moment the symbol is subscribed again (or to shutdown,
//!   if that comes first), because Finnhub replays nothing.
//!
//! The token is a [`Secret`]: it is only written into the connect request.
//!
//! # Layout
//! - this module — [`FinnhubConfig`], the `[finnhub]` section;
//! - [`client`] — [`FinnhubProvider`] and its connections;
//! - `messages` — the protocol's messages, both ways;
//! - [`parse`] — [`FrameParser`]: server messages into ticks and rejects;
//! - `error` — what goes wrong, for the provider's errors;
//! - [`simulator`] — a local server of the protocol, for tests and `simulate`.

pub mod client;
mod error;
mod events;
mod history;
mod messages;
pub mod parse;
pub mod simulator;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use streamforge_model::settings::{duration_text, longer_than_zero, Invalid};

pub use client::{symbol_check, FinnhubProvider};
pub use history::DEFAULT_REST_URL;
pub use parse::{FrameParser, Parsed, ID};
pub use simulator::{HistoryPlan, Simulator, SimulatorConfig};

use crate::Secret;

/// Finnhub's public endpoint.
pub const DEFAULT_URL: &str = "wss://ws.finnhub.io";

/// Longest wait for a connection (TCP, TLS and the upgrade).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest WebSocket message (and frame) taken from the server: far above
/// any real trade message (a few KB), well below the bus's message limit.
/// A larger one is refused before it is buffered, counted and dead-lettered
/// (without its content), and the connection is made again.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Settings of the Finnhub provider: the `[finnhub]` section. Finnhub runs
/// instead of the synthetic market when a token is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinnhubConfig {
    /// API token (`--finnhub-token`, `FINNHUB_TOKEN`); `config print` shows `***`.
    #[serde(skip_serializing_if = "Secret::is_empty")]
    pub token: Secret,
    /// More API tokens: each opens one connection (Finnhub allows one per
    /// key), so `token` plus these carry up to their number ×
    /// `max_symbols_per_connection` symbols.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<Secret>,
    /// Symbols in Finnhub's notation (AAPL, BINANCE:BTCUSDT, OANDA:EUR_USD);
    /// empty = the synthetic market's `symbols` (`--symbols`).
    pub symbols: Vec<String>,
    /// WebSocket endpoint, `ws://` or `wss://` (`--finnhub-url`; the
    /// simulator: `ws://127.0.0.1:9001`).
    pub url: String,
    /// Symbols per connection (Finnhub's free tier: 50).
    pub max_symbols_per_connection: usize,
    /// Reconnect when nothing (trade or ping) arrived for this long
    /// (Finnhub pings about once a minute, also while markets are closed).
    #[serde(with = "duration_text")]
    pub silence: Duration,
    /// First pause after a failure; doubles (±25% jitter) up to `backoff_max`.
    #[serde(with = "duration_text")]
    pub backoff_min: Duration,
    /// Longest pause between reconnects.
    #[serde(with = "duration_text")]
    pub backoff_max: Duration,
    /// Pause after the token was rejected (HTTP 401): long, not hammered.
    #[serde(with = "duration_text")]
    pub unauthorized_retry: Duration,
    /// A symbol without trades this long shows as silent in `/readyz`
    /// (advisory: markets close).
    #[serde(with = "duration_text")]
    pub symbol_silence: Duration,
    /// REST API base URL, `http://` or `https://`; unset: Finnhub's
    /// (`https://finnhub.io/api/v1`) with the default `url`, else `url`'s
    /// host with `/api/v1` (the simulator serves both on one port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// Heal gaps from the trade history (`/stock/tick`, a paid plan; a
    /// free key's 403 marks the gap `unrecoverable`).
    pub history: bool,
    /// Least time between two history requests (Finnhub allows 60 calls a
    /// minute on a free key, more on paid plans).
    #[serde(with = "duration_text")]
    pub history_interval: Duration,
    /// How often a gap the history does not reach past yet is read again
    /// (Finnhub publishes a day's trades after it ends; for up to 2 days).
    #[serde(with = "duration_text")]
    pub history_retry: Duration,
    /// A gap whose trades fill more history pages (of 25,000) than this is
    /// not healed (it is `unrecoverable`).
    pub history_max_pages: u64,
}

impl Default for FinnhubConfig {
    fn default() -> Self {
        FinnhubConfig {
            token: Secret::default(),
            tokens: Vec::new(),
            symbols: Vec::new(),
            url: DEFAULT_URL.into(),
            max_symbols_per_connection: 50,
            silence: Duration::from_secs(90),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            unauthorized_retry: Duration::from_secs(300),
            symbol_silence: Duration::from_secs(300),
            rest_url: None,
            history: true,
            history_interval: Duration::from_secs(1),
            history_retry: Duration::from_secs(15 * 60),
            history_max_pages: 40,
        }
    }
}

/// Whether `url`'s host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl FinnhubConfig {
    /// Whether Finnhub runs: a token is set.
    pub fn enabled(&self) -> bool {
        !self.all_tokens().is_empty()
    }

    /// `token` and then `tokens`, each once: one connection each.
    pub fn all_tokens(&self) -> Vec<Secret> {
        let mut all: Vec<Secret> = Vec::new();
        for t in std::iter::once(&self.token).chain(&self.tokens) {
            if !t.is_empty() && !all.iter().any(|a| a.expose() == t.expose()) {
                all.push(t.clone());
            }
        }
        all
    }

    /// The REST API's base URL: `rest_url`, else Finnhub's with the
    /// default `url`, else `url`'s scheme and host with `/api/v1`.
    pub fn rest_base(&self) -> String {
        if let Some(url) = &self.rest_url {
            return url.trim_end_matches('/').to_string();
        }
        if self.url.trim_end_matches('/') == DEFAULT_URL {
            return DEFAULT_REST_URL.to_string();
        }
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("ws", &self.url));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let scheme = if scheme == "wss" { "https" } else { "http" };
        format!("{scheme}://{authority}/api/v1")
    }

    /// Connections `symbols` symbols need, and an error when there are
    /// fewer tokens than that.
    pub fn connections_for(&self, symbols: usize) -> Result<usize, Invalid> {
        let per = self.max_symbols_per_connection.max(1);
        let needed = symbols.div_ceil(per);
        let tokens = self.all_tokens().len();
        if needed > tokens {
            return Err(Invalid::new(
                "tokens",
                format!(
                    "{symbols} symbols need {needed} connections of at most {per} \
                     (finnhub.max_symbols_per_connection), and Finnhub allows one open connection \
                     per API key: configure {needed} tokens (finnhub.token and finnhub.tokens; \
                     {tokens} set), or subscribe to at most {} symbols",
                    tokens * per
                ),
            ));
        }
        Ok(needed)
    }

    /// These settings, on `fallback` symbols when they name none (the
    /// synthetic market's `symbols`, i.e. `--symbols`).
    pub fn or_symbols(mut self, fallback: &[String]) -> Self {
        if self.symbols.is_empty() {
            self.symbols = fallback.to_vec();
        }
        self
    }

    /// Checks every setting but the symbols (which only matter when the
    /// provider runs), and that a token never goes unencrypted to another
    /// host; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(Invalid::new(
                "url",
                format!("expected ws:// or wss://, got {:?}", self.url),
            ));
        }
        if let Some(i) = self.tokens.iter().position(Secret::is_empty) {
            return Err(Invalid::new(format!("tokens[{i}]"), "is empty"));
        }
        if self.enabled() && self.url.starts_with("ws://") && !loopback_url(&self.url) {
            return Err(Invalid::new(
                "url",
                format!(
                    "{} is ws:// to a host other than this one: the token would travel unencrypted; use wss:// (ws:// is for a local simulator)",
                    self.url
                ),
            ));
        }
        if let Some(rest) = &self.rest_url {
            if !(rest.starts_with("http://") || rest.starts_with("https://")) {
                return Err(Invalid::new(
                    "rest_url",
                    format!("expected http:// or https://, got {rest:?}"),
                ));
            }
        }
        let rest = self.rest_base();
        if self.enabled() && rest.starts_with("http://") && !loopback_url(&rest) {
            return Err(Invalid::new(
                "rest_url",
                format!(
                    "{rest} is http:// to a host other than this one: the token would travel unencrypted; use https://"
                ),
            ));
        }
        if self.history_max_pages == 0 {
            return Err(Invalid::new("history_max_pages", "must be at least 1"));
        }
        if self.max_symbols_per_connection == 0 {
            return Err(Invalid::new(
                "max_symbols_per_connection",
                "must be at least 1",
            ));
        }
        longer_than_zero(&[
            ("history_retry", self.history_retry),
            ("silence", self.silence),
            ("backoff_min", self.backoff_min),
            ("backoff_max", self.backoff_max),
        ])?;
        if self.backoff_max < self.backoff_min {
            return Err(Invalid::new("backoff_max", "must be at least backoff_min"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_carries_one_connection_of_symbols() {
        let c = FinnhubConfig {
            token: Secret::new("a"),
            tokens: vec![Secret::new("b"), Secret::new("a"), Secret::new("c")],
            max_symbols_per_connection: 50,
            ..FinnhubConfig::default()
        };
        let all: Vec<String> = c
            .all_tokens()
            .iter()
            .map(|t| t.expose().to_string())
            .collect();
        assert_eq!(all, ["a", "b", "c"], "each token once, `token` first");
        assert_eq!(c.connections_for(1).unwrap(), 1);
        assert_eq!(c.connections_for(150).unwrap(), 3);
        let e = c.connections_for(151).unwrap_err().to_string();
        assert!(
            e.contains("finnhub.tokens")
                && e.contains("4 connections")
                && e.contains("at most 150"),
            "{e}"
        );
        let only_list = FinnhubConfig {
            tokens: vec![Secret::new("x")],
            ..FinnhubConfig::default()
        };
        assert!(only_list.enabled());
        let empty = FinnhubConfig {
            tokens: vec![Secret::new("")],
            ..FinnhubConfig::default()
        };
        assert!(empty
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tokens[0]"));
    }

    #[test]
    fn a_token_goes_unencrypted_only_to_this_machine() {
        let with = |url: &str, token: &str| FinnhubConfig {
            url: url.into(),
            token: Secret::new(token),
            ..FinnhubConfig::default()
        };
        for url in [
            "ws://127.0.0.1:9001",
            "ws://localhost:9001/",
            "ws://[::1]:9001?x=1",
            "wss://ws.finnhub.io",
        ] {
            assert!(with(url, "t").validate().is_ok(), "{url}");
        }
        for url in [
            "ws://ws.finnhub.io",
            "ws://10.0.0.5:9001",
            "ws://127.0.0.1.evil.example/",
        ] {
            let err = with(url, "t").validate().unwrap_err().to_string();
            assert!(
                err.contains("url") && err.contains("wss://"),
                "{url}: {err}"
            );
        }
        let rest = |url: &str, rest: Option<&str>| FinnhubConfig {
            rest_url: rest.map(str::to_string),
            ..with(url, "t")
        };
        assert_eq!(
            rest("wss://ws.finnhub.io", None).rest_base(),
            DEFAULT_REST_URL
        );
        assert_eq!(
            rest("ws://127.0.0.1:9001/?x=1", None).rest_base(),
            "http://127.0.0.1:9001/api/v1"
        );
        assert_eq!(
            rest("wss://feed.example:8443", None).rest_base(),
            "https://feed.example:8443/api/v1"
        );
        assert!(
            rest("wss://ws.finnhub.io", Some("http://finnhub.io/api/v1"))
                .validate()
                .unwrap_err()
                .to_string()
                .contains("rest_url")
        );
        assert!(rest("wss://ws.finnhub.io", Some("ftp://x"))
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rest_url"));
        // Without a token nothing is sent: any URL is fine.
        assert!(with("ws://ws.finnhub.io", "").validate().is_ok());
    }
}
