//! The API keeps its own contract: schemathesis (installed by `make deps`)
//! generates requests from the served OpenAPI document against the
//! all-in-one pipeline on a synthetic feed and checks every answer against
//! the document (status codes, content types, response schemas, schema-valid
//! requests accepted, schema-violating ones rejected, no 5xx).
//!
//! Two runs: every phase but `coverage` with every check, the one rule JSON
//! Schema cannot state (`from` not after `to`) filtered by
//! `scripts/schemathesis/streamforge_hooks.py`; then the `coverage` phase,
//! whose boundary values the hook does not filter, with every check but
//! `positive_data_acceptance` (a boundary `from` paired with a boundary `to`
//! may be reversed, which the server rightly answers 400). The live streams
//! are left out: an event stream or a WebSocket never ends; their own
//! tests cover them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use streamforge::config::Config;
use streamforge::pipeline::{self, Role};
use streamforge_testkit::{get_json, wait_for};
use tokio_util::sync::CancellationToken;

/// `st` from `make deps`'s virtual environment, or `$SCHEMATHESIS`.
fn schemathesis() -> PathBuf {
    if let Ok(path) = std::env::var("SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    Path::new(&home).join(".cache/streamforge/schemathesis/bin/st")
}

async fn st(base: &str, extra: &[&str]) -> (bool, String) {
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/schemathesis");
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    let mut cmd = tokio::process::Command::new(schemathesis());
    cmd.arg("run")
        .arg(format!("{base}/api/openapi.json"))
        .args(["--checks", "all"])
        .args(["--exclude-path", "/api/v1/stream"])
        .args(["--exclude-path", "/api/v1/ws"])
        .args(["--max-examples", "100", "--seed", "20261202"])
        .args(["--workers", "2", "--no-color"])
        .args(extra)
        .env("PYTHONPATH", &hooks)
        .env("SCHEMATHESIS_HOOKS", "streamforge_hooks")
        .env("SCHEMATHESIS_REPORT_DIR", &report)
        .kill_on_drop(true);
    let run = cmd.output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finished within 10 minutes")
        .unwrap_or_else(|e| {
            panic!(
                "running {} failed ({e}): run `make deps`, which installs schemathesis",
                schemathesis().display()
            )
        });
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_difference_between_the_document_and_the_server() {
    assert!(
        schemathesis().exists(),
        "no schemathesis at {}: run `make deps` (or set SCHEMATHESIS)",
        schemathesis().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.synthetic.symbols = vec!["AAPL".into(), "MSFT".into()];
    c.synthetic.rate = 200.0;
    c.synthetic.seed = Some(11);
    c.log.level = "warn".into();
    let token = CancellationToken::new();
    let running = pipeline::start(&c, Role::Run, token.clone()).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    wait_for("AAPL stored", Duration::from_secs(20), || {
        let url = format!("{base}/api/v1/quotes/AAPL/latest");
        async move { (get_json(&url).await.0 == 200).then_some(()) }
    })
    .await;

    let (ok, text) = st(&base, &["--phases", "examples,fuzzing,stateful"]).await;
    println!("{text}");
    assert!(
        ok,
        "schemathesis found differences (phases examples, fuzzing, stateful):\n{text}"
    );
    assert!(text.contains("passed"), "{text}");
    let (ok, text) = st(
        &base,
        &[
            "--phases",
            "coverage",
            "--exclude-checks",
            "positive_data_acceptance",
        ],
    )
    .await;
    println!("{text}");
    assert!(
        ok,
        "schemathesis found differences (phase coverage):\n{text}"
    );

    token.cancel();
    running.wait().await.expect("clean shutdown");
}
