//! The deployment stack under `deploy/` must only query metrics the code
//! registers (alert rules and dashboards silently show nothing otherwise),
//! its dashboards must be valid JSON, and the compose file must keep the
//! documented services and ports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use streamforge_telemetry::Metrics;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `streamforge_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("streamforge_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn alerts_and_dashboards_query_only_registered_metrics() {
    let registered: BTreeMap<String, String> = Metrics::new()
        .describe()
        .into_iter()
        .map(|(name, kind, _)| (name, kind))
        .collect();
    let known = |name: &str| {
        registered.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                name.strip_suffix(s)
                    .and_then(|base| registered.get(base))
                    .is_some_and(|kind| kind == "histogram")
            })
    };
    let mut files = vec![deploy().join("prometheus/alerts.yml")];
    let dashboards = deploy().join("grafana/dashboards");
    for e in std::fs::read_dir(&dashboards).unwrap() {
        let path = e.unwrap().path();
        let text = read(&path);
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        assert!(json["uid"].is_string() && json["title"].is_string());
        assert!(!json["panels"].as_array().unwrap().is_empty());
        files.push(path);
    }
    assert!(files.len() >= 4, "alerts and three dashboards");
    let mut unknown = Vec::new();
    let mut used = 0;
    for path in &files {
        for name in metric_names(&read(path)) {
            used += 1;
            if !known(&name) {
                unknown.push(format!("{}: {name}", path.display()));
            }
        }
    }
    assert!(used > 10);
    assert!(
        unknown.is_empty(),
        "unknown metrics:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_compose_file_keeps_its_services_ports_and_health_gates() {
    let compose = read(&deploy().join("docker-compose.yml"));
    for service in [
        "kafka:",
        "timescaledb:",
        "redis:",
        "prometheus:",
        "grafana:",
        "otel-collector:",
        "jaeger:",
        "migrate:",
        "ingest:",
        "persist:",
        "serve:",
    ] {
        assert!(
            compose.contains(&format!("\n  {service}")),
            "service {service}"
        );
    }
    for port in [
        "5432:5432",
        "29092:29092",
        "6379:6379",
        "9090:9090",
        "3000:3000",
        "16686:16686",
        "8080:8080",
    ] {
        assert!(compose.contains(port), "port {port}");
    }
    assert!(compose.contains("condition: service_healthy"));
    assert!(compose.contains("condition: service_completed_successfully"));
    assert!(
        compose.contains("KAFKA_PROCESS_ROLES: broker,controller"),
        "KRaft"
    );
    let env = read(&deploy().join(".env.example"));
    assert!(env.contains("FINNHUB_TOKEN="));
}
