//! A throwaway Apache Kafka broker: the real broker (the jars `make deps`
//! resolves from Maven Central) in KRaft combined mode (broker and
//! controller in one process, a single voter), on free loopback ports, with
//! its log directory in a temp dir.
//!
//! Besides the plain listener it has a `SASL_PLAINTEXT` one that takes
//! SCRAM-SHA-512 with the user [`SASL_USER`] / [`SASL_PASSWORD`], so the
//! client's security settings can be tested. The broker can be SIGKILLed and
//! restarted on the same ports and log directory. Kafka's own tools (the
//! producer benchmark, the consumer-group command) run from the same jars
//! with [`Kafka::tool`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::engines::{
    err, retry_on_port_taken, stop_supervised, supervised, wait_listening, which, EngineError,
    NotListening,
};

/// The Kafka version the tests run; `scripts/kafka/pom.xml` resolves the
/// same one and `deploy/docker-compose.yml` runs its image.
pub const KAFKA_VERSION: &str = "4.1.1";

/// The SCRAM-SHA-512 user of the SASL listener.
pub const SASL_USER: &str = "streamforge";
/// Its password.
pub const SASL_PASSWORD: &str = "streamforge-test-secret";

/// Where the broker's jars are: `STREAMFORGE_KAFKA_LIB`, or the cache
/// `make deps` fills.
pub fn kafka_lib() -> Result<PathBuf, EngineError> {
    let dir = match std::env::var_os("STREAMFORGE_KAFKA_LIB") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").ok_or_else(|| err("HOME is not set"))?;
            PathBuf::from(home).join(format!(".cache/streamforge/kafka-{KAFKA_VERSION}/lib"))
        }
    };
    let has_broker = std::fs::read_dir(&dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("kafka_2.13-{KAFKA_VERSION}"))
            })
        })
        .unwrap_or(false);
    if !has_broker {
        return Err(err(format!(
            "Apache Kafka {KAFKA_VERSION}'s jars are not in {}: run `make deps` \
             (it resolves them from Maven Central with scripts/kafka/pom.xml; needs Java 17 and Maven)",
            dir.display()
        )));
    }
    Ok(dir)
}

fn java() -> Result<PathBuf, EngineError> {
    std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|p| p.exists())
        .or_else(|| which("java"))
        .ok_or_else(|| {
            err("java not found: Apache Kafka needs Java 17 or later (Debian: apt-get install openjdk-17-jre-headless)")
        })
}

const LOG4J2: &str = "\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.tools.name = org.apache.kafka.tools
logger.tools.level = WARN
";

/// An Apache Kafka broker of its own.
pub struct Kafka {
    dir: tempfile::TempDir,
    port: u16,
    sasl_port: u16,
    controller_port: u16,
    java: PathBuf,
    lib: PathBuf,
    child: Option<Child>,
}

impl Kafka {
    /// Writes the configuration, formats the log directory and starts the
    /// broker; returns once it answers metadata requests.
    pub fn start() -> Result<Kafka, EngineError> {
        let java = java()?;
        let lib = kafka_lib()?;
        let dir = tempfile::Builder::new()
            .prefix("streamforge-kafka-")
            .tempdir()
            .map_err(|e| err(e.to_string()))?;
        let mut k = Kafka {
            port: 0,
            sasl_port: 0,
            controller_port: 0,
            dir,
            java,
            lib,
            child: None,
        };
        retry_on_port_taken(|| {
            k.port = crate::free_port();
            k.sasl_port = crate::free_port();
            k.controller_port = crate::free_port();
            let _ = std::fs::remove_dir_all(k.dir.path().join("data"));
            std::fs::write(k.dir.path().join("server.properties"), k.properties())
                .and_then(|()| std::fs::write(k.dir.path().join("log4j2.properties"), LOG4J2))
                .map_err(|e| {
                    NotListening::Failed(err(format!("writing the broker's configuration: {e}")))
                })?;
            k.format().map_err(NotListening::Failed)?;
            k.launch()
        })?;
        Ok(k)
    }

