//! The production path: `ingest`, `persist` and `serve` as separate roles on
//! Apache Kafka (KRaft, from testkit), PostgreSQL and Redis, all real
//! servers, fed at production rates (5,000 ticks/s, topics of 6 partitions),
//! with the broker, persist processes and PostgreSQL failing under load.
//! Every test checks that the rows stored equal, and are as distinct as, the
//! messages the broker acknowledged to the producer.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use streamforge::config::Config;
use streamforge::pipeline::{self, Role, Running};
use streamforge_testkit::engines::{psql, shared_kafka, shared_postgres, Redis};
use streamforge_testkit::kafka::{Kafka, LogOnFailure};
use streamforge_testkit::{get_json, stored_ticks, wait_for};
use tokio_util::sync::CancellationToken;

/// The test binary's broker (its log printed if the test fails) and a
/// fresh database on the shared PostgreSQL.
fn shared_engines() -> (&'static Kafka, LogOnFailure, String) {
    let broker = shared_kafka();
    let log = broker.log_on_failure();
    (broker, log, shared_postgres().create_database().unwrap())
}

/// Topics and groups unique to one test.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(bus: &str, store: &str, cache: &str, topic: &str) -> Config {
    let mut c = Config {
        bus: bus.to_string(),
        store: Some(store.to_string()),
        cache: cache.to_string(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.ingest.topic = topic.to_string();
    c.ingest.dlq_topic = format!("{topic}.dlq");
    c.persist.group = format!("{topic}-persist");
    c.persist.batch_timeout = Duration::from_millis(20);
    c.synthetic.symbols = vec!["AAPL".into(), "MSFT".into(), "BINANCE:BTCUSDT".into()];
    c.synthetic.rate = RATE;
    c.synthetic.seed = Some(11);
    c.kafka.partitions = 6;
    c.log.level = "warn".into();
    c
}

/// The feed rate of every test here, ticks per second.
const RATE: f64 = 5_000.0;

async fn start(c: &Config, roles: Role) -> (Running, CancellationToken) {
    let token = CancellationToken::new();
    let running = pipeline::start(c, roles, token.clone()).await.unwrap();
    (running, token)
}

/// Messages the broker acknowledged to `metrics`' producer on `topic`.
fn acknowledged(metrics: &streamforge_telemetry::Metrics, topic: &str) -> u64 {
    metrics
        .snapshot()
        .published
        .get(topic)
        .copied()
        .unwrap_or(0)
}

/// Rows in `ticks`.
fn count_stored(db: &str) -> u64 {
    psql(db, "SELECT count(*) FROM ticks").parse().unwrap()
}

/// `symbol tick_id` of every stored row.
fn stored_ids(db: &str) -> Vec<String> {
    let mut ids: Vec<String> = psql(db, "SELECT symbol || ' ' || tick_id FROM ticks")
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

/// `symbol tick_id` of every distinct tick the broker holds on `c`'s ticks
/// topic (what it acknowledged), read back by a fresh consumer from the
/// start: at least `at_least` of them, then until none came for 2 s.
async fn broker_ids(c: &Config, at_least: u64) -> Vec<String> {
    use streamforge_bus::{ConsumerOptions, Polled, StartFrom};
    let bus = streamforge_bus::connect(&c.bus, &c.bus_options())
        .await
        .unwrap();
    let mut consumer = bus
        .consumer(
            &c.ingest.topic,
            ConsumerOptions {
                group: unique("oracle"),
                start: StartFrom::Earliest,
                durable: false,
            },
        )
        .await
        .unwrap();
    let rules = streamforge_model::TickRules::default();
    let mut ids = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let wait = if ids.len() as u64 >= at_least {
            Duration::from_secs(2)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, consumer.recv(10_000)).await {
            Ok(Ok(Polled::Messages(m))) => {
                for d in m {
                    // Gap records and ledger tallies travel beside the ticks.
                    let kind = d.message.headers.get_str("content-type");
                    if kind == Some(streamforge_model::GAP_CONTENT_TYPE)
                        || kind == Some(streamforge_model::TALLY_CONTENT_TYPE)
                    {
                        continue;
                    }
                    let t = streamforge_model::wire::decode(
                        &d.message.payload,
                        &rules,
                        streamforge_model::Timestamp::now(),
                    )
                    .expect("the topic holds valid ticks");
                    ids.push(format!("{} {}", t.symbol(), t.tick_id().as_i64()));
                }
            }
            Ok(other) => panic!("reading back {}: {other:?}", c.ingest.topic),
            Err(_) if ids.len() as u64 >= at_least => break,
            Err(_) => panic!(
                "only {} of {at_least} ticks read back from {} in 120 s",
                ids.len(),
                c.ingest.topic
            ),
        }
    }
    ids.sort();
    let all = ids.len();
    // A message the producer timed out on may still have been written, and
    // ingest publishes it again: the topic may hold a tick twice (the store
    // keeps it once).
    ids.dedup();
    if ids.len() < all {
        println!(
            "{}: {} ticks appear twice on the broker",
            c.ingest.topic,
            all - ids.len()
        );
    }
    ids
}

/// Waits until `db` holds `acked` rows (at most `timeout`), then checks the
/// stored rows are exactly the ticks the broker holds, each once: the same
/// ids, not only as many.
async fn assert_stored_exactly(c: &Config, db: &str, acked: u64, timeout: Duration, what: &str) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let rows = count_stored(db);
        if rows >= acked {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {rows} of {acked} acknowledged ticks stored after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on_broker = broker_ids(c, acked).await;
    assert_eq!(
        on_broker.len() as u64,
        acked,
        "{what}: the broker holds what it acknowledged"
    );
    // Late redeliveries have landed by now (the read-back took ≥ 2 s): they
    // must not have added rows.
    let stored = stored_ids(db);
    assert_eq!(
        stored.len() as u64,
        acked,
        "{what}: stored rows = acknowledged"
    );
    if stored != on_broker {
        let missing: Vec<_> = on_broker
            .iter()
            .filter(|i| stored.binary_search(i).is_err())
            .take(5)
            .collect();
        let extra: Vec<_> = stored
            .iter()
            .filter(|i| on_broker.binary_search(i).is_err())
            .take(5)
            .collect();
        panic!("{what}: stored ids differ from the broker's: missing {missing:?}, extra {extra:?}");
    }
}

/// Runs ingest for `secs` and stops it; returns the ticks the broker acknowledged.
async fn ingest_for(c: &Config, secs: u64) -> u64 {
    let (ingest, token) = start(c, Role::Ingest).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop_ingest(c, ingest, token).await
}

/// Stops a running ingest role; every tick it produced must have been
/// acknowledged by the broker. Returns how many.
async fn stop_ingest(c: &Config, ingest: Running, token: CancellationToken) -> u64 {
    let metrics = ingest.metrics.clone();
    token.cancel();
    ingest.wait().await.expect("ingest drains and flushes");
    // The ticks topic also carries the gap records ingest wrote (one per
    // symbol when an outage outlasted the delivery timeout) and the
    // ledger's tallies: the ticks acknowledged are the rest.
    let stats = metrics.snapshot();
    let gaps: u64 = stats.providers.values().flat_map(|p| p.gaps.values()).sum();
    let tallies: u64 = stats.providers.values().map(|p| p.ledger.tallies).sum();
    assert!(tallies > 0, "ingest counts for the ledger");
    let acked = acknowledged(&metrics, &c.ingest.topic).saturating_sub(gaps + tallies) as f64;
    assert_eq!(
        acked,
        provider_ticks(&metrics),
        "every produced tick was acknowledged by the broker ({gaps} gap records and {tallies} tallies besides)"
    );
    assert!(acked > 0.0);
    acked as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_persist_serve_as_separate_roles_store_each_tick_once() {
    let (broker, _log, db) = shared_engines();
    let redis = Redis::start().unwrap();
    let c = config(&broker.url(), &db, &redis.url(), &unique("ticks"));

    let (persist, persist_token) = start(&c, Role::Persist).await;
    let (serve, serve_token) = start(&c, Role::Serve).await;
    let base = format!("http://{}", serve.http_addr);
    // The persist role answers health and metrics only.
    let (status, _) = get_json(&format!("http://{}/api/v1/symbols", persist.http_addr)).await;
    assert_eq!(status, 404);
    assert_eq!(
        get_json(&format!("http://{}/healthz", persist.http_addr))
            .await
            .0,
        200
    );

    // The live stream of serve is fed from the bus by its own consumer.
    let mut sse =
        streamforge_testkit::SseClient::connect(&format!("{base}/api/v1/stream?symbols=AAPL"))
            .await;
    let ingest_config = c.clone();
    let ingest = tokio::spawn(async move { ingest_for(&ingest_config, 5).await });
    let ev = sse
        .next(Duration::from_secs(30))
        .await
        .expect("stream open");
    assert_eq!(ev.event, "tick");
    let live: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(live["symbol"], "AAPL");
    let acked = ingest.await.unwrap();
    let total = wait_for(
        "persist to store every acknowledged tick",
        Duration::from_secs(60),
        || {
            let base = base.clone();
            async move { stored_ticks(&base).await.filter(|n| *n >= acked) }
        },
    )
    .await;
    assert_eq!(total, acked, "stored = acknowledged");
    assert_stored_exactly(&c, &db, acked, Duration::from_secs(5), "separate roles").await;
    // Persist is ready only with partitions assigned, and says so.
    let (status, ready) = get_json(&format!("http://{}/readyz", persist.http_addr)).await;
    assert_eq!(status, 200, "{ready}");
    let check = format!("consumer {}", c.ingest.topic);
    let found = &ready["checks"][&check];
    assert_eq!(found["ok"], true, "{ready}");
    assert!(
        found["detail"].as_str().unwrap().contains("6 partitions"),
        "{ready}"
    );
    // The latest quote, from Redis, is the newest stored tick by (event
    // time, signed id), as PostgreSQL orders them.
    let res = reqwest::get(format!("{base}/api/v1/quotes/AAPL/latest"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-streamforge-source"], "cache");
    let q: serde_json::Value = res.json().await.unwrap();
    let newest = psql(
        &db,
        "SELECT price, size, (extract(epoch FROM ts) * 1000000)::bigint FROM ticks \
         WHERE symbol = 'AAPL' ORDER BY ts DESC, tick_id DESC LIMIT 1",
    );
    let fields: Vec<&str> = newest.split('|').collect();
    assert_eq!(
        q["price"].as_f64(),
        Some(fields[0].parse::<f64>().unwrap()),
        "{q} vs {newest}"
    );
    assert_eq!(
        q["size"].as_f64(),
        Some(fields[1].parse::<f64>().unwrap()),
        "{q} vs {newest}"
    );
    assert_eq!(
        streamforge_model::Timestamp::parse(q["ts"].as_str().unwrap())
            .unwrap()
            .as_micros(),
        fields[2].parse::<i64>().unwrap(),
        "{q} vs {newest}"
    );
    let (status, ticks) = get_json(&format!("{base}/api/v1/ticks/MSFT?from=0&limit=10")).await;
    assert_eq!(status, 200, "{ticks}");
    assert_eq!(ticks["count"], 10);

    // Persist reports its lag (per partition, summed by topic); caught up,
    // it reads 0.
    wait_for(
        "persist to report a lag of 0",
        Duration::from_secs(75),
        || {
            let (m, topic) = (persist.metrics.clone(), c.ingest.topic.clone());
            async move { (m.snapshot().consumer_lag.get(&topic) == Some(&0)).then_some(()) }
        },
    )
    .await;
    serve_token.cancel();
    serve.wait().await.unwrap();
    persist_token.cancel();
    persist.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_on_kafka_go_to_the_dead_letter_topic_with_their_source() {
    use bytes::Bytes;
    use streamforge_bus::{Headers, Message, Polled};

    let (broker, _log, db) = shared_engines();
    let c = config(&broker.url(), &db, "memory://", &unique("poison"));
    let (persist, token) = start(&c, Role::Persist).await;
    let bus = persist.bus();

    let now = streamforge_model::Timestamp::now().to_string();
    let valid = |price: u32| {
        format!(
            r#"{{"symbol":"POIS","ts":"{now}","price":{price},"size":1,"exchange":"","src_id":"test"}}"#
        )
    };
    let msg = |payload: Vec<u8>, version: &'static str| {
        let mut headers = Headers::default();
        headers.insert("schema-version", Bytes::from_static(version.as_bytes()));
        Message {
            key: Bytes::from_static(b"POIS"),
            payload: payload.into(),
            headers,
        }
    };
    bus.publish(
        &c.ingest.topic,
        vec![
            msg(valid(1).into_bytes(), "1"),
            msg(b"not json".to_vec(), "1"),
            msg(
                valid(2)
                    .replace("\"price\":2", "\"price\":NaN")
                    .into_bytes(),
                "1",
            ),
            msg(
                valid(3).replace("\"size\":1", "\"size\":-5").into_bytes(),
                "1",
            ),
            msg(vec![b'x'; 1000 * 1000], "1"),
            msg(valid(4).into_bytes(), "99"),
            msg(valid(5).into_bytes(), "1"),
        ],
    )
    .await
    .unwrap();

    let mut dlq = dlq_reader(&*bus, &c).await;
    let mut reasons = Vec::new();
    while reasons.len() < 5 {
        let polled = tokio::time::timeout(Duration::from_secs(60), dlq.recv(10))
            .await
            .expect("dead letters arrive")
            .unwrap();
        let Polled::Messages(m) = polled else {
            panic!("{polled:?}")
        };
        for d in m {
            let h = &d.message.headers;
            assert_eq!(h.get_str("dlq-source-topic"), Some(c.ingest.topic.as_str()));
            assert!(h
                .get_str("dlq-source-partition")
                .unwrap()
                .parse::<i32>()
                .is_ok());
            assert!(h
                .get_str("dlq-source-offset")
                .unwrap()
                .parse::<i64>()
                .is_ok());
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
    let prices = wait_for("the valid ticks to be stored", Duration::from_secs(30), || async {
        let p = psql(&db, "SELECT string_agg(price::text, ',' ORDER BY price) FROM ticks WHERE symbol = 'POIS'");
        (p.split(',').count() >= 2).then_some(p)
    })
    .await;
    assert_eq!(prices, "1,5");
    token.cancel();
    persist.wait().await.unwrap();
}

/// `streamforge persist` as a process of its own, so it can be killed hard.
fn spawn_persist(config_file: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
        .arg("--config")
        .arg(config_file)
        .arg("persist")
        .env("STREAMFORGE_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting streamforge persist")
}

fn count_rows(db: &str) -> u64 {
    psql(db, "SELECT count(*) FROM ticks").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_killed_hard_mid_batch_and_restarted_loses_and_duplicates_nothing() {
    let (broker, _log, db) = shared_engines();
    let redis = Redis::start().unwrap();
    let mut c = config(&broker.url(), &db, &redis.url(), &unique("crash"));
    c.kafka.session_timeout = Duration::from_secs(6);
    c.persist.batch_size = 2_000;
    c.persist.batch_timeout = Duration::from_millis(50);
    let dir = tempfile::tempdir().unwrap();
    let config_file = streamforge_testkit::migrated_config(
        env!("CARGO_BIN_EXE_streamforge"),
        dir.path(),
        &c.to_toml(),
    );
    let log = dir.path().join("persist.log");

    let ingest_config = c.clone();
    let ingest = tokio::spawn(async move { ingest_for(&ingest_config, 45).await });
    // Rows stored beyond the committed offsets at each kill: what the next
    // member receives again and the store must keep once.
    let mut uncommitted_at_kills = Vec::new();
    let mut kills = 0;
    while uncommitted_at_kills.len() < 3 {
        assert!(
            kills < 5 && !ingest.is_finished(),
            "{kills} kills, {} of them inside an uncommitted batch: {uncommitted_at_kills:?}",
            uncommitted_at_kills.len()
        );
        let mut child = spawn_persist(&config_file, &log);
        // It has joined the group (once the group expired the member killed
        // before) and is storing when the row count grows.
        let before = count_rows(&db);
        wait_rows_above(&db, before, Duration::from_secs(60), &log, kills).await;
        // Persist stores a batch, updates the cache, then commits its
        // offsets, one batch after another. With Redis frozen, the first
        // batch stored after the freeze waits in the cache update (up to
        // its 1 s timeout), stored but not committed, and no further batch
        // is stored meanwhile although ingest feeds 5,000 ticks/s: a row
        // count that stops growing shows the writer stuck there, and the
        // kill lands inside that batch, not by chance. (Should it miss,
        // the kill still counts for the check at the end, not as one
        // inside an uncommitted batch.)
        redis.freeze();
        wait_rows_still(&db, Duration::from_millis(300), &log, kills).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        redis.thaw();
        let stored = count_rows(&db);
        let committed = broker.committed(&c.persist.group, &c.ingest.topic).unwrap();
        if stored > committed {
            uncommitted_at_kills.push(stored - committed);
        } else {
            println!("kill {kills}: nothing stored beyond the committed offsets ({stored} rows)");
        }
    }
    println!("stored but uncommitted at each kill (delivered again): {uncommitted_at_kills:?}");
    let acked = ingest.await.unwrap();

    let mut last = spawn_persist(&config_file, &log);
    // Every acknowledged tick once, the redelivered ones included.
    assert_stored_exactly(&c, &db, acked, Duration::from_secs(90), "after hard kills").await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &last.id().to_string()])
        .status();
    let status = last.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "persist exits cleanly on SIGTERM:\n{log_text}"
    );
}

/// Waits until the row count of `db` has not changed for `still`.
async fn wait_rows_still(db: &str, still: Duration, log: &std::path::Path, kills: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = (count_rows(db), std::time::Instant::now());
    while since.elapsed() < still {
        assert!(
            std::time::Instant::now() < deadline,
            "after {kills} kills, rows kept growing with Redis frozen:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = count_rows(db);
        if n != last {
            (last, since) = (n, std::time::Instant::now());
        }
    }
}

/// Waits until `db` holds more than `rows` ticks; fails with persist's log.
async fn wait_rows_above(
    db: &str,
    rows: u64,
    timeout: Duration,
    log: &std::path::Path,
    kills: usize,
) {
    let deadline = std::time::Instant::now() + timeout;
    while count_rows(db) <= rows {
        assert!(
            std::time::Instant::now() < deadline,
            "the persist process started after {kills} kills stored nothing more than \
             {rows} rows in {timeout:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_pauses_while_postgres_is_down_and_resumes_without_losing_ticks() {
    use streamforge_testkit::engines::Postgres;

    let broker = shared_kafka();
    let _log = broker.log_on_failure();
    let mut pg = Postgres::start().unwrap();
    let db = pg.create_database().unwrap();
    let mut c = config(&broker.url(), &db, "memory://", &unique("outage"));
    // An outage longer than the poll interval: without pausing, the consumer
    // would be expelled from its group.
    c.kafka.session_timeout = Duration::from_secs(6);
    c.kafka.max_poll_interval = Duration::from_secs(6);
    c.persist.retry_backoff = Duration::from_millis(100);
    let (persist, token) = start(&c, Role::Persist).await;
    let metrics = persist.metrics.clone();

    let ingest_config = c.clone();
    let ingest = tokio::spawn(async move { ingest_for(&ingest_config, 20).await });
    wait_some_stored(&db).await;
    pg.stop();
    wait_for("persist to pause", Duration::from_secs(30), || {
        let metrics = metrics.clone();
        async move { metrics.snapshot().persist_paused.then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    pg.resume().unwrap();
    let acked = ingest.await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let stored = loop {
        let n = count_rows(&db);
        if n >= acked {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "persist stored {n} of {acked} ticks 90s after PostgreSQL came back; its metrics:\n{}",
            metrics
                .render()
                .lines()
                .filter(|l| l.starts_with("streamforge_"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored, acked, "nothing lost across the outage");
    assert_stored_exactly(&c, &db, acked, Duration::from_secs(5), "PostgreSQL outage").await;
    let stats = metrics.snapshot();
    assert!(stats.persist_pauses >= 1, "{stats:?}");
    assert!(!stats.persist_paused, "{stats:?}");
    assert!(stats.store.write_errors >= 1, "{stats:?}");
    token.cancel();
    persist.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finnhub_ticks_and_gaps_cross_kafka_to_postgres() {
    use streamforge_providers::finnhub::{Simulator, SimulatorConfig};

    let sim = Simulator::start(SimulatorConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: "t".into(),
        rate: RATE,
        seed: Some(9),
        ping_every: Duration::from_millis(300),
        drop_every: Some(Duration::from_millis(1500)),
        record: true,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let (broker, _log, db) = shared_engines();
    let mut c = config(&broker.url(), &db, "memory://", &unique("finnhub"));
    c.finnhub.token = streamforge_providers::Secret::new("t");
    c.finnhub.url = sim.url();
    c.finnhub.symbols = vec!["AAPL".into(), "BINANCE:BTCUSDT".into()];
    c.finnhub.backoff_min = Duration::from_millis(50);
    let (persist, persist_token) = start(&c, Role::Persist).await;
    let (ingest, ingest_token) = start(&c, Role::Ingest).await;
    wait_for("two reconnects", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 3).then_some(()) }
    })
    .await;
    // Once every connection has ended the log is final; ingest stops once
    // the provider has taken every trade sent.
    sim.stop_and_wait().await;
    let sent_rows = sim.log.lock().sent.len() as f64;
    wait_for(
        "the provider to take every trade sent",
        Duration::from_secs(20),
        || {
            let metrics = ingest.metrics.clone();
            async move {
                let taken = metrics
                    .snapshot()
                    .providers
                    .get("finnhub")
                    .map_or(0, |p| p.ticks) as f64;
                (taken >= sent_rows).then_some(())
            }
        },
    )
    .await;
    ingest_token.cancel();
    let ingest_metrics = ingest.metrics.clone();
    ingest.wait().await.expect("ingest drains and flushes");
    // Outages of the one connection (two symbols): each is a gap per symbol.
    let outages = ingest_metrics.snapshot().providers["finnhub"]
        .gaps
        .get("disconnected")
        .copied()
        .unwrap_or(0);
    assert!(outages >= 2, "two reconnects are two outages: {outages}");
    let sent = sim
        .log
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
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    // Trades are compared by what the simulator can tell apart: two
    // identical trades in one frame are two rows (their occurrence index
    // gives them distinct ids) but one key here.
    let distinct_rows = |db: &str| -> u64 {
        psql(
            db,
            "SELECT count(DISTINCT (symbol, ts, price, size)) FROM ticks",
        )
        .parse()
        .unwrap()
    };
    wait_for(
        "every sent trade in PostgreSQL",
        Duration::from_secs(60),
        || {
            let db = db.clone();
            async move { (distinct_rows(&db) >= sent).then_some(()) }
        },
    )
    .await;
    assert_eq!(distinct_rows(&db), sent);
    let stored_gaps = |db: &str| -> String {
        psql(
            db,
            "SELECT string_agg(symbol, ',' ORDER BY symbol) FROM gaps WHERE reason = 'disconnected'",
        )
    };
    let mut expected = vec!["AAPL"; outages as usize];
    expected.extend(vec!["BINANCE:BTCUSDT"; outages as usize]);
    let expected = expected.join(",");
    wait_for(
        &format!("{outages} gaps per symbol in PostgreSQL"),
        Duration::from_secs(30),
        || {
            let db = db.clone();
            let expected = expected.clone();
            async move { (stored_gaps(&db) == expected).then_some(()) }
        },
    )
    .await;
    persist_token.cancel();
    persist.wait().await.unwrap();
}

/// Ticks ingest took from its providers so far.
fn provider_ticks(metrics: &streamforge_telemetry::Metrics) -> f64 {
    metrics
        .snapshot()
        .providers
        .get("synthetic")
        .map_or(0, |p| p.ticks) as f64
}

/// Waits until `/readyz` at `addr` answers `status` with the `bus` check `ok`.
async fn wait_bus_check(addr: std::net::SocketAddr, status: u16, ok: bool, timeout: Duration) {
    let url = format!("http://{addr}/readyz");
    wait_for(
        &format!("/readyz to answer {status} with the bus check ok = {ok}"),
        timeout,
        || {
            let url = url.clone();
            async move {
                let (s, body) = get_json(&url).await;
                (s == status && body["checks"]["bus"]["ok"] == ok).then_some(())
            }
        },
    )
    .await;
}

/// Waits until `db` has stored some ticks.
async fn wait_some_stored(db: &str) {
    wait_for("ticks to be stored", Duration::from_secs(60), || {
        let db = db.to_string();
        async move { (count_rows(&db) > 0).then_some(()) }
    })
    .await;
}

/// Restarts the broker and waits until ingest is ready again and takes
/// input again (a second's worth beyond what it had taken).
async fn broker_back(kafka: &mut Kafka, ingest: &Running) {
    kafka.resume().unwrap();
    wait_bus_check(ingest.http_addr, 200, true, Duration::from_secs(60)).await;
    let taken = provider_ticks(&ingest.metrics);
    wait_for(
        "ingest to take input again",
        Duration::from_secs(30),
        || {
            let m = ingest.metrics.clone();
            async move { (provider_ticks(&m) > taken + RATE).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_mid_stream_and_restarted_loses_nothing_while_ingest_holds_its_messages()
{
    let mut kafka = Kafka::start().unwrap();
    let _log = kafka.log_on_failure();
    let db = shared_postgres().create_database().unwrap();
    let c = config(&kafka.url(), &db, "memory://", &unique("brokerkill"));
    let (persist, persist_token) = start(&c, Role::Persist).await;
    let (ingest, ingest_token) = start(&c, Role::Ingest).await;
    // Mid-stream: about two seconds of the feed stored.
    wait_for("10,000 ticks stored", Duration::from_secs(60), || {
        let db = db.clone();
        async move { (count_rows(&db) >= 10_000).then_some(()) }
    })
    .await;

    kafka.kill();
    let killed = std::time::Instant::now();
    wait_bus_check(ingest.http_addr, 503, false, Duration::from_secs(10)).await;
    // Ingest holds what it could not publish and takes nothing new: its
    // memory stays bounded while the providers wait. (What was already on
    // its way when the check turned may still land: wait until the count
    // holds still for a second, then watch it hold for three more.)
    let settle = std::time::Instant::now();
    let mut taken = provider_ticks(&ingest.metrics);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = provider_ticks(&ingest.metrics);
        if now == taken {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(20),
            "ingest still took input 20 s after the broker was killed ({taken} -> {now})"
        );
        taken = now;
    }
    let watch = Duration::from_secs(5).saturating_sub(killed.elapsed());
    tokio::time::sleep(watch.max(Duration::from_secs(3))).await;
    assert_eq!(
        provider_ticks(&ingest.metrics),
        taken,
        "ingest took no input while the broker was down"
    );
    broker_back(&mut kafka, &ingest).await;

    let acked = stop_ingest(&c, ingest, ingest_token).await;
    assert_stored_exactly(&c, &db, acked, Duration::from_secs(90), "broker killed").await;
    persist_token.cancel();
    persist
        .wait()
        .await
        .expect("persist survived the broker's death");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_longer_than_the_delivery_timeout_holds_ingest_and_is_recorded_as_gaps() {
    let mut kafka = Kafka::start().unwrap();
    let _log = kafka.log_on_failure();
    let db = shared_postgres().create_database().unwrap();
    let mut c = config(&kafka.url(), &db, "memory://", &unique("longoutage"));
    c.kafka.delivery_timeout = Duration::from_secs(10);
    let (persist, persist_token) = start(&c, Role::Persist).await;
    let (ingest, ingest_token) = start(&c, Role::Ingest).await;
    wait_some_stored(&db).await;

    kafka.kill();
    let down_at = std::time::Instant::now();
    wait_bus_check(ingest.http_addr, 503, false, Duration::from_secs(10)).await;
    // Six delivery timeouts: every held message fails and is published again.
    while down_at.elapsed() < Duration::from_secs(60) {
        assert!(
            !ingest.shutdown_token().is_cancelled() && !persist.shutdown_token().is_cancelled(),
            "a stage stopped during the broker outage ({:?} in)",
            down_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, ready) = get_json(&format!("http://{}/readyz", ingest.http_addr)).await;
    assert_eq!(status, 503, "{ready}");
    broker_back(&mut kafka, &ingest).await;

    let metrics = ingest.metrics.clone();
    ingest_token.cancel();
    ingest.wait().await.expect("ingest drains and flushes");
    let stats = metrics.snapshot();
    assert!(
        stats.publish_errors.get(&c.ingest.topic) >= Some(&1),
        "deliveries timed out during the outage and were retried: {stats:?}"
    );
    let produced = provider_ticks(&metrics) as u64;
    let symbols = c.synthetic.symbols.len() as u64;
    let tallies: u64 = stats.providers.values().map(|p| p.ledger.tallies).sum();
    assert_eq!(
        acknowledged(&metrics, &c.ingest.topic),
        produced + symbols + tallies,
        "every tick, one gap record per symbol and every ledger tally acknowledged"
    );
    assert_eq!(
        stats.providers["synthetic"]
            .gaps
            .get("bus_unavailable")
            .copied(),
        Some(symbols as u64)
    );
    assert_stored_exactly(
        &c,
        &db,
        produced,
        Duration::from_secs(120),
        "long broker outage",
    )
    .await;
    let gaps = wait_for("the outage's gaps to be stored", Duration::from_secs(30), || {
        let db = db.clone();
        async move {
            let v = psql(
                &db,
                "SELECT count(DISTINCT symbol) || ',' || coalesce(min(extract(epoch FROM to_ts - from_ts)), 0)::int \
                 FROM gaps WHERE reason = 'bus_unavailable'",
            );
            (!v.starts_with("0,")).then_some(v)
        }
    })
    .await;
    let (n, shortest) = gaps.split_once(',').unwrap();
    assert_eq!(
        n.parse::<u64>().unwrap(),
        symbols,
        "a gap for every symbol: {gaps}"
    );
    let shortest: u64 = shortest.parse().unwrap();
    assert!(
        (55..=120).contains(&shortest),
        "each gap spans the outage (~60 s): {shortest} s"
    );
    persist_token.cancel();
    persist.wait().await.expect("persist survived the outage");
}

/// `streamforge persist` as a process, stopped by SIGTERM: it must exit 0.
fn terminate(child: &mut std::process::Child, log: &std::path::Path, what: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{what} exits cleanly on SIGTERM ({status}):\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_persist_processes_with_one_restarting_every_5s_store_each_tick_once() {
    let (broker, _log, db) = shared_engines();
    let mut c = config(&broker.url(), &db, "memory://", &unique("churn"));
    c.kafka.session_timeout = Duration::from_secs(6);
    let dir = tempfile::tempdir().unwrap();
    let config_file = streamforge_testkit::migrated_config(
        env!("CARGO_BIN_EXE_streamforge"),
        dir.path(),
        &c.to_toml(),
    );
    let logs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("persist-{i}.log")))
        .collect();
    let mut members: Vec<_> = logs
        .iter()
        .map(|l| spawn_persist(&config_file, l))
        .collect();

    // Ingest feeds the whole churn: ten restarts of the third member, one
    // every 5 s, however long each drain takes.
    let (ingest, ingest_token) = start(&c, Role::Ingest).await;
    let mut restarts = 0;
    while restarts < 10 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        for (i, m) in members.iter_mut().enumerate().take(2) {
            assert!(
                m.try_wait().unwrap().is_none(),
                "persist {i} exited during the churn:\n{}",
                std::fs::read_to_string(&logs[i]).unwrap_or_default()
            );
        }
        terminate(&mut members[2], &logs[2], "the churning persist");
        members[2] = spawn_persist(&config_file, &logs[2]);
        restarts += 1;
    }
    let acked = stop_ingest(&c, ingest, ingest_token).await;
    assert_stored_exactly(
        &c,
        &db,
        acked,
        Duration::from_secs(90),
        "consumer-group churn",
    )
    .await;
    for (i, m) in members.iter_mut().enumerate() {
        terminate(m, &logs[i], &format!("persist {i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_instances_on_one_bus_each_stream_every_tick() {
    use streamforge_testkit::SseClient;

    let (broker, _log, db) = shared_engines();
    let c = config(&broker.url(), &db, "memory://", &unique("replicas"));
    let (persist, persist_token) = start(&c, Role::Persist).await;
    // Two replicas in one process: the same pid, as containers all have.
    let (serve_a, token_a) = start(&c, Role::Serve).await;
    let (serve_b, token_b) = start(&c, Role::Serve).await;
    let mut clients = Vec::new();
    for s in [&serve_a, &serve_b] {
        clients.push(SseClient::connect(&format!("http://{}/api/v1/stream", s.http_addr)).await);
    }
    // Both live tails have their partitions once a probe reaches both clients.
    let bus = persist.bus();
    let probe = |n: u32| streamforge_bus::Message {
        key: bytes::Bytes::from_static(b"PROBE"),
        payload: streamforge_model::wire::encode(&streamforge_testkit::tick(
            "PROBE",
            streamforge_model::Timestamp::now().as_micros() / 1000 + i64::from(n),
            1.0,
            1.0,
        ))
        .into(),
        headers: Default::default(),
    };
    for client in clients.iter_mut() {
        let mut n = 0;
        loop {
            n += 1;
            bus.publish(&c.ingest.topic, vec![probe(n)]).await.unwrap();
            match tokio::time::timeout(
                Duration::from_millis(500),
                client.next(Duration::from_secs(30)),
            )
            .await
            {
                Ok(Some(ev)) if ev.data.contains("PROBE") => break,
                _ => assert!(n < 120, "a serve instance never streamed the probe"),
            }
        }
    }

    let acked = ingest_for(&c, 3).await;
    for (i, client) in clients.iter_mut().enumerate() {
        let mut ids = std::collections::HashSet::new();
        while (ids.len() as u64) < acked {
            let ev = client
                .next(Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("serve {i}'s stream ended after {} ticks", ids.len()));
            if ev.event != "tick" || ev.data.contains("PROBE") {
                continue;
            }
            let tick: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
            ids.insert(tick["tick_id"].as_str().unwrap().to_string());
        }
        assert_eq!(ids.len() as u64, acked, "serve {i} streamed every tick");
    }
    for (s, t) in [
        (serve_a, token_a),
        (serve_b, token_b),
        (persist, persist_token),
    ] {
        t.cancel();
        s.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_credentials_from_kafka_properties_work_and_wrong_ones_fail_start_up() {
    use streamforge_testkit::kafka::{SASL_PASSWORD, SASL_USER};

    let (broker, _log, db) = shared_engines();
    let mut c = config(&broker.sasl_url(), &db, "memory://", &unique("sasl"));
    for (k, v) in [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", SASL_USER),
        ("sasl.password", SASL_PASSWORD),
    ] {
        c.kafka.properties.insert(k, v);
    }
    assert!(
        !c.to_toml().contains(SASL_PASSWORD),
        "config print redacts it"
    );
    assert!(
        !format!("{c:?}").contains(SASL_PASSWORD),
        "Debug redacts it"
    );
    let (persist, persist_token) = start(&c, Role::Persist).await;
    let acked = ingest_for(&c, 2).await;
    assert_stored_exactly(&c, &db, acked, Duration::from_secs(60), "over SASL").await;
    persist_token.cancel();
    persist.wait().await.unwrap();

    let wrong = "not-the-password-7731";
    c.kafka.properties.insert("sasl.password", wrong);
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        pipeline::start(&c, Role::Ingest, CancellationToken::new()),
    )
    .await
    .expect("start-up with wrong credentials fails, it does not hang");
    let Err(e) = result else {
        panic!("start-up with a wrong password succeeded")
    };
    let text = format!("{e:#}");
    assert!(text.contains("sasl.password"), "names the setting: {text}");
    assert!(!text.contains(wrong), "never shows the secret: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_postgres_refuses_mid_stream_on_kafka_are_dead_lettered_once_and_the_rest_stored_once()
{
    use bytes::Bytes;
    use streamforge_bus::{Headers, Message};

    let (broker, _log, db) = shared_engines();
    let mut c = config(&broker.url(), &db, "memory://", &unique("refused"));
    c.postgres.mode = Some(streamforge_store::postgres::Mode::Postgres);
    c.persist.batch_size = 500;
    let (persist, token) = start(&c, Role::Persist).await;
    // The database refuses one price (an operator's trigger, say).
    psql(
        &db,
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.price = 666.25 THEN RAISE EXCEPTION 'refuse_poison: refused'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON ticks FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    );
    let bus = persist.bus();
    let t0 = streamforge_model::Timestamp::now().saturating_sub_micros(120_000_000);
    let msg = |i: i64, price: f64| {
        let ts = t0.saturating_add_micros(i * 1_000);
        let mut headers = Headers::default();
        headers.insert("schema-version", Bytes::from_static(b"1"));
        Message {
            key: Bytes::from_static(b"BISECT"),
            payload: format!(
                r#"{{"symbol":"BISECT","ts":"{ts}","price":{price},"size":1,"exchange":"","src_id":"test"}}"#
            )
            .into(),
            headers,
        }
    };
    // Five publishes of 400, poison spread through the stream.
    let poison = [3i64, 399, 400, 401, 1_234, 1_999];
    let mut valid = 0u64;
    for chunk in 0..5 {
        let batch: Vec<Message> = (chunk * 400..(chunk + 1) * 400)
            .map(|i| {
                if poison.contains(&i) {
                    msg(i, 666.25)
                } else {
                    valid += 1;
                    msg(i, 100.0 + i as f64)
                }
            })
            .collect();
        bus.publish(&c.ingest.topic, batch).await.unwrap();
    }
    let stored = || {
        psql(
            &db,
            "SELECT count(*) || ',' || count(DISTINCT tick_id) FROM ticks WHERE symbol = 'BISECT'",
        )
    };
    let want = format!("{valid},{valid}");
    wait_for(
        "the valid ticks stored",
        Duration::from_secs(60),
        || async { (stored() == want).then_some(()) },
    )
    .await;

    let mut dlq = dlq_reader(&*bus, &c).await;
    let mut first = refused_dead_letters(&mut *dlq, poison.len()).await;
    first.sort();
    first.dedup();
    assert_eq!(
        first.len(),
        poison.len(),
        "each refused tick dead-lettered once"
    );

    // A restart goes on from the committed offsets: no poison again.
    token.cancel();
    persist.wait().await.unwrap();
    let (persist, token) = start(&c, Role::Persist).await;
    persist
        .bus()
        .publish(&c.ingest.topic, vec![msg(5_000, 42.5)])
        .await
        .unwrap();
    let want = format!("{},{}", valid + 1, valid + 1);
    wait_for(
        "a tick after the restart",
        Duration::from_secs(60),
        || async { (stored() == want).then_some(()) },
    )
    .await;
    let again = refused_dead_letters(&mut *dlq, 0).await;
    assert!(
        again.is_empty(),
        "dead-lettered again after the restart: {again:?}"
    );
    token.cancel();
    persist.wait().await.unwrap();
}

/// A fresh durable reader of `c`'s dead-letter topic, from its start.
async fn dlq_reader(
    bus: &dyn streamforge_bus::Bus,
    c: &Config,
) -> Box<dyn streamforge_bus::Consumer> {
    use streamforge_bus::{ConsumerOptions, StartFrom};
    bus.consumer(
        &c.ingest.dlq_topic,
        ConsumerOptions {
            group: unique("dlq-reader"),
            start: StartFrom::Earliest,
            durable: true,
        },
    )
    .await
    .unwrap()
}

/// `store_refused` dead letters until `n` arrived and 3 s passed without
/// more; their source offsets.
async fn refused_dead_letters(dlq: &mut dyn streamforge_bus::Consumer, n: usize) -> Vec<String> {
    let dead = common::dead_letters(dlq, n, Duration::from_secs(60), Duration::from_secs(3)).await;
    dead.iter()
        .map(|m| {
            let h = &m.headers;
            assert_eq!(h.get_str("dlq-reason"), Some("store_refused"));
            assert!(h.get_str("dlq-error").unwrap().contains("refuse_poison"));
            h.get_str("dlq-source-offset").unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_gaps_heal_across_kafka_into_postgres() {
    use std::collections::BTreeSet;
    use streamforge_model::TickId;
    use streamforge_providers::venue::simulator::SimConfig;

    let sim = streamforge_providers::binance::simulator::start(SimConfig {
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
        rate: 300.0,
        seed: Some(21),
        slice: Duration::from_millis(20),
        skip_every: Some(25),
        duplicate_every: Some(11),
        drop_every: Some(Duration::from_millis(1_500)),
        rest_429_every: Some(4),
        record: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (broker, _log, db) = shared_engines();
    let mut c = config(&broker.url(), &db, "memory://", &unique("binance"));
    c.providers = vec!["binance".into()];
    c.binance.ws_url = Some(format!("ws://{}", sim.addr));
    c.binance.rest_url = Some(format!("http://{}", sim.rest_addr));
    c.binance.history_interval = Duration::from_millis(10);
    c.binance.backoff_min = Duration::from_millis(50);
    let (persist, persist_token) = start(&c, Role::Persist).await;
    let (ingest, ingest_token) = start(&c, Role::Ingest).await;
    wait_for("two drops", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 3).then_some(()) }
    })
    .await;
    sim.stop_feed();
    let unhealed = |db: &str| -> (u64, u64) {
        let row = psql(
            db,
            "SELECT count(*) FILTER (WHERE status = 'healed') || ' ' || \
                    count(*) FILTER (WHERE last_id IS NOT NULL AND status <> 'healed') \
             FROM gaps",
        );
        let mut it = row.split(' ').map(|n| n.parse::<u64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    wait_for(
        "every gap with known ids healed in PostgreSQL",
        Duration::from_secs(60),
        || {
            let db = db.clone();
            async move {
                let (healed, pending) = unhealed(&db);
                (healed >= 4 && pending == 0).then_some(())
            }
        },
    )
    .await;
    // Every trade the venue made from the first sent to the last is a row, once.
    let mut span = std::collections::BTreeMap::new();
    for (_, t) in &sim.log.lock().sent {
        let e = span.entry(t.symbol.clone()).or_insert((t.id, t.id));
        e.0 = e.0.min(t.id);
        e.1 = e.1.max(t.id);
    }
    let made = sim.made();
    let mut expected: Vec<String> = Vec::new();
    for (symbol, (first, last)) in &span {
        for t in made[symbol]
            .iter()
            .filter(|t| (*first..=*last).contains(&t.id))
        {
            let id = TickId::from_source("binance", symbol, &t.id.to_string());
            expected.push(format!("{symbol} {}", id.as_i64()));
        }
    }
    expected.sort();
    let want = expected.len() as u64;
    wait_for("every trade in PostgreSQL", Duration::from_secs(60), || {
        let db = db.clone();
        async move { (count_stored(&db) >= want).then_some(()) }
    })
    .await;
    let stored = stored_ids(&db);
    assert_eq!(
        stored.iter().collect::<BTreeSet<_>>().len(),
        stored.len(),
        "no trade stored twice"
    );
    assert_eq!(stored, expected, "stored exactly the trades the venue made");
    {
        let log = sim.log.lock();
        assert!(!log.skipped.is_empty() && log.rest_rate_limited > 0 && log.duplicates_sent > 0);
    }
    let b = &ingest.metrics.snapshot().providers["binance"];
    assert!(b.backfilled > 0 && b.heals["healed"] >= 4, "{b:?}");
    ingest_token.cancel();
    ingest.wait().await.unwrap();

    // A gap an earlier run left open (its ids known) is healed by the next
    // ingest role, which writes no store but reads it.
    let (first, _) = span.values().next().copied().unwrap();
    psql(
        &db,
        &format!(
            "INSERT INTO gaps (provider, symbol, from_ts, to_ts, connection, reason, status, \
                               first_id, last_id) \
             VALUES ('binance', 'BINANCE:BTCUSDT', '2001-01-01T00:00:00Z', \
                     '2001-01-01T00:00:01Z', 1, 'sequence', 'open', {}, {})",
            first + 1,
            first + 3
        ),
    );
    let left_open = || {
        psql(
            &db,
            "SELECT status || ' ' || backfilled FROM gaps \
             WHERE from_ts = '2001-01-01T00:00:00Z'",
        )
    };
    assert_eq!(left_open(), "open 0");
    let (ingest, ingest_token) = start(&c, Role::Ingest).await;
    wait_for(
        "the next ingest role to heal the gap left open",
        Duration::from_secs(30),
        || {
            let status = left_open();
            async move { (status == "healed 3").then_some(()) }
        },
    )
    .await;
    assert_eq!(
        count_stored(&db),
        want,
        "the trades healed again were stored already: one row each"
    );
    ingest_token.cancel();
    ingest.wait().await.unwrap();
    persist_token.cancel();
    persist.wait().await.unwrap();
    sim.stop();
}
