//! The synthetic provider: a simulated market on the wall clock.
//!
//! Every `slice` it draws the Poisson number of trades for the elapsed time
//! and sends them as one frame, like a feed that batches trades. With
//! `rate = 0` it generates as fast as the pipeline accepts (benchmarks).
//! When the pipeline pushes back, the market does not owe the trades it
//! could not send: after a stall, at most one second of trades is drawn.

mod market;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use streamforge_model::settings::{duration_text, Invalid};
use streamforge_model::{OccurrenceCounter, Symbol, Tick, TickRules, Timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use market::{Market, DEFAULT_SYMBOLS};

use crate::{Provider, ProviderError, ProviderFrame, Rejected};

const ID: &str = "synthetic";
/// Trades per frame when generating as fast as possible.
const MAX_RATE_FRAME: usize = 2_048;

/// Highest rate the synthetic market takes, in trades per second: far above
/// what one process ingests, low enough that one frame (a slice, at most
/// one second) is a bounded allocation.
pub const MAX_RATE: f64 = 10_000_000.0;
/// Longest stretch of simulated time drawn at once after a stall.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

/// Settings of the synthetic market: the `[synthetic]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Symbols to simulate (`--symbols`).
    pub symbols: Vec<String>,
    /// Total trades per second across all symbols (at most 1e7); 0 (or
    /// `--rate max`) = as fast as the pipeline takes them.
    pub rate: f64,
    /// Seed for a reproducible market (prices, sizes, arrivals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// How often a frame of trades is emitted.
    #[serde(with = "duration_text")]
    pub slice: Duration,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            symbols: DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect(),
            rate: 300.0,
            seed: None,
            slice: Duration::from_millis(10),
        }
    }
}

impl SyntheticConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.symbols.is_empty() {
            return Err(Invalid::new("symbols", "at least one symbol is needed"));
        }
        for s in &self.symbols {
            Symbol::parse(s).map_err(|e| Invalid::new("symbols", e.to_string()))?;
        }
        if !(self.rate.is_finite() && self.rate >= 0.0 && self.rate <= MAX_RATE) {
            return Err(Invalid::new(
                "rate",
                format!(
                    "must be a number from 0 to {MAX_RATE} (0 = as fast as possible), got {}",
                    self.rate
                ),
            ));
        }
        if self.slice.is_zero() {
            return Err(Invalid::new("slice", "must be longer than 0"));
        }
        Ok(())
    }
}

/// The synthetic provider.
#[derive(Debug)]
pub struct SyntheticProvider {
    config: SyntheticConfig,
    market: Market,
    rules: TickRules,
}

impl SyntheticProvider {
    pub fn new(config: SyntheticConfig, rules: TickRules) -> Result<Self, ProviderError> {
        let bad = |e: Invalid| ProviderError::Config {
            provider: ID,
            reason: e.to_string(),
        };
        config.validate().map_err(bad)?;
        let symbols = config
            .symbols
            .iter()
            .map(|s| Symbol::parse(s).map_err(|e| bad(Invalid::new("symbols", e.to_string()))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SyntheticProvider {
            market: Market::new(&symbols, config.seed, Arc::from(ID)),
            config,
            rules,
        })
    }

    /// Validates generated trades into a frame.
    fn frame(
        &self,
        inputs: &mut Vec<streamforge_model::TickInput>,
        now: Timestamp,
        counter: &mut OccurrenceCounter,
    ) -> ProviderFrame {
        let mut frame = ProviderFrame {
            provider: ID,
            ticks: Vec::with_capacity(inputs.len()),
            ..ProviderFrame::default()
        };
        for input in inputs.drain(..) {
            let (symbol, ts, price, size) =
                (input.symbol.clone(), input.ts, input.price, input.size);
            match self.rules.check(input, now) {
                Ok(t) => frame.ticks.push(t),
                Err(e) => frame.rejects.push(
                    Rejected::new(
                        format!(
                            r#"{{"symbol":"{symbol}","ts":"{ts}","price":{price},"size":{size}}}"#
                        )
                        .into_bytes(),
                        e.reason(),
                        e.to_string(),
                    )
                    .of(symbol, ts),
                ),
            }
        }
        Tick::number_identical(&mut frame.ticks, counter);
        frame
    }
}

#[async_trait]
impl Provider for SyntheticProvider {
    fn id(&self) -> &'static str {
        ID
    }

