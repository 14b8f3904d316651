//! A real jwt-server process for the tests that measure it from outside:
//! its RSS and descriptors from /proc, and the lines it logs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::fixtures;

/// A running jwt-server; killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    lines: Arc<AtomicUsize>,
    successes: Arc<AtomicUsize>,
    kept: Arc<Mutex<Vec<String>>>,
}

/// Lines of the log kept for a failing test to show; the rest are counted.
const KEPT_LINES: usize = 200;

impl ServerProcess {
    /// Starts `bin` (the jwt-server binary) on an ephemeral loopback port
    /// with the fixtures and `extra` arguments, logging at `rust_log`.
    pub fn start(bin: &Path, extra: &[&str], rust_log: &str) -> ServerProcess {
        Self::start_with_env(bin, extra, &[], rust_log)
    }

    /// As [`ServerProcess::start`], with environment variables set.
    pub fn start_with_env(
        bin: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        rust_log: &str,
    ) -> ServerProcess {
        Self::start_at(bin, 0, extra, env, rust_log)
    }

    /// As [`ServerProcess::start_with_env`] on a given loopback port (0:
    /// any free one), e.g. to restart a server where its clients expect it.
    pub fn start_at(
        bin: &Path,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
        rust_log: &str,
    ) -> ServerProcess {
        let mut child = Command::new(bin)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--keystore")
            .arg(fixtures().join("keystore.toml"))
            .arg("--cert")
            .arg(fixtures().join("server.pem"))
            .arg("--key")
            .arg(fixtures().join("server.key"))
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jwt-server");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let port = loop {
            let line = lines.next().expect("ready line").expect("utf-8");
            if !line.contains("jwt-server ready") {
                continue;
            }
            if let Some(at) = line.find(" listen=127.0.0.1:") {
                break line[at + 18..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
            }
        };
        let count = Arc::new(AtomicUsize::new(0));
        let successes = Arc::new(AtomicUsize::new(0));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (c, ok, k) = (count.clone(), successes.clone(), kept.clone());
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("jose_binding::access") && line.contains(" status=2") {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                if c.fetch_add(1, Ordering::Relaxed) < KEPT_LINES {
                    k.lock().unwrap().push(line);
                }
            }
        });
        ServerProcess {
            child,
            port,
            lines: count,
            successes,
            kept,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines logged since the ready line.
    pub fn log_lines(&self) -> usize {
        self.lines.load(Ordering::Relaxed)
    }

    /// Access lines of successful (2xx) requests since the ready line.
    pub fn success_lines(&self) -> usize {
        self.successes.load(Ordering::Relaxed)
    }

    /// The first lines logged since the ready line.
    pub fn first_lines(&self) -> Vec<String> {
        self.kept.lock().unwrap().clone()
    }

    /// A field of /proc/PID/status in its unit (kB for memory), 0 if absent.
    pub fn status(&self, field: &str) -> u64 {
        proc_status(self.pid(), field)
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
