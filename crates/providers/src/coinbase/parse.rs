//! Coinbase messages into ticks: [`Parser`].
//!
//! A `match` (or `last_match`) becomes a tick of `COINBASE:<product>` at
//! its `time`, with its `trade_id` as `source_id`, exchange `COINBASE`, no
//! conditions. A `heartbeat` reports the product's last trade id. A trade
//! whose fields are wrong is dead-lettered with the field named.

use streamforge_model::{Origin, Tick, TickError, TickRules, Timestamp};

use super::error::MessageError;
use super::messages::{Error, Heartbeat, Match, Typed};
use super::Coinbase;
use crate::venue::{decimal, Parsed, TickMaker, VenueParser};
use crate::Rejected;

/// Reads Coinbase's messages, reusing one allocation per symbol and tag.
#[derive(Debug)]
pub struct Parser {
    ticks: TickMaker,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            ticks: TickMaker::of::<Coinbase>(),
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
        let typed: Typed<'_> = match serde_json::from_slice(raw) {
            Ok(t) => t,
            Err(e) => return Parsed::malformed(raw, "malformed_json", format!("frame: {e}")),
        };
        match typed.kind.as_ref() {
            "match" | "last_match" => match self.trade(raw, rules, received, checked_at) {
                Ok(Ok(tick)) => Parsed::Trades {
                    ticks: vec![tick],
                    rejects: Vec::new(),
                },
                Ok(Err(e)) => self.rejected(raw, e.reason(), e.to_string()),
                Err(e) => self.rejected(raw, e.reason(), e.to_string()),
            },
            "heartbeat" => match serde_json::from_slice::<Heartbeat<'_>>(raw) {
                Ok(h) => match self.ticks.symbol(&h.product_id) {
                    Ok(symbol) => Parsed::Heartbeat {
                        symbol,
                        last_trade_id: h.last_trade_id,
                    },
                    Err(e) => Parsed::malformed(raw, e.reason(), e.to_string()),
                },
                Err(e) => Parsed::malformed(raw, "malformed_heartbeat", format!("heartbeat: {e}")),
            },
            "error" => match serde_json::from_slice::<Error>(raw) {
                Ok(e) if e.reason.is_empty() => Parsed::Error(e.message),
                Ok(e) => Parsed::Error(format!("{}: {}", e.message, e.reason)),
                Err(e) => Parsed::Error(format!("an error message that does not read: {e}")),
            },
            // `subscriptions`, and channels this provider does not read.
            _ => Parsed::Control,
        }
    }
}

impl Parser {
    /// A match refused, with its symbol and time when they read (the
    /// ledger counts it in that minute).
    fn rejected(&mut self, raw: &[u8], reason: &'static str, error: String) -> Parsed {
        let mut r = Rejected::new(raw.to_vec(), reason, error);
        if let Ok(m) = serde_json::from_slice::<Match<'_>>(raw) {
            if let (Ok(symbol), Ok(ts)) =
                (self.ticks.symbol(&m.product_id), Timestamp::parse(&m.time))
            {
                r = r.of(symbol, ts);
            }
        }
        Parsed::Malformed(r)
    }

    fn trade(
        &mut self,
        raw: &[u8],
        rules: &TickRules,
        received: Timestamp,
        checked_at: Timestamp,
    ) -> Result<Result<Tick, TickError>, MessageError> {
        let m: Match<'_> = serde_json::from_slice(raw).map_err(|source| MessageError::Json {
            kind: "match",
            source,
        })?;
        let price = decimal::parse(&m.price).map_err(MessageError::Price)?;
        let size = decimal::parse(&m.size).map_err(MessageError::Size)?;
        let ts = Timestamp::parse(&m.time)
            .map_err(|_| MessageError::Time(m.time.chars().take(40).collect()))?;
        Ok(self.ticks.tick(
            &m.product_id,
            ts,
            price,
            size,
            m.trade_id,
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
    fn recorded_matches_become_ticks_with_their_trade_ids() {
        let mut ticks = Vec::new();
        for line in include_str!("test_data/frames.ndjson").lines() {
            match parse(line) {
                Parsed::Trades { ticks: t, .. } => ticks.extend(t),
                other => panic!("{line}: {other:?}"),
            }
        }
        let t = &ticks[0];
        assert_eq!(t.symbol().as_str(), "COINBASE:BTC-USD");
        assert_eq!(t.price(), 400.23);
        assert_eq!(t.size(), 5.23512);
        assert_eq!(
            t.ts(),
            Timestamp::parse("2014-11-07T08:19:27.028459Z").unwrap()
        );
        assert_eq!(t.ts().as_micros() % 1_000_000, 28_459, "microseconds kept");
        assert_eq!(t.source_id(), Some("10"));
        assert_eq!(t.exchange(), "COINBASE");
        assert_eq!(
            t.tick_id(),
            TickId::from_source("coinbase", t.symbol(), "10")
        );
        assert_eq!(
            ticks[1].source_id(),
            Some("147587438"),
            "last_match is a trade"
        );
    }

    #[test]
    fn heartbeats_subscriptions_and_errors_are_told_apart() {
        match parse(include_str!("test_data/heartbeat.ndjson").trim()) {
            Parsed::Heartbeat {
                symbol,
                last_trade_id,
            } => {
                assert_eq!(symbol.as_str(), "COINBASE:BTC-USD");
                assert_eq!(last_trade_id, 20);
            }
            other => panic!("{other:?}"),
        }
        for line in include_str!("test_data/control.ndjson").lines() {
            assert!(matches!(parse(line), Parsed::Control), "{line}");
        }
        match parse(include_str!("test_data/errors.ndjson").trim()) {
            Parsed::Error(m) => {
                assert_eq!(m, "Failed to subscribe: BTC-XYZ is not a valid product")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_matches_are_refused_naming_the_field() {
        let base = r#"{"type":"match","trade_id":10,"time":"TIME","product_id":"BTC-USD","size":"SIZE","price":"PRICE","side":"sell"}"#;
        let ok = |s: &str| {
            s.replace("TIME", "2014-11-07T08:19:27.028459Z")
                .replace("SIZE", "1")
                .replace("PRICE", "2")
        };
        let cases = [
            (ok(&base.replace("PRICE", "1e3")), "invalid_price", "price"),
            (ok(&base.replace("SIZE", "x")), "invalid_size", "size"),
            (ok(&base.replace("TIME", "yesterday")), "invalid_ts", "time"),
            (
                ok(&base.replace("\"trade_id\":10", "\"trade_id\":-1")),
                "malformed_trade",
                "match",
            ),
            (
                ok(&base.replace("BTC-USD", "btc usd")),
                "invalid_symbol",
                "symbol",
            ),
            (
                ok(&base.replace("TIME", "1980-01-01T00:00:00Z")),
                "ts_too_old",
                "ts",
            ),
            (
                r#"{"type":"heartbeat","product_id":"BTC-USD"}"#.to_string(),
                "malformed_heartbeat",
                "heartbeat",
            ),
            (r#"{"no_type":1}"#.to_string(), "malformed_json", "frame"),
        ];
        for (line, reason, field) in cases {
            match parse(&line) {
                Parsed::Malformed(r) => {
                    assert_eq!(r.reason, reason, "{line}: {}", r.error);
                    assert!(r.error.contains(field), "{line}: {}", r.error);
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
