//! The web dashboard and the API explorer: `web/` embedded in the binary,
//! served at `/`, `/api/explorer` and `/assets/...`. No CDN, no bundler:
//! what is in `web/` is what the browser gets (the charting library is
//! vendored under `web/vendor/`).

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Every embedded asset: path under `/assets/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../../web/app.js"),
    ),
    (
        "explorer.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../../web/explorer.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../../web/app.css"),
    ),
    (
        "vendor/lightweight-charts.standalone.production.js",
        "text/javascript; charset=utf-8",
        include_bytes!(
            "../../../../web/vendor/lightweight-charts/lightweight-charts.standalone.production.js"
        ),
    ),
    (
        "vendor/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../../../web/vendor/lightweight-charts/LICENSE"),
    ),
    (
        "vendor/NOTICE",
        "text/plain; charset=utf-8",
        include_bytes!("../../../../web/vendor/lightweight-charts/NOTICE"),
    ),
];

const INDEX: &[u8] = include_bytes!("../../../../web/index.html");
const EXPLORER: &[u8] = include_bytes!("../../../../web/explorer.html");

fn respond(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The dashboard
///
/// The web dashboard (HTML; its scripts and styles are under `/assets/`).
#[utoipa::path(get, path = "/", tag = "web", operation_id = "dashboard",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String)))]
pub async fn index() -> Response {
    respond("text/html; charset=utf-8", INDEX)
}

/// The API explorer
///
/// Reads this server's OpenAPI document and lets you call every operation
/// from the browser (HTML; served from the binary, no CDN).
#[utoipa::path(get, path = "/api/explorer", tag = "web",
    responses((status = 200, description = "The explorer page", content_type = "text/html", body = String)))]
pub async fn explorer() -> Response {
    respond("text/html; charset=utf-8", EXPLORER)
}

/// `GET /assets/{*path}`
pub async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, body)) => respond(content_type, body),
        None => crate::ApiError::NotFound(format!("no asset {path:?}")).into_response(),
    }
}
