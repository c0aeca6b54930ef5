//! The scenarios of `streamforge-bench`: the embedded pipeline under load.
//!
//! Two scenarios, each on a fresh SQLite store in a temporary directory, or
//! on the store and cache given with `--store` / `--cache` (PostgreSQL,
//! Redis):
//! - `throughput`: the synthetic market as fast as the pipeline takes it;
//!   reports sustained ticks/s committed to the store.
//! - `latency`: the synthetic market at a fixed rate (default 10,000/s);
//!   reports p50/p90/p99/max from ingest to store commit.
//! - `sink`: the store and cache alone, with pre-generated batches.
//! - `bus`: the bus alone: publish pre-encoded ticks, then consume them.
//! - `ws`: live fan-out to `--clients` WebSocket clients at `--latency-rate`
//!   ticks/s ([`crate::ws`]).
//!
//! A warm-up period is excluded from each measurement.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use streamforge::cli::{parse_rate, PipelineArgs};
use streamforge::config::{parse_duration, Config};
use streamforge::pipeline::{Pipeline, Role};

use crate::probe::{LatencyProbe, ProbeReport};
use crate::BenchCli as Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Throughput,
    Latency,
    /// The store alone: pre-generated batches written back to back.
    Sink,
    /// The bus alone (`--bus kafka://...`): pre-encoded ticks published in
    /// batches, then consumed by a fresh group.
    Bus,
    /// Live fan-out: `--clients` WebSocket clients of a `streamforge run`
    /// child process fed at `--latency-rate` ticks/s.
    Ws,
    /// Throughput and latency.
    All,
}

/// Flags of `streamforge-bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Which measurement to run.
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// Measured time per scenario.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub duration: Duration,
    /// Unmeasured time before each measurement.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,
    /// Sink scenario: ticks written in all.
    #[arg(long, default_value = "1000000")]
    pub sink_ticks: usize,
    /// Rate of the latency and ws scenarios, ticks per second.
    #[arg(long, value_parser = parse_rate, default_value = "10000")]
    pub latency_rate: f64,
    /// WebSocket clients of the ws scenario.
    #[arg(long, default_value = "1000")]
    pub clients: usize,
    /// Symbols each ws client subscribes to (0: all).
    #[arg(long, default_value = "0")]
    pub ws_symbols: usize,
    /// Bus scenario: also write the published payloads here, one per line,
    /// so Kafka's own producer benchmark can send the same records
    /// (`ProducerPerformance --payload-file`).
    #[arg(long, value_name = "FILE")]
    pub payload_file: Option<std::path::PathBuf>,
    /// Other pipeline settings (symbols, batch size...). `--rate` sets the
    /// throughput scenario's rate [default: max].
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

async fn scenario(
    cli: &Cli,
    args: &BenchArgs,
    name: &str,
    rate: f64,
) -> anyhow::Result<ProbeReport> {
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let mut pargs = args.pipeline.clone();
    pargs.rate = Some(rate);
    pargs.data_dir = Some(dir.path().to_path_buf());
    // A fresh SQLite file per scenario unless a store was given (e.g. PostgreSQL).
    pargs.http_addr = Some("127.0.0.1:0".parse().expect("valid address"));
    let config = cli.load_config(&pargs)?;
    let probe = Arc::new(LatencyProbe::default());
    let shutdown = CancellationToken::new();
    let hook = probe.clone();
    let running = Pipeline::new(&config, Role::Run)
        .on_stored(Arc::new(move |ticks, stored_at| {
            hook.record(ticks, stored_at)
        }))
        .start(shutdown.clone())
        .await?;
    eprintln!(
        "bench {name}: rate {}, batch {} / {:?}, warm-up {:?}, measuring {:?}...",
        if rate == 0.0 {
            "max".to_string()
        } else {
            format!("{rate}/s")
        },
        config.persist.batch_size,
        config.persist.batch_timeout,
        args.warmup,
        args.duration
    );
    tokio::time::sleep(args.warmup).await;
    probe.reset();
    tokio::time::sleep(args.duration).await;
    let report = probe.report();
    shutdown.cancel();
    running.wait().await?;
    Ok(report)
}

