//! The one typed configuration tree.
//!
//! Each component owns its section: the struct, its defaults, doc comments
//! and `validate()` live beside the code that uses them
//! ([`streamforge_providers::FinnhubConfig`], [`streamforge_store::PostgresConfig`],
//! [`crate::pipeline::PersistConfig`], ...); [`Config`] only embeds them and
//! checks what spans sections.
//!
//! Layers, lowest first: built-in defaults < `streamforge.toml` (or the
//! file named by `--config`) < `.env` < environment variables < flags.
//! Every setting can be set from the environment by one rule,
//! `STREAMFORGE_<SECTION>__<KEY>` (e.g. `STREAMFORGE_PERSIST__BATCH_SIZE=2000`),
//! see [`Config::layered`]; the short variables of the flags
//! (`STREAMFORGE_BUS`, `FINNHUB_TOKEN`, ...) are read by clap. [`Config::validate`]
//! runs once at start-up and names the field that is wrong.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streamforge_api::server::HttpConfig;
use streamforge_api::ApiConfig;
use streamforge_bus::{KafkaOptions, MemoryBusConfig};
use streamforge_model::settings::{duration_text, Invalid};
use streamforge_providers::{FinnhubConfig, ProviderSettings, SyntheticConfig, VenueConfig};
use streamforge_store::PostgresConfig;
use streamforge_telemetry::{LogConfig, OtelConfig};

pub use streamforge_model::settings::parse_duration;

use crate::pipeline::{IngestConfig, PersistConfig};

/// File read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "streamforge.toml";

/// Prefix of the environment variables that set any setting:
/// `STREAMFORGE_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "STREAMFORGE_";

/// Prefix of environment variables that set [`KafkaOptions::properties`]:
/// the rest of the name, lower-cased with `_` as `.`, is the setting.
pub const KAFKA_PROPERTY_ENV_PREFIX: &str = "STREAMFORGE_KAFKA__PROPERTIES__";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite store lives by default (`--data-dir`).
    pub data_dir: PathBuf,
    /// Bus URL: `memory://` or `kafka://HOST:PORT[,HOST:PORT]` (`--bus`).
    pub bus: String,
    /// Store URL: `sqlite://PATH` or `postgres://...` (`--store`); default
    /// `sqlite://<data_dir>/streamforge.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Cache URL: `memory://` or `redis://...` (`--cache`).
    pub cache: String,
    /// Providers to run: `synthetic`, `finnhub`, `binance`, `coinbase`
    /// (`--provider`); empty: Finnhub when it has a token, else synthetic.
    pub providers: Vec<String>,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// OpenTelemetry traces; the standard `OTEL_*` variables override it.
    pub otel: OtelConfig,
    pub synthetic: SyntheticConfig,
    pub finnhub: FinnhubConfig,
    /// Binance spot trades, keyless (`--provider binance`).
    pub binance: VenueConfig,
    /// Coinbase Exchange trades, keyless (`--provider coinbase`).
    pub coinbase: VenueConfig,
    pub ingest: IngestConfig,
    pub persist: PersistConfig,
    pub api: ApiConfig,
    pub memory_bus: MemoryBusConfig,
    pub postgres: PostgresConfig,
    pub kafka: KafkaOptions,
    pub shutdown: ShutdownConfig,
}

/// Shutdown: the `[shutdown]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Longest time to drain at shutdown before giving up (exit non-zero).
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: Duration::from_secs(30),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            bus: "memory://".into(),
            store: None,
            cache: "memory://".into(),
            providers: Vec::new(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            otel: OtelConfig::default(),
            synthetic: SyntheticConfig::default(),
            finnhub: FinnhubConfig::default(),
            binance: VenueConfig::default(),
            coinbase: VenueConfig::default(),
            ingest: IngestConfig::default(),
            persist: PersistConfig::default(),
            api: ApiConfig::default(),
            memory_bus: MemoryBusConfig::default(),
            postgres: PostgresConfig::default(),
            kafka: KafkaOptions::default(),
            shutdown: ShutdownConfig::default(),
        }
    }
}

/// A configuration problem, naming the field (or file, or variable) at fault.
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
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(Invalid::new(field, reason))
}

