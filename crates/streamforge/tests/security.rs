//! Who may call: API keys and scopes, black-box over HTTP, SSE and
//! WebSocket against the running pipeline, with keys made by
//! `streamforge keys generate`.

use std::time::Duration;

use streamforge::config::Config;
use streamforge::pipeline::{self, Role, Running};
use streamforge_api::auth::ApiKey;
use streamforge_testkit::wait_for;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

/// A key and its `[[api.keys]]` entry, from the CLI.
fn generate(id: &str, scopes: &str) -> (String, ApiKey) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
        .args(["keys", "generate", "--id", id, "--scopes", scopes])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (key, block) = text.split_once('\n').unwrap();
    assert!(key.starts_with("sf_") && key.len() == 67, "{key}");
    assert!(
        !block.contains(key),
        "the block holds the digest, never the key"
    );
    #[derive(serde::Deserialize)]
    struct Api {
        keys: Vec<ApiKey>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        api: Api,
    }
    let file: File = toml::from_str(block).unwrap_or_else(|e| panic!("{e}: {block}"));
    (key.to_string(), file.api.keys.into_iter().next().unwrap())
}

fn config(dir: &std::path::Path, keys: Vec<ApiKey>) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.synthetic.symbols = vec!["AAPL".into()];
    c.synthetic.rate = 200.0;
    c.persist.batch_timeout = Duration::from_millis(5);
    c.log.level = "warn".into();
    c.api.keys = keys;
    c
}

async fn start(c: &Config) -> (Running, CancellationToken, String) {
    let token = CancellationToken::new();
    let running = pipeline::start(c, Role::Run, token.clone()).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    (running, token, base)
}

