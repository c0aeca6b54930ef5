//! StreamForge: a real-time market data pipeline.
//!
//! This crate is the binary's library: the command line, the configuration
//! tree, the wiring of each role, and shutdown. The parts it wires live in
//! their own crates (`model`, `providers`, `bus`, `store`, `api`,
//! `telemetry`); the benchmarks are `crates/bench` (`streamforge-bench`),
//! which depends on this crate, not the other way round.
//!
//! # Layout
//! - [`cli`] — the `streamforge` command line and what each command does.
//! - [`config`] — [`config::Config`], layered and validated once.
//! - [`pipeline`] — the stages (`ingest`, `persist`, live tail, HTTP) and
//!   their orderly shutdown.
//! - [`shutdown`] — SIGINT/SIGTERM handling.

pub mod cli;
pub mod config;
pub mod pipeline;
pub mod shutdown;
