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
//! A server bound to a loopback address also checks the `Host` of every
//! request: it must be `localhost`, a loopback IP or the host of a listed
//! origin. Otherwise a page of any site could rebind its own name to
//! 127.0.0.1 (DNS rebinding) and, being then "same origin", read a local
//! server that needs no key.
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
    /// The server listens on loopback only: `Host` must name this machine.
    loopback: bool,
    metrics: Metrics,
    /// When a refusal was last logged (ms since the epoch): at most one
    /// line a second, however many a page sends.
    logged: std::sync::atomic::AtomicU64,
}

impl Origins {
    /// From validated `api.allowed_origins`; `loopback` when the server
    /// listens on a loopback address.
    pub fn new(allowed: &[String], loopback: bool, metrics: Metrics) -> Origins {
        Origins(Arc::new(Inner {
            listed: allowed
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any: allowed.iter().any(|o| o == "*"),
            loopback,
            metrics,
            logged: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Whether a refusal may be logged now (one a second).
    fn may_log(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.0.logged.load(std::sync::atomic::Ordering::Relaxed);
        now >= last + 1_000
            && self
                .0
                .logged
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Whether `host` (a `Host` header) names this machine or a listed
    /// origin's host.
    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        if name.eq_ignore_ascii_case("localhost")
            || name.to_ascii_lowercase().ends_with(".localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        {
            return true;
        }
        self.0.any
            || self.0.listed.iter().any(|o| {
                o.split_once("://").is_some_and(|(_, authority)| {
                    let listed = authority.rsplit_once(':').map_or(authority, |(n, _)| n);
                    listed.eq_ignore_ascii_case(name)
                })
            })
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
    if origins.0.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !host.is_empty() && !origins.host_allowed(host) {
            origins.0.metrics.auth_failed("origin");
            if origins.may_log() {
                tracing::warn!(
                    host,
                    path = req.uri().path(),
                    "a request naming another host reached this loopback server and was refused"
                );
            }
            return ApiError::Forbidden(format!(
                "this server listens on loopback and answers requests to localhost or 127.0.0.1, \
                 not to {host:?} (a page rebinding its name to this machine); \
                 list its origin in api.allowed_origins if it is yours"
            ))
            .into_response();
        }
    }
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let text = origin.to_str().unwrap_or("");
    if same_origin(text, req.headers()) {
        return next.run(req).await;
    }
    if !origins.listed(text) {
        origins.0.metrics.auth_failed("origin");
        if origins.may_log() {
            tracing::warn!(
                origin = text,
                path = req.uri().path(),
                "a request from a web page whose origin is not in api.allowed_origins was refused"
            );
        }
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
        let o = Origins::new(&["https://App.Example.com/".into()], true, metrics.clone());
        assert!(o.listed("https://app.example.com"));
        assert!(!o.listed("https://app.example.com.evil"));
        assert!(!o.listed("http://app.example.com"));
        assert!(Origins::new(&["*".into()], true, metrics).listed("https://any.where"));
    }

    #[test]
    fn a_loopback_server_answers_only_hosts_that_name_this_machine() {
        let o = Origins::new(&["https://app.example.com".into()], true, Metrics::new());
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.3.4.5",
            "app.localhost:1",
            "app.example.com:443",
        ] {
            assert!(o.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "localhost.evil.example",
            "[::2]:80",
        ] {
            assert!(!o.host_allowed(bad), "{bad}");
        }
        assert!(o.may_log() && !o.may_log(), "one line a second");
    }
}
