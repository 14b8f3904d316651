//! Cross-check against an independent JOSE implementation (josekit 0.10):
//! (a) tokens josekit builds with our derived subkeys verify with our
//! verifier; (b) tokens our issuer builds open with josekit and carry the
//! same claims.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jose_binding::b64;
use jose_binding::token::seal;
use jose_binding::token::unix_now;
use jose_binding::{ConnectionVerifier, ErrorCode, Form, Issuer, Keystore, Policy, SubKeys};
use josekit::jwe::{self, Dir, JweHeader};
use josekit::jws::{self, JwsHeader, HS256, HS512};
use josekit::jwt::{self, JwtPayload};
use serde_json::{json, Map, Value};

#[allow(dead_code)] // the §7 suite's part is not used here
mod support;
use support::{accepted, cid, keys_for, keystore_of, refused, verifier_on};

const NOW: f64 = 1_700_000_000.0;
const T: u64 = 1_700_000_000;
const EKM: [u8; 32] = [0x5A; 32];
const OTHER_EKM: [u8; 32] = [0x5B; 32];
const ROOT: [u8; 32] = [0x6C; 32];
const ID: &str = "client-7.x";

fn keys() -> SubKeys {
    keys_for(ROOT, EKM, ID)
}

fn keystore() -> Keystore {
    keystore_of(&[(ID, &[ROOT])])
}

