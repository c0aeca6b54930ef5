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
    // Secure by default: every published port on loopback only, every
    // password from deploy/.env with no default, Redis behind a password.
    for line in compose.lines().map(str::trim) {
        if let Some(port) = line.strip_prefix("- \"").filter(|p| {
            p.trim_end_matches('"')
                .split(':')
                .all(|part| part.chars().all(|c| c.is_ascii_digit() || c == '.'))
        }) {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{line}: published on every interface"
            );
        }
    }
    for secret in [
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ] {
        assert!(
            compose.contains(&format!("${{{secret}:?"))
                && !compose.contains(&format!("${{{secret}:-")),
            "{secret} must come from deploy/.env without a default"
        );
    }
    assert!(
        compose.contains("--requirepass"),
        "Redis requires a password"
    );
    assert!(compose.contains("condition: service_healthy"));
    assert!(compose.contains("condition: service_completed_successfully"));
    assert!(
        compose.contains("KAFKA_PROCESS_ROLES: broker,controller"),
        "KRaft"
    );
    let env = read(&deploy().join(".env.example"));
    assert!(env.contains("FINNHUB_TOKEN="));
    for secret in [
        "POSTGRES_PASSWORD=",
        "POSTGRES_WRITER_PASSWORD=",
        "POSTGRES_READER_PASSWORD=",
        "REDIS_PASSWORD=",
        "GRAFANA_ADMIN_PASSWORD=",
    ] {
        assert!(env.contains(secret), ".env.example documents {secret}");
    }
    // The compose stack runs the Kafka version the tests run.
    let pom = read(&deploy().join("../scripts/kafka/pom.xml"));
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|r| r.split("</kafka.version>").next())
        .expect("scripts/kafka/pom.xml pins kafka.version");
    assert!(
        compose.contains(&format!("image: apache/kafka:{version}")),
        "deploy/docker-compose.yml runs apache/kafka:{version}, as the tests"
    );
    let testkit = read(&deploy().join("../crates/testkit/src/kafka.rs"));
    assert!(
        testkit.contains(&format!("KAFKA_VERSION: &str = \"{version}\"")),
        "testkit's KAFKA_VERSION is {version}"
    );
}

/// Resolves a path inside a container to the host file mounted there.
fn host_path(mounts: &[(PathBuf, String)], container: &str) -> Option<PathBuf> {
    mounts.iter().find_map(|(host, target)| {
        let rest = container
            .strip_prefix(target.as_str())?
            .trim_start_matches('/');
        Some(if rest.is_empty() {
            host.clone()
        } else {
            host.join(rest)
        })
    })
}

fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
}

#[test]
fn the_compose_file_parses_and_references_only_files_that_exist() {
    let compose = yaml(&deploy().join("docker-compose.yml"));
    let services = compose["services"].as_mapping().expect("services");
    let named_volumes = compose["volumes"].as_mapping().cloned().unwrap_or_default();
    let mut checked = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        // `<<: *anchor` merges are resolved by Compose; read them here too.
        let merged = |key: &str| {
            service
                .get(key)
                .cloned()
                .or_else(|| service.get("<<").and_then(|base| base.get(key)).cloned())
        };
        assert!(
            merged("image").is_some() || merged("build").is_some(),
            "{name}: neither image nor build"
        );
        if let Some(build) = merged("build") {
            let context = deploy().join(build["context"].as_str().unwrap_or("."));
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
            assert!(
                dockerfile.is_file(),
                "{name}: {} is missing",
                dockerfile.display()
            );
        }
        let mut mounts = Vec::new();
        for v in merged("volumes")
            .and_then(|v| v.as_sequence().cloned())
            .unwrap_or_default()
        {
            let spec = v.as_str().expect("short volume syntax");
            let mut parts = spec.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().expect(spec));
            if source.starts_with('.') || source.starts_with('/') {
                let host = deploy().join(source);
                assert!(
                    host.exists(),
                    "{name}: mounts {} which does not exist",
                    host.display()
                );
                mounts.push((host, target.to_string()));
                checked += 1;
            } else {
                assert!(
                    named_volumes.contains_key(source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
        // Files the service's command reads must be among its mounts.
        for arg in merged("command")
            .and_then(|c| c.as_sequence().cloned())
            .unwrap_or_default()
        {
            let arg = arg.as_str().unwrap_or_default();
            if let Some((_, path)) = arg.split_once("=/") {
                let path = format!("/{path}");
                if let Some(host) = host_path(&mounts, &path) {
                    assert!(host.is_file(), "{name}: {arg} is not a mounted file");
                    checked += 1;
                }
            }
        }
        for dep in merged("depends_on")
            .and_then(|d| d.as_mapping().cloned())
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let dep = dep.as_str().unwrap();
            assert!(
                services.contains_key(dep),
                "{name} depends on unknown service {dep}"
            );
        }
    }
    assert!(checked >= 5, "only {checked} file references checked");

    // Prometheus: its rule files are mounted, and parse.
    let prometheus = deploy().join("prometheus");
    let config = yaml(&prometheus.join("prometheus.yml"));
    let mounts = vec![(prometheus.clone(), "/etc/prometheus".to_string())];
    for rule_file in config["rule_files"].as_sequence().unwrap() {
        let host = host_path(&mounts, rule_file.as_str().unwrap()).unwrap();
        let rules = yaml(&host);
        assert!(!rules["groups"][0]["rules"]
            .as_sequence()
            .unwrap()
            .is_empty());
    }
    // Grafana: provisioning parses and points at the mounted dashboards.
    let provisioning = deploy().join("grafana/provisioning");
    let providers = yaml(&provisioning.join("dashboards/dashboards.yml"));
    assert_eq!(
        providers["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
    let datasources = yaml(&provisioning.join("datasources/datasources.yml"));
    let kinds: Vec<&str> = datasources["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|d| d["type"].as_str())
        .collect();
    for kind in ["prometheus", "jaeger", "postgres"] {
        assert!(
            kinds.iter().any(|k| k.contains(kind)),
            "datasource {kind} in {kinds:?}"
        );
    }
    // Traces: StreamForge exports OTLP/HTTP to the collector's HTTP receiver.
    let collector = yaml(&deploy().join("otel/collector.yaml"));
    let http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .unwrap();
    let env = &compose["x-streamforge"]["environment"];
    let endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str().unwrap();
    let port = http.rsplit(':').next().unwrap();
    assert!(
        endpoint.ends_with(&format!(":{port}")),
        "OTLP endpoint {endpoint} is not the collector's HTTP receiver ({http})"
    );
    assert_eq!(
        env["OTEL_EXPORTER_OTLP_PROTOCOL"].as_str(),
        Some("http/protobuf")
    );
}
