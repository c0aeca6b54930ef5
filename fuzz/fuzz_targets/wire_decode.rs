//! The bus decoders (ticks and gap records) on arbitrary payloads: never
//! panic; a decoded tick encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamforge_model::{wire, Gap, TickRules, Timestamp};

fuzz_target!(|data: &[u8]| {
    let rules = TickRules::default();
    let now = Timestamp::from_micros(1_764_000_000_000_000);
    if let Ok(t) = wire::decode(data, &rules, now) {
        let again = wire::decode(&wire::encode(&t), &rules, now).expect("re-decodes");
        assert_eq!(t, again);
    }
    if let Ok(g) = Gap::decode(data) {
        assert!(g.seconds() >= 0.0);
    }
});
