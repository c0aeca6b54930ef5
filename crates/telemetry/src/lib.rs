//! Observability shared by every StreamForge role.
//!
//! # Layout
//! - [`logging`] — the `tracing` subscriber (console or JSON, level filter).
//! - [`metrics`] — [`Metrics`], the one registry of every StreamForge metric,
//!   and the named events that both count and log (`streamforge_<stage>_...`).
//! - [`health`] — [`Health`], the named readiness checks behind `/readyz`.

pub mod health;
pub mod logging;
pub mod metrics;

pub use health::{Health, HealthReport};
pub use logging::{LogFormat, LoggingError};
pub use metrics::Metrics;
