//! A Coinbase Exchange feed on loopback ([`crate::venue::simulator`] with
//! Coinbase's protocol): `subscribe` to `matches` and `heartbeat` answered
//! by `subscriptions`, one `match` per trade, a `heartbeat` per product
//! every second naming its last trade id, and `error` for an unknown
//! message.

use streamforge_model::Timestamp;

use crate::venue::simulator::{
    ClientAction, HistoryAsk, Page, SimConfig, SimProtocol, SimServer, SimTrade,
};

/// Coinbase's protocol.
#[derive(Debug)]
pub struct Protocol;

/// RFC 3339 with microseconds, as Coinbase writes times.
fn time(t: Timestamp) -> String {
    t.to_string()
}

impl SimProtocol for Protocol {
    const PREFIX: &'static str = "COINBASE";

    fn known(native: &str) -> bool {
        <super::Coinbase as crate::venue::Venue>::check_native(native).is_ok()
    }

    fn from_request(_path_and_query: &str) -> Vec<String> {
        Vec::new()
    }

    fn on_message(text: &str) -> ClientAction {
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let products: Vec<String> = v
            .get("product_ids")
            .and_then(|p| p.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let subscriptions = |products: &[String]| {
            serde_json::json!({"type": "subscriptions", "channels": [
                {"name": "matches", "product_ids": products},
                {"name": "heartbeat", "product_ids": products},
            ]})
            .to_string()
        };
        match v.get("type").and_then(|t| t.as_str()) {
            Some("subscribe") => ClientAction {
                reply: Some(subscriptions(&products)),
                subscribe: products,
                ..ClientAction::default()
            },
            Some("unsubscribe") => ClientAction {
                reply: Some(subscriptions(&[])),
                unsubscribe: products,
                ..ClientAction::default()
            },
            _ => ClientAction {
                reply: Some(
                    r#"{"type":"error","message":"Failed to subscribe","reason":"Type has to be either subscribe or unsubscribe"}"#
                        .into(),
                ),
                ..ClientAction::default()
            },
        }
    }

    fn trade(t: &SimTrade) -> String {
        serde_json::json!({
            "type": "match", "trade_id": t.id, "sequence": t.id * 3,
            "maker_order_id": "00000000-0000-4000-8000-000000000001",
            "taker_order_id": "00000000-0000-4000-8000-000000000002",
            "time": time(t.ts), "product_id": t.native,
            "size": format!("{:.8}", t.size), "price": format!("{:.2}", t.price),
            "side": if t.buyer_maker { "buy" } else { "sell" },
        })
        .to_string()
    }

    fn heartbeat(native: &str, last_trade_id: u64, at: Timestamp) -> Option<String> {
        Some(
            serde_json::json!({
                "type": "heartbeat", "sequence": last_trade_id * 3, "last_trade_id": last_trade_id,
                "product_id": native, "time": time(at),
            })
            .to_string(),
        )
    }

    fn shutdown_notice(_at: Timestamp) -> Option<String> {
        None
    }

    fn history_request(path_and_query: &str) -> Result<HistoryAsk, (u16, String)> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let Some(native) = path
            .strip_prefix("/products/")
            .and_then(|p| p.strip_suffix("/trades"))
        else {
            return Err((404, Self::refusal(404)));
        };
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        let bad = |what: &str| {
            (
                400,
                serde_json::json!({"message": format!("Invalid {what}")}).to_string(),
            )
        };
        let limit = match param("limit") {
            None => 1000,
            Some(l) => match l.parse::<usize>() {
                Ok(n @ 1..=1000) => n,
                _ => return Err(bad("limit")),
            },
        };
        let page = match param("after") {
            None => Page::LatestDescending,
            Some(id) => Page::Before(id.parse().map_err(|_| bad("after"))?),
        };
        Ok(HistoryAsk {
            native: native.to_string(),
            page,
            limit,
        })
    }

    fn history_body(trades: &[SimTrade]) -> String {
        let rows: Vec<serde_json::Value> = trades
            .iter()
            .map(|t| {
                serde_json::json!({
                    "time": time(t.ts), "trade_id": t.id, "price": format!("{:.2}", t.price),
                    "size": format!("{:.8}", t.size), "side": if t.buyer_maker { "buy" } else { "sell" },
                })
            })
            .collect();
        serde_json::Value::Array(rows).to_string()
    }

    fn refusal(status: u16) -> String {
        match status {
            404 => r#"{"message":"NotFound"}"#.into(),
            429 => r#"{"message":"Public rate limit exceeded"}"#.into(),
            401 | 403 => r#"{"message":"Unauthorized."}"#.into(),
            _ => r#"{"message":"Internal server error"}"#.into(),
        }
    }
}

/// Starts a simulated Coinbase feed; its WebSocket URL is `ws://<addr>`.
pub async fn start(config: SimConfig) -> std::io::Result<SimServer> {
    SimServer::start::<Protocol>(config).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::venue::{Parsed, VenueParser};
    use streamforge_model::{Symbol, TickRules};

    #[test]
    fn what_it_sends_is_what_the_parser_reads() {
        let t = SimTrade {
            symbol: Symbol::parse("COINBASE:BTC-USD").unwrap(),
            native: "BTC-USD".into(),
            id: 1_000_042,
            price: 64_123.45,
            size: 0.0125,
            ts: Timestamp::from_micros(1_764_288_000_123_456),
            buyer_maker: false,
        };
        let now = Timestamp::from_millis(1_764_288_000_200);
        let mut parser = super::super::parse::Parser::default();
        match parser.parse(
            Protocol::trade(&t).as_bytes(),
            &TickRules::default(),
            now,
            now,
        ) {
            Parsed::Trades { ticks, .. } => {
                assert_eq!(ticks[0].symbol(), &t.symbol);
                assert_eq!((ticks[0].price(), ticks[0].size()), (t.price, t.size));
                assert_eq!(ticks[0].ts(), t.ts);
                assert_eq!(ticks[0].source_id(), Some("1000042"));
            }
            other => panic!("{other:?}"),
        }
        let hb = Protocol::heartbeat("BTC-USD", 7, now).unwrap();
        assert!(matches!(
            parser.parse(hb.as_bytes(), &TickRules::default(), now, now),
            Parsed::Heartbeat {
                last_trade_id: 7,
                ..
            }
        ));
        let sub = Protocol::on_message(
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channels":["matches","heartbeat"]}"#,
        );
        assert_eq!(sub.subscribe, ["BTC-USD"]);
        assert!(sub.reply.unwrap().contains("subscriptions"));
    }
}
