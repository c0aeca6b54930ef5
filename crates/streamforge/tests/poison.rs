//! No single input stops a stage: values out of bounds, rows the store
//! refuses, oversized and foreign provider frames. Each test runs the
//! pipeline in process and checks, through HTTP and the bus, that it keeps
//! running, that every valid tick is stored exactly once and that every bad
//! input is in the dead-letter topic once, with its reason, and counted.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use streamforge::config::Config;
use streamforge::pipeline::{self, Role, Running};
use streamforge_bus::{Bus, Consumer, ConsumerOptions, Headers, Message, StartFrom};
use streamforge_model::{Symbol, Timestamp};
use streamforge_providers::finnhub::{Simulator, SimulatorConfig};
use streamforge_store::{Order, TickQuery};
use streamforge_testkit::engines::{psql, shared_postgres};
use streamforge_testkit::wait_for;
use tokio_util::sync::CancellationToken;

/// The price the store is told to refuse (by a trigger the test installs).
const POISON: f64 = 666.25;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    // Only the messages of the test: a quiet synthetic feed on its own symbol.
    c.synthetic.symbols = vec!["QUIET".into()];
    c.synthetic.rate = 1.0;
    c.persist.batch_size = 1_000;
    c.persist.batch_timeout = Duration::from_millis(100);
    c.persist.retry_backoff = Duration::from_millis(20);
    c.log.level = "warn".into();
    c
}

async fn start(c: &Config) -> (Running, CancellationToken) {
    let token = CancellationToken::new();
    let running = pipeline::start(c, Role::Run, token.clone()).await.unwrap();
    (running, token)
}

async fn dlq_consumer(bus: &dyn Bus) -> Box<dyn Consumer> {
    bus.consumer(
        "ticks.dlq",
        ConsumerOptions {
            group: format!("test-{}", rand_suffix()),
            start: StartFrom::Earliest,
            durable: true,
        },
    )
    .await
    .unwrap()
}

fn rand_suffix() -> u64 {
    Timestamp::now().as_micros() as u64
}

/// Dead letters until `n` arrived (then a short wait for any extra one).
async fn dead_letters(dlq: &mut dyn Consumer, n: usize) -> Vec<Message> {
    common::dead_letters(dlq, n, Duration::from_secs(30), Duration::from_millis(500)).await
}

fn tick_message(symbol: &str, ts: Timestamp, price: f64) -> Message {
    let payload = format!(
        r#"{{"symbol":"{symbol}","ts":"{ts}","price":{price},"size":1,"exchange":"","src_id":"test"}}"#
    );
    let mut h = Headers::default();
    h.insert("schema-version", Bytes::from_static(b"1"));
    Message {
        key: Bytes::from(symbol.to_string()),
        payload: payload.into(),
        headers: h,
    }
}

/// Prices stored for `symbol`, sorted.
async fn stored_prices(running: &Running, symbol: &str) -> Vec<f64> {
    let ticks = running
        .store
        .clone()
        .unwrap()
        .ticks(TickQuery {
            symbol: Symbol::parse(symbol).unwrap(),
            from: Timestamp::from_micros(0),
            to: Timestamp::MAX,
            limit: 100_000,
            order: Order::Asc,
        })
        .await
        .unwrap();
    let mut prices: Vec<f64> = ticks.iter().map(|t| t.price()).collect();
    prices.sort_by(f64::total_cmp);
    prices
}