impl Config {
    /// The configuration of the file at `path` (or `streamforge.toml` when
    /// `path` is `None` and it exists) over the defaults, with the
    /// `STREAMFORGE_<SECTION>__<KEY>` variables among `vars` over the file.
    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let text = if !required && !path.exists() {
            String::new()
        } else {
            std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?
        };
        Self::layered(&text, &path.display().to_string(), vars)
    }

    /// Parses TOML text over the defaults; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: one_line(e),
        })
    }

    /// TOML `text` (named `origin` in errors) over the defaults, then the
    /// `STREAMFORGE_<SECTION>__<KEY>` variables among `vars` (others are
    /// left alone). A value is read as its setting's type: numbers,
    /// `true`/`false`, durations like `250ms`, lists separated by commas.
    /// `STREAMFORGE_KAFKA__PROPERTIES__SASL_PASSWORD` sets the librdkafka
    /// property `sasl.password`. An error names the file or the variable.
    pub fn layered(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // The file alone first, so its errors name it.
        Self::from_toml(text, origin)?;
        let mut table: toml::Table = text.parse().map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: one_line(e),
        })?;
        let defaults =
            toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Parse {
                path: "defaults".into(),
                message: one_line(e),
            })?;
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        vars.sort();
        let mut properties = Vec::new();
        for (name, raw) in vars {
            if let Some(key) = name.strip_prefix(KAFKA_PROPERTY_ENV_PREFIX) {
                properties.push((key.to_ascii_lowercase().replace('_', "."), raw));
                continue;
            }
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !rest.contains("__") {
                continue; // a flag's short variable, read by clap
            }
            let bad = |message: String| ConfigError::Parse {
                path: format!("environment variable {name}"),
                message,
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(bad("expected STREAMFORGE_<SECTION>__<KEY>".into()));
            }
            let value = env_value(lookup(&defaults, &path), &raw).map_err(&bad)?;
            // Each variable on its own over the defaults, so an error names it.
            let mut alone = toml::Table::new();
            insert(&mut alone, &path, value.clone()).map_err(&bad)?;
            Config::deserialize(toml::Value::Table(alone)).map_err(|e| bad(one_line(e)))?;
            insert(&mut table, &path, value).map_err(&bad)?;
        }
        let mut config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
                path: format!("{origin} with the environment"),
                message: one_line(e),
            })?;
        for (key, value) in properties {
            config.kafka.properties.insert(key, value);
        }
        Ok(config)
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

    /// The validation rules every stage applies to ticks.
    pub fn tick_rules(&self) -> streamforge_model::TickRules {
        self.ingest.tick_rules()
    }

    /// Every provider's settings, for `build_providers`.
    pub fn provider_settings(&self) -> ProviderSettings {
        ProviderSettings {
            names: self.providers.clone(),
            synthetic: self.synthetic.clone(),
            finnhub: self.finnhub.clone(),
            binance: self.binance.clone(),
            coinbase: self.coinbase.clone(),
            resume: Vec::new(),
            last_trades: Vec::new(),
            fill_history: false,
            stored_near_gaps: Vec::new(),
        }
    }

    /// Settings of the bus implementations.
    pub fn bus_options(&self) -> streamforge_bus::BusOptions {
        streamforge_bus::BusOptions {
            memory: self.memory_bus.clone(),
            kafka: self.kafka.clone(),
            metrics: None,
            health: None,
            tasks: None,
        }
    }

    /// Checks every field once; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("bus", &self.bus, streamforge_bus::SCHEMES)?;
        check_url("store", &self.store_url(), streamforge_store::STORE_SCHEMES)?;
        check_url("cache", &self.cache, streamforge_store::CACHE_SCHEMES)?;
        streamforge_telemetry::TraceSettings::resolve(&self.otel, "run")
            .map_err(|e| invalid(e.field, e.message))?;
        streamforge_providers::check_names(&self.providers)
            .map_err(|reason| invalid("providers", reason))?;
        let sections: [(&str, Result<(), Invalid>); 12] = [
            ("http", self.http.validate()),
            ("log", self.log.validate()),
            ("synthetic", self.synthetic.validate()),
            ("finnhub", self.finnhub.validate()),
            ("binance", self.binance.validate()),
            ("coinbase", self.coinbase.validate()),
            ("ingest", self.ingest.validate()),
            ("persist", self.persist.validate()),
            ("api", self.api.validate()),
            ("postgres", self.postgres.validate()),
            ("kafka", self.kafka.validate()),
            ("shutdown", self.shutdown.validate()),
        ];
        for (section, result) in sections {
            result.map_err(|e| e.within(section))?;
        }
        // What spans sections.
        streamforge_api::auth::check_exposure(self.http.addr, &self.api.keys, self.api.anonymous)
            .map_err(|reason| invalid("http.addr", reason))?;
        if self.http.idle_timeout <= self.api.request_timeout {
            return Err(invalid(
                "http.idle_timeout",
                format!(
                    "must be longer than api.request_timeout ({:?}): a connection waiting for its answer moves no byte",
                    self.api.request_timeout
                ),
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
        if self.api.default_limit > self.api.max_limit {
            return Err(invalid(
                "api.default_limit",
                format!("must be at most api.max_limit ({})", self.api.max_limit),
            ));
        }
        Ok(())
    }

    /// The configuration as TOML (what `config print` shows), secrets hidden.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store = Some(streamforge_store::redact_url(&self.store_url()));
        shown.cache = streamforge_store::redact_url(&self.cache);
        shown.bus = streamforge_store::redact_url(&self.bus);
        shown.kafka.properties = self.kafka.properties.redacted();
        // `Secret`s serialize as `***`.
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

impl ShutdownConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.timeout.is_zero() {
            return Err(Invalid::new("timeout", "must be longer than 0"));
        }
        Ok(())
    }
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().trim().replace('\n', " ")
}

