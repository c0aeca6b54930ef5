//! The `streamforge` command line.
//!
//! Every flag that sets configuration also reads a `STREAMFORGE_*`
//! variable (shown in `--help`); flags win over variables, variables over
//! `.env`, `.env` over `streamforge.toml`, the file over defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use streamforge_model::settings::Secret;
use streamforge_telemetry::{LogFormat, TraceSettings, Tracing};
use tokio_util::sync::CancellationToken;

use crate::config::{parse_duration, Config};
use crate::pipeline::{self, Role};

/// StreamForge: real-time market data pipeline.
///
/// Takes trade ticks from providers, normalizes them, moves them through a
/// bus, stores them for time-series queries, keeps the latest quotes in a
/// cache, and serves it all over HTTP and live streams.
#[derive(Debug, Parser)]
#[command(name = "streamforge", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: ./streamforge.toml when present].
    #[arg(long, global = true, env = "STREAMFORGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log level filter, e.g. `info` or `debug,hyper=info`.
    #[arg(long, global = true, env = "STREAMFORGE_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log line format.
    #[arg(long, global = true, env = "STREAMFORGE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Console,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Console => LogFormat::Console,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline in one process: providers, ingest, persist and the API.
    Run(PipelineArgs),
    /// Providers → validate/normalize → the bus (`--bus kafka://...`).
    Ingest(PipelineArgs),
    /// The bus → the store and cache, committing offsets after each stored batch.
    Persist(PipelineArgs),
    /// Serve the API (queries, live stream, health, metrics) over the store, cache and bus.
    Serve(PipelineArgs),
    /// Create or inspect the store schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Show or check the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Record the raw frames of the Finnhub feed (zstd NDJSON) until Ctrl-C or `--duration`.
    Record(RecordArgs),
    /// Feed a recording through parse → bus → store; replaying twice stores nothing twice.
    Replay(ReplayArgs),
    /// Serve a provider's protocol on loopback, driven by the synthetic market.
    Simulate {
        #[command(subcommand)]
        provider: SimulateProvider,
    },
    /// API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print a new random API key once, and the [[api.keys]] block (its
    /// SHA-256, never the key) to paste into the configuration.
    Generate {
        /// The key's name, in logs and metrics.
        #[arg(long)]
        id: String,
        /// What it may do: read, stream, ops.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<KeyScope>,
    },
}

/// A scope on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyScope {
    Read,
    Stream,
    Ops,
}

impl From<KeyScope> for streamforge_api::auth::Scope {
    fn from(s: KeyScope) -> Self {
        match s {
            KeyScope::Read => streamforge_api::auth::Scope::Read,
            KeyScope::Stream => streamforge_api::auth::Scope::Stream,
            KeyScope::Ops => streamforge_api::auth::Scope::Ops,
        }
    }
}

/// `streamforge keys generate`: 32 random bytes from the OS, hex, with a
/// `sf_` prefix so a leaked key is recognizable.
fn generate_key(id: &str, scopes: &[KeyScope]) -> anyhow::Result<(String, String)> {
    use rand::RngCore;
    let entry = streamforge_api::auth::ApiKey {
        id: id.to_string(),
        sha256: String::new(),
        scopes: scopes.iter().map(|s| (*s).into()).collect(),
        rate_per_second: None,
        burst: None,
    };
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key: String = std::iter::once("sf_".to_string())
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect();
    let entry = streamforge_api::auth::ApiKey {
        sha256: streamforge_api::auth::digest_hex(&key),
        ..entry
    };
    streamforge_api::auth::validate_keys(std::slice::from_ref(&entry))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let scopes: Vec<String> = entry
        .scopes
        .iter()
        .map(|s| format!("{:?}", s.as_str()))
        .collect();
    let block = format!(
        "[[api.keys]]\nid = {:?}\nsha256 = {:?}\nscopes = [{}]\n",
        entry.id,
        entry.sha256,
        scopes.join(", ")
    );
    Ok((key, block))
}

