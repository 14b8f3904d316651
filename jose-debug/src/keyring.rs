//! Keys for plain JOSE (`--key FILE`): PEM in every common flavour, a JWK,
//! or a JWK set, read into one list the layers pick from by `kid` and type.
//!
//! Everything becomes a JWK (josekit's [`Jwk`]) because that is what the
//! algorithms take; PEM is read with OpenSSL, which josekit is built on.
//! Public keys are named by their RFC 7638 thumbprint, secret ones by a
//! fingerprint, never by their value.

use std::path::Path;

use base64::Engine;
use josekit::jwk::Jwk;
use openssl::bn::{BigNumContext, BigNumRef};
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, Private};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Largest key file read (a JWK set of a few hundred keys fits).
pub const MAX_KEY_SET_FILE: u64 = 1024 * 1024;

/// Largest RSA modulus read: each use of a larger one costs seconds.
pub const MAX_RSA_BITS: usize = 16384;

/// What a key is, as far as choosing an algorithm goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A symmetric key of this many bytes.
    Oct {
        len: usize,
    },
    Rsa {
        bits: usize,
        private: bool,
    },
    /// `P-256`, `P-384`, `P-521`, `secp256k1`.
    Ec {
        crv: String,
        private: bool,
    },
    /// `Ed25519`, `Ed448`, `X25519`, `X448`.
    Okp {
        crv: String,
        private: bool,
    },
}

impl KeyKind {
    /// `RSA 2048 public`, `EC P-256 private`, `oct (symmetric)`.
    pub fn describe(&self) -> String {
        let half = |p: bool| if p { "private" } else { "public" };
        match self {
            KeyKind::Oct { .. } => "oct (symmetric)".to_owned(),
            KeyKind::Rsa { bits, private } => format!("RSA {bits} {}", half(*private)),
            KeyKind::Ec { crv, private } => format!("EC {crv} {}", half(*private)),
            KeyKind::Okp { crv, private } => format!("OKP {crv} {}", half(*private)),
        }
    }

    pub fn is_private(&self) -> bool {
        match self {
            KeyKind::Oct { .. } => true,
            KeyKind::Rsa { private, .. }
            | KeyKind::Ec { private, .. }
            | KeyKind::Okp { private, .. } => *private,
        }
    }
}

/// One key of the ring.
#[derive(Debug, Clone)]
pub struct RingKey {
    /// Where it came from: `FILE`, `FILE#3` (the third of a set or PEM bundle).
    pub source: String,
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// `thumbprint X` (RFC 7638) for a public key; `from FILE#N` for a
    /// symmetric one, which is never hashed where it is shown.
    pub fp: String,
    /// The JWK's own `alg`, `use` and `key_ops`, when it has them.
    pub alg: Option<String>,
    pub key_use: Option<String>,
    pub key_ops: Option<Vec<String>>,
    pub jwk: Jwk,
}

impl RingKey {
    /// How the output names the key: its kid when it has one, then its type
    /// and fingerprint.
    pub fn label(&self) -> String {
        match &self.kid {
            Some(kid) => format!("kid {kid:?} ({}, {})", self.kind.describe(), self.fp),
            None => format!("{} ({}, {})", self.source, self.kind.describe(), self.fp),
        }
    }

    /// The symmetric key's bytes (`oct` only).
    pub fn octets(&self) -> Option<Zeroizing<Vec<u8>>> {
        match self.jwk.parameter("k")? {
            Value::String(k) => crate::keys::LENIENT_B64URL
                .decode(k.as_bytes())
                .ok()
                .map(Zeroizing::new),
            _ => None,
        }
    }
}

/// Every key given with `--key`, in order.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    pub keys: Vec<RingKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("--key {path}: cannot read it: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("--key {path}: larger than 1 MiB; that is no key file")]
    TooLarge { path: String },
    #[error("--key {path}: {why}")]
    Invalid { path: String, why: String },
}

