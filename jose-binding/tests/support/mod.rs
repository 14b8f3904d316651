//! Helpers shared by jose-binding's integration tests.
//!
//! The first part serves any test file: the fixtures directory, client ids,
//! subkeys and keystores built from raw root keys, a verifier on a given
//! EKM, and the outcome of a verification. The second part is the fixed
//! world of the PROTOCOL.md §7 suite (`verifier_*.rs`): client1 and client2
//! on one EKM at a fixed `NOW`, and the token builders its cases need: the
//! library's own `issuer::seal`, `token::sign_jws` and `token::encrypt_jwe`,
//! or byte by byte (`raw_jws`, with a raw HMAC) where a case needs parts
//! those functions would never produce.
//!
//! A test file declares `mod support;` (Cargo builds no test binary for a
//! subdirectory of `tests/`); one that uses only part of it writes
//! `#[allow(dead_code)] mod support;`.

// Shared by the test binaries, not part of the library's API.
#![allow(unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use jose_binding::b64;
use jose_binding::token::seal;
use jose_binding::token::{encrypt_jwe, sign_jws};
use jose_binding::{
    ClientId, ConnectionVerifier, Ekm, ErrorCode, Form, Keystore, Policy, Rejection,
    SoftwareRootKey, SubKeys, Verified,
};
use serde_json::{json, Map, Value};
use sha2::Sha256;

// ---------------------------------------------------------------------------
// For any test
// ---------------------------------------------------------------------------

/// The fixed `now` of the tests, as the verifier takes it and as a claim.
pub const NOW: f64 = 1_700_000_000.0;
pub const T: i64 = 1_700_000_000;

/// The workspace's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn cid(id: &str) -> ClientId {
    ClientId::new(id).unwrap()
}

pub fn keys_for(root: [u8; 32], ekm: [u8; 32], id: &str) -> SubKeys {
    SubKeys::derive(
        &SoftwareRootKey::new(&root).unwrap(),
        &Ekm::from_bytes(ekm),
        &cid(id),
    )
    .unwrap()
}

/// A keystore of `(client id, root keys)`; ids are quoted, so any id works.
pub fn keystore_of(entries: &[(&str, &[[u8; 32]])]) -> Keystore {
    let mut text = String::new();
    for (id, roots) in entries {
        let list: Vec<String> = roots
            .iter()
            .map(|r| format!("\"{}\"", b64::encode(r)))
            .collect();
        text.push_str(&format!(
            "[clients.\"{id}\"]\nkeys = [{}]\n",
            list.join(", ")
        ));
    }
    Keystore::parse(&text).unwrap()
}

/// A fresh connection on `ekm`.
pub fn verifier_on(ekm: [u8; 32], policy: Policy) -> ConnectionVerifier {
    ConnectionVerifier::new(Ekm::from_bytes(ekm), Arc::new(policy))
}

