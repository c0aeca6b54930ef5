//! Who may call: API keys with scopes.
//!
//! Keys are configured as `[[api.keys]]` with an `id`, the hex SHA-256 of
//! the key (the key itself is never stored) and `scopes`. A client sends
//! `Authorization: Bearer <key>` or `X-API-Key: <key>`; live streams also
//! take `?api_key=<key>` (browsers cannot set headers on a WebSocket or an
//! `EventSource`). The presented key is hashed and compared with every
//! configured digest in constant time.
//!
//! What each route needs: `/healthz`, the dashboard, the API index, the
//! explorer and the OpenAPI document need nothing; the REST queries need
//! `read`; `/api/v1/stream` and `/api/v1/ws` need `stream`; `/metrics` and
//! `/debug/pprof` need `ops`; `/readyz` answers everyone but shows its checks
//! (which name backend errors) only to `ops`.
//!
//! With no keys configured, every caller has every scope: the default
//! embedded `run` on a loopback address needs no setup. Binding another
//! address with no keys is refused at start-up (see [`check_exposure`])
//! unless `api.anonymous = true` says so on purpose; with keys and
//! `api.anonymous = true`, callers without a key may `read` and `stream`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use streamforge_model::settings::Invalid;
use streamforge_telemetry::Metrics;

use crate::ApiError;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The REST queries (`/api/v1/...`).
    Read,
    /// The live streams (`/api/v1/stream`, `/api/v1/ws`).
    Stream,
    /// `/metrics`, `/readyz` with its checks, `/debug/pprof`.
    Ops,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Stream => "stream",
            Scope::Ops => "ops",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Stream => 2,
            Scope::Ops => 4,
        }
    }
}

/// One `[[api.keys]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// A name for the key, in logs and metrics (never the key).
    pub id: String,
    /// Hex SHA-256 of the key (`streamforge keys generate` prints it).
    pub sha256: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Requests a second this key may make on average (unlimited when
    /// absent); beyond, `429` with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Requests it may make at once above the rate [default: the rate,
    /// at least 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl ApiKey {
    /// The digest configured, as bytes.
    fn digest(&self) -> Option<[u8; 32]> {
        let hex = self.sha256.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(text, 16).ok()?;
        }
        Some(out)
    }
}

/// Checks `[[api.keys]]`: ids present and distinct, digests of 64 hex
/// digits, at least one scope each.
pub fn validate_keys(keys: &[ApiKey]) -> Result<(), Invalid> {
    let mut ids = std::collections::HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        let at = |field: &str| format!("keys[{i}].{field}");
        if key.id.trim().is_empty() {
            return Err(Invalid::new(at("id"), "must not be empty"));
        }
        if !ids.insert(key.id.as_str()) {
            return Err(Invalid::new(
                at("id"),
                format!("{:?} is used twice", key.id),
            ));
        }
        if key.digest().is_none() {
            return Err(Invalid::new(
                at("sha256"),
                "must be the 64 hex digits of the key's SHA-256 (`streamforge keys generate` prints it)",
            ));
        }
        if key.scopes.is_empty() {
            return Err(Invalid::new(
                at("scopes"),
                "name at least one of read, stream, ops",
            ));
        }
        if let Some(rate) = key.rate_per_second {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(Invalid::new(
                    at("rate_per_second"),
                    "must be a number above 0",
                ));
            }
        }
        if key.burst == Some(0) {
            return Err(Invalid::new(at("burst"), "must be at least 1"));
        }
        if key.burst.is_some() && key.rate_per_second.is_none() {
            return Err(Invalid::new(
                at("burst"),
                "limits nothing without rate_per_second; set both, or neither (unlimited)",
            ));
        }
    }
    Ok(())
}

/// Refuses to serve an address other machines can reach with no key
/// configured, unless `anonymous` says so on purpose.
pub fn check_exposure(addr: SocketAddr, keys: &[ApiKey], anonymous: bool) -> Result<(), String> {
    if keys.is_empty() && !anonymous && !addr.ip().is_loopback() {
        return Err(format!(
            "http.addr {addr} is reachable from other machines and no API key is configured: \
             add one (`streamforge keys generate --id NAME --scopes read,stream,ops` prints a key \
             and the [[api.keys]] block to paste), or set api.anonymous = true \
             (STREAMFORGE_API__ANONYMOUS=true) to serve everyone on purpose, or bind 127.0.0.1"
        ));
    }
    Ok(())
}

