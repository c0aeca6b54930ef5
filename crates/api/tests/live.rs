//! Component tests of candles with gaps, the live streams (WebSocket and
//! SSE with resume) and the dashboard assets: the real router served on
//! 127.0.0.1:0 over an SQLite store, live batches published into the hub.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use streamforge_api::live::{Resume, ResumeWindow};
use streamforge_api::routes::ws::WsOptions;
use streamforge_api::{router, ApiConfig, AppState, LiveHub};
use streamforge_model::{Candle, Gap, GapReason, Interval, Symbol, Tick, Timestamp};
use streamforge_store::{Cache, MemoryCache, SqliteStore, TickStore};
use streamforge_telemetry::{Health, Metrics};
use streamforge_testkit::{get_json, wait_for, SseClient};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// 2025-08-27T20:15:00Z in ms (a minute boundary).
const T0: i64 = 1_756_325_700_000;

fn tick(symbol: &str, ms: i64, price: f64) -> Tick {
    streamforge_testkit::tick(symbol, ms, price, 10.0)
}

struct Server {
    url: String,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn serve(ticks: &[Tick], hub: LiveHub, ws: WsOptions) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
    if !ticks.is_empty() {
        store.write_batch(Arc::from(ticks.to_vec())).await.unwrap();
    }
    let cache = MemoryCache::new();
    cache.update_latest(ticks).await.unwrap();
    let state = AppState {
        store: Arc::new(store),
        cache: Arc::new(cache),
        live: hub,
        metrics: Metrics::new(),
        health: Health::new(),
        limits: ApiConfig::default(),
        ws,
        shutdown: CancellationToken::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        url,
        state,
        _dir: dir,
    }
}

#[tokio::test]
async fn candles_over_a_gap_are_incomplete_and_empty_minutes_only_filled_when_asked() {
    // Trades in minutes 0 and 3; a feed gap in the second half of minute 0.
    let ticks = [
        tick("AAPL", T0 + 1_000, 10.0),
        tick("AAPL", T0 + 20_000, 12.0),
        tick("AAPL", T0 + 180_000, 11.0),
    ];
    let server = serve(&ticks, LiveHub::default(), WsOptions::default()).await;
    server
        .state
        .store
        .write_gaps(&[Gap {
            provider: "finnhub".into(),
            connection: 0,
            symbol: Symbol::parse("AAPL").unwrap(),
            from: Timestamp::from_millis(T0 + 30_000),
            to: Timestamp::from_millis(T0 + 45_000),
            reason: GapReason::Disconnected,
            healing: streamforge_model::Healing::default(),
        }])
        .await
        .unwrap();
    let base = format!(
        "{}/api/v1/candles/AAPL?interval=1m&from={T0}&to={}",
        server.url,
        T0 + 600_000
    );
    let (status, page) = get_json(&base).await;
    assert_eq!(status, 200, "{page}");
    let candles = page["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 2, "no zero-filled minutes: {page}");
    assert_eq!(candles[0]["complete"], false);
    assert_eq!(candles[0]["gap_ids"], serde_json::json!([0]));
    let gap = &page["gaps"][0];
    assert_eq!(gap["id"], 0);
    assert_eq!(gap["reason"], "disconnected");
    assert_eq!(gap["seconds"], 15.0);
    assert_eq!(candles[1]["complete"], true);
    assert!(candles[1].get("gap_ids").is_none());
    assert_eq!(page["gaps"].as_array().unwrap().len(), 1);
    assert_eq!(page["fill"], "none");

    let (status, page) = get_json(&format!("{base}&fill=previous")).await;
    assert_eq!(status, 200, "{page}");
    let candles = page["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 4, "{page}");
    for filled in &candles[1..3] {
        assert_eq!(filled["filled"], true);
        assert_eq!(filled["trades"], 0);
        assert_eq!(filled["volume"], 0.0);
        assert_eq!(
            (filled["open"].as_f64(), filled["close"].as_f64()),
            (Some(12.0), Some(12.0))
        );
    }
    assert_eq!(candles[1]["start"], "2025-08-27T20:16:00Z");
    assert!(candles[3].get("filled").is_none());

    let (status, err) = get_json(&format!("{base}&fill=zero")).await;
    assert_eq!(status, 400);
    assert_eq!(err["parameter"], "fill");
}

async fn ws_connect(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}/api/v1/ws", url.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next text message as JSON (pings skipped).
async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the connection is open")
            .unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => continue,
        }
    }
}

