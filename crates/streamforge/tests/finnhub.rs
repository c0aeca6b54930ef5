//! The Finnhub provider against the Finnhub simulator on loopback: ticks
//! stored as sent, reconnects with resubscription, silence detection and
//! gap records, malformed frames, the symbol cap, 401, and a canary token
//! that must never show anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use streamforge::config::Config;
use streamforge::pipeline::{self, Role, Running};
use streamforge_model::{Symbol, Timestamp};
use streamforge_providers::finnhub::{HistoryPlan, Simulator, SimulatorConfig};
use streamforge_store::{Order, TickQuery};
use streamforge_testkit::{get_json, metric, wait_for};
use tokio_util::sync::CancellationToken;

const SYMBOLS: &[&str] = &["AAPL", "MSFT", "BINANCE:BTCUSDT"];

async fn simulator(f: impl FnOnce(&mut SimulatorConfig)) -> Simulator {
    let mut c = SimulatorConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: "right-token".into(),
        rate: 300.0,
        seed: Some(5),
        ping_every: Duration::from_millis(300),
        record: true,
        ..SimulatorConfig::default()
    };
    f(&mut c);
    Simulator::start(c).await.unwrap()
}

fn config(dir: &std::path::Path, sim: &Simulator) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.finnhub.token = streamforge_providers::Secret::new("right-token");
    c.finnhub.url = sim.url();
    c.finnhub.symbols = SYMBOLS.iter().map(|s| s.to_string()).collect();
    c.finnhub.silence = Duration::from_secs(1);
    c.finnhub.backoff_min = Duration::from_millis(50);
    c.finnhub.backoff_max = Duration::from_millis(200);
    c.persist.batch_timeout = Duration::from_millis(5);
    c.log.level = "warn".into();
    c
}

async fn start(c: &Config) -> (Running, CancellationToken) {
    let token = CancellationToken::new();
    let running = pipeline::start(c, Role::Run, token.clone()).await.unwrap();
    (running, token)
}

type TradeKey = (String, i64, u64, u64);

fn key(symbol: &str, ts_ms: i64, price: f64, size: f64) -> TradeKey {
    (symbol.to_string(), ts_ms, price.to_bits(), size.to_bits())
}

/// Every distinct trade the simulator sent.
fn sent_trades(sim: &Simulator) -> BTreeSet<TradeKey> {
    sim.log
        .lock()
        .sent
        .iter()
        .map(|t| key(&t.symbol, t.ts_ms, t.price, t.volume))
        .collect()
}

/// Every distinct trade the simulator's market made, sent or not.
fn made_trades(sim: &Simulator) -> BTreeSet<TradeKey> {
    sim.made()
        .iter()
        .map(|t| key(&t.symbol, t.ts_ms, t.price, t.volume))
        .collect()
}