/// Flags of `streamforge record`.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// The recording to write (zstd-compressed NDJSON).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Stop after this long [default: until Ctrl-C].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// The feed: `--finnhub-token`, `--finnhub-url`, `--symbols`.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// Flags of `streamforge replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// A recording made by `streamforge record`.
    pub file: PathBuf,
    /// `max` (as fast as the pipeline takes it) or a multiple of the
    /// recorded pace: `1x`, `10x`, `0.5x`.
    #[arg(long, default_value = "max", value_parser = parse_speed)]
    pub speed: Speed,
    /// Where the ticks go: `--store`, `--bus`, `--cache`, ...
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// Replay pace: `None` is as fast as possible.
pub type Speed = Option<f64>;

/// `max`, or `Nx` / `N` with N from 0.001 to 1,000,000.
pub fn parse_speed(text: &str) -> Result<Speed, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    use streamforge_providers::replay::{MAX_SPEED, MIN_SPEED};
    match text.trim_end_matches(['x', 'X']).parse::<f64>() {
        Ok(k) if (MIN_SPEED..=MAX_SPEED).contains(&k) => Ok(Some(k)),
        _ => Err(format!(
            "expected max or a pace from {MIN_SPEED}x to {MAX_SPEED}x such as 1x or 10x, got {text:?}"
        )),
    }
}

#[derive(Debug, Subcommand)]
pub enum SimulateProvider {
    /// Finnhub's trade WebSocket (point `--finnhub-url ws://127.0.0.1:PORT` at it).
    Finnhub(SimulateFinnhubArgs),
    /// Binance's spot trade streams (`--provider binance --binance-url ws://127.0.0.1:PORT`).
    Binance(SimulateVenueArgs),
    /// Coinbase Exchange's feed (`--provider coinbase --coinbase-url ws://127.0.0.1:PORT`).
    Coinbase(SimulateVenueArgs),
}

/// Flags of `streamforge simulate binance | coinbase`.
#[derive(Debug, Clone, Args)]
pub struct SimulateVenueArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value = "9002")]
    pub port: u16,
    /// The symbols it trades, in the venue's notation [default: BTCUSDT,ETHUSDT
    /// for Binance, BTC-USD,ETH-USD for Coinbase].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub symbols: Vec<String>,
    /// Trades per second across its symbols.
    #[arg(long, default_value = "50", value_parser = parse_rate)]
    pub rate: f64,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fault: drop every connection this long after it opened.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub drop_every: Option<Duration>,
    /// Fault: go silent (TCP stays open) this long after a connection opened.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub silent_after: Option<Duration>,
    /// Fault: close every connection this long after it opened, with the
    /// venue's shutdown notice first where it has one (the 24 h limit, shortened).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub close_after: Option<Duration>,
    /// Fault: every Nth trade of a connection is not sent (a jump in trade ids).
    #[arg(long, value_name = "N")]
    pub skip_every: Option<u64>,
    /// Fault: every Nth trade of a connection is sent twice.
    #[arg(long, value_name = "N")]
    pub duplicate_every: Option<u64>,
    /// Fault: every Nth trade of a connection comes after the next one.
    #[arg(long, value_name = "N")]
    pub out_of_order_every: Option<u64>,
    /// Fault: every Nth batch of trades comes with a malformed message.
    #[arg(long, value_name = "N")]
    pub malformed_every: Option<u64>,
    /// Fault: every Nth trade of a connection is sent with a price of zero
    /// (refused by the pipeline; its history has it right).
    #[arg(long, value_name = "N")]
    pub corrupt_every: Option<u64>,
    /// Port on 127.0.0.1 of the REST trade history.
    #[arg(long, default_value = "9003")]
    pub rest_port: u16,
    /// Fault: every Nth history request is answered 429 with `Retry-After: 1`.
    #[arg(long, value_name = "N")]
    pub rest_429_every: Option<u64>,
    /// Fault: every history request is refused with this status (401, 403: a
    /// history that needs a key).
    #[arg(long, value_name = "STATUS")]
    pub rest_status: Option<u16>,
}

