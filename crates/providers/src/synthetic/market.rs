//! The simulated market itself: pure, deterministic for a seed and a
//! sequence of time slices, no clock and no I/O.
//!
//! - Prices follow geometric Brownian motion per symbol with the symbol's
//!   annualized volatility (zero drift), rounded to the tick size on output.
//! - Trades arrive as a Poisson process at the configured total rate, spread
//!   over the symbols by activity weight, at uniformly random times within
//!   each slice.
//! - Sizes are lots: round lots of 100 and odd lots for equities, fractional
//!   lognormal sizes for crypto pairs.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Poisson, StandardNormal, WeightedIndex};
use streamforge_model::{Symbol, TickInput, Timestamp};

/// Microseconds in a (365.25-day) year, the unit of volatility.
const MICROS_PER_YEAR: f64 = 365.25 * 86_400.0 * 1e6;

/// The symbols `streamforge run` simulates when none are given.
pub const DEFAULT_SYMBOLS: &[&str] = &[
    "AAPL",
    "MSFT",
    "NVDA",
    "AMZN",
    "TSLA",
    "GOOGL",
    "BINANCE:BTCUSDT",
    "BINANCE:ETHUSDT",
];

/// How a symbol trades.
#[derive(Debug, Clone)]
struct Instrument {
    symbol: Symbol,
    exchange: Arc<str>,
    /// Unrounded current price.
    price: f64,
    /// Annualized volatility.
    sigma: f64,
    tick_size: f64,
    crypto: bool,
    /// Time of the previous trade (GBM step length).
    last: Option<Timestamp>,
}

/// Starting price, volatility and activity weight of well-known symbols;
/// other symbols get values derived from their name.
fn profile(symbol: &str) -> (f64, f64, f64) {
    match symbol {
        "AAPL" => (230.0, 0.25, 3.0),
        "MSFT" => (420.0, 0.22, 2.0),
        "NVDA" => (120.0, 0.50, 4.0),
        "AMZN" => (180.0, 0.30, 2.0),
        "TSLA" => (250.0, 0.60, 3.0),
        "GOOGL" => (165.0, 0.28, 1.5),
        "BINANCE:BTCUSDT" => (60_000.0, 0.55, 3.0),
        "BINANCE:ETHUSDT" => (3_000.0, 0.70, 2.0),
        other => {
            // FNV-1a: stable across runs and platforms.
            let h = other.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            let price = 10.0 + (h % 49_000) as f64 / 100.0;
            let sigma = 0.15 + ((h >> 20) % 50) as f64 / 100.0;
            (price, sigma, 1.0)
        }
    }
}

/// A seeded simulated market.
#[derive(Debug)]
pub struct Market {
    rng: ChaCha8Rng,
    instruments: Vec<Instrument>,
    pick: WeightedIndex<f64>,
    crypto_size: LogNormal<f64>,
    src_id: Arc<str>,
}