impl KeyRing {
    /// Reads each file; the first one that is not a key stops with an error
    /// naming it (never quoting its content).
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<KeyRing, KeyFileError> {
        let mut ring = KeyRing::default();
        for p in paths {
            let path = p.as_ref();
            let shown = path.display().to_string();
            let text = read_bounded(path)?;
            let keys = parse_key_text(&text, &shown).map_err(|why| KeyFileError::Invalid {
                path: shown.clone(),
                why,
            })?;
            ring.keys.extend(keys);
        }
        Ok(ring)
    }

    /// The kids of the ring, for "it has A, B".
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }
}

fn read_bounded(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    use std::io::Read;
    let shown = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| KeyFileError::Io {
        path: shown(),
        source,
    })?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_SET_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|source| KeyFileError::Io {
            path: shown(),
            source,
        })?;
    if buf.len() as u64 > MAX_KEY_SET_FILE {
        return Err(KeyFileError::TooLarge { path: shown() });
    }
    match std::str::from_utf8(&buf) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(KeyFileError::Invalid {
            path: shown(),
            why: "not text: give a PEM file, a JWK or a JWK set (DER is not read; \
                  `openssl pkey -inform DER` makes PEM of it)"
                .to_owned(),
        }),
    }
}

/// A key file's text: a JWK set, a JWK, or PEM blocks.
pub fn parse_key_text(text: &str, source: &str) -> Result<Vec<RingKey>, String> {
    let t = text.trim_start();
    if t.starts_with('{') {
        let value: Value =
            serde_json::from_str(t).map_err(|e| format!("not a JWK or JWK set: {e}"))?;
        let Value::Object(map) = value else {
            return Err("not a JSON object".to_owned());
        };
        return match map.get("keys") {
            Some(Value::Array(keys)) => {
                let mut out = Vec::new();
                for (i, k) in keys.iter().enumerate() {
                    let Value::Object(m) = k else {
                        return Err(format!("keys[{i}] is not a JSON object"));
                    };
                    out.push(
                        from_jwk_map(m.clone(), format!("{source}#{}", i + 1))
                            .map_err(|e| format!("keys[{i}]: {e}"))?,
                    );
                }
                if out.is_empty() {
                    return Err("the JWK set has no keys".to_owned());
                }
                Ok(out)
            }
            Some(_) => Err("\"keys\" is not an array".to_owned()),
            None => Ok(vec![from_jwk_map(map, source.to_owned())?]),
        };
    }
    if t.contains("-----BEGIN ") {
        return parse_pem(t, source);
    }
    Err("neither PEM (-----BEGIN ...) nor a JWK or JWK set (JSON)".to_owned())
}

