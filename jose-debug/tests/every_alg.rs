//! Every JWA algorithm, with keys in every form, on tokens made elsewhere:
//! the RFC 7515/7516/7520 examples (`vectors/rfc.json`), tokens josekit
//! makes here, and tokens Python's jwcrypto makes (a second code base, run
//! from Debian's /usr/bin/python3). For each: the right key exits 0 and
//! shows the payload, a wrong key of the same type 1, a flipped byte 1 or
//! 3, no key 4. Then each RFC 8725 warning, triggered by a token made for
//! it, and --strict.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use josekit::jwe::{self, JweHeader};
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{self, JwsHeader};
use serde_json::{json, Value};
use support::{code, run};

/// RFC 7518 §5's content encryptions.
const ENCS: [&str; 6] = [
    "A128GCM",
    "A192GCM",
    "A256GCM",
    "A128CBC-HS256",
    "A192CBC-HS384",
    "A256CBC-HS512",
];

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jose-debug-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// `decode --json` with these flags, at a time before every vector's exp.
fn decode(flags: &[&str], token: &str) -> (i32, Value) {
    let mut args = vec!["--now", "1300000000"];
    args.extend_from_slice(flags);
    support::decode_json(&args, token)
}

/// What the innermost layer shows: its text, or its claims as JSON.
fn shown(r: &Value) -> Option<String> {
    let c = &r["token"]["layers"].as_array()?.last()?["content"];
    match c["type"].as_str()? {
        "text" => c["text"].as_str().map(str::to_owned),
        "claims" => Some(c["json"].to_string()),
        _ => None,
    }
}

fn same_payload(r: &Value, want: &str) -> bool {
    let Some(got) = shown(r) else { return false };
    match (
        serde_json::from_str::<Value>(&got),
        serde_json::from_str::<Value>(want),
    ) {
        (Ok(a @ Value::Object(_)), Ok(b)) => a == b,
        _ => got == want,
    }
}

