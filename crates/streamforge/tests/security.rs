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
