//! What every test of the binary needs: running it as a user would (no
//! JOSE_DEBUG_* or NO_COLOR leaking in), its exit status and output, and
//! the published and fixture tokens.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_jose-debug");

/// RFC 7515 Appendix A.1: an HS256 JWS and its JWK `k`.
pub const A1_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const A1_KEY: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

pub use jose_binding_e2e::fixtures;

pub fn vectors() -> Value {
    let text = std::fs::read_to_string(fixtures().join("vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The RFC 7515/7516/7520 examples (`tests/vectors/rfc.json`, copied from
/// the RFCs and checked by jwcrypto in `check_rfc.py`).
pub fn rfc_vectors() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/rfc.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs the binary with `args` and `stdin`, with no JOSE_DEBUG_* or
/// NO_COLOR variables leaking in from the environment.
pub fn run_with_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("JOSE_DEBUG_") || k == "NO_COLOR" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    {
        let mut sin = child.stdin.take().unwrap();
        // The tool may exit before reading everything (usage errors).
        let _ = sin.write_all(stdin);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "jose-debug panicked on {args:?}: {stderr}"
    );
    out
}

pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    run_with_env(args, stdin, &[])
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output does not parse ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// `decode --json` with `args`, then `token`: the exit status and the
/// report, which must agree on it.
pub fn decode_json(args: &[&str], token: &str) -> (i32, Value) {
    let mut all = vec!["decode", "--json"];
    all.extend_from_slice(args);
    all.push(token);
    let o = run(&all, b"");
    let r = json(&o);
    assert_eq!(r["checks"]["exit_status"], code(&o), "{r:#}");
    (code(&o), r)
}

/// `token` with one decoded byte of part `part` flipped, re-encoded.
pub fn flip(token: &str, part: usize, byte: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut bytes = jose_binding::b64::decode(&parts[part]).unwrap();
    bytes[byte] ^= 0x01;
    parts[part] = jose_binding::b64::encode(&bytes);
    parts.join(".")
}