/// A JWK's members, checked for what its type needs.
pub fn from_jwk_map(map: Map<String, Value>, source: String) -> Result<RingKey, String> {
    let s = |name: &str| map.get(name).and_then(Value::as_str);
    let b64_len = |name: &str| -> Result<usize, String> {
        let v = s(name).ok_or_else(|| format!("the JWK has no {name} (string)"))?;
        crate::keys::LENIENT_B64URL
            .decode(v.as_bytes())
            .map(|b| b.len())
            .map_err(|_| format!("the JWK's {name} is not base64url"))
    };
    let private = map.contains_key("d");
    let kind = match s("kty") {
        Some("oct") => KeyKind::Oct { len: b64_len("k")? },
        Some("RSA") => {
            let n = s("n").ok_or("the RSA JWK has no n")?;
            let n = crate::keys::LENIENT_B64URL
                .decode(n.as_bytes())
                .map_err(|_| "the RSA JWK's n is not base64url")?;
            b64_len("e")?;
            let lead = n.iter().take_while(|b| **b == 0).count();
            let bits = match n.get(lead) {
                Some(first) => (n.len() - lead) * 8 - first.leading_zeros() as usize,
                None => 0,
            };
            if bits > MAX_RSA_BITS {
                return Err(format!(
                    "an RSA key of {bits} bits: keys above {MAX_RSA_BITS} bits are not read"
                ));
            }
            KeyKind::Rsa { bits, private }
        }
        Some("EC") => {
            let crv = s("crv").ok_or("the EC JWK has no crv")?.to_owned();
            b64_len("x")?;
            b64_len("y")?;
            KeyKind::Ec { crv, private }
        }
        Some("OKP") => {
            let crv = s("crv").ok_or("the OKP JWK has no crv")?.to_owned();
            b64_len("x")?;
            KeyKind::Okp { crv, private }
        }
        Some(other) => return Err(format!("kty {other:?} is not oct, RSA, EC or OKP")),
        None => return Err("the JWK has no kty".to_owned()),
    };
    // A symmetric key may be a password (PBES2): its hash would be a
    // guessing oracle, so it is named by where it came from.
    let fp = match &kind {
        KeyKind::Oct { .. } => format!("from {source}"),
        _ => format!("thumbprint {}", thumbprint(&map).unwrap_or_default()),
    };
    let kid = s("kid").map(str::to_owned);
    let alg = s("alg").map(str::to_owned);
    let key_use = s("use").map(str::to_owned);
    let key_ops = match map.get("key_ops") {
        None => None,
        Some(Value::Array(ops)) => Some(
            ops.iter()
                .map(|o| {
                    o.as_str()
                        .map(str::to_owned)
                        .ok_or("key_ops holds a non-string")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("the JWK's key_ops is not an array".to_owned()),
    };
    let jwk = Jwk::from_map(map).map_err(|e| format!("not a JWK: {e}"))?;
    Ok(RingKey {
        source,
        kid,
        kind,
        fp,
        alg,
        key_use,
        key_ops,
        jwk,
    })
}

/// RFC 7638: SHA-256 of the required members in lexicographic order,
/// base64url.
pub fn thumbprint(map: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match map.get("kty")?.as_str()? {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        _ => return None,
    };
    // The members are listed in lexicographic order; no whitespace.
    let mut text = String::from("{");
    for (i, m) in members.iter().enumerate() {
        let v = serde_json::to_string(map.get(*m)?.as_str()?).ok()?;
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("\"{m}\":{v}"));
    }
    text.push('}');
    Some(jose_binding::b64::encode(&Sha256::digest(text.as_bytes())))
}

/// Each PEM block of the text, in order; `EC PARAMETERS` blocks are skipped.
fn parse_pem(text: &str, source: &str) -> Result<Vec<RingKey>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut index = 0;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after.find("-----").ok_or("a PEM header line is cut")?;
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let end = start
            + rest[start..]
                .find(&end_marker)
                .ok_or_else(|| format!("the PEM block {label} has no END line"))?;
        let block = &rest[start..end + end_marker.len()];
        rest = &rest[end + end_marker.len()..];
        index += 1;
        let name = if index == 1 {
            source.to_owned()
        } else {
            format!("{source}#{index}")
        };
        let map = match label {
            "EC PARAMETERS" => continue,
            "CERTIFICATE" => {
                let cert = openssl::x509::X509::from_pem(block.as_bytes())
                    .map_err(|_| "the CERTIFICATE block is not an X.509 certificate")?;
                let key = cert
                    .public_key()
                    .map_err(|_| "the certificate's key is not one OpenSSL reads")?;
                public_jwk(&key)?
            }
            "PUBLIC KEY" => {
                let key = PKey::public_key_from_pem(block.as_bytes())
                    .map_err(|_| "the PUBLIC KEY block is not an SPKI public key")?;
                public_jwk(&key)?
            }
            "RSA PUBLIC KEY" => {
                let rsa = openssl::rsa::Rsa::public_key_from_pem_pkcs1(block.as_bytes())
                    .map_err(|_| "the RSA PUBLIC KEY block is not a PKCS#1 public key")?;
                let key = PKey::from_rsa(rsa).map_err(|e| e.to_string())?;
                public_jwk(&key)?
            }
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" if block.contains("Proc-Type: 4,ENCRYPTED") => {
                return Err(format!(
                    "the {label} is encrypted: decrypt it first (openssl pkey -in FILE -out PLAIN.pem)"
                ))
            }
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                // No passphrase is ever asked for: a callback that gives none.
                let key = PKey::private_key_from_pem_callback(block.as_bytes(), |_| Ok(0))
                    .map_err(|_| format!("the {label} block is not a private key OpenSSL reads"))?;
                private_jwk(&key)?
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the private key is encrypted: decrypt it first \
                            (openssl pkey -in FILE -out PLAIN.pem)"
                    .to_owned())
            }
            other => return Err(format!("PEM block {other:?} is not a key or certificate")),
        };
        out.push(from_jwk_map(map, name)?);
    }
    if out.is_empty() {
        return Err("no key in the PEM file".to_owned());
    }
    Ok(out)
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(jose_binding::b64::encode(bytes))
}

