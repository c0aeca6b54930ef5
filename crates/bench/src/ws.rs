//! `streamforge-bench --scenario ws`: live fan-out to many WebSocket clients.
//!
//! Starts `streamforge run` as a child process (embedded defaults, the
//! synthetic market at `--latency-rate` ticks/s), connects `--clients`
//! WebSocket clients from this process, each subscribed to the ticks of
//! every symbol or of `--ws-symbols` of them (spread round-robin), and
//! measures over `--duration` after `--warmup`:
//! - delivered ticks/s and messages/s over all clients;
//! - each client's p99 delivery latency (tick `ingested_at` → received by
//!   the client; the oldest tick of a message stands for all its ticks, an
//!   upper bound), reported as the median and worst of the clients' p99s;
//! - the server's memory per client: its resident set with the clients
//!   connected and streaming, minus before they connected, over the count.
//!
//! Both processes share the machine: the clients' reading and parsing
//! competes with the server for the same cores.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use streamforge_model::Timestamp;
use tokio_tungstenite::tungstenite::Message;

/// What one client saw while measuring.
struct ClientReport {
    ticks: u64,
    messages: u64,
    latency: Histogram<u64>,
}

/// The measured figures.
pub struct WsReport {
    pub clients: usize,
    pub connected: usize,
    pub rate: f64,
    pub ticks_per_second: f64,
    pub messages_per_second: f64,
    pub p99_median: Duration,
    pub p99_worst: Duration,
    pub p50_median: Duration,
    pub rss_before: u64,
    pub rss_after: u64,
    pub disconnected: usize,
}

impl WsReport {
    pub fn bytes_per_client(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.connected.max(1) as f64
    }
}

/// The `streamforge` binary the scenario runs: `STREAMFORGE_BIN`, else the
/// one built beside this benchmark (`cargo build --release -p streamforge`).
fn server_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("STREAMFORGE_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe().context("finding this benchmark's path")?;
    let sibling = exe.with_file_name("streamforge");
    anyhow::ensure!(
        sibling.exists(),
        "{} not found: build it first (cargo build --release -p streamforge) or set STREAMFORGE_BIN",
        sibling.display()
    );
    Ok(sibling)
}

/// Resident set size of `pid` in bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kb * 1024)
}

/// `ingested_at` of the first tick in a `ticks` message, without parsing
/// the rest (the clients must not be the bottleneck).
fn first_ingested_at(text: &str) -> Option<Timestamp> {
    const KEY: &str = "\"ingested_at\":\"";
    let at = text.find(KEY)? + KEY.len();
    let end = text[at..].find('"')? + at;
    Timestamp::parse(&text[at..end]).ok()
}