/// Flags of `streamforge simulate finnhub`.
#[derive(Debug, Clone, Args)]
pub struct SimulateFinnhubArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value = "9001")]
    pub port: u16,
    /// The only token accepted; others get HTTP 401.
    #[arg(long, default_value = "sandbox")]
    pub token: String,
    /// The instruments it knows (others get "Invalid symbol"); any when omitted.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub symbols: Vec<String>,
    /// Trades per second per connection, across its subscribed symbols.
    #[arg(long, default_value = "200", value_parser = parse_rate)]
    pub rate: f64,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Symbols per connection before "Subscribing to too many symbols".
    #[arg(long, default_value = "50")]
    pub max_symbols: usize,
    /// Keep-alive interval.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ping_every: Duration,
    /// Fault: drop every connection this long after it opened.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub drop_every: Option<Duration>,
    /// Fault: go silent (TCP stays open) this long after a connection opened.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub silent_after: Option<Duration>,
    /// Fault: never send pings.
    #[arg(long)]
    pub no_pings: bool,
    /// Fault: every Nth frame is malformed.
    #[arg(long, value_name = "N")]
    pub malformed_every: Option<u64>,
    /// Fault: every Nth frame repeats the previous one (duplicate trades).
    #[arg(long, value_name = "N")]
    pub duplicate_every: Option<u64>,
    /// Fault: every Nth frame carries its trades newest first.
    #[arg(long, value_name = "N")]
    pub out_of_order_every: Option<u64>,
    /// Serve the trade history (`/api/v1/stock/tick`) as to a paid plan;
    /// without it the history answers HTTP 403, as to a free key.
    #[arg(long)]
    pub paid: bool,
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply pending migrations (as the schema owner); optionally create
    /// the writer and reader roles persist and serve connect as.
    Up(MigrateUpArgs),
    /// Revert the latest migration (PostgreSQL).
    Down(PipelineArgs),
    /// Show the schema version and mode of the store.
    Status(PipelineArgs),
}

/// `migrate up`: the pipeline flags and the roles to create.
#[derive(Debug, Clone, Args)]
pub struct MigrateUpArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Create (or update) this role for `persist`: it may insert and read
    /// ticks, gaps and candles, and cannot alter or drop a table.
    #[arg(long, value_name = "ROLE")]
    pub writer: Option<String>,
    /// File holding the writer's password (absent: it logs in without one,
    /// e.g. by certificate).
    #[arg(
        long,
        value_name = "FILE",
        env = "STREAMFORGE_WRITER_PASSWORD_FILE",
        value_parser = read_secret_file
    )]
    pub writer_password_file: Option<Secret>,
    /// Create (or update) this read-only role for `serve`.
    #[arg(long, value_name = "ROLE")]
    pub reader: Option<String>,
    /// File holding the reader's password.
    #[arg(
        long,
        value_name = "FILE",
        env = "STREAMFORGE_READER_PASSWORD_FILE",
        value_parser = read_secret_file
    )]
    pub reader_password_file: Option<Secret>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration as TOML.
    Print(PipelineArgs),
    /// Validate the configuration; exit 1 with the bad field named if it is wrong.
    Check(PipelineArgs),
}

/// Flags shared by the commands that build a pipeline.
#[derive(Debug, Clone, Default, Args)]
pub struct PipelineArgs {
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "STREAMFORGE_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Directory of the default SQLite store [default: ./data].
    #[arg(long, env = "STREAMFORGE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Bus URL [default: memory://].
    #[arg(long, env = "STREAMFORGE_BUS", value_name = "URL")]
    pub bus: Option<String>,

    /// Store URL [default: sqlite://<data-dir>/streamforge.db].
    #[arg(long, env = "STREAMFORGE_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Cache URL [default: memory://].
    #[arg(long, env = "STREAMFORGE_CACHE", value_name = "URL")]
    pub cache: Option<String>,