/// The hex SHA-256 of `key`: what `[[api.keys]] sha256` holds.
pub fn digest_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The keys and what callers without one may do.
#[derive(Clone)]
pub struct Auth(Arc<Inner>);

struct Inner {
    keys: Vec<([u8; 32], u8, String)>,
    /// Scope bits of a caller without a key.
    anonymous: u8,
    metrics: Metrics,
    /// Rate and burst per key id, and per address of anonymous callers.
    key_rates: std::collections::HashMap<String, Rate>,
    anonymous_rate: Option<Rate>,
    buckets: parking_lot::Mutex<Buckets>,
}

/// A token bucket's refill rate and size.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `per_second` on average, `burst` at once (the rate, at least 1,
    /// when absent); `None` when `per_second` is absent or 0 (no limit).
    pub fn new(per_second: Option<f64>, burst: Option<u32>) -> Option<Rate> {
        let per_second = per_second.filter(|r| *r > 0.0)?;
        let burst = burst.map_or(per_second.ceil().max(1.0), f64::from);
        Some(Rate { per_second, burst })
    }
}

/// Who a bucket belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Holder {
    Key(String),
    Address(std::net::IpAddr),
    /// Wrong keys presented from an address.
    Failures(std::net::IpAddr),
}

/// Wrong keys an address may present: 10 at once, then one every 5 s.
/// Beyond, every request from it is answered `429` before its key is
/// looked at, so guessing keys is slow, and the log holds at most one line
/// per wrong key allowed.
const FAILURES: Rate = Rate {
    per_second: 0.2,
    burst: 10.0,
};

/// Most buckets tracked at once; beyond, full buckets (idle callers) are
/// dropped first, so a scan from many addresses cannot grow memory
/// without bound.
const MAX_BUCKETS: usize = 65_536;

#[derive(Default)]
struct Buckets(std::collections::HashMap<Holder, (f64, std::time::Instant, Rate)>);

impl Buckets {
    /// Takes one token of `holder`'s bucket; `Err(seconds)` until the next
    /// token when it is empty.
    fn take(&mut self, holder: Holder, rate: Rate, now: std::time::Instant) -> Result<(), f64> {
        if self.0.len() >= MAX_BUCKETS && !self.0.contains_key(&holder) {
            // Each bucket by its own rate: a key's is not the addresses'.
            self.0.retain(|_, (tokens, at, r)| {
                *tokens + now.duration_since(*at).as_secs_f64() * r.per_second < r.burst
            });
            if self.0.len() >= MAX_BUCKETS {
                self.0.clear();
            }
        }
        let (tokens, at, _) = self.0.entry(holder).or_insert((rate.burst, now, rate));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * rate.per_second).min(rate.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - *tokens) / rate.per_second)
        }
    }

    /// `Err(seconds)` while `holder`'s bucket is empty, taking nothing.
    fn empty(&self, holder: &Holder, now: std::time::Instant) -> Result<(), f64> {
        match self.0.get(holder) {
            Some((tokens, at, rate)) => {
                let tokens = tokens + now.duration_since(*at).as_secs_f64() * rate.per_second;
                if tokens >= 1.0 {
                    Ok(())
                } else {
                    Err((1.0 - tokens) / rate.per_second)
                }
            }
            None => Ok(()),
        }
    }
}

/// The caller of a request, once authenticated (an extension).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key's id; `None` for an anonymous caller.
    pub key: Option<String>,
    scopes: u8,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes & scope.bit() != 0
    }
}

const ALL: u8 = 1 | 2 | 4;

impl Auth {
    /// From validated `[[api.keys]]` (entries with a bad digest are skipped;
    /// [`validate_keys`] refuses them first).
    pub fn new(
        keys: &[ApiKey],
        anonymous: bool,
        anonymous_rate: Option<Rate>,
        metrics: Metrics,
    ) -> Auth {
        let anonymous = match (keys.is_empty(), anonymous) {
            (true, _) => ALL,
            (false, true) => Scope::Read.bit() | Scope::Stream.bit(),
            (false, false) => 0,
        };
        Auth(Arc::new(Inner {
            keys: keys
                .iter()
                .filter_map(|k| {
                    let scopes = k.scopes.iter().fold(0, |bits, s| bits | s.bit());
                    Some((k.digest()?, scopes, k.id.clone()))
                })
                .collect(),
            anonymous,
            metrics,
            key_rates: keys
                .iter()
                .filter_map(|k| Some((k.id.clone(), Rate::new(k.rate_per_second, k.burst)?)))
                .collect(),
            anonymous_rate,
            buckets: parking_lot::Mutex::default(),
        }))
    }

