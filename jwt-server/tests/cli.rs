//! The jwt-server binary as an operator runs it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Target};
use jose_binding::{tls, ClientId, Form, Keystore, SoftwareRootKey};
use jose_binding_e2e::{fixtures, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_jwt-server");

fn run(args: &[&str], keystore: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("JWT_KEYSTORE", keystore)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn keys_add_rotate_list_remove() {
    let dir = TempDir::new("keys");
    let ks = dir.join("keystore.toml");

    let out = run(&["keys", "add", "c9", "--stdout"], &ks);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_line = String::from_utf8(out.stdout).unwrap();
    let key = SoftwareRootKey::from_b64url(&key_line).expect("stdout is the key file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("fp="));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&ks).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let store = Keystore::load(&ks).unwrap();
    assert_eq!(store.get("c9").unwrap().keys[0].expose(), key.expose());

    let again = run(&["keys", "add", "c9"], &ks);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let key_out = dir.join("c9.key");
    // An existing, world-readable file at the target: the key must not land
    // in it with that mode.
    std::fs::write(
        &key_out,
        "old contents that are longer than a key line, to check truncation\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_out, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = run(
        &[
            "keys",
            "rotate",
            "c9",
            "--key-out",
            key_out.to_str().unwrap(),
        ],
        &ks,
    );
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "with --key-out nothing secret goes to stdout"
    );
    let rotated = SoftwareRootKey::from_file(&key_out).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "an existing key file is tightened to 0600");
    }
    let store = Keystore::load(&ks).unwrap();
    let keys = &store.get("c9").unwrap().keys;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].expose(), rotated.expose());
    assert_eq!(keys[1].expose(), key.expose());

    let out = run(&["keys", "list", "--json"], &ks);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["client_id"], "c9");
    assert_eq!(list[0]["key_fingerprints"].as_array().unwrap().len(), 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(&*rotated.to_b64url()),
        "list never prints keys"
    );

    assert!(run(&["keys", "remove", "c9", "--previous"], &ks)
        .status
        .success());
    assert_eq!(
        Keystore::load(&ks).unwrap().get("c9").unwrap().keys.len(),
        1
    );
    assert!(run(&["keys", "remove", "c9"], &ks).status.success());
    assert!(Keystore::load(&ks).unwrap().get("c9").is_none());
    assert_eq!(run(&["keys", "add", "bad id"], &ks).status.code(), Some(2));
}

#[test]
fn help_teaches() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["Examples", "--keystore", "JWT_KEYSTORE", "SIGHUP", "keys"] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn missing_fixtures_give_a_hint_not_a_panic() {
    let dir = TempDir::new("nofix");
    let out = Command::new(BIN)
        .arg("--dev")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run from the repository root"), "{err}");
}

