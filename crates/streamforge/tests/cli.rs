//! The `streamforge` binary as a user runs it.

use std::process::Command;
use std::time::Duration;

use streamforge_testkit::process::Spawned;
use streamforge_testkit::{stored_ticks, wait_for};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_streamforge"));
    // Keep the developer's environment out of the test.
    for (k, _) in std::env::vars() {
        if k.starts_with("STREAMFORGE_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn help_shows_flags_with_their_environment_variables() {
    let out = bin().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--http-addr",
        "STREAMFORGE_HTTP_ADDR",
        "--store",
        "STREAMFORGE_STORE",
        "--rate",
        "--symbols",
        "--data-dir",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[test]
fn passwords_in_urls_never_show_in_config_print_or_config_check() {
    const CANARY: &str = "canary-7f3a9";
    let dir = tempfile::tempdir().unwrap();
    let store = format!("postgres://app:{CANARY}@db/x?sslmode=require&password={CANARY}");
    let cache = format!("rediss://default:{CANARY}@cache:6380/0");
    let out = bin()
        .current_dir(dir.path())
        .args(["config", "print", "--store", &store, "--cache", &cache])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(CANARY),
        "a password in config print:\n{text}"
    );
    assert!(
        text.contains("postgres://app:***@db/x?sslmode=require&password=***"),
        "the rest of the URL is shown:\n{text}"
    );
    // An unknown scheme is quoted in the error, without its password.
    for (flag, url) in [
        ("--store", format!("mysql://root:{CANARY}@db/x")),
        ("--cache", format!("memcached://u:{CANARY}@c")),
        ("--bus", format!("amqp://u:{CANARY}@mq/?token={CANARY}")),
    ] {
        let out = bin()
            .current_dir(dir.path())
            .args(["config", "check", flag, &url])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("unknown scheme"), "{flag}: {all}");
        assert!(
            !all.contains(CANARY),
            "{flag}: a password in the error: {all}"
        );
    }
}

#[test]
fn the_finnhub_token_can_come_from_a_file_and_never_over_plain_ws_to_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "canary-token-91\n").unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["config", "print", "--finnhub-token-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("token = \"***\""),
        "the token was read:\n{text}"
    );
    assert!(!text.contains("canary-token-91"), "{text}");

    std::fs::write(&file, "  \n").unwrap();
    let out = bin()
        .current_dir(dir.path())
        .env("FINNHUB_TOKEN_FILE", &file)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is empty") && err.contains("token"), "{err}");

    let out = bin()
        .current_dir(dir.path())
        .env("FINNHUB_TOKEN", "canary-token-91")
        .args(["config", "check", "--finnhub-url", "ws://ws.finnhub.io"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("finnhub.url") && err.contains("wss://"),
        "{err}"
    );
    assert!(!err.contains("canary-token-91"), "{err}");
}

#[test]
fn config_check_names_the_bad_field_and_print_shows_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["config", "check", "--store", "mysql://db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store:") && err.contains("mysql") && err.contains("sqlite://"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("streamforge.toml"),
        "[synthetic]\nrate = 42.0\n[persist]\nbatch_timeout = \"250ms\"\n",
    )
    .unwrap();
    let out = bin()
        .current_dir(dir.path())
        .env("STREAMFORGE_RATE", "77")
        .args(["config", "print"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rate = 77.0"), "env beats the file:\n{text}");
    assert!(
        text.contains("batch_timeout = \"250ms\""),
        "file beats defaults:\n{text}"
    );

    std::fs::write(
        dir.path().join("streamforge.toml"),
        "[persist]\nbatch_sise = 1\n",
    )
    .unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("batch_sise") && err.contains("streamforge.toml"),
        "{err}"
    );
}