fn candle(symbol: &str, interval: Interval, ticks: &[Tick]) -> Candle {
    let c = streamforge_testkit::reference::candles(interval, ticks).remove(0);
    assert_eq!(c.symbol.as_str(), symbol);
    c
}

#[tokio::test]
async fn websocket_clients_get_what_they_subscribed_to_and_bad_requests_are_answered() {
    let server = serve(&[], LiveHub::default(), WsOptions::default()).await;
    let mut ws = ws_connect(&server.url).await;
    let send = |v: Value| Message::Text(v.to_string().into());

    ws.send(send(
        json!({"op": "subscribe", "channel": "ticks", "symbols": ["aapl"]}),
    ))
    .await
    .unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ws.send(send(
        json!({"op": "subscribe", "channel": "candles", "symbols": ["AAPL"], "interval": "1m"}),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    assert_eq!(
        server.state.live.wanted_intervals(),
        [Interval::M1],
        "1m candles are tracked while someone wants them"
    );

    let batch = vec![
        tick("AAPL", T0, 10.0),
        tick("MSFT", T0, 20.0),
        tick("AAPL", T0 + 5, 11.0),
    ];
    let candles = vec![
        candle("AAPL", Interval::M1, &[batch[0].clone(), batch[2].clone()]),
        candle("AAPL", Interval::M5, &[batch[0].clone(), batch[2].clone()]),
        candle("MSFT", Interval::M1, &batch[1..2]),
    ];
    server.state.live.publish(Arc::from(batch), candles);
    let ticks = next_json(&mut ws).await;
    assert_eq!(ticks["type"], "ticks", "{ticks}");
    let prices: Vec<f64> = ticks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["symbol"], "AAPL");
            t["price"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(prices, [10.0, 11.0]);
    let c = next_json(&mut ws).await;
    assert_eq!(c["type"], "candle", "{c}");
    assert_eq!(
        (c["data"]["symbol"].as_str(), c["data"]["interval"].as_str()),
        (Some("AAPL"), Some("1m"))
    );
    assert_eq!(
        (c["data"]["open"].as_f64(), c["data"]["close"].as_f64()),
        (Some(10.0), Some(11.0))
    );

    // Bad requests are answered and the connection stays.
    for (bad, says) in [
        (
            json!({"op": "subscribe", "channel": "quotes", "symbols": ["AAPL"]}),
            "channel",
        ),
        (
            json!({"op": "subscribe", "channel": "candles", "symbols": ["AAPL"], "interval": "2m"}),
            "interval",
        ),
        (
            json!({"op": "subscribe", "channel": "candles", "symbols": ["AAPL"]}),
            "interval",
        ),
        (
            json!({"op": "subscribe", "channel": "ticks", "symbols": ["A B"]}),
            "symbols",
        ),
        (
            json!({"op": "subscribe", "channel": "ticks", "symbols": []}),
            "symbols",
        ),
        (json!({"op": "jump"}), "unknown op"),
        (json!({"op": "ping", "colour": "red"}), "not a request"),
    ] {
        ws.send(send(bad.clone())).await.unwrap();
        let answer = next_json(&mut ws).await;
        assert_eq!(answer["type"], "error", "{bad} -> {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(says),
            "{bad} -> {answer}"
        );
    }

    // After unsubscribing, a batch brings nothing: the next message is the pong.
    ws.send(send(
        json!({"op": "unsubscribe", "channel": "ticks", "symbols": ["AAPL"]}),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
    server
        .state
        .live
        .publish(Arc::from(vec![tick("AAPL", T0 + 10, 12.0)]), vec![]);
    ws.send(send(json!({"op": "ping"}))).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "pong");
    ws.send(send(
        json!({"op": "unsubscribe", "channel": "candles", "symbols": ["AAPL"], "interval": "1m"}),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
    assert!(server.state.live.wanted_intervals().is_empty());
}

#[tokio::test]
async fn slow_websocket_clients_are_told_and_dropped_while_others_keep_up() {
    let hub = LiveHub::new(8, ResumeWindow::default());
    let options = WsOptions {
        send_timeout: Duration::from_secs(2),
        ..WsOptions::default()
    };
    let server = serve(&[], hub, options).await;
    let subscribe = Message::Text(
        json!({"op": "subscribe", "channel": "ticks", "symbols": ["*"]})
            .to_string()
            .into(),
    );
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = ws_connect(&server.url).await;
        ws.send(subscribe.clone()).await.unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        clients.push(ws);
    }
    let (mut fast, mut sluggish, stuck) = {
        let mut it = clients.into_iter();
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let batches = 300u64;
    // One client reads everything as it comes.
    let fast = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while (seqs.len() as u64) < batches {
            let m = next_json(&mut fast).await;
            if m["type"] == "ticks" {
                seqs.push(m["seq"].as_u64().unwrap());
            }
        }
        seqs
    });
    // One reads, but slower than batches come: it falls behind by more
    // than the hub's buffer, is told so, then closed with 1008.
    let sluggish = tokio::spawn(async move {
        let (mut told, mut code) = (None, None);
        // Bounded: pings would keep a plain read timeout from ever firing.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, sluggish.next()).await {
            match m {
                Message::Text(t) if t.contains("slow_consumer") => told = Some(t.to_string()),
                Message::Close(Some(f)) => {
                    code = Some(u16::from(f.code));
                    break;
                }
                // One message per 100 ms while 200 batches/s are published.
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        (told, code)
    });
    // The third never reads at all (held, not polled).
    let big: Vec<Tick> = (0..2_000)
        .map(|i| tick("AAPL", T0 + i, 10.0 + i as f64 / 100.0))
        .collect();
    for _ in 0..batches {
        server.state.live.publish(Arc::from(big.clone()), vec![]);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seqs = tokio::time::timeout(Duration::from_secs(60), fast)
        .await
        .expect("the fast client got every batch")
        .unwrap();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + batches).collect::<Vec<_>>(),
        "the fast client missed no batch"
    );
    let (told, code) = sluggish.await.unwrap();
    let told = told.expect("the sluggish client was told why");
    assert!(told.contains("missed"), "{told}");
    assert_eq!(code, Some(1008));
    let metrics = server.state.metrics.clone();
    wait_for(
        "both slow clients to be disconnected",
        Duration::from_secs(30),
        || {
            let text = metrics.render();
            async move {
                text.contains("streamforge_api_stream_slow_disconnects_total 2")
                    .then_some(())
            }
        },
    )
    .await;
    drop(stuck);
}

#[tokio::test]
async fn the_server_pings_and_closes_a_connection_that_stops_answering() {
    let options = WsOptions {
        ping_every: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(700),
        ..WsOptions::default()
    };
    let server = serve(&[], LiveHub::default(), options).await;
    let mut ws = ws_connect(&server.url).await;
    // Not reading means not answering pings.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (mut pings, mut ended) = (0, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(next) = tokio::time::timeout_at(deadline, ws.next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(f))) => {
                let f = f.expect("a close frame with a code");
                assert_eq!((u16::from(f.code), f.reason.as_str()), (1008, "no pong"));
                ended = true;
                break;
            }
            Some(Ok(_)) => {}
            // Answering a ping after the server hung up fails first.
            Some(Err(_)) | None => {
                ended = true;
                break;
            }
        }
    }
    assert!(pings >= 2, "{pings} pings");
    assert!(ended, "the server closed the connection");
    let metrics = server.state.metrics.clone();
    wait_for("the client to be gone", Duration::from_secs(5), || {
        let text = metrics.render();
        async move {
            text.contains("streamforge_api_stream_clients 0")
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn sse_resumes_after_the_last_event_id_within_the_window_and_says_when_it_cannot() {
    let hub = LiveHub::new(
        64,
        ResumeWindow {
            batches: 3,
            age: Duration::from_secs(60),
        },
    );
    let server = serve(&[], hub, WsOptions::default()).await;
    let url = format!("{}/api/v1/stream?symbols=AAPL&candles=1m", server.url);
    let mut first = SseClient::connect(&url).await;
    let b1 = vec![
        tick("AAPL", T0, 10.0),
        tick("MSFT", T0, 1.0),
        tick("AAPL", T0 + 1, 11.0),
    ];
    let c1 = vec![candle(
        "AAPL",
        Interval::M1,
        &[b1[0].clone(), b1[2].clone()],
    )];
    server.state.live.publish(Arc::from(b1), c1);
    let e = first.next(Duration::from_secs(10)).await.unwrap();
    let epoch = format!("{:x}", server.state.live.epoch());
    let id = |batch: u64, i: usize| format!("{epoch}-{batch}:{i}");
    assert_eq!((e.event.as_str(), e.id.clone()), ("tick", Some(id(1, 0))));
    drop(first);

    server
        .state
        .live
        .publish(Arc::from(vec![tick("AAPL", T0 + 2, 12.0)]), vec![]);
    // Back with the last id seen: the rest of batch 1, then batch 2.
    let mut again = SseClient::resume(&url, Some(&id(1, 0))).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = again.next(Duration::from_secs(10)).await.unwrap();
        got.push((e.event, e.id.unwrap()));
    }
    assert_eq!(
        got,
        [
            ("tick".to_string(), id(1, 2)),
            ("candle".to_string(), id(1, 3)),
            ("tick".to_string(), id(2, 0)),
        ]
    );

    // Beyond the window (3 batches): told that events were missed.
    for i in 0..4 {
        server
            .state
            .live
            .publish(Arc::from(vec![tick("AAPL", T0 + 10 + i, 12.0)]), vec![]);
    }
    let mut late = SseClient::resume(&url, Some(&id(1, 3))).await;
    let e = late.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(e.event, "reset", "{e:?}");
    assert!(e.data.contains("outside the resume window"));
    // An id from another server process (a restart, another instance).
    let mut elsewhere = SseClient::resume(&url, Some("abc-6:0")).await;
    let e = elsewhere.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(e.event, "reset", "{e:?}");

    // Batches that went by while no client was connected cannot be resumed.
    let hub = &server.state.live;
    hub.publish(Arc::from(vec![tick("AAPL", T0 + 20, 12.0)]), vec![]);
    let Resume::Replay(kept) = hub.resume(hub.epoch(), 6) else {
        panic!("batch 7 is in the window");
    };
    assert_eq!(kept.len(), 1);
    hub.skipped();
    assert!(matches!(hub.resume(hub.epoch(), 7), Resume::TooOld));

    let res = reqwest::Client::new()
        .get(&url)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["parameter"], "Last-Event-ID");
}

#[tokio::test]
async fn the_dashboard_and_its_assets_are_served_from_the_binary() {
    let server = serve(&[], LiveHub::default(), WsOptions::default()).await;
    let page = reqwest::get(format!("{}/", server.url)).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("https://www.tradingview.com/"),
        "attribution link"
    );
    assert!(!html.contains("cdn"), "no CDN");
    // Every local script and stylesheet the page names is served.
    for asset in html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/assets/"))
    {
        let res = reqwest::get(format!("{}{asset}", server.url))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{asset}");
        assert!(!res.bytes().await.unwrap().is_empty(), "{asset}");
    }
    let (status, _) = get_json(&format!("{}/assets/nope.js", server.url)).await;
    assert_eq!(status, 404);
}