async fn stored(running: &Running) -> BTreeSet<TradeKey> {
    let store = running.store.clone().unwrap();
    let mut out = BTreeSet::new();
    for s in SYMBOLS {
        let ticks = store
            .ticks(TickQuery {
                symbol: Symbol::parse(s).unwrap(),
                from: Timestamp::from_micros(0),
                to: Timestamp::now().saturating_add_micros(60_000_000),
                limit: 1_000_000,
                order: Order::Asc,
            })
            .await
            .unwrap();
        for t in ticks {
            assert_eq!(t.src_id(), "finnhub");
            out.insert(key(s, t.ts().as_millis(), t.price(), t.size()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_are_stored_as_sent_across_dropped_connections_with_gaps_recorded() {
    let sim = simulator(|c| {
        c.drop_every = Some(Duration::from_millis(1500));
        c.duplicate_every = Some(5);
        c.out_of_order_every = Some(3);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (running, token) = start(&config(dir.path(), &sim)).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("three connections", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 3).then_some(()) }
    })
    .await;
    // Stop sending; once every connection has ended, the log is final.
    sim.stop_and_wait().await;
    let sent = sent_trades(&sim);
    assert!(sent.len() > 300, "the simulator sent {} trades", sent.len());
    let got = wait_for(
        "every sent trade to be stored",
        Duration::from_secs(20),
        || {
            let (running, sent) = (&running, &sent);
            async move {
                let got = stored(running).await;
                (got.len() >= sent.len()).then_some(got)
            }
        },
    )
    .await;
    assert_eq!(got, sent, "stored exactly what was sent");
    assert!(sim.log.lock().duplicate_frames_sent > 0);
    assert!(
        running.metrics.snapshot().store.rows_deduplicated > 0,
        "duplicated frames were stored once"
    );
    // The exposition itself carries the per-symbol gauge Prometheus scrapes.
    let text = running.metrics.render();
    assert!(
        metric(
            &text,
            "streamforge_provider_symbol_last_trade_timestamp_seconds{provider=\"finnhub\",symbol=\"AAPL\"}"
        ) > 1.7e9,
        "per-symbol freshness is exported"
    );

    // Every connection subscribed every symbol (the newest may still be
    // sending its subscriptions while this reads the log).
    let subs = sim.log.lock().subscriptions.clone();
    let mut connections: BTreeSet<u64> = subs.iter().map(|(c, _)| *c).collect();
    connections.pop_last();
    assert!(connections.len() >= 2);
    for c in &connections {
        let mine: BTreeSet<&str> = subs
            .iter()
            .filter(|(x, _)| x == c)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(mine, SYMBOLS.iter().copied().collect(), "connection {c}");
    }
    // Each drop left a gap per symbol, with sane bounds (the last drop's
    // gap record may still be on its way to the store).
    let url = format!("{base}/api/v1/gaps?symbol=AAPL&from=0");
    let gaps = wait_for("a gap per drop", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let (status, gaps) = get_json(&url).await;
            assert_eq!(status, 200, "{gaps}");
            (gaps["gaps"].as_array().unwrap().len() >= 2).then_some(gaps)
        }
    })
    .await;
    let list = gaps["gaps"].as_array().unwrap();
    for g in list {
        assert_eq!(g["reason"], "disconnected");
        assert_eq!(g["provider"], "finnhub");
        assert!(g["seconds"].as_f64().unwrap() >= 0.0);
        let at = |k: &str| Timestamp::parse(g[k].as_str().unwrap()).unwrap();
        assert!(at("from") <= at("to"), "{g}");
    }
    let (_, all) = get_json(&format!("{base}/api/v1/gaps?from=0")).await;
    assert_eq!(
        all["count"].as_u64().unwrap(),
        3 * list.len() as u64,
        "{all}"
    );
    let stats = running.metrics.snapshot();
    let finnhub = &stats.providers["finnhub"];
    assert!(finnhub.reconnects >= 2, "{stats:?}");
    assert!(finnhub.gaps["disconnected"] >= 2, "{stats:?}");
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_replaced_within_the_window_and_leaves_a_silent_gap() {
    let sim = simulator(|c| c.silent_after = Some(Duration::from_millis(1200))).await;
    let dir = tempfile::tempdir().unwrap();
    let (running, token) = start(&config(dir.path(), &sim)).await;
    let base = format!("http://{}", running.http_addr);
    let gaps = wait_for("a silent gap", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let (_, g) = get_json(&format!("{base}/api/v1/gaps?symbol=MSFT&from=0")).await;
            (g["count"].as_u64().unwrap_or(0) >= 1).then_some(g)
        }
    })
    .await;
    let g = &gaps["gaps"][0];
    assert_eq!(g["reason"], "silent");
    let from = Timestamp::parse(g["from"].as_str().unwrap()).unwrap();
    let to = Timestamp::parse(g["to"].as_str().unwrap()).unwrap();
    let went_silent = sim.log.lock().went_silent[0].1;
    // The gap starts at the last message received, which the simulator sent
    // just before going silent.
    let lag = (from.as_micros() - went_silent.as_micros()).abs();
    assert!(
        lag < 300_000,
        "gap starts {lag} µs from the last message sent"
    );
    let secs = (to.as_micros() - from.as_micros()) as f64 / 1e6;
    assert!(
        (1.0..5.0).contains(&secs),
        "detected after the 1s window, replaced soon after: {secs}s"
    );
    let stats = running.metrics.snapshot();
    assert!(
        stats.providers["finnhub"].errors.get("silent") >= Some(&1),
        "{stats:?}"
    );
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_counted_and_the_symbol_cap_is_reported() {
    let sim = simulator(|c| {
        c.malformed_every = Some(4);
        c.max_symbols = 2;
        c.symbols = SYMBOLS.iter().map(|s| s.to_string()).collect();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &sim);
    c.finnhub.symbols.push("NOPE".into());
    let (running, token) = start(&c).await;
    wait_for("malformed frames counted", Duration::from_secs(30), || {
        let m = running.metrics.clone();
        async move {
            let s = m.snapshot();
            (s.rejected.get("ingest/malformed_frame") >= Some(&3)
                && s.providers.get("finnhub").is_some_and(|f| f.ticks > 50))
            .then_some(())
        }
    })
    .await;
    let stats = running.metrics.snapshot();
    let errors = &stats.providers["finnhub"].errors;
    assert!(errors.get("too_many_symbols") >= Some(&1), "{stats:?}");
    assert!(errors.get("invalid_symbol") >= Some(&1), "{stats:?}");
    // The capped symbol never got trades; the other two did.
    let base = format!("http://{}", running.http_addr);
    let (_, symbols) = get_json(&format!("{base}/api/v1/symbols")).await;
    let names: Vec<&str> = symbols["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["AAPL", "MSFT"], "{symbols}");
    token.cancel();
    running.wait().await.unwrap();
}

/// Everything a user or operator could see of a run that failed with a
/// canary token: logs (debug level), config print, metrics, readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_shows_in_logs_errors_metrics_or_responses() {
    const CANARY: &str = "canary-7f3a9c1e";
    let sim = simulator(|_| {}).await;
    let closed = streamforge_testkit::free_port();
    let urls = [
        sim.url(),                          // 401
        format!("ws://127.0.0.1:{closed}"), // connection refused
        format!("wss://{}", sim.addr),      // TLS handshake against plain TCP
    ];
    for url in urls {
        let dir = tempfile::tempdir().unwrap();
        let mut child = streamforge_testkit::process::Spawned::start(
            std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
                .args(["--log-level", "debug", "run", "--http-addr", "127.0.0.1:0"])
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--finnhub-url", &url])
                .env("FINNHUB_TOKEN", CANARY),
        );
        let base = child.http_base(Duration::from_secs(30)).await;
        let (_, ready) = wait_for("the API", Duration::from_secs(30), || {
            let base = base.clone();
            async move {
                let r = reqwest::get(format!("{base}/readyz")).await.ok()?;
                Some((r.status().as_u16(), r.text().await.ok()?))
            }
        })
        .await;
        // The provider has failed (and logged why) at least once.
        let metrics = wait_for("a provider error counted", Duration::from_secs(30), || {
            let base = base.clone();
            async move {
                let text = reqwest::get(format!("{base}/metrics"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                text.lines()
                    .any(|l| {
                        l.starts_with("streamforge_provider_errors_total{")
                            && l.contains("provider=\"finnhub\"")
                            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0)
                    })
                    .then_some(text)
            }
        })
        .await;
        let (_, ready_later) = get_json(&format!("{base}/readyz")).await;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.child.id().to_string()])
            .status();
        child.exit_within(Duration::from_secs(60)).await;
        let logs = child.output();
        assert!(
            logs.contains("finnhub"),
            "{url}: the provider ran and logged:\n{logs}"
        );
        for (what, text) in [
            ("logs", logs.as_str()),
            ("metrics", metrics.as_str()),
            ("readyz", ready.as_str()),
            ("readyz later", &ready_later.to_string()),
        ] {
            assert!(
                !text.contains(CANARY),
                "{url}: the token shows in {what}:\n{text}"
            );
        }
        assert!(
            metrics.contains("streamforge_provider_errors_total"),
            "{url}: failures counted"
        );
    }
    assert!(
        sim.log.lock().unauthorized >= 1,
        "the simulator refused the token"
    );
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
        .args(["config", "print"])
        .env("FINNHUB_TOKEN", CANARY)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("token = \"***\""), "{printed}");
    assert!(!printed.contains(CANARY));
}

const SESSION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../test_data/finnhub/session.ndjson.zst"
);

