//! `GET /debug/pprof/profile?seconds=N`: a CPU profile of the whole process
//! as a flame graph (SVG), sampled at 99 Hz. Served only when
//! `http.pprof = true`: profiling costs CPU and shows code paths.

use std::time::Duration;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::params::{Params, RawQuery};
use crate::ApiError;

/// Longest profile one request may take.
const MAX_SECONDS: u64 = 60;

/// The profiling routes, to merge into a role's router.
pub fn router() -> Router {
    Router::new().route("/debug/pprof/profile", get(profile))
}

async fn profile(RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = Params::new(raw, &["seconds"])?;
    let seconds = match params.get("seconds") {
        None => 10,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_SECONDS).contains(n))
            .ok_or_else(|| {
                ApiError::bad("seconds", format!("expected 1 to {MAX_SECONDS}, got {s:?}"))
            })?,
    };
    let svg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(99)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| ApiError::Busy(format!("cannot start the profiler: {e}")))?;
        std::thread::sleep(Duration::from_secs(seconds));
        let report = guard
            .report()
            .build()
            .map_err(|e| ApiError::Internal(format!("building the profile: {e}")))?;
        let mut svg = Vec::new();
        report
            .flamegraph(&mut svg)
            .map_err(|e| ApiError::Internal(format!("drawing the flame graph: {e}")))?;
        Ok(svg)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}