#[cfg(unix)]
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_drain_and_exit_zero_and_history_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut total_before = 0;
    let mut previous = std::collections::BTreeSet::new();
    for (round, sig) in ["-INT", "-TERM"].into_iter().enumerate() {
        let mut run = RunningBinary::start(dir.path(), &["--rate", "2000"]).await;
        let base = run.base.clone();
        let total = wait_for("ticks to be stored", Duration::from_secs(20), || {
            let base = base.clone();
            async move {
                let total = stored_ticks(&base).await?;
                (total > total_before + 500).then_some(total)
            }
        })
        .await;
        signal(run.pid(), sig);
        let (status, _) = run.process.exit_within(Duration::from_secs(60)).await;
        assert!(
            status.success(),
            "round {round}: exit {status:?}\n{}",
            run.process.output()
        );
        // Every row stored before this run is still there, unchanged.
        let rows = stored_rows(&dir.path().join("data/streamforge.db"));
        assert!(
            rows.len() as u64 >= total,
            "round {round}: {} rows",
            rows.len()
        );
        let lost: Vec<_> = previous.difference(&rows).take(5).collect();
        assert!(
            lost.is_empty(),
            "round {round}: rows of the earlier run are gone: {lost:?}"
        );
        previous = rows;
        total_before = total;
    }
    assert!(total_before > 1_000);
}

