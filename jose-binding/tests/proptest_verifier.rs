//! Property tests for the verifier: arbitrary input never panics and is
//! always refused with a §7 code; no mutation of a valid token is accepted;
//! random claims inside a correctly signed token are judged as §7 says.

use std::sync::OnceLock;

use jose_binding::b64;
use jose_binding::token::seal;
use jose_binding::token::{headers, sign_jws};
use jose_binding::{ErrorCode, Form, Keystore, Policy, Rejection, SubKeys, Verified};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};

#[allow(dead_code)] // the §7 suite's part is not used here
mod support;
use support::{cid, keys_for, keystore_of, std_claims, verifier_on, NOW, T};

const EKM: [u8; 32] = [0x0E; 32];
const ROOT: [u8; 32] = [0x0F; 32];
const ID: &str = "prop-client";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Keep failures in the test output only; no regression files.
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

fn keystore() -> &'static Keystore {
    static KS: OnceLock<Keystore> = OnceLock::new();
    KS.get_or_init(|| keystore_of(&[(ID, &[ROOT]), ("other", &[[0x10; 32]])]))
}

fn keys() -> &'static SubKeys {
    static K: OnceLock<SubKeys> = OnceLock::new();
    K.get_or_init(|| keys_for(ROOT, EKM, ID))
}

/// One valid token of each form, made once.
fn valid_tokens() -> &'static [(Form, String); 3] {
    static V: OnceLock<[(Form, String); 3]> = OnceLock::new();
    V.get_or_init(|| {
        let claims = serde_json::to_vec(&std_claims(ID, "prop-jti")).unwrap();
        let id = cid(ID);
        Form::ALL.map(|f| (f, seal(f, &id, &claims, keys(), [0x21; 12])))
    })
}

/// A fresh connection for every call.
fn run(token: &str) -> Result<Verified, Rejection> {
    verifier_on(EKM, Policy::default()).verify_at(keystore(), token, NOW)
}

/// Refused, with a code the verifier may give (`missing_token` is the transport's).
fn check_refused(r: Result<Verified, Rejection>) -> Result<ErrorCode, TestCaseError> {
    match r {
        Ok(v) => Err(TestCaseError::fail(format!("accepted: {v:?}"))),
        Err(rej) => {
            prop_assert!(ErrorCode::ALL.contains(&rej.code));
            prop_assert_ne!(rej.code, ErrorCode::MissingToken);
            prop_assert!(!rej.detail.is_empty());
            Ok(rej.code)
        }
    }
}

#[test]
fn valid_tokens_are_valid() {
    for (form, t) in valid_tokens() {
        assert_eq!(run(t).unwrap().form, *form);
    }
}

// ---------------------------------------------------------------------------
// (a) arbitrary input
// ---------------------------------------------------------------------------

fn realistic_header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(headers::jws(ID)),
        Just(headers::jws_nested(ID)),
        Just(headers::jwe(ID)),
        Just(headers::jwe_nested(ID)),
        Just(headers::jws("nobody")),
        Just(r#"{"alg":"none","typ":"JWT","kid":"prop-client"}"#.to_owned()),
        "[ -~]{0,40}",
        "\\{\"[a-z]{1,4}\":\"[A-Za-z0-9]{0,8}\"(,\"[a-z]{1,4}\":\"[A-Za-z0-9]{0,8}\"){0,5}\\}",
    ]
}

/// 3 or 5 canonical base64url parts: a header from a realistic set, random rest.
fn structured_token() -> impl Strategy<Value = String> {
    let part = prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| b64::encode(&b));
    (
        realistic_header(),
        prop::collection::vec(part, 2..=4),
        any::<bool>(),
    )
        .prop_map(|(h, rest, five)| {
            let mut p = vec![b64::encode(h.as_bytes())];
            p.extend(rest);
            p.resize(if five { 5 } else { 3 }, String::new());
            if five {
                p[1].clear(); // the dir encrypted key is empty
            }
            p.join(".")
        })
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        check_refused(run(&text))?;
    }

    #[test]
    fn random_unicode_is_refused(text in any::<String>()) {
        check_refused(run(&text))?;
    }

    #[test]
    fn random_ascii_with_dots_is_refused(text in "[A-Za-z0-9_=+/.-]{0,300}") {
        check_refused(run(&text))?;
    }

    #[test]
    fn random_dotted_base64url_parts_are_refused(
        parts in prop::collection::vec("[A-Za-z0-9_-]{0,80}", 1..8)
    ) {
        check_refused(run(&parts.join(".")))?;
    }

    #[test]
    fn structured_random_tokens_are_refused(t in structured_token()) {
        check_refused(run(&t))?;
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn long_input_is_refused(len in 16_000usize..16_800, fill in "[A-Za-z0-9._-]") {
        let t = fill.repeat(len);
        let code = check_refused(run(&t))?;
        if len > 16_384 {
            prop_assert_eq!(code, ErrorCode::TooLarge);
        }
    }
}

