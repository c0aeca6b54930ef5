//! Component tests of the router: an in-memory store and cache behind the
//! real handlers, requests sent with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use streamforge_api::{router, ApiConfig, AppState, LiveHub};
use streamforge_model::Tick;
use streamforge_store::{Cache, MemoryCache, SqliteStore, TickStore};
use streamforge_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const T0: i64 = 1_756_325_700_000;

fn tick(symbol: &str, ms: i64, price: f64) -> Tick {
    streamforge_testkit::tick(symbol, ms, price, 10.0)
}

async fn app() -> (tempfile::TempDir, axum::Router, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
    let ticks: Vec<Tick> = (0..120)
        .map(|i| tick("AAPL", T0 + i * 1000, 100.0 + i as f64))
        .collect();
    store.write_batch(Arc::from(ticks.clone())).await.unwrap();
    let cache = MemoryCache::new();
    cache.update_latest(&ticks).await.unwrap();
    let state = AppState {
        store: Arc::new(store),
        cache: Arc::new(cache),
        live: LiveHub::default(),
        metrics: Metrics::new(),
        health: Health::new(),
        limits: ApiConfig::default(),
        ws: Default::default(),
        shutdown: CancellationToken::new(),
    };
    (dir, router(state.clone()), state)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[tokio::test]
async fn queries_answer_from_the_store_and_cache() {
    let (_d, app, _) = app().await;
    let (s, v) = get(&app, "/api/v1/symbols").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["symbols"][0]["symbol"], "AAPL");
    assert_eq!(v["symbols"][0]["ticks"], 120);
    assert_eq!(v["symbols"][0]["last_price"], 219.0);

    let (s, v) = get(&app, "/api/v1/quotes/aapl/latest").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["price"], 219.0);

    let uri = format!(
        "/api/v1/ticks/AAPL?from={}&to=2025-08-27T20:15:10Z&limit=5",
        T0
    );
    let (s, v) = get(&app, &uri).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 5);
    assert_eq!(v["ticks"][0]["price"], 100.0);

    let uri = format!(
        "/api/v1/candles/AAPL?interval=1m&from={}&to={}",
        T0,
        T0 + 120_000
    );
    let (s, v) = get(&app, &uri).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 2);
    let c = &v["candles"][0];
    assert_eq!(
        (
            c["open"].as_f64(),
            c["close"].as_f64(),
            c["trades"].as_u64()
        ),
        (Some(100.0), Some(159.0), Some(60))
    );
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let (_d, app, _) = app().await;
    for (uri, param) in [
        ("/api/v1/ticks/AAPL?from=yesterday", "from"),
        ("/api/v1/ticks/AAPL?to=soon", "to"),
        ("/api/v1/ticks/AAPL?limit=abc", "limit"),
        ("/api/v1/ticks/AAPL?order=sideways", "order"),
        ("/api/v1/ticks/AAPL?from=2000&to=1000", "from"),
        ("/api/v1/candles/AAPL?interval=7m", "interval"),
        ("/api/v1/ticks/AA%20PL", "symbol"),
        ("/api/v1/stream?symbols=A%20B", "symbols"),
        ("/api/v1/stream?candles=1m,2m", "candles"),
        ("/api/v1/candles/AAPL?fill=zero", "fill"),
        ("/api/v1/ticks/AAPL?frm=1", "query"),
        ("/api/v1/ticks/AAPL?from=%ZZ", "from"),
        ("/api/v1/ticks/%FF", "symbol"),
    ] {
        let (s, v) = get(&app, uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["parameter"], param, "{uri}: {v}");
        assert!(
            v["detail"].as_str().unwrap().starts_with(param),
            "{uri}: {v}"
        );
        assert_eq!(v["error"], "invalid parameter");
    }
}

#[tokio::test]
async fn unknown_symbols_and_paths_are_404() {
    let (_d, app, _) = app().await;
    for uri in [
        "/api/v1/quotes/NOPE/latest",
        "/api/v1/ticks/NOPE",
        "/api/v1/candles/NOPE",
        "/nowhere",
    ] {
        let (s, v) = get(&app, uri).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            v["error"].is_string() && v["detail"].is_string(),
            "{uri}: {v}"
        );
    }
}

#[tokio::test]
async fn ops_endpoints_answer() {
    let (_d, app, state) = app().await;
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    let (s, v) = get(&app, "/readyz").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["checks"]["store"]["ok"], true);
    state.health.set("bus", false, "broker unreachable");
    let (s, v) = get(&app, "/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["checks"]["bus"]["detail"], "broker unreachable");

    let res = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("streamforge_api_requests_total{route=\"/readyz\",status=\"503\"} 1"),
        "{text}"
    );
}

/// The `.route("…", …)` paths of the router's source, the table it is
/// built from.
fn routes_in_source() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for piece in text.split(".route(\"").skip(1) {
            found.push(piece[..piece.find('"').unwrap()].to_string());
        }
    }
    found.sort();
    found.dedup();
    found
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let (_d, app, state) = app().await;
    let (s, doc) = get(&app, "/api/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    // Every documented path is one the router matches: the route template
    // it counts the request under is the documented path itself.
    for (path, ops) in paths {
        let methods: Vec<&String> = ops.as_object().unwrap().keys().collect();
        assert_eq!(methods, ["get"], "{path}: the router serves GET only");
        let uri = path.replace("{symbol}", "AAPL");
        let res = app
            .clone()
            .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        drop(res); // a live stream's body is never read
        let text = state.metrics.render();
        assert!(
            text.contains(&format!("streamforge_api_requests_total{{route=\"{path}\"")),
            "{path} is documented but the router matched no such route:\n{}",
            text.lines()
                .filter(|l| l.starts_with("streamforge_api_requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Every route of the router is documented, but for the dashboard's
    // static files and the optional profiler.
    let undocumented = ["/assets/{*path}", "/debug/pprof/profile"];
    let routes = routes_in_source();
    assert!(routes.len() > 10, "routes found in the source: {routes:?}");
    for route in &routes {
        assert_eq!(
            paths.contains_key(route),
            !undocumented.contains(&route.as_str()),
            "{route}: in the router; documented: {}",
            paths.contains_key(route)
        );
    }
    for path in paths.keys() {
        assert!(routes.contains(path), "{path} documented, not routed");
    }
    // And a path that is not there falls through to the 404 fallback.
    let (s, body) = get(&app, "/api/v1/nothing").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(state
        .metrics
        .render()
        .contains("streamforge_api_requests_total{route=\"unmatched\",status=\"404\"}"));
    // The index at /api lists the same endpoints.
    let (_, index) = get(&app, "/api").await;
    let mut listed: Vec<String> = index["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut documented: Vec<String> = paths.keys().cloned().collect();
    documented.sort();
    assert_eq!(listed, documented, "/api lists the documented endpoints");
}
