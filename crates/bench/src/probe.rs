//! [`LatencyProbe`]: exact ingest→stored latency and throughput, for
//! the benchmarks, fed by the pipeline's `on_stored` hook once per batch.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use streamforge_model::{Tick, Timestamp};

/// Records every stored tick's latency within a measurement window.
#[derive(Debug)]
pub struct LatencyProbe {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Microseconds from ingest to store commit.
    micros: Histogram<u64>,
    ticks: u64,
    batches: u64,
    window_start: Instant,
}

/// What a window measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    pub ticks: u64,
    pub batches: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl ProbeReport {
    pub fn ticks_per_second(&self) -> f64 {
        self.ticks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Default for LatencyProbe {
    fn default() -> Self {
        LatencyProbe {
            state: Mutex::new(State {
                micros: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
                ticks: 0,
                batches: 0,
                window_start: Instant::now(),
            }),
        }
    }
}

impl LatencyProbe {
    /// Forgets everything and starts a new window now.
    pub fn reset(&self) {
        let mut s = self.state.lock();
        s.micros.reset();
        s.ticks = 0;
        s.batches = 0;
        s.window_start = Instant::now();
    }

    /// A batch committed at `stored_at`.
    pub fn record(&self, ticks: &[Tick], stored_at: Timestamp) {
        let mut s = self.state.lock();
        for t in ticks {
            let us = (stored_at.as_micros() - t.ingested_at().as_micros()).max(1) as u64;
            s.micros.saturating_record(us);
        }
        s.ticks += ticks.len() as u64;
        s.batches += 1;
    }

    pub fn report(&self) -> ProbeReport {
        let s = self.state.lock();
        let q = |x: f64| Duration::from_micros(s.micros.value_at_quantile(x));
        ProbeReport {
            ticks: s.ticks,
            batches: s.batches,
            elapsed: s.window_start.elapsed(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: Duration::from_micros(s.micros.max()),
        }
    }
}
