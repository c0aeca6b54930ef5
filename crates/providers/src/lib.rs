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
//! - [`recording`] — recordings of raw frames, and their replay.
//! - [`synthetic`] — a simulated market (geometric Brownian motion prices,
//!   Poisson trade arrivals) for any list of symbols.
//! - [`build_providers`] — the registry, from configuration to providers.

pub mod error;
pub mod finnhub;
pub mod recording;
pub mod replay;
pub mod synthetic;

use async_trait::async_trait;
use streamforge_model::{Gap, Tick, TickRules};
use streamforge_telemetry::{Health, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::ProviderError;
pub use finnhub::{FinnhubConfig, FinnhubProvider};
pub use streamforge_model::settings::Secret;
pub use synthetic::{SyntheticConfig, SyntheticProvider};

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
pub const PROVIDERS: &[&str] = &["synthetic", "finnhub"];

/// Builds the configured providers: Finnhub when it has a token (on its
/// own symbols, or the synthetic market's when it names none), the
/// synthetic market otherwise.
pub fn build_providers(
    synthetic: &SyntheticConfig,
    finnhub: &FinnhubConfig,
    rules: TickRules,
    metrics: &Metrics,
    health: &Health,
) -> Result<Vec<Box<dyn Provider>>, ProviderError> {
    if finnhub.enabled() {
        return Ok(vec![Box::new(FinnhubProvider::new(
            finnhub.clone().or_symbols(&synthetic.symbols),
            rules,
            metrics.clone(),
            health.clone(),
        )?)]);
    }
    Ok(vec![Box::new(SyntheticProvider::new(
        synthetic.clone(),
        rules,
    )?)])
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
        _ => None,
    }
}

/// Name of a provider's freshness check in `/readyz`.
pub fn feed_check(provider: &str) -> String {
    format!("feed:{provider}")
}