/// The default value at `path`, which tells the type of the setting.
fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(p)?.as_table()?;
    }
    t.get(last)
}

/// Reads an environment value as the type of `like` (the default); a
/// setting without a default (unset optionals) takes the obvious type.
fn env_value(like: Option<&toml::Value>, raw: &str) -> Result<toml::Value, String> {
    use toml::Value;
    let text = raw.trim();
    let expected = |what: &str| format!("expected {what}, got {raw:?}");
    Ok(match like {
        Some(Value::String(_)) => Value::String(raw.to_string()),
        Some(Value::Integer(_)) => {
            Value::Integer(text.parse().map_err(|_| expected("an integer"))?)
        }
        Some(Value::Float(_)) => Value::Float(text.parse().map_err(|_| expected("a number"))?),
        Some(Value::Boolean(_)) => Value::Boolean(match text.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(expected("true or false")),
        }),
        Some(Value::Array(items)) => {
            let item = items
                .first()
                .cloned()
                .unwrap_or(Value::String(String::new()));
            Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| env_value(Some(&item), s))
                    .collect::<Result<_, _>>()?,
            )
        }
        Some(Value::Table(_)) => {
            return Err("names a section; set its keys as ..._<SECTION>__<KEY>".into())
        }
        Some(Value::Datetime(_)) => Value::String(raw.to_string()),
        None => {
            if let Ok(i) = text.parse::<i64>() {
                Value::Integer(i)
            } else {
                Value::String(raw.to_string())
            }
        }
    })
}

