//! Query-parameter parsing with errors that name the parameter.
//!
//! Handlers take the raw query as a map and pull typed values out of it, so
//! that a bad value is answered with 400 and the parameter's name, and an
//! unknown parameter (a typo) is an error rather than silently ignored.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;

use streamforge_model::{Interval, Symbol, Timestamp};

use crate::{ApiConfig, ApiError};

/// The raw query string as name → value.
pub struct Params {
    raw: HashMap<String, String>,
}

impl Params {
    /// Checks that only `allowed` names are present, each with a value.
    pub fn new(
        raw: HashMap<String, String>,
        allowed: &[impl AsRef<str>],
    ) -> Result<Self, ApiError> {
        let known = |k: &str| allowed.iter().any(|a| a.as_ref() == k);
        if let Some(unknown) = raw.keys().find(|k| !known(k)) {
            let names: Vec<&str> = allowed.iter().map(AsRef::as_ref).collect();
            return Err(ApiError::BadParameter {
                parameter: "query",
                detail: format!(
                    "unknown parameter {unknown:?}; this endpoint takes {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            });
        }
        if let Some(empty) = raw.iter().find(|(_, v)| v.is_empty()).map(|(k, _)| k) {
            return Err(ApiError::BadParameter {
                parameter: "query",
                detail: format!(
                    "parameter {empty:?} has no value; leave it out to get its default"
                ),
            });
        }
        Ok(Params { raw })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.raw.get(name).map(String::as_str)
    }

    /// RFC 3339 or epoch milliseconds.
    pub fn time(&self, name: &'static str) -> Result<Option<Timestamp>, ApiError> {
        self.get(name)
            .map(|v| Timestamp::parse(v).map_err(|e| ApiError::bad(name, e.to_string())))
            .transpose()
    }

    /// `[from, to)` with defaults: `to` = now plus the allowed clock skew,
    /// `from` = `to` minus the default window.
    pub fn range(&self, limits: &ApiConfig) -> Result<(Timestamp, Timestamp), ApiError> {
        const SKEW: Duration = Duration::from_secs(300);
        let to = self
            .time("to")?
            .unwrap_or_else(|| Timestamp::now().saturating_add_micros(SKEW.as_micros() as i64));
        let from = self
            .time("from")?
            .unwrap_or_else(|| to.saturating_sub_micros(limits.default_window.as_micros() as i64));
        // No tick lies outside [1970, 9999]: clamping changes no answer and
        // keeps every computation on the bounds (buckets, offsets) in range.
        let (from, to) = (clamp_time(from), clamp_time(to));
        // `[t, t)` is an empty range, answered with an empty page.
        if from > to {
            return Err(ApiError::bad(
                "from",
                format!("must not be after to ({from} > {to})"),
            ));
        }
        Ok((from, to))
    }

    /// A row count from 1 to the configured maximum.
    pub fn limit(&self, limits: &ApiConfig) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(limits.default_limit.min(limits.max_limit)),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=limits.max_limit).contains(&n) => Ok(n),
                _ => Err(ApiError::bad(
                    "limit",
                    format!(
                        "expected a whole number from 1 to {} (api.max_limit), got {:?}",
                        limits.max_limit,
                        v.chars().take(40).collect::<String>()
                    ),
                )),
            },
        }
    }

    pub fn interval(&self) -> Result<Interval, ApiError> {
        match self.get("interval") {
            None => Ok(Interval::M1),
            Some(v) => v.parse().map_err(|e: streamforge_model::IntervalError| {
                ApiError::bad("interval", e.to_string())
            }),
        }
    }

    /// `asc` (default) or `desc`.
    pub fn order(&self) -> Result<streamforge_store::Order, ApiError> {
        match self.get("order") {
            None | Some("asc") => Ok(streamforge_store::Order::Asc),
            Some("desc") => Ok(streamforge_store::Order::Desc),
            Some(v) => Err(ApiError::bad(
                "order",
                format!("expected asc or desc, got {v:?}"),
            )),
        }
    }

    /// A comma-separated symbol list; `None` when absent (all symbols).
    pub fn symbols(&self, name: &'static str) -> Result<Option<Vec<Symbol>>, ApiError> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Symbol::parse(s).map_err(|e| ApiError::bad(name, e.to_string())))
                    .collect()
            })
            .transpose()
    }
}

fn clamp_time(t: Timestamp) -> Timestamp {
    t.clamp(
        Timestamp::from_micros(0),
        streamforge_model::tick::MAX_TICK_TIME,
    )
}

/// A symbol from the path.
pub fn path_symbol(raw: &str) -> Result<Symbol, ApiError> {
    Symbol::parse(raw).map_err(|e| ApiError::bad("symbol", e.to_string()))
}

