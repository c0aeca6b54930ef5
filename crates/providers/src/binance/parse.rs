//! Binance messages into ticks: [`Parser`].
//!
//! A trade becomes a tick of `BINANCE:<symbol>` at its trade time `T`,
//! with its trade id `t` as `source_id` (so the tick id derives from it),
//! exchange `BINANCE`, no conditions. A trade whose fields are wrong is
//! dead-lettered with the field named; the rest of the stream goes on.

use streamforge_model::{Origin, Tick, TickError, TickRules, Timestamp};

use super::error::TradeError;
use super::messages::{Envelope, Event, Trade};
use super::Binance;
use crate::venue::{decimal, Parsed, TickMaker, VenueParser};
use crate::Rejected;

/// Reads Binance's messages, reusing one allocation per symbol and tag.
#[derive(Debug)]
pub struct Parser {
    ticks: TickMaker,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            ticks: TickMaker::of::<Binance>(),
        }
    }
}

impl VenueParser for Parser {
    fn parse(
        &mut self,
        raw: &[u8],
        rules: &TickRules,
        received: Timestamp,
        checked_at: Timestamp,
    ) -> Parsed {
        let envelope: Envelope<'_> = match serde_json::from_slice(raw) {
            Ok(e) => e,
            Err(e) => return Parsed::malformed(raw, "malformed_json", format!("frame: {e}")),
        };
        if let Some(err) = envelope.error {
            return Parsed::Error(format!("code {}: {}", err.code, err.msg));
        }
        if let (Some(code), Some(msg)) = (envelope.code, &envelope.msg) {
            return Parsed::Error(format!("code {code}: {msg}"));
        }
        let (kind, payload) = match envelope.data {
            Some(data) => match serde_json::from_str::<Event<'_>>(data.get()) {
                Ok(ev) => (ev.e.into_owned(), data.get().as_bytes()),
                Err(e) => return Parsed::malformed(raw, "malformed_json", format!("data: {e}")),
            },
            None => match envelope.e {
                Some(e) => (e.into_owned(), raw),
                // A reply to our request: `{"result":null,"id":1}`.
                None if envelope.id.is_some() => return Parsed::Control,
                None => {
                    return Parsed::malformed(
                        raw,
                        "unknown_message",
                        "frame: neither a stream event, an event nor a reply".into(),
                    )
                }
            },
        };
        match kind.as_str() {
            "trade" => match self.trade(payload, rules, received, checked_at) {
                Ok(Ok(tick)) => Parsed::Trades {
                    ticks: vec![tick],
                    rejects: Vec::new(),
                },
                Ok(Err(e)) => self.rejected(raw, payload, e.reason(), e.to_string()),
                Err(e) => self.rejected(raw, payload, e.reason(), e.to_string()),
            },
            "serverShutdown" => Parsed::Shutdown,
            // Events of streams this provider does not read.
            _ => Parsed::Control,
        }
    }
}

