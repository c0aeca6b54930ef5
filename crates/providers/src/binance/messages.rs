//! Binance's stream messages, both ways (spot WebSocket Streams).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use streamforge_model::Symbol;

/// `{"method":"SUBSCRIBE","params":["btcusdt@trade",...],"id":N}`.
pub(super) fn subscribe(symbols: &[Symbol], id: u64) -> String {
    let params: Vec<String> = symbols
        .iter()
        .map(|s| format!("{}@trade", crate::venue::native(s).to_ascii_lowercase()))
        .collect();
    serde_json::json!({"method": "SUBSCRIBE", "params": params, "id": id}).to_string()
}

/// Any message from the server: a combined-stream event
/// (`stream` + `data`), a raw event (`e`), a reply to a request (`id`
/// with `result` or `error`), or an error of its own (`code`, `msg`).
#[derive(Deserialize)]
pub(super) struct Envelope<'a> {
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub e: Option<Cow<'a, str>>,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<ErrorBody>,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub msg: Option<String>,
}

/// The event inside a combined-stream message.
#[derive(Deserialize)]
pub(super) struct Event<'a> {
    #[serde(borrow)]
    pub e: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub msg: String,
}

/// A `trade` event. Fields Binance has added or dropped over time (the
/// order ids `b`, `a`; `M`) and the maker side `m` are not read.
#[derive(Deserialize)]
pub(super) struct Trade<'a> {
    /// Symbol, upper case (`BTCUSDT`).
    #[serde(rename = "s", borrow)]
    pub symbol: Cow<'a, str>,
    /// Trade id, sequential per symbol.
    #[serde(rename = "t")]
    pub id: u64,
    #[serde(rename = "p", borrow)]
    pub price: Cow<'a, str>,
    #[serde(rename = "q", borrow)]
    pub quantity: Cow<'a, str>,
    /// Trade time, epoch milliseconds.
    #[serde(rename = "T")]
    pub time: i64,
}
