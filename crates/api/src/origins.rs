//! Which web pages may call: the `Origin` check of WebSocket upgrades and
//! CORS for the REST queries and the SSE stream.
//!
//! A browser sends `Origin` with every WebSocket upgrade and every
//! cross-origin request. Without this check any page a user visits could
//! open the live stream of a server on their network. A request with an
//! `Origin` is let through only when it is the server's own origin (its
//! host and port equal the `Host` the request was sent to) or one listed in
//! `api.allowed_origins`; any other is answered `403`. Requests without an
//! `Origin` (curl, SDKs, other servers) are not browsers' and pass.
//!
//! A listed origin gets CORS headers: `Access-Control-Allow-Origin` with
//! its own value (never `*`, keys are credentials), `Vary: Origin`, and an
//! answer to its preflight (`OPTIONS` with `Access-Control-Request-Method`)
//! that allows `GET` with the `Authorization` and `X-API-Key` headers.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;
use streamforge_model::settings::Invalid;
use streamforge_telemetry::Metrics;

use crate::ApiError;

/// Checks `api.allowed_origins`: each is `*` or `scheme://host[:port]`
/// with `http` or `https` and nothing after the authority.
pub fn validate_origins(origins: &[String]) -> Result<(), Invalid> {
    for (i, origin) in origins.iter().enumerate() {
        if origin == "*" {
            continue;
        }
        let field = format!("allowed_origins[{i}]");
        let Some((scheme, authority)) = origin.split_once("://") else {
            return Err(Invalid::new(
                field,
                format!("{origin:?} is not an origin: write scheme://host[:port], e.g. https://app.example.com"),
            ));
        };
        if scheme != "http" && scheme != "https" {
            return Err(Invalid::new(
                field,
                format!("{origin:?}: the scheme must be http or https"),
            ));
        }
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(Invalid::new(
                field,
                format!(
                    "{origin:?}: an origin is scheme://host[:port] with no path, query or user"
                ),
            ));
        }
    }
    Ok(())
}

/// The allowed origins, compared without regard to ASCII case.
#[derive(Clone)]
pub struct Origins(Arc<Inner>);

struct Inner {
    listed: Vec<String>,
    any: bool,
    metrics: Metrics,
}

impl Origins {
    /// From validated `api.allowed_origins`.
    pub fn new(allowed: &[String], metrics: Metrics) -> Origins {
        Origins(Arc::new(Inner {
            listed: allowed
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any: allowed.iter().any(|o| o == "*"),
            metrics,
        }))
    }

    /// Wraps `router`: outside the keys, so a preflight (which carries no
    /// key) is answered.
    pub fn layer(&self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), check))
    }

    fn listed(&self, origin: &str) -> bool {
        self.0.any || self.0.listed.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// Whether `origin` is the server's own: its authority is the `Host` the
/// request was sent to.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

async fn check(State(origins): State<Origins>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let text = origin.to_str().unwrap_or("");
    if same_origin(text, req.headers()) {
        return next.run(req).await;
    }
    if !origins.listed(text) {
        origins.0.metrics.auth_failed("origin");
        tracing::warn!(
            origin = text,
            path = req.uri().path(),
            "a request from a web page whose origin is not in api.allowed_origins was refused"
        );
        return ApiError::Forbidden(format!(
            "the origin {text:?} may not call this server; add it to api.allowed_origins"
        ))
        .into_response();
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, x-api-key, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.append(header::VARY, HeaderValue::from_static("origin"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after, www-authenticate"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_scheme_and_authority() {
        assert!(validate_origins(&["https://app.example.com".into(), "*".into()]).is_ok());
        assert!(validate_origins(&["http://127.0.0.1:3000".into()]).is_ok());
        for bad in [
            "app.example.com",
            "ftp://x",
            "https://x/path",
            "https://",
            "https://u@x",
        ] {
            let e = validate_origins(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains("allowed_origins[0]"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_own_origin_is_the_host_the_request_went_to() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin("http://127.0.0.1:8080", &h));
        assert!(same_origin("https://127.0.0.1:8080", &h));
        assert!(!same_origin("http://127.0.0.1:9090", &h));
        assert!(!same_origin("http://evil.example", &h));
        assert!(!same_origin("null", &h));
        assert!(!same_origin("http://127.0.0.1:8080", &HeaderMap::new()));
    }

    #[test]
    fn listed_origins_match_without_case_or_trailing_slash() {
        let metrics = Metrics::new();
        let o = Origins::new(&["https://App.Example.com/".into()], metrics.clone());
        assert!(o.listed("https://app.example.com"));
        assert!(!o.listed("https://app.example.com.evil"));
        assert!(!o.listed("http://app.example.com"));
        assert!(Origins::new(&["*".into()], metrics).listed("https://any.where"));
    }
}
