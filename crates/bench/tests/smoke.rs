//! `streamforge-bench` runs its scenarios end to end and reports figures
//! that come from the pipeline (not a timing test: only that the numbers
//! exist and add up).

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamforge-bench"))
        .current_dir(dir.path())
        .args(args)
        .output()
        .expect("running streamforge-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "streamforge-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The cells of the table row that starts with `| name`.
fn row(table: &str, name: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.trim_start_matches('|').trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no {name} row in\n{table}"));
    line.split('|')
        .map(|c| c.trim().replace(',', ""))
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn the_throughput_scenario_measures_ticks_the_pipeline_stored() {
    let out = bench(&[
        "--scenario",
        "throughput",
        "--duration",
        "2s",
        "--warmup",
        "1s",
    ]);
    let cells = row(&out, "throughput");
    let per_second: f64 = cells[1].parse().unwrap();
    let stored: u64 = cells[2].parse().unwrap();
    let p99_ms: f64 = cells[6].parse().unwrap();
    assert!(stored > 0 && per_second > 0.0, "{out}");
    assert!(
        p99_ms > 0.0,
        "latencies come from the on_stored hook: {out}"
    );
}

#[test]
fn the_sink_scenario_writes_new_rows_then_only_duplicates() {
    let out = bench(&[
        "--scenario",
        "sink",
        "--sink-ticks",
        "20000",
        "--batch-size",
        "1000",
    ]);
    let new_rows = row(&out, "new rows");
    assert_eq!(new_rows[2], "20000", "{out}");
    let again = row(&out, "redelivery");
    assert_eq!(
        again[2], "2000",
        "the first tenth again, all duplicates: {out}"
    );
}
