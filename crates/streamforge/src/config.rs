//! The one typed configuration tree.
//!
//! Layers, lowest first: built-in defaults < `streamforge.toml` (or the
//! file named by `--config`) < `.env` < `STREAMFORGE_*` environment
//! variables < command-line flags. The last two are handled by clap (each
//! flag names its variable in `--help`); this module applies them over the
//! file with [`Overrides`]. [`Config::validate`] runs once at start-up and
//! names the field that is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streamforge_telemetry::LogFormat;

/// File read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "streamforge.toml";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite store lives by default.
    pub data_dir: PathBuf,
    /// Bus URL: `memory://`.
    pub bus: String,
    /// Store URL: `sqlite://PATH`; default `sqlite://<data_dir>/streamforge.db`.
    pub store: Option<String>,
    /// Cache URL: `memory://`.
    pub cache: String,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// OpenTelemetry traces; the standard `OTEL_*` variables override it.
    pub otel: streamforge_telemetry::OtelConfig,
    pub synthetic: SyntheticSection,
    pub finnhub: FinnhubSection,
    pub ingest: IngestConfig,
    pub persist: PersistConfig,
    pub api: ApiSection,
    pub memory_bus: MemoryBusConfig,
    pub postgres: PostgresConfig,
    pub kafka: KafkaConfig,
    pub shutdown: ShutdownConfig,
}

/// Settings of a `kafka://` bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Partitions of topics created when missing.
    pub partitions: i32,
    /// Replication factor of topics created when missing.
    pub replication: i32,
    /// Producer linger.
    #[serde(with = "duration_text")]
    pub linger: Duration,
    /// Longest wait for a message's acknowledgement.
    #[serde(with = "duration_text")]
    pub delivery_timeout: Duration,
    /// Consumers that miss heartbeats this long leave their group: how soon
    /// a crashed member's partitions move to another.
    #[serde(with = "duration_text")]
    pub session_timeout: Duration,
    /// Consumers that neither receive nor idle this long leave their group.
    #[serde(with = "duration_text")]
    pub max_poll_interval: Duration,
    /// How often persist reports its consumer lag (a watermark query per
    /// partition to the broker).
    #[serde(with = "duration_text")]
    pub lag_report_every: Duration,
    /// librdkafka settings passed to every Kafka client, e.g.
    /// `security.protocol = "SASL_SSL"`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`. Also from the environment:
    /// `STREAMFORGE_KAFKA__PROPERTIES__SASL_PASSWORD=...` sets `sasl.password`.
    /// Secret values are shown as `***`.
    pub properties: streamforge_bus::KafkaProperties,
}

/// Prefix of environment variables that set [`KafkaConfig::properties`]:
/// the rest of the name, lower-cased with `_` as `.`, is the setting.
pub const KAFKA_PROPERTY_ENV_PREFIX: &str = "STREAMFORGE_KAFKA__PROPERTIES__";

impl Default for KafkaConfig {
    fn default() -> Self {
        let d = streamforge_bus::KafkaOptions::default();
        KafkaConfig {
            partitions: d.partitions,
            replication: d.replication,
            linger: d.linger,
            delivery_timeout: d.delivery_timeout,
            session_timeout: d.session_timeout,
            max_poll_interval: d.max_poll_interval,
            lag_report_every: d.lag_report_every,
            properties: d.properties,
        }
    }
}

impl KafkaConfig {
    /// Sets properties from `STREAMFORGE_KAFKA__PROPERTIES__*` variables.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        for (name, value) in vars {
            if let Some(key) = name.strip_prefix(KAFKA_PROPERTY_ENV_PREFIX) {
                self.properties
                    .insert(key.to_ascii_lowercase().replace('_', "."), value);
            }
        }
    }

    pub fn options(&self) -> streamforge_bus::KafkaOptions {
        streamforge_bus::KafkaOptions {
            partitions: self.partitions,
            replication: self.replication,
            linger: self.linger,
            delivery_timeout: self.delivery_timeout,
            session_timeout: self.session_timeout,
            max_poll_interval: self.max_poll_interval,
            lag_report_every: self.lag_report_every,
            properties: self.properties.clone(),
        }
    }
}

