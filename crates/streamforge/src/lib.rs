//! StreamForge: a real-time market data pipeline.
//!
//! This crate is the binary's library: the command line, the configuration
//! tree, the wiring of each role, shutdown, and the benchmark. The parts it
//! wires live in their own crates (`model`, `providers`, `bus`, `store`,
//! `api`, `telemetry`).
//!
//! # Layout
//! - [`cli`] — the `streamforge` command line and what each command does.
//! - [`config`] — [`config::Config`], layered and validated once.
//! - [`pipeline`] — the stages (`ingest`, `persist`, live tail, HTTP) and
//!   their orderly shutdown.
//! - [`shutdown`] — SIGINT/SIGTERM handling.
//! - [`bench`] — `streamforge bench`, throughput and latency of the pipeline.
//! - [`bench_ws`] — `streamforge bench --scenario ws`, live fan-out to many
//!   WebSocket clients.

pub mod bench;
pub mod bench_ws;
pub mod cli;
pub mod config;
pub mod pipeline;
pub mod shutdown;
