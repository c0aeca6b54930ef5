//! Observability shared by every StreamForge role.
//!
//! # Layout
//! - [`logging`] — the `tracing` subscriber (console or JSON, level filter).
//! - [`traces`] — OpenTelemetry spans, OTLP export, `traceparent` headers.
//! - [`metrics`] — [`Metrics`], the one registry of every StreamForge metric,
//!   and the named events that both count and log (`streamforge_<stage>_...`).
//! - [`exposition`] — the `/metrics` formats (Prometheus text, OpenMetrics)
//!   and content negotiation between them.
//! - [`health`] — [`Health`], the named readiness checks behind `/readyz`.

pub mod events;
pub mod exposition;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod stats;
pub mod tasks;
pub mod traces;

pub use events::Event;
pub use exposition::Exposition;
pub use health::{Health, HealthReport};
pub use logging::{LogConfig, LogFormat, LoggingError, Tracing};
pub use metrics::Metrics;
pub use stats::PipelineStats;
pub use tasks::Tasks;
pub use traces::{OtelConfig, TraceSettings};
