//! Enrolment end to end, as an operator and a user run it: `jwt-server keys
//! invite` prints the line, a `jwt-server --enroll` serves, `jwt-client
//! enroll <line>` configures the client, and `send` and `proxy` then run
//! with no flags. Every command's output and the server's log are checked
//! for the invite's secret and the root key. The jwt-server binary is the
//! one the workspace build left beside jwt-client: `cargo nextest run
//! --workspace` (what scripts/test.sh runs) builds both; `-p jwt-client`
//! alone does not rebuild the server.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Target};
use jose_binding::invite::{Invite, Pin};
use jose_binding::{ClientId, Form, Keystore, SoftwareRootKey};
use jose_binding_e2e::{fixtures, TempDir};

const CLIENT: &str = env!("CARGO_BIN_EXE_jwt-client");

/// jwt-server, built beside jwt-client by the workspace's test run.
fn server_bin() -> PathBuf {
    let bin = Path::new(CLIENT).with_file_name("jwt-server");
    assert!(
        bin.exists(),
        "{} is missing: run the tests for the workspace (`cargo nextest run --workspace`), which builds it",
        bin.display()
    );
    bin
}

/// A jwt-server with --enroll on its own keystore, and everything any
/// command printed, for the secrets check.
struct Enrolling {
    dir: TempDir,
    keystore: PathBuf,
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    printed: Vec<String>,
    /// Every invite secret and root key seen, base64url.
    secrets: Vec<String>,
}

impl Drop for Enrolling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Enrolling {
    fn start(name: &str) -> Enrolling {
        let dir = TempDir::new(name);
        let keystore = dir.join("keystore.toml");
        Keystore::default().save_atomic(&keystore).unwrap();
        Enrolling::start_on(dir, keystore, &["--enroll"])
    }