    fn properties(&self) -> String {
        let (p, s, c) = (self.port, self.sasl_port, self.controller_port);
        format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{c}\n\
             listeners=PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{s},CONTROLLER://127.0.0.1:{c}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{s}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT\n\
             sasl.enabled.mechanisms=SCRAM-SHA-512\n\
             listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             log.dirs={logs}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             log.cleaner.dedupe.buffer.size=2097152\n\
             num.network.threads=2\n\
             num.io.threads=2\n\
             num.recovery.threads.per.data.dir=1\n\
             broker.heartbeat.interval.ms=500\n\
             broker.session.timeout.ms=3000\n\
             background.threads=2\n",
            logs = self.dir.path().join("data").display(),
        )
    }

    /// `kafka-storage format`, once: the cluster id and the SCRAM user.
    fn format(&self) -> Result<(), EngineError> {
        let id = self.run_tool(
            "kafka.tools.StorageTool",
            &["random-uuid".to_string()],
            "kafka-storage random-uuid",
        )?;
        let config = self.dir.path().join("server.properties");
        self.run_tool(
            "kafka.tools.StorageTool",
            &[
                "format".into(),
                "-t".into(),
                id.trim().to_string(),
                "-c".into(),
                config.display().to_string(),
                "--add-scram".into(),
                format!("SCRAM-SHA-512=[name={SASL_USER},password={SASL_PASSWORD}]"),
            ],
            "kafka-storage format",
        )?;
        Ok(())
    }

    /// Runs one of Kafka's tools to completion; its standard output.
    fn run_tool(&self, class: &str, args: &[String], what: &str) -> Result<String, EngineError> {
        let out = self
            .tool(class)
            .args(args)
            .output()
            .map_err(|e| err(format!("running {what}: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command running the Java class `class` of Kafka's jars (tools such
    /// as `org.apache.kafka.tools.ProducerPerformance` or
    /// `org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`), with a
    /// bounded heap and quiet logging. Add its arguments and run it.
    pub fn tool(&self, class: &str) -> Command {
        let mut c = Command::new(&self.java);
        c.args(["-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.path().join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", self.lib.display()))
            .arg(class);
        c
    }

    /// `kafka://127.0.0.1:PORT`, the plain listener.
    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }

    /// How many messages of `topic` consumer group `group` has committed:
    /// the sum over partitions of the committed offsets (0 where none is).
    /// Reads the offsets only; it does not join the group.
    pub fn committed(&self, group: &str, topic: &str) -> Result<u64, EngineError> {
        use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
        let (consumer, partitions) = self.offsets_client(Some(group), topic)?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, OFFSETS_TIMEOUT)
            .map_err(|e| err(format!("committed offsets of {group} on {topic}: {e}")))?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n.max(0) as u64,
                _ => 0,
            })
            .sum())
    }

    /// How many messages `topic` holds: the sum over partitions of the end
    /// offsets (high watermarks).
    pub fn end_offsets(&self, topic: &str) -> Result<u64, EngineError> {
        let (consumer, partitions) = self.offsets_client(None, topic)?;
        let mut total = 0;
        for p in partitions {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, OFFSETS_TIMEOUT)
                .map_err(|e| err(format!("end offset of {topic}/{p}: {e}")))?;
            total += high.max(0) as u64;
        }
        Ok(total)
    }

    /// A client that reads offsets (of `group`, without joining it) and the
    /// partitions of `topic`.
    fn offsets_client(
        &self,
        group: Option<&str>,
        topic: &str,
    ) -> Result<(BaseConsumer, Vec<i32>), EngineError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("enable.auto.commit", "false")
            .set("log_level", "0");
        if let Some(g) = group {
            config.set("group.id", g);
        }
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| err(format!("creating an offsets client: {e}")))?;
        let md = consumer
            .fetch_metadata(Some(topic), OFFSETS_TIMEOUT)
            .map_err(|e| err(format!("metadata of {topic}: {e}")))?;
        let partitions = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        Ok((consumer, partitions))
    }

    /// `127.0.0.1:PORT`, the plain listener as Kafka's tools name it.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kafka://127.0.0.1:PORT` of the SASL_PLAINTEXT (SCRAM-SHA-512) listener.
    pub fn sasl_url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.sasl_port)
    }

    /// The broker's log so far, of every start.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("kafka.log")
    }

    /// A guard that prints the end of the broker's log when the test holding
    /// it fails (panics), so the failure shows what the broker saw.
    pub fn log_on_failure(&self) -> LogOnFailure {
        LogOnFailure(self.dir.path().to_path_buf())
    }

    /// Stops the broker cleanly (SIGTERM, controlled shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_supervised(&mut c);
        }
    }

    /// Kills the broker at once (SIGKILL): no controlled shutdown, no
    /// flush; [`Kafka::resume`] recovers its logs.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = std::fs::read_to_string(self.log_path().with_extension("pid"))
            .unwrap_or_default()
            .trim()
            .to_string();
        if !pid.is_empty() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        // The supervisor sees its child gone and exits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop_supervised(&mut child);
    }

    /// Starts the broker (again) on the same ports and log directory; waits
    /// until it answers metadata requests.
    pub fn resume(&mut self) -> Result<(), EngineError> {
        self.launch().map_err(NotListening::into_error)
    }

    fn launch(&mut self) -> Result<(), NotListening> {
        let dir = self.dir.path().to_path_buf();
        let args: Vec<String> = [
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
        ]
        .map(String::from)
        .into_iter()
        .chain([
            format!(
                "-Dlog4j2.configurationFile={}",
                dir.join("log4j2.properties").display()
            ),
            format!("-Dkafka.logs.dir={}", dir.join("logs").display()),
            "-cp".into(),
            format!("{}/*", self.lib.display()),
            "kafka.Kafka".into(),
            dir.join("server.properties").display().to_string(),
        ])
        .collect();
        // The log of earlier starts moves aside: `log()` shows every start.
        let log = self.log_path();
        if let Ok(earlier) = std::fs::read(&log) {
            use std::io::Write;
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("kafka.earlier.log"))
                .and_then(|mut f| f.write_all(&earlier));
        }
        let mut child = supervised(&self.java, &args, "TERM", &log, &dir, None)
            .map_err(NotListening::Failed)?;
        let timeout = Duration::from_secs(90);
        let deadline = Instant::now() + timeout;
        // The broker listens on its own three ports (a server of another
        // test binary on one of them would answer metadata requests too).
        for port in [self.controller_port, self.port, self.sasl_port] {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = wait_listening(
                &mut child,
                &log.with_extension("pid"),
                port,
                "the Kafka broker",
                &log,
                left,
            ) {
                self.child = Some(child);
                self.stop();
                return Err(e);
            }
        }
        self.child = Some(child);
        self.wait_ready(deadline).map_err(|e| {
            self.stop();
            NotListening::Failed(e)
        })
    }

    /// Polls the broker's metadata until it lists itself.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), EngineError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("log_level", "0")
            .create()
            .map_err(|e| err(format!("creating a metadata client: {e}")))?;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(err(format!(
                    "the Kafka broker exited ({status}) while starting; its log:\n{}",
                    tail(&self.log(), 200)
                )));
            }
            if let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(1)) {
                if md
                    .brokers()
                    .iter()
                    .any(|b| b.port() == i32::from(self.port))
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(err(format!(
            "the Kafka broker on {} did not answer metadata requests within {timeout:?}; its log:\n{}",
            self.bootstrap(),
            tail(&self.log(), 200)
        )))
    }

    /// The directory holding the broker's configuration and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long the offsets helpers wait for the broker.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(10);

/// The log of every start of the broker in `dir`.
fn read_log(dir: &Path) -> String {
    let earlier = std::fs::read_to_string(dir.join("kafka.earlier.log")).unwrap_or_default();
    earlier + &std::fs::read_to_string(dir.join("kafka.log")).unwrap_or_default()
}

/// See [`Kafka::log_on_failure`].
pub struct LogOnFailure(PathBuf);

impl Drop for LogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- the Kafka broker's log (last 300 lines) ---\n{}\n--- end of the broker's log ---",
                tail(&read_log(&self.0), 300)
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One broker shared by every test of this test binary (use unique topics).
pub fn shared_kafka() -> &'static Kafka {
    static KAFKA: std::sync::OnceLock<Kafka> = std::sync::OnceLock::new();
    KAFKA.get_or_init(|| Kafka::start().unwrap_or_else(|e| panic!("{e}")))
}
