//! OpenTelemetry traces: the tracer provider, OTLP export, and W3C trace
//! context for bus messages.
//!
//! Every process has a tracer provider, so spans always have trace and span
//! ids (they appear on log lines and travel in `traceparent` headers). Spans
//! are exported over OTLP/HTTP only when an endpoint is configured: the
//! standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`
//! variables, or `[otel] endpoint` in the configuration file. Sampling is
//! parent-based: a root span (a provider frame) is kept with the configured
//! ratio, and everything downstream of it, in this process or another one
//! that read its `traceparent`, follows that decision.

use std::time::Duration;

pub use opentelemetry::trace::SpanContext;
use opentelemetry::trace::{TraceContextExt, TraceFlags, TraceState};
use opentelemetry::{Context, KeyValue, SpanId, TraceId};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `[otel]` configuration section; the `OTEL_*` environment variables
/// override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelConfig {
    /// OTLP/HTTP base URL, e.g. `http://localhost:4318` (`/v1/traces` is
    /// appended). Empty: no export unless `OTEL_EXPORTER_OTLP_*ENDPOINT` is set.
    pub endpoint: String,
    /// `http/protobuf` or `http/json` (`OTEL_EXPORTER_OTLP_PROTOCOL`; grpc
    /// is not built in).
    pub protocol: OtlpProtocol,
    /// Share of provider frames traced, 0.0–1.0 (`OTEL_TRACES_SAMPLER_ARG`).
    pub sample_ratio: f64,
    /// `service.name`; empty = `streamforge-<role>` (`OTEL_SERVICE_NAME`).
    pub service_name: String,
}

impl Default for OtelConfig {
    fn default() -> Self {
        OtelConfig {
            endpoint: String::new(),
            protocol: OtlpProtocol::HttpProtobuf,
            sample_ratio: 0.01,
            service_name: String::new(),
        }
    }
}

/// The trace configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TraceConfigError {
    /// The setting at fault (a config key or an environment variable).
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> TraceConfigError {
    TraceConfigError {
        field,
        message: message.into(),
    }
}

/// What [`OtelConfig`] and the environment resolve to.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The full OTLP/HTTP traces URL; `None` = spans are not exported.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub sample_ratio: f64,
    pub service_name: String,
    pub service_instance: String,
    /// The role(s) this process runs (`ingest`, `persist`, `run`, ...).
    pub role: String,
}

/// OTLP encodings over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

impl OtlpProtocol {
    fn parse(field: &'static str, s: &str) -> Result<Self, TraceConfigError> {
        match s.trim() {
            "http/protobuf" | "" => Ok(OtlpProtocol::HttpProtobuf),
            "http/json" => Ok(OtlpProtocol::HttpJson),
            "grpc" => Err(invalid(
                field,
                "grpc is not supported; use http/protobuf (the collector's port 4318)",
            )),
            other => Err(invalid(
                field,
                format!("expected http/protobuf or http/json, got {other:?}"),
            )),
        }
    }
}

impl TraceSettings {
    /// Resolves `config` under the process environment.
    pub fn resolve(config: &OtelConfig, role: &str) -> Result<Self, TraceConfigError> {
        Self::resolve_with(config, role, |k| std::env::var(k).ok())
    }

    /// Resolves `config` with `env` standing for the environment.
    pub fn resolve_with(
        config: &OtelConfig,
        role: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TraceConfigError> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let endpoint = if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            // The signal-specific variable is the whole URL.
            Some(check_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url)?)
        } else if let Some(base) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(traces_url(&check_url(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &base,
            )?))
        } else if !config.endpoint.trim().is_empty() {
            Some(traces_url(&check_url(
                "otel.endpoint",
                config.endpoint.trim(),
            )?))
        } else {
            None
        };
        let protocol = if let Some(p) = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            OtlpProtocol::parse("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &p)?
        } else if let Some(p) = env("OTEL_EXPORTER_OTLP_PROTOCOL") {
            OtlpProtocol::parse("OTEL_EXPORTER_OTLP_PROTOCOL", &p)?
        } else {
            config.protocol
        };
        let sample_ratio = match env("OTEL_TRACES_SAMPLER_ARG") {
            Some(s) => s.trim().parse::<f64>().map_err(|_| {
                invalid(
                    "OTEL_TRACES_SAMPLER_ARG",
                    format!("expected a ratio from 0.0 to 1.0, got {s:?}"),
                )
            })?,
            None => config.sample_ratio,
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(invalid(
                "otel.sample_ratio",
                format!("expected a ratio from 0.0 to 1.0, got {sample_ratio}"),
            ));
        }
        let service_name = env("OTEL_SERVICE_NAME")
            .or_else(|| Some(config.service_name.trim().to_string()).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| format!("streamforge-{role}"));
        let host = env("HOSTNAME").unwrap_or_else(|| "localhost".into());
        Ok(TraceSettings {
            endpoint,
            protocol,
            sample_ratio,
            service_name,
            service_instance: format!("{host}:{}", std::process::id()),
            role: role.to_string(),
        })
    }
}

