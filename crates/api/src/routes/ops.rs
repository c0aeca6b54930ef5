//! Operations endpoints: index, health, readiness, metrics, OpenAPI.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use streamforge_telemetry::{Exposition, PipelineStats};

use crate::routes::PATHS;
use crate::{ApiError, AppState};

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /`: what this server offers.
pub async fn index() -> Json<serde_json::Value> {
    Json(json!({
        "service": "streamforge",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": PATHS,
    }))
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Longest `/readyz` waits for the store or the cache to answer a ping.
pub const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /readyz`: backends reachable and feeds fresh; 503 with the failing
/// checks otherwise.
pub async fn readyz(State(state): State<AppState>) -> Response {
    // Both at once, each bounded: a frozen backend makes the answer a
    // prompt 503, not a hang.
    let (store, cache) = tokio::join!(
        tokio::time::timeout(PING_TIMEOUT, state.store.ping()),
        tokio::time::timeout(PING_TIMEOUT, state.cache.ping()),
    );
    let silent = || format!("no answer within {PING_TIMEOUT:?}");
    match store {
        Ok(Ok(())) => state.health.set("store", true, state.store.kind()),
        Ok(Err(e)) => state.health.set("store", false, e.to_string()),
        Err(_) => state.health.set("store", false, silent()),
    }
    match cache {
        Ok(Ok(())) => state.health.set("cache", true, state.cache.kind()),
        Ok(Err(e)) => state.health.set("cache", false, e.to_string()),
        Err(_) => state.health.set("cache", false, silent()),
    }
    let report = state.health.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// What the health-and-metrics router needs.
#[derive(Clone)]
pub struct OpsState {
    pub metrics: streamforge_telemetry::Metrics,
    pub health: streamforge_telemetry::Health,
}

/// `GET /readyz` of a role without a store: the stages' own checks.
pub async fn ops_readyz(State(state): State<OpsState>) -> Response {
    let report = state.health.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// `GET /metrics` of a role without a store.
pub async fn ops_metrics(State(state): State<OpsState>, headers: HeaderMap) -> Response {
    exposition(&state.metrics, &headers)
}

/// `GET /api/v1/pipeline` of a role without a store.
pub async fn ops_pipeline(State(state): State<OpsState>) -> Json<PipelineStats> {
    Json(state.metrics.snapshot())
}

/// `GET /api/v1/pipeline`: the pipeline's figures as typed JSON (what the
/// dashboard's pipeline panel shows), read from the same metrics as `/metrics`.
pub async fn pipeline(State(state): State<AppState>) -> Json<PipelineStats> {
    Json(state.metrics.snapshot())
}

/// `GET /metrics`: Prometheus text format, or OpenMetrics when the scraper
/// asks for it in `Accept`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    exposition(&state.metrics, &headers)
}

fn exposition(metrics: &streamforge_telemetry::Metrics, headers: &HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Exposition::negotiate(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        metrics.render_as(format),
    )
        .into_response()
}

/// `GET /api/openapi.json`
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Any other path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
