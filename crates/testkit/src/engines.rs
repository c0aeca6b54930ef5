//! Throwaway engines for integration tests: PostgreSQL, Redis, Apache Kafka
//! ([`crate::kafka`]) and Prometheus as real processes on free loopback
//! ports, with their data in a temp dir.
//!
//! Each engine runs under a small shell supervisor that stops it when the
//! test process is gone, so an engine shared through a `static` (one per
//! test binary) never outlives the tests, and so that tests can stop,
//! kill and restart an engine of their own for fault tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What went wrong starting an engine; says what to install when a binary
/// is missing.
#[derive(Debug)]
pub struct EngineError(pub String);

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineError {}

pub(crate) fn err(msg: impl Into<String>) -> EngineError {
    EngineError(msg.into())
}

/// Runs `program args...` under `sh`, which stops it with `stop_signal`
/// when the shell gets SIGTERM, or when this test process is gone, and then
/// also removes `workdir` (an engine held in a `static` is never dropped).
pub(crate) fn supervised(
    program: &Path,
    args: &[String],
    stop_signal: &str,
    log: &Path,
    workdir: &Path,
    cwd: Option<&Path>,
) -> Result<Child, EngineError> {
    let script = format!(
        r#"
"$@" &
child=$!
echo $child > '{pidfile}'
trap 'kill -{stop_signal} $child 2>/dev/null; wait $child; exit 0' TERM INT
while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.2; done
kill -{stop_signal} $child 2>/dev/null
wait $child
kill -0 {parent} 2>/dev/null || rm -rf '{workdir}'
"#,
        parent = std::process::id(),
        workdir = workdir.display(),
        pidfile = log.with_extension("pid").display(),
    );
    let log_file =
        std::fs::File::create(log).map_err(|e| err(format!("creating {}: {e}", log.display())))?;
    let log_err = log_file.try_clone().map_err(|e| err(e.to_string()))?;
    let mut sh = Command::new("sh");
    if let Some(dir) = cwd {
        sh.current_dir(dir);
    }
    sh.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| err(format!("starting {}: {e}", program.display())))
}

