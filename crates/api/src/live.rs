//! [`LiveHub`]: one upstream feed of live ticks, fanned out to every
//! stream client.
//!
//! The pipeline publishes each batch once; every client holds a receiver of
//! a bounded broadcast channel. A client too slow to keep up does not slow
//! the pipeline or other clients: it misses the oldest batches and is told
//! how many ticks it missed.

use std::sync::Arc;

use streamforge_model::Tick;
use tokio::sync::broadcast;

/// Batches a client may fall behind before it starts missing ticks.
pub const LIVE_BUFFER_BATCHES: usize = 1_024;

/// The live tick fan-out. Cloning shares it.
#[derive(Clone, Debug)]
pub struct LiveHub {
    tx: broadcast::Sender<Arc<[Tick]>>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(LIVE_BUFFER_BATCHES)
    }
}

impl LiveHub {
    pub fn new(buffer_batches: usize) -> Self {
        LiveHub {
            tx: broadcast::channel(buffer_batches.max(1)).0,
        }
    }

    /// Hands a batch to every connected client; never waits.
    pub fn publish(&self, batch: Arc<[Tick]>) {
        // No receivers is normal (no client connected).
        let _ = self.tx.send(batch);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[Tick]>> {
        self.tx.subscribe()
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }
}