// ---------------------------------------------------------------------------
// (b) mutations of valid tokens
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the character at an index.
    Flip(Index, char),
    Delete(Index),
    Insert(Index, char),
    /// Keep a prefix.
    Truncate(Index),
    SwapParts(Index, Index),
    /// Overwrite part j with a copy of part i.
    DuplicatePart(Index, Index),
    /// Insert a copy of part i after it (one part more).
    RepeatPart(Index),
    /// Replace part i with the same part of another valid token.
    Transplant(Index, Index),
}

const CHARSET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ é";

fn mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop::sample::select(CHARSET.chars().collect::<Vec<_>>());
    prop_oneof![
        (any::<Index>(), ch.clone()).prop_map(|(i, c)| Mutation::Flip(i, c)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), ch).prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::SwapParts(i, j)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::DuplicatePart(i, j)),
        any::<Index>().prop_map(Mutation::RepeatPart),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::Transplant(i, j)),
    ]
}

fn apply(token: &str, m: &Mutation) -> String {
    let chars: Vec<char> = token.chars().collect();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    match m {
        Mutation::Flip(i, c) => {
            let mut v = chars.clone();
            if !v.is_empty() {
                let k = i.index(v.len());
                v[k] = *c;
            }
            v.into_iter().collect()
        }
        Mutation::Delete(i) => {
            let mut v = chars.clone();
            if !v.is_empty() {
                v.remove(i.index(v.len()));
            }
            v.into_iter().collect()
        }
        Mutation::Insert(i, c) => {
            let mut v = chars.clone();
            v.insert(i.index(v.len() + 1), *c);
            v.into_iter().collect()
        }
        Mutation::Truncate(i) => chars[..i.index(chars.len() + 1)].iter().collect(),
        Mutation::SwapParts(i, j) => {
            let (a, b) = (i.index(parts.len()), j.index(parts.len()));
            parts.swap(a, b);
            parts.join(".")
        }
        Mutation::DuplicatePart(i, j) => {
            let (a, b) = (i.index(parts.len()), j.index(parts.len()));
            parts[b] = parts[a].clone();
            parts.join(".")
        }
        Mutation::RepeatPart(i) => {
            let a = i.index(parts.len());
            let copy = parts[a].clone();
            parts.insert(a + 1, copy);
            parts.join(".")
        }
        Mutation::Transplant(i, j) => {
            // Another valid token: same claims, same kind, different IV.
            let donor_parts: Vec<&str> = donor(token).split('.').collect();
            let a = i.index(parts.len());
            let b = j.index(donor_parts.len());
            parts[a] = donor_parts[b].to_owned();
            parts.join(".")
        }
    }
}

/// Valid tokens of each form, made with another IV and jti.
fn donors() -> &'static [(Form, String); 3] {
    static D: OnceLock<[(Form, String); 3]> = OnceLock::new();
    D.get_or_init(|| {
        let mut c = std_claims(ID, "prop-jti");
        c.insert("jti".into(), "donor".into());
        let claims = serde_json::to_vec(&c).unwrap();
        let id = cid(ID);
        Form::ALL.map(|f| (f, seal(f, &id, &claims, keys(), [0x77; 12])))
    })
}

/// The donor of the same form as `token` (form S for an already mutated token).
fn donor(token: &str) -> &'static str {
    let i = valid_tokens()
        .iter()
        .position(|(_, t)| t == token)
        .unwrap_or(0);
    &donors()[i].1
}

