//! Wiring of the pipeline roles, and its orderly shutdown.
//!
//! `run` starts every stage in one process:
//!
//! ```text
//! providers ─frames─> ingest ─> bus [ticks] ─┬─> persist ─> store, cache, commit
//!                        └────> bus [ticks.dlq]   └─> live tail ─> LiveHub ─> SSE clients
//!                                          HTTP API (store, cache, LiveHub)
//! ```
//!
//! Every task hangs off one [`CancellationToken`]. A task that fails cancels
//! it, so the others stop too. At shutdown the stages drain in data order:
//! providers stop, ingest publishes what it holds, the ticks topic is
//! closed, persist writes and commits the rest, then the process exits.

pub mod candles;
pub mod dead_letter;
mod events;
mod ingest;
mod live;
mod persist;
pub mod retry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use streamforge_api::{AppState, LiveHub};
use streamforge_bus::{Bus, BusError, ConsumerOptions, StartFrom};
use streamforge_providers::build_providers;
use streamforge_store::{Cache, StoreOptions, TickStore};
use streamforge_telemetry::{Health, Metrics, Tasks};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use ingest::{feed_check, IngestConfig};
pub use persist::PersistConfig;
pub use streamforge_bus::message::headers;

use crate::config::Config;

/// Which stages a process runs. Every role serves `/healthz`, `/readyz`,
/// `/metrics` and `/api/v1/pipeline` on its HTTP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `streamforge run`: everything in one process.
    Run,
    /// `streamforge ingest`: providers to the bus.
    Ingest,
    /// `streamforge persist`: the bus to the store and cache.
    Persist,
    /// `streamforge serve`: the API over the store, cache and bus.
    Serve,
}

impl Role {
    /// The role's name in traces (`service.name` is `streamforge-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Run => "run",
            Role::Ingest => "ingest",
            Role::Persist => "persist",
            Role::Serve => "serve",
        }
    }

    /// Providers and the ingest stage.
    pub fn ingests(self) -> bool {
        matches!(self, Role::Run | Role::Ingest)
    }

    /// The persist stage.
    pub fn persists(self) -> bool {
        matches!(self, Role::Run | Role::Persist)
    }

    /// The query API and live streams.
    pub fn serves(self) -> bool {
        matches!(self, Role::Run | Role::Serve)
    }

    fn needs_store(self) -> bool {
        self.persists() || self.serves()
    }
}

/// Called with each batch the store committed and the time it did: a
/// harness's view of the write path (the benchmarks' exact latencies).
pub type StoredHook =
    Arc<dyn Fn(&[streamforge_model::Tick], streamforge_model::Timestamp) + Send + Sync>;

/// A started pipeline.
pub struct Running {
    /// Where the HTTP API listens (useful with port 0).
    pub http_addr: SocketAddr,
    pub metrics: Metrics,
    pub health: Health,
    /// The store, for roles that have one.
    pub store: Option<Arc<dyn TickStore>>,
    shutdown: CancellationToken,
    bus: Arc<dyn Bus>,
    topic: String,
    drain_timeout: std::time::Duration,
    providers: Vec<JoinHandle<anyhow::Result<()>>>,
    ingest: Option<JoinHandle<anyhow::Result<()>>>,
    persist: Option<JoinHandle<anyhow::Result<()>>>,
    live: Option<JoinHandle<anyhow::Result<()>>>,
    http: JoinHandle<anyhow::Result<()>>,
    /// Housekeeping, the bus's reporters and other helpers: stopped by the
    /// token, waited for last.
    helpers: Tasks,
}

/// Publishes `messages` (if any) to `topic` and counts what the bus took.
async fn publish_counted(
    bus: &dyn Bus,
    metrics: &Metrics,
    topic: &str,
    messages: Vec<streamforge_bus::Message>,
) -> Result<(), BusError> {
    if messages.is_empty() {
        return Ok(());
    }
    let (n, bytes) = (
        messages.len(),
        messages.iter().map(|m| m.payload.len()).sum::<usize>(),
    );
    let started = std::time::Instant::now();
    match bus.publish(topic, messages).await {
        Ok(()) => {
            metrics.bus_publish_took(topic, started.elapsed());
            metrics.bus_published(topic, n, bytes);
            Ok(())
        }
        Err(e) => {
            metrics.bus_publish_failed(topic);
            if let BusError::Undelivered { undelivered, .. } = &e {
                let left: usize = undelivered.iter().map(|m| m.payload.len()).sum();
                metrics.bus_published(topic, n - undelivered.len(), bytes - left);
            }
            Err(e)
        }
    }
}

