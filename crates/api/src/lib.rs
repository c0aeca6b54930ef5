//! The StreamForge HTTP API.
//!
//! REST queries over the tick store and the latest-quote cache, live ticks
//! and candle updates (SSE and WebSocket), the web dashboard, health,
//! Prometheus metrics and the OpenAPI document.
//! Every error is JSON `{"error": "...", "detail": "..."}` with the right
//! status (see [`ApiError`]).
//!
//! # Layout
//! - [`error`] — [`ApiError`], the one error type of every handler.
//! - [`params`] — query-parameter parsing (times, limits, intervals, symbols).
//! - [`live`] — [`LiveHub`], the fan-out of live ticks and candle updates to
//!   stream clients, with a resume window (the candle updates it carries
//!   are made by the pipeline's live stage).
//! - [`openapi`] — the OpenAPI document, generated from the handlers'
//!   `#[utoipa::path]` attributes and the types they answer with.
//! - [`routes`] — the handlers; [`router`] wires them with the metrics
//!   layer, the REST request timeout and the cap on live streams.
//! - [`server`] — the HTTP server and its connection limits and timers.

pub mod auth;
pub mod error;
mod events;
pub mod live;
pub mod openapi;
pub mod origins;
pub mod params;
pub mod routes;
pub mod server;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use streamforge_model::settings::{at_least_one, duration_text, longer_than_zero, Invalid};
use streamforge_store::{Cache, TickStore};
use streamforge_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use live::LiveHub;
pub use routes::{ops_router, router};

/// Limits and defaults of the API's endpoints: the `[api]` section.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Rows returned when `limit` is not given.
    pub default_limit: usize,
    /// Largest `limit` a query may ask; a larger one is answered `400`.
    pub max_limit: usize,
    /// Look-back when a query has no `from`.
    #[serde(with = "duration_text")]
    pub default_window: Duration,
    /// Longest a REST request may take; then it is answered `503` (JSON).
    #[serde(with = "duration_text")]
    pub request_timeout: Duration,
    /// Most live streams (SSE and WebSocket) open at once; one more is
    /// answered `503`.
    pub max_streams: usize,
    /// Symbol subscriptions one WebSocket connection may hold.
    pub ws_max_subscriptions: usize,
    /// Callers without a key may `read` and `stream` even though keys are
    /// configured; with no keys, everyone may do everything — which on an
    /// address other machines can reach needs this set on purpose.
    pub anonymous: bool,
    /// Requests a second each address may make without a key, on average
    /// (0: unlimited); beyond, `429` with `Retry-After`.
    pub anonymous_rate_per_second: f64,
    /// Requests an address may make at once above that rate (0: the rate,
    /// at least 1).
    pub anonymous_burst: u32,
    /// Web pages of other origins that may call the API
    /// (`scheme://host[:port]`, or `*` for any): WebSocket upgrades and
    /// CORS. The server's own origin always may; others get `403`.
    pub allowed_origins: Vec<String>,
    /// API keys (`[[api.keys]]`); `streamforge keys generate` makes one.
    pub keys: Vec<auth::ApiKey>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            default_limit: 1_000,
            max_limit: 10_000,
            default_window: Duration::from_secs(24 * 3600),
            request_timeout: Duration::from_secs(30),
            max_streams: 1_024,
            ws_max_subscriptions: routes::ws::WsOptions::default().max_subscriptions,
            anonymous: false,
            anonymous_rate_per_second: 0.0,
            anonymous_burst: 0,
            allowed_origins: Vec::new(),
            keys: Vec::new(),
        }
    }
}

impl ApiConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("default_limit", self.default_limit),
            ("max_limit", self.max_limit),
            ("max_streams", self.max_streams),
            ("ws_max_subscriptions", self.ws_max_subscriptions),
        ])?;
        longer_than_zero(&[("request_timeout", self.request_timeout)])?;
        if !(self.anonymous_rate_per_second.is_finite() && self.anonymous_rate_per_second >= 0.0) {
            return Err(Invalid::new(
                "anonymous_rate_per_second",
                "must be 0 (unlimited) or a number above 0",
            ));
        }
        origins::validate_origins(&self.allowed_origins)?;
        auth::validate_keys(&self.keys)
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn TickStore>,
    pub cache: Arc<dyn Cache>,
    pub live: LiveHub,
    pub metrics: Metrics,
    pub health: Health,
    pub limits: ApiConfig,
    /// Timers of WebSocket connections.
    pub ws: routes::ws::WsOptions,
    /// Fires at shutdown: live streams end so the server can drain.
    pub shutdown: CancellationToken,
}
