//! Installs the global `tracing` subscriber: log lines to stderr and, with
//! [`init_with_traces`], OpenTelemetry spans (see [`crate::traces`]).
//!
//! A log line written inside a span carries that span's `trace_id` and
//! `span_id` (JSON keys, or `trace_id=… span_id=…` at the end of a console
//! line), so logs and traces of one batch can be joined.

use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::traces::{tracer_provider, TraceConfigError, TraceSettings};

/// Logging: the `[log]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `info,streamforge_store=debug`
    /// (`--log-level`, `STREAMFORGE_LOG`).
    pub level: String,
    /// `console` or `json` (`--log-format`, `STREAMFORGE_LOG_FORMAT`).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Console,
        }
    }
}

impl LogConfig {
    /// Checks the filter; the error names the setting.
    pub fn validate(&self) -> Result<(), streamforge_model::settings::Invalid> {
        parse_filter(&self.level)
            .map(drop)
            .map_err(|e| streamforge_model::settings::Invalid::new("level", e.to_string()))
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines with colors when stderr is a terminal.
    #[default]
    Console,
    /// One JSON object per line, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "console" => Ok(LogFormat::Console),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected console or json, got {other:?}")),
        }
    }
}

/// The logging or tracing configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("log.level: {0}")]
    Filter(String),
    #[error(transparent)]
    Traces(#[from] TraceConfigError),
}

/// Checks a level filter such as `info` or `info,streamforge_store=debug`.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| LoggingError::Filter(format!("{filter:?}: {e}")))
}

/// Installs a log-only subscriber (tools and benchmarks). Calling it twice
/// (tests) keeps the first one.
pub fn init(format: LogFormat, filter: &str) -> Result<(), LoggingError> {
    let filter = parse_filter(filter)?;
    let _ = tracing_subscriber::registry()
        .with(fmt_layer(format, None).with_filter(filter))
        .try_init();
    Ok(())
}

/// The process's tracer provider, returned by [`init_with_traces`]. Call
/// [`Tracing::shutdown`] before exiting so the last spans are exported.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Tracing {
    /// Whether spans leave the process (an OTLP endpoint is set).
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what is buffered and stops the exporter. Blocks up to the
    /// export timeout: call it from a blocking context.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: flushing traces at shutdown: {e}");
        }
    }
}

/// Installs logs and OpenTelemetry spans. `None` when a subscriber was
/// already installed (tests running several pipelines in one process).
pub fn init_with_traces(
    format: LogFormat,
    filter: &str,
    settings: &TraceSettings,
) -> Result<Option<Tracing>, LoggingError> {
    let filter = parse_filter(filter)?;
    let provider = tracer_provider(settings)?;
    let tracer = provider.tracer("streamforge");
    let dispatch = Arc::new(OnceLock::new());
    // Spans of StreamForge's own crates only, whatever the log level.
    let spans = Targets::new().with_target("streamforge", Level::INFO);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(spans);
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(CaptureDispatch(dispatch.clone()))
        .with(fmt_layer(format, Some(dispatch)).with_filter(filter))
        .try_init()
        .is_ok();
    if !installed {
        let _ = provider.shutdown();
        return Ok(None);
    }
    Ok(Some(Tracing {
        provider,
        exporting: settings.endpoint.is_some(),
    }))
}

fn fmt_layer<S>(
    format: LogFormat,
    dispatch: Option<DispatchCell>,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let ansi = std::io::stderr().is_terminal() && format == LogFormat::Console;
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let events = format::format()
        .with_ansi(ansi)
        .with_file(true)
        .with_line_number(true);
    match format {
        LogFormat::Console => base
            .event_format(WithTraceIds {
                inner: events.with_target(true),
                json: false,
                dispatch,
            })
            .boxed(),
        LogFormat::Json => base
            .json()
            .event_format(WithTraceIds {
                inner: events.json().with_current_span(true).with_span_list(false),
                json: true,
                dispatch,
            })
            .boxed(),
    }
}

/// Where the formatter finds the subscriber it runs in (set on install).
type DispatchCell = Arc<OnceLock<WeakDispatch>>;

/// Remembers the dispatcher the subscriber was installed as: inside an event
/// the formatter cannot ask `tracing` for it.
struct CaptureDispatch(DispatchCell);

impl<S: Subscriber> Layer<S> for CaptureDispatch {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// Adds the current span's trace and span ids to an event's line.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
    dispatch: Option<DispatchCell>,
}

impl<F> WithTraceIds<F> {
    /// The ids of the innermost current span that has them.
    fn ids(&self) -> Option<(String, String)> {
        let dispatch = self.dispatch.as_ref()?.get()?.upgrade()?;
        let current = dispatch.current_span();
        let id = current.id()?;
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        span.scope().find_map(|s| {
            let cx = tracing_opentelemetry::get_otel_context(&s.id(), &dispatch)?;
            let sc = cx.span().span_context().clone();
            sc.is_valid()
                .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
        })
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = self.ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        if self.json {
            // `{"timestamp":...}` → `{"trace_id":"…","span_id":"…","timestamp":...}`
            let rest = body.strip_prefix('{').unwrap_or(body);
            let comma = if rest.starts_with('}') { "" } else { "," };
            writeln!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{comma}{rest}"
            )
        } else {
            writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
        }
    }
}
