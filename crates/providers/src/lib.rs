//! Market data providers: where ticks enter StreamForge.
//!
//! A [`Provider`] connects to a source, turns what it receives into validated
//! [`Tick`]s, and sends them as [`ProviderFrame`]s into a bounded channel:
//! when the pipeline is slow, `send` waits and the provider slows down.
//! Input that cannot become a tick is never dropped silently: it travels in
//! the same frame as a [`Rejected`] with its reason, bound for the
//! dead-letter topic. Providers know nothing of the bus or the store.
//!
//! # Layout
//! - [`error`] — [`ProviderError`].
//! - [`finnhub`] — Finnhub's trade WebSocket, with reconnects, a silence
//!   watchdog and gap records.
//! - [`binance`], [`coinbase`] — the keyless venues' trade streams, each
//!   trade with its venue id; [`venue`] is what they share (connections,
//!   renewal, trade-id gaps, decimal strings, the simulators' core).
//! - [`recording`] — recordings of raw frames, and their replay.
//! - [`synthetic`] — a simulated market (geometric Brownian motion prices,
//!   Poisson trade arrivals) for any list of symbols.
//! - [`build_providers`] — the registry, from configuration to providers.

pub mod binance;
pub mod coinbase;
pub mod error;
pub mod finnhub;
pub mod recording;
pub mod replay;
pub mod synthetic;
pub mod venue;

use async_trait::async_trait;
use streamforge_model::{Gap, Symbol, Tick, TickRules, Timestamp};
use streamforge_telemetry::{Health, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::ProviderError;
pub use finnhub::{FinnhubConfig, FinnhubProvider};
pub use streamforge_model::settings::Secret;
pub use synthetic::{SyntheticConfig, SyntheticProvider};
pub use venue::{VenueConfig, VenueProvider};

/// What a provider received in one frame (one message from its source).
#[derive(Debug, Default)]
pub struct ProviderFrame {
    /// Id of the provider that produced the frame, e.g. `synthetic`.
    pub provider: &'static str,
    pub ticks: Vec<Tick>,
    pub rejects: Vec<Rejected>,
    /// Spans in which the provider may have missed trades (after a
    /// reconnect), one per symbol.
    pub gaps: Vec<Gap>,
    /// Symbol and trade time of the frame's ticks the provider had sent
    /// already (a venue trade id seen before). They stay in `ticks` (the
    /// store keeps each id once, so a wrong guess loses nothing); the
    /// completeness ledger counts them as duplicates.
    pub duplicates: Vec<(Symbol, Timestamp)>,
}

/// Input that could not become a tick.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The raw input (a provider frame, or the trade's fields as JSON).
    pub raw: Vec<u8>,
    /// Short fixed reason code (metric label and DLQ header).
    pub reason: &'static str,
    /// Human-readable error, naming the field.
    pub error: String,
    /// The trade's symbol and time, when they could be read: the
    /// completeness ledger counts the rejection in that symbol's minute.
    pub trade: Option<(Symbol, Timestamp)>,
}

impl Rejected {
    /// Input whose symbol and time are unknown (a frame that does not read).
    pub fn new(raw: Vec<u8>, reason: &'static str, error: String) -> Rejected {
        Rejected {
            raw,
            reason,
            error,
            trade: None,
        }
    }

    /// The same, known to be a trade of `symbol` at `ts`.
    pub fn of(mut self, symbol: Symbol, ts: Timestamp) -> Rejected {
        self.trade = Some((symbol, ts));
        self
    }
}

/// A source of ticks.
#[async_trait]
pub trait Provider: Send {
    /// Provider id, also each tick's `src_id`.
    fn id(&self) -> &'static str;

    /// How long the provider may be silent before `/readyz` calls its feed
    /// stale, when it knows better than the pipeline's default (a feed
    /// with keep-alives).
    fn max_silence(&self) -> Option<std::time::Duration> {
        None
    }

