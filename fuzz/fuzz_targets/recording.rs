//! The recording reader on arbitrary (decompressed) content, and replay
//! pacing on the receive times it yields: never panics, never a wild pause.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use streamforge_model::{TickRules, Timestamp};
use streamforge_providers::finnhub::FrameParser;
use streamforge_providers::recording::frames;
use streamforge_providers::replay::{replay_due, MAX_REPLAY_STEP};

fuzz_target!(|data: &[u8]| {
    let start = tokio::time::Instant::now();
    let mut previous: Option<(Timestamp, tokio::time::Instant)> = None;
    let mut parser = FrameParser::default();
    let rules = TickRules::default();
    for frame in frames(data, PathBuf::from("fuzz.ndjson.zst")) {
        let Ok(f) = frame else { break };
        let (prev, prev_due) = previous.unwrap_or((f.received, start));
        for speed in [1e-3, 1.0, 1e6] {
            let due = replay_due(prev, prev_due, f.received, speed);
            assert!(due >= prev_due);
            assert!(due - prev_due <= MAX_REPLAY_STEP.div_f64(speed));
        }
        previous = Some((f.received, replay_due(prev, prev_due, f.received, 1.0)));
        let _ = parser.parse(f.frame.as_bytes(), &rules, Timestamp::now(), f.received);
    }
});
