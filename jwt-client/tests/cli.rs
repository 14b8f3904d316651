//! The jwt-client binary as a user runs it.

use std::process::{Command, Output};

use jose_binding::Policy;
use jose_binding_e2e::{fixture_keystore, fixtures, TempDir, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_jwt-client");

/// Asserts the command succeeded, showing its output if not.
#[track_caller]
fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_shows_the_binding_and_prints_no_key() {
    let out = Command::new(BIN)
        .arg("demo")
        .current_dir(fixtures().join(".."))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    ok(&out);
    assert_eq!(text.matches("[as expected]").count(), 6, "{text}");
    assert!(
        text.contains("401 bad_signature") && text.contains("401 replayed"),
        "{text}"
    );
    let key = std::fs::read_to_string(fixtures().join("client1.key")).unwrap();
    assert!(!text.contains(key.trim()), "demo never prints the root key");
}

#[test]
fn demo_json_lines_parse() {
    let out = Command::new(BIN).args(["demo", "--json"]).output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| l["as_expected"] == true));
}

fn send(port: u16, extra: &[&str], key: &str) -> std::process::Output {
    Command::new(BIN)
        .arg("send")
        .args(["--server", &format!("https://localhost:{port}")])
        .args(extra)
        .env("JWT_CA", fixtures().join("ca.pem"))
        .env("JWT_CLIENT_ID", "client1")
        .env("JWT_KEY_FILE", fixtures().join(key))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn send_with_env_vars_count_and_json() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let port = server.port;
    let claims = fixtures().join("../target/send-claims.json");
    std::fs::write(&claims, r#"{"role":"ops"}"#).unwrap();
    let claims_arg = format!("@{}", claims.display());
    let out = tokio::task::spawn_blocking(move || {
        send(
            port,
            &[
                "--form",
                "signed-then-encrypted",
                "--count",
                "3",
                "--json",
                "--claims",
                &claims_arg,
            ],
            "client1.key",
        )
    })
    .await
    .unwrap();
    ok(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["status"], 200);
        assert_eq!(l["body"]["form"], "signed-then-encrypted");
        assert_eq!(l["body"]["claims"]["role"], "ops");
    }

    // The wrong root key for client1: every request refused, exit status 1.
    let out = tokio::task::spawn_blocking(move || send(port, &["--count", "2"], "client2.key"))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bad_signature"));

    // Usage errors exit 2.
    let out = tokio::task::spawn_blocking(move || send(port, &["--claims", "[1]"], "client1.key"))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    server.stop().await;
}

#[cfg(feature = "tpm")]
#[tokio::test(flavor = "multi_thread")]
async fn tpm_import_then_send_and_demo_with_the_tpm_key() {
    use jose_binding_e2e::swtpm::Swtpm;
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let dir = tpm.state.join("client");
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("client1.key");
    std::fs::copy(fixtures().join("client1.key"), &key_file).unwrap();
    let tpm_file = dir.join("client1.tpm");

    let out = Command::new(BIN)
        .args(["tpm", "import", "--delete-key-file", "--tcti", &tcti])
        .arg("--key-file")
        .arg(&key_file)
        .arg("--out")
        .arg(&tpm_file)
        .output()
        .unwrap();
    ok(&out);
    assert!(
        !key_file.exists(),
        "--delete-key-file removed the plaintext key"
    );
    let pem = std::fs::read_to_string(&tpm_file).unwrap();
    assert!(pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fixedTPM|fixedParent"), "{stderr}");
    assert!(
        !stderr.contains("TPM2_") && !stderr.contains("ERROR:esys"),
        "no libtss2 noise: {stderr}"
    );

    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let url = server.url();
    for session in ["salted", "password"] {
        let mut send = Command::new(BIN);
        send.args([
            "send",
            "--server",
            &url,
            "--client-id",
            "client1",
            "--form",
            "ES",
            "--count",
            "2",
            "--json",
        ])
        .args(["--tcti", &tcti, "--tpm-session", session])
        .arg("--tpm-key")
        .arg(&tpm_file)
        .env("JWT_CA", fixtures().join("ca.pem"))
        .env_remove("JWT_KEY_FILE");
        let out = jose_binding_e2e::output(send).await;
        assert!(
            out.status.success(),
            "{session}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .matches("\"status\":200")
                .count(),
            2
        );
    }
    server.stop().await;

    let out = Command::new(BIN)
        .args(["demo", "--json", "--tcti", &tcti])
        .arg("--tpm-key")
        .arg(&tpm_file)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("\"as_expected\":true")
            .count(),
        6
    );

    // A TPM that is not there: a clear error, exit 2, no hang.
    let out = Command::new(BIN)
        .args([
            "send",
            "--client-id",
            "client1",
            "--tcti",
            "swtpm:host=127.0.0.1,port=9",
        ])
        .arg("--tpm-key")
        .arg(&tpm_file)
        .env("JWT_CA", fixtures().join("ca.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the TPM"), "{err}");
}