fn verifier() -> ConnectionVerifier {
    verifier_on(EKM, Policy::default())
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A claims set built with josekit's own payload API.
fn josekit_payload(jti: &str) -> JwtPayload {
    let mut p = JwtPayload::new();
    p.set_issuer(ID);
    p.set_audience(vec!["localhost"]);
    p.set_issued_at(&at(T));
    p.set_expires_at(&at(T + 60));
    p.set_jwt_id(jti);
    p.set_claim("scope", Some(json!(["read", "write"])))
        .unwrap();
    p.set_claim("name", Some(json!("Zoë ☃"))).unwrap();
    p
}

fn claims_bytes(p: &JwtPayload) -> Vec<u8> {
    serde_json::to_vec(p.claims_set()).unwrap()
}

fn jws_header(nested: bool) -> JwsHeader {
    let mut h = JwsHeader::new();
    h.set_token_type("JWT");
    if nested {
        h.set_content_type("JWT");
    }
    h.set_key_id(ID);
    h
}

fn jwe_header(nested: bool) -> JweHeader {
    let mut h = JweHeader::new();
    h.set_token_type("JWT");
    h.set_content_encryption("A256GCM");
    if nested {
        h.set_content_type("JWT");
    }
    h.set_key_id(ID);
    h
}

// ----- josekit builders (form S, ES, SE) -----

fn josekit_s(keys: &SubKeys, payload: &JwtPayload) -> String {
    let signer = HS256.signer_from_bytes(keys.sig.expose()).unwrap();
    jwt::encode_with_signer(payload, &jws_header(false), &signer).unwrap()
}

fn josekit_es(keys: &SubKeys, payload: &JwtPayload) -> String {
    let encrypter = Dir.encrypter_from_bytes(keys.enc.expose()).unwrap();
    let inner =
        jwe::serialize_compact(&claims_bytes(payload), &jwe_header(false), &encrypter).unwrap();
    let signer = HS256.signer_from_bytes(keys.sig.expose()).unwrap();
    jws::serialize_compact(inner.as_bytes(), &jws_header(true), &signer).unwrap()
}

fn josekit_se(keys: &SubKeys, payload: &JwtPayload) -> String {
    let signer = HS256.signer_from_bytes(keys.sig.expose()).unwrap();
    let inner =
        jws::serialize_compact(&claims_bytes(payload), &jws_header(false), &signer).unwrap();
    let encrypter = Dir.encrypter_from_bytes(keys.enc.expose()).unwrap();
    jwe::serialize_compact(inner.as_bytes(), &jwe_header(true), &encrypter).unwrap()
}

fn josekit_token(form: Form, keys: &SubKeys, payload: &JwtPayload) -> String {
    match form {
        Form::Signed => josekit_s(keys, payload),
        Form::EncryptedThenSigned => josekit_es(keys, payload),
        Form::SignedThenEncrypted => josekit_se(keys, payload),
    }
}

fn decode_header_json(part: &str) -> Map<String, Value> {
    serde_json::from_slice(&b64::decode(part).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// (a) josekit → our verifier
// ---------------------------------------------------------------------------

fn check_josekit_form(form: Form) {
    let payload = josekit_payload("jk-1");
    let t = josekit_token(form, &keys(), &payload);
    let v = accepted(verifier().verify_at(&keystore(), &t, NOW));
    assert_eq!(v.form, form);
    assert_eq!(v.client_id.as_str(), ID);
    assert_eq!(v.key_index, 0);
    assert_eq!(&v.claims, payload.claims_set());
    // josekit writes iat as a float ("1700000000.0") and exp as an integer.
    assert_eq!(v.claims.to_map()["iat"].as_f64(), Some(T as f64));
    assert!(v.claims.to_map()["iat"].is_f64());
    assert_eq!(v.claims.to_map()["exp"], json!(T + 60));
    assert_eq!(v.claims.to_map()["aud"], json!("localhost"));
    assert_eq!(v.claims.to_map()["name"], json!("Zoë ☃"));
}

#[test]
fn josekit_signed_is_accepted() {
    check_josekit_form(Form::Signed);
    // josekit put alg, typ and kid in the header.
    let t = josekit_s(&keys(), &josekit_payload("x"));
    let h = decode_header_json(t.split('.').next().unwrap());
    assert_eq!(h["alg"], "HS256");
    assert_eq!(h["typ"], "JWT");
    assert_eq!(h["kid"], ID);
    assert!(!h.contains_key("cty"));
}

#[test]
fn josekit_encrypted_then_signed_is_accepted() {
    check_josekit_form(Form::EncryptedThenSigned);
}

#[test]
fn josekit_signed_then_encrypted_is_accepted() {
    check_josekit_form(Form::SignedThenEncrypted);
    let t = josekit_se(&keys(), &josekit_payload("x"));
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 5);
    assert_eq!(parts[1], "", "dir has an empty encrypted key");
    assert_eq!(b64::decode(parts[2]).unwrap().len(), 12);
    assert_eq!(b64::decode(parts[4]).unwrap().len(), 16);
    let h = decode_header_json(parts[0]);
    assert_eq!(
        (h["alg"].as_str(), h["enc"].as_str()),
        (Some("dir"), Some("A256GCM"))
    );
}

#[test]
fn many_josekit_tokens_on_one_connection() {
    // Fresh random IVs from josekit, distinct jtis: all accepted, none replayed.
    let ks = keystore();
    let mut v = verifier();
    for i in 0..10 {
        for form in Form::ALL {
            let t = josekit_token(form, &keys(), &josekit_payload(&format!("{form}-{i}")));
            assert_eq!(accepted(v.verify_at(&ks, &t, NOW)).form, form);
        }
    }
    // Replaying one of them is refused.
    let t = josekit_s(&keys(), &josekit_payload("signed-3"));
    assert_eq!(refused(v.verify_at(&ks, &t, NOW)), ErrorCode::Replayed);
}

#[test]
fn josekit_tokens_for_another_connection_are_refused() {
    let other = keys_for(ROOT, OTHER_EKM, ID);
    let ks = keystore();
    for (form, want) in [
        (Form::Signed, ErrorCode::BadSignature),
        (Form::EncryptedThenSigned, ErrorCode::BadSignature),
        (Form::SignedThenEncrypted, ErrorCode::DecryptFailed),
    ] {
        let t = josekit_token(form, &other, &josekit_payload("z"));
        assert_eq!(refused(verifier().verify_at(&ks, &t, NOW)), want, "{form}");
    }
}

#[test]
fn josekit_hs512_and_unsecured_tokens_are_refused() {
    let payload = josekit_payload("a");
    // HS512 needs a key of at least 64 bytes.
    let mut long_key = keys().sig.expose().to_vec();
    long_key.extend_from_slice(keys().sig.expose());
    let hs512 = jwt::encode_with_signer(
        &payload,
        &jws_header(false),
        &HS512.signer_from_bytes(&long_key).unwrap(),
    )
    .unwrap();
    assert_eq!(
        refused(verifier().verify_at(&keystore(), &hs512, NOW)),
        ErrorCode::UnsupportedAlg
    );
    let unsecured = jwt::encode_unsecured(&payload, &jws_header(false)).unwrap();
    assert!(unsecured.ends_with('.'));
    assert_eq!(
        refused(verifier().verify_at(&keystore(), &unsecured, NOW)),
        ErrorCode::UnsupportedAlg
    );
}

#[test]
fn josekit_jwe_with_a128gcm_inner_is_refused() {
    // ES whose inner JWE uses A128GCM with a 16-byte key.
    let keys = keys();
    let mut h = jwe_header(false);
    h.set_content_encryption("A128GCM");
    let encrypter = Dir.encrypter_from_bytes(&keys.enc.expose()[..16]).unwrap();
    let inner =
        jwe::serialize_compact(&claims_bytes(&josekit_payload("q")), &h, &encrypter).unwrap();
    let signer = HS256.signer_from_bytes(keys.sig.expose()).unwrap();
    let t = jws::serialize_compact(inner.as_bytes(), &jws_header(true), &signer).unwrap();
    assert_eq!(
        refused(verifier().verify_at(&keystore(), &t, NOW)),
        ErrorCode::UnsupportedAlg
    );
}

#[test]
fn josekit_jwt_without_typ_is_refused() {
    let mut h = JwsHeader::new();
    h.set_key_id(ID);
    let signer = HS256.signer_from_bytes(keys().sig.expose()).unwrap();
    let t = jwt::encode_with_signer(&josekit_payload("a"), &h, &signer).unwrap();
    assert_eq!(
        refused(verifier().verify_at(&keystore(), &t, NOW)),
        ErrorCode::UnsupportedHeader
    );
}

// ---------------------------------------------------------------------------
// (b) our issuer → josekit
// ---------------------------------------------------------------------------

fn our_claims(jti: &str) -> Vec<u8> {
    Issuer::new(cid(ID), "localhost", keys())
        .claims(
            &json!({"role": "ops", "n": [1, 2, {"x": null}]}),
            T as i64,
            jti,
        )
        .unwrap()
}

/// Opens a token of `form` with josekit alone; returns the claims set.
fn josekit_open(form: Form, token: &str, keys: &SubKeys) -> Map<String, Value> {
    let verifier = HS256.verifier_from_bytes(keys.sig.expose()).unwrap();
    let decrypter = Dir.decrypter_from_bytes(keys.enc.expose()).unwrap();
    match form {
        Form::Signed => {
            let (payload, header) = jwt::decode_with_verifier(token, &verifier).unwrap();
            assert_eq!(header.algorithm(), Some("HS256"));
            assert_eq!(header.token_type(), Some("JWT"));
            assert_eq!(header.key_id(), Some(ID));
            assert_eq!(header.content_type(), None);
            payload.claims_set().clone()
        }
        Form::EncryptedThenSigned => {
            let (inner, header) = jws::deserialize_compact(token, &verifier).unwrap();
            assert_eq!(header.algorithm(), Some("HS256"));
            assert_eq!(header.token_type(), Some("JWT"));
            assert_eq!(header.content_type(), Some("JWT"));
            assert_eq!(header.key_id(), Some(ID));
            let inner = std::str::from_utf8(&inner).unwrap();
            let (claims, h) = jwe::deserialize_compact(inner, &decrypter).unwrap();
            assert_eq!(h.algorithm(), Some("dir"));
            assert_eq!(h.content_encryption(), Some("A256GCM"));
            assert_eq!(h.token_type(), Some("JWT"));
            assert_eq!(h.content_type(), None);
            assert_eq!(h.key_id(), Some(ID));
            serde_json::from_slice(&claims).unwrap()
        }
        Form::SignedThenEncrypted => {
            let (inner, header) = jwe::deserialize_compact(token, &decrypter).unwrap();
            assert_eq!(header.algorithm(), Some("dir"));
            assert_eq!(header.content_encryption(), Some("A256GCM"));
            assert_eq!(header.token_type(), Some("JWT"));
            assert_eq!(header.content_type(), Some("JWT"));
            assert_eq!(header.key_id(), Some(ID));
            let (payload, h) = jwt::decode_with_verifier(&inner, &verifier).unwrap();
            assert_eq!(h.key_id(), Some(ID));
            assert_eq!(h.content_type(), None);
            payload.claims_set().clone()
        }
    }
}

#[test]
fn sealed_tokens_open_with_josekit() {
    for form in Form::ALL {
        let claims = our_claims(&format!("seal-{form}"));
        let t = seal(form, &cid(ID), &claims, &keys(), [0x42; 12]);
        let got = josekit_open(form, &t, &keys());
        let want: Map<String, Value> = serde_json::from_slice(&claims).unwrap();
        assert_eq!(got, want, "{form}");
        assert_eq!(got["role"], "ops");
        // And our own verifier agrees.
        assert_eq!(
            accepted(verifier().verify_at(&keystore(), &t, NOW)).claims,
            want
        );
    }
}

#[test]
fn issued_tokens_open_with_josekit() {
    let issuer = Issuer::new(cid(ID), "localhost", keys());
    for form in Form::ALL {
        let t = issuer.issue(form, &json!({"k": [true, 1.5]})).unwrap();
        let got = josekit_open(form, &t, &keys());
        assert_eq!(got["iss"], ID);
        assert_eq!(got["aud"], "localhost");
        assert_eq!(got["k"], json!([true, 1.5]));
        let iat = got["iat"].as_i64().unwrap();
        assert_eq!(got["exp"].as_i64().unwrap(), iat + 60);
        assert!((iat as f64 - unix_now()).abs() < 60.0);
        let jti = got["jti"].as_str().unwrap();
        assert_eq!(b64::decode(jti).unwrap().len(), 16);
        let v = accepted(verifier().verify_at(&keystore(), &t, unix_now()));
        assert_eq!(v.claims, got);
    }
}

#[test]
fn josekit_refuses_our_tokens_with_the_wrong_keys() {
    let other = keys_for(ROOT, OTHER_EKM, ID);
    let t = seal(Form::Signed, &cid(ID), &our_claims("w"), &keys(), [1; 12]);
    let verifier = HS256.verifier_from_bytes(other.sig.expose()).unwrap();
    assert!(jwt::decode_with_verifier(&t, &verifier).is_err());
    let t = seal(
        Form::SignedThenEncrypted,
        &cid(ID),
        &our_claims("w"),
        &keys(),
        [1; 12],
    );
    let decrypter = Dir.decrypter_from_bytes(other.enc.expose()).unwrap();
    assert!(jwe::deserialize_compact(&t, &decrypter).is_err());
    let t = seal(
        Form::EncryptedThenSigned,
        &cid(ID),
        &our_claims("w"),
        &keys(),
        [1; 12],
    );
    let verifier = HS256.verifier_from_bytes(other.sig.expose()).unwrap();
    assert!(jws::deserialize_compact(&t, &verifier).is_err());
}
