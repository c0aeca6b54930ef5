//! Observability end to end, against real servers: a Prometheus server
//! scrapes a running pipeline (and loads the shipped alert rules), and the
//! `ingest` and `persist` processes export OpenTelemetry spans to an OTLP
//! receiver inside this test, which checks they form one trace.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use streamforge::config::Config;
use streamforge::pipeline::{self, Role};
use streamforge_model::Tick;
use streamforge_providers::{Provider, ProviderError, ProviderFrame, Rejected};
use streamforge_testkit::engines::{shared_kafka, shared_postgres, Prometheus, Redis};
use streamforge_testkit::{tick, wait_for};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Sends the frames it was given, then stays connected until cancelled.
struct FixedFeed(Vec<ProviderFrame>);

#[async_trait]
impl Provider for FixedFeed {
    fn id(&self) -> &'static str {
        "test"
    }

    async fn run(
        self: Box<Self>,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        for f in self.0 {
            if out.send(f).await.is_err() {
                return Ok(());
            }
        }
        cancel.cancelled().await;
        Ok(())
    }
}

const TICKS: usize = 600;
const REJECTS: usize = 3;

/// `TICKS` ticks over three symbols in 12 frames, and `REJECTS` rejected
/// inputs in the last frame.
fn frames() -> Vec<ProviderFrame> {
    let now = streamforge_model::Timestamp::now().as_micros() / 1000;
    let symbols = ["AAPL", "MSFT", "BINANCE:BTCUSDT"];
    let ticks: Vec<Tick> = (0..TICKS)
        .map(|i| {
            let ms = now - 60_000 + i as i64;
            tick(symbols[i % 3], ms, 100.0 + i as f64 / 100.0, 1.0)
        })
        .collect();
    let mut frames: Vec<ProviderFrame> = ticks
        .chunks(TICKS / 12)
        .map(|c| ProviderFrame {
            provider: "test",
            ticks: c.to_vec(),
            ..ProviderFrame::default()
        })
        .collect();
    frames.last_mut().unwrap().rejects = (0..REJECTS)
        .map(|i| {
            Rejected::new(
                format!("{{\"p\":\"bad{i}\"}}").into_bytes(),
                "invalid_price",
                format!("price: not a number (trade {i})"),
            )
        })
        .collect();
    frames
}

async fn promql(prom: &str, expr: &str) -> Result<serde_json::Value, String> {
    let url = reqwest::Url::parse_with_params(&format!("{prom}/api/v1/query"), &[("query", expr)])
        .map_err(|e| e.to_string())?;
    let res = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{expr}: {body}"));
    }
    Ok(body["data"]["result"].clone())
}

