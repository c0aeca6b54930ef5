//! The router: every route, and the layer that counts requests.

pub(crate) mod market;
pub(crate) mod ops;
pub mod profile;
pub mod stream;
pub mod web;
pub mod ws;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use streamforge_telemetry::events::Refusal;
use streamforge_telemetry::Event;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ApiError, AppState};

/// Every path the router serves, as written in the OpenAPI document.
pub const PATHS: &[&str] = &[
    "/",
    "/api",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/openapi.json",
    "/api/explorer",
    "/api/v1/pipeline",
    "/api/v1/symbols",
    "/api/v1/quotes/{symbol}/latest",
    "/api/v1/ticks/{symbol}",
    "/api/v1/candles/{symbol}",
    "/api/v1/gaps",
    "/api/v1/completeness",
    "/api/v1/stream",
    "/api/v1/ws",
];

/// Health and metrics only, for roles without a store (`ingest`).
pub fn ops_router(
    metrics: streamforge_telemetry::Metrics,
    health: streamforge_telemetry::Health,
) -> Router {
    let state = ops::OpsState { metrics, health };
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::ops_readyz))
        .route("/metrics", get(ops::ops_metrics))
        .route("/api/v1/pipeline", get(ops::ops_pipeline))
        .fallback(ops::not_found)
        .with_state(state)
}

/// Permits for live streams (SSE and WebSocket), one per open stream.
#[derive(Clone)]
pub(crate) struct StreamSlots(pub(crate) Arc<Semaphore>);

impl StreamSlots {
    /// A slot for one more stream, or the `503` that says the server is full.
    pub(crate) fn take(
        &self,
        metrics: &streamforge_telemetry::Metrics,
        max: usize,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            crate::events::LimitReached { limit: Refusal::MaxStreams }.emit(metrics);
            ApiError::Unavailable(format!(
                "{max} live streams are open, the most this server takes (api.max_streams); retry later"
            ))
        })
    }
}

/// The full API.
pub fn router(state: AppState) -> Router {
    let slots = StreamSlots(Arc::new(Semaphore::new(state.limits.max_streams)));
    let document = axum::body::Bytes::from(crate::openapi::document(&state.limits));
    let openapi = get(move || ops::openapi(document.clone()));
    let streams = Router::new()
        .route("/api/v1/stream", get(stream::sse))
        .route("/api/v1/ws", get(ws::upgrade))
        .layer(Extension(slots));
    Router::new()
        .route("/", get(web::index))
        .route("/assets/{*path}", get(web::asset))
        .route("/api", get(ops::index))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", openapi)
        .route("/api/explorer", get(web::explorer))
        .route("/api/v1/pipeline", get(ops::pipeline))
        .route("/api/v1/symbols", get(market::symbols))
        .route("/api/v1/quotes/{symbol}/latest", get(market::latest_quote))
        .route("/api/v1/ticks/{symbol}", get(market::ticks))
        .route("/api/v1/candles/{symbol}", get(market::candles))
        .route("/api/v1/gaps", get(market::gaps))
        .route("/api/v1/completeness", get(market::completeness))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .merge(streams)
        .fallback(ops::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Answers `503` when a REST request takes longer than
/// `limits.request_timeout` (a store that does not answer, say); the work
/// in flight is dropped.
async fn request_timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.limits.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            crate::events::LimitReached {
                limit: Refusal::RequestTimeout,
            }
            .emit(&state.metrics);
            ApiError::Unavailable(format!(
                "no answer within {limit:?} (api.request_timeout); the store may be unavailable"
            ))
            .into_response()
        }
    }
}

/// Counts every request by route template (a fixed label set) and status.
async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .api_request(&route, response.status().as_u16(), started.elapsed());
    response
}
