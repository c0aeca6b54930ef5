//! Recordings of raw provider frames: the file format.
//!
//! A recording is zstd-compressed NDJSON, one line per frame received:
//! `{"provider":"finnhub","received":"2026-11-28T10:00:00.123456Z","connection":0,"frame":"..."}`
//! (`frame` is the message exactly as the provider sent it). Replaying it
//! ([`crate::replay`]) feeds the frames through that provider's own parser,
//! so the ticks get the same ids as live and a replay stores nothing twice.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use streamforge_model::Timestamp;

/// One frame as received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedFrame {
    /// The provider whose protocol the frame is in (its id); recordings
    /// made before the field existed are Finnhub's.
    #[serde(default = "finnhub")]
    pub provider: String,
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

/// Recordings without a `provider` field are Finnhub's.
fn finnhub() -> String {
    "finnhub".to_string()
}

/// Longest line a recording may have (a frame is at most
/// [`crate::finnhub::MAX_MESSAGE_BYTES`], escaped as JSON).
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;

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
}