/// Publishes 300 ticks of which 4 carry the price the store refuses (two
/// of them next to each other), in one batch, then checks that the other
/// 296 are stored exactly once, each poison is dead-lettered once with the
/// database's error, and the pipeline goes on storing afterwards.
async fn refused_rows_are_isolated(c: &Config, refuse: impl FnOnce(&Running)) {
    let (running, token) = start(c).await;
    refuse(&running);
    let bus = running.bus();
    let mut dlq = dlq_consumer(&*bus).await;
    let t0 = Timestamp::now().saturating_sub_micros(60_000_000);
    let poison_at = [17usize, 150, 151, 299];
    let mut expected = Vec::new();
    let batch: Vec<Message> = (0..300)
        .map(|i| {
            let ts = t0.saturating_add_micros(i as i64 * 1_000);
            let price = if poison_at.contains(&i) {
                POISON
            } else {
                let p = 100.0 + i as f64;
                expected.push(p);
                p
            };
            tick_message("BISECT", ts, price)
        })
        .collect();
    bus.publish("ticks", batch).await.unwrap();

    let dead = dead_letters(&mut *dlq, poison_at.len()).await;
    assert_eq!(dead.len(), poison_at.len(), "each poison exactly once");
    let mut offsets = Vec::new();
    for m in &dead {
        let h = &m.headers;
        assert_eq!(h.get_str("dlq-reason"), Some("store_refused"), "{h:?}");
        assert_eq!(h.get_str("dlq-stage"), Some("persist"));
        let error = h.get_str("dlq-error").unwrap();
        assert!(
            error.contains("refuse_poison"),
            "the database's error: {error}"
        );
        assert!(String::from_utf8_lossy(&m.payload).contains("666.25"));
        offsets.push(h.get_str("dlq-source-offset").unwrap().to_string());
    }
    offsets.sort();
    offsets.dedup();
    assert_eq!(offsets.len(), poison_at.len(), "four distinct messages");

    let prices = wait_for("the valid ticks", Duration::from_secs(30), || {
        let running = &running;
        let n = expected.len();
        async move {
            let p = stored_prices(running, "BISECT").await;
            (p.len() >= n).then_some(p)
        }
    })
    .await;
    assert_eq!(prices, expected, "every valid tick stored exactly once");
    // The newest tick of the batch was refused: the latest quote is the
    // newest stored one, never a tick the store did not keep.
    let (status, q) = streamforge_testkit::get_json(&format!(
        "http://{}/api/v1/quotes/BISECT/latest",
        running.http_addr
    ))
    .await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["price"].as_f64(), expected.last().copied(), "{q}");

    // The partition goes on: a later valid tick is stored too.
    let later = Timestamp::now().saturating_sub_micros(1_000_000);
    bus.publish("ticks", vec![tick_message("BISECT", later, 9_999.5)])
        .await
        .unwrap();
    wait_for("a tick after the poison", Duration::from_secs(30), || {
        let running = &running;
        async move {
            stored_prices(running, "BISECT")
                .await
                .contains(&9_999.5)
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        running
            .metrics
            .snapshot()
            .rejected
            .get("persist/store_refused"),
        Some(&(poison_at.len() as u64))
    );
    token.cancel();
    running.wait().await.expect("a clean stop after poison");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_the_store_refuses_are_isolated_and_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let db = c.store_url().trim_start_matches("sqlite://").to_string();
    refused_rows_are_isolated(&c, |_| {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(&format!(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON ticks WHEN NEW.price = {POISON} \
             BEGIN SELECT RAISE(ABORT, 'refuse_poison: this price is refused'); END;"
        ))
        .unwrap();
    })
    .await;
}

fn install_pg_refusal(url: &str) {
    psql(
        url,
        &format!(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.price = {POISON} THEN RAISE EXCEPTION 'refuse_poison: this price is refused'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT ON ticks FOR EACH ROW EXECUTE FUNCTION refuse_poison();"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_the_store_refuses_are_isolated_and_dead_lettered() {
    let pg = shared_postgres();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.create_database().unwrap();
    let mut c = config(dir.path());
    c.store = Some(url.clone());
    c.postgres.mode = Some(streamforge_store::postgres::Mode::Postgres);
    refused_rows_are_isolated(&c, |_| install_pg_refusal(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescaledb_rows_the_store_refuses_are_isolated_and_dead_lettered() {
    let pg = shared_postgres();
    pg.require_timescaledb();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.create_database().unwrap();
    let mut c = config(dir.path());
    c.store = Some(url.clone());
    c.postgres.mode = Some(streamforge_store::postgres::Mode::TimescaleDb);
    refused_rows_are_isolated(&c, |_| install_pg_refusal(&url)).await;
}

async fn simulator(inject: Vec<String>) -> Simulator {
    Simulator::start(SimulatorConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: "right-token".into(),
        rate: 200.0,
        seed: Some(12),
        ping_every: Duration::from_millis(300),
        record: true,
        inject,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap()
}

fn finnhub_config(dir: &std::path::Path, sim: &Simulator) -> Config {
    let mut c = config(dir);
    c.finnhub.token = streamforge_providers::Secret::new("right-token");
    c.finnhub.url = sim.url();
    c.finnhub.symbols = vec!["AAPL".into(), "MSFT".into()];
    c.finnhub.backoff_min = Duration::from_millis(50);
    c.finnhub.backoff_max = Duration::from_millis(200);
    c.persist.batch_timeout = Duration::from_millis(5);
    c
}

/// Trades the simulator sent: (symbol, ts ms, price bits, size bits).
type Trade = (String, i64, u64, u64);

fn sent(sim: &Simulator) -> BTreeSet<Trade> {
    sim.log
        .lock()
        .sent
        .iter()
        .map(|t| {
            (
                t.symbol.clone(),
                t.ts_ms,
                t.price.to_bits(),
                t.volume.to_bits(),
            )
        })
        .collect()
}

/// The distinct trades stored, and the number of rows.
async fn stored(running: &Running) -> (BTreeSet<Trade>, usize) {
    let store = running.store.clone().unwrap();
    let mut out = BTreeSet::new();
    let mut rows = 0;
    for s in ["AAPL", "MSFT"] {
        let ticks = store
            .ticks(TickQuery {
                symbol: Symbol::parse(s).unwrap(),
                from: Timestamp::from_micros(0),
                to: Timestamp::MAX,
                limit: 1_000_000,
                order: Order::Asc,
            })
            .await
            .unwrap();
        rows += ticks.len();
        out.extend(ticks.iter().map(|t| {
            (
                s.to_string(),
                t.ts().as_millis(),
                t.price().to_bits(),
                t.size().to_bits(),
            )
        }));
    }
    (out, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_of_1e200_and_trades_of_foreign_symbols_are_dead_lettered_and_postgres_stores_the_rest(
) {
    let pg = shared_postgres();
    let url = pg.create_database().unwrap();
    let now = Timestamp::now().as_millis();
    let frame = |s: &str, p: &str, v: &str| {
        format!(r#"{{"type":"trade","data":[{{"s":"{s}","p":{p},"t":{now},"v":{v}}}]}}"#)
    };
    let sim = simulator(vec![
        frame("AAPL", "1e200", "1e200"),
        frame("MSFT", "101.5", "1e13"),
        frame("NOTSUBSCRIBED", "10", "1"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = finnhub_config(dir.path(), &sim);
    c.store = Some(url);
    let (running, token) = start(&c).await;
    let mut dlq = dlq_consumer(&*running.bus()).await;
    let dead = dead_letters(&mut *dlq, 3).await;
    let mut reasons: Vec<&str> = dead
        .iter()
        .map(|m| m.headers.get_str("dlq-reason").unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["price_too_large", "size_too_large", "unsubscribed_symbol"]
    );
    let price = dead
        .iter()
        .find(|m| m.headers.get_str("dlq-reason") == Some("price_too_large"))
        .unwrap();
    let error = price.headers.get_str("dlq-error").unwrap();
    assert!(
        error.contains("price") && error.contains("ingest.max_price"),
        "{error}"
    );

    // Live traffic after the bad trades is stored, each trade once, and
    // nothing else: the stored trades are exactly those sent.
    wait_for(
        "live trades after the bad ones",
        Duration::from_secs(20),
        || {
            let sim = &sim;
            async move { (sim.log.lock().sent.len() > 100).then_some(()) }
        },
    )
    .await;
    sim.stop_and_wait().await;
    let want = sent(&sim);
    assert!(want.len() > 50, "{} trades sent", want.len());
    let (got, rows) = wait_for("every sent trade stored", Duration::from_secs(30), || {
        let (running, want) = (&running, &want);
        async move {
            let got = stored(running).await;
            (got.0.len() >= want.len()).then_some(got)
        }
    })
    .await;
    assert_eq!(got, want, "the trades stored are exactly the trades sent");
    let sent_rows = sim.log.lock().sent.len();
    assert_eq!(rows, sent_rows, "each sent trade is one row");
    let stats = running.metrics.snapshot();
    for reason in ["price_too_large", "size_too_large", "unsubscribed_symbol"] {
        assert_eq!(
            stats.rejected.get(&format!("ingest/{reason}")),
            Some(&1),
            "{reason}: {stats:?}"
        );
    }
    token.cancel();
    running.wait().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_provider_frame_is_refused_counted_and_the_feed_reconnects() {
    let max = streamforge_providers::finnhub::MAX_MESSAGE_BYTES;
    let huge = format!(
        r#"{{"type":"trade","data":[{{"s":"AAPL","p":1,"t":1,"v":1,"c":["{}"]}}]}}"#,
        "x".repeat(max + 1)
    );
    let sim = simulator(vec![huge]).await;
    let dir = tempfile::tempdir().unwrap();
    let c = finnhub_config(dir.path(), &sim);
    let (running, token) = start(&c).await;
    let mut dlq = dlq_consumer(&*running.bus()).await;
    let dead = dead_letters(&mut *dlq, 1).await;
    assert_eq!(dead.len(), 1);
    let h = &dead[0].headers;
    assert_eq!(h.get_str("dlq-reason"), Some("frame_too_large"));
    assert!(h.get_str("dlq-error").unwrap().contains(&max.to_string()));
    // The feed comes back on a new connection and ticks flow again.
    wait_for("the feed to reconnect", Duration::from_secs(20), || {
        let sim = &sim;
        async move { (sim.log.lock().connections >= 2).then_some(()) }
    })
    .await;
    let before = stored(&running).await.1;
    wait_for("ticks after the reconnect", Duration::from_secs(20), || {
        let running = &running;
        async move { (stored(running).await.1 > before + 20).then_some(()) }
    })
    .await;
    let stats = running.metrics.snapshot();
    assert_eq!(stats.rejected.get("ingest/frame_too_large"), Some(&1));
    assert!(
        stats.providers["finnhub"].gaps.get("disconnected") >= Some(&1),
        "the reconnect is recorded as a gap: {stats:?}"
    );
    // And stored: one disconnected gap per subscribed symbol.
    let store = running.store.clone().unwrap();
    let gaps = wait_for("the gaps in the store", Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            let gaps = store
                .gaps(streamforge_store::GapQuery {
                    symbol: None,
                    from: Timestamp::MIN,
                    to: Timestamp::MAX,
                    limit: 100,
                })
                .await
                .ok()?;
            (gaps.len() >= 2).then_some(gaps)
        }
    })
    .await;
    let mut symbols: Vec<&str> = gaps.iter().map(|g| g.symbol.as_str()).collect();
    symbols.sort();
    symbols.dedup();
    assert_eq!(symbols, ["AAPL", "MSFT"], "{gaps:?}");
    assert!(
        gaps.iter()
            .all(|g| g.reason == streamforge_model::GapReason::Disconnected && g.from <= g.to),
        "{gaps:?}"
    );
    token.cancel();
    running.wait().await.expect("a clean stop");
}

/// A provider with an open universe: one tick each of `symbols` symbols.
struct ManySymbols {
    symbols: usize,
}

#[async_trait::async_trait]
impl streamforge_providers::Provider for ManySymbols {
    fn id(&self) -> &'static str {
        "many"
    }

    async fn run(
        self: Box<Self>,
        out: tokio::sync::mpsc::Sender<streamforge_providers::ProviderFrame>,
        _cancel: CancellationToken,
    ) -> Result<(), streamforge_providers::ProviderError> {
        let now = Timestamp::now();
        let rules = streamforge_model::TickRules::default();
        let ticks = (0..self.symbols)
            .map(|i| {
                rules
                    .check(
                        streamforge_model::TickInput {
                            symbol: Symbol::parse(&format!("SYM{i:03}")).unwrap(),
                            ts: now,
                            price: 10.0 + i as f64,
                            size: 1.0,
                            exchange: "".into(),
                            src_id: "many".into(),
                            conditions: vec![],
                            occurrence: 0,
                            tick_id: None,
                            ingested_at: now,
                            source_id: None,
                            origin: streamforge_model::tick::Origin::Live,
                        },
                        now,
                    )
                    .unwrap()
            })
            .collect();
        let frame = streamforge_providers::ProviderFrame {
            provider: "many",
            ticks,
            ..Default::default()
        };
        out.send(frame).await.ok();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_serves_at_most_max_symbols_and_dead_letters_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.ingest.max_symbols = 10;
    let token = CancellationToken::new();
    let providers: Vec<Box<dyn streamforge_providers::Provider>> =
        vec![Box::new(ManySymbols { symbols: 30 })];
    let running = pipeline::Pipeline::new(&c, Role::Run)
        .with_providers(providers)
        .start(token.clone())
        .await
        .unwrap();
    let mut dlq = dlq_consumer(&*running.bus()).await;
    let dead = dead_letters(&mut *dlq, 20).await;
    assert_eq!(dead.len(), 20);
    for m in &dead {
        assert_eq!(m.headers.get_str("dlq-reason"), Some("too_many_symbols"));
        assert!(m
            .headers
            .get_str("dlq-error")
            .unwrap()
            .contains("ingest.max_symbols"));
    }
    let metrics = running.metrics.clone();
    let store = running.store.clone().unwrap();
    // The provider returned: the pipeline drains and stops by itself.
    running.wait().await.expect("a clean stop");
    let symbols = store.symbols().await.unwrap();
    let names: Vec<String> = symbols.iter().map(|s| s.symbol.to_string()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(
        names.iter().all(|n| n.as_str() < "SYM010"),
        "the first ten: {names:?}"
    );
    assert_eq!(
        metrics.snapshot().rejected.get("ingest/too_many_symbols"),
        Some(&20)
    );
}
