//! Behaviour every [`Cache`] must have, on memory and on a real Redis, and
//! what the Redis cache does when Redis goes away and comes back.

use std::time::{Duration, Instant};

use streamforge_model::Symbol;
use streamforge_store::{Cache, MemoryCache, RedisCache};
use streamforge_testkit::engines::Redis;
use streamforge_testkit::tick;

const T0: i64 = 1_756_325_700_000;

async fn only_newer_ticks_replace_the_latest(c: &dyn Cache) {
    let aapl = Symbol::parse("AAPL").unwrap();
    assert!(c.latest(&aapl).await.unwrap().is_none());
    let changed = c
        .update_latest(&[
            tick("AAPL", T0 + 10, 2.0, 1.0),
            tick("AAPL", T0, 1.0, 1.0),
            tick("MSFT", T0, 9.0, 1.0),
        ])
        .await
        .unwrap();
    assert_eq!(changed, 2);
    assert_eq!(
        c.latest(&aapl).await.unwrap().unwrap(),
        tick("AAPL", T0 + 10, 2.0, 1.0)
    );
    // Late data never moves the quote back.
    assert_eq!(
        c.update_latest(&[tick("AAPL", T0 + 5, 3.0, 1.0)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(c.latest(&aapl).await.unwrap().unwrap().price(), 2.0);
    // Same time: the larger id wins, whatever the order of arrival.
    let (a, b) = (
        tick("AAPL", T0 + 20, 4.0, 1.0),
        tick("AAPL", T0 + 20, 5.0, 1.0),
    );
    let winner = if a.sort_key() > b.sort_key() {
        a.clone()
    } else {
        b.clone()
    };
    c.update_latest(std::slice::from_ref(&a)).await.unwrap();
    c.update_latest(std::slice::from_ref(&b)).await.unwrap();
    c.update_latest(&[a]).await.unwrap();
    assert_eq!(c.latest(&aapl).await.unwrap().unwrap(), winner);
    c.ping().await.unwrap();
}

#[tokio::test]
async fn memory_cache_keeps_the_newest() {
    only_newer_ticks_replace_the_latest(&MemoryCache::new()).await;
}

#[tokio::test]
async fn redis_cache_keeps_the_newest() {
    let redis = Redis::start().unwrap();
    only_newer_ticks_replace_the_latest(&RedisCache::new(&redis.url()).unwrap()).await;
}

#[tokio::test]
async fn redis_down_fails_fast_and_the_cache_recovers() {
    let mut redis = Redis::start().unwrap();
    let cache = RedisCache::new(&redis.url()).unwrap();
    let aapl = Symbol::parse("AAPL").unwrap();
    cache
        .update_latest(&[tick("AAPL", T0, 1.0, 1.0)])
        .await
        .unwrap();

    redis.stop();
    let started = Instant::now();
    assert!(cache
        .update_latest(&[tick("AAPL", T0 + 1, 2.0, 1.0)])
        .await
        .is_err());
    assert!(cache.latest(&aapl).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "calls fail fast while Redis is down"
    );

    redis.resume().unwrap();
    // The restarted Redis is empty; the next batch fills it again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if cache
            .update_latest(&[tick("AAPL", T0 + 2, 3.0, 1.0)])
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache reconnects after Redis comes back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(cache.latest(&aapl).await.unwrap().unwrap().price(), 3.0);
}

#[tokio::test]
async fn redis_url_errors_are_clear() {
    let err = streamforge_store::open_cache("redis://[::1")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("redis://[::1"), "{err}");
}
