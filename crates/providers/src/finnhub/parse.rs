//! Finnhub's server messages (`messages.rs`) parsed into ticks.
//!
//! The server sends `{"type":"trade","data":[{"s","p","t","v","c"}...]}`
//! (many trades of several symbols per frame; `t` epoch milliseconds, `v`
//! volume, `c` condition codes, possibly missing), `{"type":"ping"}`, and
//! `{"type":"error","msg":"..."}`. A frame that is not such a message, and
//! every trade that is not a valid tick, becomes a [`Rejected`] carrying its
//! raw text, never an error that stops the feed.

use serde_json::value::RawValue;
use std::sync::Arc;

use streamforge_model::{OccurrenceCounter, SymbolInterner, Tick, TickInput, TickRules, Timestamp};

use super::messages::{Envelope, RawTrade};
use crate::Rejected;

/// Provider id, and each Finnhub tick's `src_id`.
pub const ID: &str = "finnhub";

/// What one server message was.
#[derive(Debug)]
pub enum Parsed {
    /// A trade frame: its valid ticks and its rejected trades.
    Trades {
        ticks: Vec<Tick>,
        rejects: Vec<Rejected>,
    },
    /// The server's keep-alive.
    Ping,
    /// `{"type":"error","msg":...}`: the server refused something.
    Error(String),
    /// Not a message of the protocol (or not JSON at all).
    Malformed(Rejected),
}

/// Parses server messages; keeps the symbols it has seen, so that a symbol
/// is validated and allocated once, not per trade.
#[derive(Debug, Default)]
pub struct FrameParser {
    symbols: SymbolInterner,
    counter: OccurrenceCounter,
    src: Option<Arc<str>>,
    exchange: Option<Arc<str>>,
}

fn malformed(raw: &[u8], error: String) -> Parsed {
    Parsed::Malformed(Rejected::new(raw.to_vec(), "malformed_frame", error))
}