    /// Providers to run, comma-separated: synthetic, finnhub, binance,
    /// coinbase [default: finnhub with a token, else synthetic].
    #[arg(
        long = "provider",
        env = "STREAMFORGE_PROVIDER",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub providers: Option<Vec<String>>,

    /// Symbols, comma-separated: of the synthetic market and Finnhub, and
    /// of the venues (BTCUSDT for Binance, BTC-USD for Coinbase, or
    /// BINANCE:BTCUSDT and COINBASE:BTC-USD with several providers).
    #[arg(
        long,
        env = "STREAMFORGE_SYMBOLS",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub symbols: Option<Vec<String>>,

    /// Synthetic trades per second across all symbols, or `max` [default: 300].
    #[arg(long, env = "STREAMFORGE_RATE", value_parser = parse_rate, value_name = "N|max")]
    pub rate: Option<f64>,

    /// Seed of the synthetic market, for a reproducible run.
    #[arg(long, env = "STREAMFORGE_SEED")]
    pub seed: Option<u64>,

    /// Most ticks per store transaction [default: 5000].
    #[arg(long, env = "STREAMFORGE_PERSIST_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<usize>,

    /// Longest wait for a store batch to fill, e.g. `10ms` [default: 10ms].
    #[arg(long, env = "STREAMFORGE_PERSIST_BATCH_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub batch_timeout: Option<Duration>,

    /// How far ahead of the clock a tick's time may be, e.g. `5m` [default: 5m].
    #[arg(long, env = "STREAMFORGE_MAX_FUTURE_SKEW", value_parser = parse_duration, value_name = "DURATION")]
    pub max_future_skew: Option<Duration>,

    /// Finnhub API token; when set, Finnhub replaces the synthetic market.
    #[arg(
        long,
        env = "FINNHUB_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = parse_secret
    )]
    pub finnhub_token: Option<Secret>,

    /// A file holding the Finnhub API token (keeps it out of `ps` and the
    /// environment), e.g. a mounted secret; surrounding whitespace is ignored.
    #[arg(
        long,
        env = "FINNHUB_TOKEN_FILE",
        value_name = "FILE",
        value_parser = read_secret_file,
        conflicts_with = "finnhub_token"
    )]
    pub finnhub_token_file: Option<Secret>,

    /// Finnhub WebSocket endpoint [default: wss://ws.finnhub.io].
    #[arg(long, env = "STREAMFORGE_FINNHUB_URL", value_name = "URL")]
    pub finnhub_url: Option<String>,

    /// Binance WebSocket base URL [default: wss://stream.binance.com:9443].
    #[arg(long, env = "STREAMFORGE_BINANCE_URL", value_name = "URL")]
    pub binance_url: Option<String>,

    /// Coinbase WebSocket URL [default: wss://ws-feed.exchange.coinbase.com].
    #[arg(long, env = "STREAMFORGE_COINBASE_URL", value_name = "URL")]
    pub coinbase_url: Option<String>,
}

/// A credential from the command line or its variable.
fn parse_secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text))
}

/// A credential read from the file named: its content without the
/// surrounding whitespace (a trailing newline), never empty.
fn read_secret_file(path: &str) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{path} is empty"));
    }
    Ok(Secret::new(secret))
}

/// `max` or a number of trades per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(0.0);
    }
    let max = streamforge_providers::synthetic::MAX_RATE;
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= max => Ok(r),
        _ => Err(format!(
            "expected a number of ticks per second above 0 and at most {max} (or `max`), got {text:?}"
        )),
    }
}

impl Cli {
    /// The configuration these flags, the environment and the file describe.
    pub fn load_config(&self, args: &PipelineArgs) -> anyhow::Result<Config> {
        load_config(
            self.config.as_deref(),
            self.log_level.as_deref(),
            self.log_format.map(Into::into),
            args,
        )
    }
}