/// Schema settings of a `postgres://` store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// `auto` (TimescaleDB when the extension can be created), `timescaledb` or `postgres`.
    pub mode: String,
    /// Chunk (TimescaleDB) or partition (plain) width in days.
    pub chunk_days: u32,
    /// TimescaleDB: compress chunks older than this many days.
    pub compress_after_days: u32,
    /// Drop ticks older than this many days; 0 keeps everything.
    pub retention_days: u32,
    /// Plain PostgreSQL: daily partitions created ahead of today.
    pub partitions_ahead: u32,
    /// How often persist runs store upkeep (partitions ahead, retention).
    #[serde(with = "duration_text")]
    pub housekeeping_every: Duration,
    /// Opening a connection, unless the URL sets `connect_timeout`.
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    /// The server's `statement_timeout` for the store's statements; any
    /// call the server does not answer within this plus 2 s fails.
    #[serde(with = "duration_text")]
    pub statement_timeout: Duration,
    /// Waiting for a free pooled connection.
    #[serde(with = "duration_text")]
    pub pool_wait_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        let d = streamforge_store::PgSchemaOptions::default();
        let t = streamforge_store::PgTimeouts::default();
        PostgresConfig {
            mode: "auto".into(),
            chunk_days: d.chunk_days,
            compress_after_days: d.compress_after_days,
            retention_days: d.retention_days,
            partitions_ahead: d.partitions_ahead,
            housekeeping_every: Duration::from_secs(3600),
            connect_timeout: t.connect,
            statement_timeout: t.statement,
            pool_wait_timeout: t.pool_wait,
        }
    }
}

impl PostgresConfig {
    /// How long the store waits for the database.
    pub fn timeouts(&self) -> streamforge_store::PgTimeouts {
        streamforge_store::PgTimeouts {
            connect: self.connect_timeout,
            statement: self.statement_timeout,
            pool_wait: self.pool_wait_timeout,
        }
    }

