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

pub mod dead_letter;
mod ingest;
mod live;
mod persist;
mod probe;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use streamforge_api::{AppState, LiveHub};
use streamforge_bus::{Bus, BusError, ConsumerOptions, StartFrom};
use streamforge_providers::{build_providers, ProvidersConfig, SyntheticConfig};
use streamforge_store::{Cache, StoreOptions, TickStore};
use streamforge_telemetry::{Health, Metrics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use ingest::{feed_check, headers};
pub use probe::{LatencyProbe, ProbeReport};

use crate::config::Config;

/// Which stages a process runs. Every role serves `/healthz`, `/readyz`
/// and `/metrics` on its HTTP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Providers and the ingest stage.
    pub ingest: bool,
    /// The persist stage.
    pub persist: bool,
    /// The query API and live streams (`serve`).
    pub api: bool,
}

impl Roles {
    /// `streamforge run`: everything in one process.
    pub const ALL: Roles = Roles {
        ingest: true,
        persist: true,
        api: true,
    };
    /// `streamforge ingest`: providers to the bus.
    pub const INGEST: Roles = Roles {
        ingest: true,
        persist: false,
        api: false,
    };
    /// `streamforge persist`: the bus to the store and cache.
    pub const PERSIST: Roles = Roles {
        ingest: false,
        persist: true,
        api: false,
    };
    /// `streamforge serve`: the API over the store, cache and bus.
    pub const SERVE: Roles = Roles {
        ingest: false,
        persist: false,
        api: true,
    };

    /// The role's name in traces (`service.name` is `streamforge-<name>`).
    pub fn name(self) -> &'static str {
        match (self.ingest, self.persist, self.api) {
            (true, true, true) => "run",
            (true, false, false) => "ingest",
            (false, true, false) => "persist",
            (false, false, true) => "serve",
            _ => "custom",
        }
    }

    fn needs_store(self) -> bool {
        self.persist || self.api
    }
}

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
    let mut backoff = std::time::Duration::from_millis(100);
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
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => {}
        }
        backoff = (backoff * 2).min(MAX_PUBLISH_BACKOFF);
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

/// Opens the backends and starts the stages of `roles`.
pub async fn start(
    config: &Config,
    roles: Roles,
    shutdown: CancellationToken,
    probe: Option<Arc<LatencyProbe>>,
) -> anyhow::Result<Running> {
    start_with(config, roles, shutdown, probe, None).await
}