/// Longest pause between publish retries while the bus is unavailable.
const MAX_PUBLISH_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes `messages` to `topic`, and while the bus is unavailable keeps
/// publishing what it has not acknowledged yet, with backoff, until all of
/// it is delivered. The `bus` readiness check fails meanwhile. Gives up only
/// at shutdown, or on an error that a retry cannot mend. Returns when the
/// outage began, if there was one.
async fn publish_retrying(
    bus: &dyn Bus,
    metrics: &Metrics,
    health: &Health,
    topic: &str,
    messages: Vec<streamforge_bus::Message>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<streamforge_model::Timestamp>> {
    let mut pending = messages;
    let mut outage: Option<streamforge_model::Timestamp> = None;
    let mut backoff =
        retry::Backoff::new(std::time::Duration::from_millis(100), MAX_PUBLISH_BACKOFF);
    loop {
        let attempt = streamforge_model::Timestamp::now();
        let n = pending.len();
        match publish_counted(bus, metrics, topic, pending).await {
            Ok(()) => {
                if let Some(since) = outage {
                    let secs = (streamforge_model::Timestamp::now().as_micros() - since.as_micros())
                        .max(0) as f64
                        / 1e6;
                    tracing::info!(
                        topic,
                        outage_seconds = secs,
                        "the bus took every held message again"
                    );
                    health.set("bus", true, "publishing");
                }
                return Ok(outage);
            }
            Err(BusError::Undelivered {
                undelivered,
                reason,
                of,
                ..
            }) => {
                if outage.is_none() {
                    tracing::warn!(topic, undelivered = undelivered.len(), of, error = %reason,
                        "the bus did not take messages; holding them and retrying (input waits meanwhile)");
                }
                outage.get_or_insert(attempt);
                health.set(
                    "bus",
                    false,
                    format!(
                        "{} messages to {topic} held, not delivered: {reason}",
                        undelivered.len()
                    ),
                );
                if shutdown.is_cancelled() {
                    anyhow::bail!(
                        "shutting down with {} messages not delivered to {topic}: {reason}",
                        undelivered.len()
                    );
                }
                pending = undelivered;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("publishing {n} messages to {topic}"));
            }
        }
        backoff.wait(shutdown).await;
    }
}

/// Store upkeep (partitions ahead, retention) every `every` until shutdown;
/// failures are logged and retried at the next round.
async fn housekeeping(
    store: Arc<dyn TickStore>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await; // opening the store already did the first round
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = store.housekeeping().await {
            tracing::warn!(error = %e, "store housekeeping failed; retrying next round");
        }
    }
}

/// Spawns a named stage; when it fails, the whole pipeline is told to stop.
fn spawn_stage<F>(
    name: &'static str,
    shutdown: &CancellationToken,
    unblock: Option<(Arc<dyn Bus>, String)>,
    stage: F,
) -> JoinHandle<anyhow::Result<()>>
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let result = stage.await.with_context(|| format!("{name} stage"));
        if let Err(e) = &result {
            tracing::error!(
                stage = name,
                error = format!("{e:#}"),
                "stage failed; shutting down"
            );
            shutdown.cancel();
            // A publisher waiting for room must not wait for a consumer that died.
            if let Some((bus, topic)) = unblock {
                bus.close_topic(&topic).await;
            }
        }
        result
    })
}

/// The live tail's consumer group: its own per process, never shared, so
/// each `serve` instance receives every tick (host name, pid and a random
/// part: containers all have pid 1, and host names can repeat).
fn live_group() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect();
    format!(
        "streamforge-live-{host}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// Opens the backends and starts the stages of `role`.
pub async fn start(
    config: &Config,
    role: Role,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    Pipeline::new(config, role).start(shutdown).await
}

/// A pipeline about to start: the configuration, the role, and what a
/// harness (replay, benchmarks) sets on top. Production sets nothing.
pub struct Pipeline<'a> {
    config: &'a Config,
    role: Role,
    providers: Option<Vec<Box<dyn streamforge_providers::Provider>>>,
    on_stored: Option<StoredHook>,
}