    /// The store's schema options.
    pub fn schema_options(&self) -> streamforge_store::PgSchemaOptions {
        streamforge_store::PgSchemaOptions {
            chunk_days: self.chunk_days,
            compress_after_days: self.compress_after_days,
            retention_days: self.retention_days,
            partitions_ahead: self.partitions_ahead,
            mode: streamforge_store::postgres::Mode::parse(&self.mode),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP API, metrics and health endpoints.
    pub addr: SocketAddr,
    /// Serve `/debug/pprof/profile?seconds=N` (a CPU flame graph).
    pub pprof: bool,
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// A request's headers must arrive within this (also the longest a
    /// keep-alive connection waits for its next request).
    #[serde(with = "duration_text")]
    pub header_timeout: Duration,
    /// Largest request head (request line and headers); 431 beyond.
    pub max_header_bytes: usize,
    /// A connection that moves no byte either way this long is closed.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
    /// A client that takes no byte of its response (a stream) this long is closed.
    #[serde(with = "duration_text")]
    pub write_timeout: Duration,
}

impl HttpConfig {
    /// The server's limits.
    pub fn server_options(&self) -> streamforge_api::server::ServerOptions {
        streamforge_api::server::ServerOptions {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            max_header_bytes: self.max_header_bytes,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Level filter, e.g. `info` or `info,streamforge_store=debug`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticSection {
    pub symbols: Vec<String>,
    /// Total trades per second; 0 = as fast as the pipeline takes them.
    pub rate: f64,
    /// Seed for a reproducible market.
    pub seed: Option<u64>,
    /// How often a frame of trades is emitted.
    #[serde(with = "duration_text")]
    pub slice: Duration,
}

/// The Finnhub provider: it runs, instead of the synthetic market, when a
/// token is set (here or in `FINNHUB_TOKEN`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinnhubSection {
    /// API token (secret: `config print` shows `***`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// WebSocket endpoint (the simulator: `ws://127.0.0.1:9001`).
    pub url: String,
    /// Symbols in Finnhub's notation; empty = the `symbols` list of the
    /// synthetic market (`--symbols`).
    pub symbols: Vec<String>,
    /// Symbols per connection (Finnhub's free tier: 50).
    pub max_symbols_per_connection: usize,
    /// Reconnect when nothing (trade or ping) arrived for this long.
    #[serde(with = "duration_text")]
    pub silence: Duration,
    /// First reconnect pause; doubles up to `backoff_max`, with jitter.
    #[serde(with = "duration_text")]
    pub backoff_min: Duration,
    #[serde(with = "duration_text")]
    pub backoff_max: Duration,
    /// Pause after the token was rejected (HTTP 401).
    #[serde(with = "duration_text")]
    pub unauthorized_retry: Duration,
    /// A symbol without trades this long shows as silent in `/readyz`.
    #[serde(with = "duration_text")]
    pub symbol_silence: Duration,
}

impl std::fmt::Debug for FinnhubSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinnhubSection")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("url", &self.url)
            .field("symbols", &self.symbols)
            .finish_non_exhaustive()
    }
}

impl Default for FinnhubSection {
    fn default() -> Self {
        let d = streamforge_providers::FinnhubConfig::default();
        FinnhubSection {
            token: None,
            url: d.url,
            symbols: Vec::new(),
            max_symbols_per_connection: d.max_symbols_per_connection,
            silence: d.silence,
            backoff_min: d.backoff_min,
            backoff_max: d.backoff_max,
            unauthorized_retry: d.unauthorized_retry,
            symbol_silence: d.symbol_silence,
        }
    }
}

impl Config {
    /// Settings of the bus implementations.
    pub fn bus_options(&self) -> streamforge_bus::BusOptions {
        streamforge_bus::BusOptions {
            memory_capacity: self.memory_bus.capacity,
            kafka: self.kafka.options(),
            metrics: None,
            health: None,
        }
    }

    /// The Finnhub provider's settings, when a token is configured.
    pub fn finnhub(&self) -> Option<streamforge_providers::FinnhubConfig> {
        let token = self.finnhub.token.as_deref().filter(|t| !t.is_empty())?;
        let f = &self.finnhub;
        Some(streamforge_providers::FinnhubConfig {
            token: streamforge_providers::Secret::new(token),
            symbols: if f.symbols.is_empty() {
                self.synthetic.symbols.clone()
            } else {
                f.symbols.clone()
            },
            url: f.url.clone(),
            max_symbols_per_connection: f.max_symbols_per_connection,
            silence: f.silence,
            backoff_min: f.backoff_min,
            backoff_max: f.backoff_max,
            unauthorized_retry: f.unauthorized_retry,
            symbol_silence: f.symbol_silence,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Topic for valid ticks.
    pub topic: String,
    /// Topic for rejected input, with the reason in headers.
    pub dlq_topic: String,
    /// How far ahead of the clock an event time may be.
    #[serde(with = "duration_text")]
    pub max_future_skew: Duration,
    /// Prices must be below this (bounds every computation on them).
    pub max_price: f64,
    /// Sizes must be below this.
    pub max_size: f64,
    /// Most distinct symbols ingest accepts (per-symbol state is bounded
    /// by it when a provider's universe is open, e.g. a recording); ticks
    /// of further symbols go to the dead-letter topic.
    pub max_symbols: usize,
    /// Frames buffered between providers and the bus.
    pub channel_frames: usize,
    /// A feed silent for longer than this makes `/readyz` fail.
    #[serde(with = "duration_text")]
    pub max_feed_silence: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistConfig {
    /// Consumer group of the persist stage.
    pub group: String,
    /// Most ticks written in one transaction.
    pub batch_size: usize,
    /// Longest wait for a batch to fill once its first tick arrived.
    #[serde(with = "duration_text")]
    pub batch_timeout: Duration,
    /// First delay before retrying a failed store write (doubles up to 30s).
    #[serde(with = "duration_text")]
    pub retry_backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    pub default_limit: usize,
    /// Larger `limit` values are capped to this.
    pub max_limit: usize,
    /// Look-back when a query has no `from`.
    #[serde(with = "duration_text")]
    pub default_window: Duration,
    /// Longest a REST request may take before it is answered 503.
    #[serde(with = "duration_text")]
    pub request_timeout: Duration,
    /// Live streams (SSE and WebSocket) open at once; one more is answered 503.
    pub max_streams: usize,
    /// Symbol subscriptions one WebSocket connection may hold.
    pub ws_max_subscriptions: usize,
}

impl ApiSection {
    /// The query limits of the API.
    pub fn limits(&self) -> streamforge_api::ApiLimits {
        streamforge_api::ApiLimits {
            default_limit: self.default_limit,
            max_limit: self.max_limit,
            default_window: self.default_window,
            request_timeout: self.request_timeout,
            max_streams: self.max_streams,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryBusConfig {
    /// Unacknowledged messages a `memory://` topic holds before ingest waits.
    pub capacity: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Longest time to drain at shutdown before giving up (exit non-zero).
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            bus: "memory://".into(),
            store: None,
            cache: "memory://".into(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            otel: streamforge_telemetry::OtelConfig::default(),
            synthetic: SyntheticSection::default(),
            finnhub: FinnhubSection::default(),
            ingest: IngestConfig::default(),
            persist: PersistConfig::default(),
            api: ApiSection::default(),
            memory_bus: MemoryBusConfig::default(),
            postgres: PostgresConfig::default(),
            kafka: KafkaConfig::default(),
            shutdown: ShutdownConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let d = streamforge_api::server::ServerOptions::default();
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            pprof: false,
            max_connections: d.max_connections,
            header_timeout: d.header_timeout,
            max_header_bytes: d.max_header_bytes,
            idle_timeout: d.idle_timeout,
            write_timeout: d.write_timeout,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Console,
        }
    }
}

impl Default for SyntheticSection {
    fn default() -> Self {
        let d = streamforge_providers::SyntheticConfig::default();
        SyntheticSection {
            symbols: d.symbols,
            rate: d.rate,
            seed: d.seed,
            slice: d.slice,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            topic: "ticks".into(),
            dlq_topic: "ticks.dlq".into(),
            max_future_skew: Duration::from_secs(300),
            max_price: streamforge_model::tick::DEFAULT_MAX_PRICE,
            max_size: streamforge_model::tick::DEFAULT_MAX_SIZE,
            max_symbols: 10_000,
            channel_frames: 64,
            max_feed_silence: Duration::from_secs(30),
        }
    }
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            group: "streamforge-persist".into(),
            batch_size: 5_000,
            batch_timeout: Duration::from_millis(10),
            retry_backoff: Duration::from_millis(100),
        }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        let d = streamforge_api::ApiLimits::default();
        ApiSection {
            default_limit: d.default_limit,
            max_limit: d.max_limit,
            default_window: d.default_window,
            request_timeout: d.request_timeout,
            max_streams: d.max_streams,
            ws_max_subscriptions: streamforge_api::routes::ws::WsOptions::default()
                .max_subscriptions,
        }
    }
}

impl Default for MemoryBusConfig {
    fn default() -> Self {
        MemoryBusConfig { capacity: 100_000 }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: Duration::from_secs(30),
        }
    }
}

/// A configuration problem, naming the field (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Values from flags and `STREAMFORGE_*` variables; `None` keeps the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub bus: Option<String>,
    pub store: Option<String>,
    pub cache: Option<String>,
    pub http_addr: Option<SocketAddr>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub symbols: Option<Vec<String>>,
    pub rate: Option<f64>,
    pub seed: Option<u64>,
    pub batch_size: Option<usize>,
    pub batch_timeout: Option<Duration>,
    pub max_future_skew: Option<Duration>,
    pub finnhub_token: Option<String>,
    pub finnhub_url: Option<String>,
}

impl Config {
    /// Reads `path`, or `streamforge.toml` when `path` is `None` and it
    /// exists, over the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        if !required && !path.exists() {
            return Ok(Config::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses TOML text over the defaults; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Applies flags and environment over the file.
    pub fn apply(&mut self, o: Overrides) {
        fn set<T>(slot: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        set(&mut self.data_dir, o.data_dir);
        set(&mut self.bus, o.bus);
        if o.store.is_some() {
            self.store = o.store;
        }
        set(&mut self.cache, o.cache);
        set(&mut self.http.addr, o.http_addr);
        set(&mut self.log.level, o.log_level);
        set(&mut self.log.format, o.log_format);
        if let Some(symbols) = o.symbols {
            self.finnhub.symbols.clone_from(&symbols);
            self.synthetic.symbols = symbols;
        }
        if o.finnhub_token.is_some() {
            self.finnhub.token = o.finnhub_token;
        }
        set(&mut self.finnhub.url, o.finnhub_url);
        set(&mut self.synthetic.rate, o.rate);
        if o.seed.is_some() {
            self.synthetic.seed = o.seed;
        }
        set(&mut self.persist.batch_size, o.batch_size);
        set(&mut self.persist.batch_timeout, o.batch_timeout);
        set(&mut self.ingest.max_future_skew, o.max_future_skew);
    }

    /// The store URL in effect.
    pub fn store_url(&self) -> String {
        self.store.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("streamforge.db").display()
            )
        })
    }

    /// Checks every field once; the error names the first bad one.
    /// The validation rules every stage applies to ticks.
    pub fn tick_rules(&self) -> streamforge_model::TickRules {
        streamforge_model::TickRules {
            max_future_skew: self.ingest.max_future_skew,
            max_price: self.ingest.max_price,
            max_size: self.ingest.max_size,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("bus", &self.bus, streamforge_bus::SCHEMES)?;
        check_url("store", &self.store_url(), streamforge_store::STORE_SCHEMES)?;
        check_url("cache", &self.cache, streamforge_store::CACHE_SCHEMES)?;
        streamforge_telemetry::logging::parse_filter(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        streamforge_telemetry::TraceSettings::resolve(&self.otel, "run")
            .map_err(|e| invalid(e.field, e.message))?;
        if self.synthetic.symbols.is_empty() {
            return Err(invalid(
                "synthetic.symbols",
                "at least one symbol is needed",
            ));
        }
        for s in &self.synthetic.symbols {
            streamforge_model::Symbol::parse(s)
                .map_err(|e| invalid("synthetic.symbols", e.to_string()))?;
        }
        let max_rate = streamforge_providers::synthetic::MAX_RATE;
        if !(self.synthetic.rate.is_finite()
            && self.synthetic.rate >= 0.0
            && self.synthetic.rate <= max_rate)
        {
            return Err(invalid(
                "synthetic.rate",
                format!(
                    "must be a number from 0 to {max_rate} (0 = as fast as possible), got {}",
                    self.synthetic.rate
                ),
            ));
        }
        if self.synthetic.slice.is_zero() {
            return Err(invalid("synthetic.slice", "must be longer than 0"));
        }
        if self.ingest.topic.is_empty() || self.ingest.topic == self.ingest.dlq_topic {
            return Err(invalid(
                "ingest.topic",
                "must be non-empty and differ from ingest.dlq_topic",
            ));
        }
        if self.ingest.dlq_topic.is_empty() {
            return Err(invalid("ingest.dlq_topic", "must be non-empty"));
        }
        for (field, value) in [
            ("ingest.max_price", self.ingest.max_price),
            ("ingest.max_size", self.ingest.max_size),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= 1e15) {
                return Err(invalid(
                    field,
                    format!("must be a number above 0 and at most 1e15, got {value}"),
                ));
            }
        }
        for (field, value) in [
            ("http.max_connections", self.http.max_connections),
            ("http.max_header_bytes", self.http.max_header_bytes),
            ("api.max_streams", self.api.max_streams),
            ("api.ws_max_subscriptions", self.api.ws_max_subscriptions),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        for (field, value) in [
            ("http.header_timeout", self.http.header_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
            ("http.write_timeout", self.http.write_timeout),
            ("api.request_timeout", self.api.request_timeout),
            ("postgres.connect_timeout", self.postgres.connect_timeout),
            (
                "postgres.statement_timeout",
                self.postgres.statement_timeout,
            ),
            (
                "postgres.pool_wait_timeout",
                self.postgres.pool_wait_timeout,
            ),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must be longer than 0"));
            }
        }
        if self.http.idle_timeout <= self.api.request_timeout {
            return Err(invalid(
                "http.idle_timeout",
                format!(
                    "must be longer than api.request_timeout ({:?}): a connection waiting for its answer moves no byte",
                    self.api.request_timeout
                ),
            ));
        }
        if self.ingest.max_symbols == 0 {
            return Err(invalid("ingest.max_symbols", "must be at least 1"));
        }
        if self.ingest.channel_frames == 0 {
            return Err(invalid("ingest.channel_frames", "must be at least 1"));
        }
        if self.persist.group.is_empty() {
            return Err(invalid("persist.group", "must be non-empty"));
        }
        if self.persist.batch_size == 0 || self.persist.batch_size > 1_000_000 {
            return Err(invalid(
                "persist.batch_size",
                format!("must be 1 to 1000000, got {}", self.persist.batch_size),
            ));
        }
        if self.memory_bus.capacity <= self.persist.batch_size {
            return Err(invalid(
                "memory_bus.capacity",
                format!(
                    "must be larger than persist.batch_size ({}), got {}",
                    self.persist.batch_size, self.memory_bus.capacity
                ),
            ));
        }
        if self.persist.retry_backoff.is_zero() {
            return Err(invalid("persist.retry_backoff", "must be longer than 0"));
        }
        if !matches!(
            self.postgres.mode.as_str(),
            "auto" | "postgres" | "timescaledb"
        ) {
            return Err(invalid(
                "postgres.mode",
                format!(
                    "expected auto, postgres or timescaledb, got {:?}",
                    self.postgres.mode
                ),
            ));
        }
        if self.kafka.partitions < 1 || self.kafka.replication < 1 {
            return Err(invalid(
                "kafka.partitions",
                "kafka.partitions and kafka.replication must be at least 1",
            ));
        }
        if !(self.finnhub.url.starts_with("ws://") || self.finnhub.url.starts_with("wss://")) {
            return Err(invalid(
                "finnhub.url",
                format!("expected ws:// or wss://, got {:?}", self.finnhub.url),
            ));
        }
        if self.finnhub.max_symbols_per_connection == 0 {
            return Err(invalid(
                "finnhub.max_symbols_per_connection",
                "must be at least 1",
            ));
        }
        if self.finnhub.silence.is_zero() || self.finnhub.backoff_min.is_zero() {
            return Err(invalid(
                "finnhub.silence",
                "finnhub.silence and finnhub.backoff_min must be longer than 0",
            ));
        }
        if let Err(e) = self.kafka.options().check_properties() {
            let reason = e.to_string();
            let reason = reason.trim_start_matches("bus configuration: kafka.properties: ");
            return Err(invalid("kafka.properties", reason));
        }
        if self.kafka.lag_report_every < Duration::from_secs(1) {
            return Err(invalid("kafka.lag_report_every", "must be at least 1s"));
        }
        if self.kafka.session_timeout < Duration::from_secs(1) {
            return Err(invalid("kafka.session_timeout", "must be at least 1s"));
        }
        if self.kafka.max_poll_interval < self.kafka.session_timeout {
            return Err(invalid(
                "kafka.max_poll_interval",
                "must be at least kafka.session_timeout",
            ));
        }
        if self.postgres.chunk_days == 0 {
            return Err(invalid("postgres.chunk_days", "must be at least 1"));
        }
        if self.postgres.housekeeping_every.is_zero() {
            return Err(invalid(
                "postgres.housekeeping_every",
                "must be longer than 0",
            ));
        }
        if self.api.max_limit == 0 || self.api.default_limit == 0 {
            return Err(invalid(
                "api.max_limit",
                "api.max_limit and api.default_limit must be at least 1",
            ));
        }
        Ok(())
    }

    /// The configuration as TOML (what `config print` shows), passwords hidden.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store = Some(streamforge_store::redact_url(&self.store_url()));
        shown.cache = streamforge_store::redact_url(&self.cache);
        shown.bus = streamforge_store::redact_url(&self.bus);
        shown.kafka.properties = self.kafka.properties.redacted();
        if shown.finnhub.token.is_some() {
            shown.finnhub.token = Some("***".into());
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

fn check_url(field: &'static str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(invalid(
            field,
            format!("{url:?} is not a URL (expected SCHEME://...)"),
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(invalid(
            field,
            format!(
                "unknown scheme {scheme:?} in {url:?}; this build supports: {}",
                schemes
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(())
}

/// Parses durations written like `5s`, `250ms`, `1m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 5s or 250ms: {e}"))
}

/// Serde for durations as text (`"250ms"`).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.http.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.store_url(), "sqlite://./data/streamforge.db");
        assert_eq!(
            (c.bus.as_str(), c.cache.as_str()),
            ("memory://", "memory://")
        );
    }

    #[test]
    fn file_values_and_durations_parse() {
        let c = Config::from_toml(
            r#"
            bus = "memory://"
            [persist]
            batch_timeout = "250ms"
            [synthetic]
            rate = 1000.0
            symbols = ["AAPL", "BINANCE:BTCUSDT"]
            "#,
            "test.toml",
        )
        .unwrap();
        assert_eq!(c.persist.batch_timeout, Duration::from_millis(250));
        assert_eq!(c.synthetic.rate, 1000.0);
        assert_eq!(c.persist.batch_size, 5_000, "unset fields keep defaults");
    }

    #[test]
    fn kafka_properties_come_from_file_and_environment_and_secrets_stay_hidden() {
        let mut c = Config::from_toml(
            "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"file-secret\"\n",
            "x.toml",
        )
        .unwrap();
        c.kafka.apply_env([
            (
                "STREAMFORGE_KAFKA__PROPERTIES__SASL_USERNAME".to_string(),
                "svc".to_string(),
            ),
            (
                "STREAMFORGE_KAFKA__PROPERTIES__SASL_PASSWORD".to_string(),
                "env-secret".to_string(),
            ),
            ("STREAMFORGE_BUS".to_string(), "ignored here".to_string()),
        ]);
        let p = &c.kafka.properties.0;
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["sasl.username"], "svc");
        assert_eq!(p["sasl.password"], "env-secret", "the environment wins");
        c.validate().unwrap();
        let shown = c.to_toml();
        assert!(!shown.contains("env-secret"), "{shown}");
        assert!(
            shown.contains("sasl.password") && shown.contains("***"),
            "{shown}"
        );
        assert!(
            shown.contains("SASL_SSL"),
            "non-secret values are shown: {shown}"
        );
        assert!(!format!("{c:?}").contains("env-secret"));
        assert_eq!(
            c.kafka.options().properties.0["sasl.password"],
            "env-secret",
            "the client still gets the real value"
        );

        c.kafka.properties.insert("enable.auto.commit", "true");
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("kafka.properties:") && err.contains("enable.auto.commit"),
            "{err}"
        );
        let mut c = Config::default();
        c.kafka.properties.insert("Security Protocol", "SSL");
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("Security Protocol"), "{err}");
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let err = Config::from_toml("[persist]\nbatch_sise = 5", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch_sise") && err.contains("x.toml"),
            "{err}"
        );
        let err = Config::from_toml("[persist]\nbatch_timeout = \"soon\"", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch_timeout") || err.contains("soon"),
            "{err}"
        );

        let c = Config {
            store: Some("oracle://db".into()),
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("store:") && err.contains("oracle") && err.contains("sqlite://"),
            "{err}"
        );

        let mut c = Config::default();
        c.synthetic.rate = -5.0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("synthetic.rate:"));
        let c = Config {
            bus: "kafka".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().starts_with("bus:"));
        let mut c = Config::default();
        c.log.level = "loud=[".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("log.level"));
    }

    #[test]
    fn overrides_win_over_the_file_and_printing_round_trips() {
        let mut c = Config::from_toml("[synthetic]\nrate = 5.0", "f").unwrap();
        c.apply(Overrides {
            rate: Some(7.0),
            batch_timeout: Some(Duration::from_millis(3)),
            ..Default::default()
        });
        assert_eq!(c.synthetic.rate, 7.0);
        assert_eq!(c.persist.batch_timeout, Duration::from_millis(3));
        c.store = Some("postgres://app:hunter2@db/ticks".into());
        let printed = c.to_toml();
        assert!(
            !printed.contains("hunter2") && printed.contains("app:***@db"),
            "{printed}"
        );
        let back = Config::from_toml(&printed, "printed").unwrap();
        assert_eq!(back.synthetic.rate, 7.0);
        assert_eq!(back.persist.batch_timeout, Duration::from_millis(3));
    }

    #[test]
    fn limits_must_be_positive_and_values_bounded_each_error_naming_its_setting() {
        let cases: Vec<(&str, &str)> = vec![
            ("[ingest]\nmax_price = 0.0", "ingest.max_price"),
            ("[ingest]\nmax_size = 1e300", "ingest.max_size"),
            ("[ingest]\nmax_symbols = 0", "ingest.max_symbols"),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            ("[http]\nheader_timeout = \"0s\"", "http.header_timeout"),
            ("[http]\nwrite_timeout = \"0s\"", "http.write_timeout"),
            ("[api]\nmax_streams = 0", "api.max_streams"),
            ("[api]\nrequest_timeout = \"0s\"", "api.request_timeout"),
            (
                "[api]\nws_max_subscriptions = 0",
                "api.ws_max_subscriptions",
            ),
            (
                "[postgres]\nstatement_timeout = \"0s\"",
                "postgres.statement_timeout",
            ),
            ("[synthetic]\nrate = 1e12", "synthetic.rate"),
            ("[http]\nidle_timeout = \"10s\"", "http.idle_timeout"),
        ];
        for (toml, field) in cases {
            let c = Config::from_toml(toml, "f").unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("{field}:")), "{toml}: {e}");
        }
        let rules = Config::default().tick_rules();
        assert_eq!(rules.max_price, 1e9);
        assert_eq!(rules.max_size, 1e12);
        assert!(crate::cli::parse_rate("1e12")
            .unwrap_err()
            .contains("at most"));
        assert_eq!(crate::cli::parse_rate("5000"), Ok(5000.0));
    }
}
