//! Installs the global `tracing` subscriber.

use std::io::IsTerminal;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

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

/// The level filter could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("log.level: {0}")]
pub struct LoggingError(String);

/// Checks a level filter such as `info` or `info,streamforge_store=debug`.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| LoggingError(format!("{filter:?}: {e}")))
}

/// Installs the subscriber. Calling it twice (tests) keeps the first one.
pub fn init(format: LogFormat, filter: &str) -> Result<(), LoggingError> {
    let filter = parse_filter(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_file(true)
        .with_line_number(true);
    let _ = match format {
        LogFormat::Console => builder.with_target(true).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}