/// The configuration of `file` (or `./streamforge.toml`), the environment
/// and these flags, in that order.
pub fn load_config(
    file: Option<&std::path::Path>,
    log_level: Option<&str>,
    log_format: Option<LogFormat>,
    args: &PipelineArgs,
) -> anyhow::Result<Config> {
    let mut config = Config::load(file, std::env::vars())?;
    if let Some(level) = log_level {
        config.log.level = level.to_string();
    }
    if let Some(format) = log_format {
        config.log.format = format;
    }
    args.apply(&mut config);
    Ok(config)
}

impl PipelineArgs {
    /// Sets what the flags (or their short variables) say over `config`.
    pub fn apply(&self, config: &mut Config) {
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut config.data_dir, &self.data_dir);
        set(&mut config.bus, &self.bus);
        if self.store.is_some() {
            config.store.clone_from(&self.store);
        }
        set(&mut config.cache, &self.cache);
        set(&mut config.http.addr, &self.http_addr);
        if let Some(symbols) = &self.symbols {
            config.finnhub.symbols.clone_from(symbols);
            config.synthetic.symbols.clone_from(symbols);
        }
        set(&mut config.finnhub.token, &self.finnhub_token);
        set(&mut config.finnhub.token, &self.finnhub_token_file);
        set(&mut config.finnhub.url, &self.finnhub_url);
        set(&mut config.providers, &self.providers);
        if self.binance_url.is_some() {
            config.binance.ws_url.clone_from(&self.binance_url);
        }
        if self.coinbase_url.is_some() {
            config.coinbase.ws_url.clone_from(&self.coinbase_url);
        }
        set(&mut config.synthetic.rate, &self.rate);
        if self.seed.is_some() {
            config.synthetic.seed = self.seed;
        }
        set(&mut config.persist.batch_size, &self.batch_size);
        set(&mut config.persist.batch_timeout, &self.batch_timeout);
        set(&mut config.ingest.max_future_skew, &self.max_future_skew);
    }
}

/// Runs the parsed command; the exit code on success.
pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Run(args) => run_role(&cli, args, Role::Run).await,
        Command::Ingest(args) => run_role(&cli, args, Role::Ingest).await,
        Command::Persist(args) => run_role(&cli, args, Role::Persist).await,
        Command::Serve(args) => run_role(&cli, args, Role::Serve).await,
        Command::Migrate { action } => {
            let args = match action {
                MigrateAction::Up(up) => &up.pipeline,
                MigrateAction::Down(args) | MigrateAction::Status(args) => args,
            };
            let config = cli.load_config(args)?;
            config.validate()?;
            let tracing = init_logging(&config, "migrate")?;
            finish(tracing, migrate(&config, action).await).await
        }
        Command::Keys {
            action: KeysAction::Generate { id, scopes },
        } => {
            let (key, block) = generate_key(id, scopes)?;
            eprintln!("The key (shown once; give it to the client, store it nowhere else):");
            println!("{key}");
            eprintln!("\nAdd to streamforge.toml (the server keeps only the key's SHA-256):\n");
            println!("{block}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { action } => {
            let (ConfigAction::Print(args) | ConfigAction::Check(args)) = action;
            let config = cli.load_config(args)?;
            match action {
                ConfigAction::Print(_) => {
                    print!("{}", config.to_toml());
                    Ok(ExitCode::SUCCESS)
                }
                ConfigAction::Check(_) => match config.validate() {
                    Ok(()) => {
                        println!("configuration OK");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        eprintln!("configuration error: {e}");
                        Ok(ExitCode::FAILURE)
                    }
                },
            }
        }
        Command::Simulate {
            provider: SimulateProvider::Finnhub(args),
        } => simulate_finnhub(&cli, args).await,
        Command::Simulate {
            provider: SimulateProvider::Binance(args),
        } => simulate_venue(&cli, streamforge_providers::binance::ID, args).await,
        Command::Simulate {
            provider: SimulateProvider::Coinbase(args),
        } => simulate_venue(&cli, streamforge_providers::coinbase::ID, args).await,
        Command::Record(args) => record(&cli, args).await,
        Command::Replay(args) => replay(&cli, args).await,
    }
}

