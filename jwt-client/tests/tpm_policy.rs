//! A TPM key with a PIN and a PCR policy, as a user runs it: `tpm import
//! --pin --pcr-policy`, then `send` and the sidecar with the PIN from a
//! file, a wrong or missing PIN, a changed PCR, and `tpm bench`'s rows.
//! Against a real swtpm; compiled with `--features tpm`.
#![cfg(feature = "tpm")]

use std::process::{Command, Output, Stdio};

use jose_binding::Policy;
use jose_binding_e2e::swtpm::Swtpm;
use jose_binding_e2e::{fixture_keystore, fixtures, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_jwt-client");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn client(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("JWT_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pin_and_pcr_bound_key_through_send_and_the_sidecar() {
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let dir = tpm.state.join("client");
    std::fs::create_dir_all(&dir).unwrap();
    let (pin, wrong) = (dir.join("pin"), dir.join("wrong"));
    std::fs::write(&pin, "2468-good\n").unwrap();
    std::fs::write(&wrong, "1357-bad\n").unwrap();
    let tpm_file = dir.join("client1.tpm");
    let key = fixtures().join("client1.key");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let out = client(&[
        "tpm",
        "import",
        "--key-file",
        &s(&key),
        "--out",
        &s(&tpm_file),
        "--tcti",
        &tcti,
        "--pin",
        "--tpm-pin-file",
        &s(&pin),
        "--pcr-policy",
        "sha256:0,7",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("policy: PIN + PCR sha256:0,7"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("2468"), "the PIN is never printed");

    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let url = server.url();
    let (ca, key) = (s(&fixtures().join("ca.pem")), s(&tpm_file));
    // Where and as whom, for send and the sidecar alike.
    let conn = [
        "--server",
        &url,
        "--ca",
        &ca,
        "--client-id",
        "client1",
        "--tpm-key",
        &key,
        "--tcti",
        &tcti,
    ];
    let send = |extra: &[&str]| {
        let mut cmd = client(&["send"]);
        cmd.args(conn)
            .args(["--form", "ES", "--count", "2", "--json"])
            .args(extra)
            .stdin(Stdio::null());
        jose_binding_e2e::output(cmd)
    };
    let out = send(&["--tpm-pin-file", &s(&pin)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out).matches("\"status\":200").count(),
        2,
        "{}",
        text(&out)
    );
    let out = send(&[]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("needs its PIN"), "{}", text(&out));
    let out = send(&["--tpm-pin-file", &s(&wrong)]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("wrong TPM PIN"), "{}", text(&out));

    // The sidecar, the PIN from its file.
    let mut proxy = client(&["proxy"])
        .args(conn)
        .args(["--listen", "127.0.0.1:0"])
        .env("JWT_TPM_PIN_FILE", &pin)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, _rest) = jose_binding_e2e::proxy_ready(proxy.stderr.take().unwrap());
    let answer = tokio::task::spawn_blocking(move || jose_binding_e2e::post_claims(&addr))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Another boot chain: PCR 7 changes, and the key stops working.
    let ext = Command::new("tpm2_pcrextend")
        .arg(format!("7:sha256={}", "cd".repeat(32)))
        .env("TPM2TOOLS_TCTI", &tcti)
        .output()
        .unwrap();
    assert!(ext.status.success(), "{}", text(&ext));
    let out = send(&["--tpm-pin-file", &s(&pin)]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("PCR policy failed"), "{}", text(&out));
    let _ = proxy.kill();
    let _ = proxy.wait();
    server.stop().await;
}

#[test]
fn tpm_bench_times_every_kind_of_key_in_one_run() {
    let tpm = Swtpm::start();
    let out = client(&[
        "tpm",
        "bench",
        "--tcti",
        &tpm.tcti(),
        "--count",
        "30",
        "--json",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["password", "salted", "salted+PIN", "PCR+PIN policy"]
    );
    for r in rows.as_array().unwrap() {
        assert!(r["p50_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["count"], 30);
    }
}