fn check_mutated(mutated: &str) -> Result<(), TestCaseError> {
    let known_valid = valid_tokens()
        .iter()
        .chain(donors().iter())
        .any(|(_, t)| t == mutated);
    if known_valid {
        // The mutations happened to rebuild a valid token (e.g. every part transplanted).
        prop_assert!(run(mutated).is_ok());
    } else {
        check_refused(run(mutated))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn mutated_signed_tokens_are_refused(ms in prop::collection::vec(mutation(), 1..4)) {
        let t = &valid_tokens()[0].1;
        let mut m = t.clone();
        for x in &ms {
            m = apply(&m, x);
        }
        check_mutated(&m)?;
    }

    #[test]
    fn mutated_encrypted_then_signed_tokens_are_refused(ms in prop::collection::vec(mutation(), 1..4)) {
        let t = &valid_tokens()[1].1;
        let mut m = t.clone();
        for x in &ms {
            m = apply(&m, x);
        }
        check_mutated(&m)?;
    }

    #[test]
    fn mutated_signed_then_encrypted_tokens_are_refused(ms in prop::collection::vec(mutation(), 1..4)) {
        let t = &valid_tokens()[2].1;
        let mut m = t.clone();
        for x in &ms {
            m = apply(&m, x);
        }
        check_mutated(&m)?;
    }

    #[test]
    fn single_mutations_of_every_form_are_refused(form in 0usize..3, m in mutation()) {
        let t = &valid_tokens()[form].1;
        check_mutated(&apply(t, &m))?;
    }
}

// ---------------------------------------------------------------------------
// (c) random claims inside a correctly signed S token
// ---------------------------------------------------------------------------

fn signed(claims: &[u8]) -> String {
    sign_jws(&headers::jws(ID), claims, &keys().sig)
}

/// JSON values whose text round-trips exactly (floats are multiples of 1/4).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-100_000i32..100_000, 0u8..4).prop_map(|(a, q)| json!(f64::from(a) + f64::from(q) / 4.0)),
        any::<String>().prop_map(Value::String),
        "[\\\\\"\u{0}-\u{1f}a-z/\u{7f}\u{2028}\u{feff}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A value for a registered claim: usually plausible, sometimes of the wrong type.
fn time_value() -> impl Strategy<Value = Option<Value>> {
    // Offsets on and around the skew boundaries (±30 s).
    let edge = prop::sample::select(vec![-31i64, -30, -29, 29, 30, 31]);
    prop_oneof![
        4 => (-400i64..400).prop_map(|d| Some(json!(T + d))),
        4 => edge.clone().prop_map(|d| Some(json!(T + d))),
        2 => (edge, prop::sample::select(vec![-0.25f64, 0.25]))
            .prop_map(|(d, q)| Some(json!(NOW + d as f64 + q))),
        2 => (-1600i32..1600).prop_map(|q| Some(json!(NOW + f64::from(q) / 4.0))),
        1 => Just(None),
        1 => json_value().prop_map(Some),
    ]
}

/// `exp` as an offset from `iat`, on and around the max_ttl boundary (300 s).
fn ttl_offset() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        2 => Just(None),
        3 => prop::sample::select(vec![-1.0f64, 0.0, 60.0, 299.75, 300.0, 300.25, 301.0]).prop_map(Some),
    ]
}

fn string_claim(good: &'static str) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        12 => Just(Some(json!(good))),
        1 => Just(None),
        1 => "[a-z-]{0,12}".prop_map(|s| Some(json!(s))),
        1 => json_value().prop_map(Some),
    ]
}

fn jti_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => "[A-Za-z0-9_-]{1,22}".prop_map(|s| Some(json!(s))),
        1 => Just(None),
        1 => Just(Some(json!(""))),
        1 => "[a-zé]{60,70}".prop_map(|s| Some(json!(s))),
        2 => (63usize..=65, any::<bool>()).prop_map(|(n, wide)| {
            // Exactly n bytes, either ASCII or ending in a two-byte character.
            let s = if wide { format!("{}é", "j".repeat(n - 2)) } else { "j".repeat(n) };
            Some(json!(s))
        }),
        1 => json_value().prop_map(Some),
    ]
}

