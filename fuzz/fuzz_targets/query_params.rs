//! Query-parameter parsing of the REST API on arbitrary query strings, and
//! the SSE `Last-Event-ID` header: never panics; a range is ordered.
#![no_main]

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::{HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;
use streamforge_api::params::Params;
use streamforge_api::routes::stream::parse_last_event_id;
use streamforge_api::ApiConfig;

const ALLOWED: &[&str] = &[
    "from", "to", "limit", "interval", "order", "symbols", "symbol", "fill", "candles",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(text) {
        let _ = parse_last_event_id(&v);
    }
    let Ok(uri) = format!("/q?{text}").parse::<Uri>() else {
        return;
    };
    let Ok(Query(raw)) = Query::<HashMap<String, String>>::try_from_uri(&uri) else {
        return;
    };
    let Ok(params) = Params::new(raw, ALLOWED) else {
        return;
    };
    let limits = ApiConfig::default();
    if let Ok((from, to)) = params.range(&limits) {
        assert!(from < to);
    }
    if let Ok(n) = params.limit(&limits) {
        assert!(n >= 1 && n <= limits.max_limit);
    }
    let _ = params.interval();
    let _ = params.order();
    let _ = params.symbols("symbols");
    let _ = params.time("from");
});