async fn record(cli: &Cli, args: &RecordArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config(&args.pipeline)?;
    config.validate().context("invalid configuration")?;
    let tracing = init_logging(&config, "record")?;
    finish(tracing, record_with(&config, args).await).await
}

async fn record_with(config: &Config, args: &RecordArgs) -> anyhow::Result<ExitCode> {
    use streamforge_providers::recording::Recorder;
    use streamforge_providers::{FinnhubProvider, Provider};

    if !config.finnhub.enabled() {
        anyhow::bail!("record: the Finnhub feed needs a token (--finnhub-token or FINNHUB_TOKEN)");
    }
    let finnhub = config.finnhub.clone().or_symbols(&config.synthetic.symbols);
    let metrics = streamforge_telemetry::Metrics::new();
    let health = streamforge_telemetry::Health::new();
    let rules = config.tick_rules();
    let (tap_tx, mut tap_rx) = tokio::sync::mpsc::channel(1024);
    let provider = FinnhubProvider::new(finnhub, rules, metrics, health)?.record_to(tap_tx);
    let mut recorder = Recorder::create(&args.out)?;
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signal(shutdown.clone());
    let tasks = streamforge_telemetry::Tasks::new(shutdown.clone());
    if let Some(d) = args.duration {
        let s = shutdown.clone();
        tasks.spawn("record duration", async move {
            tokio::time::sleep(d).await;
            s.cancel();
        });
    }
    // The ticks themselves are not needed here; drain them.
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel(64);
    tasks.spawn_draining("tick drain", async move {
        while frames_rx.recv().await.is_some() {}
    });
    let feed = tokio::spawn(Box::new(provider).run(frames_tx, shutdown.clone()));
    eprintln!("recording to {} (Ctrl-C to stop)", args.out.display());
    let written = async {
        while let Some(frame) = tap_rx.recv().await {
            recorder.write(&frame)?;
        }
        anyhow::Ok(())
    }
    .await;
    if written.is_err() {
        // The file cannot be written: stop the feed, and let its tap fail.
        shutdown.cancel();
    }
    drop(tap_rx);
    let fed = feed.await.context("the provider task");
    tasks.stop().await;
    written?;
    fed??;
    let frames = recorder.finish()?;
    eprintln!("recorded {frames} frames to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

async fn replay(cli: &Cli, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = cli.load_config(&args.pipeline)?;
    config.validate().context("invalid configuration")?;
    let tracing = init_logging(&config, "replay")?;
    finish(tracing, replay_with(&config, args).await).await
}

async fn replay_with(config: &Config, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    use streamforge_providers::replay::ReplayProvider;

    let rules = config.tick_rules();
    let provider = ReplayProvider::new(args.file.clone(), args.speed, rules)?;
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signal(shutdown.clone());
    let running = pipeline::Pipeline::new(config, Role::Run)
        .with_providers(vec![Box::new(provider)])
        .start(shutdown)
        .await?;
    let metrics = running.metrics.clone();
    running.wait().await?;
    let stats = metrics.snapshot();
    println!(
        "replayed {}: {} ticks, {} new rows stored, {} already stored",
        args.file.display(),
        stats.provider_ticks(),
        stats.store.rows_written,
        stats.store.rows_deduplicated,
    );
    Ok(ExitCode::SUCCESS)
}

async fn simulate_venue(cli: &Cli, venue: &str, a: &SimulateVenueArgs) -> anyhow::Result<ExitCode> {
    use streamforge_providers::venue::simulator::SimConfig;
    use streamforge_providers::{binance, coinbase};

    streamforge_telemetry::logging::init(
        LogFormat::Console,
        cli.log_level.as_deref().unwrap_or("info"),
    )?;
    let defaults: &[&str] = if venue == binance::ID {
        &["BTCUSDT", "ETHUSDT"]
    } else {
        &["BTC-USD", "ETH-USD"]
    };
    let config = SimConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], a.port)),
        symbols: if a.symbols.is_empty() {
            defaults.iter().map(|s| s.to_string()).collect()
        } else {
            a.symbols.clone()
        },
        rate: a.rate,
        seed: a.seed,
        drop_every: a.drop_every,
        silent_after: a.silent_after,
        close_after: a.close_after,
        skip_every: a.skip_every,
        duplicate_every: a.duplicate_every,
        out_of_order_every: a.out_of_order_every,
        malformed_every: a.malformed_every,
        corrupt_every: a.corrupt_every,
        rest_addr: std::net::SocketAddr::from(([127, 0, 0, 1], a.rest_port)),
        rest_429_every: a.rest_429_every,
        rest_status: a.rest_status,
        ..SimConfig::default()
    };
    let sim = if venue == binance::ID {
        binance::simulator::start(config).await
    } else {
        coinbase::simulator::start(config).await
    }
    .with_context(|| format!("listening on 127.0.0.1:{}", a.port))?;
    println!(
        "{venue} simulator at ws://{} (history at http://{}); run: \
         STREAMFORGE_{}__REST_URL=http://{} streamforge run --provider {venue} --{venue}-url ws://{}",
        sim.addr,
        sim.rest_addr,
        venue.to_ascii_uppercase(),
        sim.rest_addr,
        sim.addr
    );
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signal(shutdown.clone());
    shutdown.cancelled().await;
    sim.stop();
    Ok(ExitCode::SUCCESS)
}