    /// `Err(seconds until a request is allowed)` when `caller` is over its
    /// rate; anonymous callers are limited per address.
    fn over_rate(&self, caller: &Caller, addr: Option<std::net::IpAddr>) -> Result<(), f64> {
        let (holder, rate) = match &caller.key {
            Some(id) => match self.0.key_rates.get(id) {
                Some(rate) => (Holder::Key(id.clone()), *rate),
                None => return Ok(()),
            },
            None => match (self.0.anonymous_rate, addr) {
                (Some(rate), Some(addr)) => (Holder::Address(addr), rate),
                _ => return Ok(()),
            },
        };
        self.0
            .buckets
            .lock()
            .take(holder, rate, std::time::Instant::now())
    }

    /// The key with this digest, compared with every configured one in
    /// constant time (no early exit, no data-dependent branch per byte).
    fn find(&self, presented: &str) -> Option<(u8, &str)> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (want, scopes, id) in &self.0.keys {
            let diff = want
                .iter()
                .zip(&digest)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some((*scopes, id.as_str()));
            }
        }
        found
    }

    /// Wraps `router`: every request is authenticated before it reaches it.
    pub fn layer(&self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(
            self.clone(),
            authenticate,
        ))
    }
}

/// The scope a path needs; `None` when it is open to everyone.
pub(crate) fn needed(path: &str) -> Option<Scope> {
    match path {
        "/healthz" | "/readyz" | "/" | "/api" | "/api/explorer" | "/api/openapi.json" => None,
        "/api/v1/stream" | "/api/v1/ws" => Some(Scope::Stream),
        "/metrics" => Some(Scope::Ops),
        p if p.starts_with("/assets/") => None,
        p if p.starts_with("/debug/") => Some(Scope::Ops),
        // Every other path (the REST queries, and unknown paths, whose 404
        // must not tell a stranger what exists).
        _ => Some(Scope::Read),
    }
}

/// The key a request presents: a header, or (live streams only) the query.
fn presented<'r>(headers: &'r HeaderMap, query: Option<&'r str>, stream: bool) -> Option<&'r str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        return v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim);
    }
    if let Some(v) = headers.get("x-api-key") {
        return v.to_str().ok().map(str::trim);
    }
    if stream {
        return query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("api_key="));
    }
    None
}

/// `text` with its `%XX` escapes decoded (a browser's `encodeURIComponent`
/// of a key); `None` when an escape is malformed or the result not UTF-8.
fn percent_decoded(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !text.contains('%') {
        return Some(std::borrow::Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

/// `query` without its `api_key` parameter (the handlers accept exactly the
/// parameters they document; the key is not theirs).
fn without_key(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.starts_with("api_key=") && *p != "api_key")
        .collect::<Vec<_>>()
        .join("&")
}

/// `429` with `Retry-After` (whole seconds, at least 1), counted by key id.
fn rate_limited(auth: &Auth, caller: &Caller, wait: f64) -> Response {
    let who = caller.key.as_deref().unwrap_or("anonymous");
    auth.0.metrics.rate_limited(who);
    let seconds = wait.ceil().max(1.0) as u64;
    let detail = match &caller.key {
        Some(id) => format!("the key {id:?} is over its request rate; retry in {seconds} s"),
        None => format!("this address is over its request rate; retry in {seconds} s"),
    };
    too_many(detail, seconds)
}

/// `429` for an address that presented too many wrong keys.
fn locked_out(auth: &Auth, wait: f64) -> Response {
    auth.0.metrics.auth_failed("too_many_failures");
    let seconds = wait.ceil().max(1.0) as u64;
    too_many(
        format!("too many wrong API keys from this address; retry in {seconds} s"),
        seconds,
    )
}

fn too_many(detail: String, seconds: u64) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(crate::openapi::ErrorBody {
            error: "rate limited",
            detail,
            parameter: None,
        }),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds),
    );
    response
}