impl<'a> Pipeline<'a> {
    pub fn new(config: &'a Config, role: Role) -> Self {
        Pipeline {
            config,
            role,
            providers: None,
            on_stored: None,
        }
    }

    /// These providers instead of the configured ones (`replay`). When they
    /// all return, the pipeline drains and stops.
    pub fn with_providers(
        mut self,
        providers: Vec<Box<dyn streamforge_providers::Provider>>,
    ) -> Self {
        self.providers = Some(providers);
        self
    }

    /// Calls `hook` after each batch the store committed.
    pub fn on_stored(mut self, hook: StoredHook) -> Self {
        self.on_stored = Some(hook);
        self
    }

    /// Opens the backends and starts the stages.
    pub async fn start(self, shutdown: CancellationToken) -> anyhow::Result<Running> {
        let Pipeline {
            config,
            role,
            providers,
            on_stored,
        } = self;
        config.validate().context("invalid configuration")?;
        let helpers = Tasks::new(shutdown.clone());
        let b = Backends::open(config, role, &helpers).await?;

        // Consumers first, so nothing published is missed.
        let persist_consumer = if role.persists() {
            Some(
                b.bus
                    .consumer(
                        &config.ingest.topic,
                        ConsumerOptions {
                            group: config.persist.group.clone(),
                            start: StartFrom::Earliest,
                            durable: true,
                        },
                    )
                    .await
                    .context("joining the persist consumer group")?,
            )
        } else {
            None
        };
        let live_consumer = if role.serves() {
            Some(
                b.bus
                    .consumer(
                        &config.ingest.topic,
                        ConsumerOptions {
                            // Unique per instance: replicas of `serve` (every
                            // container is pid 1) must each get every partition.
                            group: live_group(),
                            start: StartFrom::Latest,
                            durable: false,
                        },
                    )
                    .await
                    .context("creating the live-stream consumer")?,
            )
        } else {
            None
        };

        let tls = config
            .http
            .tls
            .as_ref()
            .map(streamforge_api::tls::Certificates::load)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let listener = tokio::net::TcpListener::bind(config.http.addr)
            .await
            .with_context(|| format!("binding http.addr {}", config.http.addr))?;
        let http_addr = listener.local_addr()?;

        let (provider_tasks, ingest) = if role.ingests() {
            let providers = match providers {
                Some(p) => p,
                None => {
                    let mut settings = config.provider_settings();
                    let read = match &b.stores {
                        Some((store, _)) => Some(store.clone()),
                        None => store_to_resume_from(config).await,
                    };
                    if let Some(store) = read {
                        let names = running_providers(&settings);
                        settings.resume = unhealed_gaps(store.as_ref(), &names).await;
                        settings.last_trades = last_trades(store.as_ref(), &settings).await;
                        settings.stored_near_gaps = stored_near_gaps(
                            store.as_ref(),
                            &settings.resume,
                            &settings.last_trades,
                        )
                        .await;
                        settings.fill_history = store.symbols().await.is_ok_and(|s| s.is_empty());
                    }
                    build_providers(&settings, b.rules, &b.metrics, &b.health)
                        .context("configuring providers")?
                }
            };
            let (tasks, ingest) = wire_ingest(config, &b, providers, &shutdown);
            (tasks, Some(ingest))
        } else {
            (Vec::new(), None)
        };
        let persist = persist_consumer
            .zip(b.stores.clone())
            .map(|(consumer, (store, cache))| {
                helpers.spawn_draining(
                    "store housekeeping",
                    housekeeping(
                        store.clone(),
                        config.postgres.housekeeping_every,
                        shutdown.clone(),
                    ),
                );
                wire_persist(config, &b, store, cache, consumer, on_stored, &shutdown)
            });
        let hub = LiveHub::default();
        let live = live_consumer
            .zip(b.stores.clone())
            .map(|(consumer, (store, _))| {
                spawn_stage(
                    "live",
                    &shutdown,
                    None,
                    live::run(
                        consumer,
                        hub.clone(),
                        store,
                        b.rules,
                        b.metrics.clone(),
                        shutdown.clone(),
                    ),
                )
            });
        let router = wire_router(config, role, &b, hub, &shutdown);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (token, server, m) = (shutdown.clone(), config.http.clone(), b.metrics.clone());
        let http = spawn_stage("http", &shutdown, None, async move {
            streamforge_api::server::serve(listener, router, server, tls, m, token).await;
            Ok(())
        });
        tracing::info!(
            url = %format!("{scheme}://{http_addr}"),
            bus = %config.bus,
            role = role.name(),
            store = %if role.needs_store() { b.store_shown.as_str() } else { "-" },
            cache = %streamforge_store::redact_url(&config.cache),
            "streamforge is running"
        );
        Ok(Running {
            http_addr,
            metrics: b.metrics,
            health: b.health,
            store: b.stores.map(|(store, _)| store),
            shutdown,
            bus: b.bus,
            topic: config.ingest.topic.clone(),
            drain_timeout: config.shutdown.timeout,
            providers: provider_tasks,
            ingest,
            persist,
            live,
            http,
            helpers,
        })
    }
}

