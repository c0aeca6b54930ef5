//! The pipeline on PostgreSQL and Redis (real servers from testkit), with
//! those servers failing under load.

use std::time::Duration;

use streamforge::config::Config;
use streamforge::pipeline::{self, Role, Running};
use streamforge_model::{Interval, Symbol, Timestamp};
use streamforge_store::{Order, TickQuery};
use streamforge_testkit::engines::{Postgres, Redis};
use streamforge_testkit::reference::{self, assert_json_candles};
use streamforge_testkit::{get_json, metric, stored_ticks, wait_for};
use tokio_util::sync::CancellationToken;

const SYMBOLS: &[&str] = &["AAPL", "MSFT", "BINANCE:BTCUSDT"];

fn config(store: &str, cache: &str) -> Config {
    let mut c = Config {
        store: Some(store.to_string()),
        cache: cache.to_string(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.synthetic.symbols = SYMBOLS.iter().map(|s| s.to_string()).collect();
    c.synthetic.rate = 2_000.0;
    c.synthetic.seed = Some(7);
    c.persist.batch_timeout = Duration::from_millis(5);
    c.persist.retry_backoff = Duration::from_millis(50);
    c.log.level = "warn".into();
    c
}

async fn wait_stored_beyond(base: &str, n: u64) -> u64 {
    wait_for(
        &format!("more than {n} ticks stored"),
        Duration::from_secs(30),
        || async move { stored_ticks(base).await.filter(|t| *t > n) },
    )
    .await
}

/// Stops the pipeline; every produced tick must be stored exactly once.
/// A batch whose commit reached the store while its answer was lost (the
/// server paused mid-commit) is written again and deduplicated, so the
/// rows in the store are counted, not the writes.
async fn stop_and_check(running: Running, token: CancellationToken) {
    let metrics = running.metrics.clone();
    let store = running.store.clone().unwrap();
    token.cancel();
    running.wait().await.expect("clean shutdown");
    let stats = metrics.snapshot();
    let (produced, written) = (stats.providers["synthetic"].ticks, stats.store.rows_written);
    assert!(produced > 0);
    let mut rows = 0u64;
    for s in SYMBOLS {
        let ticks = store
            .ticks(TickQuery {
                symbol: Symbol::parse(s).unwrap(),
                from: Timestamp::MIN,
                to: Timestamp::MAX,
                limit: 10_000_000,
                order: Order::Asc,
            })
            .await
            .unwrap();
        rows += ticks.len() as u64;
    }
    assert_eq!(rows, produced, "every produced tick was stored once");
    assert!(
        written <= produced && written + stats.store.rows_deduplicated >= produced,
        "written {written}, deduplicated {}, produced {produced}",
        stats.store.rows_deduplicated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_postgres_and_redis_and_serves_quotes_from_redis() {
    let pg = streamforge_testkit::engines::shared_postgres();
    let redis = Redis::start().unwrap();
    let db = pg.create_database().unwrap();
    let token = CancellationToken::new();
    let running = pipeline::start(&config(&db, &redis.url()), Role::Run, token.clone())
        .await
        .unwrap();
    let base = format!("http://{}", running.http_addr);
    // Some seconds of trades, so candles span several 1 s buckets.
    wait_stored_beyond(&base, 6_000).await;

    // Served from Redis while the feed runs (its value is checked below,
    // once the feed has stopped).
    let res = reqwest::get(format!("{base}/api/v1/quotes/AAPL/latest"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-streamforge-source"], "cache");
    let (status, ready) = get_json(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["store"]["detail"], "postgres");
    assert_eq!(ready["checks"]["cache"]["detail"], "redis");
    // Every stage reports what it did.
    let text = running.metrics.render();
    for series in [
        "streamforge_cache_reads_total{result=\"hit\"}",
        "streamforge_pipeline_exchange_to_ingested_seconds_count",
        "streamforge_pipeline_ingested_to_cached_seconds_count",
        "streamforge_bus_publish_duration_seconds_count{topic=\"ticks\"}",
        "streamforge_bus_consumed_bytes_total{topic=\"ticks\"}",
    ] {
        assert!(metric(&text, series) > 0.0, "{series} in\n{text}");
    }
    let store = running.store.clone().unwrap();
    stop_and_check(running, token).await;

    // With the feed stopped, what serve answers from Redis and PostgreSQL
    // can be checked value by value: a serve role started on them.
    let token = CancellationToken::new();
    let serve = pipeline::start(&config(&db, &redis.url()), Role::Serve, token.clone())
        .await
        .unwrap();
    let base = format!("http://{}", serve.http_addr);
    let stored = |symbol: &str| {
        let store = store.clone();
        let symbol = Symbol::parse(symbol).unwrap();
        async move {
            store
                .ticks(TickQuery {
                    symbol,
                    from: Timestamp::MIN,
                    to: Timestamp::MAX,
                    limit: 1_000_000,
                    order: Order::Asc,
                })
                .await
                .unwrap()
        }
    };
    // The latest quote, from Redis, is the newest stored tick.
    let aapl = stored("AAPL").await;
    let newest = reference::newest(&aapl).unwrap();
    let res = reqwest::get(format!("{base}/api/v1/quotes/AAPL/latest"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-streamforge-source"], "cache");
    let q: serde_json::Value = res.json().await.unwrap();
    reference::assert_json_quote(&q, newest);
    // 1s candles of MSFT equal a fold over its stored ticks.
    let msft = stored("MSFT").await;
    let expected = reference::candles(Interval::S1, &msft);
    assert!(expected.len() >= 2, "{} candles", expected.len());
    let (from, to) = (
        expected[0].start,
        expected[expected.len() - 1]
            .start
            .saturating_add_micros(1_000_000),
    );
    let (status, c) = get_json(&format!(
        "{base}/api/v1/candles/MSFT?interval=1s&from={}&to={}&limit=10000",
        from.as_millis(),
        to.as_millis()
    ))
    .await;
    assert_eq!(status, 200, "{c}");
    assert_json_candles(c["candles"].as_array().unwrap(), &expected, "MSFT 1s");
    token.cancel();
    serve.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_pauses_persist_and_loses_nothing() {
    let mut pg = Postgres::start().unwrap();
    let db = pg.create_database().unwrap();
    let token = CancellationToken::new();
    let running = pipeline::start(&config(&db, "memory://"), Role::Run, token.clone())
        .await
        .unwrap();
    let base = format!("http://{}", running.http_addr);
    wait_stored_beyond(&base, 300).await;

    pg.stop();
    let ready = wait_for(
        "/readyz to say the store is down while PostgreSQL is stopped",
        Duration::from_secs(20),
        || {
            let url = format!("{base}/readyz");
            async move {
                let (status, ready) = get_json(&url).await;
                (status == 503 && ready["checks"]["store"]["ok"] == false).then_some(ready)
            }
        },
    )
    .await;
    assert!(ready["checks"]["store"]["detail"].is_string(), "{ready}");
    // Queries that need the store answer 503 with a JSON error, not a hang.
    for path in [
        "/api/v1/ticks/AAPL?from=0&limit=10",
        "/api/v1/candles/AAPL?interval=1m",
        "/api/v1/symbols",
    ] {
        let (status, body) = get_json(&format!("{base}{path}")).await;
        assert_eq!(status, 503, "{path} while PostgreSQL is down: {body}");
        assert!(
            body["error"].is_string() && body["detail"].is_string(),
            "{path}: {body}"
        );
    }
    // Persist sees the outage: a write fails (at the latest when the
    // store's call timeout ends a write the stopped server left hanging).
    let metrics = running.metrics.clone();
    wait_for(
        "a store write to fail while PostgreSQL is stopped",
        Duration::from_secs(30),
        || {
            let failed = metrics.snapshot().store.write_errors;
            async move { (failed > 0).then_some(()) }
        },
    )
    .await;
    pg.resume().unwrap();
    // And answer again once it is back.
    wait_for(
        "the API to answer from the store again",
        Duration::from_secs(30),
        || {
            let url = format!("{base}/api/v1/ticks/AAPL?from=0&limit=10");
            async move {
                let (status, body) = get_json(&url).await;
                (status == 200 && body["count"] == 10).then_some(())
            }
        },
    )
    .await;

    let before = wait_stored_beyond(&base, 0).await;
    wait_stored_beyond(&base, before + 500).await;
    let text = running.metrics.render();
    assert!(
        metric(&text, "streamforge_store_write_errors_total") > 0.0,
        "the outage was counted in the exposition"
    );
    stop_and_check(running, token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_the_api_answers_and_the_cache_catches_up() {
    let pg = streamforge_testkit::engines::shared_postgres();
    let mut redis = Redis::start().unwrap();
    let db = pg.create_database().unwrap();
    let token = CancellationToken::new();
    let running = pipeline::start(&config(&db, &redis.url()), Role::Run, token.clone())
        .await
        .unwrap();
    let base = format!("http://{}", running.http_addr);
    wait_stored_beyond(&base, 300).await;

    redis.stop();
    let stored = stored_ticks(&base).await.unwrap();
    wait_stored_beyond(&base, stored + 300).await; // ticks still get stored
    let res = reqwest::get(format!("{base}/api/v1/quotes/MSFT/latest"))
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        200,
        "quotes come from PostgreSQL while Redis is down"
    );
    assert_eq!(res.headers()["x-streamforge-source"], "store");

    redis.resume().unwrap(); // empty, like a flush
    let store = running.store.clone().unwrap();
    wait_for("the cache to catch up", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let res = reqwest::get(format!("{base}/api/v1/quotes/BINANCE:BTCUSDT/latest"))
                .await
                .ok()?;
            (res.headers()["x-streamforge-source"] == "cache").then_some(())
        }
    })
    .await;
    stop_and_check(running, token).await;
    // After the drain the cache holds exactly the store's newest tick.
    let cache = streamforge_store::open_cache(&redis.url()).await.unwrap();
    for s in SYMBOLS {
        let symbol = streamforge_model::Symbol::parse(s).unwrap();
        let cached = cache.latest(&symbol).await.unwrap().expect("cached again");
        let stored = store.latest(&symbol).await.unwrap().unwrap();
        assert_eq!(
            cached, stored,
            "{s}: the cache is never behind the store at rest"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_up_the_api_answers_from_the_store_and_the_cache_catches_up() {
    let pg = streamforge_testkit::engines::shared_postgres();
    let mut redis = Redis::start().unwrap();
    let url = redis.url();
    redis.stop(); // down before the pipeline starts
    let db = pg.create_database().unwrap();
    let token = CancellationToken::new();
    let running = pipeline::start(&config(&db, &url), Role::Run, token.clone())
        .await
        .expect("the pipeline starts without its cache");
    let base = format!("http://{}", running.http_addr);
    wait_stored_beyond(&base, 300).await;
    let (status, ready) = get_json(&format!("{base}/readyz")).await;
    assert_eq!(
        (
            status,
            &ready["checks"]["cache"]["ok"],
            &ready["checks"]["store"]["ok"]
        ),
        (503, &serde_json::json!(false), &serde_json::json!(true)),
        "not ready, saying the cache is what is down: {ready}"
    );
    let res = reqwest::get(format!("{base}/api/v1/quotes/AAPL/latest"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-streamforge-source"], "store");

    redis.resume().unwrap();
    wait_for("the cache to catch up", Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let res = reqwest::get(format!("{base}/api/v1/quotes/AAPL/latest"))
                .await
                .ok()?;
            (res.headers()["x-streamforge-source"] == "cache").then_some(())
        }
    })
    .await;
    wait_for(
        "/readyz to say ready again",
        Duration::from_secs(30),
        || {
            let url = format!("{base}/readyz");
            async move { (get_json(&url).await.0 == 200).then_some(()) }
        },
    )
    .await;
    let store = running.store.clone().unwrap();
    stop_and_check(running, token).await;
    let cache = streamforge_store::open_cache(&url).await.unwrap();
    for s in SYMBOLS {
        let symbol = Symbol::parse(s).unwrap();
        let stored = store
            .ticks(TickQuery {
                symbol: symbol.clone(),
                from: Timestamp::MIN,
                to: Timestamp::MAX,
                limit: 1_000_000,
                order: Order::Asc,
            })
            .await
            .unwrap();
        let cached = cache.latest(&symbol).await.unwrap().expect("cached");
        assert_eq!(
            &cached,
            reference::newest(&stored).unwrap(),
            "{s}: the cache holds the newest stored tick"
        );
    }
}
