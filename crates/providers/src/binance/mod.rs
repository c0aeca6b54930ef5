//! Binance spot trades (`<symbol>@trade` streams), keyless.
//!
//! Connections go to the combined-stream endpoint (`/stream`), so every
//! event arrives wrapped as `{"stream":"btcusdt@trade","data":{...}}`, and
//! subscribe with one `SUBSCRIBE` message carrying all their streams
//! (Binance takes at most 5 client messages a second and 1024 streams a
//! connection). A trade's event time `E` is when Binance sent it; the
//! tick's time is the trade time `T`; its venue id `t` is the tick's
//! `source_id`. Binance pings every 20 s (answered by the WebSocket
//! library), closes connections at 24 h (renewed before, overlapping), and
//! announces maintenance with a `serverShutdown` event (renewed at once).
//! Prices and quantities are decimal strings.
//!
//! The WebSocket and REST base URLs are settings, so Binance.US
//! (`wss://stream.binance.us:9443`, `https://api.binance.us`) works too.
//!
//! # Layout
//! - this module — [`Binance`], the venue;
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
pub const ID: &str = "binance";

/// The venue.
#[derive(Debug)]
pub struct Binance;

impl Venue for Binance {
    const ID: &'static str = ID;
    const PREFIX: &'static str = "BINANCE";
    const DEFAULT_WS_URL: &'static str = "wss://stream.binance.com:9443";
    const DEFAULT_REST_URL: &'static str = "https://api.binance.com";
    const DEFAULT_SYMBOLS: &'static [&'static str] = &["BTCUSDT", "ETHUSDT"];

    type Parser = parse::Parser;

    fn check_native(native: &str) -> Result<(), String> {
        if (2..=20).contains(&native.len())
            && native
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            Ok(())
        } else {
            Err("a Binance symbol is 2 to 20 letters and digits, e.g. BTCUSDT".into())
        }
    }

    fn connect_url(base: &str, _symbols: &[Symbol]) -> String {
        format!("{}/stream", base.trim_end_matches('/'))
    }

    const HISTORY_ASCENDING: bool = true;

    fn history_url(base: &str, native: &str, first: u64, last: u64, cursor: Option<u64>) -> String {
        history::url(base, native, first, last, cursor)
    }

    fn history_rows(body: &[u8]) -> Result<Vec<crate::venue::HistoryRow>, String> {
        history::rows(body)
    }

    fn subscribe(symbols: &[Symbol]) -> Vec<String> {
        vec![messages::subscribe(symbols, 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::venue::venue_symbols;

    #[test]
    fn symbols_are_canonical_and_others_are_left_to_their_venue() {
        let got = venue_symbols::<Binance>(&[
            "btcusdt".into(),
            "BINANCE:ETHUSDT".into(),
            "COINBASE:BTC-USD".into(),
            "BTCUSDT".into(),
        ])
        .unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"]);
        let err = venue_symbols::<Binance>(&["BTC-USD".into()]).unwrap_err();
        assert!(err.contains("BTC-USD") && err.contains("BTCUSDT"), "{err}");
        let default = venue_symbols::<Binance>(&[]).unwrap();
        assert_eq!(default.len(), 2);
        assert_eq!(
            Binance::connect_url("wss://stream.binance.us:9443/", &got),
            "wss://stream.binance.us:9443/stream"
        );
    }
}
