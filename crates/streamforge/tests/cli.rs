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
        assert!(dir.path().join("data/streamforge.db").exists());
        total_before = total;
    }
}