/// The §7 steps 11–14 outcome for claims inside a valid S token on a fresh connection.
fn model(bytes_len: usize, m: &Map<String, Value>) -> Result<(), ErrorCode> {
    use ErrorCode as C;
    if bytes_len > 8192 {
        return Err(C::TooLarge);
    }
    if json_depth(&Value::Object(m.clone())) > 32 {
        return Err(C::Malformed);
    }
    let num = |k: &str| m.get(k).and_then(Value::as_f64);
    let iat = num("iat").ok_or(C::Malformed)?;
    let exp = num("exp").ok_or(C::Malformed)?;
    let nbf = match m.get("nbf") {
        None => None,
        Some(v) => Some(v.as_f64().ok_or(C::Malformed)?),
    };
    if m.get("iss").and_then(Value::as_str) != Some(ID) {
        return Err(C::UnknownClient);
    }
    if m.get("aud").and_then(Value::as_str) != Some("localhost") {
        return Err(C::WrongAudience);
    }
    if exp <= NOW - 30.0 {
        return Err(C::Expired);
    }
    if iat > NOW + 30.0 || nbf.is_some_and(|n| n > NOW + 30.0) {
        return Err(C::NotYetValid);
    }
    if exp - iat > 300.0 {
        return Err(C::TtlTooLong);
    }
    match m.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= 64 => Ok(()),
        _ => Err(C::BadJti),
    }
}

fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// JSON-ish text: tokens of JSON glued at random, usually not valid JSON.
fn jsonish_text() -> impl Strategy<Value = String> {
    let tok = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"iss\"",
        "\"prop-client\"",
        "\"aud\"",
        "\"localhost\"",
        "\"iat\"",
        "\"exp\"",
        "\"jti\"",
        "1700000000",
        "1700000060",
        "1.5e3",
        "-0",
        "1e400",
        "null",
        "true",
        "\"\\ud800\"",
        "\"\\u0000\"",
        "\"\\\"",
        " ",
        "\u{feff}",
        "\"é\"",
    ]);
    prop::collection::vec(tok, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(1000))]

    /// Random application data next to valid registered claims: accepted with
    /// exactly those claims, or too_large.
    #[test]
    fn random_application_claims_round_trip(
        app in prop::collection::vec(("[a-z_]{1,8}", json_value()), 0..8),
        filler in prop::option::of(6_000usize..9_000),
    ) {
        let mut m = std_claims(ID, "prop-jti");
        for (k, v) in app {
            m.insert(format!("app_{k}"), v);
        }
        // Sometimes a large member, so that both sides of the 8192-byte limit are met.
        if let Some(n) = filler {
            m.insert("filler".into(), json!("y".repeat(n)));
        }
        let bytes = serde_json::to_vec(&m).unwrap();
        match run(&signed(&bytes)) {
            Ok(v) => {
                prop_assert!(bytes.len() <= 8192);
                prop_assert_eq!(v.form, Form::Signed);
                prop_assert_eq!(v.claims, m);
            }
            Err(r) => {
                prop_assert_eq!(r.code, ErrorCode::TooLarge, "{}", r);
                prop_assert!(bytes.len() > 8192);
            }
        }
    }

    /// Random registered claims: the verifier's answer matches the §7 model.
    #[test]
    fn random_registered_claims_follow_the_rules(
        iss in string_claim(ID),
        aud in string_claim("localhost"),
        iat in time_value(),
        exp in time_value(),
        ttl in ttl_offset(),
        nbf in prop_oneof![3 => Just(None), 1 => time_value()],
        jti in jti_value(),
    ) {
        let exp = match (ttl, iat.as_ref().and_then(Value::as_f64)) {
            (Some(d), Some(i)) => Some(json!(i + d)),
            _ => exp,
        };
        let mut m = Map::new();
        for (k, v) in [("iss", iss), ("aud", aud), ("iat", iat), ("exp", exp), ("nbf", nbf), ("jti", jti)] {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        }
        let bytes = serde_json::to_vec(&m).unwrap();
        let got = run(&signed(&bytes)).map(|v| {
            assert_eq!(v.claims, m);
        }).map_err(|r| r.code);
        prop_assert_eq!(got, model(bytes.len(), &m));
    }

    /// Arbitrary payload bytes and JSON-ish text under a valid signature never panic.
    #[test]
    fn random_payloads_under_a_valid_signature_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 1..300),
        text in jsonish_text(),
    ) {
        check_refused(run(&signed(&bytes)))?;
        if !text.is_empty() {
            match run(&signed(text.as_bytes())) {
                Ok(v) => {
                    // Only a complete, valid claims set can pass.
                    let m: Map<String, Value> = serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(v.claims, m);
                }
                Err(r) => prop_assert!(ErrorCode::ALL.contains(&r.code)),
            }
        }
    }
}
