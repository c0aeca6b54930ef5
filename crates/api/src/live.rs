//! [`LiveHub`]: one upstream feed of live ticks and candle updates, fanned
//! out to every stream client (SSE and WebSocket).
//!
//! The pipeline's live stage publishes each batch once; the hub numbers it
//! (the SSE event id), keeps the most recent batches for `Last-Event-ID`
//! resume, and broadcasts it on a bounded channel that every client holds a
//! receiver of. A client too slow to keep up does not slow the pipeline or
//! other clients: it misses the oldest batches and is told so (SSE), or is
//! told and disconnected (WebSocket).
//!
//! The candle updates it carries are made by the pipeline's live stage
//! (`streamforge::pipeline::candles`), for the intervals some client wants
//! ([`LiveHub::want_candles`]); the hub only fans them out.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use streamforge_model::{Candle, Interval, Symbol, Tick};
use tokio::sync::broadcast;

/// Batches a client may fall behind before it starts missing them.
pub const LIVE_BUFFER_BATCHES: usize = 1_024;

/// How far back `Last-Event-ID` can resume.
#[derive(Clone, Copy, Debug)]
pub struct ResumeWindow {
    pub batches: usize,
    pub age: Duration,
}

impl Default for ResumeWindow {
    fn default() -> Self {
        ResumeWindow {
            batches: 4_096,
            age: Duration::from_secs(60),
        }
    }
}

/// One published batch: its sequence number, ticks and candle updates.
#[derive(Debug)]
pub struct LiveBatch {
    pub seq: u64,
    pub ticks: Arc<[Tick]>,
    pub candles: Vec<Candle>,
    pub published: Instant,
    /// Each tick's JSON, made once for every client that wants it.
    tick_json: OnceLock<Vec<String>>,
    /// The WebSocket message with every tick, shared by every client that
    /// subscribed to all symbols (cloning it shares the bytes).
    all_ticks_message: OnceLock<axum::extract::ws::Utf8Bytes>,
    /// One WebSocket `ticks` message per symbol of the batch, made once and
    /// shared by every client subscribed to that symbol.
    symbol_messages: OnceLock<HashMap<Symbol, axum::extract::ws::Utf8Bytes>>,
}