/// A big number as exactly `len` bytes (JWK EC coordinates are fixed-size).
fn padded(n: &BigNumRef, len: usize) -> Result<Zeroizing<Vec<u8>>, String> {
    n.to_vec_padded(len as i32)
        .map(Zeroizing::new)
        .map_err(|e| e.to_string())
}

fn curve_name(nid: Option<Nid>) -> Result<&'static str, String> {
    match nid {
        Some(Nid::X9_62_PRIME256V1) => Ok("P-256"),
        Some(Nid::SECP384R1) => Ok("P-384"),
        Some(Nid::SECP521R1) => Ok("P-521"),
        Some(Nid::SECP256K1) => Ok("secp256k1"),
        _ => Err("an EC key on a curve JOSE has no name for".to_owned()),
    }
}

/// The public members of a key as a JWK.
fn public_jwk<T: HasPublic>(key: &PKey<T>) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    let e = |e: openssl::error::ErrorStack| e.to_string();
    match key.id() {
        Id::RSA => {
            let rsa = key.rsa().map_err(e)?;
            m.insert("kty".into(), "RSA".into());
            m.insert("n".into(), b64(&rsa.n().to_vec()));
            m.insert("e".into(), b64(&rsa.e().to_vec()));
        }
        Id::EC => {
            let ec = key.ec_key().map_err(e)?;
            let group = ec.group();
            let len = (group.degree() as usize).div_ceil(8);
            let mut ctx = BigNumContext::new().map_err(e)?;
            let (mut x, mut y) = (
                openssl::bn::BigNum::new().map_err(e)?,
                openssl::bn::BigNum::new().map_err(e)?,
            );
            ec.public_key()
                .affine_coordinates(group, &mut x, &mut y, &mut ctx)
                .map_err(e)?;
            m.insert("kty".into(), "EC".into());
            m.insert("crv".into(), curve_name(group.curve_name())?.into());
            m.insert("x".into(), b64(&padded(&x, len)?));
            m.insert("y".into(), b64(&padded(&y, len)?));
        }
        id @ (Id::ED25519 | Id::ED448 | Id::X25519 | Id::X448) => {
            let crv = match id {
                Id::ED25519 => "Ed25519",
                Id::ED448 => "Ed448",
                Id::X25519 => "X25519",
                _ => "X448",
            };
            m.insert("kty".into(), "OKP".into());
            m.insert("crv".into(), crv.into());
            m.insert("x".into(), b64(&key.raw_public_key().map_err(e)?));
        }
        _ => return Err("a key type JOSE does not use (not RSA, EC or OKP)".to_owned()),
    }
    Ok(m)
}