    /// Produces frames into `out` until `cancel` fires or the source ends.
    /// Returning `Err` is fatal for the pipeline; transient failures are
    /// retried inside.
    async fn run(
        self: Box<Self>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError>;
}

/// Provider ids [`build_providers`] knows.
pub const PROVIDERS: &[&str] = &["synthetic", "finnhub", "binance", "coinbase"];

/// Every provider's settings: what [`build_providers`] chooses from.
#[derive(Clone, Debug, Default)]
pub struct ProviderSettings {
    /// The providers to run, by id; empty: Finnhub when it has a token,
    /// the synthetic market otherwise.
    pub names: Vec<String>,
    pub synthetic: SyntheticConfig,
    pub finnhub: FinnhubConfig,
    pub binance: VenueConfig,
    pub coinbase: VenueConfig,
    /// Gaps of an earlier run still `open` or `healing` (from the store):
    /// each venue (and Finnhub) goes on healing its own.
    pub resume: Vec<Gap>,
    /// The newest stored trade of each venue symbol, and of each symbol of
    /// the synthetic market (from the store): for a venue, the time since,
    /// when no gap of the last run covers it (the process did not stop
    /// cleanly), is a `downtime` gap; the synthetic market makes its past
    /// over the time since.
    pub last_trades: Vec<Tick>,
    /// The store holds no trade yet: the synthetic market makes its
    /// `history` first.
    pub fill_history: bool,
    /// Stored trades around the ends of Finnhub's resumed gaps and at its
    /// symbols' newest stored millisecond: a window healed again leaves
    /// them out (Finnhub numbers no trade).
    pub stored_near_gaps: Vec<Tick>,
}

/// Checks a list of provider ids: known, each once.
pub fn check_names(names: &[String]) -> Result<(), String> {
    for (i, n) in names.iter().enumerate() {
        if !PROVIDERS.contains(&n.as_str()) {
            return Err(format!(
                "unknown provider {n:?}; known: {}",
                PROVIDERS.join(", ")
            ));
        }
        if names[..i].contains(n) {
            return Err(format!("{n:?} is named twice"));
        }
    }
    Ok(())
}

/// Builds the configured providers. Without names: Finnhub when it has a
/// token (on its own symbols, or the synthetic market's when it names
/// none), the synthetic market otherwise. A venue whose section names no
/// symbols takes the synthetic market's (`--symbols`) that are its own.
pub fn build_providers(
    settings: &ProviderSettings,
    rules: TickRules,
    metrics: &Metrics,
    health: &Health,
) -> Result<Vec<Box<dyn Provider>>, ProviderError> {
    let config_error = |reason: String| ProviderError::Config {
        provider: "providers",
        reason,
    };
    check_names(&settings.names).map_err(config_error)?;
    let names: Vec<&str> = if settings.names.is_empty() {
        vec![if settings.finnhub.enabled() {
            finnhub::ID
        } else {
            "synthetic"
        }]
    } else {
        settings.names.iter().map(String::as_str).collect()
    };
    let fallback = &settings.synthetic.symbols;
    let mut out: Vec<Box<dyn Provider>> = Vec::new();
    for name in names {
        out.push(match name {
            finnhub::ID => Box::new(
                FinnhubProvider::new(
                    settings.finnhub.clone().or_symbols(fallback),
                    rules,
                    metrics.clone(),
                    health.clone(),
                )?
                .resuming(
                    settings
                        .resume
                        .iter()
                        .filter(|g| g.provider == finnhub::ID)
                        .cloned()
                        .collect(),
                    settings
                        .last_trades
                        .iter()
                        .filter(|t| t.src_id() == finnhub::ID)
                        .cloned()
                        .collect(),
                )
                .knowing_stored(&settings.stored_near_gaps),
            ),
            binance::ID => venue_provider::<binance::Binance>(
                &settings.binance,
                settings,
                rules,
                metrics,
                health,
            )?,
            coinbase::ID => venue_provider::<coinbase::Coinbase>(
                &settings.coinbase,
                settings,
                rules,
                metrics,
                health,
            )?,
            _ => Box::new(
                SyntheticProvider::new(settings.synthetic.clone(), rules)?
                    .filling_history(settings.fill_history)
                    .resuming(&settings.resume, &settings.last_trades, metrics),
            ),
        });
    }
    Ok(out)
}

/// The provider of venue `V` with its `section`.
fn venue_provider<V: venue::Venue>(
    section: &VenueConfig,
    settings: &ProviderSettings,
    rules: TickRules,
    metrics: &Metrics,
    health: &Health,
) -> Result<Box<dyn Provider>, ProviderError> {
    let config = venue_or_default::<V>(section, &settings.synthetic.symbols, settings.names.len());
    let resume = settings
        .resume
        .iter()
        .filter(|g| g.provider == V::ID)
        .cloned()
        .collect();
    let last_trades = settings
        .last_trades
        .iter()
        .filter(|t| t.src_id() == V::ID)
        .cloned()
        .collect();
    Ok(Box::new(
        VenueProvider::<V>::new(config, rules, metrics.clone(), health.clone())?
            .resuming(resume, last_trades),
    ))
}

/// A venue's section, on the `--symbols` list when it names none: with
/// one provider, every symbol of the list (bare ones are the venue's);
/// with several, those prefixed with the venue's name; when the list has
/// none of them (the synthetic market's default list, say), the venue's
/// own defaults.
fn venue_or_default<V: venue::Venue>(
    config: &VenueConfig,
    fallback: &[String],
    providers: usize,
) -> VenueConfig {
    if !config.symbols.is_empty() {
        return config.clone();
    }
    let prefix = format!("{}:", V::PREFIX);
    let own: Vec<String> = fallback
        .iter()
        .filter(|s| {
            s.to_ascii_uppercase().starts_with(&prefix) || (providers == 1 && !s.contains(':'))
        })
        .cloned()
        .collect();
    let defaults = fallback
        .iter()
        .map(String::as_str)
        .eq(synthetic::DEFAULT_SYMBOLS.iter().copied());
    if own.is_empty() || defaults {
        return config.clone();
    }
    config.clone().or_symbols(&own)
}

/// A provider's parser of its own raw frames: what its connection does
/// with each message, and what a replay of its recording does again.
pub trait FrameParse: Send {
    /// The frame's ticks with `ingested_at`, validated with `rules`
    /// against the clock `checked_at`; `None` for a frame that carries no
    /// trades (a ping, a notice).
    fn parse_frame(
        &mut self,
        frame: &[u8],
        rules: &TickRules,
        ingested_at: streamforge_model::Timestamp,
        checked_at: streamforge_model::Timestamp,
    ) -> Option<ProviderFrame>;
}

/// The frame parser of `provider`, for providers whose frames can be
/// recorded and replayed.
pub fn frame_parser(provider: &str) -> Option<Box<dyn FrameParse>> {
    match provider {
        finnhub::ID => Some(Box::new(finnhub::FrameParser::default())),
        binance::ID => Some(Box::new(venue::ReplayParser::<binance::Binance>::default())),
        coinbase::ID => Some(Box::new(
            venue::ReplayParser::<coinbase::Coinbase>::default(),
        )),
        _ => None,
    }
}

/// Name of a provider's freshness check in `/readyz`.
pub fn feed_check(provider: &str) -> String {
    format!("feed:{provider}")
}

/// Hands `frame` of `provider` to ingest; an error when ingest is gone.
pub(crate) async fn send_frame(
    out: &mpsc::Sender<ProviderFrame>,
    provider: &'static str,
    frame: ProviderFrame,
) -> Result<(), ProviderError> {
    out.send(frame)
        .await
        .map_err(|_| ProviderError::OutputClosed { provider })
}
