//! The all-in-one pipeline, in process, on a free port with a fast
//! synthetic feed: everything checked through HTTP, then a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use streamforge::config::Config;
use streamforge::pipeline::{self, Role, Running};
use streamforge_model::{Interval, Tick, TickRules, Timestamp};
use streamforge_testkit::reference::{self, assert_json_candles, candles_within};
use streamforge_testkit::{get_json, stored_ticks, wait_for, SseClient};
use tokio_util::sync::CancellationToken;

const SYMBOLS: &[&str] = &["AAPL", "MSFT", "BINANCE:BTCUSDT"];

fn config(dir: &std::path::Path, seed: u64) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.synthetic.symbols = SYMBOLS.iter().map(|s| s.to_string()).collect();
    c.synthetic.rate = 3_000.0;
    c.synthetic.seed = Some(seed);
    c.persist.batch_timeout = Duration::from_millis(5);
    c.log.level = "warn".into();
    c
}

async fn start(c: &Config) -> (Running, CancellationToken, String) {
    let token = CancellationToken::new();
    let running = pipeline::start(c, Role::Run, token.clone()).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    (running, token, base)
}

/// Stops the pipeline and checks that every produced tick was stored.
async fn stop_and_check_drained(running: Running, token: CancellationToken) -> f64 {
    let metrics = running.metrics.clone();
    token.cancel();
    running.wait().await.expect("clean shutdown");
    let stats = metrics.snapshot();
    let produced = stats.providers["synthetic"].ticks;
    let (written, dedup) = (stats.store.rows_written, stats.store.rows_deduplicated);
    assert!(produced > 0);
    assert_eq!(
        produced,
        written + dedup,
        "every received tick was written at shutdown"
    );
    assert_eq!(dedup, 0, "fresh synthetic ticks are never duplicates");
    written as f64
}

/// The API's candles of `symbol` whose buckets lie wholly inside `[from, to)`.
async fn candles_in(
    base: &str,
    symbol: &str,
    interval: Interval,
    from: Timestamp,
    to: Timestamp,
) -> Vec<Value> {
    let (status, c) = get_json(&format!(
        "{base}/api/v1/candles/{symbol}?interval={}&from={}&to={}&limit=10000",
        interval.as_str(),
        from.as_millis(),
        to.as_millis()
    ))
    .await;
    assert_eq!(status, 200, "{c}");
    c["candles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| {
            let start = Timestamp::parse(k["start"].as_str().unwrap()).unwrap();
            start.saturating_add_micros(interval.micros()) <= to
        })
        .cloned()
        .collect()
}

