//! The live stage: a non-durable tail of the ticks topic feeding the API's
//! [`LiveHub`] with ticks and the candle updates they make. It never slows
//! the pipeline: when it falls behind, the bus tells it how much it missed
//! and it continues with current data (its candles are seeded again from
//! the store).

use std::sync::Arc;

use streamforge_api::LiveHub;
use streamforge_bus::{Consumer, Polled};
use streamforge_model::{wire, TickRules, Timestamp};
use streamforge_store::TickStore;
use streamforge_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use super::candles::CandleTracker;

/// Most messages taken from the bus at once.
const MAX_BATCH: usize = 4_096;

pub async fn run(
    mut consumer: Box<dyn Consumer>,
    hub: LiveHub,
    store: Arc<dyn TickStore>,
    rules: TickRules,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut decoder = wire::Decoder::default();
    let mut candles = CandleTracker::default();
    loop {
        let polled = tokio::select! {
            p = consumer.recv(MAX_BATCH) => p?,
            // A broker never closes the topic: stop with the rest of the process.
            _ = shutdown.cancelled() => return Ok(()),
        };
        match polled {
            Polled::Messages(m) => {
                if hub.clients() == 0 {
                    // Nobody listens: candles would be seeded again when
                    // someone does, and a resume from before is told it
                    // missed these ticks.
                    candles.reset();
                    hub.skipped();
                    continue;
                }
                let now = Timestamp::now();
                // Persist dead-letters what does not decode; here it is skipped.
                let ticks: Vec<_> = m
                    .iter()
                    .filter_map(|d| decoder.decode(&d.message.payload, &rules, now).ok())
                    .collect();
                if !ticks.is_empty() {
                    let wanted = hub.wanted_intervals();
                    let updates = candles.update(&ticks, store.as_ref(), &wanted).await;
                    hub.publish(ticks.into(), updates);
                }
            }
            Polled::Lagged(n) => {
                metrics.tail_skipped(n);
                candles.reset();
            }
            Polled::Closed => return Ok(()),
        }
    }
}
