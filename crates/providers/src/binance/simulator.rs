//! A Binance spot stream server on loopback ([`crate::venue::simulator`]
//! with Binance's protocol): combined streams at `/stream` (also
//! `?streams=a@trade/b@trade`), raw streams at `/ws/<stream>`,
//! `SUBSCRIBE`/`UNSUBSCRIBE` with their `{"result":null,"id":N}` replies,
//! one `trade` event per trade wrapped as `{"stream":...,"data":...}`,
//! ping frames, and a `serverShutdown` event before a forced close.

use streamforge_model::Timestamp;

use crate::venue::simulator::{
    ClientAction, HistoryAsk, Page, SimConfig, SimProtocol, SimServer, SimTrade,
};

/// Binance's protocol.
#[derive(Debug)]
pub struct Protocol;

/// `btcusdt@trade` → `BTCUSDT`.
fn stream_symbol(stream: &str) -> Option<String> {
    stream
        .strip_suffix("@trade")
        .map(|s| s.to_ascii_uppercase())
}

impl SimProtocol for Protocol {
    const PREFIX: &'static str = "BINANCE";

    fn known(native: &str) -> bool {
        <super::Binance as crate::venue::Venue>::check_native(native).is_ok()
    }

    fn from_request(path_and_query: &str) -> Vec<String> {
        if let Some(stream) = path_and_query.strip_prefix("/ws/") {
            return stream_symbol(stream).into_iter().collect();
        }
        path_and_query
            .split_once("streams=")
            .map(|(_, list)| list.split('/').filter_map(stream_symbol).collect())
            .unwrap_or_default()
    }

    fn on_message(text: &str) -> ClientAction {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return ClientAction {
                reply: Some(r#"{"code":2,"msg":"Invalid request: invalid JSON"}"#.into()),
                ..ClientAction::default()
            };
        };
        let id = v.get("id").cloned().unwrap_or(serde_json::Value::Null);
        let streams: Vec<String> = v
            .get("params")
            .and_then(|p| p.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().and_then(stream_symbol))
                    .collect()
            })
            .unwrap_or_default();
        let ok = serde_json::json!({"result": null, "id": id}).to_string();
        match v.get("method").and_then(|m| m.as_str()) {
            Some("SUBSCRIBE") => ClientAction {
                subscribe: streams,
                reply: Some(ok),
                ..ClientAction::default()
            },
            Some("UNSUBSCRIBE") => ClientAction {
                unsubscribe: streams,
                reply: Some(ok),
                ..ClientAction::default()
            },
            _ => ClientAction {
                reply: Some(
                    serde_json::json!({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": id})
                        .to_string(),
                ),
                ..ClientAction::default()
            },
        }
    }

    fn trade(t: &SimTrade) -> String {
        let stream = format!("{}@trade", t.native.to_ascii_lowercase());
        let ms = t.ts.as_millis();
        serde_json::json!({
            "stream": stream,
            "data": {
                "e": "trade", "E": ms + 1, "s": t.native, "t": t.id,
                "p": format!("{:.8}", t.price), "q": format!("{:.8}", t.size),
                "T": ms, "m": t.buyer_maker, "M": true,
            }
        })
        .to_string()
    }

    fn heartbeat(_native: &str, _last_trade_id: u64, _at: Timestamp) -> Option<String> {
        None
    }

    fn shutdown_notice(at: Timestamp) -> Option<String> {
        Some(serde_json::json!({"e": "serverShutdown", "E": at.as_millis()}).to_string())
    }

    fn history_request(path_and_query: &str) -> Result<HistoryAsk, (u16, String)> {
        let error = |code: i64, msg: &str| {
            (
                400,
                serde_json::json!({"code": code, "msg": msg}).to_string(),
            )
        };
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        if path != "/api/v3/historicalTrades" {
            return Err((404, String::new()));
        }
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        let native = param("symbol").ok_or_else(|| {
            error(
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        })?;
        let limit = match param("limit") {
            None => 500,
            Some(l) => match l.parse::<usize>() {
                Ok(n @ 1..=1000) => n,
                _ => {
                    return Err(error(
                        -1100,
                        "Illegal characters found in parameter 'limit'.",
                    ))
                }
            },
        };
        let page = match param("fromId") {
            None => Page::LatestAscending,
            Some(id) => Page::From(
                id.parse()
                    .map_err(|_| error(-1100, "Illegal characters found in parameter 'fromId'."))?,
            ),
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
                    "id": t.id, "price": format!("{:.8}", t.price), "qty": format!("{:.8}", t.size),
                    "quoteQty": format!("{:.8}", t.price * t.size), "time": t.ts.as_millis(),
                    "isBuyerMaker": t.buyer_maker, "isBestMatch": true,
                })
            })
            .collect();
        serde_json::Value::Array(rows).to_string()
    }

    fn refusal(status: u16) -> String {
        match status {
            404 => r#"{"code":-1121,"msg":"Invalid symbol."}"#.into(),
            429 => r#"{"code":-1003,"msg":"Too many requests; current limit is 6000 request weight per 1 MINUTE."}"#.into(),
            401 | 403 => r#"{"code":-2014,"msg":"API-key format invalid."}"#.into(),
            _ => r#"{"code":-1000,"msg":"An unknown error occurred while processing the request."}"#.into(),
        }
    }
}

/// Starts a simulated Binance; its WebSocket base URL is `ws://<addr>`.
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
            symbol: Symbol::parse("BINANCE:BTCUSDT").unwrap(),
            native: "BTCUSDT".into(),
            id: 1_000_042,
            price: 64_123.45,
            size: 0.0125,
            ts: Timestamp::from_millis(1_764_288_000_123),
            buyer_maker: true,
        };
        let now = Timestamp::from_millis(1_764_288_000_200);
        match super::super::parse::Parser::default().parse(
            Protocol::trade(&t).as_bytes(),
            &TickRules::default(),
            now,
            now,
        ) {
            Parsed::Trades { ticks, .. } => {
                assert_eq!(ticks[0].symbol(), &t.symbol);
                assert_eq!(ticks[0].price(), t.price);
                assert_eq!(ticks[0].size(), t.size);
                assert_eq!(ticks[0].ts(), t.ts);
                assert_eq!(ticks[0].source_id(), Some("1000042"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Protocol::from_request("/stream?streams=btcusdt@trade/ethusdt@trade"),
            ["BTCUSDT", "ETHUSDT"]
        );
        assert_eq!(Protocol::from_request("/ws/bnbbtc@trade"), ["BNBBTC"]);
        let sub =
            Protocol::on_message(r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":3}"#);
        assert_eq!(sub.subscribe, ["BTCUSDT"]);
        let reply: serde_json::Value = serde_json::from_str(sub.reply.as_deref().unwrap()).unwrap();
        assert_eq!(reply, serde_json::json!({"result": null, "id": 3}));
    }
}