/// How long an `ingest` role waits for the store it resumes healing from.
const RESUME_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The store an `ingest` role (which writes no store) reads the last run's
/// unhealed gaps and last trades from: the configured PostgreSQL (a reader
/// role is enough), when it answers within [`RESUME_STORE_TIMEOUT`]. An
/// embedded store belongs to the process that persists; without a store
/// ingest starts with nothing to resume, and says so.
async fn store_to_resume_from(config: &Config) -> Option<Arc<dyn TickStore>> {
    let venues = running_providers(&config.provider_settings())
        .iter()
        .any(|n| n != "synthetic");
    if !venues {
        return None;
    }
    let url = config.store_url();
    let shown = streamforge_store::redact_url(&url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        tracing::warn!(
            store = %shown,
            "this ingest role reads no store: gaps an earlier run left unhealed are not resumed \
             here (set `store` to the PostgreSQL persist writes; a reader role is enough)"
        );
        return None;
    }
    let options = StoreOptions {
        postgres: config.postgres.clone(),
    };
    match tokio::time::timeout(
        RESUME_STORE_TIMEOUT,
        streamforge_store::open_store_with(&url, &options),
    )
    .await
    {
        Ok(Ok(store)) => Some(store),
        Ok(Err(e)) => {
            tracing::warn!(store = %shown, error = %e, "could not read the store: gaps an earlier run left unhealed are not resumed");
            None
        }
        Err(_) => {
            tracing::warn!(store = %shown, timeout = ?RESUME_STORE_TIMEOUT, "the store did not answer: gaps an earlier run left unhealed are not resumed");
            None
        }
    }
}

/// The providers that run: those named, else Finnhub when it has a token,
/// else the synthetic market (as `build_providers` chooses).
fn running_providers(settings: &streamforge_providers::ProviderSettings) -> Vec<String> {
    if !settings.names.is_empty() {
        return settings.names.clone();
    }
    let default = if settings.finnhub.enabled() {
        streamforge_providers::finnhub::ID
    } else {
        "synthetic"
    };
    vec![default.to_string()]
}

/// Most gaps of an earlier run a venue goes on healing at start.
const MAX_RESUMED_GAPS: usize = 10_000;

/// The gaps the venues among `providers` left `open` or `healing` in the
/// store. A store that cannot answer only delays healing: it is logged.
async fn unhealed_gaps(store: &dyn TickStore, providers: &[String]) -> Vec<streamforge_model::Gap> {
    let mut out = Vec::new();
    for venue in [
        streamforge_providers::binance::ID,
        streamforge_providers::coinbase::ID,
        streamforge_providers::finnhub::ID,
        streamforge_providers::synthetic::ID,
    ] {
        if !providers.iter().any(|p| p == venue) {
            continue;
        }
        match store.unhealed_gaps(venue, MAX_RESUMED_GAPS).await {
            Ok(gaps) => {
                if !gaps.is_empty() {
                    tracing::info!(
                        provider = venue,
                        gaps = gaps.len(),
                        "gaps of the last run go on healing"
                    );
                }
                out.extend(gaps);
            }
            Err(e) => {
                tracing::warn!(provider = venue, error = %e, "reading the gaps of the last run failed; they heal on a later start")
            }
        }
    }
    out
}

