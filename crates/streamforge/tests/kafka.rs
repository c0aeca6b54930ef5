//! The production path: `ingest`, `persist` and `serve` as separate roles on a
//! Kafka-compatible broker (tansu), PostgreSQL and Redis, all real servers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use streamforge::config::Config;
use streamforge::pipeline::{self, Roles, Running};
use streamforge_testkit::engines::{psql, shared_broker, shared_postgres, Redis};
use streamforge_testkit::{get_json, metric, stored_ticks, wait_for};
use tokio_util::sync::CancellationToken;

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
    c.synthetic.rate = 1_500.0;
    c.synthetic.seed = Some(11);
    c.kafka.partitions = 3;
    c.log.level = "warn".into();
    c
}

async fn start(c: &Config, roles: Roles) -> (Running, CancellationToken) {
    let token = CancellationToken::new();
    let running = pipeline::start(c, roles, token.clone(), None)
        .await
        .unwrap();
    (running, token)
}

/// Runs ingest for `secs` and stops it; returns the ticks the broker acknowledged.
async fn ingest_for(c: &Config, secs: u64) -> u64 {
    let (ingest, token) = start(c, Roles::INGEST).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let metrics = ingest.metrics.clone();
    token.cancel();
    ingest.wait().await.expect("ingest drains and flushes");
    let text = metrics.render();
    let acked = metric(
        &text,
        &format!(
            "streamforge_bus_published_messages_total{{topic=\"{}\"}}",
            c.ingest.topic
        ),
    );
    let produced = metric(
        &text,
        "streamforge_provider_ticks_total{provider=\"synthetic\"}",
    );
    assert_eq!(
        acked, produced,
        "every produced tick was acknowledged by the broker"
    );
    assert!(acked > 0.0);
    acked as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_persist_serve_as_separate_roles_store_each_tick_once() {
    let broker = shared_broker();
    let db = shared_postgres().create_database().unwrap();
    let redis = Redis::start().unwrap();
    let mut c = config(&broker.url(), &db, &redis.url(), &unique("ticks"));
    // The test broker (tansu 0.6, SQLite engine) stalls its consumers when a
    // backlog builds up, which a busy machine (the whole suite in parallel,
    // TimescaleDB inserts) makes likely at the default 1,500 ticks/s.
    c.synthetic.rate = 400.0;

    let (persist, persist_token) = start(&c, Roles::PERSIST).await;
    let (serve, serve_token) = start(&c, Roles::SERVE).await;
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
    // Persist is ready only with partitions assigned, and says so.
    let (status, ready) = get_json(&format!("http://{}/readyz", persist.http_addr)).await;
    assert_eq!(status, 200, "{ready}");
    let check = format!("consumer {}", c.ingest.topic);
    let found = &ready["checks"][&check];
    assert_eq!(found["ok"], true, "{ready}");
    assert!(
        found["detail"].as_str().unwrap().contains("3 partitions"),
        "{ready}"
    );
    assert_eq!(psql(&db, "SELECT count(*) FROM ticks"), acked.to_string());
    assert_eq!(
        psql(
            &db,
            "SELECT count(DISTINCT (symbol, ts, tick_id)) FROM ticks"
        ),
        acked.to_string()
    );

    let res = reqwest::get(format!("{base}/api/v1/quotes/AAPL/latest"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-streamforge-source"], "cache");
    let (status, ticks) = get_json(&format!("{base}/api/v1/ticks/MSFT?from=0&limit=10")).await;
    assert_eq!(status, 200, "{ticks}");
    assert_eq!(ticks["count"], 10);

    // Persist reports its lag per partition; caught up, it reads 0.
    let series = format!(
        "streamforge_bus_consumer_lag{{partition=\"0\",topic=\"{}\"}}",
        c.ingest.topic
    );
    wait_for(
        "persist to report a lag of 0",
        Duration::from_secs(75),
        || {
            let (m, series) = (persist.metrics.clone(), series.clone());
            async move {
                let text = m.render();
                (text.contains(&series) && metric(&text, &series) == 0.0).then_some(())
            }
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
    use streamforge_bus::{ConsumerOptions, Headers, Message, Polled, StartFrom};

    let broker = shared_broker();
    let db = shared_postgres().create_database().unwrap();
    let c = config(&broker.url(), &db, "memory://", &unique("poison"));
    let (persist, token) = start(&c, Roles::PERSIST).await;
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

    let mut dlq = bus
        .consumer(
            &c.ingest.dlq_topic,
            ConsumerOptions {
                group: unique("dlq-reader"),
                start: StartFrom::Earliest,
                durable: true,
            },
        )
        .await
        .unwrap();
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
    let broker = shared_broker();
    let db = shared_postgres().create_database().unwrap();
    let redis = Redis::start().unwrap();
    let mut c = config(&broker.url(), &db, &redis.url(), &unique("crash"));
    c.kafka.session_timeout = Duration::from_secs(6);
    // The test broker (tansu 0.6, SQLite engine) reads a backlog slowly: a
    // restarted member far behind at a high rate stalls the whole broker.
    c.synthetic.rate = 200.0;
    c.persist.batch_size = 2_000;
    c.persist.batch_timeout = Duration::from_millis(50);
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("streamforge.toml");
    std::fs::write(&config_file, c.to_toml()).unwrap();
    let log = dir.path().join("persist.log");
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
        .arg("--config")
        .arg(&config_file)
        .args(["migrate", "up"])
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");

    let ingest_config = c.clone();
    let ingest = tokio::spawn(async move { ingest_for(&ingest_config, 25).await });
    let mut kills = 0;
    while !ingest.is_finished() && kills < 4 {
        let mut child = spawn_persist(&config_file, &log);
        let before = count_rows(&db);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // It has joined the group and is storing when the row count grows.
        while count_rows(&db) <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the persist process started after {kills} kills stored nothing in 60s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            if ingest.is_finished() && count_rows(&db) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Somewhere inside the stream of batches: receive, COPY, commit.
        tokio::time::sleep(Duration::from_millis(150 + 170 * kills as u64)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        // The next member joins once the group has expired the dead one.
        tokio::time::sleep(c.kafka.session_timeout + Duration::from_secs(2)).await;
    }
    assert!(kills >= 2, "persist was killed only {kills} times");
    let acked = ingest.await.unwrap();

    tokio::time::sleep(c.kafka.session_timeout + Duration::from_secs(2)).await;
    let mut last = spawn_persist(&config_file, &log);
    let stored = wait_for(
        "the restarted persist to store every acknowledged tick",
        Duration::from_secs(90),
        || {
            let db = db.clone();
            async move { Some(count_rows(&db)).filter(|n| *n >= acked) }
        },
    )
    .await;
    // Let it settle: redeliveries after the last kill must not add rows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &last.id().to_string()])
        .status();
    let status = last.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "persist exits cleanly on SIGTERM:\n{log_text}"
    );
    assert_eq!(
        stored, acked,
        "stored = acknowledged after {kills} hard kills"
    );
    assert_eq!(count_rows(&db), acked, "no duplicates from redelivery");
    assert_eq!(
        psql(
            &db,
            "SELECT count(DISTINCT (symbol, ts, tick_id)) FROM ticks"
        ),
        acked.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_pauses_while_postgres_is_down_and_resumes_without_losing_ticks() {
    use streamforge_testkit::engines::Postgres;

    let broker = shared_broker();
    let mut pg = Postgres::start().unwrap();
    let db = pg.create_database().unwrap();
    let mut c = config(&broker.url(), &db, "memory://", &unique("outage"));
    // An outage longer than the poll interval: without pausing, the consumer
    // would be expelled from its group.
    c.kafka.session_timeout = Duration::from_secs(6);
    c.kafka.max_poll_interval = Duration::from_secs(6);
    // A small backlog: see the crash test on the test broker's backlog reads.
    c.synthetic.rate = 200.0;
    c.persist.retry_backoff = Duration::from_millis(100);
    let (persist, token) = start(&c, Roles::PERSIST).await;
    let metrics = persist.metrics.clone();

    let ingest_config = c.clone();
    let ingest = tokio::spawn(async move { ingest_for(&ingest_config, 20).await });
    wait_for("ticks to be stored", Duration::from_secs(60), || {
        let db = db.clone();
        async move { (count_rows(&db) > 0).then_some(()) }
    })
    .await;
    pg.stop();
    wait_for("persist to pause", Duration::from_secs(30), || {
        let metrics = metrics.clone();
        async move { (metric(&metrics.render(), "streamforge_persist_paused") == 1.0).then_some(()) }
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
    assert_eq!(
        psql(
            &db,
            "SELECT count(DISTINCT (symbol, ts, tick_id)) FROM ticks"
        ),
        acked.to_string()
    );
    let text = metrics.render();
    assert!(metric(&text, "streamforge_persist_pauses_total") >= 1.0);
    assert_eq!(metric(&text, "streamforge_persist_paused"), 0.0);
    assert!(metric(&text, "streamforge_store_write_errors_total") >= 1.0);
    token.cancel();
    persist.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finnhub_ticks_and_gaps_cross_kafka_to_postgres() {
    use streamforge_providers::finnhub::{Simulator, SimulatorConfig};

    let sim = Simulator::start(SimulatorConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: "t".into(),
        rate: 150.0,
        seed: Some(9),
        ping_every: Duration::from_millis(300),
        drop_every: Some(Duration::from_millis(1500)),
        record: true,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let broker = shared_broker();
    let db = shared_postgres().create_database().unwrap();
    let mut c = config(&broker.url(), &db, "memory://", &unique("finnhub"));
    c.finnhub.token = Some("t".into());
    c.finnhub.url = sim.url();
    c.finnhub.symbols = vec!["AAPL".into(), "BINANCE:BTCUSDT".into()];
    c.finnhub.backoff_min = Duration::from_millis(50);
    let (persist, persist_token) = start(&c, Roles::PERSIST).await;
    let (ingest, ingest_token) = start(&c, Roles::INGEST).await;
    wait_for("two reconnects", Duration::from_secs(30), || {
        let log = sim.log.clone();
        async move { (log.lock().connections >= 3).then_some(()) }
    })
    .await;
    sim.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ingest_token.cancel();
    ingest.wait().await.expect("ingest drains and flushes");
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
    let gaps: u64 = wait_for("gaps in PostgreSQL", Duration::from_secs(30), || {
        let db = db.clone();
        async move {
            let n: u64 = psql(
                &db,
                "SELECT count(*) FROM gaps WHERE reason = 'disconnected'",
            )
            .parse()
            .unwrap();
            (n >= 4).then_some(n)
        }
    })
    .await;
    assert_eq!(gaps % 2, 0, "one gap per symbol and outage: {gaps}");
    persist_token.cancel();
    persist.wait().await.unwrap();
}