async fn simulate_finnhub(cli: &Cli, a: &SimulateFinnhubArgs) -> anyhow::Result<ExitCode> {
    use streamforge_providers::finnhub::{HistoryPlan, Simulator, SimulatorConfig};

    streamforge_telemetry::logging::init(
        LogFormat::Console,
        cli.log_level.as_deref().unwrap_or("info"),
    )?;
    let sim = Simulator::start(SimulatorConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], a.port)),
        token: a.token.clone(),
        symbols: a.symbols.clone(),
        rate: a.rate,
        seed: a.seed,
        max_symbols: a.max_symbols,
        ping_every: a.ping_every,
        drop_every: a.drop_every,
        silent_after: a.silent_after,
        no_pings: a.no_pings,
        malformed_every: a.malformed_every,
        duplicate_every: a.duplicate_every,
        out_of_order_every: a.out_of_order_every,
        history: if a.paid {
            HistoryPlan::Paid
        } else {
            HistoryPlan::Free
        },
        ..SimulatorConfig::default()
    })
    .await
    .with_context(|| format!("listening on 127.0.0.1:{}", a.port))?;
    println!(
        "Finnhub simulator at {} (token {:?}), trade history at {} ({}); run: streamforge run --finnhub-url {} --finnhub-token {}",
        sim.url(),
        a.token,
        sim.rest_url(),
        if a.paid { "paid plan" } else { "free plan: HTTP 403" },
        sim.url(),
        a.token
    );
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signal(shutdown.clone());
    shutdown.cancelled().await;
    sim.stop();
    Ok(ExitCode::SUCCESS)
}

/// Logs and traces of a process in `role`.
fn init_logging(config: &Config, role: &str) -> anyhow::Result<Option<Tracing>> {
    let settings = TraceSettings::resolve(&config.otel, role)?;
    let tracing = streamforge_telemetry::logging::init_with_traces(
        config.log.format,
        &config.log.level,
        &settings,
    )?;
    if let (Some(t), Some(endpoint)) = (&tracing, &settings.endpoint) {
        debug_assert!(t.is_exporting());
        tracing::info!(
            endpoint,
            ratio = settings.sample_ratio,
            service = settings.service_name,
            "exporting traces over OTLP"
        );
    }
    Ok(tracing)
}