fn ticks_of(v: &Value) -> Vec<Tick> {
    v["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            streamforge_model::wire::decode(
                t.to_string().as_bytes(),
                &TickRules::default(),
                Timestamp::now(),
            )
            .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_one_pipeline_end_to_end_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (running, token, base) = start(&config(dir.path(), 1)).await;

    // The live stream delivers only the requested symbols.
    let mut sse = SseClient::connect(&format!("{base}/api/v1/stream?symbols=AAPL,MSFT")).await;
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let ev = sse
            .next(Duration::from_secs(10))
            .await
            .expect("stream open");
        assert_eq!(ev.event, "tick");
        let t: Value = serde_json::from_str(&ev.data).unwrap();
        let symbol = t["symbol"].as_str().unwrap().to_string();
        assert!(symbol == "AAPL" || symbol == "MSFT", "unexpected {symbol}");
        assert!(t["price"].as_f64().unwrap() > 0.0);
        seen.insert(symbol);
    }
    assert_eq!(seen.len(), 2, "both requested symbols stream");

    // A fixed window that is fully stored: wait until ticks well after its end are stored.
    let from = Interval::S1.bucket_start(Timestamp::now());
    let to = from.saturating_add_micros(2_000_000);
    wait_for(
        "ticks after the window to be stored",
        Duration::from_secs(10),
        || {
            let base = base.clone();
            async move {
                let (_, v) = get_json(&format!("{base}/api/v1/symbols")).await;
                let all = v["symbols"].as_array()?;
                let stored_past = all.len() == SYMBOLS.len()
                    && all.iter().all(|s| {
                        Timestamp::parse(s["last_ts"].as_str().unwrap()).unwrap()
                            > to.saturating_add_micros(500_000)
                    });
                stored_past.then_some(())
            }
        },
    )
    .await;

    // Latest quotes.
    let (status, q) = get_json(&format!("{base}/api/v1/quotes/BINANCE:BTCUSDT/latest")).await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["symbol"], "BINANCE:BTCUSDT");
    assert_eq!(q["src_id"], "synthetic");

    // Ticks of the window, and candles that agree with them.
    let window = format!("from={}&to={}", from.as_millis(), to.as_millis());
    let (status, v) = get_json(&format!("{base}/api/v1/ticks/AAPL?{window}&limit=10000")).await;
    assert_eq!(status, 200, "{v}");
    let ticks = ticks_of(&v);
    assert!(ticks.len() > 100, "only {} ticks", ticks.len());
    assert!(ticks.len() < 10_000, "window too large for one page");
    assert!(
        ticks.windows(2).all(|w| w[0].sort_key() < w[1].sort_key()),
        "ordered, no duplicates"
    );
    assert!(ticks.iter().all(|t| t.ts() >= from && t.ts() < to));
    let (_, ev) = get_json(&format!(
        "{base}/api/v1/ticks/AAPL?{window}&limit=10000&order=desc"
    ))
    .await;
    assert_eq!(ticks_of(&ev).into_iter().rev().collect::<Vec<_>>(), ticks);

    // 1-second candles of the window: the live feed spans ~1.5 s, so the
    // minute buckets are checked over closed minutes in their own test.
    let got = candles_in(&base, "AAPL", Interval::S1, from, to).await;
    let expected = candles_within(Interval::S1, &ticks, from, to);
    assert!(!expected.is_empty(), "the window holds whole seconds");
    assert_json_candles(&got, &expected, "1s");

    // Ready, and metrics show every stage moving.
    let (status, ready) = get_json(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    let (status, body) = get_json(&format!("{base}/api/v1/pipeline")).await;
    assert_eq!(status, 200, "{body}");
    let stats: streamforge_telemetry::PipelineStats =
        serde_json::from_value(body.clone()).expect("typed pipeline figures");
    for (figure, value) in [
        ("synthetic ticks", stats.providers["synthetic"].ticks),
        ("published", stats.published["ticks"]),
        ("consumed", stats.consumed["ticks"]),
        ("rows written", stats.store.rows_written),
        ("latencies", stats.ingest_to_stored.count),
    ] {
        assert!(value > 0, "{figure} in {body}");
    }
    assert!(stats.store.rows_written <= stats.providers["synthetic"].ticks);
    assert_eq!(
        stats.ingest_to_stored.buckets.last().map(|b| b.1),
        Some(stats.ingest_to_stored.count),
        "the +Inf bucket holds every observation"
    );
    assert!(
        stats.ingest_to_stored.quantile_bound(0.99).is_some(),
        "{body}"
    );

    let store_before = running.store.clone().unwrap();
    let written_first = stop_and_check_drained(running, token).await;
    drop(store_before);

    // Restart on the same data directory: history is kept, nothing doubles.
    let (running, token, base) = start(&config(dir.path(), 2)).await;
    let (_, again) = get_json(&format!("{base}/api/v1/ticks/AAPL?{window}&limit=10000")).await;
    assert_eq!(
        ticks_of(&again),
        ticks,
        "the old window is unchanged after a restart"
    );
    wait_for(
        "new ticks after the restart",
        Duration::from_secs(10),
        || {
            let base = base.clone();
            async move {
                let total = stored_ticks(&base).await?;
                (total as f64 > written_first).then_some(())
            }
        },
    )
    .await;
    // Redelivering old ticks stores nothing.
    let outcome = running
        .store
        .as_ref()
        .unwrap()
        .write_batch(Arc::from(ticks.clone()))
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (0, ticks.len()));
    let store = running.store.clone().unwrap();
    let written_second = stop_and_check_drained(running, token).await;
    let total: u64 = store.symbols().await.unwrap().iter().map(|s| s.ticks).sum();
    assert_eq!(
        total as f64,
        written_first + written_second,
        "symbol counts = every tick once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_topic_and_valid_ticks_around_them_are_stored() {
    use bytes::Bytes;
    use streamforge_bus::{ConsumerOptions, Headers, Message, Polled, StartFrom};

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 3);
    // Only the messages of this test: no provider traffic to wait behind.
    c.synthetic.symbols = vec!["ZZZZ".into()];
    c.synthetic.rate = 1.0;
    let (running, token, base) = start(&c).await;
    let bus = running.bus();
    let mut dlq = bus
        .consumer(
            "ticks.dlq",
            ConsumerOptions {
                group: "test".into(),
                start: StartFrom::Earliest,
                durable: true,
            },
        )
        .await
        .unwrap();

    let now = Timestamp::now().to_string();
    let valid = |price: f64| {
        format!(
            r#"{{"symbol":"POIS","ts":"{now}","price":{price},"size":1,"exchange":"","src_id":"test"}}"#
        )
    };
    let headers = |version: &str| {
        let mut h = Headers::default();
        h.insert("schema-version", Bytes::from(version.to_string()));
        h
    };
    let msg = |payload: Vec<u8>, version: &str| Message {
        key: Bytes::from_static(b"POIS"),
        payload: payload.into(),
        headers: headers(version),
    };
    let batch = vec![
        msg(valid(1.0).into_bytes(), "1"),
        msg(b"not json at all".to_vec(), "1"),
        msg(
            valid(2.0)
                .replace("\"price\":2", "\"price\":NaN")
                .into_bytes(),
            "1",
        ),
        msg(
            valid(3.0).replace("\"size\":1", "\"size\":-5").into_bytes(),
            "1",
        ),
        msg(vec![b'x'; 1 << 20], "1"),
        msg(valid(4.0).into_bytes(), "99"),
        msg(valid(5.0).into_bytes(), "1"),
    ];
    bus.publish("ticks", batch).await.unwrap();

    let mut reasons = Vec::new();
    while reasons.len() < 5 {
        let polled = tokio::time::timeout(Duration::from_secs(10), dlq.recv(10))
            .await
            .expect("dead letters arrive")
            .unwrap();
        let Polled::Messages(m) = polled else {
            panic!("{polled:?}")
        };
        for d in m {
            let h = &d.message.headers;
            assert_eq!(h.get_str("dlq-stage"), Some("persist"));
            assert_eq!(h.get_str("dlq-source-topic"), Some("ticks"));
            assert!(h
                .get_str("dlq-source-offset")
                .unwrap()
                .parse::<i64>()
                .is_ok());
            assert!(!h.get_str("dlq-error").unwrap().is_empty());
            if h.get_str("dlq-reason") == Some("too_large") {
                // Cut to fit the bus, with what it was.
                assert_eq!(d.message.payload.len(), 64 * 1024);
                assert_eq!(h.get_str("dlq-truncated"), Some("true"));
                assert_eq!(h.get_str("dlq-original-size"), Some("1048576"));
                assert_eq!(h.get_str("dlq-original-xxh3").map(str::len), Some(32));
            }
            reasons.push(h.get_str("dlq-reason").unwrap().to_string());
        }
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "invalid_size",
            "malformed_json",
            "malformed_json",
            "too_large",
            "unknown_schema_version"
        ]
    );

    let prices = wait_for(
        "the valid ticks around the poison to be stored",
        Duration::from_secs(10),
        || {
            let base = base.clone();
            async move {
                let (_, v) = get_json(&format!("{base}/api/v1/ticks/POIS?limit=100&from=0")).await;
                let mut prices: Vec<f64> = v["ticks"]
                    .as_array()?
                    .iter()
                    .map(|t| t["price"].as_f64().unwrap())
                    .collect();
                prices.sort_by(f64::total_cmp);
                (prices.len() >= 2).then_some(prices)
            }
        },
    )
    .await;
    assert_eq!(prices, [1.0, 5.0], "exactly the valid ticks are stored");

    let (status, body) = get_json(&format!("{base}/api/v1/pipeline")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"]["persist/malformed_json"], 2, "{body}");
    assert_eq!(body["dead_letters"]["too_large"], 1, "{body}");
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_profile_is_served_only_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let (running, token, base) = start(&config(dir.path(), 21)).await;
    let res = reqwest::get(format!("{base}/debug/pprof/profile?seconds=1"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404, "off by default");
    token.cancel();
    running.wait().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 22);
    c.http.pprof = true;
    let (running, token, base) = start(&c).await;
    let (status, err) = get_json(&format!("{base}/debug/pprof/profile?seconds=0")).await;
    assert_eq!(status, 400);
    assert_eq!(err["parameter"], "seconds");
    let res = reqwest::get(format!("{base}/debug/pprof/profile?seconds=1"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "image/svg+xml");
    let svg = res.text().await.unwrap();
    assert!(svg.contains("<svg"), "{}", &svg[..svg.len().min(200)]);
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_over_closed_minutes_equal_an_independent_fold_of_the_stored_ticks() {
    use bytes::Bytes;
    use streamforge_bus::{Headers, Message};

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 4);
    c.synthetic.symbols = vec!["QUIET".into()];
    c.synthetic.rate = 1.0;
    let (running, token, base) = start(&c).await;
    // 1,200 ticks over ten closed minutes, at uneven times with ties, sizes
    // that include 0, in an order that is not time order.
    let m0 = Interval::M5
        .bucket_start(Timestamp::now())
        .saturating_sub_micros(15 * 60 * 1_000_000);
    let to = m0.saturating_add_micros(10 * 60 * 1_000_000);
    let messages: Vec<Message> = (0..1_200u64)
        .map(|i| {
            let k = (i * 7_919) % 1_200; // a permutation of 0..1200
            let ts = m0.saturating_add_micros((k as i64 / 2) * 1_000_000 + (k as i64 % 2) * 250_000);
            let price = 100.0 + ((k * 37) % 101) as f64 / 4.0;
            let size = (k % 5) as f64;
            let mut h = Headers::default();
            h.insert("schema-version", Bytes::from_static(b"1"));
            Message {
                key: Bytes::from_static(b"CNDL"),
                payload: format!(
                    r#"{{"symbol":"CNDL","ts":"{ts}","price":{price},"size":{size},"exchange":"","src_id":"test","conditions":["{i}"]}}"#
                )
                .into(),
                headers: h,
            }
        })
        .collect();
    running.bus().publish("ticks", messages).await.unwrap();
    let url = format!(
        "{base}/api/v1/ticks/CNDL?from={}&to={}&limit=10000",
        m0.as_millis(),
        to.as_millis()
    );
    let ticks = wait_for("the 1,200 ticks stored", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let (_, v) = get_json(&url).await;
            // 404 until the symbol's first batch is stored.
            (v["ticks"].as_array()?.len() == 1_200).then(|| ticks_of(&v))
        }
    })
    .await;
    // The latest quote is the newest stored tick, by (event time, tick id).
    let newest = reference::newest(&ticks).unwrap();
    let (status, q) = get_json(&format!("{base}/api/v1/quotes/CNDL/latest")).await;
    assert_eq!(status, 200, "{q}");
    reference::assert_json_quote(&q, newest);
    for (interval, buckets) in [(Interval::S1, 600), (Interval::M1, 10), (Interval::M5, 2)] {
        let expected = candles_within(interval, &ticks, m0, to);
        assert_eq!(
            expected.len(),
            buckets,
            "{interval:?}: every bucket has trades"
        );
        let got = candles_in(&base, "CNDL", interval, m0, to).await;
        assert_json_candles(&got, &expected, interval.as_str());
    }
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_fills_the_synthetic_history_and_a_restart_heals_its_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 17);
    c.synthetic.rate = 100.0;
    c.synthetic.history = Duration::from_secs(1_800);
    c.synthetic.history_rate = 10.0;
    let started = Timestamp::now();
    let (running, token, base) = start(&c).await;
    let half_hour_ago = started.as_millis() - 1_800_000;
    // Ledger: the history is backfill, and every minute adds up.
    let backfilled = |base: String| async move {
        let (status, page) = get_json(&format!(
            "{base}/api/v1/completeness?symbol=AAPL&from={}",
            half_hour_ago - 60_000
        ))
        .await;
        (status == 200).then_some(page)
    };
    let page = wait_for("the history to be stored", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let page = backfilled(base).await?;
            let t = &page["totals"];
            (t["minutes"].as_u64().unwrap() >= 30
                && t["received"]
                    == t["stored_live"].as_u64().unwrap() + t["stored_backfill"].as_u64().unwrap())
            .then_some(page)
        }
    })
    .await;
    let stored_backfill = page["totals"]["stored_backfill"].as_u64().unwrap();
    // A third of 10 a second, over half an hour: about 6,000.
    assert!((4_000..8_000).contains(&stored_backfill), "{page}");
    // One-minute candles of the half hour, at once.
    let (_, candles) = get_json(&format!(
        "{base}/api/v1/candles/AAPL?interval=1m&from={half_hour_ago}&limit=100"
    ))
    .await;
    assert!(
        candles["candles"].as_array().unwrap().len() >= 29,
        "{candles}"
    );
    stop_and_check_drained(running, token).await;

    // The store holds trades now: no second history, but the time the
    // process was down is a gap of each symbol, made and healed.
    let stopped = Timestamp::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (running, token, base) = start(&c).await;
    let downtime = wait_for("AAPL's downtime healed", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let (_, page) = get_json(&format!("{base}/api/v1/gaps?symbol=AAPL&from=0")).await;
            page["gaps"]
                .as_array()?
                .iter()
                .find(|g| g["reason"] == "downtime" && g["status"] == "healed")
                .cloned()
        }
    })
    .await;
    let at = |k: &str| Timestamp::parse(downtime[k].as_str().unwrap()).unwrap();
    assert!(at("from") <= stopped && at("to") > stopped, "{downtime}");
    let made = downtime["backfilled"].as_u64().unwrap_or(0);
    // A third of 10 a second over about 3 s: a few, far from a history.
    assert!(made < 100, "{downtime}");
    // The ledger counts them as backfill, and adds up.
    wait_for("the ledger to count them", Duration::from_secs(10), || {
        let base = base.clone();
        async move {
            let page = backfilled(base).await?;
            let n = |k: &str| page["totals"][k].as_u64().unwrap_or(0);
            (n("stored_backfill") == stored_backfill + made
                && n("received") == n("stored_live") + n("stored_backfill"))
            .then_some(())
        }
    })
    .await;
    stop_and_check_drained(running, token).await;
}