/// The newest stored trade of every symbol of the providers that heal
/// (the venues, by their symbols' prefix; Finnhub and the synthetic
/// market, by their symbols), when that provider stored it. A store that cannot answer only loses the gap of a
/// crash: it is logged.
async fn last_trades(
    store: &dyn TickStore,
    settings: &streamforge_providers::ProviderSettings,
) -> Vec<streamforge_model::Tick> {
    let providers = running_providers(settings);
    let runs = |id: &str| providers.iter().any(|p| p == id);
    let prefixes: Vec<(&str, &str)> = [
        (streamforge_providers::binance::ID, "BINANCE:"),
        (streamforge_providers::coinbase::ID, "COINBASE:"),
    ]
    .into_iter()
    .filter(|(id, _)| runs(id))
    .collect();
    let finnhub = runs(streamforge_providers::finnhub::ID);
    let synthetic = runs(streamforge_providers::synthetic::ID);
    if prefixes.is_empty() && !finnhub && !synthetic {
        return Vec::new();
    }
    let mut wanted: Vec<streamforge_model::Symbol> = Vec::new();
    if synthetic {
        wanted.extend(
            settings
                .synthetic
                .symbols
                .iter()
                .filter_map(|s| streamforge_model::Symbol::parse(s).ok()),
        );
    }
    if finnhub {
        let symbols = if settings.finnhub.symbols.is_empty() {
            &settings.synthetic.symbols
        } else {
            &settings.finnhub.symbols
        };
        wanted.extend(
            symbols
                .iter()
                .filter_map(|s| streamforge_model::Symbol::parse(s).ok()),
        );
    }
    if !prefixes.is_empty() {
        match store.symbols().await {
            Ok(s) => wanted.extend(
                s.into_iter()
                    .map(|i| i.symbol)
                    .filter(|s| prefixes.iter().any(|(_, p)| s.as_str().starts_with(p))),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "reading the stored symbols failed: a crash's downtime is not recorded");
            }
        }
    }
    wanted.sort();
    wanted.dedup();
    let mut out = Vec::new();
    for symbol in &wanted {
        match store.latest(symbol).await {
            Ok(Some(t)) => {
                let own = |id: &str| t.src_id() == id;
                let venue = prefixes
                    .iter()
                    .any(|(id, p)| symbol.as_str().starts_with(p) && own(id));
                if venue
                    || (finnhub && own(streamforge_providers::finnhub::ID))
                    || (synthetic && own(streamforge_providers::synthetic::ID))
                {
                    out.push(t);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(symbol = %symbol, error = %e, "reading the newest stored trade failed")
            }
        }
    }
    out
}

/// Most stored trades read around one resumed Finnhub gap.
const MAX_NEAR_GAP: usize = 100_000;

/// The stored Finnhub trades a window healed again must leave out: those
/// within [`RESUME_SLACK_MICROS`] of each resumed gap, and those at each
/// symbol's newest stored millisecond. A store that cannot answer is
/// logged (those trades may then be sent again; the store keeps one row).
async fn stored_near_gaps(
    store: &dyn TickStore,
    gaps: &[streamforge_model::Gap],
    last_trades: &[streamforge_model::Tick],
) -> Vec<streamforge_model::Tick> {
    use streamforge_providers::finnhub::{client::RESUME_SLACK_MICROS, ID};
    let ranges = gaps
        .iter()
        .filter(|g| g.provider == ID)
        .map(|g| {
            (
                g.symbol.clone(),
                g.from.saturating_sub_micros(RESUME_SLACK_MICROS),
                g.to.saturating_add_micros(RESUME_SLACK_MICROS),
            )
        })
        .chain(last_trades.iter().filter(|t| t.src_id() == ID).map(|t| {
            (
                t.symbol().clone(),
                t.ts(),
                t.ts().saturating_add_micros(1_000),
            )
        }));
    let mut out = Vec::new();
    for (symbol, from, to) in ranges {
        let query = streamforge_store::TickQuery {
            symbol,
            from,
            to,
            limit: MAX_NEAR_GAP,
            order: streamforge_store::Order::Asc,
        };
        match store.ticks(query).await {
            Ok(ticks) => out.extend(ticks.into_iter().filter(|t| t.src_id() == ID)),
            Err(e) => {
                tracing::warn!(error = %e, "reading the trades around a gap of the last run failed")
            }
        }
    }
    out
}

