//! The JSON wire form of a tick, as carried on the bus.
//!
//! The field names of the original StreamForge format are kept
//! (`symbol, ts, price, size, exchange, src_id`), so existing consumers of the
//! `ticks` topic keep working; `conditions`, `tick_id` and `ingested_at` are
//! additive, and so are `source_id` (the venue's trade id, left out when the
//! venue has none) and `origin` (left out for live trades, `"backfill"` for
//! trades taken from a venue's history). Decoding accepts the original format: a message without a
//! `tick_id` gets one computed (occurrence 0), one without `ingested_at` gets
//! the decode time.
//!
//! ```
//! use streamforge_model::{wire, TickRules, Timestamp};
//! let old = br#"{"symbol":"AAPL","ts":"2025-08-27T20:15:31.134Z","price":231.42,"size":100,"exchange":"","src_id":"finnhub"}"#;
//! let tick = wire::decode(old, &TickRules::default(), Timestamp::now()).unwrap();
//! assert_eq!(tick.price(), 231.42);
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::tick::Origin;
use crate::{Symbol, Tick, TickError, TickId, TickInput, TickRules, Timestamp};

/// Version of this wire form, carried in the `schema-version` header.
pub const SCHEMA_VERSION: &str = "1";
/// Value of the `content-type` header.
pub const CONTENT_TYPE: &str = "application/json";
/// Largest encoded tick accepted; anything bigger is not a tick.
pub const MAX_ENCODED_LEN: usize = 64 * 1024;

/// Why bytes could not be decoded into a tick.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {0} bytes, more than the {MAX_ENCODED_LEN} a tick may take")]
    TooLarge(usize),
    #[error("not a tick in JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid tick: {0}")]
    Invalid(#[from] TickError),
    #[error("unsupported schema-version {0:?} (this build reads {SCHEMA_VERSION})")]
    SchemaVersion(String),
}

impl DecodeError {
    /// A short fixed reason code, used as a metric label and DLQ header.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::Json(_) => "malformed_json",
            DecodeError::Invalid(e) => e.reason(),
            DecodeError::SchemaVersion(_) => "unknown_schema_version",
        }
    }
}

/// A trade as the bus carries it and the API answers it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Tick)]
struct Out<'a> {
    #[schema(value_type = Symbol)]
    symbol: &'a str,
    /// The trade's time at the venue.
    ts: Timestamp,
    price: f64,
    /// Traded quantity; 0 when the venue reported none.
    size: f64,
    /// Venue or market the trade came from (may be empty).
    exchange: &'a str,
    /// The provider it came from (`finnhub`, `synthetic`, ...).
    src_id: &'a str,
    /// The venue's trade conditions, as it sent them.
    conditions: &'a [String],
    tick_id: TickId,
    /// When StreamForge took the trade in.
    ingested_at: Timestamp,
    /// The venue's own id of the trade, when it numbers its trades.
    #[serde(skip_serializing_if = "Option::is_none")]
    source_id: Option<&'a str>,
    /// `backfill` for trades taken from the venue's history to fill a feed
    /// gap; absent for live trades.
    #[serde(skip_serializing_if = "Origin::is_live")]
    #[schema(value_type = Option<String>)]
    origin: Origin,
}

impl utoipa::PartialSchema for Tick {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        <Out as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Tick {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Tick")
    }
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Out as utoipa::ToSchema>::schemas(schemas)
    }
}

#[derive(Deserialize)]
struct In<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    ts: Timestamp,
    price: f64,
    #[serde(default)]
    size: f64,
    #[serde(default, borrow)]
    exchange: Cow<'a, str>,
    #[serde(borrow)]
    src_id: Cow<'a, str>,
    #[serde(default)]
    conditions: Vec<String>,
    #[serde(default)]
    tick_id: Option<TickId>,
    #[serde(default)]
    ingested_at: Option<Timestamp>,
    #[serde(default, borrow)]
    source_id: Option<Cow<'a, str>>,
    #[serde(default)]
    origin: Origin,
}

impl Serialize for Tick {
    /// The wire form: what the bus carries and the API returns.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Out::from(self).serialize(serializer)
    }
}