fn check_url(field: &'static str, url: &str) -> Result<String, TraceConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_string())
    } else {
        Err(invalid(
            field,
            format!("expected an http:// or https:// URL, got {url:?}"),
        ))
    }
}

/// `base` + `/v1/traces`, as the OTLP specification builds it.
fn traces_url(base: &str) -> String {
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Builds the process's tracer provider: always sampling and assigning ids,
/// exporting in batches on its own thread when an endpoint is set.
pub fn tracer_provider(settings: &TraceSettings) -> Result<SdkTracerProvider, TraceConfigError> {
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", settings.service_instance.clone()),
            KeyValue::new("streamforge.role", settings.role.clone()),
        ])
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler);
    if let Some(endpoint) = &settings.endpoint {
        let protocol = match settings.protocol {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
            OtlpProtocol::HttpJson => Protocol::HttpJson,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| invalid("otel.endpoint", e.to_string()))?;
        builder = builder.with_span_processor(BatchSpanProcessor::builder(exporter).build());
    }
    Ok(builder.build())
}

/// The W3C `traceparent` of a `tracing` span (its OpenTelemetry span is
/// started if it was not yet). `None` when no tracer is installed.
pub fn span_traceparent(span: &tracing::Span) -> Option<String> {
    traceparent(&span.context())
}

/// Makes `span`, not yet entered, a child of a remote span (read from a
/// message's `traceparent`): it joins that trace and its sampling decision.
pub fn continue_trace(span: &tracing::Span, parent: SpanContext) {
    // Fails only when no tracer is installed or the span already started.
    let _ = span.set_parent(Context::new().with_remote_span_context(parent));
}

/// Links `span` to another trace it also stems from (a batch of messages
/// from several provider frames).
pub fn link(span: &tracing::Span, other: SpanContext) {
    span.add_link(other);
}

/// The W3C `traceparent` of `cx`'s span, if it has a valid one.
pub fn traceparent(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}

/// The remote span context a `traceparent` header names, or `None` when the
/// value is not a valid version-00 header.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        config: &OtelConfig,
        env: &[(&str, &str)],
    ) -> Result<TraceSettings, TraceConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TraceSettings::resolve_with(config, "ingest", |k| env.get(k).cloned())
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        let s = resolve(&OtelConfig::default(), &[]).unwrap();
        assert_eq!(s.endpoint, None);
        assert_eq!(s.service_name, "streamforge-ingest");
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
    }

    #[test]
    fn environment_overrides_the_file_as_the_otlp_spec_says() {
        let config = OtelConfig {
            endpoint: "http://file:4318".into(),
            ..OtelConfig::default()
        };
        let s = resolve(&config, &[]).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://file:4318/v1/traces"));
        let s = resolve(
            &config,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
        )
        .unwrap();
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let s = resolve(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:9999/custom",
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
                ("OTEL_SERVICE_NAME", "md-ingest"),
            ],
        )
        .unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://traces:9999/custom"));
        assert_eq!(s.protocol, OtlpProtocol::HttpJson);
        assert_eq!(s.sample_ratio, 0.5);
        assert_eq!(s.service_name, "md-ingest");
    }

    #[test]
    fn bad_settings_name_the_variable_at_fault() {
        let e = resolve(
            &OtelConfig::default(),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        )
        .unwrap_err();
        assert_eq!(e.field, "OTEL_EXPORTER_OTLP_PROTOCOL");
        assert!(e.message.contains("4318"), "{e}");
        let e = resolve(
            &OtelConfig::default(),
            &[("OTEL_TRACES_SAMPLER_ARG", "lots")],
        )
        .unwrap_err();
        assert_eq!(e.field, "OTEL_TRACES_SAMPLER_ARG");
        let e = resolve(
            &OtelConfig {
                sample_ratio: 1.5,
                ..OtelConfig::default()
            },
            &[],
        )
        .unwrap_err();
        assert_eq!(e.field, "otel.sample_ratio");
        let e = resolve(
            &OtelConfig::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
        )
        .unwrap_err();
        assert_eq!(e.field, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(v).unwrap();
        assert!(sc.is_sampled() && sc.is_remote());
        let cx = Context::new().with_remote_span_context(sc);
        assert_eq!(traceparent(&cx).as_deref(), Some(v));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}