/// The query string as name → value; a malformed one is a JSON 400 like
/// every other bad parameter.
pub struct RawQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for RawQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| RawQuery(q))
            .map_err(|e| ApiError::bad("query", e.body_text()))
    }
}

/// The `{symbol}` path segment, validated.
pub struct PathSymbol(pub Symbol);

impl<S: Send + Sync> FromRequestParts<S> for PathSymbol {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad("symbol", e.body_text()))?;
        path_symbol(&raw).map(PathSymbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_times_are_clamped_to_where_ticks_can_be() {
        let limits = ApiConfig::default();
        let q = p(
            &[
                ("from", "-9223372036854775808"),
                ("to", "9223372036854775807"),
            ],
            &["from", "to"],
        )
        .unwrap();
        let (from, to) = q.range(&limits).unwrap();
        assert_eq!(from, Timestamp::from_micros(0));
        assert_eq!(to, streamforge_model::tick::MAX_TICK_TIME);
        // Both beyond the same end: an empty range, not a wrap.
        let q = p(
            &[
                ("from", "9223372036854775000"),
                ("to", "9223372036854775807"),
            ],
            &["from", "to"],
        )
        .unwrap();
        let (from, to) = q.range(&limits).unwrap();
        assert_eq!(
            (from, to),
            (
                streamforge_model::tick::MAX_TICK_TIME,
                streamforge_model::tick::MAX_TICK_TIME
            )
        );
        // Reversed: an error that names `from`.
        let q = p(&[("from", "2000"), ("to", "1000")], &["from", "to"]).unwrap();
        assert_eq!(
            q.range(&limits).unwrap_err().to_string().split(':').next(),
            Some("invalid parameter from")
        );
    }

    fn p(pairs: &[(&str, &str)], allowed: &[&str]) -> Result<Params, ApiError> {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            allowed,
        )
    }

    #[test]
    fn times_accept_rfc3339_and_epoch_millis() {
        let q = p(
            &[
                ("from", "2025-08-27T20:15:31.134Z"),
                ("to", "1756325800000"),
            ],
            &["from", "to"],
        )
        .unwrap();
        let (from, to) = q.range(&ApiConfig::default()).unwrap();
        assert_eq!(from.as_millis(), 1_756_325_731_134);
        assert_eq!(to.as_millis(), 1_756_325_800_000);
    }

    #[test]
    fn errors_name_the_parameter() {
        let limits = ApiConfig::default();
        let name = |e: ApiError| match e {
            ApiError::BadParameter { parameter, .. } => parameter,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            name(
                p(&[("from", "soon")], &["from"])
                    .unwrap()
                    .range(&limits)
                    .unwrap_err()
            ),
            "from"
        );
        assert_eq!(
            name(
                p(&[("to", "x")], &["to"])
                    .unwrap()
                    .range(&limits)
                    .unwrap_err()
            ),
            "to"
        );
        assert_eq!(
            name(
                p(&[("from", "2000"), ("to", "1000")], &["from", "to"])
                    .unwrap()
                    .range(&limits)
                    .unwrap_err()
            ),
            "from"
        );
        assert_eq!(
            name(
                p(&[("limit", "0")], &["limit"])
                    .unwrap()
                    .limit(&limits)
                    .unwrap_err()
            ),
            "limit"
        );
        assert_eq!(
            name(
                p(&[("limit", "-5")], &["limit"])
                    .unwrap()
                    .limit(&limits)
                    .unwrap_err()
            ),
            "limit"
        );
        assert_eq!(
            name(
                p(&[("interval", "7m")], &["interval"])
                    .unwrap()
                    .interval()
                    .unwrap_err()
            ),
            "interval"
        );
        assert_eq!(
            name(
                p(&[("symbols", "A,B C")], &["symbols"])
                    .unwrap()
                    .symbols("symbols")
                    .unwrap_err()
            ),
            "symbols"
        );
        assert_eq!(
            name(p(&[("limt", "5")], &["limit"]).err().unwrap()),
            "query"
        );
    }

    #[test]
    fn limits_beyond_the_maximum_are_refused_and_empty_values_too() {
        let limits = ApiConfig::default();
        assert_eq!(
            p(&[("limit", "10000")], &["limit"])
                .unwrap()
                .limit(&limits)
                .unwrap(),
            10_000
        );
        let err = p(&[("limit", "10001")], &["limit"])
            .unwrap()
            .limit(&limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from 1 to 10000"), "{err}");
        assert_eq!(p(&[], &["limit"]).unwrap().limit(&limits).unwrap(), 1_000);
        let err = p(&[("symbol", "")], &["symbol"]).err().unwrap().to_string();
        assert!(err.contains("\"symbol\" has no value"), "{err}");
    }
}