/// Status and JSON body of a GET with `headers`.
async fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let h = res.headers().clone();
    let body = res.bytes().await.unwrap();
    (
        status,
        h,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_needs_its_scope_and_keys_work_in_headers_and_stream_queries() {
    let (read, read_entry) = generate("reader", "read");
    let (stream, stream_entry) = generate("streamer", "stream");
    let (ops, ops_entry) = generate("operator", "ops");
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), vec![read_entry, stream_entry, ops_entry]);
    let (running, token, base) = start(&c).await;
    let bearer = |k: &str| format!("Bearer {k}");
    wait_for("ticks stored", Duration::from_secs(30), || {
        let (url, key) = (format!("{base}/api/v1/symbols"), bearer(&read));
        async move {
            let (s, _, body) = get(&url, &[("authorization", &key)]).await;
            (s == 200 && body["symbols"][0]["ticks"].as_u64() > Some(0)).then_some(())
        }
    })
    .await;

    // Open to everyone.
    for path in [
        "/healthz",
        "/",
        "/api",
        "/api/openapi.json",
        "/assets/app.js",
    ] {
        let (s, _, _) = get(&format!("{base}{path}"), &[]).await;
        assert_eq!(s, 200, "{path} without a key");
    }

    // No key, a wrong key: 401 with WWW-Authenticate and a JSON reason.
    let symbols = format!("{base}/api/v1/symbols");
    let (s, h, body) = get(&symbols, &[]).await;
    assert_eq!(s, 401);
    assert_eq!(h["www-authenticate"], "Bearer realm=\"streamforge\"");
    assert_eq!(body["error"], "unauthorized");
    assert!(
        body["detail"].as_str().unwrap().contains("read scope"),
        "{body}"
    );
    let (s, _, _) = get(&symbols, &[("authorization", &bearer("sf_not-a-key"))]).await;
    assert_eq!(s, 401);
    let (s, _, _) = get(&symbols, &[("x-api-key", &ops[..ops.len() - 1])]).await;
    assert_eq!(s, 401, "a key one character short is not the key");

    // The right scope, by either header; another scope is 403.
    let (s, _, body) = get(&symbols, &[("authorization", &bearer(&read))]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["symbols"][0]["symbol"], "AAPL");
    let (s, _, _) = get(
        &format!("{base}/api/v1/ticks/AAPL?limit=5"),
        &[("x-api-key", &read)],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, body) = get(&symbols, &[("x-api-key", &ops)]).await;
    assert_eq!(s, 403);
    assert!(
        body["detail"].as_str().unwrap().contains("\"operator\""),
        "{body}"
    );
    // A query key is for live streams only.
    let (s, _, _) = get(&format!("{symbols}?api_key={read}"), &[]).await;
    assert_eq!(s, 401);

    // Operations.
    let metrics = format!("{base}/metrics");
    assert_eq!(get(&metrics, &[("x-api-key", &read)]).await.0, 403);
    let res = reqwest::Client::new()
        .get(&metrics)
        .header("x-api-key", &ops)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("streamforge_api_auth_failures_total"));
    // /readyz answers everyone, its checks only to ops.
    let (s, _, body) = get(&format!("{base}/readyz"), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(body, serde_json::json!({"ready": true}));
    let (s, _, body) = get(&format!("{base}/readyz"), &[("x-api-key", &ops)]).await;
    assert_eq!(s, 200);
    assert!(body["checks"]["store"]["ok"].as_bool().unwrap(), "{body}");

    // SSE: the key in the query (browsers cannot set headers there).
    let sse = format!("{base}/api/v1/stream?symbols=AAPL");
    assert_eq!(get(&format!("{sse}&api_key={read}"), &[]).await.0, 403);
    let res = reqwest::Client::new()
        .get(format!("{sse}&api_key={stream}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        200,
        "the stream key opens the stream"
    );
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    drop(res);

    // WebSocket: in the query, or in a header.
    let ws = format!("ws://{}/api/v1/ws", running.http_addr);
    let refused = tokio_tungstenite::connect_async(&ws).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws}?api_key={stream}"))
        .await
        .unwrap();
    socket.close(None).await.unwrap();
    let mut req = ws.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", bearer(&stream).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    socket.close(None).await.unwrap();

    // Every refusal counted by reason, never by key.
    let failures = running.metrics.snapshot().auth_failures;
    assert!(
        failures.get("missing_key").copied().unwrap_or(0) >= 2,
        "{failures:?}"
    );
    assert!(
        failures.get("invalid_key").copied().unwrap_or(0) >= 2,
        "{failures:?}"
    );
    assert!(
        failures.get("missing_scope").copied().unwrap_or(0) >= 3,
        "{failures:?}"
    );

    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_rate_is_answered_429_with_retry_after_per_key_and_per_address() {
    let (limited, mut entry) = generate("limited", "read");
    // One token every 5 s, 3 at once: a quick burst of 8 gets exactly 3.
    entry.rate_per_second = Some(0.2);
    entry.burst = Some(3);
    let (free, free_entry) = generate("free", "read");
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), vec![entry, free_entry]);
    c.api.anonymous = true;
    c.api.anonymous_rate_per_second = 0.2;
    c.api.anonymous_burst = 2;
    let (running, token, base) = start(&c).await;
    let symbols = format!("{base}/api/v1/symbols");
    let burst = |headers: Vec<(&'static str, String)>| {
        let url = symbols.clone();
        async move {
            let mut answers = Vec::new();
            for _ in 0..8 {
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                answers.push(get(&url, &h).await);
            }
            answers
        }
    };
    let answers = burst(vec![("x-api-key", limited.clone())]).await;
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(
        ok,
        3,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    let (s, h, body) = answers.last().unwrap();
    assert_eq!(*s, 429);
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert_eq!(body["error"], "rate limited");
    assert!(
        body["detail"].as_str().unwrap().contains("\"limited\""),
        "{body}"
    );
    // Another key is not held back by it; neither are the open routes.
    let answers = burst(vec![("x-api-key", free.clone())]).await;
    assert!(answers.iter().all(|(s, _, _)| *s == 200));
    // Without a key: per address (the burst of 2).
    let answers = burst(Vec::new()).await;
    assert_eq!(answers.iter().filter(|(s, _, _)| *s == 200).count(), 2);
    assert_eq!(answers.last().unwrap().0, 429);
    for _ in 0..5 {
        assert_eq!(get(&format!("{base}/healthz"), &[]).await.0, 200);
    }
    let limited_counts = running.metrics.snapshot().rate_limited;
    assert_eq!(
        limited_counts.get("limited"),
        Some(&5),
        "{limited_counts:?}"
    );
    assert_eq!(
        limited_counts.get("anonymous"),
        Some(&6),
        "{limited_counts:?}"
    );
    assert_eq!(limited_counts.get("free"), None);
    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_a_public_address_is_refused_and_loopback_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), Vec::new());
    c.http.addr = "0.0.0.0:0".parse().unwrap();
    let err = match pipeline::start(&c, Role::Run, CancellationToken::new()).await {
        Ok(_) => panic!("a public address without keys must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("http.addr") && err.contains("keys generate") && err.contains("api.anonymous"),
        "{err}"
    );
    // Said on purpose: served to everyone.
    c.api.anonymous = true;
    let token = CancellationToken::new();
    let running = pipeline::start(&c, Role::Run, token.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", running.http_addr.port());
    assert_eq!(get(&format!("{base}/api/v1/symbols"), &[]).await.0, 200);
    token.cancel();
    running.wait().await.unwrap();

    // The embedded default: loopback, no keys, nothing to set up.
    let c = config(dir.path(), Vec::new());
    let (running, token, base) = start(&c).await;
    assert_eq!(get(&format!("{base}/api/v1/symbols"), &[]).await.0, 200);
    assert_eq!(get(&format!("{base}/metrics"), &[]).await.0, 200);
    let (_, _, body) = get(&format!("{base}/readyz"), &[]).await;
    assert!(
        body["checks"].is_object(),
        "everyone is ops on loopback without keys: {body}"
    );
    token.cancel();
    running.wait().await.unwrap();
}

/// A WebSocket handshake to `url` sending `origin` (none when `None`): the
/// HTTP status it was answered with (101 when it opened).
async fn ws_status(url: &str, origin: Option<&str>) -> u16 {
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut socket, response)) => {
            let _ = socket.close(None).await;
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_foreign_origins_are_refused_and_listed_ones_get_cors() {
    let (key, entry) = generate("page", "read,stream");
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), vec![entry]);
    c.api.allowed_origins = vec!["https://app.example.com".into()];
    let (running, token, base) = start(&c).await;
    let own = base.clone();
    let symbols = format!("{base}/api/v1/symbols");
    let auth = format!("Bearer {key}");

    // REST from a page elsewhere: 403, saying which setting lets it in.
    let (s, h, body) = get(
        &symbols,
        &[("authorization", &auth), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("api.allowed_origins"),
        "{body}"
    );
    assert!(h.get("access-control-allow-origin").is_none());
    // A page that rebinds its own name to this loopback server (DNS
    // rebinding) is "same origin" with itself: its Host gives it away.
    let (s, _, body) = get(
        &symbols,
        &[("authorization", &auth), ("host", "rebound.example:80")],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("loopback"),
        "{body}"
    );
    // The dashboard's own origin, and clients that send none.
    for origin in [Some(own.as_str()), None] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(origin.map(|o| ("origin", o)));
        let (s, h, _) = get(&symbols, &headers).await;
        assert_eq!(s, 200, "origin {origin:?}");
        assert!(h.get("access-control-allow-origin").is_none());
    }
    // A listed origin: answered with CORS headers naming it (not `*`).
    let listed = "https://app.example.com";
    let (s, h, _) = get(&symbols, &[("authorization", &auth), ("origin", listed)]).await;
    assert_eq!(s, 200);
    assert_eq!(h["access-control-allow-origin"], listed);
    assert!(h["vary"].to_str().unwrap().contains("origin"));
    // Its preflight needs no key and allows the key headers.
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, &symbols)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let res = preflight(listed).await.unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-api-key"),
        "{allowed}"
    );
    assert_eq!(res.headers()["access-control-allow-origin"], listed);
    assert_eq!(
        preflight("https://evil.example")
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );

    // WebSocket upgrades: a foreign page is refused even with a good key.
    let ws = format!("ws://{}/api/v1/ws?api_key={key}", running.http_addr);
    assert_eq!(ws_status(&ws, Some("https://evil.example")).await, 403);
    assert_eq!(ws_status(&ws, Some("null")).await, 403);
    assert_eq!(ws_status(&ws, Some(&own)).await, 101);
    assert_eq!(ws_status(&ws, Some(listed)).await, 101);
    assert_eq!(ws_status(&ws, None).await, 101);
    let failures = running.metrics.snapshot().auth_failures;
    assert!(
        failures.get("origin").copied().unwrap_or(0) >= 4,
        "{failures:?}"
    );

    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guessing_keys_is_locked_out_before_its_keys_are_checked() {
    let (key, entry) = generate("reader", "read");
    let dir = tempfile::tempdir().unwrap();
    let (running, token, base) = start(&config(dir.path(), vec![entry])).await;
    let symbols = format!("{base}/api/v1/symbols");
    assert_eq!(get(&symbols, &[("x-api-key", &key)]).await.0, 200);
    for i in 0..10 {
        let guess = format!("sf_guess-{i}");
        assert_eq!(get(&symbols, &[("x-api-key", &guess)]).await.0, 401);
    }
    let (s, h, body) = get(&symbols, &[("x-api-key", "sf_guess-10")]).await;
    assert_eq!(s, 429, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("too many wrong API keys"),
        "{body}"
    );
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    // The right key does not get in either while locked out: a guess that
    // hits is not told apart from one that misses.
    assert_eq!(get(&symbols, &[("x-api-key", &key)]).await.0, 429);
    // Requests without a key are not guesses.
    assert_eq!(get(&format!("{base}/healthz"), &[]).await.0, 200);
    let failures = running.metrics.snapshot().auth_failures;
    // The 11th guess was refused before it was looked at.
    assert_eq!(
        failures.get("invalid_key").copied(),
        Some(10),
        "{failures:?}"
    );
    assert_eq!(
        failures.get("too_many_failures").copied(),
        Some(2),
        "{failures:?}"
    );
    // One wrong key is allowed again every 5 s.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(get(&symbols, &[("x-api-key", &key)]).await.0, 200);

    token.cancel();
    running.wait().await.unwrap();
}

