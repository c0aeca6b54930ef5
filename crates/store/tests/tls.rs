//! The store and the cache over TLS: a PostgreSQL and a Redis that speak
//! nothing else, with certificates from a CA made in the test.

use streamforge_model::Symbol;
use streamforge_store::postgres::{PostgresConfig, PostgresStore};
use streamforge_store::{Cache, RedisCache, TickStore};
use streamforge_testkit::engines::{Postgres, Redis};
use streamforge_testkit::tick;
use streamforge_testkit::tls::TestCa;

const T0: i64 = 1_756_325_700_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_as_sslmode_says() {
    let ca = TestCa::new("PostgreSQL test CA");
    let mut pg = Postgres::start().unwrap();
    let db = pg.create_database().unwrap();
    let name = db.rsplit('/').next().unwrap().to_string();
    let issued = ca.issue(&["localhost"]);
    pg.require_tls(&issued.cert_pem, &issued.key_pem).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = ca.write(&dir.path().join("ca.crt"));
    let stranger = TestCa::new("another CA").write(&dir.path().join("other.crt"));
    let port = pg.port();
    let at =
        |host: &str, query: String| format!("postgres://postgres@{host}:{port}/{name}?{query}");
    let open = |url: String| async move {
        let options = PostgresConfig {
            connect_timeout: std::time::Duration::from_secs(5),
            ..PostgresConfig::default()
        };
        PostgresStore::open(&url, options).await
    };

    // The server names localhost, signed by our CA: verify-full passes,
    // and the store works (migrations, a write, a read).
    let full = at(
        "localhost",
        format!("sslmode=verify-full&sslrootcert={}", root.display()),
    );
    let store = open(full).await.expect("verify-full against the right CA");
    let batch: streamforge_store::TickBatch = vec![tick("AAPL", T0, 1.5, 2.0)].into();
    store.write_batch(batch).await.unwrap();
    let aapl = Symbol::parse("AAPL").unwrap();
    assert_eq!(store.latest(&aapl).await.unwrap().unwrap().price(), 1.5);
    drop(store);

    // Plain TCP is refused by the server (hostssl only).
    let plain = open(at("127.0.0.1", "sslmode=disable".into())).await;
    let e = plain
        .expect_err("a plain connection was let in")
        .to_string();
    assert!(e.contains("pg_hba") || e.contains("no encryption"), "{e}");
    // The certificate does not name 127.0.0.1: verify-full refuses,
    // verify-ca (the chain only) passes.
    let wrong_name = open(at(
        "127.0.0.1",
        format!("sslmode=verify-full&sslrootcert={}", root.display()),
    ))
    .await;
    assert!(
        wrong_name.is_err(),
        "verify-full took a certificate for another name"
    );
    open(at(
        "127.0.0.1",
        format!("sslmode=verify-ca&sslrootcert={}", root.display()),
    ))
    .await
    .expect("verify-ca ignores the name");
    // Another CA: refused, also by `require` with a root (libpq: verify-ca).
    for mode in ["verify-ca", "require"] {
        let url = at(
            "localhost",
            format!("sslmode={mode}&sslrootcert={}", stranger.display()),
        );
        let e = open(url)
            .await
            .expect_err("a certificate of another CA was accepted");
        assert!(
            e.to_string().to_lowercase().contains("certificate"),
            "{mode}: {e}"
        );
    }
    // `require` without a root encrypts without checking (as libpq).
    open(at("localhost", "sslmode=require".into()))
        .await
        .expect("require without a root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_private_ca() {
    let ca = TestCa::new("Redis test CA");
    let issued = ca.issue(&["localhost"]);
    let redis = Redis::start_tls(&issued.cert_pem, &issued.key_pem, ca.pem()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = ca.write(&dir.path().join("ca.crt"));
    let url = format!("{}?tls_ca_file={}", redis.url(), root.display());
    assert!(url.starts_with("rediss://localhost:"), "{url}");
    let cache = RedisCache::new(&url).unwrap();
    assert_eq!(
        cache
            .update_latest(&[tick("AAPL", T0, 2.5, 1.0)])
            .await
            .unwrap(),
        1
    );
    let aapl = Symbol::parse("AAPL").unwrap();
    assert_eq!(cache.latest(&aapl).await.unwrap().unwrap().price(), 2.5);

    // Another CA, or no TLS at all: no answer from this Redis.
    let stranger = TestCa::new("another CA").write(&dir.path().join("other.crt"));
    let other = RedisCache::new(&format!(
        "{}?tls_ca_file={}",
        redis.url(),
        stranger.display()
    ))
    .unwrap();
    assert!(
        other.latest(&aapl).await.is_err(),
        "a certificate of another CA was accepted"
    );
    let plain = RedisCache::new(&redis.url().replace("rediss://", "redis://")).unwrap();
    assert!(plain.latest(&aapl).await.is_err(), "plain Redis answered");
    // A CA file on a plain URL, or one that cannot be read: a clear error.
    let e = RedisCache::new(&format!(
        "redis://localhost:1/?tls_ca_file={}",
        root.display()
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("rediss://"), "{e}");
    let e = RedisCache::new("rediss://localhost:1/?tls_ca_file=/nowhere/ca.crt")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nowhere/ca.crt"), "{e}");
}
