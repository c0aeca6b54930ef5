//! The Finnhub frame parser on arbitrary server messages: never panics, and
//! every tick it yields is valid (within the rules it was checked against).
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamforge_model::{TickRules, Timestamp};
use streamforge_providers::finnhub::{FrameParser, Parsed};

fuzz_target!(|data: &[u8]| {
    let rules = TickRules::default();
    let now = Timestamp::from_micros(1_764_000_000_000_000);
    let mut parser = FrameParser::default();
    if let Parsed::Trades { ticks, .. } = parser.parse(data, &rules, now, now) {
        for t in ticks {
            assert!(t.price() > 0.0 && t.price() < rules.max_price);
            assert!(t.size() >= 0.0 && t.size() < rules.max_size);
        }
    }
});