impl LiveBatch {
    /// The WebSocket `ticks` message holding the ticks at `indexes`.
    pub fn ticks_message(&self, indexes: impl Iterator<Item = usize> + Clone) -> String {
        let json = self.tick_json();
        let count = indexes.clone().count();
        let bytes: usize = indexes.clone().map(|i| json[i].len() + 1).sum();
        let mut msg = String::with_capacity(64 + bytes);
        msg.push_str(r#"{"type":"ticks","seq":"#);
        msg.push_str(&self.seq.to_string());
        msg.push_str(r#","count":"#);
        msg.push_str(&count.to_string());
        msg.push_str(r#","data":["#);
        for (n, i) in indexes.enumerate() {
            if n > 0 {
                msg.push(',');
            }
            msg.push_str(&json[i]);
        }
        msg.push_str("]}");
        msg
    }

    /// The `ticks` message of each symbol in the batch, made once.
    pub fn symbol_messages(&self) -> &HashMap<Symbol, axum::extract::ws::Utf8Bytes> {
        self.symbol_messages.get_or_init(|| {
            let mut by_symbol: HashMap<&Symbol, Vec<usize>> = HashMap::new();
            for (i, t) in self.ticks.iter().enumerate() {
                by_symbol.entry(t.symbol()).or_default().push(i);
            }
            by_symbol
                .into_iter()
                .map(|(symbol, indexes)| {
                    let msg = self.ticks_message(indexes.iter().copied());
                    (symbol.clone(), msg.into())
                })
                .collect()
        })
    }

    /// [`Self::ticks_message`] of every tick, made once.
    pub fn all_ticks_message(&self) -> axum::extract::ws::Utf8Bytes {
        self.all_ticks_message
            .get_or_init(|| self.ticks_message(0..self.ticks.len()).into())
            .clone()
    }

    /// The JSON of tick `i`.
    pub fn tick_json(&self) -> &[String] {
        self.tick_json.get_or_init(|| {
            self.ticks
                .iter()
                // The wire encoder writes ASCII and copied UTF-8 only.
                .map(|t| String::from_utf8(streamforge_model::wire::encode(t)).unwrap_or_default())
                .collect()
        })
    }
}

struct Shared {
    tx: broadcast::Sender<Arc<LiveBatch>>,
    recent: Mutex<Recent>,
    window: ResumeWindow,
    /// Clients wanting candle updates, per interval (index in [`Interval::ALL`]).
    candle_interest: [AtomicUsize; Interval::ALL.len()],
    /// Tells this hub's sequence numbers from another process's (a restart,
    /// another `serve` instance): part of every SSE event id.
    epoch: u64,
}

/// A client's interest in candle updates of one interval; dropping it ends
/// the interest. Candles of an interval nobody wants are not tracked.
pub struct CandleInterest {
    shared: Arc<Shared>,
    index: usize,
}

impl Drop for CandleInterest {
    fn drop(&mut self) {
        self.shared.candle_interest[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Position of `interval` in [`Interval::ALL`].
pub(crate) fn interval_index(interval: Interval) -> usize {
    Interval::ALL
        .iter()
        .position(|i| *i == interval)
        .unwrap_or_default()
}

struct Recent {
    next_seq: u64,
    batches: VecDeque<Arc<LiveBatch>>,
}

/// The live fan-out. Cloning shares it.
#[derive(Clone)]
pub struct LiveHub {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub")
            .field("clients", &self.clients())
            .finish()
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(LIVE_BUFFER_BATCHES, ResumeWindow::default())
    }
}

/// Where a resuming client stands.
pub enum Resume {
    /// The batches after its last event, still held.
    Replay(Vec<Arc<LiveBatch>>),
    /// Its last event is older than the window, or from another epoch
    /// (process): it missed data.
    TooOld,
}

impl LiveHub {
    pub fn new(buffer_batches: usize, window: ResumeWindow) -> Self {
        LiveHub {
            shared: Arc::new(Shared {
                tx: broadcast::channel(buffer_batches.max(1)).0,
                recent: Mutex::new(Recent {
                    next_seq: 1,
                    batches: VecDeque::new(),
                }),
                window,
                candle_interest: Default::default(),
                epoch: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id()),
            }),
        }
    }

    /// Registers interest in candle updates of `interval` until the guard drops.
    pub fn want_candles(&self, interval: Interval) -> CandleInterest {
        let index = interval_index(interval);
        self.shared.candle_interest[index].fetch_add(1, Ordering::Relaxed);
        CandleInterest {
            shared: self.shared.clone(),
            index,
        }
    }

    /// The intervals some client wants candle updates of.
    pub fn wanted_intervals(&self) -> Vec<Interval> {
        Interval::ALL
            .into_iter()
            .zip(&self.shared.candle_interest)
            .filter(|(_, n)| n.load(Ordering::Relaxed) > 0)
            .map(|(i, _)| i)
            .collect()
    }

    /// Numbers the batch, keeps it for resume and hands it to every
    /// connected client; never waits.
    pub fn publish(&self, ticks: Arc<[Tick]>, candles: Vec<Candle>) {
        let mut recent = self.shared.recent.lock();
        let batch = Arc::new(LiveBatch {
            seq: recent.next_seq,
            ticks,
            candles,
            published: Instant::now(),
            tick_json: OnceLock::new(),
            all_ticks_message: OnceLock::new(),
            symbol_messages: OnceLock::new(),
        });
        recent.next_seq += 1;
        let window = self.shared.window;
        while recent.batches.len() >= window.batches.max(1)
            || recent
                .batches
                .front()
                .is_some_and(|b| b.published.elapsed() > window.age)
        {
            recent.batches.pop_front();
        }
        recent.batches.push_back(batch.clone());
        // Sent under the lock, so receivers see batches in sequence order.
        // No receivers is normal (no client connected).
        let _ = self.shared.tx.send(batch);
    }

    /// Live data went by unpublished (no client was connected): a client
    /// resuming from before it must be told it missed data, so the resume
    /// window starts over.
    pub fn skipped(&self) {
        let mut recent = self.shared.recent.lock();
        if !recent.batches.is_empty() {
            recent.batches.clear();
            recent.next_seq += 1;
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveBatch>> {
        self.shared.tx.subscribe()
    }

    /// This hub's epoch (see [`LiveHub::resume`]).
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    /// The batches after `last_seq` of `epoch` (subscribe first, then ask,
    /// and skip received batches whose `seq` was replayed). Another epoch's
    /// numbers mean nothing here: that is [`Resume::TooOld`].
    pub fn resume(&self, epoch: u64, last_seq: u64) -> Resume {
        if epoch != self.shared.epoch {
            return Resume::TooOld;
        }
        let recent = self.shared.recent.lock();
        let oldest = recent.batches.front().map_or(recent.next_seq, |b| b.seq);
        if last_seq.saturating_add(1) < oldest || last_seq >= recent.next_seq {
            return Resume::TooOld;
        }
        Resume::Replay(
            recent
                .batches
                .iter()
                .filter(|b| b.seq > last_seq)
                .cloned()
                .collect(),
        )
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.shared.tx.receiver_count()
    }
}
