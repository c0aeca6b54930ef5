//! Recordings of raw provider frames, and their replay.
//!
//! A recording is zstd-compressed NDJSON, one line per frame received:
//! `{"received":"2026-11-28T10:00:00.123456Z","connection":0,"frame":"..."}`
//! (`frame` is the message exactly as the provider sent it). Replaying
//! feeds the frames through the same parser, so the ticks get the same ids
//! as live and a replay stores nothing twice.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use streamforge_model::{TickRules, Timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::finnhub::{FrameParser, Parsed, ID as FINNHUB};
use crate::{Provider, ProviderError, ProviderFrame};

/// One frame as received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedFrame {
    pub received: Timestamp,
    pub connection: u32,
    pub frame: String,
}

/// What went wrong with a recording; says where.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: not a recorded frame: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Writes a recording; [`Recorder::finish`] completes the compressed file.
pub struct Recorder {
    path: PathBuf,
    out: zstd::Encoder<'static, BufWriter<std::fs::File>>,
    frames: u64,
}

impl Recorder {
    pub fn create(path: &Path) -> Result<Recorder, RecordingError> {
        let io = |source| RecordingError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let out = zstd::Encoder::new(BufWriter::new(file), 3).map_err(io)?;
        Ok(Recorder {
            path: path.to_path_buf(),
            out,
            frames: 0,
        })
    }

    pub fn write(&mut self, frame: &RecordedFrame) -> Result<(), RecordingError> {
        let mut line = serde_json::to_vec(frame).unwrap_or_default();
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|source| RecordingError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.frames += 1;
        Ok(())
    }

    /// Completes the file; returns how many frames it holds.
    pub fn finish(self) -> Result<u64, RecordingError> {
        let io = |source| RecordingError::Io {
            path: self.path.clone(),
            source,
        };
        let mut inner = self.out.finish().map_err(io)?;
        inner.flush().map_err(io)?;
        Ok(self.frames)
    }
}

/// Reads a recording frame by frame (blocking I/O).
pub fn read(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordedFrame, RecordingError>>, RecordingError> {
    let file = std::fs::File::open(path).map_err(|source| RecordingError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let decoder = zstd::Decoder::new(file).map_err(|source| RecordingError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(frames(BufReader::new(decoder), path.to_path_buf()))
}

/// The frames of a recording's decompressed lines read from `reader`
/// (`path` names it in errors). Stops after the first error.
pub fn frames<R: BufRead>(
    mut reader: R,
    path: PathBuf,
) -> impl Iterator<Item = Result<RecordedFrame, RecordingError>> {
    let mut line_no = 0usize;
    let mut buf = Vec::new();
    let mut failed = false;
    std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        line_no += 1;
        buf.clear();
        // At most one byte over the limit is read: a small file that
        // expands to one huge line never fills memory.
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf);
        let bad = |reason: String| RecordingError::Line {
            path: path.clone(),
            line: line_no,
            reason,
        };
        match read {
            Err(source) => {
                failed = true;
                return Some(Err(RecordingError::Io {
                    path: path.clone(),
                    source,
                }));
            }
            Ok(0) => return None,
            Ok(_) => {}
        }
        if buf.len() > MAX_LINE_BYTES {
            failed = true;
            return Some(Err(bad(format!(
                "longer than {MAX_LINE_BYTES} bytes; a recorded frame is never that long"
            ))));
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l.trim(),
            Err(e) => {
                failed = true;
                return Some(Err(bad(format!("not UTF-8: {e}"))));
            }
        };
        if line.is_empty() {
            continue;
        }
        let parsed = serde_json::from_str(line).map_err(|e| bad(e.to_string()));
        failed = parsed.is_err();
        return Some(parsed);
    })
}

/// Longest line a recording may have (a frame is at most
/// [`crate::finnhub::MAX_MESSAGE_BYTES`], escaped as JSON).
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;

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

/// Replays a Finnhub recording as a provider.
pub struct ReplayProvider {
    path: PathBuf,
    /// `None`: as fast as the pipeline takes it; `Some(k)`: k times the
    /// recorded pace.
    speed: Option<f64>,
    rules: TickRules,
}

impl ReplayProvider {
    pub fn new(path: PathBuf, speed: Option<f64>, rules: TickRules) -> Result<Self, ProviderError> {
        if let Some(s) = speed {
            if !(MIN_SPEED..=MAX_SPEED).contains(&s) {
                return Err(ProviderError::Config {
                    provider: FINNHUB,
                    reason: format!("speed: must be from {MIN_SPEED} to {MAX_SPEED}, got {s}"),
                });
            }
        }
        Ok(ReplayProvider { path, speed, rules })
    }
}

#[async_trait]
impl Provider for ReplayProvider {
    fn id(&self) -> &'static str {
        FINNHUB
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
        let mut parser = FrameParser::default();
        let started = tokio::time::Instant::now();
        let mut previous: Option<(Timestamp, tokio::time::Instant)> = None;
        let mut frames = 0u64;
        while let Some(next) = rx.recv().await {
            let rec = next.map_err(|e| ProviderError::Config {
                provider: FINNHUB,
                reason: format!("replay: {e}"),
            })?;
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
            // Validated against the time it was received, so an old
            // recording's trades are not "in the future" of nothing.
            let frame = match parser.parse(
                rec.frame.as_bytes(),
                &self.rules,
                Timestamp::now(),
                rec.received,
            ) {
                Parsed::Trades { ticks, rejects } => ProviderFrame {
                    provider: FINNHUB,
                    ticks,
                    rejects,
                    gaps: Vec::new(),
                },
                Parsed::Malformed(r) => ProviderFrame {
                    provider: FINNHUB,
                    rejects: vec![r],
                    ..ProviderFrame::default()
                },
                Parsed::Ping | Parsed::Error(_) => continue,
            };
            frames += 1;
            if out.send(frame).await.is_err() {
                return Err(ProviderError::OutputClosed { provider: FINNHUB });
            }
        }
        drop(rx);
        let _ = reader.await;
        tracing::info!(path = %self.path.display(), frames, "replay finished");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_file_that_expands_to_one_huge_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.ndjson.zst");
        let good =
            r#"{"received":"2026-11-28T10:00:00Z","connection":0,"frame":"{\"type\":\"ping\"}"}"#;
        let mut raw = format!("{good}\n").into_bytes();
        raw.extend(std::iter::repeat_n(b'a', 64 * 1024 * 1024));
        let compressed = zstd::encode_all(&raw[..], 19).unwrap();
        assert!(compressed.len() < 64 * 1024, "{} bytes", compressed.len());
        std::fs::write(&path, compressed).unwrap();
        let frames: Vec<_> = read(&path).unwrap().collect();
        assert_eq!(frames.len(), 2, "the good line, then the error");
        assert!(frames[0].is_ok());
        let e = frames[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("longer than"), "{e}");
    }

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