impl<'a> From<&'a Tick> for Out<'a> {
    fn from(tick: &'a Tick) -> Self {
        Out {
            symbol: tick.symbol().as_str(),
            ts: tick.ts(),
            price: tick.price(),
            size: tick.size(),
            exchange: tick.exchange(),
            src_id: tick.src_id(),
            conditions: tick.conditions(),
            tick_id: tick.tick_id(),
            ingested_at: tick.ingested_at(),
            source_id: tick.source_id(),
            origin: tick.origin(),
        }
    }
}

/// Appends the JSON form of `tick` to `out`: the same bytes as serializing
/// it with serde_json (a test holds them equal), written directly — every
/// tick is encoded once on the bus's hot path, and REST pages of ticks are
/// written with it too.
pub fn encode_into(tick: &Tick, out: &mut Vec<u8>) {
    out.reserve(224);
    out.extend_from_slice(b"{\"symbol\":");
    json_str(out, tick.symbol().as_str());
    out.extend_from_slice(b",\"ts\":");
    json_time(out, tick.ts());
    out.extend_from_slice(b",\"price\":");
    json_f64(out, tick.price());
    out.extend_from_slice(b",\"size\":");
    json_f64(out, tick.size());
    out.extend_from_slice(b",\"exchange\":");
    json_str(out, tick.exchange());
    out.extend_from_slice(b",\"src_id\":");
    json_str(out, tick.src_id());
    out.extend_from_slice(b",\"conditions\":[");
    for (i, c) in tick.conditions().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, c);
    }
    out.extend_from_slice(b"],\"tick_id\":\"");
    out.extend_from_slice(&tick.tick_id().hex());
    out.extend_from_slice(b"\",\"ingested_at\":");
    json_time(out, tick.ingested_at());
    if let Some(id) = tick.source_id() {
        out.extend_from_slice(b",\"source_id\":");
        json_str(out, id);
    }
    if !tick.origin().is_live() {
        out.extend_from_slice(b",\"origin\":\"");
        out.extend_from_slice(tick.origin().as_str().as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// A JSON string: copied as is unless it has a character JSON escapes.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn json_time(out: &mut Vec<u8>, t: Timestamp) {
    let mut buf = [0u8; 27];
    match t.write_rfc3339(&mut buf) {
        Some(text) => {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        None => {
            let _ = serde_json::to_writer(&mut *out, &t);
        }
    }
}

fn json_f64(out: &mut Vec<u8>, v: f64) {
    // serde_json's own float formatting, so the bytes stay the same.
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// The JSON form of `tick`.
pub fn encode(tick: &Tick) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    encode_into(tick, &mut out);
    out
}

/// Decodes and validates one tick; `now` is the clock for the future-skew
/// check and the default `ingested_at`.
pub fn decode(bytes: &[u8], rules: &TickRules, now: Timestamp) -> Result<Tick, DecodeError> {
    Decoder::default().decode(bytes, rules, now)
}

/// Distinct strings a [`Decoder`] remembers before it starts over.
const MAX_INTERNED: usize = 4_096;

/// Decodes many ticks, sharing one allocation per distinct symbol, exchange
/// and provider id instead of allocating them for every tick.
#[derive(Debug, Default)]
pub struct Decoder {
    symbols: crate::SymbolInterner,
    tags: std::collections::HashMap<Box<str>, Arc<str>>,
}

impl Decoder {
    /// Like [`decode`], reusing what earlier calls saw.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        rules: &TickRules,
        now: Timestamp,
    ) -> Result<Tick, DecodeError> {
        if bytes.len() > MAX_ENCODED_LEN {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let raw: In<'_> = serde_json::from_slice(bytes)?;
        let input = TickInput {
            symbol: self.symbols.parse(&raw.symbol)?,
            ts: raw.ts,
            price: raw.price,
            size: raw.size,
            exchange: self.tag(&raw.exchange),
            src_id: self.tag(&raw.src_id),
            conditions: raw.conditions,
            occurrence: 0,
            tick_id: raw.tick_id,
            ingested_at: raw.ingested_at.unwrap_or(now),
            source_id: raw.source_id.map(|id| id.into()),
            origin: raw.origin,
        };
        Ok(rules.check(input, now)?)
    }

    /// Exchange codes and provider ids; validated by `TickRules::check`.
    fn tag(&mut self, text: &str) -> Arc<str> {
        if let Some(t) = self.tags.get(text) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(text);
        if text.len() <= crate::tick::MAX_TAG_LEN {
            if self.tags.len() >= MAX_INTERNED {
                self.tags.clear();
            }
            self.tags.insert(text.into(), t.clone());
        }
        t
    }
}

/// Checks a `schema-version` header value; a missing header means the
/// original format, which this version reads.
pub fn check_schema_version(header: Option<&str>) -> Result<(), DecodeError> {
    match header {
        None | Some(SCHEMA_VERSION) => Ok(()),
        Some(other) => Err(DecodeError::SchemaVersion(other.chars().take(32).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::tests::input;
    use crate::Symbol;
    use proptest::prelude::*;

    const ORIGINAL: &[u8] = br#"{"symbol":"AAPL","ts":"2025-08-27T20:15:31.134Z","price":231.42,"size":100,"exchange":"","src_id":"finnhub"}"#;

    fn now() -> Timestamp {
        Timestamp::from_millis(1_756_325_800_000)
    }

    #[test]
    fn decodes_the_original_format() {
        let t = decode(ORIGINAL, &TickRules::default(), now()).unwrap();
        assert_eq!(t.symbol().as_str(), "AAPL");
        assert_eq!(t.ts().to_string(), "2025-08-27T20:15:31.134Z");
        assert_eq!((t.price(), t.size()), (231.42, 100.0));
        assert_eq!((t.exchange(), t.src_id()), ("", "finnhub"));
        assert!(t.conditions().is_empty());
        assert_eq!(t.ingested_at(), now());
        // The id is the one ingest would have computed.
        let fresh = TickRules::default().check(input(), now()).unwrap();
        assert_eq!(t.tick_id(), fresh.tick_id());
    }

    #[test]
    fn encoding_keeps_the_original_field_names() {
        let t = TickRules::default().check(input(), now()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&encode(&t)).unwrap();
        for field in [
            "symbol", "ts", "price", "size", "exchange", "src_id", "tick_id",
        ] {
            assert!(v.get(field).is_some(), "missing {field} in {v}");
        }
        assert_eq!(v["ts"], "2025-08-27T20:15:31.134Z");
    }

    #[test]
    fn venue_trade_ids_and_backfill_are_additive_fields() {
        let rules = TickRules::default();
        let numbered = br#"{"symbol":"BINANCE:BTCUSDT","ts":"2025-08-27T20:15:31.134Z","price":58942.01,"size":0.000356,"exchange":"","src_id":"binance","source_id":"716849523","origin":"backfill"}"#;
        let t = decode(numbered, &rules, now()).unwrap();
        assert_eq!(t.source_id(), Some("716849523"));
        assert_eq!(t.origin(), Origin::Backfill);
        assert_eq!(
            t.tick_id(),
            TickId::from_source("binance", t.symbol(), "716849523"),
            "the id derives from the venue's trade id"
        );
        let text = String::from_utf8(encode(&t)).unwrap();
        assert!(
            text.ends_with(r#","source_id":"716849523","origin":"backfill"}"#),
            "{text}"
        );
        // Live trades without a venue id keep the original form.
        let plain = decode(ORIGINAL, &rules, now()).unwrap();
        assert_eq!((plain.source_id(), plain.origin()), (None, Origin::Live));
        let text = String::from_utf8(encode(&plain)).unwrap();
        assert!(
            !text.contains("source_id") && !text.contains("origin"),
            "{text}"
        );
        for (bad, reason) in [
            (r#""source_id":"""#, "invalid_source_id"),
            (r#""source_id":"a b""#, "invalid_source_id"),
            (r#""origin":"replayed""#, "malformed_json"),
        ] {
            let msg = format!(
                r#"{{"symbol":"AAPL","ts":"2025-08-27T20:15:31.134Z","price":1,"src_id":"x",{bad}}}"#
            );
            assert_eq!(
                decode(msg.as_bytes(), &rules, now()).unwrap_err().reason(),
                reason,
                "{msg}"
            );
        }
    }

    #[test]
    fn rejects_bad_messages_with_reasons() {
        let rules = TickRules::default();
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "malformed_json"),
            (br#"{"symbol":"AAPL","ts":"2025-08-27T20:15:31.134Z","price":-1,"src_id":"x"}"#, "invalid_price"),
            (br#"{"symbol":"AAPL","ts":"2025-08-27T20:15:31.134Z","price":1,"size":-2,"src_id":"x"}"#, "invalid_size"),
            (br#"{"symbol":"AAPL","ts":"2025-08-27T20:15:31.134Z","price":NaN,"src_id":"x"}"#, "malformed_json"),
            (br#"{"symbol":"AAPL","price":1,"src_id":"x"}"#, "malformed_json"),
        ];
        for (bytes, reason) in cases {
            let err = decode(bytes, &rules, now()).unwrap_err();
            assert_eq!(
                err.reason(),
                *reason,
                "{}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
        let big = vec![b' '; MAX_ENCODED_LEN + 1];
        assert_eq!(
            decode(&big, &rules, now()).unwrap_err().reason(),
            "too_large"
        );
        assert!(check_schema_version(Some("1")).is_ok());
        assert!(check_schema_version(None).is_ok());
        assert_eq!(
            check_schema_version(Some("9")).unwrap_err().reason(),
            "unknown_schema_version"
        );
    }

    fn arb_input() -> impl Strategy<Value = TickInput> {
        (
            "[A-Z0-9.:_/-]{1,32}",
            631_152_000_000_000i64..1_900_000_000_000_000i64,
            1e-9f64..1e9,
            prop_oneof![Just(0.0), 0.0f64..1e12],
            "[ -~]{0,32}",
            "[a-z0-9_-]{1,32}",
            proptest::collection::vec("[!-~]{1,16}", 0..16),
            0u32..4,
            631_152_000_000_000i64..1_900_000_000_000_000i64,
            proptest::option::of("[!-~]{1,64}"),
            any::<bool>(),
        )
            .prop_map(
                |(s, ts, price, size, ex, src, conds, occ, ing, source, backfill)| TickInput {
                    symbol: Symbol::parse(&s).unwrap(),
                    ts: Timestamp::from_micros(ts),
                    price,
                    size,
                    exchange: Arc::from(ex),
                    src_id: Arc::from(src),
                    conditions: conds,
                    occurrence: occ,
                    tick_id: None,
                    ingested_at: Timestamp::from_micros(ing),
                    source_id: source.map(String::into_boxed_str),
                    origin: if backfill {
                        Origin::Backfill
                    } else {
                        Origin::Live
                    },
                },
            )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(input in arb_input()) {
            let now = Timestamp::from_micros(2_000_000_000_000_000);
            let rules = TickRules::default();
            let tick = rules.check(input, now).unwrap();
            let back = decode(&encode(&tick), &rules, now).unwrap();
            prop_assert_eq!(back, tick);
        }

        #[test]
        fn the_direct_encoder_writes_what_serde_json_writes(input in arb_input()) {
            let now = Timestamp::from_micros(2_000_000_000_000_000);
            let tick = TickRules::default().check(input, now).unwrap();
            let direct = String::from_utf8(encode(&tick)).unwrap();
            let serde = serde_json::to_string(&Out::from(&tick)).unwrap();
            prop_assert_eq!(direct, serde);
        }

        #[test]
        fn timestamps_and_ids_serialize_as_they_display(micros in any::<i64>(), id in any::<i64>()) {
            let t = Timestamp::from_micros(micros);
            prop_assert_eq!(serde_json::to_string(&t).unwrap(), serde_json::to_string(&t.to_string()).unwrap());
            let id = TickId::from_i64(id);
            prop_assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
        }

        #[test]
        fn a_reused_decoder_gives_the_same_ticks(inputs in proptest::collection::vec(arb_input(), 1..20)) {
            let now = Timestamp::from_micros(2_000_000_000_000_000);
            let rules = TickRules::default();
            let mut decoder = Decoder::default();
            for input in inputs {
                let tick = rules.check(input, now).unwrap();
                let bytes = encode(&tick);
                prop_assert_eq!(decoder.decode(&bytes, &rules, now).unwrap(), tick.clone());
                prop_assert_eq!(decoder.decode(&bytes, &rules, now).unwrap(), tick);
            }
        }

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, &TickRules::default(), Timestamp::now());
        }

        #[test]
        fn validation_never_panics_on_arbitrary_fields(
            symbol in ".{0,40}",
            ts in any::<i64>(),
            price in any::<f64>(),
            size in any::<f64>(),
            exchange in ".{0,40}",
            src in ".{0,40}",
            conds in proptest::collection::vec(".{0,20}", 0..20),
            now in any::<i64>(),
            skew in any::<u64>(),
        ) {
            let rules = TickRules { max_future_skew: std::time::Duration::from_micros(skew), ..TickRules::default() };
            if let Ok(symbol) = Symbol::parse(&symbol) {
                let result = rules.check(TickInput {
                    symbol, ts: Timestamp::from_micros(ts), price, size,
                    exchange: Arc::from(exchange), src_id: Arc::from(src), conditions: conds,
                    occurrence: 0, tick_id: None, ingested_at: Timestamp::from_micros(now),
                 source_id: None, origin: crate::tick::Origin::Live, }, Timestamp::from_micros(now));
                if let Ok(t) = result {
                    prop_assert!(t.price() > 0.0 && t.price().is_finite());
                    prop_assert!(t.size() >= 0.0 && t.size().is_finite());
                }
            }
        }

        #[test]
        fn decode_of_json_shaped_input_never_panics(
            symbol in ".{0,40}", ts in any::<i64>(), price in any::<f64>(), size in any::<f64>()
        ) {
            let json = serde_json::json!({"symbol": symbol, "ts": ts, "price": price, "size": size, "src_id": "x"});
            let _ = decode(json.to_string().as_bytes(), &TickRules::default(), Timestamp::now());
        }
    }

    #[test]
    fn messages_up_to_64_kib_decode_and_larger_ones_are_refused() {
        let now = Timestamp::from_millis(1_756_325_731_200);
        let t = crate::tick::tests::input();
        let tick = TickRules::default().check(t, now).unwrap();
        let mut padded = encode(&tick);
        padded.resize(65_536, b' ');
        assert!(
            decode(&padded, &TickRules::default(), now).is_ok(),
            "exactly 64 KiB of JSON"
        );
        padded.push(b' ');
        assert!(matches!(
            decode(&padded, &TickRules::default(), now),
            Err(DecodeError::TooLarge(n)) if n == padded.len()
        ));
    }

    #[test]
    fn the_decoder_interns_short_tags_only_and_stays_bounded() {
        let now = Timestamp::from_millis(1_756_325_731_200);
        let rules = TickRules::default();
        let mut d = Decoder::default();
        let with_exchange = |x: &str| {
            let t = rules
                .check(
                    TickInput {
                        exchange: Arc::from(x),
                        ..crate::tick::tests::input()
                    },
                    now,
                )
                .unwrap();
            encode(&t)
        };
        for x in ["XNAS", "XNYS", "XNAS"] {
            assert_eq!(
                d.decode(&with_exchange(x), &rules, now).unwrap().exchange(),
                x
            );
        }
        // finnhub (src_id), XNAS, XNYS
        assert_eq!(d.tags.len(), 3);
        let longest = "X".repeat(crate::tick::MAX_TAG_LEN);
        d.decode(&with_exchange(&longest), &rules, now).unwrap();
        assert_eq!(d.tags.len(), 4, "a tag of the longest length is interned");
        for n in 0..MAX_INTERNED + 5 {
            d.tag(&format!("T{n}"));
        }
        assert!(d.tags.len() <= MAX_INTERNED, "{}", d.tags.len());
        let too_long = "Y".repeat(crate::tick::MAX_TAG_LEN + 1);
        let before = d.tags.len();
        assert_eq!(&*d.tag(&too_long), too_long.as_str());
        assert_eq!(
            d.tags.len(),
            before,
            "longer tags are refused later, never kept"
        );
    }
}
