//! A child process of the test (the `streamforge` binary) with its output
//! collected as it comes, so a test can wait for a line and show the
//! output when it fails.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A spawned process whose stdout and stderr are gathered in one text.
pub struct Spawned {
    pub child: Child,
    output: Arc<Mutex<String>>,
}

fn collect(from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let mut out = into.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    });
}

impl Spawned {
    /// Spawns `cmd` with stdout and stderr piped into the collected output.
    pub fn start(cmd: &mut Command) -> Spawned {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        Spawned { child, output }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until its output holds `needle`; panics with the output after
    /// `timeout` or when the process exits first.
    pub async fn wait_output(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output.lock().unwrap().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // What it printed last may still be in the pipe.
                std::thread::sleep(Duration::from_millis(100));
                if self.output.lock().unwrap().contains(needle) {
                    return;
                }
                panic!(
                    "exited ({status}) without printing {needle:?}; its output:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not printed within {timeout:?}; its output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address a `streamforge` pipeline printed on start
    /// (`... is running at http://127.0.0.1:PORT ...`): run it with
    /// `--http-addr 127.0.0.1:0` and no port is chosen for it in advance.
    pub async fn http_base(&mut self, timeout: Duration) -> String {
        const MARK: &str = "is running at ";
        self.wait_output(MARK, timeout).await;
        let out = self.output();
        let rest = &out[out.find(MARK).unwrap() + MARK.len()..];
        rest.split_whitespace().next().unwrap().to_string()
    }

    /// Waits for it to exit (killing it and panicking after `timeout`): its
    /// status and how long the wait took.
    pub async fn exit_within(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status, started.elapsed());
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "did not exit within {timeout:?}; its output:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