fn warnings(r: &Value) -> Vec<String> {
    r["token"]["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["warnings"].as_array().cloned().unwrap_or_default())
        .map(|w| w["code"].as_str().unwrap().to_owned())
        .collect()
}

/// A compact token with one byte flipped in the middle of part `i`
/// (`None` for an empty part).
fn flipped(token: &str, i: usize) -> Option<String> {
    let len = jose_binding::b64::decode(token.split('.').nth(i)?)?.len();
    (len > 0).then(|| support::flip(token, i, len / 2))
}

// ---------------------------------------------------------------------------
// RFC examples
// ---------------------------------------------------------------------------

#[test]
fn rfc_examples_open_with_their_keys_and_fail_when_touched() {
    let vectors = support::rfc_vectors();
    assert!(vectors.len() >= 60);
    let dir = tmp("rfc");
    let mut algs = std::collections::BTreeSet::new();
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let token = match &v["token"] {
            Value::String(s) => s.clone(),
            t => t.to_string(),
        };
        let key = write(&dir, "key.json", &v["key"].to_string());
        let mut flags: Vec<String> = match v.get("password") {
            Some(p) => vec![
                "--password-file".into(),
                write(&dir, "pw", &format!("{}\n", p.as_str().unwrap())),
            ],
            None => vec!["--key".into(), key],
        };
        if v.get("detached") == Some(&Value::Bool(true)) {
            flags.push("--payload".into());
            flags.push(write(&dir, "payload", v["payload"].as_str().unwrap()));
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let (status, r) = decode(&flags, &token);
        algs.insert(v["alg"].as_str().unwrap().to_owned());
        if token.contains("\"zip\"") || name.starts_with("rfc7520-5.9") {
            // Compressed content is decrypted but never inflated.
            assert_eq!(status, 4, "{name}: {r:#}");
            assert_eq!(r["token"]["layers"][0]["crypto"]["status"], "verified");
            assert!(warnings(&r).contains(&"zip".to_owned()), "{name}");
            continue;
        }
        assert_eq!(status, 0, "{name}: {:#}", r["checks"]);
        assert!(
            same_payload(&r, v["payload"].as_str().unwrap()),
            "{name}: shows {:?}",
            shown(&r)
        );
        // A wrong key of the same type: the crypto fails.
        let wrong: Vec<String> = match v.get("password") {
            Some(_) => vec![
                "--password-file".into(),
                write(&dir, "pw-wrong", "not it\n"),
            ],
            None => vec!["--key".into(), wrong_key_file(&dir, &v["key"])],
        };
        let mut wrong_flags: Vec<&str> = wrong.iter().map(String::as_str).collect();
        wrong_flags.extend(flags.iter().skip(2));
        let (status, r) = decode(&wrong_flags, &token);
        assert_eq!(status, 1, "{name} with a wrong key: {:#}", r["checks"]);
        // No key: nothing verified, nothing failed.
        let (status, _) = decode(&["--generic"], &token);
        assert_eq!(status, 4, "{name} without a key");
        // A flipped byte in each part of a compact token.
        if v["serialization"] == "compact" {
            for i in 0..token.split('.').count() {
                let Some(t) = flipped(&token, i) else {
                    continue;
                };
                let (status, r) = decode(&flags, &t);
                assert!(
                    status == 1 || status == 3,
                    "{name} part {i} flipped: {status} {:#}",
                    r["checks"]
                );
            }
        }
    }
    for alg in [
        "HS256",
        "RS256",
        "PS384",
        "ES256",
        "ES512",
        "RSA1_5",
        "RSA-OAEP",
        "A128KW",
        "A256GCMKW",
        "ECDH-ES",
        "ECDH-ES+A128KW",
        "PBES2-HS512+A256KW",
        "dir",
    ] {
        assert!(algs.contains(alg), "no RFC vector for {alg}");
    }
}

/// A fresh key of the same type, curve or length as `jwk`: an oct or RSA
/// JWK keeps the kid (so that the kid picks it), an EC or OKP key is a PEM
/// without one (so that every fitting key is tried).
fn wrong_key_file(dir: &Path, jwk: &Value) -> String {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    let pem = |k: PKey<openssl::pkey::Private>| {
        String::from_utf8(k.private_key_to_pem_pkcs8().unwrap()).unwrap()
    };
    let text = match (jwk["kty"].as_str().unwrap(), jwk["crv"].as_str()) {
        ("oct", _) => {
            let mut k = jose_binding::b64::decode(jwk["k"].as_str().unwrap()).unwrap();
            k[0] ^= 1;
            let mut w = jwk.clone();
            w["k"] = json!(jose_binding::b64::encode(&k));
            w.to_string()
        }
        // A JWK keeps the kid: the wrong key is the one the kid picks.
        ("RSA", _) => {
            let k = josekit::jwk::alg::rsa::RsaKeyPair::generate(2048).unwrap();
            let mut w: Value = serde_json::from_str(&k.to_jwk_key_pair().to_string()).unwrap();
            if let Some(kid) = jwk.get("kid") {
                w["kid"] = kid.clone();
            }
            w.to_string()
        }
        ("EC", Some(crv)) => {
            let nid = match crv {
                "P-256" => Nid::X9_62_PRIME256V1,
                "P-384" => Nid::SECP384R1,
                _ => Nid::SECP521R1,
            };
            pem(PKey::from_ec_key(
                EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap(),
            )
            .unwrap())
        }
        ("OKP", Some("Ed25519")) => pem(PKey::generate_ed25519().unwrap()),
        ("OKP", Some("X25519")) => pem(PKey::generate_x25519().unwrap()),
        other => panic!("no wrong key for {other:?}"),
    };
    write(dir, "wrong-key", &text)
}

#[test]
fn a_general_jws_reports_each_signature() {
    let vectors = support::rfc_vectors();
    let v = vectors
        .iter()
        .find(|v| v["name"] == "rfc7520-4.8-general-es512")
        .unwrap();
    let dir = tmp("general");
    let key = write(&dir, "k.json", &v["key"].to_string());
    let (status, r) = decode(&["--key", &key], &v["token"].to_string());
    assert_eq!(status, 0);
    let layer = &r["token"]["layers"][0];
    assert_eq!(layer["serialization"], "general");
    let entries = layer["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["crypto"]["status"].as_str().unwrap())
        .collect();
    // RS256 and HS256 have no key here; ES512 verifies.
    assert_eq!(statuses, ["no_key", "verified", "no_key"], "{entries:#?}");
    let o = run(&["decode", "--key", &key, &v["token"].to_string()], b"");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("signature #2: ES512: verifies"), "{text}");
    assert!(text.contains("JSON general serialization"), "{text}");
}

// ---------------------------------------------------------------------------
// josekit's tokens
// ---------------------------------------------------------------------------

/// A key pair in the forms a user has: private PEM, public PEM, public JWK.
struct Pair {
    private_pem: String,
    public_pem: String,
    public_jwk: Jwk,
    private_jwk: Jwk,
}

impl Pair {
    fn of(k: &dyn KeyPair) -> Pair {
        Pair {
            private_pem: String::from_utf8(k.to_pem_private_key()).unwrap(),
            public_pem: String::from_utf8(k.to_pem_public_key()).unwrap(),
            public_jwk: k.to_jwk_public_key(),
            private_jwk: k.to_jwk_key_pair(),
        }
    }
}

fn rsa() -> Pair {
    Pair::of(&RsaKeyPair::generate(2048).unwrap())
}

fn ec(curve: EcCurve) -> Pair {
    Pair::of(&EcKeyPair::generate(curve).unwrap())
}

fn ed() -> Pair {
    Pair::of(&EdKeyPair::generate(EdCurve::Ed25519).unwrap())
}

/// A JWE header with only its content encryption set.
fn enc_header(enc: &str) -> JweHeader {
    let mut h = JweHeader::new();
    h.set_content_encryption(enc);
    h
}

fn oct(len: usize) -> Jwk {
    let mut k = Jwk::new("oct");
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    k.set_parameter("k", Some(Value::String(jose_binding::b64::encode(&bytes))))
        .unwrap();
    k
}

/// An oct key of the same length with one bit changed.
fn other_oct(k: &Jwk) -> Jwk {
    let mut bytes = oct_bytes(k);
    bytes[0] ^= 1;
    let mut o = Jwk::new("oct");
    o.set_parameter("k", Some(Value::String(jose_binding::b64::encode(&bytes))))
        .unwrap();
    o
}

fn oct_bytes(k: &Jwk) -> Vec<u8> {
    jose_binding::b64::decode(k.parameter("k").unwrap().as_str().unwrap()).unwrap()
}

/// Right key 0 with the payload, wrong key 1, no key 4.
fn judged(what: &str, token: &str, right: &str, wrong: &str, payload: &str, extra: &[&str]) {
    let with = |key: &str| {
        let mut f = vec!["--key", key];
        f.extend_from_slice(extra);
        decode(&f, token)
    };
    let (status, r) = with(right);
    assert_eq!(status, 0, "{what}: {:#}", r["checks"]);
    assert!(same_payload(&r, payload), "{what}: {:?}", shown(&r));
    let (status, r) = with(wrong);
    assert_eq!(status, 1, "{what} with a wrong key: {:#}", r["checks"]);
    let (status, _) = decode(&["--generic"], token);
    assert_eq!(status, 4, "{what} without a key");
}

#[test]
fn josekit_signatures_verify_with_pem_and_jwk_keys() {
    let dir = tmp("josekit-jws");
    let payload = r#"{"iss":"josekit","n":1}"#;
    let (r1, r2) = (rsa(), rsa());
    let mut cases: Vec<(&str, Pair, Pair)> = vec![
        ("RS256", r1, r2),
        ("PS512", rsa(), rsa()),
        ("ES256", ec(EcCurve::P256), ec(EcCurve::P256)),
        ("ES384", ec(EcCurve::P384), ec(EcCurve::P384)),
        ("ES512", ec(EcCurve::P521), ec(EcCurve::P521)),
        ("EdDSA", ed(), ed()),
    ];
    for (alg, right, wrong) in cases.drain(..) {
        let mut h = JwsHeader::new();
        h.set_algorithm(alg);
        let signer: Box<dyn jws::JwsSigner> = match alg {
            "RS256" => Box::new(jws::RS256.signer_from_pem(&right.private_pem).unwrap()),
            "PS512" => Box::new(jws::PS512.signer_from_jwk(&right.private_jwk).unwrap()),
            "ES256" => Box::new(jws::ES256.signer_from_pem(&right.private_pem).unwrap()),
            "ES384" => Box::new(jws::ES384.signer_from_pem(&right.private_pem).unwrap()),
            "ES512" => Box::new(jws::ES512.signer_from_pem(&right.private_pem).unwrap()),
            _ => Box::new(jws::EdDSA.signer_from_pem(&right.private_pem).unwrap()),
        };
        let token = jws::serialize_compact(payload.as_bytes(), &h, &*signer).unwrap();
        for (form, r, w) in [
            ("public PEM", &right.public_pem, &wrong.public_pem),
            ("private PEM", &right.private_pem, &wrong.private_pem),
            (
                "public JWK",
                &right.public_jwk.to_string(),
                &wrong.public_jwk.to_string(),
            ),
        ] {
            let r = write(&dir, "right", r);
            let w = write(&dir, "wrong", w);
            judged(&format!("{alg} {form}"), &token, &r, &w, payload, &[]);
        }
    }
    // HMAC with an oct JWK.
    for (alg, len) in [("HS256", 32), ("HS384", 48), ("HS512", 64)] {
        let key = oct(len);
        let mut h = JwsHeader::new();
        h.set_algorithm(alg);
        let signer: Box<dyn jws::JwsSigner> = match alg {
            "HS256" => Box::new(jws::HS256.signer_from_bytes(oct_bytes(&key)).unwrap()),
            "HS384" => Box::new(jws::HS384.signer_from_bytes(oct_bytes(&key)).unwrap()),
            _ => Box::new(jws::HS512.signer_from_bytes(oct_bytes(&key)).unwrap()),
        };
        let token = jws::serialize_compact(payload.as_bytes(), &h, &*signer).unwrap();
        let r = write(&dir, "right", &key.to_string());
        let w = write(&dir, "wrong", &other_oct(&key).to_string());
        judged(alg, &token, &r, &w, payload, &[]);
    }
}

#[test]
fn josekit_encryptions_decrypt_with_every_key_management() {
    let dir = tmp("josekit-jwe");
    let payload = r#"{"iss":"josekit","n":2}"#;
    let encs = ENCS;
    let (r, rw) = (rsa(), rsa());
    let (e, ew) = (ec(EcCurve::P256), ec(EcCurve::P256));
    let algs = [
        "RSA-OAEP",
        "RSA-OAEP-256",
        "ECDH-ES",
        "ECDH-ES+A128KW",
        "ECDH-ES+A192KW",
        "ECDH-ES+A256KW",
        "A128KW",
        "A192KW",
        "A256KW",
        "A128GCMKW",
        "A192GCMKW",
        "A256GCMKW",
    ];
    for (i, alg) in algs.iter().enumerate() {
        let enc = encs[i % encs.len()];
        let h = enc_header(enc);
        let kw_len = match &alg[..4] {
            "A128" => 16,
            "A192" => 24,
            _ => 32,
        };
        let (encrypter, right, wrong): (Box<dyn jwe::JweEncrypter>, String, String) = match *alg {
            "RSA-OAEP" => (
                Box::new(jwe::RSA_OAEP.encrypter_from_pem(&r.public_pem).unwrap()),
                r.private_pem.clone(),
                rw.private_pem.clone(),
            ),
            "RSA-OAEP-256" => (
                Box::new(jwe::RSA_OAEP_256.encrypter_from_jwk(&r.public_jwk).unwrap()),
                r.private_jwk.to_string(),
                rw.private_jwk.to_string(),
            ),
            a if a.starts_with("ECDH-ES") => {
                let alg = match a {
                    "ECDH-ES" => jwe::ECDH_ES,
                    "ECDH-ES+A128KW" => jwe::ECDH_ES_A128KW,
                    "ECDH-ES+A192KW" => jwe::ECDH_ES_A192KW,
                    _ => jwe::ECDH_ES_A256KW,
                };
                let (right, wrong) = if i % 2 == 0 {
                    (e.private_pem.clone(), ew.private_pem.clone())
                } else {
                    (e.private_jwk.to_string(), ew.private_jwk.to_string())
                };
                (
                    Box::new(alg.encrypter_from_pem(&e.public_pem).unwrap()),
                    right,
                    wrong,
                )
            }
            a => {
                let key = oct(kw_len);
                let wrong = other_oct(&key).to_string();
                let bytes = oct_bytes(&key);
                let enc: Box<dyn jwe::JweEncrypter> = match a {
                    "A128KW" => Box::new(jwe::A128KW.encrypter_from_bytes(&bytes).unwrap()),
                    "A192KW" => Box::new(jwe::A192KW.encrypter_from_bytes(&bytes).unwrap()),
                    "A256KW" => Box::new(jwe::A256KW.encrypter_from_bytes(&bytes).unwrap()),
                    "A128GCMKW" => Box::new(jwe::A128GCMKW.encrypter_from_bytes(&bytes).unwrap()),
                    "A192GCMKW" => Box::new(jwe::A192GCMKW.encrypter_from_bytes(&bytes).unwrap()),
                    _ => Box::new(jwe::A256GCMKW.encrypter_from_bytes(&bytes).unwrap()),
                };
                (enc, key.to_string(), wrong)
            }
        };
        let token = jwe::serialize_compact(payload.as_bytes(), &h, &*encrypter).unwrap();
        let right = write(&dir, "right", &right);
        let wrong = write(&dir, "wrong", &wrong);
        judged(
            &format!("{alg}/{enc}"),
            &token,
            &right,
            &wrong,
            payload,
            &[],
        );
    }
    // PBES2 with a password file, and dir with each enc's key length.
    for (alg, enc) in [
        ("PBES2-HS256+A128KW", "A128GCM"),
        ("PBES2-HS384+A192KW", "A192CBC-HS384"),
        ("PBES2-HS512+A256KW", "A256CBC-HS512"),
    ] {
        let h = enc_header(enc);
        let password = b"correct horse battery staple";
        let encrypter: Box<dyn jwe::JweEncrypter> = match alg {
            "PBES2-HS256+A128KW" => Box::new(
                jwe::PBES2_HS256_A128KW
                    .encrypter_from_bytes(password)
                    .unwrap(),
            ),
            "PBES2-HS384+A192KW" => Box::new(
                jwe::PBES2_HS384_A192KW
                    .encrypter_from_bytes(password)
                    .unwrap(),
            ),
            _ => Box::new(
                jwe::PBES2_HS512_A256KW
                    .encrypter_from_bytes(password)
                    .unwrap(),
            ),
        };
        let token = jwe::serialize_compact(payload.as_bytes(), &h, &*encrypter).unwrap();
        let right = write(&dir, "pw", "correct horse battery staple\n");
        let wrong = write(&dir, "pw-wrong", "Tr0ub4dor&3\n");
        let (status, r) = decode(&["--password-file", &right], &token);
        assert_eq!(status, 0, "{alg}: {:#}", r["checks"]);
        assert!(same_payload(&r, payload));
        let (status, _) = decode(&["--password-file", &wrong], &token);
        assert_eq!(status, 1, "{alg} with a wrong password");
        let (status, _) = decode(&["--generic"], &token);
        assert_eq!(status, 4, "{alg} without a password");
    }
    for enc in encs {
        let len = match enc {
            "A128GCM" => 16,
            "A192GCM" => 24,
            "A256GCM" | "A128CBC-HS256" => 32,
            "A192CBC-HS384" => 48,
            _ => 64,
        };
        let key = oct(len);
        let h = enc_header(enc);
        let encrypter = jwe::Dir.encrypter_from_bytes(oct_bytes(&key)).unwrap();
        let token = jwe::serialize_compact(payload.as_bytes(), &h, &encrypter).unwrap();
        let right = write(&dir, "right", &key.to_string());
        let wrong = write(&dir, "wrong", &other_oct(&key).to_string());
        judged(&format!("dir/{enc}"), &token, &right, &wrong, payload, &[]);
    }
}

// ---------------------------------------------------------------------------
// jwcrypto's tokens
// ---------------------------------------------------------------------------

#[test]
fn jwcrypto_tokens_open_with_keys_in_every_form() {
    let dir = tmp("jwcrypto");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/jwcrypto_tokens.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(&dir)
        .output()
        .expect("Debian's /usr/bin/python3 with python3-jwcrypto (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut forms = std::collections::BTreeSet::new();
    let mut algs = std::collections::BTreeSet::new();
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let token = c["token"].as_str().unwrap();
        let payload = c["payload"].as_str().unwrap();
        forms.insert(c["key_form"].as_str().unwrap().to_owned());
        algs.insert(c["alg"].as_str().unwrap().to_owned());
        if let Some(enc) = c["enc"].as_str() {
            algs.insert(enc.to_owned());
        }
        let (right, wrong): (Vec<&str>, Vec<&str>) = match c["password_file"].as_str() {
            Some(p) => (
                vec!["--password-file", p],
                vec![
                    "--password-file",
                    c["wrong_password_file"].as_str().unwrap(),
                ],
            ),
            None => (
                vec!["--key", c["key"].as_str().unwrap()],
                vec!["--key", c["wrong_key"].as_str().unwrap()],
            ),
        };
        let (status, r) = decode(&right, token);
        assert_eq!(status, 0, "{name}: {:#}", r["checks"]);
        assert!(same_payload(&r, payload), "{name}: {:?}", shown(&r));
        if name.ends_with("-nokid") || name.ends_with("-unknownkid") {
            let notes = r["token"]["layers"][0]["notes"].to_string();
            assert!(notes.contains("verifies"), "{name}: {notes}");
            if name.ends_with("-unknownkid") {
                assert!(
                    notes.contains("is not in the set; it has"),
                    "{name}: {notes}"
                );
            }
        }
        let (status, r) = decode(&wrong, token);
        assert_eq!(status, 1, "{name} with the wrong key: {:#}", r["checks"]);
        let (status, _) = decode(&["--generic"], token);
        assert_eq!(status, 4, "{name} without a key");
        for i in 0..token.split('.').count() {
            let Some(t) = flipped(token, i) else { continue };
            let (status, _) = decode(&right, &t);
            assert!(
                status == 1 || status == 3,
                "{name} part {i} flipped: {status}"
            );
        }
    }
    for form in [
        "pem-spki",
        "pem-pkcs8",
        "pem-pkcs1",
        "pem-sec1",
        "pem-cert",
        "jwk",
        "jwks",
    ] {
        assert!(
            forms.contains(form),
            "no jwcrypto case with a {form} key: {forms:?}"
        );
    }
    for alg in [
        "HS256",
        "HS384",
        "HS512",
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "dir",
        "A128KW",
        "A192KW",
        "A256KW",
        "A128GCMKW",
        "A192GCMKW",
        "A256GCMKW",
        "RSA-OAEP",
        "RSA-OAEP-256",
        "ECDH-ES",
        "ECDH-ES+A128KW",
        "ECDH-ES+A192KW",
        "ECDH-ES+A256KW",
        "PBES2-HS256+A128KW",
        "PBES2-HS384+A192KW",
        "PBES2-HS512+A256KW",
    ]
    .iter()
    .chain(&ENCS)
    {
        assert!(algs.contains(*alg), "no jwcrypto case for {alg}");
    }
}

// ---------------------------------------------------------------------------
// RFC 8725's mistakes
// ---------------------------------------------------------------------------

/// HMAC-SHA256 of `input`, base64url: a JWS signature.
fn mac256(key: &[u8], input: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(input);
    jose_binding::b64::encode(&mac.finalize().into_bytes())
}

fn hs256(header: &Value, payload: &[u8], key: &[u8]) -> String {
    let h = jose_binding::b64::encode(header.to_string().as_bytes());
    let p = jose_binding::b64::encode(payload);
    let sig = mac256(key, format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{sig}")
}

/// A compact token with its protected header changed by `edit` (the
/// signature or tag no longer covers it).
fn with_header(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut header: Value =
        serde_json::from_slice(&jose_binding::b64::decode(&parts[0]).unwrap()).unwrap();
    edit(&mut header);
    parts[0] = jose_binding::b64::encode(header.to_string().as_bytes());
    parts.join(".")
}

/// An oct JWK file holding `key`.
fn oct_file(dir: &Path, name: &str, key: &[u8]) -> String {
    write(
        dir,
        name,
        &json!({"kty":"oct","k": jose_binding::b64::encode(key)}).to_string(),
    )
}

/// Each warning, from a token made for it: shown with its code, the exit
/// status unchanged, and --strict turns it into 3.
#[test]
fn each_warning_is_shown_and_strict_rejects() {
    let dir = tmp("warnings");
    let key32 = [9u8; 32];
    let oct32 = oct_file(&dir, "oct32.json", &key32);
    let short = [9u8; 16];
    let oct16 = oct_file(&dir, "oct16.json", &short);
    let claims = br#"{"iss":"w"}"#;

    // Tokens that verify, with a warning each: (code, token, flags, status without --strict).
    let mut cases: Vec<(&str, String, Vec<String>, i32)> = Vec::new();
    for (code, member) in [
        ("jku", json!({"jku": "https://attacker.example/jwks"})),
        ("x5u", json!({"x5u": "https://attacker.example/cert"})),
        ("embedded-jwk", json!({"jwk": {"kty":"oct","k":"AAAA"}})),
        ("crit", json!({"crit": ["b64"], "b64": true})),
    ] {
        let mut h = json!({"alg": "HS256"});
        for (k, v) in member.as_object().unwrap() {
            h[k] = v.clone();
        }
        cases.push((
            code,
            hs256(&h, claims, &key32),
            vec!["--key".into(), oct32.clone()],
            0,
        ));
    }
    cases.push((
        "hmac-key-short",
        hs256(&json!({"alg":"HS256"}), claims, &short),
        vec!["--key".into(), oct16.clone()],
        0,
    ));
    // RSA under 2048 bits, signed with OpenSSL (josekit will not).
    let rsa = openssl::rsa::Rsa::generate(1024).unwrap();
    let pkey = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    let h = jose_binding::b64::encode(br#"{"alg":"RS256"}"#);
    let p = jose_binding::b64::encode(claims);
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    let sig = signer
        .sign_oneshot_to_vec(format!("{h}.{p}").as_bytes())
        .unwrap();
    let small = write(
        &dir,
        "small.pem",
        &String::from_utf8(pkey.public_key_to_pem().unwrap()).unwrap(),
    );
    cases.push((
        "rsa-key-small",
        format!("{h}.{p}.{}", jose_binding::b64::encode(&sig)),
        vec!["--key".into(), small.clone()],
        0,
    ));
    // Algorithm confusion: HS256 "signed" with the RSA public key's PEM text.
    let confused = hs256(
        &json!({"alg":"HS256"}),
        claims,
        &std::fs::read(&small).unwrap(),
    );
    cases.push((
        "alg-key-mismatch",
        confused,
        vec!["--key".into(), small.clone()],
        4,
    ));
    // alg none: nothing vouches for it (1 already).
    cases.push((
        "alg-none",
        format!(
            "{}.{}.",
            jose_binding::b64::encode(br#"{"alg":"none"}"#),
            jose_binding::b64::encode(claims)
        ),
        vec!["--generic".into()],
        1,
    ));
    // b64 false (RFC 7797), flattened, with the header member overlap too.
    let raw_payload = "$.02";
    let h = jose_binding::b64::encode(br#"{"alg":"HS256","b64":false,"crit":["b64"]}"#);
    {
        let sig = mac256(&key32, format!("{h}.{raw_payload}").as_bytes());
        let flattened = json!({"protected": h, "header": {"alg": "HS256", "kid": "k"},
            "payload": raw_payload, "signature": sig});
        cases.push((
            "b64-false",
            flattened.to_string(),
            vec!["--key".into(), oct32.clone()],
            0,
        ));
        cases.push((
            "header-overlap",
            flattened.to_string(),
            vec!["--key".into(), oct32.clone()],
            0,
        ));
    }
    // RFC vectors: RSA1_5, a detached payload, zip.
    let vectors = support::rfc_vectors();
    let vec_of = |name: &str| vectors.iter().find(|v| v["name"] == name).unwrap().clone();
    for (code, name, status) in [
        ("rsa1_5", "rfc7520-5.1-compact", 0),
        ("detached-payload", "rfc7520-4.5-compact", 4),
        ("zip", "rfc7520-5.9-compact", 4),
    ] {
        let v = vec_of(name);
        let key = write(&dir, &format!("{name}.json"), &v["key"].to_string());
        cases.push((
            code,
            v["token"].as_str().unwrap().to_owned(),
            vec!["--key".into(), key],
            status,
        ));
    }
    // PBES2 counts and an epk off its curve: refused before any computing.
    let pbes2 = vec_of("rfc7520-5.3-compact");
    let pw = write(&dir, "pw", pbes2["password"].as_str().unwrap());
    let too_many = with_header(pbes2["token"].as_str().unwrap(), |h| {
        h["p2c"] = json!(2_000_000_000u64)
    });
    cases.push((
        "p2c-too-large",
        too_many,
        vec!["--password-file".into(), pw.clone()],
        3,
    ));
    // A real token with a low count (josekit takes p2c from the header).
    let mut h = enc_header("A128GCM");
    h.set_claim("p2c", Some(json!(100))).unwrap();
    let encrypter = jwe::PBES2_HS256_A128KW
        .encrypter_from_bytes(b"low count")
        .unwrap();
    let low = jwe::serialize_compact(claims, &h, &encrypter).unwrap();
    let low_pw = write(&dir, "low-pw", "low count\n");
    cases.push(("p2c-low", low, vec!["--password-file".into(), low_pw], 0));
    let ecdh = vec_of("rfc7520-5.4-compact");
    let key = write(&dir, "ecdh.json", &ecdh["key"].to_string());
    let off_curve = with_header(ecdh["token"].as_str().unwrap(), |h| {
        let mut y = jose_binding::b64::decode(h["epk"]["y"].as_str().unwrap()).unwrap();
        y[10] ^= 1;
        h["epk"]["y"] = json!(jose_binding::b64::encode(&y));
    });
    cases.push(("epk-invalid", off_curve, vec!["--key".into(), key], 3));

    let mut seen = std::collections::BTreeSet::new();
    for (code, token, flags, status) in &cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let (got, r) = decode(&flags, token);
        assert_eq!(got, *status, "{code}: {:#}", r["checks"]);
        assert!(
            warnings(&r).iter().any(|w| w == code),
            "{code} not warned: {:?}",
            warnings(&r)
        );
        let mut strict = flags.clone();
        strict.push("--strict");
        let (got, _) = decode(&strict, token);
        assert!(
            got == 3 || (*status == 1 && got == 1),
            "{code} --strict: {got}"
        );
        if *status == 0 {
            assert_eq!(got, 3, "{code} --strict");
        }
        seen.insert(*code);
    }
    for lint in jose_debug::lint::Lint::ALL {
        assert!(
            seen.contains(lint.code()),
            "no token triggers {}",
            lint.code()
        );
    }
}

#[test]
fn help_lists_every_key_form_and_algorithm() {
    let o = run(&["decode", "--help"], b"");
    let help = String::from_utf8_lossy(&o.stdout);
    for word in [
        "SPKI",
        "PKCS#8",
        "PKCS#1",
        "SEC1",
        "X.509",
        "JWK",
        "JWKS",
        "--password-file",
        "HS256",
        "RS256",
        "PS256",
        "ES256",
        "ES512",
        "EdDSA",
        "RSA-OAEP",
        "RSA-OAEP-256",
        "A128KW",
        "A128GCMKW",
        "ECDH-ES",
        "ECDH-ES+A256KW",
        "PBES2-HS256+A128KW",
        "A128CBC-HS256",
        "A256GCM",
        "--strict",
    ] {
        assert!(help.contains(word), "decode --help does not name {word}");
    }
}

/// README "Debugging tokens", as written: an RS256 token with no kid
/// against a JWKS, and an ECDH-ES JWE with a PEM private key
/// (fixtures/jose, made by jwcrypto with fixtures/jose/make.py).
#[test]
fn readme_examples_hold() {
    let fixtures = support::fixtures().join("jose");
    let at = |f: &str| fixtures.join(f).to_str().unwrap().to_owned();
    let token = std::fs::read(at("rs256-nokid.jwt")).unwrap();
    let o = run(&["decode", "--key", &at("idp-jwks.json")], &token);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0, "{text}");
    assert!(
        text.contains(r#"RS256: verifies with the key kid "2026-12""#),
        "{text}"
    );
    assert!(
        text.contains("the header has no kid; tried 2 key(s)"),
        "{text}"
    );
    let jwe = std::fs::read_to_string(at("ecdh-es.jwe")).unwrap();
    let o = run(
        &["decode", "--key", &at("ec-p256-private.pem"), jwe.trim()],
        b"",
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0, "{text}");
    assert!(
        text.contains("ECDH-ES/A256GCM: decrypts with the key thumbprint"),
        "{text}"
    );
    assert!(
        text.contains("text: The launch code is in the blue binder."),
        "{text}"
    );
    let readme = std::fs::read_to_string(support::fixtures().join("../README.md")).unwrap();
    for line in [
        "decode --key fixtures/jose/idp-jwks.json < fixtures/jose/rs256-nokid.jwt",
        "decode --key fixtures/jose/ec-p256-private.pem \"$(cat fixtures/jose/ecdh-es.jwe)\"",
    ] {
        assert!(readme.contains(line), "README no longer shows: {line}");
    }
}

/// What a token or key file chooses (alg, kid, crv, a library's error
/// about them) reaches the terminal escaped.
#[test]
fn token_chosen_text_is_escaped() {
    let dir = tmp("escape");
    let key = write(
        &dir,
        "k.json",
        &json!({"kty":"oct","k":jose_binding::b64::encode(&[1u8; 32]),"kid":"a\u{1b}[2J"})
            .to_string(),
    );
    for header in [
        json!({"alg":"HS256\u{1b}[2J"}),
        json!({"alg":"HS256","kid":"\u{1b}]0;owned\u{7}"}),
        json!({"alg":"HS256\n  VALID: exit status 0 (valid)\u{1b}"}),
        json!({"alg":"ECDH-ES","enc":"A128GCM","epk":{"kty":"EC","crv":"P-256\u{1b}[2J","x":"AA","y":"AA"}}),
    ] {
        let h = jose_binding::b64::encode(header.to_string().as_bytes());
        let token = if header["enc"].is_null() {
            format!("{h}.e30.AAAA")
        } else {
            format!("{h}..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA")
        };
        let o = run(&["decode", "--color", "never", "--key", &key, &token], b"");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
        assert!(
            text.contains("\\u{001b}") || text.contains("\\u{1b}"),
            "{text}"
        );
    }
}

fn rs(alg: &str, header: &Value, payload: &[u8], pem: &str) -> String {
    let mut h = JwsHeader::new();
    for (k, v) in header.as_object().unwrap() {
        h.set_claim(k, Some(v.clone())).unwrap();
    }
    let signer: Box<dyn jws::JwsSigner> = match alg {
        "RS256" => Box::new(jws::RS256.signer_from_pem(pem).unwrap()),
        _ => Box::new(
            jws::PS256
                .signer_from_jwk(&RsaKeyPair::from_pem(pem).unwrap().to_jwk_key_pair())
                .unwrap(),
        ),
    };
    jws::serialize_compact(payload, &h, &*signer).unwrap()
}

/// A kid that names a key is held to it: another key of the set that
/// happens to verify never stands in, whether the named key is another
/// key, restricted to another alg, or marked for encryption.
#[test]
fn the_key_a_kid_names_is_the_only_one_tried() {
    let dir = tmp("kid");
    let (a, b) = (rsa(), rsa());
    let jwk = |p: &Pair, kid: &str, extra: Value| {
        let mut v: Value = serde_json::from_str(&p.public_jwk.to_string()).unwrap();
        v["kid"] = json!(kid);
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let claims = br#"{"iss":"kid"}"#;
    for (what, set, alg) in [
        (
            "another key",
            json!({"keys":[jwk(&a, "a", json!({})), jwk(&b, "b", json!({}))]}),
            "RS256",
        ),
        (
            "a key for another alg",
            json!({"keys":[jwk(&a, "a", json!({"alg":"RS256"})), jwk(&b, "b", json!({"alg":"PS256"}))]}),
            "PS256",
        ),
        (
            "a key for encryption",
            json!({"keys":[jwk(&a, "a", json!({"use":"enc"})), jwk(&b, "b", json!({}))]}),
            "RS256",
        ),
    ] {
        let set = write(&dir, "set.json", &set.to_string());
        // Signed by b, naming a.
        let token = rs(
            alg,
            &json!({"alg": alg, "kid": "a"}),
            claims,
            &b.private_pem,
        );
        let (status, r) = decode(&["--key", &set], &token);
        assert_eq!(status, 1, "{what}: {:#}", r["token"]["layers"][0]);
        // Naming b, it verifies.
        let token = rs(
            alg,
            &json!({"alg": alg, "kid": "b"}),
            claims,
            &b.private_pem,
        );
        assert_eq!(decode(&["--key", &set], &token).0, 0, "{what}, kid b");
    }
    // A key marked for encryption is no signing key even without a kid.
    let only = write(
        &dir,
        "only.json",
        &jwk(&a, "a", json!({"use":"enc"})).to_string(),
    );
    let token = rs("RS256", &json!({"alg": "RS256"}), claims, &a.private_pem);
    let (status, r) = decode(&["--key", &only], &token);
    assert_eq!(status, 4, "{:#}", r["checks"]);
    assert!(warnings(&r).contains(&"alg-key-mismatch".to_owned()));
}

/// RFC 7797: an unencoded payload is signed as its bytes, binary included.
#[test]
fn an_unencoded_detached_payload_is_signed_as_bytes() {
    let dir = tmp("b64");
    let key = [4u8; 32];
    let k = oct_file(&dir, "k.json", &key);
    let h = jose_binding::b64::encode(br#"{"alg":"HS256","b64":false,"crit":["b64"]}"#);
    let sign = |payload: &[u8]| {
        let input = [h.as_bytes(), b".", payload].concat();
        format!("{h}..{}", mac256(&key, &input))
    };
    let payload = write(&dir, "payload", "");
    std::fs::write(&payload, [0xff, 0x00, 0x80]).unwrap();
    let (status, r) = decode(
        &["--key", &k, "--payload", &payload],
        &sign(&[0xff, 0x00, 0x80]),
    );
    assert_eq!(status, 0, "{:#}", r["checks"]);
    // U+FFFD's bytes are not 0xff: a lossy reading would verify this one.
    std::fs::write(&payload, [0xff]).unwrap();
    let (status, _) = decode(
        &["--key", &k, "--payload", &payload],
        &sign("\u{fffd}".as_bytes()),
    );
    assert_eq!(status, 1);
}

/// What a JSON serialization may not do, and what it may not cost.
#[test]
fn json_serializations_are_held_to_their_rules() {
    let dir = tmp("json-rules");
    let key = [6u8; 32];
    let k = oct_file(&dir, "k.json", &key);
    let payload = jose_binding::b64::encode(br#"{"iss":"json"}"#);
    let sig = |protected: &Value| {
        let p = jose_binding::b64::encode(protected.to_string().as_bytes());
        json!({"protected": p, "signature": mac256(&key, format!("{p}.{payload}").as_bytes())})
    };
    let good = sig(&json!({"alg":"HS256"}));
    let ok = json!({"payload": payload, "signatures": [good.clone()]});
    assert_eq!(decode(&["--key", &k], &ok.to_string()).0, 0);
    // A second signature's crit is read too.
    let crit = json!({"payload": payload, "signatures": [good.clone(), sig(&json!({"alg":"HS256","crit":["exp"],"exp":1}))]});
    let (status, r) = decode(&["--key", &k], &crit.to_string());
    assert_eq!(status, 3, "{:#}", r["checks"]);
    // b64, crit and zip must be protected.
    for member in [
        json!({"b64": false}),
        json!({"crit": ["b64"]}),
        json!({"zip": "DEF"}),
    ] {
        let mut s = good.clone();
        s["header"] = member.clone();
        let t = json!({"payload": payload, "signatures": [s]});
        let (status, r) = decode(&["--key", &k], &t.to_string());
        assert_eq!(status, 3, "unprotected {member}: {:#}", r["checks"]);
    }
    // At most 16 signatures are opened; more is refused, not computed.
    let many = json!({"payload": payload, "signatures": vec![good.clone(); 17]});
    let (status, r) = decode(&["--key", &k], &many.to_string());
    assert_eq!(status, 3, "{:#}", r["checks"]);
    assert_eq!(
        r["token"]["layers"][0]["entries"].as_array().unwrap().len(),
        16
    );
}

/// An encrypted key too short for an AES key wrap is refused before
/// josekit slices it; PBES2 work per run is capped.
#[test]
fn key_wraps_are_checked_before_they_are_computed() {
    let dir = tmp("kw");
    let k = write(&dir, "k.json", &oct(16).to_string());
    // 1 and 8 bytes (josekit would subtract 8 from them), 22 (not a
    // multiple of 8): refused; 24 bytes is a wrap, and only the key fails.
    for (alg, ek, want) in [
        ("A128KW", "AA", 3),
        ("A128KW", "AAAAAAAAAAA", 3),
        ("A128KW", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 3),
        ("A128KW", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1),
        ("PBES2-HS256+A128KW", "AAAAAAAAAAA", 3),
        ("ECDH-ES+A128KW", "AA", 3),
    ] {
        let h = jose_binding::b64::encode(
            json!({"alg": alg, "enc": "A128GCM", "p2c": 1000, "p2s": "AAAAAAAAAAA"})
                .to_string()
                .as_bytes(),
        );
        let token = format!("{h}.{ek}.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA");
        let (status, r) = decode(&["--key", &k], &token);
        assert_eq!(
            status, want,
            "{alg} with an encrypted key of {ek}: {:#}",
            r["checks"]
        );
    }
    // Sixteen PBES2 recipients at the largest count: eight are computed.
    let pw = write(&dir, "pw", "secret\n");
    let h = jose_binding::b64::encode(br#"{"enc":"A128GCM"}"#);
    let recipient = json!({"header": {"alg":"PBES2-HS256+A128KW","p2c": 1_000_000,"p2s":"AAAAAAAAAAA"},
        "encrypted_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    let t = json!({"protected": h, "recipients": vec![recipient; 16], "iv": "AAAAAAAAAAAAAAAA",
        "ciphertext": "AAAA", "tag": "AAAAAAAAAAAAAAAAAAAAAA"});
    let (status, r) = decode(&["--password-file", &pw], &t.to_string());
    assert_eq!(status, 1, "{:#}", r["checks"]);
    let entries = r["token"]["layers"][0]["entries"].as_array().unwrap();
    let not_tried = entries
        .iter()
        .filter(|e| e["crypto"]["status"] == "unsupported")
        .count();
    assert_eq!(not_tried, 8, "{entries:#?}");
}

/// A second review's findings: what a kid names holds for PBES2 too, a
/// public key is no key for a JWE, key_ops are read as josekit reads them,
/// a malformed PBES2 or ECDH-ES header is the token's fault, and what could
/// be a password is never fingerprinted.
#[test]
fn keys_and_headers_are_judged_for_what_they_are() {
    let dir = tmp("judged");
    let claims = br#"{"iss":"judged"}"#;
    // PBES2 whose kid names an oct key its JWK restricts to another alg:
    // the password that would decrypt is not tried in its place.
    let mut h = enc_header("A128GCM");
    h.set_key_id("p");
    let pbes2 = jwe::serialize_compact(
        claims,
        &h,
        &jwe::PBES2_HS256_A128KW.encrypter_from_bytes(b"pw").unwrap(),
    )
    .unwrap();
    let pw = write(&dir, "pw", "pw\n");
    let named = write(
        &dir,
        "named.json",
        &json!({"kty":"oct","k":"cHc","kid":"p","alg":"A128KW"}).to_string(),
    );
    assert_eq!(decode(&["--password-file", &pw], &pbes2).0, 0);
    assert_eq!(
        decode(&["--password-file", &pw, "--key", &named], &pbes2).0,
        1
    );
    // RSA-OAEP for a public key only: nothing could be checked.
    let r = rsa();
    let oaep = jwe::serialize_compact(
        claims,
        &enc_header("A128GCM"),
        &jwe::RSA_OAEP.encrypter_from_pem(&r.public_pem).unwrap(),
    )
    .unwrap();
    let public = write(&dir, "public.pem", &r.public_pem);
    let (status, rep) = decode(&["--key", &public], &oaep);
    assert_eq!(status, 4, "{:#}", rep["checks"]);
    assert!(rep.to_string().contains("a public key cannot decrypt"));
    // key_ops as josekit reads them: unwrapKey for A128KW, verify for ES256.
    let k = oct(16);
    let kw = jwe::serialize_compact(
        claims,
        &enc_header("A128GCM"),
        &jwe::A128KW.encrypter_from_bytes(oct_bytes(&k)).unwrap(),
    )
    .unwrap();
    let mut with_ops: Value = serde_json::from_str(&k.to_string()).unwrap();
    with_ops["key_ops"] = json!(["unwrapKey"]);
    let f = write(&dir, "ops.json", &with_ops.to_string());
    assert_eq!(decode(&["--key", &f], &kw).0, 0);
    with_ops["key_ops"] = json!(["encrypt"]);
    let f = write(&dir, "ops.json", &with_ops.to_string());
    assert_eq!(decode(&["--key", &f], &kw).0, 4);
    // Malformed PBES2 and ECDH-ES members: refused (3), no key blamed.
    let ec_key = ec(EcCurve::P256);
    let ec_file = write(&dir, "ec.pem", &ec_key.private_pem);
    let ecdh = jwe::serialize_compact(
        claims,
        &enc_header("A128GCM"),
        &jwe::ECDH_ES.encrypter_from_pem(&ec_key.public_pem).unwrap(),
    )
    .unwrap();
    assert_eq!(decode(&["--key", &ec_file], &ecdh).0, 0);
    for (what, token, flags) in [
        (
            "no p2s",
            with_header(&pbes2, |h| {
                h.as_object_mut().unwrap().remove("p2s");
            }),
            vec!["--password-file", pw.as_str()],
        ),
        (
            "p2c 0",
            with_header(&pbes2, |h| h["p2c"] = json!(0)),
            vec!["--password-file", pw.as_str()],
        ),
        (
            "apu not a string",
            with_header(&ecdh, |h| h["apu"] = json!(7)),
            vec!["--key", ec_file.as_str()],
        ),
        (
            "epk x padded",
            with_header(&ecdh, |h| {
                let x = h["epk"]["x"].as_str().unwrap().to_owned();
                h["epk"]["x"] = json!(format!("{x}="));
            }),
            vec!["--key", ec_file.as_str()],
        ),
    ] {
        let (status, rep) = decode(&flags, &token);
        assert_eq!(status, 3, "{what}: {:#}", rep["checks"]);
    }
    // An oct key or a password is never fingerprinted in the output.
    let key = oct(32);
    let f = write(&dir, "hs.json", &key.to_string());
    let token = hs256(&json!({"alg":"HS256"}), claims, &oct_bytes(&key));
    let o = run(&["decode", "--json", "--key", &f, &token], b"");
    let fp = jose_binding::Fingerprint::of("oct", &oct_bytes(&key)).to_string();
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&fp));
    assert_eq!(code(&o), 0);
    let o = run(&["decode", "--password-file", &pw, &pbes2], b"");
    for kind in ["password", "enc", "sig"] {
        let fp = jose_binding::Fingerprint::of(kind, b"pw").to_string();
        assert!(!String::from_utf8_lossy(&o.stdout).contains(&fp), "{kind}");
    }
    // A payload's line breaks stay inside its line.
    let token = hs256(
        &json!({"alg":"HS256"}),
        b"a\n  VALID: exit status 0",
        &oct_bytes(&key),
    );
    let o = run(&["decode", "--key", &f, &flip_signature(&token)], b"");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.lines().any(|l| l.starts_with("  VALID")), "{text}");
    assert_eq!(code(&o), 1);
}

/// The signature's last byte flipped.
fn flip_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut s = jose_binding::b64::decode(sig).unwrap();
    let last = s.len() - 1;
    s[last] ^= 1;
    format!("{head}.{}", jose_binding::b64::encode(&s))
}

/// An RSA key too large to use in reasonable time is not read.
#[test]
fn huge_rsa_keys_are_not_read() {
    let dir = tmp("huge");
    let n = jose_binding::b64::encode(&vec![0xffu8; 16384 / 8 + 1]);
    let f = write(
        &dir,
        "huge.json",
        &json!({"kty":"RSA","n":n,"e":"AQAB"}).to_string(),
    );
    let o = run(&["decode", "--key", &f, "e30.e30.AA"], b"");
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("16384"));
}
