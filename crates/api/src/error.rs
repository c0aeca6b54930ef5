//! [`ApiError`]: every way a request can fail, as JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use streamforge_store::{CacheError, StoreError};

use crate::openapi::ErrorBody;

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
    /// No key, or a key this server does not know: `401`.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A known key without the scope the route needs: `403`.
    #[error("forbidden: {0}")]
    Forbidden(String),
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
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
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
        let body = |error: &'static str, detail: String| ErrorBody {
            error,
            detail,
            parameter: None,
        };
        let body = match self {
            ApiError::BadParameter { parameter, detail } => ErrorBody {
                error: "invalid parameter",
                detail: format!("{parameter}: {detail}"),
                parameter: Some(parameter),
            },
            ApiError::UnknownSymbol(s) => {
                body("unknown symbol", format!("no ticks are stored for {s}"))
            }
            ApiError::NotFound(what) => body("not found", what),
            ApiError::Busy(what) => body("busy", what),
            ApiError::Unauthorized(what) => {
                let mut response = (status, Json(body("unauthorized", what))).into_response();
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer realm=\"streamforge\""),
                );
                return response;
            }
            ApiError::Forbidden(what) => body("forbidden", what),
            ApiError::Unavailable(what) => body("unavailable", what),
            ApiError::Internal(what) => {
                tracing::error!(error = %what, "request failed inside the process");
                body("internal error", what)
            }
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store query failed");
                body("store error", e.to_string())
            }
            ApiError::Cache(e) => {
                tracing::error!(error = %e, "cache query failed");
                body("cache error", e.to_string())
            }
        };
        (status, Json(body)).into_response()
    }
}
