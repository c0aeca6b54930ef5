//! The OpenAPI document, generated from the handlers.
//!
//! Each handler states its parameters and answers in a `#[utoipa::path]`
//! attribute beside it, with the types it really serializes; [`ApiDoc`]
//! gathers them and [`document`] fills in what the server's `[api]`
//! section decides (the largest and default `limit`). The REST handlers
//! accept exactly the query parameters their operation documents
//! ([`query_names`]), so the document and the server cannot drift apart.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Required, Schema};
use utoipa::{IntoParams, OpenApi, PartialSchema, ToSchema};

use crate::ApiConfig;

/// Every documented operation.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "StreamForge API",
        description = "Real-time market data: trade ticks, latest quotes, OHLCV candles, feed gaps \
                       and live streams. Times are UTC; query times accept RFC 3339 or epoch \
                       milliseconds. Errors are JSON {\"error\", \"detail\"} (plus \"parameter\" \
                       for a bad parameter). An explorer of this document is served at /api/explorer."
    ),
    paths(
        crate::routes::web::index,
        crate::routes::web::explorer,
        crate::routes::ops::index,
        crate::routes::ops::healthz,
        crate::routes::ops::readyz,
        crate::routes::ops::metrics,
        crate::routes::ops::openapi,
        crate::routes::ops::pipeline,
        crate::routes::market::symbols,
        crate::routes::market::latest_quote,
        crate::routes::market::ticks,
        crate::routes::market::candles,
        crate::routes::market::gaps,
        crate::routes::market::completeness,
        crate::routes::stream::sse,
        crate::routes::ws::upgrade,
    ),
    components(schemas(crate::routes::market::TickOrder, ErrorBody)),
    tags(
        (name = "market", description = "Stored ticks, quotes, candles and gaps"),
        (name = "live", description = "Live ticks and candle updates"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "web", description = "The dashboard and the API explorer"),
    )
)]
pub struct ApiDoc;

/// The document as served: [`ApiDoc`] with the limits of `config`.
pub fn document(config: &ApiConfig) -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for op in paths.values_mut().filter_map(|p| p.get_mut("get")) {
            let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else {
                continue;
            };
            for p in params.iter_mut().filter(|p| p["name"] == "limit") {
                p["schema"]["maximum"] = config.max_limit.into();
                p["schema"]["default"] = config.default_limit.min(config.max_limit).into();
                p["description"] = format!(
                    "Most rows to answer, 1 to {} (api.max_limit); default {} (api.default_limit).",
                    config.max_limit,
                    config.default_limit.min(config.max_limit)
                )
                .into();
            }
        }
    }
    if !config.keys.is_empty() {
        secure(&mut doc, config.anonymous);
    }
    serde_json::to_string(&doc).unwrap_or_default()
}

/// With keys configured: the ways to present one, and for each operation
/// the scope it needs and the answers of a missing, wrong or over-rate key.
fn secure(doc: &mut serde_json::Value, anonymous: bool) {
    use serde_json::json;
    doc["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "An API key: `Authorization: Bearer <key>`"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key",
                        "description": "Live streams only (browsers cannot set headers there)"},
    });
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(scope) = crate::auth::needed(path) else {
            continue;
        };
        let mut ways = vec![json!({"bearer": []}), json!({"apiKey": []})];
        if scope == crate::auth::Scope::Stream {
            ways.push(json!({"apiKeyQuery": []}));
        }
        if anonymous && scope != crate::auth::Scope::Ops {
            ways.push(json!({}));
        }
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            op["security"] = json!(ways);
            let note = format!("Needs a key with the `{}` scope.", scope.as_str());
            op["description"] = match op["description"].as_str() {
                Some(d) => format!("{d}\n\n{note}").into(),
                None => note.into(),
            };
            let answers = &mut op["responses"];
            answers["401"] = json!({"description": "No API key, or one this server does not know",
                                    "content": error});
            answers["403"] = json!({"description": format!("The key lacks the `{}` scope, or the page's origin is not in api.allowed_origins", scope.as_str()),
                                    "content": error});
            answers["429"] = json!({"description": "Over the key's (or the address's) request rate, or too many wrong keys from the address; see Retry-After",
                                    "content": error});
        }
    }
}

/// The query parameters operation `P` documents: what its handler accepts.
pub fn query_names<P: utoipa::Path>() -> Vec<String> {
    P::operation()
        .parameters
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.parameter_in == ParameterIn::Query)
        .map(|p| p.name)
        .collect()
}

/// The error answers several operations share, each stated once. They
/// document the answers `ApiError` makes and are never built themselves.
mod answers {
    #![allow(dead_code)]
    use super::ErrorBody;