/// Sets `path` in `table` to `value`, creating the sections on the way.
fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty setting name".into());
    };
    let mut t = table;
    for p in parents {
        t = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{p} is a setting, not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

fn check_url(field: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    // The error quotes the URL: never with its password.
    let shown = streamforge_model::settings::redact_url(url);
    let url = shown.as_str();
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
        let mut c = Config::layered(
            "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"file-secret\"\n",
            "x.toml",
            [
                (
                    "STREAMFORGE_KAFKA__PROPERTIES__SASL_USERNAME".to_string(),
                    "svc".to_string(),
                ),
                (
                    "STREAMFORGE_KAFKA__PROPERTIES__SASL_PASSWORD".to_string(),
                    "env-secret".to_string(),
                ),
                ("STREAMFORGE_BUS".to_string(), "ignored here".to_string()),
            ],
        )
        .unwrap();
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
            c.bus_options().kafka.properties.0["sasl.password"],
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
    fn every_setting_comes_from_the_environment_by_one_rule_over_the_file() {
        let vars = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let c = Config::layered(
            "[synthetic]\nrate = 5.0\n[persist]\nbatch_size = 10\n",
            "f.toml",
            vars(&[
                ("STREAMFORGE_SYNTHETIC__RATE", "7"),
                ("STREAMFORGE_PERSIST__BATCH_TIMEOUT", "3ms"),
                ("STREAMFORGE_FINNHUB__MAX_SYMBOLS_PER_CONNECTION", "20"),
                ("STREAMFORGE_FINNHUB__SYMBOLS", "AAPL, MSFT"),
                ("STREAMFORGE_FINNHUB__TOKEN", "12345"),
                ("STREAMFORGE_HTTP__PPROF", "true"),
                ("STREAMFORGE_POSTGRES__MODE", "postgres"),
                ("STREAMFORGE_LOG__FORMAT", "json"),
                ("STREAMFORGE_OTEL__PROTOCOL", "http/json"),
                ("STREAMFORGE_SYNTHETIC__SEED", "42"),
                ("STREAMFORGE_KAFKA__PARTITIONS", "3"),
                // The flags' short variables are clap's, not this rule's.
                ("STREAMFORGE_RATE", "999"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.synthetic.rate, 7.0, "the environment wins over the file");
        assert_eq!(
            c.persist.batch_size, 10,
            "the file stays where no variable is set"
        );
        assert_eq!(c.persist.batch_timeout, Duration::from_millis(3));
        assert_eq!(c.finnhub.max_symbols_per_connection, 20);
        assert_eq!(c.finnhub.symbols, ["AAPL", "MSFT"]);
        assert_eq!(c.finnhub.token.expose(), "12345");
        assert!(c.http.pprof);
        assert_eq!(
            c.postgres.mode,
            Some(streamforge_store::postgres::Mode::Postgres)
        );
        assert_eq!(c.log.format, streamforge_telemetry::LogFormat::Json);
        assert_eq!(
            c.otel.protocol,
            streamforge_telemetry::traces::OtlpProtocol::HttpJson
        );
        assert_eq!(c.synthetic.seed, Some(42));
        assert_eq!(c.kafka.partitions, 3);
        c.validate().unwrap();

        for (var, value, wanted) in [
            (
                "STREAMFORGE_PERSIST__BATCH_SIZE",
                "many",
                "expected an integer",
            ),
            ("STREAMFORGE_PERSIST__BATCH_SISE", "5", "batch_sise"),
            ("STREAMFORGE_PERSSIT__BATCH_SIZE", "5", "perssit"),
            ("STREAMFORGE_HTTP__PPROF", "yes", "true or false"),
            (
                "STREAMFORGE_POSTGRES__MODE",
                "oracle",
                "auto, postgres or timescaledb",
            ),
            ("STREAMFORGE_PERSIST__BATCH_TIMEOUT", "soon", "soon"),
            ("STREAMFORGE_PERSIST", "x", ""),
            ("STREAMFORGE_HTTP", "x", ""),
            ("STREAMFORGE_POSTGRES__", "x", "SECTION"),
            ("STREAMFORGE_HTTP__ADDR__PORT", "1", "http.addr"),
        ] {
            let got = Config::layered("", "f.toml", vars(&[(var, value)]));
            if wanted.is_empty() {
                assert!(got.is_ok(), "{var} is not this rule's: {got:?}");
                continue;
            }
            let e = got.unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("environment variable {var}:")) && e.contains(wanted),
                "{var}={value}: {e}"
            );
        }
    }

    /// Every dotted setting name under `table`.
    fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let name = format!("{prefix}{k}");
            match v {
                toml::Value::Table(t) => leaves(t, &format!("{name}."), out),
                _ => out.push(name),
            }
        }
    }

    #[test]
    fn docs_configuration_md_lists_every_setting_with_the_default_of_the_code() {
        let doc = include_str!("../../../docs/configuration.md");
        let block = doc
            .split("## Reference")
            .nth(1)
            .and_then(|r| r.split("```toml").nth(1))
            .and_then(|b| b.split("```").next())
            .expect("docs/configuration.md has a ```toml block under ## Reference");
        let documented: toml::Table = block.parse().expect("the reference is TOML");
        // Unknown or misspelled settings fail here.
        let mut from_docs = Config::deserialize(toml::Value::Table(documented.clone()))
            .expect("every setting of the reference exists");
        assert_eq!(from_docs.store_url(), Config::default().store_url());
        from_docs.store = None;
        assert_eq!(
            from_docs,
            Config::default(),
            "a default in docs/configuration.md differs from the code"
        );
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let mut names = Vec::new();
        leaves(&defaults, "", &mut names);
        assert!(names.len() > 60, "{names:?}");
        for name in names {
            let path: Vec<String> = name.split('.').map(String::from).collect();
            assert!(
                lookup(&documented, &path).is_some(),
                "docs/configuration.md does not list {name}"
            );
        }
    }

    #[test]
    fn printing_hides_secrets_and_round_trips() {
        let mut c = Config::from_toml(
            "[synthetic]\nrate = 7.0\n[persist]\nbatch_timeout = \"3ms\"",
            "f",
        )
        .unwrap();
        c.store = Some("postgres://app:hunter2@db/ticks".into());
        c.finnhub.token = streamforge_model::settings::Secret::new("tok-canary");
        let printed = c.to_toml();
        assert!(
            !printed.contains("hunter2") && printed.contains("app:***@db"),
            "{printed}"
        );
        assert!(
            !printed.contains("tok-canary") && printed.contains("token = \"***\""),
            "{printed}"
        );
        assert!(!format!("{c:?}").contains("tok-canary"));
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
