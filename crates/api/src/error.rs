//! [`ApiError`]: every way a request can fail, as JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use streamforge_store::{CacheError, StoreError};

/// An HTTP error answer: `{"error": "...", "detail": "..."}` (plus
/// `"parameter"` for a bad parameter).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query or path parameter is missing, malformed or out of range.
    #[error("invalid parameter {parameter}: {detail}")]
    BadParameter {
        parameter: &'static str,
        detail: String,
    },
    /// Nothing is stored for this symbol.
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The resource is in use (one CPU profile at a time).
    #[error("busy: {0}")]
    Busy(String),
    /// A limit of the server is reached, or an answer took too long:
    /// `503`, try again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Something failed inside the process.
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl ApiError {
    pub fn bad(parameter: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadParameter {
            parameter,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnknownSymbol(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Busy(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Store(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Cache(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::BadParameter { parameter, detail } => json!({
                "error": "invalid parameter",
                "parameter": parameter,
                "detail": format!("{parameter}: {detail}"),
            }),
            ApiError::UnknownSymbol(s) => json!({
                "error": "unknown symbol",
                "detail": format!("no ticks are stored for {s}"),
            }),
            ApiError::NotFound(what) => json!({"error": "not found", "detail": what}),
            ApiError::Busy(what) => json!({"error": "busy", "detail": what}),
            ApiError::Unavailable(what) => json!({"error": "unavailable", "detail": what}),
            ApiError::Internal(what) => {
                tracing::error!(error = %what, "request failed inside the process");
                json!({"error": "internal error", "detail": what})
            }
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store query failed");
                json!({"error": "store error", "detail": e.to_string()})
            }
            ApiError::Cache(e) => {
                tracing::error!(error = %e, "cache query failed");
                json!({"error": "cache error", "detail": e.to_string()})
            }
        };
        (status, Json(body)).into_response()
    }
}
