//! Coinbase Exchange trades (the `matches` channel), keyless.
//!
//! A connection subscribes its products to `matches` and `heartbeat` in
//! one message (Coinbase wants a subscription within 5 s of connecting and
//! takes at most 100 client messages a second). `match` and `last_match`
//! are trades: the tick's time is `time` (RFC 3339, microseconds), its
//! venue id `trade_id` (sequential per product) is its `source_id`. Every
//! second `heartbeat` names each product's `last_trade_id`: one ahead of
//! the last trade seen is a gap even with the socket up. Prices and sizes
//! are decimal strings.
//!
//! # Layout
//! - this module — [`Coinbase`], the venue;
//! - `messages` — the protocol's messages, both ways;
//! - [`parse`] — [`parse::Parser`]: messages into ticks and rejects;
//! - `error` — why a message was refused;
//! - `history` — the REST trade history that heals gaps;
//! - [`simulator`] — a local server of the protocol, for tests and `simulate`.

mod error;
mod history;
mod messages;
pub mod parse;
pub mod simulator;

use streamforge_model::Symbol;

use crate::venue::Venue;

/// Provider id.
pub const ID: &str = "coinbase";

/// The venue.
#[derive(Debug)]
pub struct Coinbase;

impl Venue for Coinbase {
    const ID: &'static str = ID;
    const PREFIX: &'static str = "COINBASE";
    const DEFAULT_WS_URL: &'static str = "wss://ws-feed.exchange.coinbase.com";
    const DEFAULT_REST_URL: &'static str = "https://api.exchange.coinbase.com";
    const DEFAULT_SYMBOLS: &'static [&'static str] = &["BTC-USD", "ETH-USD"];

    type Parser = parse::Parser;

    fn check_native(native: &str) -> Result<(), String> {
        let part = |p: &str| {
            (1..=12).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        match native.split_once('-') {
            Some((base, quote)) if part(base) && part(quote) => Ok(()),
            _ => Err("a Coinbase product is BASE-QUOTE, e.g. BTC-USD".into()),
        }
    }

    fn connect_url(base: &str, _symbols: &[Symbol]) -> String {
        base.to_string()
    }

    const HISTORY_ASCENDING: bool = false;

    fn history_url(base: &str, native: &str, first: u64, last: u64, cursor: Option<u64>) -> String {
        history::url(base, native, first, last, cursor)
    }

    fn history_rows(body: &[u8]) -> Result<Vec<crate::venue::HistoryRow>, String> {
        history::rows(body)
    }

    fn subscribe(symbols: &[Symbol]) -> Vec<String> {
        vec![messages::subscribe(symbols)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::venue::venue_symbols;

    #[test]
    fn products_are_canonical_and_others_are_left_to_their_venue() {
        let got = venue_symbols::<Coinbase>(&[
            "btc-usd".into(),
            "COINBASE:ETH-EUR".into(),
            "BINANCE:BTCUSDT".into(),
        ])
        .unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["COINBASE:BTC-USD", "COINBASE:ETH-EUR"]);
        let err = venue_symbols::<Coinbase>(&["BTCUSD".into()]).unwrap_err();
        assert!(err.contains("BASE-QUOTE"), "{err}");
        assert_eq!(
            messages::subscribe(&got),
            r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-EUR"],"channels":["matches","heartbeat"]}"#
        );
    }
}