    async fn run(
        mut self: Box<Self>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        tracing::info!(
            symbols = self.config.symbols.len(),
            rate = self.config.rate,
            seed = ?self.config.seed,
            "synthetic market started"
        );
        let mut ticker = tokio::time::interval(self.config.slice);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut counter = OccurrenceCounter::default();
        let mut inputs = Vec::new();
        let mut last = Timestamp::now();
        let max_catch_up = MAX_CATCH_UP.as_micros() as i64;
        loop {
            if self.config.rate > 0.0 {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
            } else if cancel.is_cancelled() {
                break;
            }
            let now = Timestamp::now();
            let span = (now.as_micros() - last.as_micros()).clamp(0, max_catch_up);
            let from = now.saturating_sub_micros(span);
            let count = if self.config.rate > 0.0 {
                self.market.arrivals(self.config.rate, span)
            } else {
                MAX_RATE_FRAME
            };
            last = now;
            if count == 0 {
                continue;
            }
            // Event times in [from, now]: never ahead of the clock.
            self.market
                .trades(count, from, now.saturating_add_micros(1), now, &mut inputs);
            let frame = self.frame(&mut inputs, now, &mut counter);
            // The frame was generated: hand it over even during shutdown;
            // ingest keeps reading until every provider has returned.
            if out.send(frame).await.is_err() {
                return Err(ProviderError::OutputClosed { provider: ID });
            }
            if self.config.rate <= 0.0 {
                tokio::task::yield_now().await;
            }
        }
        tracing::info!("synthetic market stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_configuration_naming_the_field() {
        let rules = TickRules::default();
        let bad = |c: SyntheticConfig| SyntheticProvider::new(c, rules).unwrap_err().to_string();
        assert!(bad(SyntheticConfig {
            symbols: vec![],
            ..Default::default()
        })
        .contains("symbols"));
        assert!(bad(SyntheticConfig {
            symbols: vec!["NO PE".into()],
            ..Default::default()
        })
        .contains("symbol"));
        assert!(bad(SyntheticConfig {
            rate: -1.0,
            ..Default::default()
        })
        .contains("rate"));
        assert!(bad(SyntheticConfig {
            rate: f64::NAN,
            ..Default::default()
        })
        .contains("rate"));
    }

    #[tokio::test]
    async fn emits_valid_frames_at_roughly_the_rate_and_stops_on_cancel() {
        let p = SyntheticProvider::new(
            SyntheticConfig {
                rate: 2_000.0,
                seed: Some(5),
                ..Default::default()
            },
            TickRules::default(),
        )
        .unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Box::new(p).run(tx, cancel.clone()));
        let started = std::time::Instant::now();
        let mut ticks = Vec::new();
        while started.elapsed() < Duration::from_millis(500) {
            if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                assert!(f.rejects.is_empty());
                ticks.extend(f.ticks);
            }
        }
        cancel.cancel();
        while let Some(f) = rx.recv().await {
            ticks.extend(f.ticks);
        }
        task.await.unwrap().unwrap();
        // ~1000 expected in 0.5 s; generous bounds, this is not a timing test.
        assert!(ticks.len() > 200 && ticks.len() < 5_000, "{}", ticks.len());
        let ids: std::collections::HashSet<_> = ticks.iter().map(|t| t.tick_id()).collect();
        assert_eq!(ids.len(), ticks.len(), "tick ids are unique");
        assert!(ticks.iter().all(|t| t.src_id() == "synthetic"));
    }
}