/// The next tick message of a WebSocket, within 10 s.
async fn next_tick<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a tick within 10 s")
            .expect("the stream stays open")
            .expect("no stream error");
        if let Ok(text) = msg.to_text() {
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            if v["type"] == "ticks" || v["type"] == "tick" {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_test_ca_and_sighup_swaps_the_certificate_without_dropping_streams() {
    use futures::SinkExt;
    use streamforge_testkit::tls::{https_get, TestCa};
    let ca = TestCa::new("StreamForge test CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(&["localhost", "127.0.0.1"]);
    let (cert, key) = first.write(dir.path(), "server");
    std::fs::write(
        dir.path().join("streamforge.toml"),
        format!(
            "[http.tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [synthetic]\nsymbols = [\"AAPL\"]\nrate = 100.0\n"
        ),
    )
    .unwrap();
    let mut process = streamforge_testkit::process::Spawned::start(
        std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
            .current_dir(dir.path())
            .args(["run", "--http-addr", "127.0.0.1:0", "--log-level", "info"]),
    );
    let base = process.http_base(Duration::from_secs(30)).await;
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let trusting = ca.client_config();

    let answer = https_get(trusting.clone(), port, "localhost", "/healthz")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.server_cert, first.der, "the configured certificate");
    // A client that trusts another CA refuses the server; plain HTTP gets
    // no answer.
    let stranger = TestCa::new("another CA").client_config();
    let refused = https_get(stranger, port, "localhost", "/healthz").await;
    assert!(
        refused.is_err(),
        "a certificate of an unknown CA was accepted"
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status().as_u16() != 200).unwrap_or(true),
        "plain HTTP was served"
    );

    // A live stream over TLS.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async_tls_with_config(
        format!("wss://localhost:{port}/api/v1/ws"),
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(trusting.clone())),
    )
    .await
    .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"op":"subscribe","channel":"ticks","symbols":["AAPL"]}"#,
    ))
    .await
    .unwrap();
    next_tick(&mut ws).await;

    // New certificate files, then SIGHUP: new connections get the new
    // certificate, the open stream goes on.
    let second = ca.issue(&["localhost"]);
    second.write(dir.path(), "server");
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    process
        .wait_output("the TLS certificate was reloaded", Duration::from_secs(10))
        .await;
    let answer = https_get(trusting.clone(), port, "localhost", "/healthz")
        .await
        .unwrap();
    assert_eq!(answer.server_cert, second.der, "the reloaded certificate");
    for _ in 0..3 {
        next_tick(&mut ws).await;
    }
    // A broken file on reload: the error is logged, the certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &process.child.id().to_string()])
        .status()
        .unwrap();
    process
        .wait_output("could not be reloaded", Duration::from_secs(10))
        .await;
    let answer = https_get(trusting, port, "localhost", "/healthz")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.server_cert, second.der);
    next_tick(&mut ws).await;

    std::process::Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    let (status, _) = process.exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "{}", process.output());
}