/// Kills the server if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serves_from_a_config_file_and_stops_on_sigterm() {
    let dir = TempDir::new("serve");
    let ks_path = dir.join("keystore.toml");
    let out = run(&["keys", "add", "svc", "--stdout"], &ks_path);
    let key = SoftwareRootKey::from_b64url(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\nkeystore = {:?}\nforms = [\"signed\"]\n",
            fixtures().join("server.pem"),
            fixtures().join("server.key"),
            ks_path
        ),
    )
    .unwrap();
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(["--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .env_remove("JWT_KEYSTORE")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("server prints a ready line").unwrap();
        assert!(
            !line.contains('\x1b'),
            "no colour codes when stderr is not a terminal: {line:?}"
        );
        if line.contains("jwt-server ready") {
            let at = line
                .find("listen=127.0.0.1:")
                .expect("listen address logged")
                + 17;
            break line[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    let roots = tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let setup = ClientSetup::new(
        roots,
        HttpVersion::Auto,
        ClientId::new("svc").unwrap(),
        std::sync::Arc::new(key.clone()),
    )
    .unwrap();
    let target = Target::parse(&format!("https://localhost:{port}")).unwrap();
    let mut conn = BoundConnection::connect(&target, &setup).await.unwrap();
    let r = conn
        .send(Form::Signed, &serde_json::json!({"x": 1}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = conn
        .send(Form::SignedThenEncrypted, &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        r.error_code().map(jose_binding::ErrorCode::as_str),
        Some("form_not_allowed"),
        "forms from the config file"
    );

    // SIGHUP reloads the keystore at once.
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let done = line.contains("keystore reloaded");
        seen.push(line);
        if done {
            break;
        }
    }
    let reload_line = seen.last().expect("server log continues");
    assert!(
        reload_line.contains("keystore reloaded") && reload_line.contains("clients=1"),
        "SIGHUP reload is logged: {seen:?}"
    );

    // Close the client first: an open HTTP/2 connection whose peer cannot
    // answer GOAWAY (this test thread blocks below) would hold shutdown for
    // the whole grace period.
    drop(conn);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    seen.extend(lines.map_while(Result::ok));
    assert!(child.0.wait().unwrap().success(), "clean exit on SIGTERM");
    let log = seen.join("\n");
    assert!(
        log.contains("outcome=ok") && log.contains("outcome=form_not_allowed"),
        "{log}"
    );
    assert!(log.contains("jwt-server stopped"), "{log}");
    assert!(
        !log.contains(&*key.to_b64url()),
        "the log never holds the key"
    );
}

/// The limits are read from the config file and the environment: a
/// handshake timeout of 1 s (env) closes a silent TCP connection, an
/// authentication deadline of 2 s (file) closes a TLS connection that
/// presents no token, and a connection with an accepted token outlives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_come_from_the_config_file_and_the_environment() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;
    let dir = TempDir::new("limits");
    let config = dir.join("server.toml");
    std::fs::write(&config, "auth_timeout_secs = 2\n").unwrap();
    let server = jose_binding_e2e::process::ServerProcess::start_with_env(
        BIN.as_ref(),
        &["--config", config.to_str().unwrap()],
        &[("JWT_HANDSHAKE_TIMEOUT_SECS", "1")],
        "info",
    );
    let port = server.port;
    let closed_after = async |mut s: tokio::net::TcpStream| {
        let t = Instant::now();
        let mut b = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
                Ok(Ok(0) | Err(_)) => return t.elapsed(),
                Ok(Ok(_)) => continue,
                Err(_) => panic!("not closed within 10 s"),
            }
        }
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let held = closed_after(tcp).await;
    assert!(
        held >= Duration::from_millis(800) && held < Duration::from_millis(2500),
        "silent TCP held {held:?}"
    );

    let setup = jose_binding_e2e::setup("client1", HttpVersion::Http1);
    let target = Target::parse(&format!("https://localhost:{port}")).unwrap();
    let started = Instant::now();
    let mut quiet = BoundConnection::connect(&target, &setup).await.unwrap();
    let mut busy = BoundConnection::connect(&target, &setup).await.unwrap();
    assert_eq!(
        busy.send(Form::Signed, &serde_json::json!({}))
            .await
            .unwrap()
            .status,
        200
    );
    // /healthz needs no token, and does not count as one.
    let r = quiet
        .request(http::Method::GET, "/healthz", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed())).await;
    assert!(
        quiet
            .send(Form::Signed, &serde_json::json!({}))
            .await
            .is_err(),
        "no token within the deadline: closed"
    );
    assert_eq!(
        busy.send(Form::Signed, &serde_json::json!({}))
            .await
            .unwrap()
            .status,
        200,
        "authenticated before the deadline: kept"
    );
}

/// The README's gateway ("Any HTTP service"), as an operator runs it:
/// examples/whoami.py as the app, the gateway's settings from a config
/// file and the environment, the status listener, and the app going away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_in_front_of_the_readme_app() {
    use jose_binding_e2e::upstream::{free_port, plain_get};
    let app_port = free_port();
    let mut app = KillOnDrop(
        Command::new("python3")
            .arg(fixtures().join("../examples/whoami.py"))
            .arg(app_port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut ready = String::new();
    BufReader::new(app.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains("listening"), "{ready}");

    let dir = TempDir::new("gateway-cli");
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!("upstream = \"http://127.0.0.1:{app_port}\"\npublic_paths = [\"/health\"]\n"),
    )
    .unwrap();
    let status_port = free_port();
    let status_addr = format!("127.0.0.1:{status_port}");
    let server = jose_binding_e2e::process::ServerProcess::start_with_env(
        BIN.as_ref(),
        &["--config", config.to_str().unwrap()],
        &[("JWT_STATUS_LISTEN", &status_addr)],
        "info",
    );
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    let setup = jose_binding_e2e::setup("client1", HttpVersion::Auto);
    let mut conn = BoundConnection::connect(&target, &setup).await.unwrap();
    let token = conn
        .token(
            Form::EncryptedThenSigned,
            &serde_json::json!({"role": "ops"}),
        )
        .unwrap();
    let r = conn
        .request(http::Method::GET, "/orders?id=7", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    assert_eq!(v["path"], "/orders?id=7");
    assert_eq!(v["client_id"], "client1");
    assert_eq!(v["form"], "encrypted-then-signed");
    assert_eq!(v["claims"]["role"], "ops");
    assert_eq!(v["forwarded_for"], "127.0.0.1");
    // The request id the upstream got is the one in the access line.
    let request_id = v["request_id"]
        .as_str()
        .expect("an X-Request-Id")
        .to_owned();
    assert!(request_id.len() == 32 && request_id.bytes().all(|b| b.is_ascii_hexdigit()));

    // A public path needs no token and carries no identity.
    let r = conn
        .request(http::Method::GET, "/health", None)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json().unwrap()["client_id"].clone()),
        (200, serde_json::Value::Null)
    );

    assert!(plain_get(status_port, "/readyz")
        .await
        .starts_with("HTTP/1.1 200"));

    // The app goes away: 502 on the same connection, /readyz says why.
    drop(app);
    let token = conn.token(Form::Signed, &serde_json::json!({})).unwrap();
    let r = conn
        .request(http::Method::GET, "/orders", Some(&token))
        .await
        .unwrap();
    assert_eq!(
        (r.status, &r.body[..]),
        (502, &br#"{"error":"bad_gateway"}"#[..])
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let not_ready = plain_get(status_port, "/readyz").await;
    assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
    assert!(not_ready.contains("upstream_unreachable"));
    assert!(plain_get(status_port, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    let log = server.first_lines().join("\n");
    assert!(
        log.contains(&format!("request_id=\"{request_id}\""))
            || log.contains(&format!("request_id={request_id}")),
        "{log}"
    );
    assert!(
        log.contains("upstream_error=\"upstream_unreachable\""),
        "{log}"
    );
    assert!(log.contains("upstream_status=200"), "{log}");
}

#[test]
fn gateway_and_balancer_settings_are_checked_before_serving() {
    for (args, want) in [
        (&["--upstream", "ftp://x"][..], "upstream"),
        (&["--upstream", "https://127.0.0.1:1"][..], "--upstream-ca"),
        (&["--proxy-protocol"][..], "needs --proxy-protocol-from"),
        (
            &["--proxy-protocol-from", "127.0.0.1"][..],
            "--proxy-protocol-from is for --proxy-protocol",
        ),
        (
            &["--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/33"][..],
            "--proxy-protocol-from: \"10.0.0.0/33\" is not a CIDR",
        ),
        (
            &[
                "--upstream",
                "http://127.0.0.1:1",
                "--trusted-proxies",
                "10.0.0.0/33",
            ][..],
            "--trusted-proxies",
        ),
        (
            &[
                "--upstream",
                "http://127.0.0.1:1",
                "--public-path",
                "health",
            ][..],
            "starts with /",
        ),
        (
            &[
                "--upstream",
                "http://127.0.0.1:1",
                "--public-websocket-path",
                "live",
            ][..],
            "--public-websocket-path \"live\": a prefix starts with /",
        ),
    ] {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(fixtures().join(".."))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// The man page and the completions come from the command line's own
/// definition: the page renders with man(1), and bash loads the script.
#[test]
fn man_page_and_completions_are_made_from_the_definition() {
    let dir = std::env::temp_dir();
    let shipped = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let out = shipped(&["man"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH jwt-server"),
        "{page}"
    );
    for flag in ["\\-\\-keystore", "\\-\\-enroll", "keys"] {
        assert!(page.contains(flag), "the page documents {flag}");
    }
    let path = dir.join(format!("jwt-server-{}.1", std::process::id()));
    std::fs::write(&path, &page).unwrap();
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .expect("man(1): apt-get install man-db");
    let _ = std::fs::remove_file(&path);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(String::from_utf8_lossy(&rendered.stdout).contains("keystore"));

    let out = shipped(&["completions", "bash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout).unwrap();
    let loaded = Command::new("bash")
        .args(["-c", "source /dev/stdin && complete -p jwt-server"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(loaded.status.success(), "bash loads the script");
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("jwt-server"));
    for shell in ["zsh", "fish"] {
        let out = shipped(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
}