#[test]
fn broken_stdout_pipe_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success());
}

/// `jwt-client bench --json` against the local server with the fixture CA
/// and key, run off the async threads (the server shares the runtime).
async fn bench(port: u16, token_file: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["bench", "--server", &format!("https://localhost:{port}")])
        .args(["--client-id", "client1", "--json"])
        .args(args)
        .arg("--baseline-token-file")
        .arg(token_file)
        .env("JWT_CA", fixtures().join("ca.pem"))
        .env("JWT_KEY_FILE", fixtures().join("client1.key"));
    jose_binding_e2e::output(cmd).await
}

#[track_caller]
fn stdout_json(out: &Output) -> serde_json::Value {
    ok(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_runs_bound_and_baseline_and_reports_json() {
    use jose_binding::echo::EchoApp;
    use jose_binding::server::ServerOptions;
    let token = "bench-baseline-token-0123456789";
    let server = TestServer::start_with(
        Policy::default(),
        fixture_keystore(),
        ServerOptions::default(),
        |l| EchoApp::new(l).with_baseline(token.as_bytes()),
    )
    .await;
    let dir = TempDir::new("bench");
    let token_file = dir.join("baseline.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let port = server.port;

    let args = ["--connections", "3", "--requests", "20", "--rounds", "2"];
    let v = stdout_json(&bench(port, &token_file, &[&args[..], &["--form", "ES"]].concat()).await);
    assert_eq!(v["rounds"].as_array().unwrap().len(), 2);
    for run in v["median_runs"].as_array().unwrap() {
        assert_eq!(run["ok"], 60, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
    }
    assert!(v["bound_over_baseline_throughput"].as_f64().unwrap() > 0.0);
    let client_cpu = &v["median_runs"][0]["client_cpu_us_per_request"];
    assert!(
        client_cpu.as_f64().is_some_and(|c| c >= 0.0),
        "{client_cpu}"
    );

    // `--only`: one run per round, and no ratio to report.
    for (only, name) in [
        ("baseline", "baseline (static bearer)"),
        ("bound", "bound signed"),
    ] {
        let args = ["--connections", "2", "--requests", "5", "--rounds", "1"];
        let v =
            stdout_json(&bench(port, &token_file, &[&args[..], &["--only", only]].concat()).await);
        let runs = v["rounds"][0].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{v}");
        assert_eq!(runs[0]["run"], name);
        assert_eq!(runs[0]["ok"], 10);
        assert!(v["bound_over_baseline_throughput"].is_null(), "{v}");
    }
    let out = Command::new(BIN)
        .args(["bench", "--server", &format!("https://localhost:{port}")])
        .args(["--client-id", "client1", "--only", "baseline"])
        .env_remove("JWT_BASELINE_TOKEN_FILE")
        .env("JWT_CA", fixtures().join("ca.pem"))
        .env("JWT_KEY_FILE", fixtures().join("client1.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--baseline-token-file"));

    // A wrong baseline token: every request refused, exit status 1.
    std::fs::write(&token_file, "not-the-token-at-all-00000000").unwrap();
    let args = ["--connections", "1", "--requests", "3", "--rounds", "1"];
    assert_eq!(bench(port, &token_file, &args).await.status.code(), Some(1));
    server.stop().await;
}

/// The server restarts under a running client: the client reconnects,
/// derives fresh keys and every request is answered.
#[tokio::test(flavor = "multi_thread")]
async fn send_survives_a_server_restart() {
    use jose_binding::echo::EchoApp;
    use jose_binding::server::ServerOptions;
    let first = TestServer::start(Policy::default(), fixture_keystore()).await;
    let port = first.port;
    let client = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "send",
                "--server",
                &format!("https://localhost:{port}"),
                "--client-id",
                "client1",
            ])
            .args(["--count", "8", "--interval-ms", "250", "--http", "1.1"])
            .env("JWT_CA", fixtures().join("ca.pem"))
            .env("JWT_KEY_FILE", fixtures().join("client1.key"))
            .output()
            .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    first.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = TestServer::start_on(
        port,
        Policy::default(),
        fixture_keystore(),
        ServerOptions::default(),
        EchoApp::new,
    )
    .await;
    let out = client.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ok(&out);
    assert_eq!(stdout.matches(" 200 ").count(), 8, "{stdout}");
    assert!(stderr.contains("reconnected to"), "{stderr}");
    // Fresh keys: the EKM fingerprint changed with the connection.
    let fps: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split("ekm fp=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    assert!(fps.len() >= 2 && fps[0] != fps[fps.len() - 1], "{stderr}");
    second.stop().await;
}

#[test]
fn man_page_and_completions() {
    let out = Command::new(BIN).arg("man").output().unwrap();
    ok(&out);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains(".TH jwt-client") && page.contains("enroll"),
        "{page}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        ok(&out);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("enroll"),
            "{shell}"
        );
    }
}
