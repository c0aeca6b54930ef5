//! `docs/metrics.md` must list exactly the metrics the code registers, with
//! their types. When this fails, the message prints the rows to paste.

use std::collections::BTreeMap;

use streamforge_telemetry::Metrics;

#[test]
fn docs_list_every_metric_with_its_type() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let doc = std::fs::read_to_string(path).expect("docs/metrics.md exists");
    // Rows look like: | `name` | type | labels | meaning |
    let documented: BTreeMap<String, String> = doc
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            name.starts_with("streamforge_")
                .then(|| (name.to_string(), cells.get(2).unwrap_or(&"").to_string()))
        })
        .collect();
    let actual: BTreeMap<String, (String, String)> = Metrics::new()
        .describe()
        .into_iter()
        .map(|(n, t, h)| (n, (t, h)))
        .collect();
    let mut missing = Vec::new();
    for (name, (kind, help)) in &actual {
        match documented.get(name) {
            Some(k) if k == kind => {}
            _ => missing.push(format!("| `{name}` | {kind} | ... | {help} |")),
        }
    }
    let stale: Vec<_> = documented
        .keys()
        .filter(|n| !actual.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/metrics.md is out of date.\nmissing or wrong type:\n{}\nno longer exist: {stale:?}",
        missing.join("\n")
    );
}
