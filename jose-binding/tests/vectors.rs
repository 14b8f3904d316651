//! fixtures/vectors.json: our key schedule and issuer reproduce every vector
//! byte for byte, and the verifier accepts every token vector.

use std::sync::Arc;

use jose_binding::token::seal;
use jose_binding::{ClientId, ConnectionVerifier, Form, Keystore, Policy};
use jose_binding::{Ekm, RootKey, SoftwareRootKey, SubKeys};
use serde_json::Value;

#[allow(dead_code)] // only `fixtures` is used here
mod support;
use support::fixtures;

fn vectors() -> Value {
    let text = std::fs::read_to_string(fixtures().join("vectors.json")).expect("vectors.json");
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} missing"))
}

fn ekm(v: &Value) -> Ekm {
    Ekm::from_bytes(hex::decode(s(v, "ekm_hex")).unwrap().try_into().unwrap())
}

#[test]
fn key_schedule_vectors() {
    let v = vectors();
    let cases = v["key_schedule"].as_array().unwrap();
    assert!(cases.len() >= 4);
    assert!(
        cases.iter().any(|c| s(c, "root_key_b64u").len() == 86),
        "a 64-byte root key is covered"
    );
    for c in cases {
        let key = SoftwareRootKey::from_b64url(s(c, "root_key_b64u")).unwrap();
        let id = ClientId::new(s(c, "client_id")).unwrap();
        let prk = key.prk(&ekm(c)).unwrap();
        assert_eq!(hex::encode(prk.expose()), s(c, "prk_hex"));
        let sub = SubKeys::expand(&prk, &id);
        assert_eq!(hex::encode(sub.sig.expose()), s(c, "sig_key_hex"));
        assert_eq!(hex::encode(sub.enc.expose()), s(c, "enc_key_hex"));
    }
}

#[test]
fn token_vectors_reproduce_and_verify() {
    let v = vectors();
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 3, "one per form");
    for t in tokens {
        let form: Form = s(t, "form").parse().unwrap();
        let id = ClientId::new(s(t, "client_id")).unwrap();
        let key = SoftwareRootKey::from_b64url(s(t, "root_key_b64u")).unwrap();
        let sub = SubKeys::derive(&key, &ekm(t), &id).unwrap();
        let iv: [u8; 12] = match t["iv_hex"].as_str() {
            Some(h) => hex::decode(h).unwrap().try_into().unwrap(),
            None => [0; 12],
        };
        let token = seal(form, &id, s(t, "claims_json").as_bytes(), &sub, iv);
        assert_eq!(token, s(t, "token"), "{form} reproduces");

        let ks = Keystore::parse(&format!(
            "[clients.{id}]\nkeys = [\"{}\"]\n",
            s(t, "root_key_b64u")
        ))
        .unwrap();
        let mut policy = Policy::default();
        policy.audience = s(t, "audience").to_owned();
        let policy = Arc::new(policy);
        let mut conn = ConnectionVerifier::new(ekm(t), policy);
        let iat = t["iat"].as_f64().unwrap();
        let ok = conn.verify_at(&ks, &token, iat).expect("vector verifies");
        assert_eq!(ok.form, form);
        assert_eq!(Value::Object(ok.claims.to_map()), t["claims"]);
    }
}

#[test]
fn fixture_keystore_matches_client_key_files() {
    let ks = Keystore::load(&fixtures().join("keystore.toml")).unwrap();
    for name in ["client1", "client2"] {
        let file = SoftwareRootKey::from_file(&fixtures().join(format!("{name}.key"))).unwrap();
        let entry = ks.get(name).expect("client in keystore");
        assert_eq!(entry.keys[0].expose(), file.expose());
    }
}
