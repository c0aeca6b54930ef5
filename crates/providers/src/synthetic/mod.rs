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
//!
//! On a later start it heals the time the process was down: per symbol,
//! a `downtime` gap from its newest stored trade to now, filled with the
//! market's past at `history_rate` (at most `history` of it) going on from
//! that trade's price, then marked healed.

mod market;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use streamforge_model::settings::{duration_text, Invalid};
use streamforge_model::{
    Gap, GapReason, GapStatus, OccurrenceCounter, Symbol, Tick, TickRules, Timestamp,
};
use streamforge_telemetry::{Event, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use market::{Market, DEFAULT_SYMBOLS};

use crate::{Provider, ProviderError, ProviderFrame, Rejected};

/// The provider id, each tick's `src_id`.
pub const ID: &str = "synthetic";
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
    /// A later start makes at most this much of the time it was down.
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
    /// What the last run left: its unhealed gaps and each symbol's newest
    /// stored trade (a later start).
    resume: Vec<Gap>,
    last_trades: Vec<Tick>,
    metrics: Option<Metrics>,
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
            resume: Vec::new(),
            last_trades: Vec::new(),
            metrics: None,
        })
    }

    /// Heals the time since the last run: `gaps` it left unhealed, and
    /// per symbol the time since its newest stored trade (`last_trades`;
    /// those of other providers are ignored).
    pub fn resuming(mut self, gaps: &[Gap], last_trades: &[Tick], metrics: &Metrics) -> Self {
        self.resume = gaps.iter().filter(|g| g.provider == ID).cloned().collect();
        self.last_trades = last_trades
            .iter()
            .filter(|t| t.src_id() == ID)
            .cloned()
            .collect();
        self.metrics = Some(metrics.clone());
        self
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
        let from = now.saturating_sub_micros(self.config.history.as_micros() as i64);
        let past = Past {
            rules: self.rules,
            rate: self.config.history_rate,
            made_at: now,
        };
        let Some(sent) = past
            .make(&mut self.market, from, now, counter, out, cancel)
            .await?
        else {
            return Ok(false);
        };
        tracing::info!(
            trades = sent,
            history = ?self.config.history,
            "synthetic market history made (the store was empty)"
        );
        Ok(true)
    }

    /// The gap records that close what the last run left, and the windows
    /// to make now: per symbol, from its newest stored trade to `now`.
    fn downtime_plan(&self, now: Timestamp) -> DowntimePlan {
        let mut plan = DowntimePlan::default();
        let last_of = |s: &Symbol| self.last_trades.iter().find(|t| t.symbol() == s);
        for g in &self.resume {
            let mut g = g.clone();
            match last_of(&g.symbol) {
                // Stopped while making it: the rest is this start's window.
                Some(t) if t.ts() < g.to => {
                    g.healing.status = GapStatus::Healed;
                    g.healing.detail = format!(
                        "made up to {}; the rest with the downtime gap from there",
                        t.ts()
                    );
                }
                _ => {
                    g.healing.status = GapStatus::Unrecoverable;
                    g.healing.detail = "the process stopped while the market made this stretch \
                                        of its past; the market does not make it twice"
                        .into();
                }
            }
            plan.closed.push(g);
        }
        let keep = self.config.history.as_micros() as i64;
        for t in &self.last_trades {
            if t.ts() >= now {
                continue;
            }
            let gap = |from: Timestamp, to: Timestamp| Gap {
                provider: ID.to_string(),
                connection: 0,
                symbol: t.symbol().clone(),
                from,
                to,
                reason: GapReason::Downtime,
                healing: streamforge_model::Healing::default(),
            };
            let start = now.saturating_sub_micros(keep).max(t.ts());
            if start > t.ts() {
                let mut old = gap(t.ts(), start);
                old.healing.status = GapStatus::Unrecoverable;
                old.healing.detail = format!(
                    "longer ago than synthetic.history ({}): the market makes no more of its past",
                    duration_text::format(self.config.history)
                );
                plan.closed.push(old);
            }
            if start < now {
                let mut g = gap(start, now);
                g.healing.status = GapStatus::Healing;
                plan.windows.push((g, t.price()));
            }
        }
        plan
    }

    /// Records the time the process was down and makes the market's past
    /// over it, symbol by symbol, going on from each one's stored price;
    /// the live market then goes on from where those ended. `false` when
    /// shutdown came first.
    async fn heal_downtime(
        &mut self,
        out: &mpsc::Sender<ProviderFrame>,
        cancel: &CancellationToken,
        counter: &mut OccurrenceCounter,
    ) -> Result<bool, ProviderError> {
        let now = Timestamp::now();
        let plan = self.downtime_plan(now);
        if plan.closed.is_empty() && plan.windows.is_empty() {
            return Ok(true);
        }
        let mut records = plan.closed;
        records.extend(plan.windows.iter().map(|(g, _)| g.clone()));
        if let Some(metrics) = &self.metrics {
            for g in records.iter().filter(|g| g.reason == GapReason::Downtime) {
                if self
                    .resume
                    .iter()
                    .all(|r| r.from != g.from || r.symbol != g.symbol)
                {
                    crate::venue::events::GapRecorded {
                        provider: ID,
                        connection: 0,
                        reason: GapReason::Downtime,
                        from: g.from,
                        to: g.to,
                        symbols: 1,
                    }
                    .emit(metrics);
                }
            }
            for g in records
                .iter()
                .filter(|g| g.healing.status != GapStatus::Healing)
            {
                crate::venue::events::GapHealEnded {
                    provider: ID,
                    gap: g,
                }
                .emit(metrics);
            }
        }
        crate::send_frame(out, ID, gaps_frame(records)).await?;
        let symbols = self.config.symbols.len().max(1) as f64;
        let rate = self.config.history_rate / symbols;
        let past = Past {
            rules: self.rules,
            rate,
            made_at: now,
        };
        for (mut gap, price) in plan.windows {
            // A market of this symbol alone, going on from its stored trade.
            let mut market = Market::new(
                std::slice::from_ref(&gap.symbol),
                self.config.seed.map(|s| s ^ gap.from.as_micros() as u64),
                Arc::from(ID),
            );
            market.continue_from(&gap.symbol, price, gap.from);
            // Just after the stored trade, up to the start.
            let from = gap.from.saturating_add_micros(1);
            let Some(made) = past
                .make(&mut market, from, gap.to, counter, out, cancel)
                .await?
            else {
                return Ok(false);
            };
            if let Some((price, Some(at))) = market.state_of(&gap.symbol) {
                self.market.continue_from(&gap.symbol, price, at);
            }
            gap.healing.status = GapStatus::Healed;
            gap.healing.backfilled = made as u64;
            if let Some(metrics) = &self.metrics {
                metrics.provider_backfilled(ID, made);
                crate::venue::events::GapHealEnded {
                    provider: ID,
                    gap: &gap,
                }
                .emit(metrics);
            }
            crate::send_frame(out, ID, gaps_frame(vec![gap])).await?;
        }
        Ok(true)
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
        if self.fill_history {
            if !self.send_history(&out, &cancel, &mut counter).await? {
                return Ok(());
            }
        } else if !self.heal_downtime(&out, &cancel, &mut counter).await? {
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
            let frame = frame(&self.rules, &mut inputs, now, &mut counter);
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

/// Validates generated trades into a frame.
fn frame(
    rules: &TickRules,
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
        let (symbol, ts, price, size) = (input.symbol.clone(), input.ts, input.price, input.size);
        match rules.check(input, now) {
            Ok(t) => frame.ticks.push(t),
            Err(e) => frame.rejects.push(
                Rejected::new(
                    format!(r#"{{"symbol":"{symbol}","ts":"{ts}","price":{price},"size":{size}}}"#)
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

/// Makes the market's past at `rate`, a frame per simulated minute, as
/// backfill ticks received at `made_at`.
struct Past {
    rules: TickRules,
    rate: f64,
    made_at: Timestamp,
}

impl Past {
    /// Sends `market`'s trades over `[from, to)`: how many, or `None` when
    /// shutdown came first.
    async fn make(
        &self,
        market: &mut Market,
        mut from: Timestamp,
        to: Timestamp,
        counter: &mut OccurrenceCounter,
        out: &mpsc::Sender<ProviderFrame>,
        cancel: &CancellationToken,
    ) -> Result<Option<usize>, ProviderError> {
        let step = HISTORY_FRAME.as_micros() as i64;
        let mut inputs = Vec::new();
        let mut sent = 0;
        while from < to {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let end = from.saturating_add_micros(step).min(to);
            let count = market.arrivals(self.rate, end.as_micros() - from.as_micros());
            if count > 0 {
                market.trades(count, from, end, self.made_at, &mut inputs);
                for i in &mut inputs {
                    i.origin = streamforge_model::tick::Origin::Backfill;
                }
                let frame = frame(&self.rules, &mut inputs, self.made_at, counter);
                sent += frame.ticks.len();
                crate::send_frame(out, ID, frame).await?;
            }
            from = end;
        }
        Ok(Some(sent))
    }
}

/// What a later start closes and makes (`SyntheticProvider::heal_downtime`).
#[derive(Default)]
struct DowntimePlan {
    /// Gap records that end as they are (healed or unrecoverable).
    closed: Vec<Gap>,
    /// Downtime gaps to make, each with its symbol's stored price.
    windows: Vec<(Gap, f64)>,
}

fn gaps_frame(gaps: Vec<Gap>) -> ProviderFrame {
    ProviderFrame {
        provider: ID,
        gaps,
        ..ProviderFrame::default()
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

    /// A stored trade of the synthetic market, as the store gives it back.
    fn stored(symbol: &str, ts: Timestamp, price: f64) -> Tick {
        let input = streamforge_model::TickInput {
            symbol: Symbol::parse(symbol).unwrap(),
            ts,
            price,
            size: 100.0,
            exchange: Arc::from(""),
            src_id: Arc::from(ID),
            conditions: Vec::new(),
            occurrence: 0,
            tick_id: None,
            ingested_at: ts,
            source_id: None,
            origin: streamforge_model::tick::Origin::Live,
        };
        TickRules::default().check(input, ts).unwrap()
    }

    #[tokio::test]
    async fn a_later_start_makes_the_time_it_was_down_from_the_stored_prices() {
        let config = SyntheticConfig {
            symbols: vec!["AAPL".into(), "MSFT".into()],
            rate: 500.0,
            seed: Some(3),
            history: Duration::from_secs(3_600),
            history_rate: 2.0,
            ..Default::default()
        };
        let now = Timestamp::now();
        let ago = |secs: i64| now.saturating_sub_micros(secs * 1_000_000);
        // AAPL stopped 10 minutes ago, in the middle of a downtime gap the
        // run before did not finish making; MSFT 2 hours ago, longer than
        // the history the market makes.
        let last = [
            stored("AAPL", ago(600), 150.0),
            stored("MSFT", ago(7_200), 300.0),
        ];
        let unfinished = Gap {
            provider: ID.into(),
            connection: 0,
            symbol: Symbol::parse("AAPL").unwrap(),
            from: ago(1_200),
            to: ago(300),
            reason: GapReason::Downtime,
            healing: streamforge_model::Healing {
                status: GapStatus::Healing,
                ..Default::default()
            },
        };
        let metrics = Metrics::new();
        let p = SyntheticProvider::new(config, TickRules::default())
            .unwrap()
            .filling_history(false)
            .resuming(std::slice::from_ref(&unfinished), &last, &metrics);
        let (tx, mut rx) = mpsc::channel(1_024);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Box::new(p).run(tx, cancel.clone()));
        let (mut ticks, mut gaps) = (Vec::new(), Vec::new());
        while !ticks.iter().any(|t: &Tick| t.origin().is_live()) {
            let f = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            ticks.extend(f.ticks);
            gaps.extend(f.gaps);
        }
        cancel.cancel();
        while rx.recv().await.is_some() {}
        task.await.unwrap().unwrap();

        let last_record = |symbol: &str, from: Timestamp| {
            gaps.iter()
                .rev()
                .find(|g| g.symbol.as_str() == symbol && g.from == from)
                .unwrap_or_else(|| panic!("a gap of {symbol} from {from}: {gaps:?}"))
                .clone()
        };
        let old = last_record("AAPL", unfinished.from);
        assert_eq!(old.healing.status, GapStatus::Healed, "{old:?}");
        assert!(old.healing.detail.contains("downtime gap"), "{old:?}");
        let too_old = last_record("MSFT", ago(7_200));
        assert_eq!(too_old.healing.status, GapStatus::Unrecoverable);
        assert!(
            too_old.healing.detail.contains("synthetic.history (1h)"),
            "{too_old:?}"
        );
        for (symbol, from, price) in [("AAPL", ago(600), 150.0), ("MSFT", too_old.to, 300.0)] {
            let gap = last_record(symbol, from);
            assert_eq!(gap.reason, GapReason::Downtime);
            assert_eq!(gap.healing.status, GapStatus::Healed, "{gap:?}");
            let made: Vec<&Tick> = ticks
                .iter()
                .filter(|t| t.symbol().as_str() == symbol && !t.origin().is_live())
                .collect();
            assert_eq!(made.len() as u64, gap.healing.backfilled);
            // One a second for each of the two symbols, over the window.
            let expected = gap.seconds();
            assert!(
                (made.len() as f64 - expected).abs() < expected * 0.15,
                "{symbol}: {} made over {expected} s",
                made.len()
            );
            assert!(made.iter().all(|t| t.ts() > gap.from && t.ts() <= gap.to));
            assert!(made.windows(2).all(|w| w[0].ts() <= w[1].ts()));
            // Going on from the stored price, and live from where it ended.
            let first = made[0].price();
            assert!(
                (first / price - 1.0).abs() < 0.05,
                "{symbol}: {first} after {price}"
            );
            if let Some(live) = ticks
                .iter()
                .find(|t| t.symbol().as_str() == symbol && t.origin().is_live())
            {
                let end = made.last().unwrap().price();
                assert!(
                    (live.price() / end - 1.0).abs() < 0.01,
                    "{end} then {}",
                    live.price()
                );
            }
        }
        assert!(metrics.snapshot().providers[ID].backfilled > 0);
    }
}
