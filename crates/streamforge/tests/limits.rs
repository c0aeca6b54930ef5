//! What one client can hold of the HTTP server, and what a frozen or
//! crowded store does to the API: each limit tried black-box over TCP,
//! HTTP and WebSocket against the running pipeline, which must keep
//! serving and storing throughout.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use streamforge::config::Config;
use streamforge::pipeline::{self, Role, Running};
use streamforge_testkit::{get_json, stored_ticks, wait_for, SseClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.synthetic.symbols = vec!["AAPL".into(), "MSFT".into()];
    c.synthetic.rate = 500.0;
    c.persist.batch_timeout = Duration::from_millis(5);
    c.log.level = "warn".into();
    c
}

async fn start(c: &Config) -> (Running, CancellationToken, String) {
    let token = CancellationToken::new();
    let running = pipeline::start(c, Role::Run, token.clone()).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    (running, token, base)
}

/// Whether the server has closed `s` (EOF or reset) within `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // a 408 or the like before the close
        }
    }
}

fn refused(running: &Running, limit: &str) -> f64 {
    running
        .metrics
        .snapshot()
        .refused
        .get(limit)
        .copied()
        .unwrap_or(0) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_closed_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.http.header_timeout = Duration::from_secs(1);
    let (running, token, base) = start(&c).await;
    let addr = running.http_addr;
    // 200 clients that never finish their request headers (slowloris).
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/v1/symbols HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // Meanwhile the server answers everyone else.
    let (status, _) = get_json(&format!("{base}/healthz")).await;
    assert_eq!(status, 200);
    let mut open = 0;
    for s in &mut slow {
        if !closed_by_server(s, Duration::from_secs(10)).await {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "every slow-header connection is closed after http.header_timeout"
    );
    // A keep-alive connection that sends no next request is closed the same way.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut idle, Duration::from_secs(10)).await);
    let (status, _) = get_json(&format!("{base}/healthz")).await;
    assert_eq!(status, 200);
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_a_json_503_and_room_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.http.max_connections = 8;
    c.http.header_timeout = Duration::from_secs(60);
    let (running, token, base) = start(&c).await;
    let addr = running.http_addr;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The held connections have their slots first.
    wait_for(
        "the server to accept the 8 held connections",
        Duration::from_secs(10),
        || {
            let m = running.metrics.clone();
            async move { (m.snapshot().http_connections == 8).then_some(()) }
        },
    )
    .await;
    // A client that sends its request at once still gets the answer.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    extra
        .write_all(b"GET /api/v1/symbols HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer))
        .await
        .expect("the refusal comes at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("http.max_connections"),
        "{body}"
    );
    assert!(refused(&running, "max_connections") >= 1.0);
    drop(held);
    let (status, _) = wait_for("room for a request again", Duration::from_secs(10), || {
        let base = base.clone();
        async move {
            let r = reqwest::get(format!("{base}/healthz")).await.ok()?;
            (r.status() == 200).then_some((200, ()))
        }
    })
    .await;
    assert_eq!(status, 200);
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_beyond_the_cap_get_503_and_a_websocket_holds_a_bounded_number_of_subscriptions(
) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.api.max_streams = 2;
    c.api.ws_max_subscriptions = 3;
    let (running, token, base) = start(&c).await;
    let ws_url = format!("ws://{}/api/v1/ws", running.http_addr);
    let mut first = SseClient::connect(&format!("{base}/api/v1/stream")).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    // Both slots taken: a third stream of either kind is refused.
    let (status, body) = get_json(&format!("{base}/api/v1/stream")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("api.max_streams"));
    match tokio_tungstenite::connect_async(&ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a third stream was accepted: {other:?}"),
    }
    assert!(refused(&running, "max_streams") >= 2.0);

    // Subscriptions: three fit, a fourth is an error naming the limit, and
    // the connection goes on.
    ws.send(WsMessage::text(
        r#"{"op":"subscribe","channel":"ticks","symbols":["AAPL","MSFT"]}"#,
    ))
    .await
    .unwrap();
    ws.send(WsMessage::text(
        r#"{"op":"subscribe","channel":"candles","symbols":["AAPL","MSFT"],"interval":"1m"}"#,
    ))
    .await
    .unwrap();
    ws.send(WsMessage::text(r#"{"op":"ping"}"#)).await.unwrap();
    let mut answers = Vec::new();
    while answers.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("answers")
            .unwrap()
            .unwrap();
        if let WsMessage::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "ticks" && v["type"] != "candle" {
                answers.push(v);
            }
        }
    }
    assert_eq!(answers[0]["type"], "subscribed", "{answers:?}");
    assert_eq!(answers[1]["type"], "error", "{answers:?}");
    let error = answers[1]["error"].as_str().unwrap();
    assert!(
        error.contains("at most 3") && error.contains("ws_max_subscriptions"),
        "{error}"
    );
    assert_eq!(answers[2]["type"], "pong", "the connection goes on");
    assert!(refused(&running, "max_subscriptions") >= 1.0);

    // A message over the size limit ends that connection, not the server.
    let _ = ws.send(WsMessage::text("x".repeat(100 * 1024))).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the oversized message ends the connection");
    if let Some(code) = ended {
        assert_eq!(code, 1009, "message too big");
    }
    // Its slot is free again: a new stream is accepted.
    let mut again = wait_for("a stream slot again", Duration::from_secs(10), || {
        let url = format!("{base}/api/v1/stream");
        async move {
            let r = reqwest::get(&url).await.ok()?;
            (r.status() == 200).then_some(r)
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), again.chunk()).await;
    assert!(first.next(Duration::from_secs(10)).await.is_some());
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_that_does_not_read_is_closed_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.synthetic.rate = 20_000.0;
    c.http.write_timeout = Duration::from_secs(1);
    let (running, token, base) = start(&c).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(running.http_addr).await.unwrap();
    s.write_all(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let clients = || running.metrics.snapshot().stream_clients;
    wait_for("the stream to open", Duration::from_secs(10), || async {
        (clients() == 1).then_some(())
    })
    .await;
    let stored_before = stored_ticks(&base).await.unwrap_or(0);
    // Never reading: the socket buffers fill, writes stall, and the server
    // closes the stream.
    wait_for(
        "the stalled stream to be closed",
        Duration::from_secs(60),
        || async { (clients() == 0).then_some(()) },
    )
    .await;
    let stored_after = stored_ticks(&base).await.unwrap_or(0);
    assert!(stored_after > stored_before, "the pipeline went on storing");
    drop(s);
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_ids_out_of_range_are_a_400_naming_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let (running, token, base) = start(&config(dir.path())).await;
    let url = format!("{base}/api/v1/stream");
    for id in [
        "ffffffffffffffff-18446744073709551615:4294967296",
        "ffffffffffffffffff-1:0",
        "1-18446744073709551616:0",
        "1--1:0",
    ] {
        let r = reqwest::Client::new()
            .get(&url)
            .header("last-event-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{id}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["parameter"], "Last-Event-ID", "{id}: {body}");
    }
    // The largest values that are ids: a reset (another epoch), not a failure.
    let mut s = SseClient::resume(
        &url,
        Some("ffffffffffffffff-18446744073709551615:4294967295"),
    )
    .await;
    let first = s.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.event, "reset", "{first:?}");
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_frozen_readyz_and_rest_answer_503_promptly_and_both_recover() {
    use streamforge_testkit::engines::Postgres;
    let pg = Postgres::start().unwrap();
    let url = pg.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.store = Some(url);
    c.postgres.mode = Some(streamforge_store::postgres::Mode::Postgres);
    c.postgres.statement_timeout = Duration::from_secs(3);
    c.postgres.pool_wait_timeout = Duration::from_secs(2);
    c.api.request_timeout = Duration::from_secs(8);
    let (running, token, base) = start(&c).await;
    wait_for("ticks stored", Duration::from_secs(20), || {
        let base = base.clone();
        async move { (stored_ticks(&base).await? > 0).then_some(()) }
    })
    .await;
    let client = reqwest::Client::new();

    pg.freeze();
    let started = std::time::Instant::now();
    let r = client
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/readyz answers within 5 s with the database frozen");
    assert_eq!(r.status(), 503);
    let report: serde_json::Value = r.json().await.unwrap();
    assert!(report.to_string().contains("store"), "{report}");
    let r = client
        .get(format!("{base}/api/v1/ticks/AAPL?limit=10"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("REST answers with the database frozen");
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.expect("a JSON error");
    assert!(
        body["error"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    println!(
        "frozen: /readyz and /ticks answered 503 within {:?}",
        started.elapsed()
    );

    pg.thaw();
    wait_for("/readyz ready again", Duration::from_secs(60), || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client.get(format!("{base}/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    let r = client
        .get(format!("{base}/api/v1/ticks/AAPL?limit=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Persist stored again after the freeze.
    let before = stored_ticks(&base).await.unwrap();
    wait_for("persist storing again", Duration::from_secs(60), || {
        let base = base.clone();
        async move { (stored_ticks(&base).await? > before).then_some(()) }
    })
    .await;
    token.cancel();
    running.wait().await.expect("a clean stop after the freeze");
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_large_sqlite_queries_neither_grow_memory_without_bound_nor_starve_the_writer(
) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.synthetic.symbols = vec!["AAPL".into()];
    c.synthetic.rate = 20_000.0;
    let (running, token, base) = start(&c).await;
    wait_for("10,000 ticks stored", Duration::from_secs(60), || {
        let base = base.clone();
        async move { (stored_ticks(&base).await? >= 10_000).then_some(()) }
    })
    .await;
    let written = || running.metrics.snapshot().store.rows_written as f64;
    let rss_before = rss_bytes();
    let written_before = written();
    let started = std::time::Instant::now();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("{base}/api/v1/ticks/AAPL?limit=10000&from=0");
    let mut peak = rss_before;
    let requests = futures::stream::iter(0..1_000)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.get(&url).send().await?;
                let status = r.status().as_u16();
                let body = r.bytes().await?;
                Ok::<_, reqwest::Error>((status, body.len()))
            }
        })
        .buffer_unordered(1_000);
    tokio::pin!(requests);
    let (mut ok, mut busy, mut bytes) = (0, 0, 0usize);
    while let Some(r) = requests.next().await {
        let (status, len) = r.expect("every request is answered");
        match status {
            200 => ok += 1,
            503 => busy += 1,
            other => panic!("status {other}"),
        }
        bytes += len;
        peak = peak.max(rss_bytes());
    }
    let took = started.elapsed();
    let written_during = written() - written_before;
    println!(
        "1000 concurrent /ticks?limit=10000 on SQLite: {ok} ok, {busy} busy, {} MB answered in {took:?}; \
         RSS {} MB before, peak {} MB (+{} MB); writer stored {written_during} rows meanwhile ({:.0} rows/s)",
        bytes / 1_000_000,
        rss_before / 1_000_000,
        peak / 1_000_000,
        (peak - rss_before) / 1_000_000,
        written_during / took.as_secs_f64()
    );
    assert_eq!(ok + busy, 1_000);
    assert!(ok > 0);
    assert!(
        peak - rss_before < 1_500_000_000,
        "memory grew by {} MB",
        (peak - rss_before) / 1_000_000
    );
    assert!(
        written_during > 0.0,
        "the writer kept storing during the queries"
    );
    token.cancel();
    running.wait().await.unwrap();
}
