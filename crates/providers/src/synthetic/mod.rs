//! The synthetic provider: a simulated market on the wall clock.
//!
//! Every `slice` it draws the Poisson number of trades for the elapsed time
//! and sends them as one frame, like a feed that batches trades. With
//! `rate = 0` it generates as fast as the pipeline accepts (benchmarks).
//! When the pipeline pushes back, the market does not owe the trades it
//! could not send: after a stall, at most one second of trades is drawn.
//!
//! On a first start (the pipeline says the store is empty) it first makes
//! the market's past: `history` of trades up to now at `history_rate`,
//! sent as `origin = backfill` ticks, so charts have candles at once; the
//! live market then goes on from the prices the history ended at.

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
/// Longest history the market makes at first start.
pub const MAX_HISTORY: Duration = Duration::from_secs(7 * 86_400);
/// Highest history rate, in trades per second.
pub const MAX_HISTORY_RATE: f64 = 1_000.0;
/// Simulated time per history frame.
const HISTORY_FRAME: Duration = Duration::from_secs(60);

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
    /// How much of the market's past `run` makes on a first start (an
    /// empty store), so the dashboard has candles at once; `0s` = none.
    #[serde(with = "duration_text")]
    pub history: Duration,
    /// Trades per second across all symbols in that history (at most 1000).
    pub history_rate: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            symbols: DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect(),
            rate: 300.0,
            seed: None,
            slice: Duration::from_millis(10),
            history: Duration::from_secs(6 * 3_600),
            history_rate: 2.0,
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
        if self.history > MAX_HISTORY {
            return Err(Invalid::new(
                "history",
                format!("must be at most 7d, got {:?}", self.history),
            ));
        }
        if !(self.history_rate.is_finite()
            && self.history_rate > 0.0
            && self.history_rate <= MAX_HISTORY_RATE)
        {
            return Err(Invalid::new(
                "history_rate",
                format!(
                    "must be a number above 0 and at most {MAX_HISTORY_RATE}, got {}",
                    self.history_rate
                ),
            ));
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
    /// Make `config.history` of the past before the live market.
    fill_history: bool,
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
            fill_history: false,
        })
    }

    /// Makes `history` of the market's past first (the store is empty).
    pub fn filling_history(mut self, fill: bool) -> Self {
        self.fill_history = fill && !self.config.history.is_zero();
        self
    }

    /// Sends the market's past, `[now - history, now)`, as backfill ticks,
    /// a frame per simulated minute; `false` when shutdown came first.
    async fn send_history(
        &mut self,
        out: &mpsc::Sender<ProviderFrame>,
        cancel: &CancellationToken,
        counter: &mut OccurrenceCounter,
    ) -> Result<bool, ProviderError> {
        let now = Timestamp::now();
        let step = HISTORY_FRAME.as_micros() as i64;
        let mut from = now.saturating_sub_micros(self.config.history.as_micros() as i64);
        let mut inputs = Vec::new();
        let mut sent = 0usize;
        while from < now {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            let to = from.saturating_add_micros(step).min(now);
            let count = self
                .market
                .arrivals(self.config.history_rate, to.as_micros() - from.as_micros());
            if count > 0 {
                self.market.trades(count, from, to, now, &mut inputs);
                for i in &mut inputs {
                    i.origin = streamforge_model::tick::Origin::Backfill;
                }
                let frame = self.frame(&mut inputs, now, counter);
                sent += frame.ticks.len();
                if out.send(frame).await.is_err() {
                    return Err(ProviderError::OutputClosed { provider: ID });
                }
            }
            from = to;
        }
        tracing::info!(
            trades = sent,
            history = ?self.config.history,
            "synthetic market history made (the store was empty)"
        );
        Ok(true)
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
        if self.fill_history && !self.send_history(&out, &cancel, &mut counter).await? {
            return Ok(());
        }
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

    #[tokio::test]
    async fn a_first_start_makes_the_history_first_then_goes_live_from_its_prices() {
        let config = SyntheticConfig {
            symbols: vec!["AAPL".into()],
            rate: 500.0,
            seed: Some(9),
            history: Duration::from_secs(3_600),
            history_rate: 5.0,
            ..Default::default()
        };
        let p = SyntheticProvider::new(config.clone(), TickRules::default())
            .unwrap()
            .filling_history(true);
        let (tx, mut rx) = mpsc::channel(1_024);
        let cancel = CancellationToken::new();
        let started = Timestamp::now();
        let task = tokio::spawn(Box::new(p).run(tx, cancel.clone()));
        let mut ticks = Vec::new();
        while !ticks.iter().any(|t: &Tick| t.origin().is_live()) {
            let f = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            ticks.extend(f.ticks);
        }
        cancel.cancel();
        while rx.recv().await.is_some() {}
        task.await.unwrap().unwrap();
        let first_live = ticks.iter().position(|t| t.origin().is_live()).unwrap();
        let (history, live) = ticks.split_at(first_live);
        assert!(
            live.iter().all(|t| t.origin().is_live()),
            "history comes first"
        );
        // An hour at 5 a second: about 18,000 trades, in time order, within the hour.
        assert!(
            (15_000..21_000).contains(&history.len()),
            "{}",
            history.len()
        );
        let hour_ago = started.saturating_sub_micros(3_600_000_000);
        assert!(history.windows(2).all(|w| w[0].ts() <= w[1].ts()));
        assert!(
            history[0].ts() >= hour_ago
                && history[0].ts() < hour_ago.saturating_add_micros(60_000_000)
        );
        assert!(history.last().unwrap().ts() <= Timestamp::now());
        // The live market goes on from where the history ended.
        let (a, b) = (history.last().unwrap().price(), live[0].price());
        assert!((a / b - 1.0).abs() < 0.01, "{a} then {b}");

        // Not filled: a store that holds trades, or no history asked.
        for (fill, history) in [(false, config.history), (true, Duration::ZERO)] {
            let p = SyntheticProvider::new(
                SyntheticConfig {
                    history,
                    ..config.clone()
                },
                TickRules::default(),
            )
            .unwrap()
            .filling_history(fill);
            let (tx, mut rx) = mpsc::channel(16);
            let cancel = CancellationToken::new();
            let task = tokio::spawn(Box::new(p).run(tx, cancel.clone()));
            let f = rx.recv().await.unwrap();
            assert!(f.ticks.iter().all(|t| t.origin().is_live()));
            cancel.cancel();
            while rx.recv().await.is_some() {}
            task.await.unwrap().unwrap();
        }
    }

    #[test]
    fn history_settings_are_bounded() {
        let rules = TickRules::default();
        let bad = |c: SyntheticConfig| SyntheticProvider::new(c, rules).unwrap_err().to_string();
        assert!(bad(SyntheticConfig {
            history: Duration::from_secs(8 * 86_400),
            ..Default::default()
        })
        .contains("history"));
        assert!(bad(SyntheticConfig {
            history_rate: 0.0,
            ..Default::default()
        })
        .contains("history_rate"));
    }
}
