//! Replay: a recording ([`crate::recording`]) fed back as the provider
//! that recorded it, through that provider's own frame parser, at the
//! recorded pace or as fast as the pipeline takes it.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use streamforge_model::{TickRules, Timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::recording::{read, RecordedFrame, RecordingError};
use crate::{Provider, ProviderError, ProviderFrame};

/// Slowest and fastest replay pace (`--speed`).
pub const MIN_SPEED: f64 = 1e-3;
pub const MAX_SPEED: f64 = 1e6;

/// Longest pause replay makes between two frames at the recorded pace: a
/// wild receive time (years later) does not make it sleep for years.
pub const MAX_REPLAY_STEP: Duration = Duration::from_secs(600);

/// When the frame received at `received` is due, the one before having
/// been received at `previous` and due at `previous_due`: the recorded
/// step, never negative and at most [`MAX_REPLAY_STEP`], divided by `speed`.
pub fn replay_due(
    previous: Timestamp,
    previous_due: tokio::time::Instant,
    received: Timestamp,
    speed: f64,
) -> tokio::time::Instant {
    let step_micros = received
        .as_micros()
        .checked_sub(previous.as_micros())
        .unwrap_or(i64::MAX)
        .clamp(0, MAX_REPLAY_STEP.as_micros() as i64);
    // Checked: a speed near 0 (or not a number) must not overflow or panic.
    let longest = MAX_REPLAY_STEP.div_f64(MIN_SPEED);
    let step = Duration::try_from_secs_f64(step_micros as f64 / 1e6 / speed)
        .map_or(longest, |d| d.min(longest));
    previous_due + step
}

/// Replays a recording as its provider: each frame goes through that
/// provider's own parser ([`crate::frame_parser`]).
pub struct ReplayProvider {
    path: PathBuf,
    /// The recording's provider.
    provider: &'static str,
    /// `None`: as fast as the pipeline takes it; `Some(k)`: k times the
    /// recorded pace.
    speed: Option<f64>,
    rules: TickRules,
}

impl ReplayProvider {
    /// A replay of the recording at `path`; its first frame says whose it is.
    pub fn new(path: PathBuf, speed: Option<f64>, rules: TickRules) -> Result<Self, ProviderError> {
        let bad = |reason: String| ProviderError::Config {
            provider: ID,
            reason,
        };
        if let Some(s) = speed {
            if !(MIN_SPEED..=MAX_SPEED).contains(&s) {
                return Err(bad(format!(
                    "speed: must be from {MIN_SPEED} to {MAX_SPEED}, got {s}"
                )));
            }
        }
        let first = read(&path)
            .map_err(|e| bad(e.to_string()))?
            .next()
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        let named = first.map_or_else(|| crate::finnhub::ID.to_string(), |f| f.provider);
        let provider = crate::PROVIDERS
            .iter()
            .copied()
            .find(|p| *p == named && crate::frame_parser(p).is_some())
            .ok_or_else(|| {
                bad(format!(
                    "{}: frames of provider {named:?}, which has no frame parser in this build",
                    path.display()
                ))
            })?;
        Ok(ReplayProvider {
            path,
            provider,
            speed,
            rules,
        })
    }
}

/// The id replay errors are reported under.
const ID: &str = "replay";

#[async_trait]
impl Provider for ReplayProvider {
    fn id(&self) -> &'static str {
        self.provider
    }

    fn max_silence(&self) -> Option<Duration> {
        // A slow replay may pause as long as the recording did.
        Some(Duration::from_secs(3600))
    }

    async fn run(
        self: Box<Self>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        let provider = self.provider;
        let bad = |reason: String| ProviderError::Config { provider, reason };
        let mut parser = crate::frame_parser(provider)
            .ok_or_else(|| bad(format!("no frame parser for {provider}")))?;
        let (tx, mut rx) = mpsc::channel::<Result<RecordedFrame, RecordingError>>(256);
        let path = self.path.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let frames = match read(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            for f in frames {
                let stop = f.is_err();
                if tx.blocking_send(f).is_err() || stop {
                    return;
                }
            }
        });
        let started = tokio::time::Instant::now();
        let mut previous: Option<(Timestamp, tokio::time::Instant)> = None;
        let mut frames = 0u64;
        while let Some(next) = rx.recv().await {
            let rec = next.map_err(|e| bad(format!("replay: {e}")))?;
            if rec.provider != provider {
                return Err(bad(format!(
                    "replay: {} mixes providers: frame {} is {:?}'s",
                    self.path.display(),
                    frames + 1,
                    rec.provider
                )));
            }
            if let Some(speed) = self.speed {
                let (prev, prev_due) = previous.unwrap_or((rec.received, started));
                let due = replay_due(prev, prev_due, rec.received, speed);
                previous = Some((rec.received, due));
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep_until(due) => {}
                }
            } else if cancel.is_cancelled() {
                break;
            }
            // Ingested now, but validated against the time it was received,
            // so an old recording's trades are not "in the future" of nothing.
            let Some(frame) = parser.parse_frame(
                rec.frame.as_bytes(),
                &self.rules,
                Timestamp::now(),
                rec.received,
            ) else {
                continue;
            };
            frames += 1;
            if out.send(frame).await.is_err() {
                return Err(ProviderError::OutputClosed { provider });
            }
        }
        drop(rx);
        let _ = reader.await;
        tracing::info!(path = %self.path.display(), frames, provider, "replay finished");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_pauses_follow_the_recording_but_a_wild_receive_time_does_not_sleep_forever() {
        let t0 = Timestamp::from_millis(1_764_000_000_000);
        let due0 = tokio::time::Instant::now();
        let later = t0.saturating_add_micros(2_000_000);
        assert_eq!(
            replay_due(t0, due0, later, 1.0) - due0,
            Duration::from_secs(2)
        );
        assert_eq!(
            replay_due(t0, due0, later, 4.0) - due0,
            Duration::from_millis(500)
        );
        // Backwards in time: no pause; years ahead: at most MAX_REPLAY_STEP.
        assert_eq!(replay_due(later, due0, t0, 1.0), due0);
        for wild in [Timestamp::MAX, Timestamp::from_millis(253_402_300_799_000)] {
            assert_eq!(replay_due(t0, due0, wild, 1.0) - due0, MAX_REPLAY_STEP);
        }
        assert_eq!(
            replay_due(Timestamp::MIN, due0, Timestamp::MAX, 1.0) - due0,
            MAX_REPLAY_STEP
        );
    }
}
