//! Project chores. `cargo xtask fixtures` regenerates everything in fixtures/:
//! the test CA and server certificate, two client root keys, the keystore,
//! and the test vectors (deterministic: the same bytes every run).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jose_binding::token::seal;

use jose_binding::Issuer;
use jose_binding::{b64, ClientId, Form, Keystore};
use jose_binding::{Ekm, RootKey, SoftwareRootKey, SubKeys};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const USAGE: &str = "usage: cargo xtask fixtures [--dir DIR] [--vectors-only]
       cargo xtask bench-report

bench-report reads the medians of the last
`cargo bench -p jose-binding --bench verify` run (target/criterion) and prints
the docs/BENCHMARKS.md table: each median, and each target ratio.

Regenerates the test fixtures (default DIR: fixtures/ at the workspace root):
  ca.pem, server.pem, server.key   test CA and a server certificate for
                                   localhost, 127.0.0.1 and ::1 (valid 2024-2124)
  client1.key, client2.key         fresh random root keys (OS RNG)
  keystore.toml                    both clients, current key first
  vectors.json                     key-schedule and token vectors (deterministic)

--vectors-only rewrites vectors.json alone; its bytes never change between runs.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut vectors_only = false;
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("fixtures") => {}
        Some("bench-report") => return bench_report(),
        _ => return Err(USAGE.to_owned()),
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(it.next().ok_or("--dir needs a value")?),
            "--vectors-only" => vectors_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !vectors_only {
        write_pki(&dir)?;
        write_keys(&dir)?;
    }
    write(&dir.join("vectors.json"), &vectors())?;
    eprintln!("fixtures written to {}", dir.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("  wrote {}", path.display());
    Ok(())
}

/// Writes a private key with the library's 0600 writer.
fn write_secret(path: &Path, text: &str) -> Result<(), String> {
    use jose_binding::private_file::{write_private, Existing};
    write_private(path, text.as_bytes(), Existing::Replace)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("  wrote {}", path.display());
    Ok(())
}

fn write_pki(dir: &Path) -> Result<(), String> {
    let err = |e: rcgen::Error| e.to_string();
    let not_before = rcgen::date_time_ymd(2024, 1, 1);
    let not_after = rcgen::date_time_ymd(2124, 1, 1);

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        DnType::CommonName,
        "jose-binding test CA (not for production)",
    );
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut srv = CertificateParams::new(vec!["localhost".to_owned()]).map_err(err)?;
    srv.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    srv.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    srv.distinguished_name.push(DnType::CommonName, "localhost");
    srv.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    srv.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    srv.not_before = not_before;
    srv.not_after = not_after;
    let srv_key = KeyPair::generate().map_err(err)?;
    let srv_cert = srv.signed_by(&srv_key, &ca_cert, &ca_key).map_err(err)?;

    write(&dir.join("ca.pem"), &ca_cert.pem())?;
    // The chain the server presents: leaf, then the CA.
    write(
        &dir.join("server.pem"),
        &format!("{}{}", srv_cert.pem(), ca_cert.pem()),
    )?;
    write_secret(&dir.join("server.key"), &srv_key.serialize_pem())
}

fn write_keys(dir: &Path) -> Result<(), String> {
    let mut ks = Keystore::default();
    for name in ["client1", "client2"] {
        let key = SoftwareRootKey::generate();
        write_secret(&dir.join(format!("{name}.key")), &key.to_key_file())?;
        let id = ClientId::new(name).map_err(|e| e.to_string())?;
        ks.set(id, vec![key]);
    }
    write_secret(&dir.join("keystore.toml"), &ks.to_toml())
}

/// Deterministic bytes for vector inputs: SHA-256 of a label, repeated.
fn bytes(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u8;
    while out.len() < len {
        out.extend_from_slice(&Sha256::digest(format!("{label}#{i}").as_bytes()));
        i += 1;
    }
    out.truncate(len);
    out
}

fn ekm(label: &str) -> Ekm {
    let mut b = [0u8; 32];
    b.copy_from_slice(&bytes(label, 32));
    Ekm::from_bytes(b)
}