/// The synthetic market of the configured symbols and seed.
fn market(config: &Config) -> anyhow::Result<streamforge_providers::synthetic::Market> {
    let symbols: Vec<streamforge_model::Symbol> = config
        .synthetic
        .symbols
        .iter()
        .map(|s| streamforge_model::Symbol::parse(s))
        .collect::<Result<_, _>>()?;
    Ok(streamforge_providers::synthetic::Market::new(
        &symbols,
        config.synthetic.seed,
        "synthetic".into(),
    ))
}

/// What the sink scenario measured: rows and time of new rows, of
/// redelivered rows, and of ticks offered to the cache.
type SinkReport = (usize, Duration, usize, Duration, (usize, Duration));

/// Writes pre-generated batches to the store back to back: new rows, then
/// the first tenth again (all duplicates); then offers every batch to the
/// cache (latest per symbol, coalesced per batch).
async fn sink(cli: &Cli, args: &BenchArgs) -> anyhow::Result<SinkReport> {
    use streamforge_model::{Tick, TickRules, Timestamp};

    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let mut pargs = args.pipeline.clone();
    pargs.data_dir = Some(dir.path().to_path_buf());
    let config = cli.load_config(&pargs)?;
    config.validate()?;
    let store = streamforge_store::open_store_with(
        &config.store_url(),
        &streamforge_store::StoreOptions {
            postgres: config.postgres.clone(),
        },
    )
    .await
    .context("opening the store")?;
    let mut market = market(&config)?;
    let rules = TickRules::default();
    let batch_size = config.persist.batch_size;
    // One hour of simulated trades ending now, so they fall in recent partitions.
    let now = Timestamp::now();
    let start = now.saturating_sub_micros(3_600_000_000);
    let mut inputs = Vec::new();
    market.trades(args.sink_ticks, start, now, now, &mut inputs);
    let mut ticks: Vec<Tick> = inputs
        .into_iter()
        .map(|i| rules.check(i, now))
        .collect::<Result<_, _>>()?;
    // Identical trades keep distinct ids, as a provider's frame would give them.
    Tick::number_identical(&mut ticks, &mut Default::default());
    let batches: Vec<streamforge_store::TickBatch> = ticks
        .chunks(batch_size)
        .map(|c| Arc::from(c.to_vec()))
        .collect();
    eprintln!(
        "bench sink: {} ticks in batches of {batch_size} into {}",
        ticks.len(),
        store.kind()
    );
    let started = std::time::Instant::now();
    let mut inserted = 0;
    for b in &batches {
        inserted += store.write_batch(b.clone()).await?.inserted;
    }
    let elapsed = started.elapsed();
    let again = &batches[..batches.len().div_ceil(10)];
    let started = std::time::Instant::now();
    let mut dup_rows = 0;
    for b in again {
        let w = store.write_batch(b.clone()).await?;
        anyhow::ensure!(w.inserted == 0, "redelivered rows were inserted again");
        dup_rows += w.duplicates;
    }
    let dup_elapsed = started.elapsed();
    let cache = streamforge_store::open_cache(&config.cache)
        .await
        .context("opening the cache")?;
    let started = std::time::Instant::now();
    for b in &batches {
        cache.update_latest(b).await?;
    }
    Ok((
        inserted,
        elapsed,
        dup_rows,
        dup_elapsed,
        (ticks.len(), started.elapsed()),
    ))
}

