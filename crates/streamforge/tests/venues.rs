//! The keyless venues (Binance, Coinbase) against their simulators on
//! loopback, through the embedded pipeline into the store: every trade
//! sent is stored once (duplicates, trades out of order, a connection
//! renewed on the venue's shutdown notice), jumps in trade ids and
//! heartbeats ahead of the trades are `sequence` gaps, drops and silence
//! are gaps, and several providers run at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use streamforge::config::Config;
use streamforge::pipeline::{self, Role, Running};
use streamforge_model::{Symbol, TickId, Timestamp};
use streamforge_providers::venue::simulator::{SimConfig, SimServer};
use streamforge_providers::{binance, coinbase};
use streamforge_store::{Order, TickQuery};
use streamforge_testkit::{get_json, wait_for};
use tokio_util::sync::CancellationToken;

async fn binance_sim(f: impl FnOnce(&mut SimConfig)) -> SimServer {
    let mut c = SimConfig {
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
        rate: 200.0,
        seed: Some(11),
        slice: Duration::from_millis(20),
        ping_every: Duration::from_millis(300),
        record: true,
        ..SimConfig::default()
    };
    f(&mut c);
    binance::simulator::start(c).await.unwrap()
}

async fn coinbase_sim(f: impl FnOnce(&mut SimConfig)) -> SimServer {
    let mut c = SimConfig {
        symbols: vec!["BTC-USD".into(), "ETH-USD".into()],
        rate: 200.0,
        seed: Some(12),
        slice: Duration::from_millis(20),
        heartbeat_every: Duration::from_millis(200),
        record: true,
        ..SimConfig::default()
    };
    f(&mut c);
    coinbase::simulator::start(c).await.unwrap()
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    for v in [&mut c.binance, &mut c.coinbase] {
        v.silence = Duration::from_secs(1);
        v.backoff_min = Duration::from_millis(50);
        v.backoff_max = Duration::from_millis(200);
        v.overlap = Duration::from_millis(200);
    }
    c.persist.batch_timeout = Duration::from_millis(5);
    c.log.level = "warn".into();
    c
}

async fn start(c: &Config) -> (Running, CancellationToken) {
    let token = CancellationToken::new();
    let running = pipeline::start(c, Role::Run, token.clone()).await.unwrap();
    (running, token)
}

/// The tick id of each distinct trade `sim` sent, per symbol.
fn sent_ids(sim: &SimServer, provider: &str) -> BTreeMap<Symbol, BTreeSet<TickId>> {
    let mut out: BTreeMap<Symbol, BTreeSet<TickId>> = BTreeMap::new();
    for (_, t) in &sim.log.lock().sent {
        out.entry(t.symbol.clone())
            .or_default()
            .insert(TickId::from_source(provider, &t.symbol, &t.id.to_string()));
    }
    out
}

/// Every stored tick id, per symbol; each stored tick is checked.
async fn stored_ids(
    running: &Running,
    symbols: impl Iterator<Item = Symbol>,
    provider: &str,
) -> BTreeMap<Symbol, BTreeSet<TickId>> {
    let store = running.store.clone().unwrap();
    let mut out = BTreeMap::new();
    for s in symbols {
        let ticks = store
            .ticks(TickQuery {
                symbol: s.clone(),
                from: Timestamp::from_micros(0),
                to: Timestamp::now().saturating_add_micros(60_000_000),
                limit: 1_000_000,
                order: Order::Asc,
            })
            .await
            .unwrap();
        let ids: BTreeSet<TickId> = ticks
            .iter()
            .inspect(|t| assert_eq!(t.src_id(), provider))
            .map(|t| t.tick_id())
            .collect();
        assert_eq!(ids.len(), ticks.len(), "{s}: a trade stored twice");
        out.insert(s, ids);
    }
    out
}

/// Waits until the store holds at least what was sent, then returns it.
async fn stored_as_sent(
    running: &Running,
    sent: &BTreeMap<Symbol, BTreeSet<TickId>>,
    provider: &str,
) -> BTreeMap<Symbol, BTreeSet<TickId>> {
    let total: usize = sent.values().map(BTreeSet::len).sum();
    wait_for(
        "every sent trade to be stored",
        Duration::from_secs(30),
        || async move {
            let got = stored_ids(running, sent.keys().cloned(), provider).await;
            (got.values().map(BTreeSet::len).sum::<usize>() >= total).then_some(got)
        },
    )
    .await
}