/// A private key as a JWK: the public members and the private ones.
fn private_jwk(key: &PKey<Private>) -> Result<Map<String, Value>, String> {
    let mut m = public_jwk(key)?;
    let e = |e: openssl::error::ErrorStack| e.to_string();
    match key.id() {
        Id::RSA => {
            let rsa = key.rsa().map_err(e)?;
            let secret = |n: Option<&BigNumRef>| n.map(|n| b64(&Zeroizing::new(n.to_vec())));
            m.insert("d".into(), b64(&Zeroizing::new(rsa.d().to_vec())));
            for (name, v) in [
                ("p", secret(rsa.p())),
                ("q", secret(rsa.q())),
                ("dp", secret(rsa.dmp1())),
                ("dq", secret(rsa.dmq1())),
                ("qi", secret(rsa.iqmp())),
            ] {
                if let Some(v) = v {
                    m.insert(name.into(), v);
                }
            }
        }
        Id::EC => {
            let ec = key.ec_key().map_err(e)?;
            let len = (ec.group().degree() as usize).div_ceil(8);
            m.insert("d".into(), b64(&padded(ec.private_key(), len)?));
        }
        _ => {
            m.insert(
                "d".into(),
                b64(&Zeroizing::new(key.raw_private_key().map_err(e)?)),
            );
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let Value::Object(m) = jwk else { panic!() };
        assert_eq!(
            thumbprint(&m).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        let k = from_jwk_map(m, "t".into()).unwrap();
        assert_eq!(
            k.kind,
            KeyKind::Rsa {
                bits: 2048,
                private: false
            }
        );
        assert_eq!(k.kid.as_deref(), Some("2011-04-29"));
    }

    #[test]
    fn every_pem_flavour_becomes_the_same_jwk() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pkcs1 = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
        let pkcs1_pub = String::from_utf8(rsa.public_key_to_pem_pkcs1().unwrap()).unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let pkcs8 = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let spki = String::from_utf8(key.public_key_to_pem().unwrap()).unwrap();
        let prints: Vec<(String, bool)> = [&pkcs1, &pkcs1_pub, &pkcs8, &spki]
            .iter()
            .map(|pem| {
                let k = parse_key_text(pem, "f").unwrap().remove(0);
                (k.fp, k.kind.is_private())
            })
            .collect();
        assert!(
            prints.iter().all(|(fp, _)| *fp == prints[0].0),
            "{prints:?}"
        );
        assert_eq!(
            prints.iter().map(|p| p.1).collect::<Vec<_>>(),
            [true, false, true, false]
        );

        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(Nid::SECP521R1).unwrap(),
        )
        .unwrap();
        let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
        let k = parse_key_text(
            &format!(
                "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIw==\n-----END EC PARAMETERS-----\n{sec1}"
            ),
            "f",
        )
        .unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(
            k[0].kind,
            KeyKind::Ec {
                crv: "P-521".into(),
                private: true
            }
        );
        let x = k[0].jwk.parameter("x").unwrap().as_str().unwrap();
        assert_eq!(crate::keys::LENIENT_B64URL.decode(x).unwrap().len(), 66);

        let ed = PKey::generate_ed25519().unwrap();
        let pem = String::from_utf8(ed.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let k = parse_key_text(&pem, "f").unwrap().remove(0);
        assert_eq!(k.kind.describe(), "OKP Ed25519 private");
    }

    #[test]
    fn an_encrypted_pem_is_refused_without_a_prompt() {
        let rsa = openssl::rsa::Rsa::generate(1024).unwrap();
        let legacy = rsa
            .private_key_to_pem_passphrase(openssl::symm::Cipher::aes_128_cbc(), b"pw")
            .unwrap();
        let text = String::from_utf8(legacy).unwrap();
        assert!(text.contains("Proc-Type: 4,ENCRYPTED"));
        let err = parse_key_text(&text, "f").unwrap_err();
        assert!(err.contains("encrypted"), "{err}");
    }

    #[test]
    fn sets_and_mistakes() {
        let set = r#"{"keys":[{"kty":"oct","k":"AAAA","kid":"a"},{"kty":"oct","k":"AQID"}]}"#;
        let ks = parse_key_text(set, "s.json").unwrap();
        assert_eq!(ks.len(), 2);
        assert_eq!(ks[1].source, "s.json#2");
        assert_eq!(ks[0].label().split(' ').nth(1), Some("\"a\""));
        assert!(!ks[0].fp.contains("AAAA"));
        for (text, says) in [
            ("hello", "neither PEM"),
            (r#"{"keys":[]}"#, "no keys"),
            (r#"{"kty":"XYZ"}"#, "not oct"),
            (r#"{"kty":"EC","x":"AA"}"#, "no crv"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----",
                "encrypted",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                "not an SPKI",
            ),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n", "no END"),
            // An END line before its BEGIN line: no slice across them.
            (
                "-----END PUBLIC KEY-----\n-----BEGIN PUBLIC KEY-----\nAAAA\n",
                "no END",
            ),
        ] {
            let err = parse_key_text(text, "f").unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
