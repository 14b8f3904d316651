//! The jwt-server binary for the operator tests: commands run to
//! completion, and a server whose log lines are read with a deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_jwt-server");

/// The settings' environment variables, so that none leaks in from outside.
const SETTINGS_ENV: &[&str] = &[
    "JWT_KEYSTORE",
    "JWT_SERVER_CONFIG",
    "JWT_CERT",
    "JWT_KEY",
    "JWT_DEV",
    "RUST_LOG",
];

/// jwt-server with `args` in `cwd`, with `env` set and no other settings
/// from the environment.
pub fn command(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd);
    for v in SETTINGS_ENV {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied()).env("NO_COLOR", "1");
    cmd
}

/// Runs to completion, stdout and stderr piped.
pub fn run(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    command(args, cwd, env).output().expect("run jwt-server")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `keys list --json` of `keystore`: each client id with its fingerprints.
pub fn fingerprints(keystore: &Path) -> serde_json::Value {
    let out = run(
        &[
            "keys",
            "list",
            "--json",
            "--keystore",
            keystore.to_str().unwrap(),
        ],
        Path::new("/"),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("keys list --json")
}

/// A running server (killed on drop) and what it has logged so far.
pub struct Server {
    child: Child,
    lines: Receiver<String>,
    pub port: u16,
    pub log: Vec<String>,
}

impl Server {
    /// Starts the server and waits for its ready line; on an exit or no
    /// ready line within 20 s, the lines it logged.
    pub fn start(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Result<Server, String> {
        let mut child = command(args, cwd, env)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jwt-server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            port: 0,
            log: Vec::new(),
        };
        let Some(ready) = server.wait_for("jwt-server ready", Duration::from_secs(20)) else {
            let _ = server.child.kill();
            return Err(server.log.join("\n"));
        };
        // A Unix socket listener has no port (0).
        if ready.contains("listen=unix:") {
            return Ok(server);
        }
        let at = ready
            .find("listen=127.0.0.1:")
            .ok_or_else(|| ready.clone())?
            + 17;
        server.port = ready[at..]
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ready.clone())?;
        Ok(server)
    }

    /// The next line containing `needle`, within `timeout`; every line
    /// read is kept in `log`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            self.log.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    pub fn hup(&self) {
        self.signal("HUP");
    }

    /// Every line logged so far (taken without waiting).
    pub fn read_log(&mut self) -> &[String] {
        self.log.extend(self.lines.try_iter());
        &self.log
    }

    /// Sends the signal `name` (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "SIG{name} sent");
    }

    /// Whether the process has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `timeout` for the process to exit, keeping its log.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            while let Ok(line) = self.lines.try_recv() {
                self.log.push(line);
            }
            if let Some(status) = self.exited() {
                self.log.extend(self.lines.try_iter());
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command that must end by itself within `timeout` (an old build
/// would serve instead); its output.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("still running after {timeout:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// The repository root (the fixtures' parent), where `--dev` finds them.
pub fn repo() -> std::path::PathBuf {
    jose_binding_e2e::fixtures().join("..")
}

/// The status of one signed request from client1 to the server on `port`.
pub async fn signed_request(port: u16) -> u16 {
    use jose_binding::client::{BoundConnection, HttpVersion, Target};
    let target = Target::parse(&format!("https://localhost:{port}")).unwrap();
    let setup = jose_binding_e2e::setup("client1", HttpVersion::Auto);
    let mut conn = BoundConnection::connect(&target, &setup).await.unwrap();
    let r = conn
        .send(jose_binding::Form::Signed, &serde_json::json!({}))
        .await
        .unwrap();
    r.status
}

/// The value of the sample `series` (name and labels as rendered) in a
/// `/metrics` answer.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sample `series` from the status listener on `status_port`.
pub async fn metric(status_port: u16, series: &str) -> Option<f64> {
    let body = jose_binding_e2e::upstream::plain_get(status_port, "/metrics").await;
    sample(&body, series)
}
