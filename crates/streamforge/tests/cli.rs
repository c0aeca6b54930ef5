//! The `streamforge` binary as a user runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

use streamforge_testkit::{free_port, stored_ticks, wait_for};

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
        let port = free_port();
        let child = bin()
            .current_dir(dir.path())
            .args([
                "run",
                "--http-addr",
                &format!("127.0.0.1:{port}"),
                "--rate",
                "2000",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let total = wait_for("ticks to be stored", Duration::from_secs(20), || {
            let base = base.clone();
            async move {
                // Not listening yet is not a failure: keep waiting.
                let total = stored_ticks(&base).await?;
                (total > total_before + 500).then_some(total)
            }
        })
        .await;
        signal(child.id(), sig);
        let status = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            status.status.success(),
            "round {round}: exit {:?}\n{}",
            status.status,
            String::from_utf8_lossy(&status.stderr)
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