/// Publishes `--sink-ticks` encoded ticks to a fresh topic in batches of
/// `--batch-size` (each publish waits for the broker's acknowledgements),
/// then consumes them all with a fresh group.
async fn bus(cli: &Cli, args: &BenchArgs) -> anyhow::Result<(usize, Duration, Duration)> {
    use streamforge_bus::{ConsumerOptions, Headers, Message, Polled, StartFrom};
    use streamforge_model::{TickRules, Timestamp};

    let config = cli.load_config(&args.pipeline)?;
    anyhow::ensure!(
        config.bus.starts_with("kafka://"),
        "bus: the bus scenario measures a broker; give --bus kafka://HOST:PORT (got {})",
        config.bus
    );
    let bus = streamforge_bus::connect(&config.bus, &config.bus_options())
        .await
        .context("connecting to the bus")?;
    let mut market = market(&config)?;
    let now = Timestamp::now();
    let mut inputs = Vec::new();
    market.trades(
        args.sink_ticks,
        now.saturating_sub_micros(60_000_000),
        now,
        now,
        &mut inputs,
    );
    let rules = TickRules::default();
    let mut headers = Headers::with_capacity(2);
    headers.insert(
        streamforge_bus::message::headers::CONTENT_TYPE,
        bytes::Bytes::from_static(streamforge_model::wire::CONTENT_TYPE.as_bytes()),
    );
    headers.insert(
        streamforge_bus::message::headers::SCHEMA_VERSION,
        bytes::Bytes::from_static(streamforge_model::wire::SCHEMA_VERSION.as_bytes()),
    );
    let mut messages = Vec::with_capacity(inputs.len());
    for i in inputs {
        let t = rules.check(i, now)?;
        messages.push(Message {
            key: bytes::Bytes::copy_from_slice(t.symbol().as_str().as_bytes()),
            payload: streamforge_model::wire::encode(&t).into(),
            headers: headers.clone(),
        });
    }
    let n = messages.len();
    if let Some(path) = &args.payload_file {
        let mut text = Vec::with_capacity(n * 256);
        for m in &messages {
            text.extend_from_slice(&m.payload);
            text.push(b'\n');
        }
        std::fs::write(path, text)
            .with_context(|| format!("writing the payloads to {}", path.display()))?;
    }
    let topic = format!("bench-{}-{}", std::process::id(), now.as_micros());
    let batch = config.persist.batch_size.max(1);
    eprintln!(
        "bench bus: {n} messages in batches of {batch} to {topic} on {}",
        bus.kind()
    );
    // The topic exists before the clock starts.
    bus.publish(&topic, messages[..1].to_vec()).await?;
    let started = std::time::Instant::now();
    let mut rest = messages.split_off(1);
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(batch));
        bus.publish(&topic, rest).await?;
        rest = tail;
    }
    let produce = started.elapsed();
    eprintln!(
        "bench bus: produced {n} in {produce:?} ({:.0} messages/s); consuming...",
        n as f64 / produce.as_secs_f64()
    );
    let mut consumer = bus
        .consumer(
            &topic,
            ConsumerOptions {
                group: format!("{topic}-reader"),
                start: StartFrom::Earliest,
                durable: true,
            },
        )
        .await?;
    let started = std::time::Instant::now();
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(60), consumer.recv(batch)).await {
            Ok(Ok(Polled::Messages(m))) => got += m.len(),
            Ok(Ok(other)) => anyhow::bail!("unexpected {other:?} after {got} of {n} messages"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => anyhow::bail!("only {got} of {n} messages consumed within 60s"),
        }
    }
    Ok((n, produce, started.elapsed()))
}

fn print(name: &str, r: &ProbeReport) {
    println!(
        "| {name:<10} | {:>12.0} | {:>9} | {:>9.0} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} |",
        r.ticks_per_second(),
        r.ticks,
        r.ticks as f64 / r.batches.max(1) as f64,
        r.p50.as_secs_f64() * 1e3,
        r.p90.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.max.as_secs_f64() * 1e3,
    );
}