impl Parser {
    /// A trade refused, with its symbol and time when they read (the
    /// ledger counts it in that minute).
    fn rejected(
        &mut self,
        raw: &[u8],
        payload: &[u8],
        reason: &'static str,
        error: String,
    ) -> Parsed {
        let mut r = Rejected::new(raw.to_vec(), reason, error);
        if let Ok(t) = serde_json::from_slice::<Trade<'_>>(payload) {
            if let Ok(symbol) = self.ticks.symbol(&t.symbol) {
                r = r.of(symbol, Timestamp::from_millis(t.time));
            }
        }
        Parsed::Malformed(r)
    }

    fn trade(
        &mut self,
        payload: &[u8],
        rules: &TickRules,
        received: Timestamp,
        checked_at: Timestamp,
    ) -> Result<Result<Tick, TickError>, TradeError> {
        let t: Trade<'_> = serde_json::from_slice(payload)?;
        let price = decimal::parse(&t.price).map_err(TradeError::Price)?;
        let size = decimal::parse(&t.quantity).map_err(TradeError::Quantity)?;
        Ok(self.ticks.tick(
            &t.symbol,
            Timestamp::from_millis(t.time),
            price,
            size,
            t.id,
            Origin::Live,
            rules,
            received,
            checked_at,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamforge_model::TickId;

    fn at() -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000)
    }

    fn parse(line: &str) -> Parsed {
        Parser::default().parse(line.as_bytes(), &TickRules::default(), at(), at())
    }

    #[test]
    fn recorded_trades_become_ticks_with_their_venue_ids() {
        let lines: Vec<&str> = include_str!("test_data/frames.ndjson").lines().collect();
        let mut ticks = Vec::new();
        for line in &lines {
            match parse(line) {
                Parsed::Trades { ticks: t, rejects } => {
                    assert!(rejects.is_empty());
                    ticks.extend(t);
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        assert_eq!(ticks.len(), 3);
        let t = &ticks[1];
        assert_eq!(t.symbol().as_str(), "BINANCE:BTCUSDT");
        assert_eq!(t.price(), 58942.01);
        assert_eq!(t.size(), 0.000356);
        assert_eq!(
            t.ts(),
            Timestamp::from_millis(1_616_176_861_893),
            "trade time T, not E"
        );
        assert_eq!(t.source_id(), Some("716849523"));
        assert_eq!(t.exchange(), "BINANCE");
        assert_eq!(t.src_id(), "binance");
        assert_eq!(t.ingested_at(), at());
        assert_eq!(
            t.tick_id(),
            TickId::from_source("binance", t.symbol(), "716849523")
        );
        assert_eq!(ticks[0].symbol().as_str(), "BINANCE:BNBBTC");
        assert_eq!(
            ticks[2].source_id(),
            Some("716849524"),
            "a raw (unwrapped) event"
        );
    }

    #[test]
    fn replies_notices_and_errors_are_told_apart() {
        for line in include_str!("test_data/control.ndjson").lines() {
            assert!(matches!(parse(line), Parsed::Control), "{line}");
        }
        for line in include_str!("test_data/shutdown.ndjson").lines() {
            assert!(matches!(parse(line), Parsed::Shutdown), "{line}");
        }
        for line in include_str!("test_data/errors.ndjson").lines() {
            match parse(line) {
                Parsed::Error(msg) => assert!(msg.starts_with("code 2: Invalid request"), "{msg}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_trades_are_refused_naming_the_field() {
        let base = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"PRICE","q":"QTY","T":1616176861893,"m":true}}"#;
        let cases = [
            (
                base.replace("PRICE", "1e5").replace("QTY", "1"),
                "invalid_price",
                "p (price)",
            ),
            (
                base.replace("PRICE", "1.5").replace("QTY", "-1"),
                "invalid_size",
                "q (quantity)",
            ),
            (
                base.replace("PRICE", "0").replace("QTY", "1"),
                "invalid_price",
                "price",
            ),
            (
                base.replace("\"t\":7", "\"t\":\"x\"")
                    .replace("PRICE", "1")
                    .replace("QTY", "1"),
                "malformed_trade",
                "trade",
            ),
            (
                base.replace("BTCUSDT\",\"t", "btc usdt\",\"t")
                    .replace("PRICE", "1")
                    .replace("QTY", "1"),
                "invalid_symbol",
                "symbol",
            ),
            (
                r#"{"stream":"x","data":{"s":1}}"#.to_string(),
                "malformed_json",
                "data",
            ),
            (r#"{"hello":1}"#.to_string(), "unknown_message", "frame"),
            (r#"{"e":"trade","#.to_string(), "malformed_json", "frame"),
        ];
        for (line, reason, field) in cases {
            match parse(&line) {
                Parsed::Malformed(r) => {
                    assert_eq!(r.reason, reason, "{line}: {}", r.error);
                    assert!(r.error.contains(field), "{line}: {}", r.error);
                    assert_eq!(r.raw, line.as_bytes());
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