fn vectors() -> String {
    let cases: [(&str, usize, &str); 5] = [
        ("client1", 32, "ekm-a"),
        ("client1", 32, "ekm-b"),
        ("client2", 48, "ekm-a"),
        ("a.b_c-D9", 64, "ekm-c"),
        (&"x".repeat(64), 64, "ekm-d"),
    ];
    let mut schedule = Vec::new();
    for (id, len, e) in cases {
        let root = bytes(&format!("root-key {id} {len}"), len);
        let key = SoftwareRootKey::new(&root).expect("vector key length is in range");
        let ekm = ekm(e);
        let cid = ClientId::new(id).expect("vector client id is valid");
        let prk = key.prk(&ekm).expect("software PRK");
        let sub = SubKeys::expand(&prk, &cid);
        schedule.push(json!({
            "client_id": id,
            "root_key_b64u": b64::encode(&root),
            "ekm_hex": hex::encode(ekm.expose()),
            "prk_hex": hex::encode(prk.expose()),
            "sig_key_hex": hex::encode(sub.sig.expose()),
            "enc_key_hex": hex::encode(sub.enc.expose()),
        }));
    }

    let id = ClientId::new("client1").expect("valid");
    let root = bytes("root-key client1 32", 32);
    let key = SoftwareRootKey::new(&root).expect("in range");
    let ekm = ekm("ekm-a");
    let sub = SubKeys::derive(&key, &ekm, &id).expect("software");
    let iat = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let mut tokens = Vec::new();
    let issuer = Issuer::new(id.clone(), "localhost", sub.clone());
    for (n, form) in Form::ALL.into_iter().enumerate() {
        let jti = b64::encode(&bytes(&format!("jti {n}"), 16));
        let iv = bytes(&format!("iv {n}"), 12);
        let app = json!({"role": "ops", "form_no": n});
        let claims = issuer.claims(&app, iat, &jti).expect("no reserved claims");
        let mut iv_arr = [0u8; 12];
        iv_arr.copy_from_slice(&iv);
        let token = seal(form, &id, &claims, &sub, iv_arr);
        tokens.push(json!({
            "form": form.as_str(),
            "client_id": id.as_str(),
            "root_key_b64u": b64::encode(&root),
            "ekm_hex": hex::encode(ekm.expose()),
            "audience": "localhost",
            "iat": iat,
            "jti": jti,
            "iv_hex": if form == Form::Signed { Value::Null } else { Value::from(hex::encode(iv)) },
            "claims": serde_json::from_slice::<Value>(&claims).expect("claims are JSON"),
            "claims_json": String::from_utf8(claims).expect("claims are UTF-8"),
            "token": token,
        }));
    }
    let doc = json!({
        "about": "jose-binding v1 test vectors; regenerate with `cargo xtask fixtures --vectors-only` (deterministic). Inputs are SHA-256 of labels, not random.",
        "key_schedule": schedule,
        "tokens": tokens,
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("JSON");
    s.push('\n');
    s
}

/// Median of one criterion benchmark, in nanoseconds.
fn median_ns(dir: &Path, id: &str) -> Result<f64, String> {
    let path = dir.join(id).join("new/estimates.json");
    let text = fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (run `cargo bench -p jose-binding --bench verify` first)",
            path.display()
        )
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    v["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no median", path.display()))
}

fn bench_report() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let ids = [
        "key_schedule_software",
        "issue_S",
        "verify_S",
        "issue_ES",
        "verify_ES",
        "issue_SE",
        "verify_SE",
        "floor_base64url_decode",
        "floor_hmac_sha256_verify",
        "floor_json_parse_claims",
        "josekit_decode_with_verifier_S",
        "josekit_jwe_decrypt",
        "dpop_es256_sign_and_verify",
    ];
    let mut m = std::collections::BTreeMap::new();
    println!("| benchmark | median |\n| --- | ---: |");
    for id in ids {
        let ns = median_ns(&dir, id)?;
        println!("| `{}` | {} |", id, human(ns));
        m.insert(id, ns);
    }
    let floor =
        m["floor_base64url_decode"] + m["floor_hmac_sha256_verify"] + m["floor_json_parse_claims"];
    let per_request = m["issue_S"] + m["verify_S"];
    // (target, measured, limit): met when measured <= limit.
    let rows = [
        ("verify S / raw-primitive floor", m["verify_S"] / floor, 2.0),
        (
            "verify S / josekit decode_with_verifier",
            m["verify_S"] / m["josekit_decode_with_verifier_S"],
            0.5,
        ),
        (
            "(issue S + verify S) / ES256 proof sign+verify",
            per_request / m["dpop_es256_sign_and_verify"],
            0.1,
        ),
        (
            "key schedule (us)",
            m["key_schedule_software"] / 1000.0,
            5.0,
        ),
    ];
    println!(
        "\nfloor = base64url decode + HMAC-SHA256 verify + JSON parse = {}\n",
        human(floor)
    );
    println!("| target | measured | target | met |\n| --- | ---: | --- | --- |");
    for (name, value, limit) in rows {
        println!(
            "| {name} | {value:.3} | <= {limit:?} | {} |",
            if value <= limit { "yes" } else { "**no**" }
        );
    }
    Ok(())
}

fn human(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} us", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}