    /// A server on `keystore` with `args`, its log kept.
    fn start_on(dir: TempDir, keystore: PathBuf, args: &[&str]) -> Enrolling {
        let mut child = server_cmd(&keystore)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jwt-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("jwt-server ready") {
                    let _ = tx.send(line.clone());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no ready line: {:?}", log.lock().unwrap()));
        let at = ready.find(" listen=127.0.0.1:").unwrap() + 18;
        let port = ready[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Enrolling {
            dir,
            keystore,
            child,
            port,
            log,
            printed: Vec::new(),
            secrets: Vec::new(),
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// jwt-server keys ..., on this server's keystore and certificate.
    fn keys(&mut self, args: &[&str]) -> Output {
        let out = server_cmd(&self.keystore)
            .arg("keys")
            .args(args)
            .output()
            .unwrap();
        self.printed
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
        out
    }

    /// `keys invite NAME` and the line, once the server has reloaded it.
    fn invite(&mut self, name: &str) -> String {
        let seen = self.log.lock().unwrap().len();
        let url = self.url();
        let out = self.keys(&["invite", name, "--advertise", &url, "--stdout"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(line.starts_with("jb1."), "{line}");
        let ks = Keystore::load(&self.keystore).unwrap();
        self.secrets
            .push(ks.invite(name).unwrap().secret().to_b64url().to_string());
        self.wait_log("keystore reloaded", seen);
        line
    }

    /// Waits for a log line with `needle` after the first `after` lines.
    fn wait_log(&self, needle: &str, after: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.log.lock().unwrap()[after..]
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// jwt-client with `args` and `env` only (no JWT_* from outside).
    fn client(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = client_cmd(args, env).output().unwrap();
        self.printed
            .push(String::from_utf8_lossy(&out.stdout).into_owned());
        self.printed
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
        out
    }

    /// `jwt-client enroll LINE --config-dir DIR`, which must succeed; the
    /// key it wrote joins the secrets checked.
    fn enroll_ok(&mut self, line: &str, dir: &Path) {
        let out = self.client(
            &["enroll", line, "--config-dir", dir.to_str().unwrap()],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out));
        self.key_of(dir);
    }

    /// Records the root key a config dir holds, for the secrets check.
    fn key_of(&mut self, config_dir: &Path) -> String {
        let key = std::fs::read_to_string(config_dir.join("client.key")).unwrap();
        let key = key.trim().to_owned();
        self.secrets.push(key.clone());
        key
    }

    /// No secret seen in any output or in the server's log, whole or in
    /// part.
    fn assert_no_secrets(&self) {
        let log = self.log.lock().unwrap().join("\n");
        assert!(!self.secrets.is_empty());
        for s in &self.secrets {
            // A long secret in part too (a key is 43 characters); a PIN whole.
            let part = if s.len() > 24 { &s[4..24] } else { s.as_str() };
            for text in self.printed.iter().chain([&log]) {
                assert!(!text.contains(part), "a secret in {text:?}");
            }
        }
    }
}

fn server_cmd(keystore: &Path) -> Command {
    let mut cmd = Command::new(server_bin());
    cmd.arg("--cert")
        .arg(fixtures().join("server.pem"))
        .arg("--key")
        .arg(fixtures().join("server.key"))
        .arg("--keystore")
        .arg(keystore)
        .env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("JWT_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn client_cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(CLIENT);
    cmd.args(args).env("NO_COLOR", "1").current_dir("/");
    for (k, _) in std::env::vars() {
        if k.starts_with("JWT_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A connection to the invite's server, accepted by its pin, as its
/// client with root key `secret` (the invite's, or a guess).
async fn connect_as(invite: &Invite, secret: &[u8; 32]) -> BoundConnection {
    let key = Arc::new(SoftwareRootKey::new(secret).unwrap());
    let (setup, _) = ClientSetup::pinned(
        invite.pin,
        HttpVersion::Http1,
        invite.client_id.clone(),
        key,
    )
    .unwrap();
    let target = Target::parse(&invite.url).unwrap();
    BoundConnection::connect(&target, &setup).await.unwrap()
}

/// `POST /v1/enroll` with `token` on `conn`.
async fn enrol_with(conn: &mut BoundConnection, token: &str) -> jose_binding::client::Reply {
    conn.request(http::Method::POST, "/v1/enroll", Some(token))
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn refused(o: &Output, want: &str) {
    let t = text(o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains(want), "{t:?} lacks {want:?}");
}

/// invite, enroll with --config-dir, then `send` and `proxy` with nothing
/// but the config dir in the environment; the same line a second time is
/// refused and the first client goes on.
#[test]
fn an_invite_enrols_once_and_send_and_proxy_need_no_flags() {
    let mut s = Enrolling::start("enroll-once");
    let line = s.invite("client7");
    let cfg = s.dir.join("cfg");
    let cfg_arg = cfg.to_str().unwrap().to_owned();
    let out = s.client(&["enroll", &line, "--config-dir", &cfg_arg], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("enrolled as client7"), "{}", text(&out));
    let key = s.key_of(&cfg);
    use std::os::unix::fs::PermissionsExt;
    for f in ["client.key", "config.toml"] {
        let mode = std::fs::metadata(cfg.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // The server holds the same key, and no invite any more.
    let ks = Keystore::load(&s.keystore).unwrap();
    assert_eq!(ks.get("client7").unwrap().keys[0].to_b64url().as_str(), key);
    assert!(ks.invite("client7").is_none());

    let env = [("JWT_CLIENT_CONFIG_DIR", cfg_arg.as_str())];
    let out = s.client(&["send", "--claims", r#"{"role":"ops"}"#], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#""client_id":"client7""#),
        "{}",
        text(&out)
    );

    let mut proxy = client_cmd(&["proxy", "--listen", "127.0.0.1:0"], &env)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, rest) = jose_binding_e2e::proxy_ready(proxy.stderr.take().unwrap());
    let answer = jose_binding_e2e::post_claims(&addr);
    let _ = proxy.kill();
    let _ = proxy.wait();
    s.printed.extend(rest.join().unwrap());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""client_id":"client7""#), "{answer}");

    // The line again, on another machine: refused; the first client goes on.
    let other = s.dir.join("other");
    let out = s.client(
        &["enroll", &line, "--config-dir", other.to_str().unwrap()],
        &[],
    );
    refused(&out, "the server refused the invite");
    assert!(!other.join("config.toml").exists());
    s.wait_log("invite_used_or_client_exists", 0);
    let out = s.client(&["send"], &env);
    assert!(out.status.success(), "{}", text(&out));
    // And again on the first: its configuration is not overwritten.
    let out = s.client(&["enroll", &line, "--config-dir", &cfg_arg], &[]);
    refused(&out, "pass --force");
    s.assert_no_secrets();
}

/// Expired (on the server, with a line that still looks valid), revoked,
/// and never-made invites get one and the same answer; the reason is in
/// the server's log only.
#[test]
fn expired_revoked_and_unknown_invites_get_the_same_answer() {
    let mut s = Enrolling::start("enroll-refusals");
    let expired = s.invite("expired");
    // Expire it in the keystore: the line still says tomorrow.
    let text_ks = std::fs::read_to_string(&s.keystore).unwrap();
    let at = text_ks.find("expires = ").unwrap();
    let end = at + text_ks[at..].find('\n').unwrap();
    let seen = s.log_len();
    std::fs::write(
        &s.keystore,
        format!("{}expires = 1000{}", &text_ks[..at], &text_ks[end..]),
    )
    .unwrap();
    s.wait_log("keystore reloaded", seen);
    let revoked = s.invite("revoked");
    let seen = s.log_len();
    let out = s.keys(&["revoke-invite", "revoked"]);
    assert!(out.status.success(), "{}", text(&out));
    s.wait_log("keystore reloaded", seen);
    let out = s.keys(&["invites", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains(r#""state":"expired""#) && !listed.contains("revoked"),
        "{listed}"
    );

    let real = Invite::parse(&revoked).unwrap();
    let never = Invite::new(
        &real.url,
        real.pin,
        ClientId::new("ghost").unwrap(),
        zeroize::Zeroizing::new([9; 32]),
        real.expires,
    )
    .unwrap()
    .line()
    .to_string();
    let mut answers = Vec::new();
    for (line, reason) in [
        (expired, "invite_expired"),
        (revoked, "invite_unknown_or_revoked"),
        (never, "invite_unknown_or_revoked"),
    ] {
        let dir = s.dir.join(reason);
        let out = s.client(
            &["enroll", &line, "--config-dir", dir.to_str().unwrap()],
            &[],
        );
        refused(&out, "the server refused the invite");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        answers.push(said.lines().last().unwrap_or_default().to_owned());
        s.wait_log(reason, 0);
        assert!(!dir.join("config.toml").exists());
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one answer for all: {answers:?}"
    );
    s.assert_no_secrets();
}

/// A mistyped line and a line whose pin is not this server's are refused
/// before any token is sent: the server logs no enrolment request.
#[test]
fn a_mistyped_line_and_a_wrong_pin_send_nothing() {
    let mut s = Enrolling::start("enroll-before-sending");
    let line = s.invite("client7");
    let mut typo = line.clone().into_bytes();
    let i = typo.len() / 2;
    typo[i] = if typo[i] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let real = Invite::parse(&line).unwrap();
    // The real line with another pin or expiry.
    let variant = |pin: Pin, expires: u64| {
        Invite::new(
            &real.url,
            pin,
            real.client_id.clone(),
            real.secret.clone(),
            expires,
        )
        .unwrap()
        .line()
        .to_string()
    };
    let cases = [
        (typo, "mistyped or cut short"),
        (line[..line.len() - 3].to_owned(), "copy the line again"),
        (
            variant(Pin::CaCertificate([7; 32]), real.expires),
            "is not the one the invite names ",
        ),
        (
            variant(Pin::ServerKey([7; 32]), real.expires),
            "is not the one the invite names ",
        ),
        // Long past its expiry: refused without connecting.
        (variant(real.pin, 1_000), "expired at 1970-01-01T00:16:40Z"),
    ];
    let dir = s.dir.join("c");
    for (bad, want) in cases {
        let out = s.client(
            &["enroll", &bad, "--config-dir", dir.to_str().unwrap()],
            &[],
        );
        refused(&out, want);
        refused(&out, "nothing was sent");
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = s.log.lock().unwrap().join("\n");
    assert!(
        !log.contains("/v1/enroll"),
        "no enrolment request reached the server: {log}"
    );
    assert!(!dir.join("config.toml").exists());
    // The invite is untouched: the real line still enrols.
    s.enroll_ok(&line, &dir);
    s.assert_no_secrets();
}

/// A thief who captured the enrolment token replays it on a connection of
/// its own: refused, and the invite still enrols its rightful client.
#[test]
fn a_captured_enrolment_token_is_worthless_on_another_connection() {
    let mut s = Enrolling::start("enroll-replay");
    let line = s.invite("client7");
    let invite = Invite::parse(&line).unwrap();
    let thief = block_on(async {
        let victim = connect_as(&invite, &invite.secret).await;
        let token = victim.token(Form::Signed, &serde_json::json!({})).unwrap();
        // The thief has the token, and even the line's secret: not the
        // victim's connection.
        let mut thief = connect_as(&invite, &invite.secret).await;
        enrol_with(&mut thief, &token).await
    });
    assert_eq!(
        thief.status,
        401,
        "{:?}",
        String::from_utf8_lossy(&thief.body)
    );
    assert_eq!(
        thief.error_code(),
        Some(jose_binding::ErrorCode::BadSignature)
    );
    let ks = Keystore::load(&s.keystore).unwrap();
    assert!(
        ks.invite("client7").is_some(),
        "the invite is still pending"
    );
    s.enroll_ok(&line, &s.dir.join("c"));
    s.assert_no_secrets();
}

/// Attempts from one address beyond a burst are refused with 429 before
/// any token is checked; the invite stays usable.
#[test]
fn enrolment_attempts_are_rate_limited_per_source() {
    let mut s = Enrolling::start("enroll-rate");
    let line = s.invite("client7");
    let real = Invite::parse(&line).unwrap();
    let statuses = block_on(async {
        // A guesser: the right id, a wrong secret.
        let mut conn = connect_as(&real, &[5; 32]).await;
        let mut statuses = Vec::new();
        for _ in 0..12 {
            let token = conn.token(Form::Signed, &serde_json::json!({})).unwrap();
            statuses.push(enrol_with(&mut conn, &token).await.status);
        }
        statuses
    });
    let limited = statuses.iter().filter(|&&c| c == 429).count();
    assert!(statuses[..4].iter().all(|&c| c == 401), "{statuses:?}");
    assert!(limited >= 6, "a burst of 4, then 2 a second: {statuses:?}");
    std::thread::sleep(Duration::from_millis(1500));
    s.enroll_ok(&line, &s.dir.join("c"));
    s.assert_no_secrets();
}

/// Two clients enrolling at the same moment: both succeed, and the
/// keystore holds both (the writes are serialised, neither is lost). The
/// lines are read from stdin.
#[test]
fn two_clients_enrol_at_once() {
    let mut s = Enrolling::start("enroll-two");
    let a = s.invite("alpha");
    let b = s.invite("beta");
    let (da, db) = (s.dir.join("a"), s.dir.join("b"));
    // Each line goes in on stdin (`enroll -`), out of the process list.
    let spawn = |line: &str, dir: &Path| {
        let mut child = client_cmd(&["enroll", "-", "--config-dir", dir.to_str().unwrap()], &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        child
    };
    let (pa, pb) = (spawn(&a, &da), spawn(&b, &db));
    for p in [pa, pb] {
        let out = p.wait_with_output().unwrap();
        s.printed.push(text(&out));
        assert!(out.status.success(), "{}", text(&out));
    }
    let ks = Keystore::load(&s.keystore).unwrap();
    assert!(
        ks.get("alpha").is_some() && ks.get("beta").is_some(),
        "both kept"
    );
    assert_eq!(ks.invites().count(), 0);
    let (ka, kb) = (s.key_of(&da), s.key_of(&db));
    assert_ne!(ka, kb);
    for dir in [&da, &db] {
        let out = s.client(&["send", "--config-dir", dir.to_str().unwrap()], &[]);
        assert!(out.status.success(), "{}", text(&out));
    }
    s.assert_no_secrets();
}

/// A fleet: a replica without --enroll serves the clients, one with it
/// enrols on its own port and tells clients the fleet's URL; the new
/// client works against the fleet at once, which read it from the shared
/// keystore.
#[test]
fn a_fleet_replica_picks_up_a_client_enrolled_on_the_enrolling_one() {
    let mut fleet = Enrolling::start("enroll-fleet");
    let keystore = fleet.keystore.clone();
    // The fleet replica: no --enroll.
    let dir = TempDir::new("enroll-fleet-replica");
    let mut replica = Enrolling::start_on(dir, keystore.clone(), &[]);
    // `fleet` was started with --enroll; restart it as the enrolling one
    // with the replica's URL for clients.
    let _ = fleet.child.kill();
    let _ = fleet.child.wait();
    let client_url = replica.url();
    let dir = TempDir::new("enroll-fleet-enroller");
    let mut enroller = Enrolling::start_on(
        dir,
        keystore,
        &["--enroll", "--enroll-client-url", &client_url],
    );
    let line = enroller.invite("client7");
    let cfg = enroller.dir.join("cfg");
    let out = enroller.client(
        &["enroll", &line, "--config-dir", cfg.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let config = std::fs::read_to_string(cfg.join("config.toml")).unwrap();
    assert!(
        config.contains(&format!("server = \"{client_url}\"")),
        "{config}"
    );
    let seen = replica.log_len();
    let out = enroller.client(&["send", "--config-dir", cfg.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    replica.wait_log("path=\"/v1/claims\" status=200 client=client7", seen);
    // The replica without --enroll does not enrol.
    let out = enroller.client(
        &[
            "send",
            "--config-dir",
            cfg.to_str().unwrap(),
            "--method",
            "POST",
            "--path",
            "/v1/enroll",
        ],
        &[],
    );
    assert!(text(&out).contains("404"), "{}", text(&out));
    enroller.key_of(&cfg);
    replica.secrets = enroller.secrets.clone();
    enroller.assert_no_secrets();
    replica.assert_no_secrets();
}

/// A server without --enroll says so; the invite stays usable.
#[test]
fn a_server_without_enroll_says_what_to_do() {
    let dir = TempDir::new("enroll-off");
    let keystore = dir.join("keystore.toml");
    Keystore::default().save_atomic(&keystore).unwrap();
    let mut child = server_cmd(&keystore)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("jwt-server ready"))
        .unwrap();
    // Keep reading, so the server never writes to a closed pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).count());
    let at = ready.find(" listen=127.0.0.1:").unwrap() + 18;
    let port: u16 = ready[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let url = format!("https://localhost:{port}");
    let out = server_cmd(&keystore)
        .args(["keys", "invite", "c1", "--advertise", &url, "--stdout"])
        .output()
        .unwrap();
    assert!(
        text(&out).contains("only at a server started with --enroll"),
        "{}",
        text(&out)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let out = client_cmd(
        &[
            "enroll",
            line.trim(),
            "--config-dir",
            dir.join("c").to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    refused(&out, "start jwt-server with --enroll");
    // Refused as an operator would be told: an advertised host that is not the audience.
    let out = server_cmd(&keystore)
        .args([
            "keys",
            "invite",
            "c2",
            "--advertise",
            "https://api.example:8443",
            "--stdout",
        ])
        .output()
        .unwrap();
    refused(&out, "is not the server's audience");
}

/// The offline bundle, plain and sealed with age: installed without a
/// connection, then `send` works with no flags; a sealed one needs its
/// identity, and a tampered one of either kind is refused.
#[test]
fn an_offline_bundle_plain_or_sealed_installs_and_tampering_is_refused() {
    use age::secrecy::ExposeSecret;
    let mut s = Enrolling::start("enroll-bundle");
    let url = s.url();
    let plain = s.dir.join("c9.bundle");
    let seen = s.log_len();
    let out = s.keys(&[
        "add",
        "client9",
        "--bundle",
        plain.to_str().unwrap(),
        "--advertise",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    s.wait_log("keystore reloaded", seen);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key9 = Keystore::load(&s.keystore)
        .unwrap()
        .get("client9")
        .unwrap()
        .keys[0]
        .to_b64url()
        .to_string();
    s.secrets.push(key9);

    // Tampered: the server's URL changed, the key kept.
    let text_plain = std::fs::read_to_string(&plain).unwrap();
    let tampered = s.dir.join("tampered.bundle");
    std::fs::write(
        &tampered,
        text_plain.replace("\"audience\":\"localhost\"", "\"audience\":\"evil\""),
    )
    .unwrap();
    let d = s.dir.join("t");
    let out = s.client(
        &[
            "enroll",
            tampered.to_str().unwrap(),
            "--config-dir",
            d.to_str().unwrap(),
        ],
        &[],
    );
    refused(&out, "damaged or edited");
    assert!(!d.join("config.toml").exists());

    let d9 = s.dir.join("c9");
    let out = s.client(
        &[
            "enroll",
            plain.to_str().unwrap(),
            "--config-dir",
            d9.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("installed the bundle for client9"),
        "{}",
        text(&out)
    );
    let out = s.client(
        &["send"],
        &[("JWT_CLIENT_CONFIG_DIR", d9.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Sealed to an age key.
    let id = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    let (id_file, other_file) = (s.dir.join("me.age"), s.dir.join("other.age"));
    std::fs::write(&id_file, format!("{}\n", id.to_string().expose_secret())).unwrap();
    std::fs::write(
        &other_file,
        format!("{}\n", other.to_string().expose_secret()),
    )
    .unwrap();
    let sealed = s.dir.join("c10.bundle");
    let seen = s.log_len();
    let recipient = id.to_public().to_string();
    let out = s.keys(&[
        "add",
        "client10",
        "--bundle",
        sealed.to_str().unwrap(),
        "--to",
        &recipient,
        "--advertise",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    s.wait_log("keystore reloaded", seen);
    let key10 = Keystore::load(&s.keystore)
        .unwrap()
        .get("client10")
        .unwrap()
        .keys[0]
        .to_b64url()
        .to_string();
    let sealed_text = std::fs::read_to_string(&sealed).unwrap();
    assert!(
        sealed_text.contains("BEGIN AGE ENCRYPTED FILE"),
        "{sealed_text}"
    );
    assert!(!sealed_text.contains(&key10[..16]), "the key is sealed");
    s.secrets.push(key10);
    let d10 = s.dir.join("c10");
    let d10_arg = d10.to_str().unwrap().to_owned();
    let out = s.client(
        &["enroll", sealed.to_str().unwrap(), "--config-dir", &d10_arg],
        &[],
    );
    refused(&out, "give the age identity");
    let out = s.client(
        &[
            "enroll",
            sealed.to_str().unwrap(),
            "--config-dir",
            &d10_arg,
            "--identity",
            other_file.to_str().unwrap(),
        ],
        &[],
    );
    refused(&out, "none of the given age identities");
    // One base64 character of the ciphertext changed.
    let mut bytes = sealed_text.clone().into_bytes();
    let at = sealed_text
        .find("-----BEGIN AGE ENCRYPTED FILE-----")
        .unwrap()
        + 100;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let damaged = s.dir.join("damaged.bundle");
    std::fs::write(&damaged, bytes).unwrap();
    let out = s.client(
        &[
            "enroll",
            damaged.to_str().unwrap(),
            "--config-dir",
            &d10_arg,
            "--identity",
            id_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!d10.join("config.toml").exists());
    let out = s.client(
        &[
            "enroll",
            sealed.to_str().unwrap(),
            "--config-dir",
            &d10_arg,
            "--identity",
            id_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = s.client(&["send", "--config-dir", &d10_arg], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#""client_id":"client10""#),
        "{}",
        text(&out)
    );
    s.assert_no_secrets();
}

/// The root key goes into the TPM (swtpm) under a PIN and a PCR policy,
/// and never to disk; `send` then runs from the configuration alone (its
/// PIN file included).
#[cfg(feature = "tpm")]
#[test]
fn enrol_into_a_tpm() {
    let tpm = jose_binding_e2e::swtpm::Swtpm::start();
    let mut s = Enrolling::start("enroll-tpm");
    let line = s.invite("client7");
    let cfg = s.dir.join("cfg");
    let out_key = cfg.join("client7.tpm.pem");
    // With a PIN (from a file, as a service would) and a PCR policy.
    let pin = s.dir.join("tpm.pin");
    std::fs::write(&pin, "8642-good\n").unwrap();
    s.secrets.push("8642-good".into());
    let out = s.client(
        &[
            "enroll",
            &line,
            "--config-dir",
            cfg.to_str().unwrap(),
            "--tpm-key",
            out_key.to_str().unwrap(),
            "--tcti",
            &tpm.tcti(),
            "--pin",
            "--tpm-pin-file",
            pin.to_str().unwrap(),
            "--pcr-policy",
            "sha256:0,7",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("key never on disk"), "{}", text(&out));
    assert!(!cfg.join("client.key").exists());
    let config = std::fs::read_to_string(cfg.join("config.toml")).unwrap();
    assert!(config.contains("tpm_pin_file = "), "{config}");
    assert!(out_key.exists());
    let ks = Keystore::load(&s.keystore).unwrap();
    s.secrets
        .push(ks.get("client7").unwrap().keys[0].to_b64url().to_string());
    let out = s.client(&["send", "--config-dir", cfg.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    s.assert_no_secrets();
}
