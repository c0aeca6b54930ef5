//! Coinbase Exchange's WebSocket feed messages, both ways.

use std::borrow::Cow;

use serde::Deserialize;
use streamforge_model::Symbol;

/// `{"type":"subscribe","product_ids":[...],"channels":["matches","heartbeat"]}`.
pub(super) fn subscribe(symbols: &[Symbol]) -> String {
    let products: Vec<String> = symbols
        .iter()
        .map(|s| serde_json::to_string(crate::venue::native(s)).unwrap_or_default())
        .collect();
    format!(
        r#"{{"type":"subscribe","product_ids":[{}],"channels":["matches","heartbeat"]}}"#,
        products.join(",")
    )
}

/// Every message has a `type`.
#[derive(Deserialize)]
pub(super) struct Typed<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
}

/// `match` and `last_match`. The order ids, `side` (the maker's) and
/// `sequence` are not read.
#[derive(Deserialize)]
pub(super) struct Match<'a> {
    pub trade_id: u64,
    #[serde(borrow)]
    pub product_id: Cow<'a, str>,
    #[serde(borrow)]
    pub price: Cow<'a, str>,
    #[serde(borrow)]
    pub size: Cow<'a, str>,
    /// RFC 3339 with microseconds.
    #[serde(borrow)]
    pub time: Cow<'a, str>,
}

/// `heartbeat`: the product's last trade id.
#[derive(Deserialize)]
pub(super) struct Heartbeat<'a> {
    #[serde(borrow)]
    pub product_id: Cow<'a, str>,
    pub last_trade_id: u64,
}

/// `error`.
#[derive(Deserialize)]
pub(super) struct Error {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub reason: String,
}