/// Ticks in a `ticks` message, from its `count` (near the start).
fn count_ticks(text: &str) -> u64 {
    const KEY: &str = "\"count\":";
    text.find(KEY)
        .map(|at| {
            text[at + KEY.len()..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
        })
        .unwrap_or(0)
}

async fn client(
    url: String,
    subscribe: String,
    measuring: Arc<AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
    connected: Arc<AtomicU64>,
) -> anyhow::Result<ClientReport> {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    ws.send(Message::Text(subscribe.into())).await?;
    connected.fetch_add(1, Ordering::Relaxed);
    let mut report = ClientReport {
        ticks: 0,
        messages: 0,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.cancelled() => break,
        };
        let Some(msg) = msg else {
            anyhow::bail!("the server closed the connection");
        };
        let Message::Text(text) = msg? else { continue };
        if !measuring.load(Ordering::Relaxed) || !text.starts_with(r#"{"type":"ticks""#) {
            continue;
        }
        let now = Timestamp::now();
        let n = count_ticks(&text);
        report.ticks += n;
        report.messages += 1;
        if let Some(at) = first_ingested_at(&text) {
            let micros = (now.as_micros() - at.as_micros()).max(1) as u64;
            report.latency.saturating_record_n(micros, n.max(1));
        }
    }
    let _ = ws.close(None).await;
    Ok(report)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the scenario against a child `streamforge run`.
pub async fn run(
    clients: usize,
    symbols_per_client: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<WsReport> {
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // Room for every client: the server's stream and connection caps are
    // raised to the client count (they are limits, not the measurement).
    let config = dir.path().join("bench-ws.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nmax_streams = {}\n\n[http]\nmax_connections = {}\n",
            clients + 16,
            clients + 64
        ),
    )
    .context("writing the server's configuration")?;
    let exe = server_binary()?;
    let mut server = tokio::process::Command::new(exe)
        .arg("--config")
        .arg(&config)
        .args(["--log-level", "warn", "run", "--http-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--rate")
        .arg(rate.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting streamforge run")?;
    let pid = server.id().context("the server has no pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status().is_success() {
                break;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server was not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss(pid)?;
    eprintln!(
        "bench ws: server pid {pid} ready at {base}, rss {:.1} MiB; connecting {clients} clients...",
        rss_before as f64 / 1048576.0
    );

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = tokio_util::sync::CancellationToken::new();
    let connected = Arc::new(AtomicU64::new(0));
    let url = format!("ws://127.0.0.1:{port}/api/v1/ws");
    let symbols = streamforge::config::Config::default().synthetic.symbols;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let wanted: Vec<&str> = if symbols_per_client == 0 {
            vec!["*"]
        } else {
            (0..symbols_per_client.min(symbols.len()))
                .map(|k| symbols[(c + k) % symbols.len()].as_str())
                .collect()
        };
        let subscribe =
            serde_json::json!({"op": "subscribe", "channel": "ticks", "symbols": wanted});
        tasks.push(tokio::spawn(client(
            url.clone(),
            subscribe.to_string(),
            measuring.clone(),
            stop.clone(),
            connected.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (connected.load(Ordering::Relaxed) as usize) < clients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "bench ws: {} clients subscribed; warm-up {warmup:?}, measuring {duration:?}...",
        connected.load(Ordering::Relaxed)
    );
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let rss_after = rss(pid)?;
    stop.cancel();

    let (mut ticks, mut messages, mut p99s, mut p50s, mut disconnected) =
        (0u64, 0u64, vec![], vec![], 0);
    for t in tasks {
        match t.await? {
            Ok(r) => {
                ticks += r.ticks;
                messages += r.messages;
                if !r.latency.is_empty() {
                    p99s.push(Duration::from_micros(r.latency.value_at_quantile(0.99)));
                    p50s.push(Duration::from_micros(r.latency.value_at_quantile(0.50)));
                }
            }
            Err(e) => {
                disconnected += 1;
                if disconnected == 1 {
                    eprintln!("bench ws: a client failed: {e:#}");
                }
            }
        }
    }
    let _ = server.start_kill();
    let _ = server.wait().await;
    Ok(WsReport {
        clients,
        connected: connected.load(Ordering::Relaxed) as usize,
        rate,
        ticks_per_second: ticks as f64 / elapsed,
        messages_per_second: messages as f64 / elapsed,
        p99_median: median(p99s.clone()),
        p99_worst: p99s.into_iter().max().unwrap_or_default(),
        p50_median: median(p50s),
        rss_before,
        rss_after,
        disconnected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_messages_are_read_without_a_full_parse() {
        let msg = r#"{"type":"ticks","seq":3,"count":2,"data":[{"symbol":"A","tick_id":"1","ingested_at":"2026-11-30T10:00:00.5Z"},{"symbol":"B","tick_id":"2","ingested_at":"2026-11-30T10:00:01Z"}]}"#;
        assert_eq!(count_ticks(msg), 2);
        assert_eq!(
            first_ingested_at(msg),
            Some(Timestamp::parse("2026-11-30T10:00:00.5Z").unwrap())
        );
        assert_eq!(first_ingested_at(r#"{"type":"pong"}"#), None);
    }
}
