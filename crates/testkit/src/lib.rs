//! Test-only helpers shared by StreamForge's integration tests.
//!
//! # Layout
//! - [`free_port`] — a loopback port nobody listened on a moment ago
//!   (engines started on one check that they own it and retry when not).
//! - [`wait_for`] — poll a condition with a deadline and a clear failure.
//! - [`get_json`] — one HTTP GET answered with status and JSON.
//! - [`metric`], [`stored_ticks`] — read a pipeline's metrics and stored count.
//! - [`SseClient`]: reads Server-Sent Events from a live stream.
//! - [`migrated_config`] — a config file for role processes, schema migrated.
//!
//! - [`engines`] — throwaway PostgreSQL, Redis and Prometheus servers.
//! - [`kafka`] — a throwaway Apache Kafka broker (KRaft) and Kafka's tools.
//! - [`process`] — a child process with its output collected ([`process::Spawned`]).
//! - [`tls`] — a CA made in the test, the certificates it issues, and an
//!   HTTPS client that trusts only it.
//! - [`reference`] — candles and the newest tick computed apart from the
//!   code under test (the oracles of the candle and quote tests).

pub mod engines;
pub mod kafka;
pub mod process;
pub mod reference;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `timeout` saying what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET `url`; the status and the body as JSON (`Null` when it is not JSON).
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let res = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    let body = res.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A valid tick of provider `test` at `ms` epoch milliseconds, received at
/// the same instant.
pub fn tick(symbol: &str, ms: i64, price: f64, size: f64) -> streamforge_model::Tick {
    tick_with_conditions(symbol, ms, price, size, Vec::new())
}

/// Like [`tick`], with trade condition codes.
pub fn tick_with_conditions(
    symbol: &str,
    ms: i64,
    price: f64,
    size: f64,
    conditions: Vec<String>,
) -> streamforge_model::Tick {
    let input = streamforge_model::TickInput {
        conditions,
        ..tick_input(symbol, ms, price, size)
    };
    let ts = input.ts;
    streamforge_model::TickRules::default()
        .check(input, ts)
        .expect("valid test tick")
}

/// The parts of a test trade of provider `test`, before validation:
/// event and receive time `ms`, no conditions, no venue id, live.
pub fn tick_input(symbol: &str, ms: i64, price: f64, size: f64) -> streamforge_model::TickInput {
    use streamforge_model::{Symbol, TickInput, Timestamp};
    let ts = Timestamp::from_millis(ms);
    TickInput {
        symbol: Symbol::parse(symbol).expect("valid test symbol"),
        ts,
        price,
        size,
        exchange: Arc::from(""),
        src_id: Arc::from("test"),
        conditions: Vec::new(),
        occurrence: 0,
        tick_id: None,
        ingested_at: ts,
        source_id: None,
        origin: streamforge_model::tick::Origin::Live,
    }
}

/// The value of one series (`name{labels}`, exactly as rendered) in
/// Prometheus text; 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Ticks stored in all, from `GET {base}/api/v1/symbols`; `None` while the
/// API does not answer.
pub async fn stored_ticks(base: &str) -> Option<u64> {
    let res = reqwest::get(format!("{base}/api/v1/symbols")).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let v: serde_json::Value = res.json().await.ok()?;
    Some(
        v["symbols"]
            .as_array()?
            .iter()
            .map(|s| s["ticks"].as_u64().unwrap_or(0))
            .sum(),
    )
}

/// Writes `toml` to `dir/streamforge.toml` and runs `streamforge migrate up`
/// with it (`bin` is the binary, `env!("CARGO_BIN_EXE_streamforge")`), so
/// role processes started with `--config` find the schema in place.
/// Returns the file's path; panics with the command's output if it fails.
pub fn migrated_config(bin: &str, dir: &std::path::Path, toml: &str) -> std::path::PathBuf {
    let config_file = dir.join("streamforge.toml");
    std::fs::write(&config_file, toml).expect("writing the config file");
    let migrated = std::process::Command::new(bin)
        .arg("--config")
        .arg(&config_file)
        .args(["migrate", "up"])
        .output()
        .expect("running streamforge migrate up");
    assert!(migrated.status.success(), "{migrated:?}");
    config_file
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// A client of an SSE endpoint.
pub struct SseClient {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseClient {
    /// Connects and checks the answer is an event stream.
    pub async fn connect(url: &str) -> SseClient {
        Self::resume(url, None).await
    }

    /// Connects with a `Last-Event-ID`, as a browser does when it reconnects.
    pub async fn resume(url: &str, last_event_id: Option<&str>) -> SseClient {
        let mut req = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(res.status().as_u16(), 200, "GET {url}");
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        SseClient {
            body: res.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped); `None` when the stream ended.
    /// Panics when nothing arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim_start().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !ev.data.is_empty() {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim_start().to_string());
                    }
                }
                if ev.event.is_empty() && ev.data.is_empty() {
                    continue; // a comment or keep-alive
                }
                if ev.event.is_empty() {
                    ev.event = "message".into();
                }
                return Some(ev);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => panic!("no server-sent event within {timeout:?}"),
                Ok(None) => return None,
                Ok(Some(Err(e))) => panic!("reading the event stream: {e}"),
                Ok(Some(Ok(chunk))) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(chunk.as_ref()).replace("\r\n", "\n")),
            }
        }
    }
}