/// What the stages share: the backends a role needs, and the telemetry.
struct Backends {
    metrics: Metrics,
    health: Health,
    rules: streamforge_model::TickRules,
    bus: Arc<dyn Bus>,
    /// The store and cache, for roles that have them.
    stores: Option<(Arc<dyn TickStore>, Arc<dyn Cache>)>,
    /// The store URL with its password hidden.
    store_shown: String,
}

impl Backends {
    async fn open(config: &Config, role: Role, tasks: &Tasks) -> anyhow::Result<Backends> {
        let metrics = Metrics::new();
        let health = Health::new();
        let store_url = config.store_url();
        let store_shown = streamforge_store::redact_url(&store_url);
        let stores = if role.needs_store() {
            let store_options = StoreOptions {
                postgres: config.postgres.clone(),
            };
            let store: Arc<dyn TickStore> =
                streamforge_store::open_store_with(&store_url, &store_options)
                    .await
                    .with_context(|| format!("opening the store {store_shown}"))?;
            health.set("store", true, store.kind());
            let cache: Arc<dyn Cache> = streamforge_store::open_cache(&config.cache)
                .await
                .with_context(|| {
                    format!(
                        "opening the cache {}",
                        streamforge_store::redact_url(&config.cache)
                    )
                })?;
            Some((store, cache))
        } else {
            None
        };
        let bus_options = streamforge_bus::BusOptions {
            metrics: Some(metrics.clone()),
            health: Some(health.clone()),
            tasks: Some(tasks.clone()),
            ..config.bus_options()
        };
        let bus = streamforge_bus::connect(&config.bus, &bus_options)
            .await
            .with_context(|| format!("connecting to the bus {}", config.bus))?;
        Ok(Backends {
            rules: config.tick_rules(),
            metrics,
            health,
            bus,
            stores,
            store_shown,
        })
    }
}

/// The providers, each its own task, and the ingest stage they feed.
#[allow(clippy::type_complexity)]
fn wire_ingest(
    config: &Config,
    b: &Backends,
    providers: Vec<Box<dyn streamforge_providers::Provider>>,
    shutdown: &CancellationToken,
) -> (
    Vec<JoinHandle<anyhow::Result<()>>>,
    JoinHandle<anyhow::Result<()>>,
) {
    let (frames_tx, frames_rx) = tokio::sync::mpsc::channel(config.ingest.channel_frames);
    let mut tasks = Vec::new();
    for p in providers {
        let name = p.id();
        let silence = p.max_silence().unwrap_or(config.ingest.max_feed_silence);
        b.health.expect_fresh(&feed_check(name), silence);
        let (tx, token) = (frames_tx.clone(), shutdown.clone());
        tasks.push(spawn_stage("provider", shutdown, None, async move {
            p.run(tx, token)
                .await
                .with_context(|| format!("provider {name}"))
        }));
    }
    drop(frames_tx);
    let ingest = spawn_stage(
        "ingest",
        shutdown,
        None,
        ingest::Ingest {
            bus: b.bus.clone(),
            config: config.ingest.clone(),
            metrics: b.metrics.clone(),
            health: b.health.clone(),
            shutdown: shutdown.clone(),
        }
        .run(frames_rx),
    );
    (tasks, ingest)
}

/// The persist stage over its consumer.
fn wire_persist(
    config: &Config,
    b: &Backends,
    store: Arc<dyn TickStore>,
    cache: Arc<dyn Cache>,
    consumer: Box<dyn streamforge_bus::Consumer>,
    on_stored: Option<StoredHook>,
    shutdown: &CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    spawn_stage(
        "persist",
        shutdown,
        // A publisher waiting for room must not wait for a consumer that died.
        Some((b.bus.clone(), config.ingest.topic.clone())),
        persist::Persist {
            bus: b.bus.clone(),
            store,
            cache,
            dlq_topic: config.ingest.dlq_topic.clone(),
            config: config.persist.clone(),
            rules: b.rules,
            metrics: b.metrics.clone(),
            health: b.health.clone(),
            shutdown: shutdown.clone(),
            on_stored,
        }
        .run(consumer),
    )
}

