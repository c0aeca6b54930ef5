//! Finnhub's WebSocket protocol, as its documentation gives it: what the
//! server sends — `{"type":"trade","data":[{"s","p","t","v","c"}...]}` (many
//! trades of several symbols per frame; `t` epoch milliseconds, `v` volume,
//! `c` condition codes, possibly missing), `{"type":"ping"}`,
//! `{"type":"error","msg":"..."}` — and what the client sends
//! (`{"type":"subscribe","symbol":"AAPL"}`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use streamforge_model::Symbol;

/// One server message, its `data` left raw until the kind is known.
#[derive(Deserialize)]
pub(super) struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) data: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) msg: Option<String>,
}

/// One trade as sent. Missing fields are caught by validation, so that a bad
/// trade is rejected alone.
#[derive(Deserialize)]
pub(super) struct RawTrade<'a> {
    #[serde(borrow)]
    pub(super) s: Option<Cow<'a, str>>,
    pub(super) p: Option<f64>,
    pub(super) t: Option<i64>,
    pub(super) v: Option<f64>,
    #[serde(default, borrow)]
    pub(super) c: Option<Vec<Cow<'a, str>>>,
}

/// The message that subscribes one symbol.
pub(super) fn subscribe(symbol: &Symbol) -> String {
    serde_json::json!({"type": "subscribe", "symbol": symbol.as_str()}).to_string()
}
