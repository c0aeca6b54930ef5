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
    // Same time: the larger id as a signed integer wins (the order SQL
    // sorts BIGINT ids in, so the cache agrees with the store's newest
    // tick), whatever the order of arrival. The two ids differ in sign, so
    // comparing them unsigned would pick the other one.
    for (case, (negative_first, one_batch)) in
        [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .enumerate()
    {
        let symbol = format!("TIE{case}");
        let same_time = |k: usize| tick(&symbol, T0 + 20, 4.0 + k as f64, 1.0);
        let positive = (0..100)
            .map(same_time)
            .find(|t| t.tick_id().as_i64() > 0)
            .unwrap();
        let negative = (0..100)
            .map(same_time)
            .find(|t| t.tick_id().as_i64() < 0)
            .unwrap();
        let (first, second) = if negative_first {
            (&negative, &positive)
        } else {
            (&positive, &negative)
        };
        if one_batch {
            c.update_latest(&[first.clone(), second.clone()])
                .await
                .unwrap();
        } else {
            c.update_latest(std::slice::from_ref(first)).await.unwrap();
            c.update_latest(std::slice::from_ref(second)).await.unwrap();
            c.update_latest(std::slice::from_ref(first)).await.unwrap();
        }
        let sym = Symbol::parse(&symbol).unwrap();
        assert_eq!(
            c.latest(&sym).await.unwrap().unwrap(),
            positive,
            "negative id first: {negative_first}, one batch: {one_batch}"
        );
    }
    // A later time wins over any id.
    let tied = |k: usize| tick("AAPL", T0 + 20, 4.0 + k as f64, 1.0);
    let large = (0..100)
        .map(tied)
        .max_by_key(|t| t.tick_id().as_i64())
        .unwrap();
    let later = (0..100)
        .map(|k| tick("AAPL", T0 + 21, 1.0 + k as f64, 1.0))
        .min_by_key(|t| t.tick_id().as_i64())
        .unwrap();
    assert!(later.tick_id().as_i64() < large.tick_id().as_i64());
    c.update_latest(&[later.clone(), large]).await.unwrap();
    assert_eq!(c.latest(&aapl).await.unwrap().unwrap(), later);
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
