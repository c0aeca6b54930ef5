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
//! - [`synthetic`] — a simulated market (geometric Brownian motion prices,
//!   Poisson trade arrivals) for any list of symbols.
//! - [`build_providers`] — the registry, from configuration to providers.

pub mod error;
pub mod synthetic;

use async_trait::async_trait;
use streamforge_model::{Tick, TickRules};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::ProviderError;
pub use synthetic::{SyntheticConfig, SyntheticProvider};

/// What a provider received in one frame (one message from its source).
#[derive(Debug, Default)]
pub struct ProviderFrame {
    /// Id of the provider that produced the frame, e.g. `synthetic`.
    pub provider: &'static str,
    pub ticks: Vec<Tick>,
    pub rejects: Vec<Rejected>,
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

    /// Produces frames into `out` until `cancel` fires or the source ends.
    /// Returning `Err` is fatal for the pipeline; transient failures are
    /// retried inside.
    async fn run(
        self: Box<Self>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError>;
}

/// Which providers run, and their settings.
#[derive(Debug, Clone, Default)]
pub struct ProvidersConfig {
    pub synthetic: SyntheticConfig,
}

/// Provider ids [`build_providers`] knows.
pub const PROVIDERS: &[&str] = &["synthetic"];

/// Builds the configured providers.
pub fn build_providers(
    config: &ProvidersConfig,
    rules: TickRules,
) -> Result<Vec<Box<dyn Provider>>, ProviderError> {
    Ok(vec![Box::new(SyntheticProvider::new(
        config.synthetic.clone(),
        rules,
    )?)])
}