/// Sends `signal` (e.g. `-STOP`) to `pid` and all its descendants: the
/// root first (a stopped server forks no new backend), then its
/// descendants, looking again until a pass finds none it has not signalled
/// (one forked just before the root stopped is caught by the next pass).
fn signal_tree(pid: u32, signal: &str) {
    let send = |pids: &[u32]| {
        let args: Vec<String> = pids.iter().map(u32::to_string).collect();
        let _ = Command::new("kill").arg(signal).args(&args).status();
    };
    send(&[pid]);
    let mut signalled = vec![pid];
    loop {
        let mut all = vec![pid];
        let mut i = 0;
        while i < all.len() {
            all.extend(children_of(all[i]));
            i += 1;
        }
        let new: Vec<u32> = all.into_iter().filter(|p| !signalled.contains(p)).collect();
        if new.is_empty() {
            return;
        }
        send(&new);
        signalled.extend(new);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid ...`; comm may hold spaces.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

pub(crate) fn stop_supervised(child: &mut Child) {
    // The supervisor may have exited already (its engine did).
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `program` run as `user` (via setpriv) when given.
fn command_as(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--init-groups",
                "--",
            ])
            .arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Why an engine did not come up on its port.
pub(crate) enum NotListening {
    /// It exited because another process holds the port (a race with
    /// another test binary between choosing the port and binding it): try
    /// again on another port.
    PortTaken(EngineError),
    Failed(EngineError),
}

impl NotListening {
    pub(crate) fn into_error(self) -> EngineError {
        match self {
            NotListening::PortTaken(e) | NotListening::Failed(e) => e,
        }
    }
}

/// How many fresh ports [`retry_on_port_taken`] tries.
const PORT_ATTEMPTS: usize = 5;

/// Runs `attempt` (choose ports, start) until the engine is listening on its
/// own ports, at most [`PORT_ATTEMPTS`] times: another process taking a
/// chosen port first costs a retry, not a test.
pub(crate) fn retry_on_port_taken(
    mut attempt: impl FnMut() -> Result<(), NotListening>,
) -> Result<(), EngineError> {
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(NotListening::PortTaken(e)) => last = Some(e),
            Err(NotListening::Failed(e)) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| err("no attempt made")))
}

/// Waits until the process whose pid the supervisor wrote to `pidfile` (or
/// one of its children) listens on 127.0.0.1:`port`. A connection alone
/// proves nothing: a server of another test binary may hold the port, so
/// the listening socket's owner is checked in /proc. When the engine exits
/// first, says whether it was because the port was taken.
pub(crate) fn wait_listening(
    child: &mut Child,
    pidfile: &Path,
    port: u16,
    what: &str,
    log: &Path,
    timeout: Duration,
) -> Result<(), NotListening> {
    let deadline = Instant::now() + timeout;
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    while Instant::now() < deadline {
        let pid = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            if listens_on(pid, port) {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = log_text();
            let msg = format!(
                "{what} exited ({status}) before listening on 127.0.0.1:{port}; its log:\n{tail}"
            );
            return Err(if port_taken(&tail) {
                NotListening::PortTaken(err(msg))
            } else {
                NotListening::Failed(err(msg))
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let holder = if listening_inodes(port).is_empty() {
        "nothing listens there"
    } else {
        "another process listens there"
    };
    Err(NotListening::Failed(err(format!(
        "{what} did not listen on 127.0.0.1:{port} within {timeout:?} ({holder}); its log:\n{}",
        log_text()
    ))))
}

/// Whether a log says the server could not bind its port because it is in use.
pub(crate) fn port_taken(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}

/// Whether `pid` or one of its descendants holds a socket listening on
/// 127.0.0.1:`port` (or on the IPv4-mapped IPv6 address, as a JVM binds).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return false;
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        tree.extend(children_of(tree[i]));
        i += 1;
    }
    tree.iter().any(|p| {
        std::fs::read_dir(format!("/proc/{p}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| {
                let target = target.to_string_lossy();
                target
                    .strip_prefix("socket:[")
                    .and_then(|t| t.strip_suffix(']'))
                    .is_some_and(|inode| inodes.iter().any(|i| i == inode))
            })
    })
}

/// The inodes of sockets listening on loopback `port` (/proc/net/tcp{,6}).
fn listening_inodes(port: u16) -> Vec<String> {
    let v4 = format!("0100007F:{port:04X}");
    let v4_any = format!("00000000:{port:04X}");
    let v6_mapped = format!("0000000000000000FFFF00000100007F:{port:04X}");
    let v6_any = format!("00000000000000000000000000000000:{port:04X}");
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9
                && f[3] == "0A"
                && [&v4, &v4_any, &v6_mapped, &v6_any].contains(&&f[1].to_string())
            {
                found.push(f[9].to_string());
            }
        }
    }
    found
}

/// The directory of PostgreSQL's server binaries (`initdb`, `postgres`).
fn pg_bindir() -> Result<PathBuf, EngineError> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        err(
            "PostgreSQL server binaries (initdb, postgres) not found: install them \
             (Debian: apt-get install postgresql; `make test` does this)",
        )
    })
}

/// A PostgreSQL server of its own.
pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// Runs the server as this user (PostgreSQL refuses to run as root).
    run_as: Option<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Postgres {
    /// initdb in a temp dir and start the server on a free port.
    pub fn start() -> Result<Postgres, EngineError> {
        let bindir = pg_bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("streamforge-pg-")
            .tempdir()
            .map_err(|e| err(e.to_string()))?;
        let run_as = is_root().then(|| "postgres".to_string());
        let data = dir.path().join("data");
        if let Some(user) = &run_as {
            let ok = Command::new("chown")
                .args([&format!("{user}:"), &dir.path().display().to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(err(format!(
                    "running as root, PostgreSQL needs the system user {user:?} to own its data: \
                     install the postgresql package, which creates it"
                )));
            }
        }
        let mut cmd = command_as(run_as.as_deref(), &bindir.join("initdb"));
        let out = cmd
            .args([
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .output()
            .map_err(|e| err(format!("running initdb: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut pg = Postgres {
            log: dir.path().join("postgres.log"),
            _dir: dir,
            data,
            bindir,
            port: 0,
            run_as,
            child: None,
        };
        retry_on_port_taken(|| {
            pg.port = crate::free_port();
            pg.launch()
        })?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh, uniquely named database and returns its URL.
    pub fn create_database(&self) -> Result<String, EngineError> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bindir.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .map_err(|e| err(format!("running psql: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "CREATE DATABASE failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(self.url(&name))
    }

    /// Whether the TimescaleDB library is installed for this PostgreSQL.
    pub fn timescaledb_installed(&self) -> bool {
        Command::new(self.bindir.join("pg_config"))
            .arg("--pkglibdir")
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .or_else(|| Some(PathBuf::from("/usr/lib/postgresql/lib")))
            .is_some_and(|dir| {
                std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("timescaledb"))
            })
    }

    /// Panics, saying why, unless the TimescaleDB extension can be created
    /// here: a test of TimescaleDB mode must not pass without it. `make
    /// test` leaves such tests (named `*timescaledb*`) out where it is
    /// not installed.
    pub fn require_timescaledb(&self) {
        assert!(
            self.has_extension("timescaledb"),
            "this test needs the TimescaleDB extension, which is not installed for this \
             PostgreSQL; `make test` leaves the *timescaledb* tests out where it is missing"
        );
    }

    /// Whether `extension` can be created here (e.g. `timescaledb`).
    pub fn has_extension(&self, extension: &str) -> bool {
        Command::new(self.bindir.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
            ])
            .arg(format!(
                "SELECT 1 FROM pg_available_extensions WHERE name = '{extension}'"
            ))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
            .unwrap_or(false)
    }

    /// Freezes the server and every backend (SIGSTOP): connections stay
    /// open and queries wait, as with a hung host; [`Postgres::thaw`] lets
    /// it go on.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            signal_tree(c.id(), "-STOP");
        }
    }

    /// Undoes [`Postgres::freeze`] (SIGCONT).
    pub fn thaw(&self) {
        if let Some(c) = &self.child {
            signal_tree(c.id(), "-CONT");
        }
    }

    /// Stops the server cleanly (fast shutdown); [`Postgres::resume`] starts it again.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_supervised(&mut c);
        }
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&mut self) -> Result<(), EngineError> {
        self.launch().map_err(NotListening::into_error)
    }

    /// Serves TLS only from now on, with `cert_pem` and `key_pem` (a
    /// plain TCP connection is refused by pg_hba): restarts the server.
    pub fn require_tls(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), EngineError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |e: std::io::Error| err(format!("configuring TLS: {e}"));
        let (cert, key) = (self.data.join("server.crt"), self.data.join("server.key"));
        std::fs::write(&cert, cert_pem).map_err(io)?;
        std::fs::write(&key, key_pem).map_err(io)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        if let Some(user) = &self.run_as {
            let _ = Command::new("chown")
                .arg(format!("{user}:"))
                .args([&cert, &key])
                .status();
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .map_err(io)?;
        use std::io::Write;
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .map_err(io)?;
        std::fs::write(
            self.data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .map_err(io)?;
        self.stop();
        self.resume()
    }

    /// Starts the server on `self.port` and waits until it answers queries.
    fn launch(&mut self) -> Result<(), NotListening> {
        let postgres = self.bindir.join("postgres");
        let mut args: Vec<String> = Vec::new();
        let program = match &self.run_as {
            Some(user) => {
                args.extend([
                    format!("--reuid={user}"),
                    format!("--regid={user}"),
                    "--init-groups".into(),
                    "--".into(),
                ]);
                args.push(postgres.display().to_string());
                PathBuf::from("setpriv")
            }
            None => postgres,
        };
        args.extend(
            [
                "-D",
                &self.data.display().to_string(),
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                // Throwaway data: no commit waits, little WAL, few
                // checkpoints (tests and benchmarks measure StreamForge,
                // not the disk).
                "-c",
                "synchronous_commit=off",
                "-c",
                "wal_level=minimal",
                "-c",
                "max_wal_senders=0",
                "-c",
                "max_wal_size=4GB",
                "-c",
                "checkpoint_timeout=30min",
                "-c",
                "shared_buffers=256MB",
            ]
            .map(String::from),
        );
        if self.timescaledb_installed() {
            args.extend(
                [
                    "-c",
                    "shared_preload_libraries=timescaledb",
                    "-c",
                    "timescaledb.telemetry_level=off",
                    // Policies (compression, retention, aggregate refresh)
                    // would run at random moments in every test database
                    // of this shared server and load it; tests that need a
                    // refresh call it. The jobs are still created.
                    "-c",
                    "timescaledb.max_background_workers=0",
                ]
                .map(String::from),
            );
        }
        let workdir = self._dir.path().to_path_buf();
        let mut child = supervised(&program, &args, "INT", &self.log, &workdir, None)
            .map_err(NotListening::Failed)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let pidfile = self.log.with_extension("pid");
        let listening = wait_listening(
            &mut child,
            &pidfile,
            self.port,
            "postgres",
            &self.log,
            Duration::from_secs(30),
        );
        self.child = Some(child);
        if let Err(e) = listening {
            self.stop();
            return Err(e);
        }
        // Listening is not accepting: during recovery the server answers
        // "the database system is starting up". Wait for a real query.
        while Instant::now() < deadline {
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
        Err(NotListening::Failed(err(format!(
            "postgres on 127.0.0.1:{} listens but does not accept queries after 30s; its log:\n{tail}",
            self.port
        ))))
    }

    /// Whether the server accepts connections and answers a query.
    fn answers(&self) -> bool {
        Command::new(self.bindir.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                "SELECT 1",
            ])
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "1")
            .unwrap_or(false)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What Redis and Prometheus have in common: a temp dir, a port, and the
/// supervised process (stopped on drop).
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn new(prefix: &str) -> Result<Server, EngineError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| err(e.to_string()))?;
        Ok(Server {
            dir,
            port: 0,
            child: None,
        })
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_supervised(&mut c);
        }
    }

    /// Starts `program args` (in the temp dir when `in_dir`) and waits until
    /// it listens on its port.
    fn run(
        &mut self,
        program: &Path,
        args: &[String],
        what: &str,
        in_dir: bool,
    ) -> Result<(), NotListening> {
        let log = self.dir.path().join(format!("{what}.log"));
        let dir = self.dir.path().to_path_buf();
        let cwd = in_dir.then_some(dir.as_path());
        let mut child =
            supervised(program, args, "TERM", &log, &dir, cwd).map_err(NotListening::Failed)?;
        let listening = wait_listening(
            &mut child,
            &log.with_extension("pid"),
            self.port,
            what,
            &log,
            Duration::from_secs(30),
        );
        self.child = Some(child);
        if listening.is_err() {
            self.stop();
        }
        listening
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis server of its own.
pub struct Redis(Server, bool);

impl Redis {
    pub fn start() -> Result<Redis, EngineError> {
        let mut r = Redis(Server::new("streamforge-redis-")?, false);
        retry_on_port_taken(|| {
            r.0.port = crate::free_port();
            r.launch()
        })?;
        Ok(r)
    }

    /// A Redis that speaks TLS only (no plain port), with `cert_pem` and
    /// `key_pem`; clients are not asked for certificates.
    pub fn start_tls(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Redis, EngineError> {
        let mut r = Redis(Server::new("streamforge-redis-")?, true);
        let io = |e: std::io::Error| err(format!("writing Redis's TLS files: {e}"));
        for (name, text) in [
            ("server.crt", cert_pem),
            ("server.key", key_pem),
            ("ca.crt", ca_pem),
        ] {
            std::fs::write(r.0.dir.path().join(name), text).map_err(io)?;
        }
        retry_on_port_taken(|| {
            r.0.port = crate::free_port();
            r.launch()
        })?;
        Ok(r)
    }

    /// Its URL: `redis://127.0.0.1:PORT/`, or `rediss://localhost:PORT/`
    /// when it speaks TLS.
    pub fn url(&self) -> String {
        if self.1 {
            format!("rediss://localhost:{}/", self.0.port)
        } else {
            format!("redis://127.0.0.1:{}/", self.0.port)
        }
    }

    /// Stops the server (its data is lost: it keeps nothing on disk).
    pub fn stop(&mut self) {
        self.0.stop();
    }

    /// Freezes the server (SIGSTOP): connections stay open and commands
    /// wait, as with a hung host; [`Redis::thaw`] lets it go on.
    pub fn freeze(&self) {
        if let Some(c) = &self.0.child {
            signal_tree(c.id(), "-STOP");
        }
    }

    /// Undoes [`Redis::freeze`] (SIGCONT).
    pub fn thaw(&self) {
        if let Some(c) = &self.0.child {
            signal_tree(c.id(), "-CONT");
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn resume(&mut self) -> Result<(), EngineError> {
        self.launch().map_err(NotListening::into_error)
    }

    fn launch(&mut self) -> Result<(), NotListening> {
        let program = which("redis-server").ok_or_else(|| {
            NotListening::Failed(err("redis-server not found: install it (Debian: apt-get install redis-server; `make test` does this)"))
        })?;
        let dir = self.0.dir.path();
        let file = |name: &str| dir.join(name).display().to_string();
        let (port, tls): (String, Vec<String>) = if self.1 {
            let tls = [
                "--tls-port".to_string(),
                self.0.port.to_string(),
                "--tls-cert-file".into(),
                file("server.crt"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-ca-cert-file".into(),
                file("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            ("0".into(), tls.to_vec())
        } else {
            (self.0.port.to_string(), Vec::new())
        };
        let mut args = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.0.dir.path().display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(tls);
        self.0.run(&program, &args, "redis-server", false)
    }
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")))
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

/// Runs one SQL statement with `psql` against `url`; its output, trimmed
/// (`-tA`: values only). Panics with psql's error when it fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-tAc", sql])
        .output()
        .expect("psql runs (installed with PostgreSQL)");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One PostgreSQL server shared by every test of this test binary.
pub fn shared_postgres() -> &'static Postgres {
    static PG: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
    PG.get_or_init(|| Postgres::start().unwrap_or_else(|e| panic!("{e}")))
}

/// A Prometheus server of its own, scraping the given targets every second
/// (with the rule files given, so they are loaded and evaluated too).
pub struct Prometheus(Server);

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`) at `/metrics`,
    /// job `streamforge`, and evaluating `rule_files` every second.
    pub fn start(targets: &[String], rule_files: &[PathBuf]) -> Result<Prometheus, EngineError> {
        let program = which("prometheus").ok_or_else(|| {
            err("prometheus not found: install it (Debian: apt-get install prometheus; `make test` does this)")
        })?;
        let mut p = Prometheus(Server::new("streamforge-prometheus-")?);
        let quoted = |items: Vec<String>| {
            items
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: streamforge\n    static_configs:\n      - targets: [{}]\n",
            quoted(rule_files.iter().map(|p| p.display().to_string()).collect()),
            quoted(targets.to_vec()),
        );
        let config_file = p.0.dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).map_err(|e| err(e.to_string()))?;
        retry_on_port_taken(|| {
            p.0.port = crate::free_port();
            let args = [
                format!("--config.file={}", config_file.display()),
                format!(
                    "--storage.tsdb.path={}",
                    p.0.dir.path().join("data").display()
                ),
                format!("--web.listen-address=127.0.0.1:{}", p.0.port),
            ];
            p.0.run(&program, &args, "prometheus", true)
        })?;
        Ok(p)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.0.port)
    }

    /// Its log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.0.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

pub use crate::kafka::{shared_kafka, Kafka};
