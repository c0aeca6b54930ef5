//! `StoreError` classes from real failures of real engines: what persist
//! retries (busy, connection lost), what it isolates and
//! dead-letters (the rows' data), and what is neither.

use streamforge_store::StoreError;
use streamforge_testkit::engines::shared_postgres;

fn classes(e: &StoreError) -> (bool, bool) {
    (e.is_retryable(), e.is_data_error())
}

#[test]
fn sqlite_busy_is_retryable_and_constraints_are_data_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let a = rusqlite::Connection::open(&path).unwrap();
    a.execute_batch("CREATE TABLE t (x REAL NOT NULL CHECK (x > 0)); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .unwrap();
    let b = rusqlite::Connection::open(&path).unwrap();
    b.busy_timeout(std::time::Duration::ZERO).unwrap();
    let busy = StoreError::from(b.execute("INSERT INTO t VALUES (2)", []).unwrap_err());
    assert_eq!(classes(&busy), (true, false), "{busy}");
    a.execute_batch("COMMIT").unwrap();

    let check = StoreError::from(a.execute("INSERT INTO t VALUES (-1)", []).unwrap_err());
    assert_eq!(classes(&check), (false, true), "{check}");
    let null = StoreError::from(a.execute("INSERT INTO t VALUES (NULL)", []).unwrap_err());
    assert_eq!(classes(&null), (false, true), "{null}");
    let schema = StoreError::from(a.execute("INSERT INTO missing VALUES (1)", []).unwrap_err());
    assert_eq!(classes(&schema), (false, false), "{schema}");
}

#[tokio::test]
async fn postgres_connection_loss_is_retryable_and_bad_values_are_data_errors() {
    let url = shared_postgres().create_database().unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let err = |e: tokio_postgres::Error| StoreError::from(e);

    let overflow = err(client
        .query_one("SELECT 1e300::float8 * 1e300::float8", &[])
        .await
        .unwrap_err());
    assert_eq!(classes(&overflow), (false, true), "{overflow}");
    client
        .batch_execute("CREATE TABLE t (x float8 CHECK (x > 0))")
        .await
        .unwrap();
    let check = err(client
        .execute("INSERT INTO t VALUES (-1)", &[])
        .await
        .unwrap_err());
    assert_eq!(classes(&check), (false, true), "{check}");
    let raised = err(client
        .batch_execute("DO $$ BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$")
        .await
        .unwrap_err());
    assert_eq!(classes(&raised), (false, true), "{raised}");
    let schema = err(client
        .execute("INSERT INTO missing VALUES (1)", &[])
        .await
        .unwrap_err());
    assert_eq!(classes(&schema), (false, false), "{schema}");

    // The server ends the session: the next call fails as a lost connection.
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let (other, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    other
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let lost = err(client.query_one("SELECT 1", &[]).await.unwrap_err());
    assert_eq!(classes(&lost), (true, false), "{lost}");
}

#[test]
fn sqlite_locked_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("l.db")).unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")
        .unwrap();
    // A statement still reading the table: dropping it on the same
    // connection is SQLITE_LOCKED (not BUSY, which is another connection).
    let mut reading = conn.prepare("SELECT x FROM t").unwrap();
    let mut rows = reading.query([]).unwrap();
    assert!(rows.next().unwrap().is_some());
    let locked = StoreError::from(conn.execute("DROP TABLE t", []).unwrap_err());
    assert!(
        matches!(
            &locked,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseLocked
        ),
        "{locked:?}"
    );
    assert_eq!(classes(&locked), (true, false), "{locked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deadlocks_are_retryable() {
    let url = shared_postgres().create_database().unwrap();
    let connect = || async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    };
    let (a, b) = (connect().await, connect().await);
    a.batch_execute(
        "CREATE TABLE d (k int PRIMARY KEY, v int); INSERT INTO d VALUES (1, 0), (2, 0)",
    )
    .await
    .unwrap();
    // Each locks one row, then asks for the other's: PostgreSQL ends one
    // of them with 40P01.
    a.batch_execute("BEGIN; UPDATE d SET v = 1 WHERE k = 1")
        .await
        .unwrap();
    b.batch_execute("BEGIN; UPDATE d SET v = 1 WHERE k = 2")
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        a.batch_execute("UPDATE d SET v = 2 WHERE k = 2"),
        b.batch_execute("UPDATE d SET v = 2 WHERE k = 1"),
    );
    let e = match (ra, rb) {
        (Err(e), Ok(())) | (Ok(()), Err(e)) => StoreError::from(e),
        other => panic!("expected exactly one deadlock victim: {other:?}"),
    };
    assert!(e.to_string().contains("deadlock"), "{e}");
    assert_eq!(classes(&e), (true, false), "{e}");
}
