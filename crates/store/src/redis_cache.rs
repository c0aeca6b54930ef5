//! [`RedisCache`]: the latest tick per symbol in Redis (`redis://...`).
//!
//! Each symbol is a hash `streamforge:latest:<SYMBOL>` with the tick's wire
//! JSON (`tick`) and its order key (`key`: event time then tick id, as a
//! fixed-width string that sorts like the numbers). One Lua script call per
//! batch replaces an entry only with a newer tick, atomically, so two
//! persist instances can never move a quote back in time.
//!
//! `rediss://` connects over TLS, verifying the server against the system's
//! roots, or against the CA file named by `tls_ca_file=<path>` in the
//! query (a private CA); the host must be named in its certificate.
//!
//! Redis is optional for correctness: when it is down, calls fail fast
//! (short timeouts), persist still stores ticks, the API answers from the
//! store, and the cache catches up with the next batches.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use streamforge_model::{wire, Symbol, Tick, TickRules, Timestamp};
use tokio::sync::Mutex;

use crate::memory_cache::newest_per_symbol;
use crate::{Cache, CacheError};

const KEY_PREFIX: &str = "streamforge:latest:";

/// Sets each KEYS[i] to ARGV[2i-1] (order key) / ARGV[2i] (tick) when the
/// order key is greater than the stored one. Returns how many changed.
const UPDATE_NEWER: &str = r#"
local changed = 0
for i, key in ipairs(KEYS) do
  local order = ARGV[2 * i - 1]
  local current = redis.call('HGET', key, 'key')
  if (not current) or order > current then
    redis.call('HSET', key, 'key', order, 'tick', ARGV[2 * i])
    changed = changed + 1
  end
end
return changed
"#;

/// First and longest pause after a failure before Redis is tried again.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A Redis latest-quote cache.
pub struct RedisCache {
    client: redis::Client,
    /// Connected lazily and kept; it reconnects by itself after a drop.
    conn: Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    /// After a failure, calls fail at once until then (a circuit breaker),
    /// so an outage costs neither persist nor the API a timeout per call.
    breaker: parking_lot::Mutex<Breaker>,
}

#[derive(Default)]
struct Breaker {
    open_until: Option<std::time::Instant>,
    backoff: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisCache")
    }
}

fn unavailable(e: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

/// `url` without its `tls_ca_file` query parameter, and that parameter.
fn take_ca_file(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut ca = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("tls_ca_file=") {
            Some(path) => {
                ca = Some(path.replace("%2F", "/").replace("%2f", "/"));
                false
            }
            None => true,
        })
        .collect();
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, ca)
}

/// Event time then id as a string that sorts the way the pair does.
fn order_key(t: &Tick) -> String {
    let (ts, id) = t.sort_key();
    // Both shifted into unsigned ranges: zero-padded decimals compare like numbers.
    let ts = (i128::from(ts.as_micros()) + (1i128 << 63)) as u64;
    let id = (i128::from(id) + (1i128 << 63)) as u64;
    format!("{ts:020}{id:020}")
}

impl RedisCache {
    /// Checks the URL; the connection is made on first use, so a Redis that
    /// is down at start-up does not stop the pipeline.
    pub fn new(url: &str) -> Result<Self, CacheError> {
        let bad = |reason: String| CacheError::Url {
            url: crate::redact_url(url),
            reason,
        };
        let (rest, ca_file) = take_ca_file(url);
        let client = match ca_file {
            None => redis::Client::open(rest.as_str()),
            Some(path) => {
                if !rest.starts_with("rediss://") {
                    return Err(bad("tls_ca_file is for rediss:// (TLS) URLs only".into()));
                }
                let pem =
                    std::fs::read(&path).map_err(|e| bad(format!("tls_ca_file {path}: {e}")))?;
                redis::Client::build_with_tls(
                    rest.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok(RedisCache {
            client,
            conn: Mutex::new(None),
            script: redis::Script::new(UPDATE_NEWER),
            breaker: parking_lot::Mutex::new(Breaker::default()),
        })
    }

    /// Runs `op` unless Redis failed moments ago; records the outcome.
    async fn guarded<T, F>(&self, op: F) -> Result<T, CacheError>
    where
        F: std::future::Future<Output = Result<T, CacheError>>,
    {
        if let Some(until) = self.breaker.lock().open_until {
            let now = std::time::Instant::now();
            if now < until {
                return Err(CacheError::Unavailable(format!(
                    "redis failed recently; next attempt in {:?}",
                    until - now
                )));
            }
        }
        let result = op.await;
        let mut b = self.breaker.lock();
        match &result {
            Ok(_) => *b = Breaker::default(),
            Err(_) => {
                b.backoff = (b.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                b.open_until = Some(std::time::Instant::now() + b.backoff);
            }
        }
        result
    }

    async fn connection(&self) -> Result<ConnectionManager, CacheError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1))
            .set_number_of_retries(1);
        let c = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

#[async_trait]
impl Cache for RedisCache {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn update_latest(&self, ticks: &[Tick]) -> Result<usize, CacheError> {
        let newest = newest_per_symbol(ticks);
        if newest.is_empty() {
            return Ok(0);
        }
        let mut inv = self.script.prepare_invoke();
        for (symbol, tick) in &newest {
            inv.key(format!("{KEY_PREFIX}{symbol}"));
            inv.arg(order_key(tick));
            inv.arg(wire::encode(tick));
        }
        self.guarded(async {
            let mut conn = self.connection().await?;
            inv.invoke_async::<usize>(&mut conn)
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn latest(&self, symbol: &Symbol) -> Result<Option<Tick>, CacheError> {
        let raw: Option<Vec<u8>> = self
            .guarded(async {
                let mut conn = self.connection().await?;
                redis::cmd("HGET")
                    .arg(format!("{KEY_PREFIX}{symbol}"))
                    .arg("tick")
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        raw.map(|bytes| {
            wire::decode(&bytes, &TickRules::default(), Timestamp::MAX)
                .map_err(|e| unavailable(format!("cached tick of {symbol} is not a tick: {e}")))
        })
        .transpose()
    }

    async fn ping(&self) -> Result<(), CacheError> {
        self.guarded(async {
            let mut conn = self.connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(unavailable)
                .map(drop)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_like_event_time_then_id() {
        let mut ticks: Vec<Tick> = (0..200)
            .map(|i| {
                streamforge_testkit::tick("AAPL", 1_756_325_700_000 + (i % 7), 1.0 + i as f64, 1.0)
            })
            .collect();
        ticks.sort_by_key(|t| t.sort_key());
        let keys: Vec<String> = ticks.iter().map(order_key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}
