use std::sync::Arc;

use super::*;

const T0: i64 = 1_756_325_700_000; // 2025-08-27T20:15:00Z in ms

fn tick(symbol: &str, ms: i64, price: f64, size: f64) -> Tick {
    let conditions = if size > 50.0 {
        vec!["1".into(), "24".into()]
    } else {
        vec![]
    };
    streamforge_testkit::tick_with_conditions(symbol, ms, price, size, conditions)
}

fn q(symbol: &str) -> TickQuery {
    TickQuery {
        symbol: Symbol::parse(symbol).unwrap(),
        from: Timestamp::MIN,
        to: Timestamp::MAX,
        limit: 1000,
        order: Order::Asc,
    }
}

#[tokio::test]
async fn reopening_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.write_batch(Arc::from(vec![tick("AAPL", T0, 1.0, 1.0)]))
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).await.unwrap();
    assert_eq!(s.ticks(q("AAPL")).await.unwrap().len(), 1);
    assert_eq!(
        s.write_batch(Arc::from(vec![tick("AAPL", T0, 1.0, 1.0)]))
            .await
            .unwrap()
            .inserted,
        0
    );
}

#[tokio::test]
async fn unknown_scheme_and_bad_paths_are_clear_errors() {
    let err = crate::open_store("mongodb://x")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("mongodb") && err.contains("sqlite"), "{err}");
    let err = crate::open_store("sqlite://")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("path"), "{err}");
    let err = crate::open_store("/tmp/x.db")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("SCHEME://"), "{err}");
    let err = crate::open_cache("memcached://x")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("memcached") && err.contains("memory"), "{err}");
}

#[tokio::test]
async fn cached_range_queries_are_not_recompiled_for_new_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
    let batch: Vec<Tick> = (0..50).map(|i| tick("AAPL", T0 + i, 1.0, 1.0)).collect();
    s.write_batch(Arc::from(batch)).await.unwrap();
    for limit in 1..=20 {
        let page = s.ticks(TickQuery { limit, ..q("AAPL") }).await.unwrap();
        assert_eq!(page.len(), limit);
    }
    // One reader ran every query (they ran one after another).
    let readers = s.inner.readers.lock();
    assert_eq!(readers.len(), 1);
    let stmt = readers[0].prepare_cached(&ticks_sql(Order::Asc)).unwrap();
    assert_eq!(
        stmt.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "a new LIMIT binding recompiled the cached statement"
    );
}