/// The value of a query that returns one series (`None` while it returns none).
async fn scalar(prom: &str, expr: &str) -> Option<f64> {
    let result = promql(prom, expr).await.ok()?;
    result.as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

/// Every `streamforge_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("streamforge_") {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

/// The PromQL of every dashboard panel and alert rule shipped in `deploy/`.
fn shipped_promql() -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, file: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                let prometheus = m
                    .get("datasource")
                    .and_then(|d| d.get("type"))
                    .and_then(|t| t.as_str())
                    .is_none_or(|t| t == "prometheus");
                if let Some(expr) = m.get("expr").and_then(|e| e.as_str()) {
                    if prometheus {
                        out.push((file.to_string(), expr.to_string()));
                    }
                }
                m.values().for_each(|v| walk(v, file, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, file, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let dashboards = deploy().join("grafana/dashboards");
    for e in std::fs::read_dir(dashboards).unwrap() {
        let path = e.unwrap().path();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        walk(&json, &path.display().to_string(), &mut out);
    }
    let alerts = std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap();
    for line in alerts.lines() {
        if let Some(expr) = line.trim().strip_prefix("expr:") {
            out.push(("alerts.yml".into(), expr.trim().to_string()));
        }
    }
    assert!(out.len() > 20, "found only {} expressions", out.len());
    out
}

/// `run` on embedded defaults, its store in `dir`, HTTP on a free port.
fn embedded(dir: &Path) -> Config {
    let mut c = Config {
        store: Some(format!("sqlite://{}", dir.join("s.db").display())),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.log.level = "warn".into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_pipeline_and_promql_sees_what_went_through() {
    let dir = tempfile::tempdir().unwrap();
    let c = embedded(dir.path());
    let token = CancellationToken::new();
    let running = pipeline::Pipeline::new(&c, Role::Run)
        .with_providers(vec![Box::new(FixedFeed(frames()))])
        .start(token.clone())
        .await
        .unwrap();
    let metrics = running.metrics.clone();
    wait_for("every tick stored", Duration::from_secs(30), || {
        let written = metrics.snapshot().store.rows_written;
        async move { (written as usize == TICKS).then_some(()) }
    })
    .await;

    let prometheus = Prometheus::start(
        &[running.http_addr.to_string()],
        &[deploy().join("prometheus/alerts.yml")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let prom = prometheus.url();
    let scraped = wait_for(
        "Prometheus to scrape the pipeline",
        Duration::from_secs(60),
        || {
            let prom = prom.clone();
            async move { scalar(&prom, "streamforge_store_rows_written_total").await }
        },
    )
    .await;
    assert_eq!(scraped as usize, TICKS, "{}", prometheus.log());

    // What went through, as PromQL sees it.
    let expect = [
        ("up{job=\"streamforge\"}", 1.0),
        ("sum(streamforge_provider_ticks_total)", TICKS as f64),
        (
            "streamforge_provider_ticks_total{provider=\"test\"}",
            TICKS as f64,
        ),
        // The ticks topic also carries the ledger's tallies.
        (
            "streamforge_bus_published_messages_total{topic=\"ticks\"} \
             - on() streamforge_ledger_tallies_published_total{provider=\"test\"}",
            TICKS as f64,
        ),
        (
            "streamforge_bus_consumed_messages_total{topic=\"ticks\"} \
             - on() streamforge_ledger_tallies_published_total{provider=\"test\"}",
            TICKS as f64,
        ),
        (
            "streamforge_ledger_trades_total{provider=\"test\",count=\"received\"}",
            TICKS as f64,
        ),
        (
            "streamforge_bus_published_messages_total{topic=\"ticks.dlq\"}",
            REJECTS as f64,
        ),
        (
            "streamforge_pipeline_rejected_ticks_total{stage=\"ingest\",reason=\"invalid_price\"}",
            REJECTS as f64,
        ),
        (
            "streamforge_bus_dlq_messages_total{reason=\"invalid_price\"}",
            REJECTS as f64,
        ),
        (
            "streamforge_pipeline_ingest_to_stored_seconds_count",
            TICKS as f64,
        ),
        (
            "streamforge_pipeline_exchange_to_ingested_seconds_count",
            TICKS as f64,
        ),
        ("streamforge_store_rows_deduplicated_total", 0.0),
    ];
    for (expr, want) in expect {
        let got = scalar(&prom, expr).await;
        assert_eq!(got, Some(want), "{expr}");
    }
    // Histograms parse into buckets PromQL can use (OpenMetrics `le` bounds).
    let p99 = scalar(
        &prom,
        "histogram_quantile(0.99, sum by (le) (streamforge_pipeline_ingest_to_stored_seconds_bucket))",
    )
    .await
    .expect("a p99 from the buckets");
    assert!(p99.is_finite() && p99 > 0.0, "p99 {p99}");

    // The shipped alert rules load and evaluate without error.
    let rules = wait_for(
        "the alert rules to be evaluated",
        Duration::from_secs(30),
        || {
            let prom = prom.clone();
            async move {
                let v: serde_json::Value = reqwest::get(format!("{prom}/api/v1/rules"))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let rules: Vec<serde_json::Value> = v["data"]["groups"]
                    .as_array()?
                    .iter()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .collect();
                let evaluated = !rules.is_empty()
                    && rules.iter().all(|r| {
                        r["lastEvaluation"]
                            .as_str()
                            .is_some_and(|t| !t.starts_with("0001"))
                    });
                evaluated.then_some(rules)
            }
        },
    )
    .await;
    for r in &rules {
        assert_eq!(
            r["health"], "ok",
            "alert rule {}: {}",
            r["name"], r["lastError"]
        );
    }
    assert!(rules.len() >= 8, "{} rules loaded", rules.len());

    // Every dashboard and alert expression parses, and names only metrics
    // that a live scrape of the pipeline lists.
    let live = reqwest::get(format!("http://{}/metrics", running.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: HashMap<String, String> = live
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    let known = |name: &str| {
        exported.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                name.strip_suffix(s)
                    .and_then(|base| exported.get(base))
                    .is_some_and(|kind| kind == "histogram")
            })
    };
    for (file, expr) in shipped_promql() {
        promql(&prom, &expr)
            .await
            .unwrap_or_else(|e| panic!("{file}: Prometheus rejects {e}"));
        for name in metric_names(&expr) {
            assert!(
                known(&name),
                "{file}: {name} is not exported by the pipeline ({expr})"
            );
        }
    }

    token.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_speak_openmetrics_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = embedded(dir.path());
    c.synthetic.rate = 200.0;
    let token = CancellationToken::new();
    let running = pipeline::start(&c, Role::Run, token.clone()).await.unwrap();
    let url = format!("http://{}/metrics", running.http_addr);
    let client = reqwest::Client::new();
    let get = |accept: Option<&'static str>| {
        let mut req = client.get(&url);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        async move {
            let res = req.send().await.unwrap();
            let ct = res.headers()["content-type"].to_str().unwrap().to_string();
            (ct, res.text().await.unwrap())
        }
    };
    let (ct, body) = get(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ))
    .await;
    assert!(
        ct.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ct}"
    );
    assert!(body.ends_with("# EOF\n"));
    assert!(
        body.contains("# TYPE streamforge_store_rows_written counter\n"),
        "counters typed by family"
    );
    assert!(body.contains("\nstreamforge_store_rows_written_total "));
    assert!(body.contains("le=\"1.0\""), "float bucket bounds");

    for accept in [None, Some("*/*"), Some("text/plain")] {
        let (ct, body) = get(accept).await;
        assert!(
            ct.starts_with("text/plain; version=0.0.4"),
            "{accept:?}: {ct}"
        );
        assert!(body.contains("# TYPE streamforge_store_rows_written_total counter\n"));
        assert!(!body.contains("# EOF"));
    }
    token.cancel();
    running.wait().await.unwrap();
}

// ---------------------------------------------------------------- traces

/// One span as the OTLP receiver got it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    links: Vec<String>,
}

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf).
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Receiver {
    async fn start(&self) -> std::net::SocketAddr {
        use axum::body::Bytes;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;

        let spans = self.0.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let spans = spans.clone();
                async move {
                    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    let mut out = spans.lock().unwrap();
                    for rs in req.resource_spans {
                        let service = rs
                            .resource
                            .iter()
                            .flat_map(|r| r.attributes.iter())
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref())
                            .map(|v| format!("{:?}", v.value))
                            .unwrap_or_default();
                        for ss in rs.scope_spans {
                            for s in ss.spans {
                                out.push(ReceivedSpan {
                                    service: service.clone(),
                                    name: s.name,
                                    trace_id: hex(&s.trace_id),
                                    span_id: hex(&s.span_id),
                                    parent: hex(&s.parent_span_id),
                                    links: s.links.iter().map(|l| hex(&l.span_id)).collect(),
                                });
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.0.lock().unwrap().clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn spawn_role(role: &str, config: &Path, otlp: &str, log: &Path) -> std::process::Child {
    let log = std::fs::File::create(log).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_streamforge"))
        .arg("--config")
        .arg(config)
        .arg(role)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_TRACES_SAMPLER_ARG", "1.0")
        // Export only when the batch is full or at shutdown: the test then
        // also shows that shutdown flushes.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "100000")
        .env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100000")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting streamforge {role}: {e}"))
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_frame_from_ingest_through_persist_and_logs_carry_its_id() {
    let broker = shared_kafka();
    let db = shared_postgres().create_database().unwrap();
    let redis = Redis::start().unwrap();
    let receiver = Receiver::default();
    let otlp = format!("http://{}", receiver.start().await);

    let topic = format!("traced-{}", std::process::id());
    let mut c = Config {
        bus: broker.url(),
        store: Some(db.clone()),
        cache: redis.url(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.ingest.topic = topic.clone();
    c.ingest.dlq_topic = format!("{topic}.dlq");
    c.persist.group = format!("{topic}-persist");
    c.persist.batch_timeout = Duration::from_millis(50);
    c.synthetic.symbols = vec!["AAPL".into(), "MSFT".into()];
    c.synthetic.rate = 40.0;
    c.synthetic.slice = Duration::from_millis(100);
    c.kafka.partitions = 1;
    c.log.level = "info".into();
    c.log.format = streamforge_telemetry::LogFormat::Json;
    let dir = tempfile::tempdir().unwrap();
    let config_file = streamforge_testkit::migrated_config(
        env!("CARGO_BIN_EXE_streamforge"),
        dir.path(),
        &c.to_toml(),
    );

    let (ingest_log, persist_log) = (
        dir.path().join("ingest.log"),
        dir.path().join("persist.log"),
    );
    let mut persist = spawn_role("persist", &config_file, &otlp, &persist_log);
    let mut ingest = spawn_role("ingest", &config_file, &otlp, &ingest_log);
    let rows = || -> u64 {
        streamforge_testkit::engines::psql(&db, "SELECT count(*) FROM ticks")
            .parse()
            .unwrap()
    };
    wait_for(
        "ticks stored by the persist process",
        Duration::from_secs(60),
        || {
            let n = rows();
            async move { (n > 20).then_some(()) }
        },
    )
    .await;
    // A poison message: persist logs it, inside its batch's span.
    let bus = streamforge_bus::connect(&broker.url(), &c.bus_options())
        .await
        .unwrap();
    bus.publish(
        &topic,
        vec![streamforge_bus::Message {
            key: bytes::Bytes::from_static(b"AAPL"),
            payload: bytes::Bytes::from_static(b"not a tick"),
            headers: Default::default(),
        }],
    )
    .await
    .unwrap();
    wait_for(
        "persist to log the poison message",
        Duration::from_secs(30),
        || {
            let log = std::fs::read_to_string(&persist_log).unwrap_or_default();
            async move { log.contains("dead-letter topic").then_some(()) }
        },
    )
    .await;
    assert!(
        receiver.spans().is_empty(),
        "with a 10-minute export delay and no batch limit nothing is sent before shutdown"
    );

    // Shutdown flushes both processes' spans.
    let ingest_exit = terminate(&mut ingest);
    // Persist has stored (or dead-lettered) and committed all ingest sent.
    wait_for(
        "persist to commit every message on the topic",
        Duration::from_secs(30),
        || {
            let end = broker.end_offsets(&topic).unwrap();
            let committed = broker.committed(&c.persist.group, &topic).unwrap();
            async move { (end > 0 && committed == end).then_some(()) }
        },
    )
    .await;
    let persist_exit = terminate(&mut persist);
    let logs = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(ingest_exit.success(), "ingest:\n{}", logs(&ingest_log));
    assert!(persist_exit.success(), "persist:\n{}", logs(&persist_log));
    let spans = receiver.spans();
    assert!(!spans.is_empty(), "no spans exported at shutdown");

    // Find a trace that crosses both processes: frame → publish, and
    // frame → persist batch → store write, cache update, commit.
    let by_id: HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let batch = spans
        .iter()
        .filter(|s| s.name == "persist.batch" && s.service.contains("streamforge-persist"))
        .find(|b| {
            by_id
                .get(b.parent.as_str())
                .is_some_and(|p| p.name == "ingest.frame")
        })
        .unwrap_or_else(|| {
            panic!(
                "no persist.batch span is a child of an ingest.frame span; got {:#?}",
                spans.iter().take(40).collect::<Vec<_>>()
            )
        });
    let frame = by_id[batch.parent.as_str()];
    assert!(frame.service.contains("streamforge-ingest"), "{frame:?}");
    assert_eq!(frame.trace_id, batch.trace_id, "one trace across processes");
    assert!(
        frame.parent.is_empty(),
        "the provider frame is the trace's root"
    );
    let children = |parent: &ReceivedSpan| -> Vec<&str> {
        spans
            .iter()
            .filter(|s| s.parent == parent.span_id)
            .map(|s| {
                assert_eq!(s.trace_id, parent.trace_id);
                s.name.as_str()
            })
            .collect()
    };
    let frame_children = children(frame);
    assert!(
        frame_children.contains(&"persist.batch"),
        "{frame_children:?}"
    );
    // Frames that queued up share one publish: a child of the first, with
    // links to the others.
    let published = spans.iter().any(|s| {
        s.name == "bus.publish"
            && s.service.contains("streamforge-ingest")
            && ((s.parent == frame.span_id && s.trace_id == frame.trace_id)
                || s.links.contains(&frame.span_id))
    });
    assert!(
        published,
        "no bus.publish span is a child of, or links to, the frame"
    );
    let batch_children = children(batch);
    for want in ["store.write", "cache.update", "bus.commit"] {
        assert!(
            batch_children.contains(&want),
            "persist.batch children {batch_children:?} lack {want}"
        );
    }

    // The persist log line about the poison message carries its span's ids.
    let line = logs(&persist_log)
        .lines()
        .find(|l| l.contains("dead-letter topic"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap();
    let (trace_id, span_id) = (
        line["trace_id"]
            .as_str()
            .expect("trace_id on the line")
            .to_string(),
        line["span_id"]
            .as_str()
            .expect("span_id on the line")
            .to_string(),
    );
    assert_eq!(trace_id.len(), 32, "{line}");
    let logged = spans
        .iter()
        .find(|s| s.span_id == span_id)
        .unwrap_or_else(|| panic!("the logged span {span_id} was not exported: {line}"));
    assert_eq!(logged.trace_id, trace_id);
    assert_eq!(logged.name, "persist.batch");
}
