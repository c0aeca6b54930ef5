//! `streamforge-bench`: StreamForge under load.
//!
//! Scenarios ([`scenarios`]): the embedded pipeline's throughput and
//! ingest→stored latency, the store alone (`sink`), the bus alone (`bus`),
//! and the live WebSocket fan-out ([`ws`]). Run it from a release build:
//! `cargo run --release -p streamforge-bench -- --scenario throughput`.
//! Results and how they were taken are in `docs/benchmarks.md`.

mod probe;
mod scenarios;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The benchmarks run in this process and allocate like `streamforge` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measure StreamForge: throughput and latency of the embedded pipeline,
/// the store, the bus, and the WebSocket fan-out.
#[derive(Debug, Parser)]
#[command(name = "streamforge-bench", version)]
pub struct BenchCli {
    /// Configuration file [default: ./streamforge.toml when present].
    #[arg(long, env = "STREAMFORGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level filter [default: warn, so logging does not skew the figures].
    #[arg(long, env = "STREAMFORGE_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(flatten)]
    pub args: scenarios::BenchArgs,
}

impl BenchCli {
    /// The configuration of the file, the environment and these flags.
    fn load_config(
        &self,
        args: &streamforge::cli::PipelineArgs,
    ) -> anyhow::Result<streamforge::config::Config> {
        streamforge::cli::load_config(
            self.config.as_deref(),
            self.log_level.as_deref(),
            None,
            args,
        )
    }
}

fn main() -> ExitCode {
    let cli = BenchCli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("streamforge-bench")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scenarios::run(&cli, &cli.args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