async fn gaps(base: &str, reason: &str) -> Vec<serde_json::Value> {
    let (status, body) = get_json(&format!("{base}/api/v1/gaps?from=0")).await;
    assert_eq!(status, 200, "{body}");
    body["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["reason"] == reason)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_trades_are_stored_once_across_duplicates_reordering_and_renewals() {
    let sim = binance_sim(|c| {
        c.duplicate_every = Some(7);
        c.out_of_order_every = Some(5);
        // The 24 h limit, shortened: a notice, then the server closes.
        c.close_after = Some(Duration::from_millis(1_500));
        c.notice_lead = Duration::from_millis(700);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["binance".into()];
    c.binance.ws_url = Some(format!("ws://{}", sim.addr));
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("three renewals", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 4).then_some(()) }
    })
    .await;
    let stats = running.metrics.snapshot();
    assert_eq!(
        stats.providers["binance"].reconnects, 0,
        "renewed, not reconnected"
    );
    // Stopping the venue is an outage of its own; those before are not.
    let stopped_at = Timestamp::now();
    sim.stop_and_wait().await;
    let sent = sent_ids(&sim, "binance");
    assert_eq!(sent.len(), 2, "both symbols traded");
    let got = stored_as_sent(&running, &sent, "binance").await;
    assert_eq!(got, sent, "stored exactly what was sent, once each");

    // Renewed before the server closed: nothing was lost, so the stored
    // ids of each symbol are every id from the first to the last.
    let mut ids: BTreeMap<Symbol, Vec<u64>> = BTreeMap::new();
    {
        let log = sim.log.lock();
        assert!(
            log.shutdown_notices_sent >= 3 && log.duplicates_sent > 0 && log.out_of_order_sent > 0
        );
        for (_, t) in &log.sent {
            ids.entry(t.symbol.clone()).or_default().push(t.id);
        }
    }
    for (s, mut v) in ids {
        v.sort_unstable();
        v.dedup();
        assert_eq!(
            v.last().unwrap() - v.first().unwrap() + 1,
            v.len() as u64,
            "{s}: an id is missing across the renewals"
        );
    }
    let outages: Vec<_> = gaps(&base, "disconnected")
        .await
        .into_iter()
        .filter(|g| Timestamp::parse(g["from"].as_str().unwrap()).unwrap() < stopped_at)
        .collect();
    assert!(outages.is_empty(), "a renewal is no outage: {outages:?}");
    assert!(
        gaps(&base, "sequence").await.is_empty(),
        "reordering is no gap"
    );
    let stats = running.metrics.snapshot();
    assert!(stats.store.rows_deduplicated > 0, "{stats:?}");
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_trade_ids_are_sequence_gaps_and_drops_are_outages() {
    let sim = binance_sim(|c| {
        c.skip_every = Some(25);
        c.drop_every = Some(Duration::from_millis(1_200));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["binance".into()];
    c.binance.ws_url = Some(format!("ws://{}", sim.addr));
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("two drops", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 3).then_some(()) }
    })
    .await;
    sim.stop_and_wait().await;
    let sent = sent_ids(&sim, "binance");
    let got = stored_as_sent(&running, &sent, "binance").await;
    assert_eq!(got, sent);
    let skipped = sim.log.lock().skipped.len();
    assert!(skipped >= 4, "{skipped} skipped");
    // A skip that came right before a drop is inside the outage: every
    // other one is a sequence gap of its symbol.
    let sequence = wait_for("sequence gaps", Duration::from_secs(10), || {
        let base = base.clone();
        async move {
            let g = gaps(&base, "sequence").await;
            (g.len() + 2 * 3 >= skipped).then_some(g)
        }
    })
    .await;
    for g in &sequence {
        assert_eq!(g["provider"], "binance");
        let at = |k: &str| Timestamp::parse(g[k].as_str().unwrap()).unwrap();
        assert!(at("from") <= at("to"), "{g}");
    }
    let outages = gaps(&base, "disconnected").await;
    assert!(
        outages.len() >= 2 * 2,
        "a gap per symbol per drop: {outages:?}"
    );
    let stats = running.metrics.snapshot();
    assert!(stats.providers["binance"].gaps["sequence"] as usize >= sequence.len());
    assert!(stats.providers["binance"].reconnects >= 2);
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_heartbeats_ahead_of_the_trades_are_gaps_and_silence_is_noticed() {
    let sim = coinbase_sim(|c| {
        c.skip_every = Some(30);
        c.silent_after = Some(Duration::from_millis(1_500));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["coinbase".into()];
    c.coinbase.ws_url = Some(format!("ws://{}", sim.addr));
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("a silent gap", Duration::from_secs(30), || {
        let base = base.clone();
        async move { (!gaps(&base, "silent").await.is_empty()).then_some(()) }
    })
    .await;
    sim.stop_and_wait().await;
    let sent = sent_ids(&sim, "coinbase");
    let got = stored_as_sent(&running, &sent, "coinbase").await;
    assert_eq!(got, sent);
    assert!(!sim.log.lock().skipped.is_empty());
    let sequence = gaps(&base, "sequence").await;
    assert!(!sequence.is_empty(), "a skipped id is a sequence gap");
    assert!(sequence.iter().all(|g| g["provider"] == "coinbase"));
    let (_, symbols) = get_json(&format!("{base}/api/v1/symbols")).await;
    let names: BTreeSet<&str> = symbols["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["COINBASE:BTC-USD", "COINBASE:ETH-USD"])
    );
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_providers_run_at_once_each_on_its_own_symbols() {
    let b = binance_sim(|_| {}).await;
    let cb = coinbase_sim(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["binance".into(), "coinbase".into()];
    c.synthetic.symbols = vec!["BINANCE:ETHUSDT".into(), "COINBASE:BTC-USD".into()];
    c.binance.ws_url = Some(format!("ws://{}", b.addr));
    c.coinbase.ws_url = Some(format!("ws://{}", cb.addr));
    c.validate().unwrap();
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("both venues' trades", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let (_, body) = get_json(&format!("{base}/api/v1/symbols")).await;
            let n = body["symbols"].as_array().map_or(0, Vec::len);
            (n == 2).then_some(())
        }
    })
    .await;
    let subs: BTreeSet<String> = b
        .log
        .lock()
        .subscriptions
        .iter()
        .chain(cb.log.lock().subscriptions.iter())
        .map(|(_, s)| s.clone())
        .collect();
    assert_eq!(subs, BTreeSet::from(["ETHUSDT".into(), "BTC-USD".into()]));
    let (_, tick) = get_json(&format!("{base}/api/v1/quotes/COINBASE:BTC-USD/latest")).await;
    assert_eq!(tick["src_id"], "coinbase", "{tick}");
    assert_eq!(tick["exchange"], "COINBASE", "{tick}");
    token.cancel();
    running.wait().await.unwrap();
    b.stop();
    cb.stop();
}

#[test]
fn an_unknown_provider_or_a_foreign_symbol_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["kraken".into()];
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.starts_with("providers:") && e.contains("binance, coinbase"),
        "{e}"
    );
    c.providers = vec!["binance".into(), "binance".into()];
    assert!(c.validate().unwrap_err().to_string().contains("twice"));
    c.providers = vec!["coinbase".into()];
    c.coinbase.symbols = vec!["BTCUSDT".into()];
    let e = streamforge_providers::build_providers(
        &c.provider_settings(),
        Default::default(),
        &streamforge_telemetry::Metrics::new(),
        &streamforge_telemetry::Health::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("coinbase.symbols") && e.contains("BTC-USD"),
        "{e}"
    );
}

/// The gaps of the store, every status.
async fn all_gaps(base: &str) -> Vec<serde_json::Value> {
    let (status, body) = get_json(&format!("{base}/api/v1/gaps?from=0")).await;
    assert_eq!(status, 200, "{body}");
    body["gaps"].as_array().unwrap().clone()
}

/// The tick ids of every trade `sim` made of each symbol between the
/// first and the last id it sent.
fn made_between_sent(sim: &SimServer, provider: &str) -> BTreeMap<Symbol, BTreeSet<TickId>> {
    let log = sim.log.lock();
    let mut span: BTreeMap<Symbol, (u64, u64)> = BTreeMap::new();
    for (_, t) in &log.sent {
        let e = span.entry(t.symbol.clone()).or_insert((t.id, t.id));
        e.0 = e.0.min(t.id);
        e.1 = e.1.max(t.id);
    }
    drop(log);
    let made = sim.made();
    span.into_iter()
        .map(|(s, (first, last))| {
            let ids = made[&s]
                .iter()
                .filter(|t| (first..=last).contains(&t.id))
                .map(|t| TickId::from_source(provider, &s, &t.id.to_string()))
                .collect();
            (s, ids)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_gaps_heal_from_the_history_through_its_rate_limits() {
    let sim = binance_sim(|c| {
        c.skip_every = Some(20);
        c.drop_every = Some(Duration::from_millis(1_200));
        c.rest_429_every = Some(3);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["binance".into()];
    c.binance.ws_url = Some(format!("ws://{}", sim.addr));
    c.binance.rest_url = Some(format!("http://{}", sim.rest_addr));
    c.binance.history_interval = Duration::from_millis(10);
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("two drops", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 3).then_some(()) }
    })
    .await;
    // No more live trades; the history still answers.
    sim.stop_feed();
    let gaps = wait_for(
        "every gap with known ids to heal",
        Duration::from_secs(30),
        || {
            let base = base.clone();
            async move {
                let gaps = all_gaps(&base).await;
                let with_ids: Vec<_> = gaps.iter().filter(|g| g["last_id"].is_u64()).collect();
                (with_ids.len() >= 4
                    && with_ids
                        .iter()
                        .all(|g| g["status"] != "open" && g["status"] != "healing"))
                .then_some(gaps)
            }
        },
    )
    .await;
    for g in gaps.iter().filter(|g| g["last_id"].is_u64()) {
        assert_eq!(g["status"], "healed", "{g}");
        let (first, last) = (
            g["first_id"].as_u64().unwrap(),
            g["last_id"].as_u64().unwrap(),
        );
        assert_eq!(g["backfilled"].as_u64().unwrap(), last + 1 - first, "{g}");
    }
    assert!(
        gaps.iter().any(|g| g["reason"] == "sequence")
            && gaps.iter().any(|g| g["reason"] == "disconnected"),
        "{gaps:?}"
    );
    // Every trade the venue made from the first sent to the last is stored, once.
    let expected = made_between_sent(&sim, "binance");
    let got = stored_as_sent(&running, &expected, "binance").await;
    assert_eq!(got, expected);
    {
        let log = sim.log.lock();
        assert!(
            log.rest_rate_limited > 0 && !log.skipped.is_empty(),
            "{log:?}"
        );
    }
    let stats = running.metrics.snapshot();
    let b = &stats.providers["binance"];
    assert!(b.backfilled > 0 && b.heals["healed"] >= 4, "{b:?}");
    assert!(b.errors["rate_limited"] > 0, "{b:?}");
    // Candles over healed gaps are complete again: only a gap still open
    // (the outage when the feed stopped, whose extent is unknown) leaves
    // its candle incomplete.
    let (_, page) = get_json(&format!(
        "{base}/api/v1/candles/BINANCE:BTCUSDT?interval=1s&from=0&limit=10000"
    ))
    .await;
    let listed = page["gaps"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .all(|g| g["status"] == "open" && g["last_id"].is_null()),
        "only gaps that cannot heal yet are listed: {page}"
    );
    let healed: Vec<(i64, i64)> = gaps
        .iter()
        .filter(|g| g["status"] == "healed")
        .map(|g| {
            let t = |k: &str| {
                Timestamp::parse(g[k].as_str().unwrap())
                    .unwrap()
                    .as_micros()
            };
            (t("from"), t("to"))
        })
        .collect();
    let mut over_healed = 0;
    for c in page["candles"].as_array().unwrap() {
        let start = Timestamp::parse(c["start"].as_str().unwrap())
            .unwrap()
            .as_micros();
        let overlaps = healed
            .iter()
            .any(|(from, to)| *from < start + 1_000_000 && *to >= start);
        if overlaps && c["gap_ids"].as_array().is_none_or(|ids| ids.is_empty()) {
            assert_eq!(c["complete"], true, "{c}");
            over_healed += 1;
        }
    }
    assert!(over_healed > 0, "a candle over a healed gap: {page}");
    // The ledger proves it minute by minute: no id the venue made is missing.
    for symbol in ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"] {
        let (status, ledger) = get_json(&format!(
            "{base}/api/v1/completeness?symbol={symbol}&from={}",
            Timestamp::now().as_millis() - 600_000
        ))
        .await;
        assert_eq!(status, 200, "{ledger}");
        let t = &ledger["totals"];
        assert_eq!(t["ids_missing"], 0, "{ledger}");
        assert!(t["stored_backfill"].as_u64().unwrap() > 0, "{ledger}");
        assert_eq!(
            t["ids_stored"].as_u64().unwrap(),
            t["stored_live"].as_u64().unwrap() + t["stored_backfill"].as_u64().unwrap(),
            "every stored trade of a venue has its id: {ledger}"
        );
        assert!(t["minutes"].as_u64().unwrap() >= 1, "{ledger}");
    }
    token.cancel();
    running.wait().await.unwrap();
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_needs_a_key_leaves_the_gap_unrecoverable_with_the_reason() {
    let sim = coinbase_sim(|c| {
        c.skip_every = Some(15);
        c.rest_status = Some(403);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["coinbase".into()];
    c.coinbase.ws_url = Some(format!("ws://{}", sim.addr));
    c.coinbase.rest_url = Some(format!("http://{}", sim.rest_addr));
    c.coinbase.history_interval = Duration::from_millis(10);
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    let gap = wait_for("an unrecoverable gap", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            all_gaps(&base)
                .await
                .into_iter()
                .find(|g| g["status"] == "unrecoverable")
        }
    })
    .await;
    assert_eq!(gap["reason"], "sequence");
    let detail = gap["detail"].as_str().unwrap();
    assert!(
        detail.contains("HTTP 403") && detail.contains("API key"),
        "{detail}"
    );
    assert_eq!(gap["backfilled"], 0);
    // The ledger shows what is missing, and where.
    let symbol = gap["symbol"].as_str().unwrap().to_string();
    let ledger = wait_for("the ledger to miss ids", Duration::from_secs(10), || {
        let (base, symbol) = (base.clone(), symbol.clone());
        async move {
            let (status, ledger) = get_json(&format!(
                "{base}/api/v1/completeness?symbol={symbol}&from={}",
                Timestamp::now().as_millis() - 600_000
            ))
            .await;
            assert_eq!(status, 200, "{ledger}");
            (ledger["totals"]["ids_missing"].as_u64().unwrap() > 0).then_some(ledger)
        }
    })
    .await;
    let incomplete = ledger["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["complete"] == false)
        .count();
    assert!(incomplete >= 1, "{ledger}");
    assert_eq!(ledger["totals"]["stored_backfill"], 0, "{ledger}");
    let (status, refused) = get_json(&format!("{base}/api/v1/completeness?from=0")).await;
    assert_eq!(
        (status, refused["parameter"].as_str()),
        (400, Some("symbol")),
        "{refused}"
    );
    let (status, day) = get_json(&format!(
        "{base}/api/v1/completeness?symbol={symbol}&from=0"
    ))
    .await;
    assert_eq!(status, 200, "{day}");
    let answered = |k: &str| {
        Timestamp::parse(day[k].as_str().unwrap())
            .unwrap()
            .as_micros()
    };
    assert_eq!(
        answered("to") - answered("from"),
        24 * 3_600 * 1_000_000,
        "the last 24 h: {day}"
    );
    let stats = running.metrics.snapshot();
    assert!(stats.providers["coinbase"].heals["unrecoverable"] >= 1);
    assert!(stats.providers["coinbase"].errors["history"] >= 1);
    token.cancel();
    running.wait().await.unwrap();
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_gaps_heal_paging_down_from_the_last_id() {
    let sim = coinbase_sim(|c| {
        c.skip_every = Some(10);
        c.out_of_order_every = Some(7);
        c.drop_every = Some(Duration::from_millis(1_500));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["coinbase".into()];
    c.coinbase.ws_url = Some(format!("ws://{}", sim.addr));
    c.coinbase.rest_url = Some(format!("http://{}", sim.rest_addr));
    c.coinbase.history_interval = Duration::from_millis(10);
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("a drop", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 2).then_some(()) }
    })
    .await;
    sim.stop_feed();
    wait_for(
        "every gap with known ids to heal",
        Duration::from_secs(30),
        || {
            let base = base.clone();
            async move {
                let gaps = all_gaps(&base).await;
                let with_ids: Vec<_> = gaps.iter().filter(|g| g["last_id"].is_u64()).collect();
                (!with_ids.is_empty() && with_ids.iter().all(|g| g["status"] == "healed"))
                    .then_some(())
            }
        },
    )
    .await;
    let expected = made_between_sent(&sim, "coinbase");
    let got = stored_as_sent(&running, &expected, "coinbase").await;
    assert_eq!(got, expected);
    token.cancel();
    running.wait().await.unwrap();
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_downtime_and_the_unhealed_gaps_heal() {
    let sim = binance_sim(|c| c.skip_every = Some(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["binance".into()];
    c.binance.ws_url = Some(format!("ws://{}", sim.addr));
    c.binance.rest_url = Some(format!("http://{}", sim.rest_addr));
    c.binance.history_interval = Duration::from_millis(10);
    // The first run heals nothing: its gaps stay open in the store.
    c.binance.history = false;
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("sequence gaps", Duration::from_secs(30), || {
        let base = base.clone();
        async move { (gaps(&base, "sequence").await.len() >= 2).then_some(()) }
    })
    .await;
    token.cancel();
    running.wait().await.unwrap();
    let sent_before = sim.log.lock().sent.len();
    // Down for a while; the venue trades on.
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.binance.history = true;
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("trades after the restart", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().sent.len() > sent_before + 100).then_some(()) }
    })
    .await;
    sim.stop_feed();
    let all = wait_for(
        "the last run's gaps to heal",
        Duration::from_secs(30),
        || {
            let base = base.clone();
            async move {
                let gaps = all_gaps(&base).await;
                let downtime = gaps.iter().filter(|g| g["reason"] == "downtime").count();
                let done = gaps
                    .iter()
                    .filter(|g| g["reason"] != "downtime" || g["last_id"].is_u64())
                    .all(|g| g["status"] == "healed");
                (downtime >= 2 && done).then_some(gaps)
            }
        },
    )
    .await;
    for g in all.iter().filter(|g| g["reason"] == "downtime") {
        // From the last trade of the first run to the first of the second.
        assert!(g["seconds"].as_f64().unwrap() >= 0.8, "{g}");
        assert_eq!(g["status"], "healed", "{g}");
        assert!(g["backfilled"].as_u64().unwrap() > 0, "{g}");
    }
    let expected = made_between_sent(&sim, "binance");
    let got = stored_as_sent(&running, &expected, "binance").await;
    assert_eq!(got, expected, "every trade across the restart, once");
    token.cancel();
    running.wait().await.unwrap();
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_time_since_the_last_stored_trade_is_a_gap_that_heals() {
    let sim = binance_sim(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["binance".into()];
    c.binance.ws_url = Some(format!("ws://{}", sim.addr));
    c.binance.rest_url = Some(format!("http://{}", sim.rest_addr));
    c.binance.history_interval = Duration::from_millis(10);
    let (running, token) = start(&c).await;
    wait_for("trades", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().sent.len() > 200).then_some(()) }
    })
    .await;
    token.cancel();
    running.wait().await.unwrap();
    // As after a crash: the stop left no record.
    let db = rusqlite::Connection::open(dir.path().join("streamforge.db")).unwrap();
    let removed = db
        .execute("DELETE FROM gaps WHERE reason = 'downtime'", [])
        .unwrap();
    assert_eq!(removed, 2, "a clean stop records one per symbol");
    drop(db);
    let sent_before = sim.log.lock().sent.len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("trades after the restart", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().sent.len() > sent_before + 100).then_some(()) }
    })
    .await;
    sim.stop_feed();
    let downtime = wait_for(
        "the crash's downtime to heal",
        Duration::from_secs(30),
        || {
            let base = base.clone();
            async move {
                let d = gaps(&base, "downtime").await;
                (d.len() == 2 && d.iter().all(|g| g["status"] == "healed")).then_some(d)
            }
        },
    )
    .await;
    for g in &downtime {
        assert!(g["seconds"].as_f64().unwrap() >= 0.6, "{g}");
        assert!(g["backfilled"].as_u64().unwrap() > 0, "{g}");
    }
    let expected = made_between_sent(&sim, "binance");
    let got = stored_as_sent(&running, &expected, "binance").await;
    assert_eq!(got, expected, "every trade across the crash, once");
    token.cancel();
    running.wait().await.unwrap();
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_with_no_trade_between_them_are_one_gap_that_heals() {
    // Few trades and frequent drops: a symbol often sees none between two.
    let sim = binance_sim(|c| {
        c.rate = 8.0;
        c.drop_every = Some(Duration::from_millis(250));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers = vec!["binance".into()];
    c.binance.ws_url = Some(format!("ws://{}", sim.addr));
    c.binance.rest_url = Some(format!("http://{}", sim.rest_addr));
    c.binance.history_interval = Duration::from_millis(10);
    c.binance.backoff_min = Duration::from_millis(20);
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("many drops and trades", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move {
            let log = log.lock();
            (log.connections >= 12 && log.sent.len() >= 20).then_some(())
        }
    })
    .await;
    sim.stop_feed();
    let all = wait_for("the outages to heal", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let gaps = all_gaps(&base).await;
            gaps.iter()
                .filter(|g| g["last_id"].is_u64())
                .all(|g| g["status"] == "healed")
                .then_some(gaps)
        }
    })
    .await;
    // At most the outage the stop began is still open, per symbol.
    for symbol in ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"] {
        let open = all
            .iter()
            .filter(|g| g["symbol"] == symbol && g["status"] == "open")
            .count();
        assert!(open <= 1, "{symbol}: {open} open gaps: {all:?}");
    }
    let expected = made_between_sent(&sim, "binance");
    let got = stored_as_sent(&running, &expected, "binance").await;
    assert_eq!(got, expected);
    token.cancel();
    running.wait().await.unwrap();
    sim.stop();
}