fn replay(file: &str, data_dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
        .args([
            "--log-level",
            "warn",
            "replay",
            file,
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

#[test]
fn replaying_the_recorded_session_twice_stores_nothing_twice() {
    use streamforge_providers::finnhub::FrameParser;
    use streamforge_providers::recording;

    // What the recording holds, parsed the way the provider parses it.
    let mut parser = FrameParser::default();
    let (mut ticks, mut malformed) = (0, 0);
    for f in recording::read(std::path::Path::new(SESSION)).unwrap() {
        let f = f.unwrap();
        match parser.parse(
            f.frame.as_bytes(),
            &Default::default(),
            f.received,
            f.received,
        ) {
            streamforge_providers::finnhub::Parsed::Trades { ticks: t, .. } => ticks += t.len(),
            streamforge_providers::finnhub::Parsed::Malformed(_) => malformed += 1,
            _ => {}
        }
    }
    assert!(
        ticks > 100 && malformed > 0,
        "{ticks} ticks, {malformed} malformed"
    );

    let dir = tempfile::tempdir().unwrap();
    let first = replay(SESSION, dir.path());
    assert!(first.status.success(), "{first:?}");
    let first = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.contains(&format!(
            "{ticks} ticks, {ticks} new rows stored, 0 already stored"
        )),
        "{first}"
    );
    let again = replay(SESSION, dir.path());
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.contains(&format!(
            "{ticks} ticks, 0 new rows stored, {ticks} already stored"
        )),
        "{again}"
    );
}

#[test]
fn a_damaged_recording_is_refused_with_the_line_named() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ndjson.zst");
    let mut enc = zstd::Encoder::new(std::fs::File::create(&path).unwrap(), 3).unwrap();
    enc.write_all(
        b"{\"received\":\"2026-11-28T10:00:00Z\",\"connection\":0,\"frame\":\"{\\\"type\\\":\\\"ping\\\"}\"}\nnot a frame\n",
    )
    .unwrap();
    enc.finish().unwrap();
    let out = replay(path.to_str().unwrap(), &dir.path().join("data"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.ndjson.zst, line 2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_every_frame_received() {
    use streamforge_providers::finnhub::{FrameParser, Parsed};
    use streamforge_providers::recording;

    let sim = simulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rec.ndjson.zst");
    let mut record = std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"));
    record
        .args(["--log-level", "warn", "record", "--duration", "2s", "--out"])
        .arg(&file)
        .args([
            "--finnhub-url",
            &sim.url(),
            "--finnhub-token",
            "right-token",
        ])
        .args(["--symbols", "AAPL,MSFT"]);
    let out = tokio::task::spawn_blocking(move || record.output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    sim.stop();
    let mut parser = FrameParser::default();
    let mut got = BTreeSet::new();
    let mut pings = 0;
    for f in recording::read(&file).unwrap() {
        let f = f.unwrap();
        match parser.parse(
            f.frame.as_bytes(),
            &Default::default(),
            f.received,
            f.received,
        ) {
            Parsed::Trades { ticks, .. } => {
                for t in ticks {
                    got.insert(key(
                        t.symbol().as_str(),
                        t.ts().as_millis(),
                        t.price(),
                        t.size(),
                    ));
                }
            }
            Parsed::Ping => pings += 1,
            other => panic!("{other:?}"),
        }
    }
    let sent = sent_trades(&sim);
    assert!(pings >= 1, "pings are recorded too");
    assert!(!sent.is_empty());
    // The recorder stops at its deadline; the simulator may have sent a
    // frame or two after it. Everything recorded was sent, and everything
    // sent before the last recorded trade was recorded.
    assert!(got.is_subset(&sent));
    let last = got.iter().map(|k| k.1).max().unwrap();
    // (Strictly before: the next frame may start in the same millisecond.)
    let before = |set: BTreeSet<TradeKey>| -> BTreeSet<TradeKey> {
        set.into_iter().filter(|k| k.1 < last).collect()
    };
    assert_eq!(before(got), before(sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_per_token_and_more_symbols_than_the_tokens_carry_fail_start_up() {
    let sim =
        simulator(|c| c.more_tokens = vec!["second-token".into(), "third-token".into()]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &sim);
    c.finnhub.max_symbols_per_connection = 1;
    // Three symbols, one a connection, two tokens: refused, saying why.
    c.finnhub.tokens = vec![streamforge_providers::Secret::new("second-token")];
    let refused = pipeline::start(&c, Role::Run, CancellationToken::new()).await;
    let err = match refused {
        Ok(_) => panic!("three connections started on two tokens"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("finnhub.tokens") && err.contains("3 connections"),
        "{err}"
    );
    // Three tokens: three connections, one on each, every symbol flows.
    c.finnhub.tokens = vec![
        streamforge_providers::Secret::new("second-token"),
        streamforge_providers::Secret::new("third-token"),
    ];
    let (running, token) = start(&c).await;
    let store = running.store.clone().unwrap();
    wait_for("every symbol stored", Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            let symbols = store.symbols().await.ok()?;
            (symbols.len() == SYMBOLS.len()).then_some(())
        }
    })
    .await;
    {
        let log = sim.log.lock();
        assert_eq!(log.second_connections, 0, "a token held two connections");
        assert_eq!(
            log.open_tokens.len(),
            3,
            "{:?} tokens in use",
            log.open_tokens.len()
        );
    }
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_refuses_a_second_connection_on_one_token() {
    let sim = simulator(|_| {}).await;
    let url = format!("{}/?token=right-token", sim.url());
    let (first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 429)
        }
        other => panic!("a second connection on one token: {:?}", other.map(|_| ())),
    }
    drop(first);
    wait_for("the token free again", Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            tokio_tungstenite::connect_async(&url)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    assert!(sim.log.lock().second_connections >= 1);
}

/// A paid plan's history heals every outage — drops, silence and the time
/// the process was stopped — so the store holds every trade the market
/// made, and the ledger adds up in every minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_and_downtime_heal_from_a_paid_history_and_the_ledger_adds_up() {
    let sim = simulator(|c| {
        c.drop_every = Some(Duration::from_millis(1200));
        c.silent_after = Some(Duration::from_millis(700));
        c.out_of_order_every = Some(3);
        c.history = HistoryPlan::Paid;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &sim);
    c.finnhub.history_interval = Duration::from_millis(5);
    let started = Timestamp::now();
    let (running, token) = start(&c).await;
    wait_for("three connections", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 3).then_some(()) }
    })
    .await;
    // A clean stop: the time until the next start is a downtime gap, and
    // the market goes on meanwhile.
    token.cancel();
    running.wait().await.unwrap();
    let stopped = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("three more connections", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 6).then_some(()) }
    })
    .await;
    sim.stop_feed().await;
    // The last outage may have had no trade after it (the feed stopped
    // first): its window never closed. Every trade up to each symbol's
    // last one sent must be stored.
    let sent = sent_trades(&sim);
    let last_sent: BTreeMap<String, i64> = sent.iter().fold(Default::default(), |mut m, k| {
        let e = m.entry(k.0.clone()).or_insert(k.1);
        *e = (*e).max(k.1);
        m
    });
    let made: BTreeSet<TradeKey> = made_trades(&sim)
        .into_iter()
        .filter(|k| last_sent.get(&k.0).is_some_and(|last| k.1 <= *last))
        .collect();
    assert!(
        made.len() > sent.len() + 50,
        "the market made trades that were not sent: {} made, {} sent",
        made.len(),
        sent.len()
    );
    // Every trade made is stored (or the test says which are not).
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let got = loop {
        let got = stored(&running).await;
        if got.len() >= made.len() || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if got != made {
        let missing: Vec<_> = made.difference(&got).take(10).collect();
        let extra: Vec<_> = got.difference(&made).take(10).collect();
        let (_, gaps) = get_json(&format!("{base}/api/v1/gaps?from=0&symbol=AAPL")).await;
        panic!(
            "{} made, {} stored; missing {} e.g. {missing:?}; not made {} e.g. {extra:?}; AAPL gaps {gaps}",
            made.len(),
            got.len(),
            made.difference(&got).count(),
            got.difference(&made).count()
        );
    }
    assert_eq!(got, made, "stored every trade the market made, once each");

    // Once each: the market makes identical trades (same millisecond,
    // price and size) at times, so rows are counted per trade.
    let store = running.store.clone().unwrap();
    let mut rows: BTreeMap<TradeKey, usize> = BTreeMap::new();
    for s in SYMBOLS {
        let ticks = store
            .ticks(TickQuery {
                symbol: Symbol::parse(s).unwrap(),
                from: Timestamp::from_micros(0),
                to: Timestamp::now().saturating_add_micros(60_000_000),
                limit: 1_000_000,
                order: Order::Asc,
            })
            .await
            .unwrap();
        for t in ticks {
            *rows
                .entry(key(s, t.ts().as_millis(), t.price(), t.size()))
                .or_default() += 1;
        }
    }
    let mut made_n: BTreeMap<TradeKey, usize> = BTreeMap::new();
    for t in sim.made() {
        let k = key(&t.symbol, t.ts_ms, t.price, t.volume);
        if made.contains(&k) {
            *made_n.entry(k).or_default() += 1;
        }
    }
    let differ: Vec<_> = made_n
        .iter()
        .filter(|(k, n)| rows.get(*k) != Some(*n))
        .take(5)
        .map(|(k, n)| (k, n, rows.get(k)))
        .collect();
    assert!(differ.is_empty(), "(trade, made, stored): {differ:?}");
    assert_eq!(rows.values().sum::<usize>(), made_n.values().sum::<usize>());
    let (_, all) = get_json(&format!("{base}/api/v1/gaps?from=0")).await;
    let gaps = all["gaps"].as_array().unwrap();
    assert!(gaps.iter().all(|g| g["status"] != "unrecoverable"), "{all}");
    let healed: Vec<_> = gaps.iter().filter(|g| g["status"] == "healed").collect();
    let backfilled: u64 = healed
        .iter()
        .map(|g| g["backfilled"].as_u64().unwrap())
        .sum();
    assert!(healed.len() >= 3 * SYMBOLS.len(), "{all}");
    assert!(backfilled > 50, "{all}");
    for s in SYMBOLS {
        let downtime = gaps
            .iter()
            .find(|g| g["reason"] == "downtime" && g["symbol"] == *s)
            .unwrap_or_else(|| panic!("a downtime gap of {s}: {all}"));
        assert_eq!(downtime["status"], "healed", "{downtime}");
        let from = Timestamp::parse(downtime["from"].as_str().unwrap()).unwrap();
        assert!(from <= stopped, "{downtime}");
    }
    assert!(sim.log.lock().rest_requests > 0);

    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    for s in SYMBOLS {
        let url = format!(
            "{base}/api/v1/completeness?symbol={}&from={}",
            s.replace(':', "%3A"),
            started.as_millis() - 60_000
        );
        let unbalanced = |ledger: &serde_json::Value| -> Vec<serde_json::Value> {
            ledger["minutes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| {
                    n(m, "received")
                        != n(m, "rejected")
                            + n(m, "duplicates")
                            + n(m, "stored_live")
                            + n(m, "stored_backfill")
                })
                .cloned()
                .collect()
        };
        // Persist applies the counts a moment after ingest sends them.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let ledger = loop {
            let (status, ledger) = get_json(&url).await;
            assert_eq!(status, 200, "{ledger}");
            let off = unbalanced(&ledger);
            if off.is_empty() {
                break ledger;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{s}: the counts of these minutes do not add up: {off:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let t = &ledger["totals"];
        assert!(n(t, "stored_backfill") > 0, "{s}: {ledger}");
        assert_eq!(
            n(t, "stored_live") + n(t, "stored_backfill"),
            made_n
                .iter()
                .filter(|(k, _)| k.0 == *s)
                .map(|(_, n)| *n as u64)
                .sum::<u64>(),
            "{s}: {ledger}"
        );
    }
    token.cancel();
    running.wait().await.unwrap();
}

/// A free key's history answers 403: the gap is `unrecoverable` and says
/// why, and the feed goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_keys_history_leaves_the_gap_unrecoverable_with_the_reason() {
    let sim = simulator(|c| c.drop_every = Some(Duration::from_millis(800))).await;
    let dir = tempfile::tempdir().unwrap();
    let (running, token) = start(&config(dir.path(), &sim)).await;
    let base = format!("http://{}", running.http_addr);
    let gap = wait_for("an unrecoverable gap", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let (_, all) = get_json(&format!("{base}/api/v1/gaps?symbol=AAPL&from=0")).await;
            all["gaps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["status"] == "unrecoverable")
                .cloned()
        }
    })
    .await;
    let detail = gap["detail"].as_str().unwrap();
    assert!(
        detail.contains("HTTP 403") && detail.contains("paid plan"),
        "{gap}"
    );
    assert!(!detail.contains("right-token"), "{gap}");
    token.cancel();
    running.wait().await.unwrap();
    sim.stop_and_wait().await;
}