/// Runs the chosen scenarios and prints a Markdown table.
pub async fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    // Benchmarks log warnings only, so logging does not skew the numbers;
    // spans are created and sampled as in `streamforge run` (exported only
    // when an OTLP endpoint is set in the environment).
    let traces = streamforge_telemetry::TraceSettings::resolve(
        &streamforge_telemetry::OtelConfig::default(),
        "bench",
    )?;
    let tracing = streamforge_telemetry::logging::init_with_traces(
        streamforge_telemetry::LogFormat::Console,
        cli.log_level.as_deref().unwrap_or("warn"),
        &traces,
    )?;
    let result = run_scenarios(cli, args).await;
    if let Some(t) = tracing {
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    result
}

async fn run_scenarios(cli: &Cli, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    if matches!(args.scenario, Scenario::Throughput | Scenario::All) {
        let rate = args.pipeline.rate.unwrap_or(0.0);
        rows.push(("throughput", scenario(cli, args, "throughput", rate).await?));
    }
    if args.scenario == Scenario::Sink {
        let (rows, elapsed, dup_rows, dup_elapsed, cache) = sink(cli, args).await?;
        println!("| sink       |    rows/s |   rows | batch |");
        println!("|------------|-----------|--------|-------|");
        println!(
            "| new rows   | {:>9.0} | {rows:>6} | {:>5} |",
            rows as f64 / elapsed.as_secs_f64(),
            args.pipeline.batch_size.unwrap_or(5_000)
        );
        println!(
            "| redelivery | {:>9.0} | {dup_rows:>6} | {:>5} |",
            dup_rows as f64 / dup_elapsed.as_secs_f64(),
            args.pipeline.batch_size.unwrap_or(5_000)
        );
        println!(
            "| cache      | {:>9.0} | {:>6} | {:>5} |",
            cache.0 as f64 / cache.1.as_secs_f64(),
            cache.0,
            args.pipeline.batch_size.unwrap_or(5_000)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.scenario == Scenario::Ws {
        let r = crate::ws::run(
            args.clients,
            args.ws_symbols,
            args.latency_rate,
            args.warmup,
            args.duration,
        )
        .await?;
        println!("| clients | rate/s | delivered ticks/s | messages/s | p50 ms (median client) | p99 ms (median client) | p99 ms (worst client) | server KiB/client | dropped |");
        println!("|---------|--------|-------------------|------------|------------------------|------------------------|-----------------------|-------------------|---------|");
        println!(
            "| {}/{} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            r.connected,
            r.clients,
            r.rate,
            r.ticks_per_second,
            r.messages_per_second,
            r.p50_median.as_secs_f64() * 1e3,
            r.p99_median.as_secs_f64() * 1e3,
            r.p99_worst.as_secs_f64() * 1e3,
            r.bytes_per_client() / 1024.0,
            r.disconnected
        );
        eprintln!(
            "bench ws: server rss {:.1} MiB before clients, {:.1} MiB with them",
            r.rss_before as f64 / 1048576.0,
            r.rss_after as f64 / 1048576.0
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.scenario == Scenario::Bus {
        let (n, produce, consume) = bus(cli, args).await?;
        println!("| bus     | messages/s | messages | batch |");
        println!("|---------|------------|----------|-------|");
        for (name, d) in [("produce", produce), ("consume", consume)] {
            println!(
                "| {name} | {:>10.0} | {n:>8} | {:>5} |",
                n as f64 / d.as_secs_f64(),
                args.pipeline.batch_size.unwrap_or(5_000)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(args.scenario, Scenario::Latency | Scenario::All) {
        rows.push((
            "latency",
            scenario(cli, args, "latency", args.latency_rate).await?,
        ));
    }
    println!("| scenario   |     ticks/s |    stored | per batch |  p50 ms |  p90 ms |  p99 ms |  max ms |");
    println!("|------------|-------------|-----------|-----------|---------|---------|---------|---------|");
    for (name, r) in &rows {
        print(name, r);
    }
    Ok(ExitCode::SUCCESS)
}