    #[derive(utoipa::IntoResponses)]
    #[response(status = 400, description = "A bad parameter; `parameter` names it")]
    pub struct BadParameter(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 404, description = "Nothing is stored for the symbol")]
    pub struct UnknownSymbol(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 503, description = "The store did not answer in time")]
    pub struct StoreUnavailable(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 503,
        description = "api.max_streams streams are open; retry later"
    )]
    pub struct StreamsFull(ErrorBody);
}
pub(crate) use answers::{BadParameter, StoreUnavailable, StreamsFull, UnknownSymbol};

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What kind of failure: `invalid parameter`, `unknown symbol`,
    /// `not found`, `busy`, `unavailable`, `store error`, ...
    pub error: &'static str,
    /// What was wrong, in words.
    pub detail: String,
    /// The offending parameter, for `400` answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'static str>,
}

/// A query time: RFC 3339 or epoch milliseconds (times beyond
/// 1970-01-01..9999-12-31 are read as those bounds).
pub struct QueryTime;

impl PartialSchema for QueryTime {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .examples(["2025-08-27T20:15:31.134Z"]),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(i64::MIN as f64))
                    .maximum(Some(i64::MAX as f64))
                    .examples([1_756_325_731_134_i64]),
            )
            .description(Some(
                "RFC 3339 time (2025-08-27T20:15:31.134Z) or epoch milliseconds",
            ))
            .into()
    }
}

impl ToSchema for QueryTime {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("QueryTime")
    }
}

/// `from` and `to`: the range `[from, to)` of a query.
pub struct TimeRange;

impl IntoParams for TimeRange {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let time = |name: &str, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(QueryTime::schema()))
                .build()
        };
        vec![
            time(
                "from",
                "Start, inclusive: RFC 3339 time or epoch milliseconds. Default: `to` minus \
                 api.default_window (24 h). Must not be after `to` (equal: an empty range).",
            ),
            time(
                "to",
                "End, exclusive: RFC 3339 time or epoch milliseconds. Default: now plus 5 minutes.",
            ),
        ]
    }
}

/// `limit`: the most rows to answer (its bounds are set from the
/// configuration by [`document`]).
pub struct Limit;

impl IntoParams for Limit {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let defaults = ApiConfig::default();
        vec![ParameterBuilder::new()
            .name("limit")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some("Most rows to answer."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1.0))
                    .maximum(Some(defaults.max_limit as f64)),
            ))
            .build()]
    }
}

/// The `{symbol}` path segment.
pub struct SymbolPath;

impl IntoParams for SymbolPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("symbol")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "Instrument, e.g. AAPL or BINANCE:BTCUSDT (lower case is read as upper case).",
            ))
            .schema(Some(streamforge_model::Symbol::schema()))
            .example(Some("AAPL".into()))
            .build()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_bounds_come_from_the_configuration() {
        let config = ApiConfig {
            max_limit: 250,
            default_limit: 20,
            ..ApiConfig::default()
        };
        let doc: serde_json::Value = serde_json::from_str(&document(&config)).unwrap();
        let params = doc["paths"]["/api/v1/ticks/{symbol}"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["maximum"], 250);
        assert_eq!(limit["schema"]["minimum"], 1);
        assert_eq!(limit["schema"]["default"], 20);
    }

    #[test]
    fn with_keys_each_operation_states_the_scope_it_needs() {
        let open: serde_json::Value =
            serde_json::from_str(&document(&ApiConfig::default())).unwrap();
        assert!(open["components"].get("securitySchemes").is_none());
        let config = ApiConfig {
            keys: vec![crate::auth::ApiKey {
                id: "k".into(),
                sha256: "0".repeat(64),
                scopes: vec![crate::auth::Scope::Read],
                rate_per_second: None,
                burst: None,
            }],
            ..ApiConfig::default()
        };
        let doc: serde_json::Value = serde_json::from_str(&document(&config)).unwrap();
        assert_eq!(
            doc["components"]["securitySchemes"]["apiKey"]["name"],
            "X-API-Key"
        );
        let ticks = &doc["paths"]["/api/v1/ticks/{symbol}"]["get"];
        assert_eq!(ticks["security"].as_array().unwrap().len(), 2);
        assert!(ticks["description"].as_str().unwrap().contains("`read`"));
        assert!(ticks["responses"]["401"].is_object());
        let ws = &doc["paths"]["/api/v1/ws"]["get"];
        assert!(ws["security"].to_string().contains("apiKeyQuery"));
        assert!(ws["description"].as_str().unwrap().contains("`stream`"));
        let metrics = &doc["paths"]["/metrics"]["get"];
        assert!(metrics["description"].as_str().unwrap().contains("`ops`"));
        assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
    }

    #[test]
    fn handlers_accept_the_query_parameters_they_document() {
        use crate::routes::market::{__path_candles, __path_gaps, __path_ticks};
        assert_eq!(
            query_names::<__path_ticks>(),
            ["from", "to", "limit", "order"]
        );
        assert_eq!(
            query_names::<__path_candles>(),
            ["interval", "from", "to", "limit", "fill"]
        );
        assert_eq!(
            query_names::<__path_gaps>(),
            ["symbol", "from", "to", "limit"]
        );
    }
}