/// Flushes the traces, then passes on the command's result.
async fn finish<T>(tracing: Option<Tracing>, result: anyhow::Result<T>) -> anyhow::Result<T> {
    if let Some(t) = tracing {
        // Blocks on the exporter's last request.
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    result
}

async fn run_role(cli: &Cli, args: &PipelineArgs, role: Role) -> anyhow::Result<ExitCode> {
    let config = cli.load_config(args)?;
    config.validate().context("invalid configuration")?;
    if (role == Role::Ingest || role == Role::Persist) && !config.bus.starts_with("kafka://") {
        anyhow::bail!(
            "bus: the ingest and persist roles run as separate processes and need a shared bus \
             (--bus kafka://HOST:PORT); {} only works inside one `streamforge run`",
            config.bus
        );
    }
    let tracing = init_logging(&config, role.name())?;
    let run = async {
        let shutdown = CancellationToken::new();
        crate::shutdown::on_signal(shutdown.clone());
        let running = pipeline::start(&config, role, shutdown).await?;
        println!(
            "StreamForge is running at {}://{} (Ctrl-C to stop)",
            if config.http.tls.is_some() {
                "https"
            } else {
                "http"
            },
            running.http_addr
        );
        running.wait().await?;
        Ok(ExitCode::SUCCESS)
    };
    finish(tracing, run.await).await
}

async fn migrate(config: &Config, action: &MigrateAction) -> anyhow::Result<ExitCode> {
    use streamforge_store::postgres::{self, MigrateAction as Pg};
    let url = config.store_url();
    let shown = streamforge_store::redact_url(&url);
    match url.split_once("://") {
        Some(("postgres" | "postgresql", _)) => {
            let pg_action = match action {
                MigrateAction::Up(_) => Pg::Up,
                MigrateAction::Down(_) => Pg::Down,
                MigrateAction::Status(_) => Pg::Status,
            };
            // Role names are checked before anything changes.
            let (writer, reader) = match action {
                MigrateAction::Up(up) => {
                    let role = |name: &Option<String>, password: &Option<Secret>| {
                        name.as_deref()
                            .map(|n| postgres::migrations::RoleSpec::new(n, password.clone()))
                            .transpose()
                    };
                    (
                        role(&up.writer, &up.writer_password_file)?,
                        role(&up.reader, &up.reader_password_file)?,
                    )
                }
                _ => (None, None),
            };
            let status = postgres::migrate(&url, pg_action, &config.postgres)
                .await
                .with_context(|| format!("migrating {shown}"))?;
            println!("{shown}: {status}");
            if writer.is_some() || reader.is_some() {
                postgres::grant_roles(&url, &config.postgres, writer.as_ref(), reader.as_ref())
                    .await
                    .with_context(|| format!("granting the roles on {shown}"))?;
                for (what, r) in [("writer (persist)", &writer), ("reader (serve)", &reader)] {
                    if let Some(r) = r {
                        println!("{shown}: role {} is the {what}", r.name);
                    }
                }
            }
        }
        Some(("sqlite", path)) => {
            if let MigrateAction::Down(_) = action {
                anyhow::bail!("{shown}: a SQLite store cannot be migrated down; remove the file to start over");
            }
            if let MigrateAction::Up(up) = action {
                if up.writer.is_some() || up.reader.is_some() {
                    anyhow::bail!("{shown}: --writer and --reader make PostgreSQL roles; a SQLite store has none");
                }
            }
            // Opening a SQLite store applies pending migrations.
            let store = streamforge_store::SqliteStore::open(path)
                .await
                .with_context(|| format!("opening the store {shown}"))?;
            let version = store.schema_version().await?;
            println!("{shown}: mode sqlite, schema version {version} (up to date)");
        }
        _ => anyhow::bail!("store: cannot migrate {shown}"),
    }
    Ok(ExitCode::SUCCESS)
}