/// Like [`start`], with these providers instead of the configured ones
/// (`replay`). When they all return, the pipeline drains and stops.
pub async fn start_with(
    config: &Config,
    roles: Roles,
    shutdown: CancellationToken,
    probe: Option<Arc<LatencyProbe>>,
    providers: Option<Vec<Box<dyn streamforge_providers::Provider>>>,
) -> anyhow::Result<Running> {
    config.validate().context("invalid configuration")?;
    let metrics = Metrics::new();
    let health = Health::new();
    let rules = config.tick_rules();

    let store_url = config.store_url();
    let store_shown = streamforge_store::redact_url(&store_url);
    let backends = if roles.needs_store() {
        let store_options = StoreOptions {
            postgres: config.postgres.schema_options(),
            postgres_timeouts: config.postgres.timeouts(),
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
        ..config.bus_options()
    };
    let bus = streamforge_bus::connect(&config.bus, &bus_options)
        .await
        .with_context(|| format!("connecting to the bus {}", config.bus))?;
    let topic = config.ingest.topic.clone();

    // Consumers first, so nothing published is missed.
    let persist_consumer = if roles.persist {
        let c = bus
            .consumer(
                &topic,
                ConsumerOptions {
                    group: config.persist.group.clone(),
                    start: StartFrom::Earliest,
                    durable: true,
                },
            )
            .await
            .context("joining the persist consumer group")?;
        Some(c)
    } else {
        None
    };
    let live_consumer = if roles.api {
        let c = bus
            .consumer(
                &topic,
                ConsumerOptions {
                    // Unique per instance: replicas of `serve` (every
                    // container is pid 1) must each get every partition.
                    group: live_group(),
                    start: StartFrom::Latest,
                    durable: false,
                },
            )
            .await
            .context("creating the live-stream consumer")?;
        Some(c)
    } else {
        None
    };

    let listener = tokio::net::TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("binding http.addr {}", config.http.addr))?;
    let http_addr = listener.local_addr()?;

    let providers = if !roles.ingest {
        Vec::new()
    } else if let Some(p) = providers {
        p
    } else {
        build_providers(
            &ProvidersConfig {
                synthetic: SyntheticConfig {
                    symbols: config.synthetic.symbols.clone(),
                    rate: config.synthetic.rate,
                    seed: config.synthetic.seed,
                    slice: config.synthetic.slice,
                },
                finnhub: config.finnhub(),
            },
            rules,
            &metrics,
            &health,
        )
        .context("configuring providers")?
    };

    let hub = LiveHub::default();
    let unblock = Some((bus.clone(), topic.clone()));

    let (frames_tx, frames_rx) = tokio::sync::mpsc::channel(config.ingest.channel_frames);
    let mut provider_tasks = Vec::new();
    for p in providers {
        let name = p.id();
        let silence = p.max_silence().unwrap_or(config.ingest.max_feed_silence);
        health.expect_fresh(&feed_check(name), silence);
        let (tx, token) = (frames_tx.clone(), shutdown.clone());
        provider_tasks.push(spawn_stage("provider", &shutdown, None, async move {
            p.run(tx, token)
                .await
                .with_context(|| format!("provider {name}"))
        }));
    }
    drop(frames_tx);

    let ingest = roles.ingest.then(|| {
        spawn_stage(
            "ingest",
            &shutdown,
            None,
            ingest::Ingest {
                bus: bus.clone(),
                topic: topic.clone(),
                dlq_topic: config.ingest.dlq_topic.clone(),
                metrics: metrics.clone(),
                health: health.clone(),
                max_symbols: config.ingest.max_symbols,
                shutdown: shutdown.clone(),
            }
            .run(frames_rx),
        )
    });
    let persist = persist_consumer
        .zip(backends.clone())
        .map(|(consumer, (store, cache))| {
            spawn_stage(
                "persist",
                &shutdown,
                unblock.clone(),
                persist::Persist {
                    bus: bus.clone(),
                    store,
                    cache,
                    dlq_topic: config.ingest.dlq_topic.clone(),
                    batch_size: config.persist.batch_size,
                    batch_timeout: config.persist.batch_timeout,
                    retry_backoff: config.persist.retry_backoff,
                    rules,
                    metrics: metrics.clone(),
                    health: health.clone(),
                    shutdown: shutdown.clone(),
                    probe,
                }
                .run(consumer),
            )
        });
    if let (true, Some((store, _))) = (roles.persist, &backends) {
        tokio::spawn(housekeeping(
            store.clone(),
            config.postgres.housekeeping_every,
            shutdown.clone(),
        ));
    }
    let live = live_consumer
        .zip(backends.clone())
        .map(|(consumer, (store, _))| {
            spawn_stage(
                "live",
                &shutdown,
                None,
                live::run(
                    consumer,
                    hub.clone(),
                    store,
                    rules,
                    metrics.clone(),
                    shutdown.clone(),
                ),
            )
        });

    let router = match (&backends, roles.api) {
        (Some((store, cache)), true) => streamforge_api::router(AppState {
            store: store.clone(),
            cache: cache.clone(),
            live: hub,
            metrics: metrics.clone(),
            health: health.clone(),
            limits: config.api.limits(),
            ws: streamforge_api::routes::ws::WsOptions {
                max_subscriptions: config.api.ws_max_subscriptions,
                ..Default::default()
            },
            shutdown: shutdown.clone(),
        }),
        _ => streamforge_api::ops_router(metrics.clone(), health.clone()),
    };
    let router = if config.http.pprof {
        router.merge(streamforge_api::routes::profile::router())
    } else {
        router
    };
    let (token, server, m) = (
        shutdown.clone(),
        config.http.server_options(),
        metrics.clone(),
    );
    let http = spawn_stage("http", &shutdown, None, async move {
        streamforge_api::server::serve(listener, router, server, m, token).await;
        Ok(())
    });

    tracing::info!(
        url = %format!("http://{http_addr}"),
        bus = %config.bus,
        roles = ?roles,
        store = %if roles.needs_store() { store_shown.as_str() } else { "-" },
        cache = %streamforge_store::redact_url(&config.cache),
        "streamforge is running"
    );
    Ok(Running {
        http_addr,
        metrics,
        health,
        store: backends.map(|(store, _)| store),
        shutdown,
        bus,
        topic,
        drain_timeout: config.shutdown.timeout,
        providers: provider_tasks,
        ingest,
        persist,
        live,
        http,
    })
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
