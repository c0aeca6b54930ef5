//! The stages' events: each logs and counts itself in one `emit()`
//! (`telemetry::events`). Per-message figures (ticks, bytes, latencies) are
//! counted per batch by the stages and are not events.

use std::time::Duration;

use streamforge_store::{CacheError, StoreError};
use streamforge_telemetry::events::Stage;
use streamforge_telemetry::{Event, Metrics};

/// A store write failed for a reason other than its data; persist retries.
pub struct StoreWriteFailed<'a> {
    pub error: &'a StoreError,
    pub retry_in: Duration,
}

impl Event for StoreWriteFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.store_write_failed();
        let (error, retry_in) = (self.error, self.retry_in);
        if error.is_retryable() {
            tracing::warn!(%error, ?retry_in, "store write failed; retrying");
        } else {
            tracing::error!(
                %error,
                ?retry_in,
                "the store refused a write for a reason other than its data; retrying until it is fixed"
            );
        }
    }
}

/// Offering a stored batch to the cache failed; the store has the ticks,
/// and the next batch of each symbol updates the cache again.
pub struct CacheUpdateFailed<'a> {
    pub error: &'a CacheError,
}

impl Event for CacheUpdateFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.cache_failed();
        tracing::warn!(error = %self.error, "cache update failed; the store has the ticks");
    }
}

/// Persist held its consumer paused (the store is behind or down), or
/// resumed it.
pub struct PersistPaused(pub bool);

impl Event for PersistPaused {
    fn emit(self, metrics: &Metrics) {
        metrics.persist_paused(self.0);
        if self.0 {
            tracing::warn!(
                "store behind or down: persist paused consumption, keeping its group membership"
            );
        } else {
            tracing::info!("persist resumed consumption");
        }
    }
}

/// Input one stage sent to the dead-letter topic in one batch (or frame):
/// counted per reason, logged once with the first one's error, so a flood
/// of bad input is one line per batch, not one per message.
pub struct DeadLettered {
    stage: Stage,
    counts: Vec<(&'static str, usize)>,
    /// Where the first one came from, and what was wrong with it.
    first: Option<(String, &'static str, String)>,
}

impl DeadLettered {
    pub fn new(stage: Stage) -> Self {
        DeadLettered {
            stage,
            counts: Vec::new(),
            first: None,
        }
    }

    /// One more, for `reason`; `first` (where it came from, what was wrong)
    /// is asked for only of the first.
    pub fn add(&mut self, reason: &'static str, first: impl FnOnce() -> (String, String)) {
        self.add_n(reason, 1, first);
    }

    /// `n` more, for `reason`.
    pub fn add_n(
        &mut self,
        reason: &'static str,
        n: usize,
        first: impl FnOnce() -> (String, String),
    ) {
        if n == 0 {
            return;
        }
        if self.first.is_none() {
            let (source, error) = first();
            self.first = Some((source, reason, error));
        }
        match self.counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, count)) => *count += n,
            None => self.counts.push((reason, n)),
        }
    }

    pub fn total(&self) -> usize {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

impl Event for DeadLettered {
    fn emit(self, metrics: &Metrics) {
        let Some((source, reason, error)) = &self.first else {
            return;
        };
        for (reason, n) in &self.counts {
            metrics.ticks_rejected(self.stage, reason, *n);
        }
        tracing::warn!(
            stage = self.stage.as_str(),
            rejected = self.total(),
            source = %source,
            reason,
            error = %error,
            "input sent to the dead-letter topic (the first of this batch is shown)"
        );
    }
}

/// An offset commit was refused: the batch is stored, and a later commit
/// covers it or the partitions' new owner receives it again.
pub struct OffsetCommitRefused<'a> {
    pub error: &'a dyn std::fmt::Display,
    pub partitions: usize,
}

impl Event for OffsetCommitRefused<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.bus_commit_failed();
        tracing::warn!(
            error = %self.error,
            partitions = self.partitions,
            "offset commit refused; the batch is stored and will be committed by a later commit or redelivered"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_counted_per_reason_and_logged_once() {
        let metrics = Metrics::new();
        let mut dead = DeadLettered::new(Stage::Persist);
        let mut asked = 0;
        for reason in ["malformed_json", "price", "malformed_json"] {
            dead.add(reason, || {
                asked += 1;
                ("partition 0 offset 7".into(), "not JSON".into())
            });
        }
        dead.add_n("store_refused", 4, || {
            unreachable!("only the first is described")
        });
        assert_eq!((dead.total(), asked), (7, 1));
        dead.emit(&metrics);
        let stats = metrics.snapshot();
        assert_eq!(
            stats.rejected.get("persist/malformed_json"),
            Some(&2),
            "{:?}",
            stats.rejected
        );
        assert_eq!(stats.rejected.get("persist/store_refused"), Some(&4));
    }
}