/// The standard claims: `iss`, audience "localhost", 60 s from `T`, `jti`.
pub fn std_claims(iss: &str, jti: &str) -> Map<String, Value> {
    let v = json!({"iss": iss, "aud": "localhost", "iat": T, "exp": T + 60, "jti": jti});
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[track_caller]
pub fn accepted(r: Result<Verified, Rejection>) -> Verified {
    match r {
        Ok(v) => v,
        Err(r) => panic!("token was refused: {r}"),
    }
}

/// The code of a refusal.
#[track_caller]
pub fn refused(r: Result<Verified, Rejection>) -> ErrorCode {
    match r {
        Ok(v) => panic!("token was accepted: {v:?}"),
        Err(r) => r.code,
    }
}

/// The code of a refusal, which must carry a detail.
#[track_caller]
pub fn code_of(r: Result<Verified, Rejection>) -> ErrorCode {
    match r {
        Ok(v) => panic!("token was accepted: {v:?}"),
        Err(r) => {
            assert!(!r.detail.is_empty());
            r.code
        }
    }
}

// ---------------------------------------------------------------------------
// The §7 suite (verifier_*.rs): fixed clients, one EKM
// ---------------------------------------------------------------------------

pub const EKM: [u8; 32] = [0x11; 32];
pub const OTHER_EKM: [u8; 32] = [0x22; 32];
/// client1's current root key.
pub const ROOT: [u8; 32] = [0xA1; 32];
/// client1's previous root key (used only in the rotation keystore).
pub const ROOT_OLD: [u8; 32] = [0xA2; 32];
/// client2's root key.
pub const ROOT2: [u8; 32] = [0xB1; 32];
/// A key in no keystore.
pub const ROOT_STRANGER: [u8; 32] = [0xC1; 32];
pub const ID: &str = "client1";
pub const ID2: &str = "client2";
pub const IV: [u8; 12] = [0x33; 12];
pub const IV2: [u8; 12] = [0x44; 12];

/// client1's subkeys on this connection.
pub fn keys() -> SubKeys {
    keys_for(ROOT, EKM, ID)
}

/// client1 (ROOT) and client2 (ROOT2).
pub fn keystore() -> Keystore {
    keystore_of(&[(ID, &[ROOT]), (ID2, &[ROOT2])])
}

pub fn verifier() -> ConnectionVerifier {
    verifier_with(Policy::default())
}

pub fn verifier_with(policy: Policy) -> ConnectionVerifier {
    verifier_on(EKM, policy)
}

/// A fresh connection with the default keystore and policy.
pub fn verify(token: &str) -> Result<Verified, Rejection> {
    verifier().verify_at(&keystore(), token, NOW)
}

#[track_caller]
pub fn code(token: &str) -> ErrorCode {
    code_of(verify(token))
}

#[track_caller]
pub fn accept(token: &str) -> Verified {
    match verify(token) {
        Ok(v) => v,
        Err(r) => panic!("token was refused: {r}"),
    }
}

// ----- claims -----

pub fn to_text(m: &Map<String, Value>) -> String {
    serde_json::to_string(m).unwrap()
}

/// The standard claims with jti "jti-1".
pub fn claims() -> String {
    to_text(&std_claims(ID, "jti-1"))
}

/// The standard claims, edited.
pub fn claims_with(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut m = std_claims(ID, "jti-1");
    edit(&mut m);
    to_text(&m)
}

/// The standard claims with these `iat` and `exp`.
pub fn times(iat: Value, exp: Value) -> String {
    claims_with(|m| {
        m.insert("iat".into(), iat);
        m.insert("exp".into(), exp);
    })
}

/// Standard claims for `iss` = `id`.
pub fn claims_for(id: &str, jti: &str) -> String {
    claims_with(|m| {
        m.insert("iss".into(), id.into());
        m.insert("jti".into(), jti.into());
    })
}

/// Standard claims padded with a `pad` member to exactly `len` bytes.
pub fn claims_of_len(len: usize) -> String {
    let base = claims_with(|m| {
        m.insert("pad".into(), "".into());
    });
    assert!(len >= base.len());
    let out = claims_with(|m| {
        m.insert("pad".into(), "x".repeat(len - base.len()).into());
    });
    assert_eq!(out.len(), len);
    out
}

/// Standard claims (raw text) with one extra raw member spliced in at the end.
pub fn claims_raw(extra_member: &str) -> String {
    let c = claims();
    format!("{},{}}}", &c[..c.len() - 1], extra_member)
}

/// Standard claims with a filler member so that the length is `r` mod 3.
pub fn claims_len_mod3(r: usize) -> String {
    (0..3)
        .map(|k| claims_raw(&format!("\"p\":\"{}\"", "x".repeat(k))))
        .find(|c| c.len() % 3 == r)
        .unwrap()
}

// ----- tokens -----

pub fn token(form: Form, claims: &str) -> String {
    seal(form, &cid(ID), claims.as_bytes(), &keys(), IV)
}

pub fn token_with_keys(form: Form, id: &str, claims: &str, keys: &SubKeys) -> String {
    seal(form, &cid(id), claims.as_bytes(), keys, IV)
}

pub fn s(claims: &str) -> String {
    token(Form::Signed, claims)
}

pub fn jws(header: &str, payload: &[u8]) -> String {
    sign_jws(header, payload, &keys().sig)
}

pub fn jwe(header: &str, plaintext: &[u8]) -> String {
    encrypt_jwe(header, plaintext, &keys().enc, IV)
}

/// Form ES with explicit outer (JWS) and inner (JWE) headers.
pub fn es(outer: &str, inner: &str, claims: &str) -> String {
    jws(outer, jwe(inner, claims.as_bytes()).as_bytes())
}

/// Form SE with explicit outer (JWE) and inner (JWS) headers.
pub fn se(outer: &str, inner: &str, claims: &str) -> String {
    jwe(outer, jws(inner, claims.as_bytes()).as_bytes())
}

/// Adds raw members to the end of a header JSON object.
pub fn hdr_plus(header: &str, members: &str) -> String {
    format!("{},{}}}", &header[..header.len() - 1], members)
}

/// A JWS over already-encoded header and payload parts, MAC'd with client1's key.
pub fn raw_jws(header_b64: &str, payload_b64: &str) -> String {
    let input = format!("{header_b64}.{payload_b64}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(keys().sig.expose()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64::encode(&mac.finalize().into_bytes()))
}

pub fn parts(t: &str) -> Vec<String> {
    t.split('.').map(str::to_owned).collect()
}

pub fn join(p: &[String]) -> String {
    p.join(".")
}

pub fn replace_part(t: &str, index: usize, new: &str) -> String {
    let mut p = parts(t);
    p[index] = new.to_owned();
    join(&p)
}

pub const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Sets the lowest (always unused) bit of the last character of a part whose
/// length is 2 or 3 mod 4: the same bytes under a lax decoder, but not canonical.
pub fn set_trailing_bit(part: &str) -> String {
    assert!(matches!(part.len() % 4, 2 | 3), "part has no trailing bits");
    let last = *part.as_bytes().last().unwrap();
    let idx = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(idx & 1, 0, "canonical encodings have zero trailing bits");
    let mut out = part[..part.len() - 1].to_owned();
    out.push(ALPHABET[idx | 1] as char);
    // A lax decoder would give the same bytes; ours must refuse it.
    assert!(b64::decode(&out).is_none());
    out
}

/// XORs one bit into a decoded part and re-encodes it canonically.
pub fn flip_decoded(part: &str, byte: usize) -> String {
    let mut bytes = b64::decode(part).unwrap();
    bytes[byte] ^= 0x01;
    b64::encode(&bytes)
}

pub fn all_forms(claims: &str) -> Vec<(Form, String)> {
    Form::ALL
        .into_iter()
        .map(|f| (f, token(f, claims)))
        .collect()
}
