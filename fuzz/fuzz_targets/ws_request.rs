//! A WebSocket connection's request handling on arbitrary client messages
//! (split at newlines into a sequence): never panics, every answer is JSON,
//! and the subscription limit always holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamforge_api::routes::ws::Session;
use streamforge_api::LiveHub;

const LIMIT: usize = 8;

thread_local! {
    static METRICS: streamforge_telemetry::Metrics = streamforge_telemetry::Metrics::new();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let metrics = METRICS.with(|m| m.clone());
    let mut session = Session::new(LiveHub::default(), metrics, LIMIT);
    for request in text.split('\n') {
        let answer = session.handle(request);
        let v: serde_json::Value = serde_json::from_str(&answer).expect("answers are JSON");
        assert!(v.get("type").is_some(), "{answer}");
        assert!(session.subscriptions() <= LIMIT);
    }
});