/// Drives `sim` (already faulty) until `connections` were made, stops its
/// feed, waits for every gap with known ids to heal, then checks the
/// completeness ledger minute by minute: the trades stored are the trades
/// the venue made (from the first sent to the last), no id is missing,
/// and ingest's counts add up: received = rejected + duplicates + stored
/// live + stored from the history.
async fn every_fault_adds_up(sim: SimServer, provider: &str, connections: u64, mut c: Config) {
    let dir = tempfile::tempdir().unwrap();
    c.data_dir = dir.path().to_path_buf();
    c.providers = vec![provider.into()];
    let venue = if provider == "binance" {
        &mut c.binance
    } else {
        &mut c.coinbase
    };
    venue.ws_url = Some(format!("ws://{}", sim.addr));
    venue.rest_url = Some(format!("http://{}", sim.rest_addr));
    venue.history_interval = Duration::from_millis(10);
    let started = Timestamp::now();
    let (running, token) = start(&c).await;
    let base = format!("http://{}", running.http_addr);
    wait_for("the drops", Duration::from_secs(40), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= connections).then_some(()) }
    })
    .await;
    sim.stop_feed();
    wait_for(
        "every gap with known ids to heal",
        Duration::from_secs(40),
        || {
            let base = base.clone();
            async move {
                let gaps = all_gaps(&base).await;
                let with_ids: Vec<_> = gaps.iter().filter(|g| g["last_id"].is_u64()).collect();
                (!with_ids.is_empty() && with_ids.iter().all(|g| g["status"] == "healed"))
                    .then_some(())
            }
        },
    )
    .await;
    let expected = made_between_sent(&sim, provider);
    let got = stored_as_sent(&running, &expected, provider).await;
    assert_eq!(
        got, expected,
        "stored exactly what the venue made, once each"
    );

    // What the venue made per symbol and minute, of the ids from the first sent to the last.
    let mut made_per_minute: BTreeMap<(Symbol, i64), u64> = BTreeMap::new();
    let span: BTreeMap<Symbol, (u64, u64)> = {
        let log = sim.log.lock();
        assert!(
            log.duplicates_sent > 0
                && log.out_of_order_sent > 0
                && log.malformed_sent > 0
                && !log.skipped.is_empty()
                && !log.corrupted.is_empty()
                && log.rest_rate_limited > 0,
            "every fault happened: {log:?}"
        );
        let mut span = BTreeMap::new();
        for (_, t) in &log.sent {
            let e = span.entry(t.symbol.clone()).or_insert((t.id, t.id));
            e.0 = e.0.min(t.id);
            e.1 = e.1.max(t.id);
        }
        span
    };
    for (symbol, trades) in sim.made() {
        let Some((first, last)) = span.get(&symbol) else {
            continue;
        };
        for t in trades.iter().filter(|t| (*first..=*last).contains(&t.id)) {
            *made_per_minute
                .entry((symbol.clone(), t.ts.as_micros().div_euclid(60_000_000)))
                .or_default() += 1;
        }
    }
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    let mut rejected = 0;
    let mut duplicates = 0;
    for symbol in span.keys() {
        // Ingest's counts travel with the ticks; the last duplicates may
        // come after the last new trade: wait until every minute adds up.
        let ledger = wait_for(
            "ingest's counts to add up in every minute",
            Duration::from_secs(20),
            || {
                let url = format!(
                    "{base}/api/v1/completeness?symbol={symbol}&from={}",
                    started.as_millis() - 60_000
                );
                async move {
                    let (status, ledger) = get_json(&url).await;
                    assert_eq!(status, 200, "{ledger}");
                    let balanced = ledger["minutes"].as_array().unwrap().iter().all(|m| {
                        n(m, "received")
                            == n(m, "rejected")
                                + n(m, "duplicates")
                                + n(m, "stored_live")
                                + n(m, "stored_backfill")
                    });
                    balanced.then_some(ledger)
                }
            },
        )
        .await;
        for m in ledger["minutes"].as_array().unwrap() {
            assert_eq!(m["provider"], provider, "{m}");
            assert_eq!(n(m, "ids_missing"), 0, "{m}");
            let minute = Timestamp::parse(m["minute"].as_str().unwrap()).unwrap();
            let key = (symbol.clone(), minute.as_micros().div_euclid(60_000_000));
            assert_eq!(
                n(m, "stored_live") + n(m, "stored_backfill"),
                made_per_minute.get(&key).copied().unwrap_or(0),
                "{symbol}: stored = made in the minute {m}"
            );
        }
        let t = &ledger["totals"];
        assert!(n(t, "stored_backfill") > 0, "{ledger}");
        rejected += n(t, "rejected");
        duplicates += n(t, "duplicates");
    }
    assert!(
        rejected > 0 && duplicates > 0,
        "the corrupted trades are counted rejected, the repeated ones duplicates"
    );
    // The ledger's counts are exported too.
    let stats = running.metrics.snapshot();
    let l = &stats.providers[provider].ledger;
    assert_eq!(
        (l.rejected, l.duplicates),
        (rejected, duplicates),
        "{stats:?}"
    );
    token.cancel();
    running.wait().await.unwrap();
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binance_fault_adds_up_in_the_ledger() {
    let sim = binance_sim(|c| {
        c.skip_every = Some(23);
        c.duplicate_every = Some(7);
        c.out_of_order_every = Some(5);
        c.corrupt_every = Some(31);
        c.malformed_every = Some(13);
        c.drop_every = Some(Duration::from_millis(2_500));
        // Renewed on the shutdown notice before each drop.
        c.close_after = Some(Duration::from_millis(1_200));
        c.notice_lead = Duration::from_millis(500);
        c.rest_429_every = Some(4);
    })
    .await;
    let c = config(std::path::Path::new("."));
    every_fault_adds_up(sim, "binance", 4, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_coinbase_fault_adds_up_in_the_ledger() {
    let sim = coinbase_sim(|c| {
        c.skip_every = Some(23);
        c.duplicate_every = Some(7);
        c.out_of_order_every = Some(5);
        c.corrupt_every = Some(31);
        c.malformed_every = Some(13);
        c.drop_every = Some(Duration::from_millis(1_500));
        c.rest_429_every = Some(4);
    })
    .await;
    let c = config(std::path::Path::new("."));
    every_fault_adds_up(sim, "coinbase", 3, c).await;
}