async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let need = needed(&path);
    let stream = need == Some(Scope::Stream);
    let addr = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // A query key may be escaped; one that does not decode matches no key.
    let key = presented(req.headers(), req.uri().query(), stream)
        .map(|k| percent_decoded(k).map_or_else(|| k.to_string(), |k| k.into_owned()));
    if let (Some(_), Some(ip)) = (&key, addr) {
        let now = std::time::Instant::now();
        if let Err(wait) = auth.0.buckets.lock().empty(&Holder::Failures(ip), now) {
            return locked_out(&auth, wait);
        }
    }
    let caller = match key.as_deref() {
        None => Caller {
            key: None,
            scopes: auth.0.anonymous,
        },
        Some(k) => match auth.find(k) {
            Some((scopes, id)) => Caller {
                key: Some(id.to_string()),
                scopes,
            },
            None => {
                auth.0.metrics.auth_failed("invalid_key");
                if let Some(ip) = addr {
                    let now = std::time::Instant::now();
                    let mut buckets = auth.0.buckets.lock();
                    if let Err(wait) = buckets.take(Holder::Failures(ip), FAILURES, now) {
                        drop(buckets);
                        return locked_out(&auth, wait);
                    }
                }
                tracing::warn!(
                    path,
                    address = %addr.map_or_else(|| "unknown".to_string(), |a| a.to_string()),
                    "a request presented an API key this server does not know"
                );
                return ApiError::Unauthorized(
                    "the API key is not valid (send Authorization: Bearer <key> or X-API-Key: <key>)"
                        .into(),
                )
                .into_response();
            }
        },
    };
    if let Some(scope) = need.filter(|s| !caller.may(*s)) {
        return match &caller.key {
            None => {
                auth.0.metrics.auth_failed("missing_key");
                ApiError::Unauthorized(format!(
                    "{path} needs an API key with the {} scope (send Authorization: Bearer <key> or X-API-Key: <key>{})",
                    scope.as_str(),
                    if stream { ", or ?api_key=<key>" } else { "" }
                ))
                .into_response()
            }
            Some(id) => {
                auth.0.metrics.auth_failed("missing_scope");
                tracing::warn!(key = %id, path, scope = scope.as_str(), "an API key without the scope a route needs");
                ApiError::Forbidden(format!(
                    "the key {id:?} lacks the {} scope {path} needs",
                    scope.as_str()
                ))
                .into_response()
            }
        };
    }
    if need.is_some() {
        if let Err(wait) = auth.over_rate(&caller, addr) {
            return rate_limited(&auth, &caller, wait);
        }
    }
    if stream {
        if let Some(query) = req.uri().query().filter(|q| q.contains("api_key")) {
            let rest = without_key(query);
            let uri = if rest.is_empty() {
                path.clone()
            } else {
                format!("{path}?{rest}")
            };
            if let Ok(uri) = uri.parse() {
                *req.uri_mut() = uri;
            }
        }
    }
    let ops = caller.may(Scope::Ops);
    req.extensions_mut().insert(caller);
    let response = next.run(req).await;
    if path == "/readyz" && !ops {
        // Only ready or not: the checks name backends and their errors.
        let ready = response.status() == StatusCode::OK;
        return (response.status(), Json(serde_json::json!({"ready": ready}))).into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str, scopes: &[Scope]) -> ApiKey {
        ApiKey {
            id: id.into(),
            sha256: digest_hex(secret),
            scopes: scopes.to_vec(),
            rate_per_second: None,
            burst: None,
        }
    }

    #[test]
    fn keys_are_found_by_their_digest_only() {
        let keys = [
            key("a", "k-a", &[Scope::Read]),
            key("b", "k-b", &[Scope::Ops]),
        ];
        let auth = Auth::new(&keys, false, None, Metrics::new());
        assert_eq!(auth.find("k-a"), Some((Scope::Read.bit(), "a")));
        assert_eq!(auth.find("k-b"), Some((Scope::Ops.bit(), "b")));
        assert_eq!(auth.find("k-c"), None);
        assert_eq!(
            auth.find(&keys[0].sha256),
            None,
            "the digest is not the key"
        );
    }

    #[test]
    fn bad_key_entries_and_exposure_are_refused_with_the_field_named() {
        let mut k = key("a", "k", &[Scope::Read]);
        assert!(validate_keys(std::slice::from_ref(&k)).is_ok());
        k.sha256.pop();
        assert!(validate_keys(std::slice::from_ref(&k))
            .unwrap_err()
            .to_string()
            .contains("keys[0].sha256"));
        let twice = [key("a", "1", &[Scope::Read]), key("a", "2", &[Scope::Read])];
        assert!(validate_keys(&twice)
            .unwrap_err()
            .to_string()
            .contains("keys[1].id"));
        let mut burst_only = key("a", "1", &[Scope::Read]);
        burst_only.burst = Some(5);
        assert!(validate_keys(&[burst_only])
            .unwrap_err()
            .to_string()
            .contains("keys[0].burst"));
        let none = [key("a", "1", &[])];
        assert!(validate_keys(&none)
            .unwrap_err()
            .to_string()
            .contains("keys[0].scopes"));

        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let err = check_exposure(public, &[], false).unwrap_err();
        assert!(
            err.contains("keys generate") && err.contains("api.anonymous"),
            "{err}"
        );
        assert!(check_exposure(local, &[], false).is_ok());
        assert!(check_exposure(public, &[], true).is_ok());
        assert!(check_exposure(public, &twice[..1], false).is_ok());
    }

    #[test]
    fn routes_need_their_scope_and_keys_leave_the_stream_query() {
        assert_eq!(needed("/healthz"), None);
        assert_eq!(needed("/assets/app.js"), None);
        assert_eq!(needed("/api/v1/ticks/AAPL"), Some(Scope::Read));
        assert_eq!(needed("/api/v1/ws"), Some(Scope::Stream));
        assert_eq!(needed("/metrics"), Some(Scope::Ops));
        assert_eq!(needed("/debug/pprof/profile"), Some(Scope::Ops));
        assert_eq!(needed("/nowhere"), Some(Scope::Read));
        assert_eq!(
            without_key("symbols=AAPL&api_key=x&candles=1m"),
            "symbols=AAPL&candles=1m"
        );
        assert_eq!(without_key("api_key=x"), "");
        let h = HeaderMap::new();
        assert_eq!(presented(&h, Some("a=1&api_key=k"), true), Some("k"));
        assert_eq!(
            presented(&h, Some("api_key=k"), false),
            None,
            "REST takes headers only"
        );
        assert_eq!(percent_decoded("sf_a%2Bb%26c").as_deref(), Some("sf_a+b&c"));
        assert_eq!(percent_decoded("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decoded("bad%zz"), None);
        assert_eq!(percent_decoded("cut%2"), None);
    }

    #[test]
    fn buckets_refill_at_the_rate_and_hold_at_most_the_burst() {
        let rate = Rate::new(Some(2.0), Some(3)).unwrap();
        let mut b = Buckets::default();
        let t0 = std::time::Instant::now();
        let who = || Holder::Key("k".into());
        for _ in 0..3 {
            assert!(b.take(who(), rate, t0).is_ok());
        }
        let wait = b.take(who(), rate, t0).unwrap_err();
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        let half = t0 + std::time::Duration::from_millis(500);
        assert!(b.take(who(), rate, half).is_ok());
        // Idle for long: back to the burst, not beyond.
        let later = t0 + std::time::Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(who(), rate, later).is_ok());
        }
        assert!(b.take(who(), rate, later).is_err());
        assert!(Rate::new(Some(0.0), None).is_none());
        assert_eq!(Rate::new(Some(0.5), None).unwrap().burst, 1.0);
    }

    #[test]
    fn an_address_with_too_many_wrong_keys_is_locked_out_for_a_while() {
        let mut b = Buckets::default();
        let t0 = std::time::Instant::now();
        let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let who = Holder::Failures(ip);
        assert!(b.empty(&who, t0).is_ok(), "no failures yet");
        for _ in 0..10 {
            assert!(b.take(who.clone(), FAILURES, t0).is_ok());
        }
        assert!(b.take(who.clone(), FAILURES, t0).is_err());
        let wait = b.empty(&who, t0).unwrap_err();
        assert!((wait - 5.0).abs() < 1e-9, "{wait}");
        assert!(b
            .empty(&Holder::Failures("192.0.2.8".parse().unwrap()), t0)
            .is_ok());
        assert!(b
            .empty(&who, t0 + std::time::Duration::from_secs(5))
            .is_ok());
    }
}