/// What `psql` says running `sql` as the URL's role: `Ok(output)` or
/// `Err(its error)`.
fn psql_as(url: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_up_makes_a_writer_that_cannot_drop_and_a_reader_that_cannot_write() {
    writer_and_reader_roles("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescaledb_writer_and_reader_roles() {
    streamforge_testkit::engines::shared_postgres().require_timescaledb();
    writer_and_reader_roles("timescaledb").await;
}

/// `migrate up --writer --reader` on a schema of `mode`, then what each
/// role may and may not do.
async fn writer_and_reader_roles(mode: &str) {
    use streamforge_store::postgres::{PostgresConfig, PostgresStore};
    use streamforge_store::TickStore;
    let pg = streamforge_testkit::engines::shared_postgres();
    let db = pg.create_database().unwrap();
    let suffix = db.rsplit('/').next().unwrap().to_lowercase();
    let (writer, reader) = (format!("w_{suffix}"), format!("r_{suffix}"));
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("writer.password");
    std::fs::write(&secret, "writer-canary-password\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
        .current_dir(dir.path())
        .args([
            "migrate", "up", "--store", &db, "--writer", &writer, "--reader", &reader,
        ])
        .env("STREAMFORGE_POSTGRES__MODE", mode)
        .arg("--writer-password-file")
        .arg(&secret)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("role {writer} is the writer")),
        "{text}"
    );
    assert!(text.contains(&format!("mode {mode}")), "{text}");
    assert!(!text.contains("writer-canary-password"), "{text}");
    // The owner (here the superuser migrating) is never made a writer.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
        .current_dir(dir.path())
        .args(["migrate", "up", "--store", &db, "--writer", "postgres"])
        .env("STREAMFORGE_POSTGRES__MODE", mode)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("roles of their own"),
        "{err}"
    );
    assert_eq!(
        psql_as(
            &db,
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'"
        )
        .unwrap(),
        "t",
        "the superuser kept its rights"
    );
    let as_role =
        |role: &str| db.replacen("postgres@", &format!("{role}:writer-canary-password@"), 1);
    let (writer_url, reader_url) = (as_role(&writer), as_role(&reader));

    // The writer stores ticks, also of a day that has no partition yet
    // (made through the owner's function), and gaps.
    let store = PostgresStore::open(&writer_url, PostgresConfig::default())
        .await
        .expect("the writer opens the migrated store");
    // Within retention (which the writer applies below), two days ago.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now_ms - 2 * 86_400_000;
    let batch: streamforge_store::TickBatch = vec![
        streamforge_testkit::tick("AAPL", t0, 1.5, 2.0),
        streamforge_testkit::tick("AAPL", t0 + 86_400_000, 1.6, 2.0),
    ]
    .into();
    assert_eq!(store.write_batch(batch).await.unwrap().inserted, 2);
    store
        .housekeeping()
        .await
        .expect("the writer applies retention");
    drop(store);
    // ... and may not change the schema or remove data.
    for sql in [
        "DROP TABLE ticks",
        "TRUNCATE ticks",
        "DELETE FROM ticks",
        "ALTER TABLE ticks ADD COLUMN x INT",
        "CREATE TABLE mine (x INT)",
        "DROP TABLE streamforge_schema",
    ] {
        let e = psql_as(&writer_url, sql).expect_err(sql);
        assert!(
            e.contains("must be owner") || e.contains("permission denied"),
            "writer: {sql}: {e}"
        );
    }

    // The reader reads, and may write nothing.
    let store = PostgresStore::open(&reader_url, PostgresConfig::default())
        .await
        .expect("the reader opens the migrated store");
    let aapl = streamforge_model::Symbol::parse("AAPL").unwrap();
    assert_eq!(store.latest(&aapl).await.unwrap().unwrap().price(), 1.6);
    let more: streamforge_store::TickBatch =
        vec![streamforge_testkit::tick("AAPL", t0 + 1, 9.0, 1.0)].into();
    let e = store.write_batch(more).await.expect_err("the reader wrote");
    assert!(e.to_string().contains("permission denied"), "{e}");
    let mut refused = vec![
        "INSERT INTO gaps VALUES ('p', 'AAPL', now(), now(), 0, 'disconnect')",
        "UPDATE symbols SET ticks = 0",
        "DROP TABLE ticks",
    ];
    if mode == "postgres" {
        refused.push("SELECT streamforge_add_partition(1::BIGINT)");
    }
    for sql in refused {
        let e = psql_as(&reader_url, sql).expect_err(sql);
        assert!(
            e.contains("must be owner") || e.contains("permission denied"),
            "reader: {sql}: {e}"
        );
    }
    assert_eq!(
        psql_as(&reader_url, "SELECT count(*) FROM ticks").unwrap(),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_shows_in_no_output_of_a_running_pipeline() {
    use std::sync::{Arc, Mutex};
    const CANARY: &str = "canary-5ecret-4c1d";
    // Every place a secret goes: the store URL's password (the test
    // server trusts local connections, so it connects), the cache's
    // (nothing listens there: errors in logs and /readyz), the Finnhub
    // token (the simulator accepts only it; its connections drop every
    // second, so connects are logged again and again), a Kafka SASL
    // password, and the API key itself.
    let sim = streamforge_providers::finnhub::Simulator::start(
        streamforge_providers::finnhub::SimulatorConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: CANARY.into(),
            rate: 100.0,
            drop_every: Some(Duration::from_secs(1)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let pg = streamforge_testkit::engines::shared_postgres();
    let store =
        pg.create_database()
            .unwrap()
            .replacen("postgres@", &format!("postgres:{CANARY}@"), 1);
    let cache = format!(
        "redis://:{CANARY}@127.0.0.1:{}/",
        streamforge_testkit::free_port()
    );
    let (key, entry) = generate("operator", "read,stream,ops");
    // Traces: every frame sampled, every export body kept as received.
    let exported: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = exported.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().extend_from_slice(&body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("streamforge.toml"),
        format!(
            "[finnhub]\nurl = \"{}\"\nsymbols = [\"AAPL\"]\nbackoff_min = \"50ms\"\nbackoff_max = \"200ms\"\n\
             [[api.keys]]\nid = \"{}\"\nsha256 = \"{}\"\nscopes = [\"read\", \"stream\", \"ops\"]\n",
            sim.url(),
            entry.id,
            entry.sha256
        ),
    )
    .unwrap();
    let envs = [
        ("FINNHUB_TOKEN", CANARY.to_string()),
        ("STREAMFORGE_STORE", store),
        ("STREAMFORGE_CACHE", cache),
        (
            "STREAMFORGE_KAFKA__PROPERTIES__SASL_PASSWORD",
            CANARY.into(),
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
        ("OTEL_TRACES_SAMPLER_ARG", "1".into()),
        ("STREAMFORGE_LOG_FORMAT", "json".into()),
    ];
    let bin = env!("CARGO_BIN_EXE_streamforge");
    let mut outputs: Vec<(String, String)> = Vec::new();
    for args in [["config", "print"], ["config", "check"]] {
        let out = std::process::Command::new(bin)
            .current_dir(dir.path())
            .args(args)
            .envs(envs.clone())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((
            args.join(" "),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    let mut process = streamforge_testkit::process::Spawned::start(
        std::process::Command::new(bin)
            .current_dir(dir.path())
            .args(["run", "--http-addr", "127.0.0.1:0", "--log-level", "debug"])
            .envs(envs.clone()),
    );
    let base = process.http_base(Duration::from_secs(30)).await;
    let auth = format!("Bearer {key}");
    wait_for("Finnhub ticks stored", Duration::from_secs(30), || {
        let (url, auth) = (format!("{base}/api/v1/symbols"), auth.clone());
        async move {
            let (s, _, body) = get(&url, &[("authorization", &auth)]).await;
            (s == 200 && body["symbols"][0]["ticks"].as_u64() > Some(0)).then_some(())
        }
    })
    .await;
    // Reconnects, cache failures and traces have had time to happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for path in [
        "/metrics",
        "/readyz",
        "/api/v1/pipeline",
        "/api/v1/symbols",
        "/api/openapi.json",
    ] {
        let res = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        outputs.push((path.into(), res.text().await.unwrap()));
    }
    let readyz = &outputs.iter().find(|(n, _)| n == "/readyz").unwrap().1;
    assert!(
        readyz.contains("\"cache\""),
        "the detailed checks: {readyz}"
    );
    let metrics = &outputs.iter().find(|(n, _)| n == "/metrics").unwrap().1;
    assert!(
        metrics.contains("streamforge_provider_reconnects_total"),
        "{metrics}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    process.exit_within(Duration::from_secs(30)).await;
    let log = process.output();
    assert!(
        log.contains("***"),
        "the secrets were logged redacted: {log}"
    );
    outputs.push(("the log".into(), log));
    let traces = exported.lock().unwrap().clone();
    assert!(!traces.is_empty(), "no trace was exported");
    outputs.push((
        "the exported traces".into(),
        String::from_utf8_lossy(&traces).into_owned(),
    ));
    for (name, text) in &outputs {
        assert!(!text.contains(CANARY), "the secret is in {name}:\n{text}");
        assert!(!text.contains(&key), "the API key is in {name}:\n{text}");
    }
}
