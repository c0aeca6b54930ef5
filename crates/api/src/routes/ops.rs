//! Operations endpoints: index, health, readiness, metrics, OpenAPI.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use streamforge_telemetry::{Exposition, HealthReport, PipelineStats};
use utoipa::ToSchema;

use crate::routes::PATHS;
use crate::{ApiError, AppState};

/// What this server offers.
#[derive(Serialize, ToSchema)]
pub struct ServiceIndex {
    /// Always `streamforge`.
    service: &'static str,
    version: &'static str,
    /// Every path the server answers.
    endpoints: &'static [&'static str],
    /// What this caller may do without presenting more (`read`, `stream`,
    /// `ops`): everything with no keys configured; a client that finds
    /// `read` missing knows to ask for an API key before anything else.
    scopes: Vec<&'static str>,
}

/// Service index
///
/// The service's name, version and endpoints.
#[utoipa::path(get, path = "/api", tag = "operations", operation_id = "service_index",
    responses((status = 200, description = "Name, version and endpoints", body = ServiceIndex)))]
pub async fn index(caller: Option<axum::Extension<crate::auth::Caller>>) -> Json<ServiceIndex> {
    use crate::auth::Scope;
    let scopes = [Scope::Read, Scope::Stream, Scope::Ops]
        .into_iter()
        .filter(|s| caller.as_ref().is_none_or(|c| c.may(*s)))
        .map(Scope::as_str)
        .collect();
    Json(ServiceIndex {
        service: "streamforge",
        version: env!("CARGO_PKG_VERSION"),
        endpoints: PATHS,
        scopes,
    })
}

/// The answer of `/healthz`.
#[derive(Serialize, ToSchema)]
pub struct Alive {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness
///
/// The process is alive and answering.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Alive)))]
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// Longest `/readyz` waits for the store or the cache to answer a ping.
pub const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: backends reachable and feeds fresh
///
/// Every check with its state; `503` when one that is not advisory fails.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthReport),
        (status = 503, description = "Not ready; the failing checks say why", body = HealthReport),
    ))]
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

/// The pipeline's figures
///
/// Since the process started (what the dashboard's pipeline panel shows):
/// per provider ticks, frames, connections, reconnects, errors and gaps;
/// rejects, publishes, consumption and dead letters; consumer lag; store
/// writes; the ingest-to-stored latency histogram; live clients. Read from
/// the same metrics as `/metrics`.
#[utoipa::path(get, path = "/api/v1/pipeline", tag = "operations",
    responses((status = 200, description = "Pipeline figures", body = PipelineStats)))]
pub async fn pipeline(State(state): State<AppState>) -> Json<PipelineStats> {
    Json(state.metrics.snapshot())
}

/// Prometheus metrics
///
/// Text exposition format 0.0.4, or OpenMetrics 1.0 when `Accept` asks for
/// `application/openmetrics-text` (see docs/metrics.md).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics",
        content((String = "text/plain"), (String = "application/openmetrics-text")))))]
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

/// This document
///
/// The OpenAPI 3.1 document of this server, generated from its handlers.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json",
        body = Object)))]
pub async fn openapi(document: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

/// Any other path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
