//! The Kafka broker of the tests starts, keeps acknowledged messages across
//! a SIGKILL, authenticates its SASL listener, and runs Kafka's own tools.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Message;
use streamforge_testkit::kafka::{Kafka, SASL_PASSWORD, SASL_USER};

fn produce(bootstrap: &str, topic: &str, n: usize) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..n {
        let payload = i.to_string();
        p.send(BaseRecord::<str, str>::to(topic).payload(&payload).key("k"))
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn consume_all(bootstrap: &str, topic: &str, n: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("check-{topic}-{}", rand_suffix()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn kafka_keeps_acknowledged_messages_across_a_hard_kill() {
    let mut kafka = Kafka::start().unwrap();
    let _log = kafka.log_on_failure();
    produce(&kafka.bootstrap(), "survivors", 500);
    kafka.kill();
    assert!(
        std::net::TcpStream::connect(kafka.bootstrap()).is_err(),
        "the killed broker no longer listens"
    );
    let restarted = std::time::Instant::now();
    kafka.resume().unwrap();
    eprintln!("restarted in {:?}", restarted.elapsed());
    let got = consume_all(&kafka.bootstrap(), "survivors", 500);
    eprintln!("consumed after {:?}", restarted.elapsed());
    let expected: Vec<String> = (0..500).map(|i| i.to_string()).collect();
    assert_eq!(got, expected, "every acknowledged message, in order");
    assert!(
        kafka.log().contains("Kafka Server started"),
        "the log of both starts is kept"
    );
}

#[test]
fn the_sasl_listener_takes_the_right_scram_credentials_only() {
    let kafka = Kafka::start().unwrap();
    let _log = kafka.log_on_failure();
    let sasl = kafka.sasl_url().trim_start_matches("kafka://").to_string();
    let metadata = |password: &str| {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &sasl)
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", SASL_USER)
            .set("sasl.password", password)
            .create()
            .unwrap();
        c.fetch_metadata(None, Duration::from_secs(10))
            .map(|m| m.brokers().len())
    };
    assert_eq!(metadata(SASL_PASSWORD).unwrap(), 1);
    assert!(metadata("wrong").is_err(), "wrong password refused");
    assert!(
        kafka
            .log()
            .contains("invalid credentials with SASL mechanism SCRAM-SHA-512"),
        "the broker refused it for its credentials"
    );
}

#[test]
fn kafkas_own_producer_benchmark_runs_against_the_broker() {
    let kafka = Kafka::start().unwrap();
    let _log = kafka.log_on_failure();
    let out = kafka
        .tool("org.apache.kafka.tools.ProducerPerformance")
        .args([
            "--topic",
            "perf",
            "--num-records",
            "2000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={}", kafka.bootstrap()),
            "acks=all",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2000 records sent"), "{text}");
    assert_eq!(consume_all(&kafka.bootstrap(), "perf", 2000).len(), 2000);
}
