//! The JSON Schemas of the model's types as the API answers them, for the
//! OpenAPI document. Types with a derived serde form derive theirs beside
//! their definition; the ones serialized by hand are described here, from
//! the same constants their parsers use.

use std::borrow::Cow;

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::symbol::MAX_SYMBOL_LEN;
use crate::{Symbol, TickId, Timestamp};

/// What [`Symbol::parse`] accepts: letters (lower case is upper-cased),
/// digits and `. : - _ /`, 1 to [`MAX_SYMBOL_LEN`] characters.
pub const SYMBOL_PATTERN: &str = "^[A-Za-z0-9.:_/-]{1,32}$";

impl PartialSchema for Symbol {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(SYMBOL_PATTERN))
            .min_length(Some(1))
            .max_length(Some(MAX_SYMBOL_LEN))
            .description(Some(
                "Instrument, e.g. AAPL or BINANCE:BTCUSDT: letters, digits and . : - _ /, \
                 at most 32 characters; lower case is read as upper case.",
            ))
            .examples(["AAPL"])
            .into()
    }
}

impl ToSchema for Symbol {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Symbol")
    }
}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "RFC 3339 time in UTC with 0, 3 or 6 fractional digits, e.g. 2025-08-27T20:15:31.134Z",
            ))
            .into()
    }
}

impl ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

impl PartialSchema for TickId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9a-f]{16}$"))
            .description(Some(
                "The tick's deterministic id: 16 hex digits, the same for the same trade however often it arrives",
            ))
            .into()
    }
}

impl ToSchema for TickId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TickId")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern the document states is the rule the parser applies.
    #[test]
    fn the_symbol_pattern_is_the_parsers_rule() {
        let pattern = |s: &str| {
            (1..=MAX_SYMBOL_LEN).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".:_/-".contains(&b))
        };
        for s in [
            "AAPL",
            "aapl",
            "BINANCE:BTCUSDT",
            "BRK.B",
            "EUR/USD",
            "A-B_C",
            "",
            " ",
            "AAPL ",
            "ÄPFEL",
            "A\u{0}",
            "x*y",
            "A%2F",
        ] {
            assert_eq!(Symbol::parse(s).is_ok(), pattern(s), "{s:?}");
        }
        let long = "A".repeat(MAX_SYMBOL_LEN);
        assert!(Symbol::parse(&long).is_ok() && pattern(&long));
        let longer = "A".repeat(MAX_SYMBOL_LEN + 1);
        assert!(Symbol::parse(&longer).is_err() && !pattern(&longer));
    }
}
