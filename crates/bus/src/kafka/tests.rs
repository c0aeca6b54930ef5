//! The Kafka bus against librdkafka's in-process mock cluster: publish,
//! consume, commit, and redelivery of what was not committed. End-to-end
//! tests against a real broker live in the streamforge crate.

use std::time::Duration;

use bytes::Bytes;
use rdkafka::mocking::MockCluster;

use super::*;
use crate::message::last_offsets;

fn msg(i: usize) -> Message {
    let mut headers = Headers::default();
    headers.insert("schema-version", Bytes::from_static(b"1"));
    Message {
        key: Bytes::from_static(b"AAPL"),
        payload: Bytes::from(i.to_string()),
        headers,
    }
}

async fn recv_n(c: &mut Box<dyn Consumer>, n: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), c.recv(n - out.len())).await {
            Ok(Ok(Polled::Messages(m))) => out.extend(m),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => panic!("only {} of {n} messages arrived", out.len()),
        }
    }
    out
}

fn group(name: &str) -> ConsumerOptions {
    ConsumerOptions {
        group: name.into(),
        start: StartFrom::Earliest,
        durable: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_consumes_commits_and_redelivers_the_rest() {
    let cluster = MockCluster::new(1).unwrap();
    // The mock cluster does not create topics through the admin API.
    cluster.create_topic("t", 1, 1).unwrap();
    let url = format!("kafka://{}", cluster.bootstrap_servers());
    let bus = KafkaBus::connect(
        &url,
        KafkaOptions {
            partitions: 1,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    bus.publish("t", (0..10).map(msg).collect()).await.unwrap();

    let mut c = bus.consumer("t", group("g")).await.unwrap();
    let got = recv_n(&mut c, 10).await;
    let payloads: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(payloads, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(got[0].message.headers.get_str("schema-version"), Some("1"));
    assert_eq!(&got[0].message.key[..], b"AAPL");
    // Commit the first four only, then leave the group.
    c.committer()
        .commit(&last_offsets(&got[..4]))
        .await
        .unwrap();
    drop(c);

    let mut again = bus.consumer("t", group("g")).await.unwrap();
    let rest = recv_n(&mut again, 6).await;
    assert_eq!(
        rest[0].offset, got[4].offset,
        "uncommitted messages come again"
    );
    assert_eq!(
        String::from_utf8(rest[0].message.payload.to_vec()).unwrap(),
        "4"
    );
    bus.flush(Duration::from_secs(5)).await.unwrap();
}

#[test]
fn bad_urls_are_clear_errors() {
    for url in ["kafka://", "kafka://nohostport", "kfk://x:1"] {
        let err = KafkaBus::connect(url, KafkaOptions::default(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(url), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_consumer_keeps_its_place_past_the_poll_interval() {
    let metrics = streamforge_telemetry::Metrics::new();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("idle", 2, 1).unwrap();
    let url = format!("kafka://{}", cluster.bootstrap_servers());
    let bus = KafkaBus::connect(
        &url,
        KafkaOptions {
            partitions: 2,
            // The smallest session the mock cluster accepts.
            session_timeout: Duration::from_secs(6),
            max_poll_interval: Duration::from_secs(6),
            lag_report_every: Duration::from_secs(2),
            ..Default::default()
        },
        Some(metrics.clone()),
    )
    .unwrap();
    bus.publish("idle", (0..10).map(msg).collect())
        .await
        .unwrap();
    let mut c = bus.consumer("idle", group("idler")).await.unwrap();
    let first = recv_n(&mut c, 10).await;
    // Nothing committed. Messages arrive while the consumer idles for longer
    // than max.poll.interval: it must neither leave its group (which would
    // redeliver the first ten) nor take what arrives meanwhile out of order.
    bus.publish("idle", (10..30).map(msg).collect())
        .await
        .unwrap();
    let idled = tokio::time::timeout(Duration::from_secs(9), c.idle()).await;
    assert!(idled.is_err(), "idle returns only on error: {idled:?}");
    let rest = recv_n(&mut c, 20).await;
    let mut payloads: Vec<u32> = first
        .iter()
        .chain(&rest)
        .map(|d| String::from_utf8_lossy(&d.message.payload).parse().unwrap())
        .collect();
    payloads.sort();
    assert_eq!(payloads, (0..30).collect::<Vec<_>>(), "each message once");
    // Nothing more: no redelivery after the pause.
    let more = tokio::time::timeout(Duration::from_secs(3), c.recv(10)).await;
    assert!(more.is_err(), "unexpected redelivery: {more:?}");
    // The durable consumer reported its lag per partition meanwhile.
    let text = metrics.render();
    assert!(
        text.contains("streamforge_bus_consumer_lag{partition=\"0\",topic=\"idle\"}"),
        "{text}"
    );
}

#[test]
fn secret_properties_are_redacted_and_reserved_ones_refused() {
    let mut o = KafkaOptions::default();
    o.properties.insert("sasl.password", "hunter2");
    o.properties.insert("ssl.ca.location", "/etc/ca.pem");
    let shown = format!("{o:?}");
    assert!(
        shown.contains("***") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(shown.contains("/etc/ca.pem"), "{shown}");
    assert_eq!(
        redact_properties("refused hunter2 for x", &o.properties),
        "refused *** for x"
    );
    o.check_properties().unwrap();
    o.properties.insert("acks", "1");
    let err = o.check_properties().unwrap_err().to_string();
    assert!(err.contains("acks"), "{err}");
    let err = KafkaBus::connect("kafka://127.0.0.1:1", o, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("acks"), "connect refuses it too: {err}");
}

#[test]
fn an_unknown_librdkafka_setting_is_an_error_naming_it() {
    let mut o = KafkaOptions::default();
    o.properties.insert("no.such.setting", "1");
    let err = KafkaBus::connect("kafka://127.0.0.1:1", o, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no.such.setting"), "{err}");
}
