//! `jwt-client proxy` as an operator runs it: settings from a config file
//! and the environment, JSON logs, a clean stop on SIGTERM, and a
//! non-loopback listener refused without --allow-remote.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use jose_binding::Policy;
use jose_binding_e2e::upstream::free_port;
use jose_binding_e2e::{fixture_keystore, fixtures, TempDir, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_jwt-client");

#[test]
fn a_non_loopback_listener_needs_allow_remote() {
    let out = Command::new(BIN)
        .args(["proxy", "--listen", "0.0.0.0:0", "--client-id", "client1"])
        .arg("--key-file")
        .arg(fixtures().join("client1.key"))
        .arg("--ca")
        .arg(fixtures().join("ca.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
}

/// A key pasted into the wrong setting of a config file is never echoed.
#[test]
fn config_errors_name_the_setting_not_the_value() {
    let dir = TempDir::new("proxy-config-errors");
    let config = dir.join("proxy.toml");
    let secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    for (body, want) in [
        (
            format!("connections = \"{secret}\"\n"),
            "line 1, column 15: setting \"connections\"",
        ),
        (
            format!("key_fle = \"{secret}\"\n"),
            "unknown setting \"key_fle\"",
        ),
        (
            format!("{secret} = 1\n"),
            "unknown setting of 43 characters",
        ),
    ] {
        std::fs::write(&config, &body).unwrap();
        let out = Command::new(BIN)
            .args(["proxy", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err:?} lacks {want:?}");
        assert!(!err.contains(&secret[4..20]), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_from_a_config_file_json_logs_and_sigterm() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let dir = TempDir::new("proxy-cli");
    let port = free_port();
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{}\"\nca = {:?}\nclient_id = \"client1\"\nkey_file = {:?}\n\
             listen = \"127.0.0.1:{port}\"\nform = \"encrypted-then-signed\"\n\
             [claims]\nteam = \"a\"\n",
            server.url(),
            fixtures().join("ca.pem"),
            fixtures().join("client1.key"),
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["proxy", "--json", "--config", config.to_str().unwrap()])
        .env("JWT_PROXY_CONNECTIONS", "2")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(&ready).expect("a JSON log line");
    assert_eq!(v["fields"]["message"], "jwt-client proxy ready", "{ready}");
    assert_eq!(v["fields"]["connections"], 2, "from the environment");

    let url = format!("http://127.0.0.1:{port}/v1/claims");
    let out = jose_binding_e2e::curl(vec!["-s".into(), "-X".into(), "POST".into(), url]).await;
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["form"], "encrypted-then-signed");
    assert_eq!(body["claims"]["team"], "a");
    let line = lines.next().unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["status"], 200, "{line}");

    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success(), "clean exit on SIGTERM");
    assert!(
        rest.iter().any(|l| l.contains("jwt-client proxy stopped")),
        "{rest:?}"
    );
}