/// The HTTP routes of `role`: the whole API where it serves, the
/// operations endpoints otherwise.
fn wire_router(
    config: &Config,
    role: Role,
    b: &Backends,
    hub: LiveHub,
    shutdown: &CancellationToken,
) -> axum::Router {
    let router = match (&b.stores, role.serves()) {
        (Some((store, cache)), true) => streamforge_api::router(AppState {
            store: store.clone(),
            cache: cache.clone(),
            live: hub,
            metrics: b.metrics.clone(),
            health: b.health.clone(),
            limits: config.api.clone(),
            ws: streamforge_api::routes::ws::WsOptions {
                max_subscriptions: config.api.ws_max_subscriptions,
                ..Default::default()
            },
            shutdown: shutdown.clone(),
        }),
        _ => streamforge_api::ops_router(b.metrics.clone(), b.health.clone()),
    };
    let router = if config.http.pprof {
        router.merge(streamforge_api::routes::profile::router())
    } else {
        router
    };
    // Every route, the profiler's too, behind the keys.
    let anonymous_rate = streamforge_api::auth::Rate::new(
        Some(config.api.anonymous_rate_per_second),
        Some(config.api.anonymous_burst).filter(|b| *b > 0),
    );
    let router = streamforge_api::auth::Auth::new(
        &config.api.keys,
        config.api.anonymous,
        anonymous_rate,
        b.metrics.clone(),
    )
    .layer(router);
    // Outside the keys: a browser's preflight carries none.
    streamforge_api::origins::Origins::new(
        &config.api.allowed_origins,
        config.http.addr.ip().is_loopback(),
        b.metrics.clone(),
    )
    .layer(router)
}

/// Waits for a stage (at most `deadline`) and records how it ended.
async fn join(
    failures: &mut Vec<anyhow::Error>,
    name: &str,
    task: JoinHandle<anyhow::Result<()>>,
    deadline: Option<std::time::Duration>,
) {
    let result = match deadline {
        None => task.await,
        Some(d) => match tokio::time::timeout(d, task).await {
            Ok(r) => r,
            Err(_) => {
                failures.push(anyhow::anyhow!(
                    "{name} did not finish within shutdown.timeout ({d:?}); what it held was not stored"
                ));
                return;
            }
        },
    };
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push(e),
        Err(e) => failures.push(anyhow::anyhow!("{name} task panicked or was aborted: {e}")),
    }
}

impl Running {
    /// The bus the stages talk through (tests publish to it directly).
    pub fn bus(&self) -> Arc<dyn Bus> {
        self.bus.clone()
    }

    /// The token that stops the pipeline.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for shutdown (or a failure) and drains every stage in data
    /// order. `Ok` means everything ingested was stored and committed.
    pub async fn wait(self) -> anyhow::Result<()> {
        let mut failures: Vec<anyhow::Error> = Vec::new();
        for p in self.providers {
            join(&mut failures, "provider", p, None).await;
        }
        match self.ingest {
            // Every provider returned, so ingest sees its channel close and ends.
            Some(ingest) => {
                join(&mut failures, "ingest", ingest, None).await;
                // On a broker, everything acknowledged must really be out.
                if let Err(e) = self.bus.flush(self.drain_timeout).await {
                    failures.push(anyhow::anyhow!("flushing the producer at shutdown: {e}"));
                }
            }
            None => self.shutdown.cancelled().await,
        }
        // If the input ended on its own (not a signal), stop the rest too.
        self.shutdown.cancel();
        self.bus.close_topic(&self.topic).await;
        tracing::info!("ingest drained; waiting for persist to store the rest");
        let deadline = Some(self.drain_timeout);
        if let Some(persist) = self.persist {
            join(&mut failures, "persist", persist, deadline).await;
        }
        if let Some(live) = self.live {
            join(&mut failures, "live", live, deadline).await;
        }
        join(&mut failures, "http", self.http, deadline).await;
        if tokio::time::timeout(self.drain_timeout, self.helpers.wait())
            .await
            .is_err()
        {
            failures.push(anyhow::anyhow!(
                "background tasks ({} left: housekeeping, bus reporters) did not stop within shutdown.timeout",
                self.helpers.len()
            ));
        }
        match failures.len() {
            0 => {
                tracing::info!("pipeline stopped cleanly");
                Ok(())
            }
            1 => Err(failures.remove(0)),
            n => {
                let all: Vec<String> = failures.iter().map(|e| format!("{e:#}")).collect();
                Err(anyhow::anyhow!("{n} stages failed: {}", all.join("; ")))
            }
        }
    }
}
