//! Finnhub frame parsing, validation and normalization into ticks, on one
//! core: `cargo bench -p streamforge-providers --bench finnhub_parse`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use streamforge_model::{TickRules, Timestamp};
use streamforge_providers::finnhub::{FrameParser, Parsed};

/// Trade frames as Finnhub sends them: `per_frame` trades of a handful of
/// symbols, some with condition codes.
fn frames(count: usize, per_frame: usize, now_ms: i64) -> Vec<String> {
    let symbols = ["AAPL", "MSFT", "NVDA", "BINANCE:BTCUSDT", "OANDA:EUR_USD"];
    (0..count)
        .map(|f| {
            let data: Vec<String> = (0..per_frame)
                .map(|i| {
                    let n = f * per_frame + i;
                    let s = symbols[n % symbols.len()];
                    let p = 100.0 + (n % 997) as f64 * 0.01;
                    let t = now_ms - 60_000 + (n % 60_000) as i64;
                    if n.is_multiple_of(3) {
                        format!(
                            r#"{{"s":"{s}","p":{p},"t":{t},"v":{},"c":["1","12"]}}"#,
                            n % 500
                        )
                    } else {
                        format!(r#"{{"s":"{s}","p":{p},"t":{t},"v":{}}}"#, n % 500)
                    }
                })
                .collect();
            format!(r#"{{"type":"trade","data":[{}]}}"#, data.join(","))
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let now = Timestamp::now();
    let rules = TickRules::default();
    let mut group = c.benchmark_group("finnhub_parse");
    for per_frame in [1usize, 50] {
        let input = frames(2_000, per_frame, now.as_millis());
        group.throughput(Throughput::Elements((input.len() * per_frame) as u64));
        group.bench_function(format!("{per_frame}_trades_per_frame"), |b| {
            let mut parser = FrameParser::default();
            b.iter(|| {
                let mut ticks = 0;
                for f in &input {
                    if let Parsed::Trades { ticks: t, .. } =
                        parser.parse(f.as_bytes(), &rules, now, now)
                    {
                        ticks += t.len();
                    }
                }
                assert_eq!(ticks, input.len() * per_frame);
                ticks
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