impl FrameParser {
    /// Parses one message received at `received` (each tick's
    /// `ingested_at`), validating trades with `rules` against `now`.
    pub fn parse(
        &mut self,
        raw: &[u8],
        rules: &TickRules,
        received: Timestamp,
        now: Timestamp,
    ) -> Parsed {
        let envelope: Envelope<'_> = match serde_json::from_slice(raw) {
            Ok(e) => e,
            Err(e) => return malformed(raw, format!("not a Finnhub message: {e}")),
        };
        match envelope.kind.as_ref() {
            "trade" => {}
            "ping" => return Parsed::Ping,
            "error" => return Parsed::Error(envelope.msg.unwrap_or_else(|| "(no message)".into())),
            other => {
                return malformed(raw, format!("type: unknown message type {other:?}"));
            }
        }
        let Some(data) = envelope.data else {
            return malformed(raw, "data: missing in a trade message".into());
        };
        let mut ticks = Vec::new();
        let mut rejects = Vec::new();
        match serde_json::from_str::<Vec<RawTrade<'_>>>(data.get()) {
            Ok(trades) => {
                ticks.reserve(trades.len());
                for trade in trades {
                    self.add(trade, None, rules, received, now, &mut ticks, &mut rejects);
                }
            }
            // Some trade has a field of the wrong type: take them one by one
            // so that only the bad ones are rejected.
            Err(_) => match serde_json::from_str::<Vec<&RawValue>>(data.get()) {
                Ok(items) => {
                    for item in items {
                        match serde_json::from_str::<RawTrade<'_>>(item.get()) {
                            Ok(trade) => self.add(
                                trade,
                                Some(item),
                                rules,
                                received,
                                now,
                                &mut ticks,
                                &mut rejects,
                            ),
                            Err(e) => rejects.push(Rejected::new(
                                item.get().as_bytes().to_vec(),
                                "malformed_trade",
                                format!("trade: {e}"),
                            )),
                        }
                    }
                }
                Err(e) => return malformed(raw, format!("data: not a list of trades: {e}")),
            },
        }
        Tick::number_identical(&mut ticks, &mut self.counter);
        Parsed::Trades { ticks, rejects }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        trade: RawTrade<'_>,
        raw: Option<&RawValue>,
        rules: &TickRules,
        received: Timestamp,
        now: Timestamp,
        ticks: &mut Vec<Tick>,
        rejects: &mut Vec<Rejected>,
    ) {
        let reject = |trade: &RawTrade<'_>, reason: &'static str, error: String| {
            let raw = match raw {
                Some(r) => r.get().as_bytes().to_vec(),
                None => trade_json(trade),
            };
            Rejected::new(raw, reason, error)
        };
        let (Some(s), Some(p), Some(t)) = (&trade.s, trade.p, trade.t) else {
            let missing = [
                ("s", trade.s.is_none()),
                ("p", trade.p.is_none()),
                ("t", trade.t.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(f, _)| *f)
            .collect::<Vec<_>>()
            .join(", ");
            rejects.push(reject(
                &trade,
                "malformed_trade",
                format!("trade: missing field(s) {missing}"),
            ));
            return;
        };
        let symbol = match self.symbols.parse(s) {
            Ok(sym) => sym,
            Err(e) => {
                rejects.push(reject(&trade, e.reason(), e.to_string()));
                return;
            }
        };
        let Some(ts) = t.checked_mul(Timestamp::MICROS_PER_MILLI) else {
            rejects.push(reject(
                &trade,
                "ts_too_old",
                format!("t: {t} is not epoch milliseconds"),
            ));
            return;
        };
        let conditions = trade
            .c
            .as_ref()
            .map(|c| c.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        let (sym, at) = (symbol.clone(), Timestamp::from_micros(ts));
        let input = TickInput {
            symbol,
            ts: at,
            price: p,
            size: trade.v.unwrap_or(0.0),
            exchange: self.exchange.get_or_insert_with(|| Arc::from("")).clone(),
            src_id: self.src.get_or_insert_with(|| Arc::from(ID)).clone(),
            conditions,
            occurrence: 0,
            tick_id: None,
            ingested_at: received,
            source_id: None,
            origin: streamforge_model::tick::Origin::Live,
        };
        match rules.check(input, now) {
            Ok(tick) => ticks.push(tick),
            Err(e) => rejects.push(reject(&trade, e.reason(), e.to_string()).of(sym, at)),
        }
    }
}

/// A trade written back as Finnhub JSON (the dead-letter form).
impl crate::FrameParse for FrameParser {
    fn parse_frame(
        &mut self,
        frame: &[u8],
        rules: &TickRules,
        ingested_at: Timestamp,
        checked_at: Timestamp,
    ) -> Option<crate::ProviderFrame> {
        match self.parse(frame, rules, ingested_at, checked_at) {
            Parsed::Trades { ticks, rejects } => Some(crate::ProviderFrame {
                provider: ID,
                ticks,
                rejects,
                ..Default::default()
            }),
            Parsed::Malformed(r) => Some(crate::ProviderFrame {
                provider: ID,
                rejects: vec![r],
                ..crate::ProviderFrame::default()
            }),
            Parsed::Ping | Parsed::Error(_) => None,
        }
    }
}

fn trade_json(trade: &RawTrade<'_>) -> Vec<u8> {
    let mut o = serde_json::Map::new();
    if let Some(s) = &trade.s {
        o.insert("s".into(), s.as_ref().into());
    }
    if let Some(p) = trade.p {
        o.insert("p".into(), p.into());
    }
    if let Some(t) = trade.t {
        o.insert("t".into(), t.into());
    }
    if let Some(v) = trade.v {
        o.insert("v".into(), v.into());
    }
    if let Some(c) = &trade.c {
        o.insert(
            "c".into(),
            c.iter()
                .map(|c| serde_json::Value::from(c.as_ref()))
                .collect(),
        );
    }
    serde_json::to_vec(&serde_json::Value::Object(o)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