impl Market {
    /// A market for `symbols`, reproducible when `seed` is given.
    pub fn new(symbols: &[Symbol], seed: Option<u64>, src_id: Arc<str>) -> Self {
        let rng = match seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_entropy(),
        };
        let mut weights = Vec::with_capacity(symbols.len());
        let instruments = symbols
            .iter()
            .map(|s| {
                let (price, sigma, weight) = profile(s.as_str());
                weights.push(weight);
                let (exchange, crypto) = match s.as_str().split_once(':') {
                    Some((venue, _)) => (venue.to_string(), true),
                    None => (String::new(), false),
                };
                Instrument {
                    symbol: s.clone(),
                    exchange: Arc::from(exchange),
                    price,
                    sigma,
                    tick_size: 0.01,
                    crypto,
                    last: None,
                }
            })
            .collect();
        Market {
            rng,
            instruments,
            pick: WeightedIndex::new(weights).expect("at least one symbol with positive weight"),
            crypto_size: LogNormal::new(-2.0, 1.2).expect("valid lognormal"),
            src_id,
        }
    }

    /// How many trades arrive in a slice of `micros` at `rate` trades/s.
    pub fn arrivals(&mut self, rate: f64, micros: i64) -> usize {
        let lambda = rate * micros as f64 / 1e6;
        if lambda <= 0.0 || !lambda.is_finite() {
            return 0;
        }
        match Poisson::new(lambda) {
            Ok(p) => {
                let n: f64 = p.sample(&mut self.rng);
                n as usize
            }
            Err(_) => lambda.round() as usize,
        }
    }

    /// Appends `count` trades with event times uniformly in `[from, to)`,
    /// in time order, received at `ingested_at`.
    pub fn trades(
        &mut self,
        count: usize,
        from: Timestamp,
        to: Timestamp,
        ingested_at: Timestamp,
        out: &mut Vec<TickInput>,
    ) {
        let span = (to.as_micros() - from.as_micros()).max(1);
        let mut times: Vec<i64> = (0..count)
            .map(|_| from.as_micros() + self.rng.gen_range(0..span))
            .collect();
        times.sort_unstable();
        out.reserve(count);
        for t in times {
            let i = self.pick.sample(&mut self.rng);
            let ts = Timestamp::from_micros(t);
            let z: f64 = StandardNormal.sample(&mut self.rng);
            let size = self.size(i);
            let inst = &mut self.instruments[i];
            let dt = inst
                .last
                .map(|l| (t - l.as_micros()).max(0) as f64 / MICROS_PER_YEAR)
                .unwrap_or(0.0);
            inst.price *= (-0.5 * inst.sigma * inst.sigma * dt + inst.sigma * dt.sqrt() * z).exp();
            inst.last = Some(ts);
            let price =
                ((inst.price / inst.tick_size).round() * inst.tick_size).max(inst.tick_size);
            out.push(TickInput {
                symbol: inst.symbol.clone(),
                ts,
                price,
                size,
                exchange: inst.exchange.clone(),
                src_id: self.src_id.clone(),
                conditions: Vec::new(),
                occurrence: 0,
                tick_id: None,
                ingested_at,
                source_id: None,
                origin: streamforge_model::tick::Origin::Live,
            });
        }
    }

    fn size(&mut self, i: usize) -> f64 {
        if self.instruments[i].crypto {
            let s: f64 = self.crypto_size.sample(&mut self.rng);
            (s * 1e4).round().max(1.0) / 1e4
        } else if self.rng.gen_bool(0.3) {
            f64::from(self.rng.gen_range(1u32..100))
        } else {
            100.0 * f64::from(self.rng.gen_range(1u32..=10))
        }
    }

    /// Goes on from `price` at `at` for `symbol` (a price stored by an
    /// earlier run); other symbols, and a symbol not in the market, are
    /// left as they are.
    pub fn continue_from(&mut self, symbol: &Symbol, price: f64, at: Timestamp) {
        if !(price.is_finite() && price > 0.0) {
            return;
        }
        if let Some(inst) = self.instruments.iter_mut().find(|i| i.symbol == *symbol) {
            inst.price = price;
            inst.last = Some(at);
        }
    }

    /// The unrounded price of `symbol` now, and the time of its last trade.
    pub fn state_of(&self, symbol: &Symbol) -> Option<(f64, Option<Timestamp>)> {
        self.instruments
            .iter()
            .find(|i| i.symbol == *symbol)
            .map(|i| (i.price, i.last))
    }

    /// Current unrounded price of each symbol (for tests).
    pub fn prices(&self) -> Vec<(Symbol, f64)> {
        self.instruments
            .iter()
            .map(|i| (i.symbol.clone(), i.price))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(list: &[&str]) -> Vec<Symbol> {
        list.iter().map(|s| Symbol::parse(s).unwrap()).collect()
    }

    fn run(seed: u64) -> Vec<TickInput> {
        let mut m = Market::new(
            &symbols(DEFAULT_SYMBOLS),
            Some(seed),
            Arc::from("synthetic"),
        );
        let mut out = Vec::new();
        let t0 = 1_756_325_700_000_000;
        for k in 0..100 {
            let from = Timestamp::from_micros(t0 + k * 10_000);
            let to = Timestamp::from_micros(t0 + (k + 1) * 10_000);
            let n = m.arrivals(500.0, 10_000);
            m.trades(n, from, to, to, &mut out);
        }
        out
    }

    #[test]
    fn a_seed_reproduces_the_market() {
        let key = |v: &[TickInput]| -> Vec<(String, i64, f64, f64)> {
            v.iter()
                .map(|t| (t.symbol.to_string(), t.ts.as_micros(), t.price, t.size))
                .collect()
        };
        assert_eq!(key(&run(7)), key(&run(7)));
        assert_ne!(key(&run(7)), key(&run(8)));
    }

    #[test]
    fn arrivals_average_the_rate() {
        let mut m = Market::new(&symbols(&["AAPL"]), Some(1), Arc::from("synthetic"));
        let slices = 2_000;
        let total: usize = (0..slices).map(|_| m.arrivals(1_000.0, 10_000)).sum();
        let mean = total as f64 / slices as f64; // expected 10 per slice
        assert!((mean - 10.0).abs() < 0.5, "mean {mean}");
    }

    #[test]
    fn trades_are_valid_ordered_and_priced_near_the_start() {
        let ticks = run(3);
        assert!(ticks.len() > 300, "{}", ticks.len());
        assert!(ticks.windows(2).all(|w| w[0].ts <= w[1].ts));
        for t in &ticks {
            assert!(t.price > 0.0 && t.size > 0.0);
            let (p0, _, _) = profile(t.symbol.as_str());
            assert!(
                (t.price / p0 - 1.0).abs() < 0.05,
                "{} {}",
                t.symbol,
                t.price
            );
            if t.symbol.as_str().contains(':') {
                assert_eq!(&*t.exchange, "BINANCE");
            }
        }
    }

    #[test]
    fn log_returns_have_the_configured_volatility() {
        // One symbol, one trade per simulated minute for many minutes: the
        // standard deviation of log returns must be sigma * sqrt(dt).
        let mut m = Market::new(&symbols(&["AAPL"]), Some(11), Arc::from("synthetic"));
        let mut out = Vec::new();
        let minute = 60_000_000;
        let t0 = 1_756_325_700_000_000;
        for k in 0..20_000 {
            let ts = Timestamp::from_micros(t0 + k * minute);
            m.trades(
                1,
                ts,
                Timestamp::from_micros(t0 + k * minute + 1),
                ts,
                &mut out,
            );
        }
        let _ = m.prices();
        let rets: Vec<f64> = out
            .windows(2)
            .map(|w| (w[1].price / w[0].price).ln())
            .collect();
        let mean = rets.iter().sum::<f64>() / rets.len() as f64;
        let var = rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rets.len() as f64;
        let expected = 0.25 * (minute as f64 / MICROS_PER_YEAR).sqrt();
        let ratio = var.sqrt() / expected;
        assert!((0.9..1.1).contains(&ratio), "stdev ratio {ratio}");
    }
}
