//! [`Symbol`]: an instrument name as StreamForge stores it.
//!
//! Upper-case, 1 to 32 characters of `A-Z 0-9 . : - _ /`, so both `AAPL` and
//! Finnhub's `BINANCE:BTCUSDT` or `OANDA:EUR_USD` fit. Lower-case letters are
//! upper-cased on parse; anything else outside the set is rejected.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::tick::TickError;

/// Longest symbol accepted.
pub const MAX_SYMBOL_LEN: usize = 32;

/// Distinct symbols a [`SymbolInterner`] remembers before it starts over.
const MAX_INTERNED: usize = 4_096;

/// Parses symbols, validating and allocating each distinct text once:
/// decoders of many ticks share one [`Symbol`] per instrument.
#[derive(Debug, Default)]
pub struct SymbolInterner {
    seen: std::collections::HashMap<Box<str>, Symbol>,
}

impl SymbolInterner {
    /// Like [`Symbol::parse`], reusing what earlier calls saw.
    pub fn parse(&mut self, text: &str) -> Result<Symbol, TickError> {
        if let Some(s) = self.seen.get(text) {
            return Ok(s.clone());
        }
        let s = Symbol::parse(text)?;
        if self.seen.len() >= MAX_INTERNED {
            self.seen.clear();
        }
        self.seen.insert(text.into(), s.clone());
        Ok(s)
    }
}

/// A validated symbol. Cloning is cheap (shared string).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(Arc<str>);

fn allowed(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'.' | b':' | b'-' | b'_' | b'/')
}

impl Symbol {
    /// Validates and normalizes `text`. The error names the `symbol` field.
    pub fn parse(text: &str) -> Result<Self, TickError> {
        let bad = |reason: &'static str| TickError::Symbol {
            value: text.chars().take(64).collect(),
            reason,
        };
        if text.is_empty() {
            return Err(bad("must not be empty"));
        }
        if text.len() > MAX_SYMBOL_LEN {
            return Err(bad("must be at most 32 characters"));
        }
        if text.bytes().all(allowed) {
            return Ok(Symbol(Arc::from(text)));
        }
        let upper = text.to_ascii_uppercase();
        if upper.bytes().all(allowed) {
            Ok(Symbol(Arc::from(upper)))
        } else {
            Err(bad("may only contain A-Z 0-9 . : - _ /"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for Symbol {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Symbol {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Symbol {
    type Err = TickError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::parse(s)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Symbol::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_provider_notations_and_upper_cases() {
        assert_eq!(Symbol::parse("AAPL").unwrap().as_str(), "AAPL");
        assert_eq!(
            Symbol::parse("BINANCE:BTCUSDT").unwrap().as_str(),
            "BINANCE:BTCUSDT"
        );
        assert_eq!(
            Symbol::parse("OANDA:EUR_USD").unwrap().as_str(),
            "OANDA:EUR_USD"
        );
        assert_eq!(Symbol::parse("brk.b").unwrap().as_str(), "BRK.B");
    }

    #[test]
    fn rejects_bad_symbols_naming_the_field() {
        for bad in ["", "AA PL", "ÄPFEL", "A;DROP", &"X".repeat(33)] {
            let err = Symbol::parse(bad).unwrap_err();
            assert_eq!(err.field(), "symbol", "{bad:?}");
            assert!(err.to_string().starts_with("symbol:"), "{err}");
        }
    }

    #[test]
    fn a_symbol_reads_as_its_text_everywhere() {
        let s = Symbol::parse("binance:btcusdt").unwrap();
        assert_eq!(s.to_string(), "BINANCE:BTCUSDT");
        assert_eq!(format!("{s:?}"), "\"BINANCE:BTCUSDT\"");
        let r: &str = s.as_ref();
        assert_eq!(r, "BINANCE:BTCUSDT");
        let mut map = std::collections::HashMap::new();
        map.insert(s.clone(), 1);
        assert_eq!(map.get("BINANCE:BTCUSDT"), Some(&1), "looked up by &str");
    }

    #[test]
    fn the_interner_keeps_what_it_saw_up_to_its_bound() {
        let mut i = SymbolInterner::default();
        for name in ["AAPL", "MSFT", "aapl", "AAPL"] {
            i.parse(name).unwrap();
        }
        assert_eq!(i.seen.len(), 3, "each distinct text once");
        for n in 0..MAX_INTERNED + 10 {
            i.parse(&format!("S{n}")).unwrap();
        }
        assert!(i.seen.len() <= MAX_INTERNED, "{}", i.seen.len());
        assert_eq!(i.parse("msft").unwrap().as_str(), "MSFT");
    }
}
