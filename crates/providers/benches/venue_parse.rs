//! The keyless venues' trade messages into ticks (parse, decimal strings,
//! validation, the id from the venue's trade id), one message per trade as
//! the venues send them, on one core:
//! `cargo bench -p streamforge-providers --bench venue_parse`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use streamforge_model::{Symbol, TickRules, Timestamp};
use streamforge_providers::venue::simulator::{SimProtocol, SimTrade};
use streamforge_providers::venue::{Parsed, VenueParser};
use streamforge_providers::{binance, coinbase};

/// `count` trades of two symbols, written by the venue's simulator (the
/// venue's own message form).
fn messages<P: SimProtocol>(prefix: &str, natives: [&str; 2], count: usize) -> Vec<String> {
    let now = Timestamp::now().as_micros();
    (0..count)
        .map(|n| {
            let native = natives[n % 2];
            P::trade(&SimTrade {
                symbol: Symbol::parse(&format!("{prefix}:{native}")).unwrap(),
                native: native.to_string(),
                id: 1_000_000 + n as u64,
                price: 60_000.0 + (n % 997) as f64 * 0.01,
                size: 0.0001 * (1 + n % 500) as f64,
                ts: Timestamp::from_micros(now - 60_000_000 + (n as i64 % 60_000) * 1_000),
                buyer_maker: n % 2 == 0,
            })
        })
        .collect()
}

fn run<T: VenueParser + Default>(c: &mut Criterion, name: &str, input: &[String]) {
    let now = Timestamp::now();
    let rules = TickRules::default();
    let mut group = c.benchmark_group("venue_parse");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function(name, |b| {
        let mut parser = T::default();
        b.iter(|| {
            let mut ticks = 0;
            for m in input {
                if let Parsed::Trades { ticks: t, .. } =
                    parser.parse(m.as_bytes(), &rules, now, now)
                {
                    ticks += t.len();
                }
            }
            assert_eq!(ticks, input.len());
        })
    });
    group.finish();
}

fn parse(c: &mut Criterion) {
    let b = messages::<binance::simulator::Protocol>("BINANCE", ["BTCUSDT", "ETHUSDT"], 2_000);
    run::<binance::parse::Parser>(c, "binance_trade", &b);
    let cb = messages::<coinbase::simulator::Protocol>("COINBASE", ["BTC-USD", "ETH-USD"], 2_000);
    run::<coinbase::parse::Parser>(c, "coinbase_match", &cb);
}

criterion_group!(benches, parse);
criterion_main!(benches);
