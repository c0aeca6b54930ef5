//! The web dashboard in a real browser: the all-in-one pipeline runs in
//! process on a synthetic feed, and `web/tests/dashboard.mjs` drives the
//! system's headless Chromium through it with Playwright (both installed
//! by `make deps`). The screenshot lands in this test binary's output
//! directory (`<target>/tmp/dashboard/dashboard.png`).

use std::path::Path;
use std::time::Duration;

use streamforge::config::Config;
use streamforge::pipeline::{self, Role};
use streamforge_testkit::wait_for;
use tokio_util::sync::CancellationToken;

fn web_tests_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_candles_follows_live_ticks_and_switches_from_the_keyboard() {
    let tests = web_tests_dir();
    assert!(
        tests.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run `make deps`",
        tests.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run `make deps` (Debian package chromium) or set CHROMIUM"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut c = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    c.http.addr = "127.0.0.1:0".parse().unwrap();
    c.synthetic.symbols = vec!["AAPL".into(), "MSFT".into(), "BINANCE:BTCUSDT".into()];
    c.synthetic.rate = 300.0;
    c.synthetic.seed = Some(7);
    c.log.level = "warn".into();
    // With keys on: the dashboard must ask for one and then work as before.
    let key = "sf_dashboard-test-key";
    c.api.keys = vec![streamforge_api::auth::ApiKey {
        id: "dashboard".into(),
        sha256: streamforge_api::auth::digest_hex(key),
        scopes: vec![
            streamforge_api::auth::Scope::Read,
            streamforge_api::auth::Scope::Stream,
        ],
        rate_per_second: None,
        burst: None,
    }];
    let token = CancellationToken::new();
    let running = pipeline::start(&c, Role::Run, token.clone()).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    wait_for("three symbols stored", Duration::from_secs(20), || {
        let url = format!("{base}/api/v1/symbols");
        async move {
            let res = reqwest::Client::new()
                .get(&url)
                .bearer_auth(key)
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = res.json().await.ok()?;
            (v["symbols"].as_array().map_or(0, Vec::len) == 3).then_some(())
        }
    })
    .await;

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let run = tokio::process::Command::new("node")
        .arg(tests.join("dashboard.mjs"))
        .arg(&base)
        .arg(&out)
        .env("CHROMIUM", &chromium)
        .env("STREAMFORGE_KEY", key)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test finished within 3 minutes")
        .expect("running node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    for step in [
        "ok: page loaded",
        "ok: asked once for the API key",
        "ok: chart drew",
        "ok: live update",
        "ok: ArrowDown switched",
        "ok: key 3 switched to 5m",
        "ok: clicks switched back",
        "ok: pipeline panel",
        "ok: explorer",
    ] {
        assert!(stdout.contains(step), "step {step:?} missing:\n{stdout}");
    }
    let shot = out.join("dashboard.png");
    let size = std::fs::metadata(&shot)
        .unwrap_or_else(|e| panic!("screenshot {}: {e}", shot.display()))
        .len();
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );

    token.cancel();
    running.wait().await.expect("clean shutdown");
}
