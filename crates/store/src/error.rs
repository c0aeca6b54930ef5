//! Errors of the tick store and the cache.

/// A tick store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored row is not a valid tick: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
    #[error("store worker stopped: {0}")]
    Worker(String),
    #[error("postgres: {}", pg_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres connection pool: {0}")]
    Pool(String),
    #[error("{what}: no answer from the store within {after:?}")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
}

/// The server's message and SQLSTATE when there is one ("db error" alone
/// says nothing).
fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}: {})", db.message(), db.severity(), db.code().code()),
        None => {
            // The cause ("invalid peer certificate: UnknownIssuer", "connection
            // refused") is in the source chain, not in the error's own text.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let said = c.to_string();
                if !text.contains(&said) {
                    text = format!("{text}: {said}");
                }
                cause = c.source();
            }
            text
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

impl StoreError {
    /// Whether trying again later may succeed (busy or locked database, I/O).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
            ),
            StoreError::Pool(_) | StoreError::Timeout { .. } => true,
            StoreError::Postgres(e) => {
                if e.is_closed() {
                    return true;
                }
                match e.code() {
                    // No SQL state: the connection or I/O failed.
                    None => true,
                    Some(code) => {
                        let c = code.code();
                        // connection exceptions, resources, operator intervention,
                        // serialization failures and deadlocks
                        c.starts_with("08")
                            || c.starts_with("53")
                            || c.starts_with("57")
                            || c == "40001"
                            || c == "40P01"
                    }
                }
            }
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether the database refused the rows themselves (a value out of
    /// range, a constraint or a trigger), not the connection or the schema:
    /// the same rows will fail again, other rows will not. Persist isolates
    /// such rows (by splitting the batch) and dead-letters them.
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::ConstraintViolation
                    | rusqlite::ErrorCode::TooBig
                    | rusqlite::ErrorCode::TypeMismatch
            ),
            StoreError::Sqlite(
                rusqlite::Error::ToSqlConversionFailure(_)
                | rusqlite::Error::IntegralValueOutOfRange(..),
            ) => true,
            StoreError::Postgres(e) => e.code().is_some_and(|code| {
                let c = code.code();
                // data exceptions, integrity constraints, and an error a
                // trigger raised (RAISE EXCEPTION's default state)
                c.starts_with("22") || c.starts_with("23") || c == "P0001"
            }),
            _ => false,
        }
    }
}

/// A cache failure.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cache unavailable: {0}")]
    Unavailable(String),
}