/// Every stored tick of the SQLite store at `db`, with all its values.
fn stored_rows(db: &std::path::Path) -> std::collections::BTreeSet<(String, i64, i64, u64, u64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT s.symbol, t.ts, t.tick_id, t.price, t.size FROM ticks t \
             JOIN symbols s ON s.id = t.symbol_id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, f64>(3)?.to_bits(),
            r.get::<_, f64>(4)?.to_bits(),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// `streamforge run` started in `dir` on a port of its own choosing (the
/// address it prints when it is up), its output collected.
struct RunningBinary {
    process: Spawned,
    base: String,
}

impl RunningBinary {
    async fn start(dir: &std::path::Path, args: &[&str]) -> RunningBinary {
        let mut process = Spawned::start(
            bin()
                .current_dir(dir)
                .args(["run", "--http-addr", "127.0.0.1:0", "--log-level", "info"])
                .args(args),
        );
        let base = process.http_base(Duration::from_secs(30)).await;
        RunningBinary { process, base }
    }

    fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// How the store fails under a running pipeline.
#[derive(Clone, Copy)]
enum StoreFault {
    /// Stopped: every write fails at once (connection refused).
    Stopped,
    /// Frozen (SIGSTOP): a write in flight hangs.
    Frozen,
}

/// `run` on a PostgreSQL of its own, some ticks stored, then PostgreSQL
/// failing as `fault` says, until `/readyz` reports the store down.
async fn run_with_the_store_failing(
    dir: &std::path::Path,
    shutdown_timeout: &str,
    fault: StoreFault,
) -> (RunningBinary, streamforge_testkit::engines::Postgres) {
    let mut pg = streamforge_testkit::engines::Postgres::start().unwrap();
    let db = pg.create_database().unwrap();
    std::fs::write(
        dir.join("streamforge.toml"),
        format!(
            "store = \"{db}\"\n[shutdown]\ntimeout = \"{shutdown_timeout}\"\n\
             [persist]\nretry_backoff = \"100ms\"\n"
        ),
    )
    .unwrap();
    let run = RunningBinary::start(dir, &["--rate", "500"]).await;
    let base = run.base.clone();
    wait_for(
        "ticks stored in PostgreSQL",
        Duration::from_secs(30),
        || {
            let base = base.clone();
            async move { stored_ticks(&base).await.filter(|n| *n > 100) }
        },
    )
    .await;
    match fault {
        StoreFault::Stopped => pg.stop(),
        StoreFault::Frozen => pg.freeze(),
    }
    let url = format!("{}/readyz", run.base);
    wait_for(
        "/readyz to report the store down",
        Duration::from_secs(30),
        || {
            let url = url.clone();
            async move {
                let (status, body) = streamforge_testkit::get_json(&url).await;
                (status == 503 && body["checks"]["store"]["ok"] == false).then_some(())
            }
        },
    )
    .await;
    (run, pg)
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_store_writes_are_retried_stops_and_says_what_was_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, _pg) = run_with_the_store_failing(dir.path(), "1m", StoreFault::Stopped).await;
    signal(run.pid(), "-TERM");
    let (status, took) = run.process.exit_within(Duration::from_secs(30)).await;
    let log = run.process.output();
    assert_eq!(status.code(), Some(1), "ticks were left unstored:\n{log}");
    assert!(
        took < Duration::from_secs(30),
        "the retry loop ends at the signal, not at shutdown.timeout ({took:?})"
    );
    assert!(
        log.contains("not written to the store"),
        "the error says what was not stored:\n{log}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_longer_than_shutdown_timeout_gives_up_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, pg) = run_with_the_store_failing(dir.path(), "2s", StoreFault::Frozen).await;
    signal(run.pid(), "-TERM");
    let (status, took) = run.process.exit_within(Duration::from_secs(30)).await;
    pg.thaw();
    let log = run.process.output();
    assert_eq!(
        status.code(),
        Some(1),
        "a drain that did not finish fails:\n{log}"
    );
    assert!(
        took >= Duration::from_millis(1_500),
        "it waited for shutdown.timeout before giving up ({took:?}):\n{log}"
    );
    assert!(
        log.contains("persist did not finish within shutdown.timeout (2s)"),
        "the error names the setting and what was not stored:\n{log}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_with_130() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, pg) = run_with_the_store_failing(dir.path(), "5m", StoreFault::Frozen).await;
    signal(run.pid(), "-TERM");
    run.process
        .wait_output("shutdown requested: draining", Duration::from_secs(10))
        .await;
    signal(run.pid(), "-INT");
    let (status, _) = run.process.exit_within(Duration::from_secs(10)).await;
    pg.thaw();
    let log = run.process.output();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(
        log.contains("second signal: exiting without draining"),
        "{log}"
    );
}

#[test]
fn configuration_layers_apply_in_order_flag_env_dotenv_file_default() {
    let dir = tempfile::tempdir().unwrap();
    let batch_size = |env: Option<&str>, flag: Option<&str>| -> String {
        let mut c = bin();
        c.current_dir(dir.path()).args(["config", "print"]);
        if let Some(v) = flag {
            c.args(["--batch-size", v]);
        }
        if let Some(v) = env {
            c.env("STREAMFORGE_PERSIST_BATCH_SIZE", v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let section = text
            .split("[persist]")
            .nth(1)
            .unwrap_or_else(|| panic!("no [persist] in\n{text}"));
        section
            .lines()
            .find_map(|l| l.strip_prefix("batch_size = "))
            .unwrap_or_else(|| panic!("no persist.batch_size in\n{text}"))
            .to_string()
    };
    assert_eq!(batch_size(None, None), "5000", "the default");
    std::fs::write(
        dir.path().join("streamforge.toml"),
        "[persist]\nbatch_size = 111\n",
    )
    .unwrap();
    assert_eq!(batch_size(None, None), "111", "the file over the default");
    std::fs::write(
        dir.path().join(".env"),
        "STREAMFORGE_PERSIST_BATCH_SIZE=222\n",
    )
    .unwrap();
    assert_eq!(batch_size(None, None), "222", ".env over the file");
    assert_eq!(
        batch_size(Some("333"), None),
        "333",
        "the environment over .env"
    );
    assert_eq!(
        batch_size(Some("333"), Some("444")),
        "444",
        "a flag over the environment"
    );
    assert_eq!(batch_size(None, Some("444")), "444", "a flag over .env");
}

/// `streamforge migrate up | down | status` on PostgreSQL in `mode`, step by
/// step to an empty schema and back, as an operator runs it.
fn migrate_through_the_cli(mode: &str) {
    let pg = streamforge_testkit::engines::shared_postgres();
    let db = pg.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("streamforge.toml"),
        format!("store = \"{db}\"\n[postgres]\nmode = \"{mode}\"\n"),
    )
    .unwrap();
    let migrate = |action: &str| -> String {
        let out = bin()
            .current_dir(dir.path())
            .args(["--log-level", "warn", "migrate", action])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let status = migrate("status");
    assert!(status.contains("no schema yet"), "{status}");
    let latest: u32 = status
        .rsplit("latest version ")
        .next()
        .and_then(|v| v.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no latest version in {status:?}"));
    let up = migrate("up");
    assert!(
        up.contains(&format!("mode {mode}, schema version {latest} of {latest}"))
            && up.contains("up to date"),
        "{up}"
    );
    let tables = || {
        streamforge_testkit::engines::psql(
            &db,
            "SELECT count(*) FROM pg_class WHERE relname IN ('ticks', 'gaps', 'candles_1s')",
        )
    };
    assert_eq!(tables(), "3");
    for version in (1..latest).rev() {
        let down = migrate("down");
        assert!(
            down.contains(&format!("schema version {version} of {latest}")),
            "after down, version {version}: {down}"
        );
        assert_eq!(migrate("status"), down, "status says what down left");
    }
    let last = migrate("down");
    assert!(last.contains("no schema yet"), "{last}");
    assert_eq!(tables(), "0", "the schema is gone");
    let again = migrate("up");
    assert_eq!(again, up, "up again gives the same schema");
    assert_eq!(tables(), "3");
}

#[test]
fn migrate_up_down_and_status_through_the_cli_on_plain_postgres() {
    migrate_through_the_cli("postgres");
}

#[test]
fn migrate_up_down_and_status_through_the_cli_on_timescaledb() {
    streamforge_testkit::engines::shared_postgres().require_timescaledb();
    migrate_through_the_cli("timescaledb");
}

/// A live-stream client that reconnects to a restarted server with its
/// `Last-Event-ID` is told with `reset` that it missed events, then gets
/// live events of the new server: never a replay taken for the old one's.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resume_across_a_real_restart_is_a_reset_never_a_wrong_replay() {
    use streamforge_testkit::SseClient;

    let dir = tempfile::tempdir().unwrap();
    let mut first = RunningBinary::start(dir.path(), &["--rate", "500"]).await;
    let url = |base: &str| format!("{base}/api/v1/stream?symbols=AAPL");
    let mut sse = SseClient::connect(&url(&first.base)).await;
    let mut last = None;
    for _ in 0..20 {
        let ev = sse.next(Duration::from_secs(10)).await.expect("an event");
        assert_eq!(ev.event, "tick");
        last = ev.id;
    }
    let last = last.expect("tick events carry ids");
    // Within the resume window of the same server, the stream goes on
    // right after the last event seen.
    let mut same = SseClient::resume(&url(&first.base), Some(&last)).await;
    let next = same.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(next.event, "tick", "{next:?}");
    let (epoch, seq_index) = last.split_once('-').unwrap();
    assert!(next
        .id
        .as_deref()
        .unwrap()
        .starts_with(&format!("{epoch}-")));
    assert_ne!(
        next.id.as_deref(),
        Some(last.as_str()),
        "not the last one again"
    );
    drop((sse, same));

    signal(first.pid(), "-TERM");
    let (status, _) = first.process.exit_within(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", first.process.output());
    let second = RunningBinary::start(dir.path(), &["--rate", "500"]).await;
    let mut again = SseClient::resume(&url(&second.base), Some(&last)).await;
    let reset = again.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert!(
        reset.data.contains(&format!("{epoch}-{seq_index}")) && reset.data.contains("missed"),
        "the reset names the id and says events were missed: {}",
        reset.data
    );
    let live = again.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(live.event, "tick", "{live:?}");
    let new_epoch = live
        .id
        .as_deref()
        .unwrap()
        .split_once('-')
        .unwrap()
        .0
        .to_string();
    assert_ne!(
        new_epoch, epoch,
        "the new server's events carry its own epoch"
    );
}
