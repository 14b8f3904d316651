//! The §7 suite, the token id: `bad_jti` and `replayed` (step 14), and the
//! per-connection replay cache.
//!
//! Every case asserts the exact `ErrorCode` at a fixed `now` on a fixed EKM;
//! the fixtures and token builders are in `support/`.

use jose_binding::token::seal;
use jose_binding::{ErrorCode, Form, Policy};
use serde_json::{json, Value};
use ErrorCode as C;

#[allow(dead_code)] // each verifier_*.rs uses part of it
mod support;
use support::*;

// ---------------------------------------------------------------------------
// bad_jti (step 14)
// ---------------------------------------------------------------------------

fn with_jti(jti: Option<Value>) -> String {
    claims_with(|m| match jti {
        Some(v) => {
            m.insert("jti".into(), v);
        }
        None => {
            m.remove("jti");
        }
    })
}

#[test]
fn bad_jti_absent() {
    for (form, t) in all_forms(&with_jti(None)) {
        assert_eq!(code(&t), C::BadJti, "{form}");
    }
}

#[test]
fn bad_jti_number() {
    for v in [
        json!(12345),
        json!(null),
        json!(["a"]),
        json!({"a": 1}),
        json!(true),
    ] {
        assert_eq!(code(&s(&with_jti(Some(v.clone())))), C::BadJti, "{v}");
    }
}

#[test]
fn bad_jti_empty() {
    for (form, t) in all_forms(&with_jti(Some(json!("")))) {
        assert_eq!(code(&t), C::BadJti, "{form}");
    }
}

#[test]
fn bad_jti_65_bytes() {
    assert_eq!(code(&s(&with_jti(Some(json!("j".repeat(65)))))), C::BadJti);
    // 33 characters, but 65 bytes of UTF-8.
    let mixed = format!("{}a", "é".repeat(32));
    assert_eq!(mixed.len(), 65);
    assert_eq!(code(&s(&with_jti(Some(json!(mixed))))), C::BadJti);
}

#[test]
fn jti_of_64_bytes_is_accepted() {
    accept(&s(&with_jti(Some(json!("j".repeat(64))))));
    let multibyte = "é".repeat(32);
    assert_eq!(multibyte.len(), 64);
    accept(&s(&with_jti(Some(json!(multibyte)))));
    accept(&s(&with_jti(Some(json!("x")))));
}

// ---------------------------------------------------------------------------
// replayed (step 14)
// ---------------------------------------------------------------------------

#[test]
fn replayed_same_token_twice() {
    let ks = keystore();
    for (form, t) in all_forms(&claims()) {
        let mut v = verifier();
        accepted(v.verify_at(&ks, &t, NOW));
        assert_eq!(code_of(v.verify_at(&ks, &t, NOW)), C::Replayed, "{form}");
        assert_eq!(
            code_of(v.verify_at(&ks, &t, NOW + 1.0)),
            C::Replayed,
            "{form}"
        );
        assert_eq!(v.replay_len(), 1);
    }
}

#[test]
fn replayed_different_token_same_jti() {
    let ks = keystore();
    let mut v = verifier();
    accepted(v.verify_at(&ks, &s(&claims()), NOW));
    // A different claims set with the same jti, in every form.
    let c2 = claims_with(|m| {
        m.insert("other".into(), 1.into());
    });
    for form in Form::ALL {
        assert_eq!(
            code_of(v.verify_at(&ks, &token(form, &c2), NOW)),
            C::Replayed,
            "{form}"
        );
    }
    // Same claims, different IV.
    let t = seal(
        Form::SignedThenEncrypted,
        &cid(ID),
        claims().as_bytes(),
        &keys(),
        IV2,
    );
    assert_eq!(code_of(v.verify_at(&ks, &t, NOW)), C::Replayed);
    // A new jti is fine.
    accepted(v.verify_at(&ks, &s(&claims_for(ID, "jti-2")), NOW));
}

#[test]
fn replayed_refused_tokens_are_not_recorded() {
    let ks = keystore();
    let mut v = verifier();
    let bad_aud = claims_with(|m| {
        m.insert("aud".into(), "elsewhere".into());
    });
    assert_eq!(
        code_of(v.verify_at(&ks, &s(&bad_aud), NOW)),
        C::WrongAudience
    );
    // Refused later in step 13, same jti.
    let too_long = times(json!(T), json!(T + 301));
    assert_eq!(code_of(v.verify_at(&ks, &s(&too_long), NOW)), C::TtlTooLong);
    assert_eq!(v.replay_len(), 0);
    // A different, valid token with the same jti is accepted; then it is recorded.
    let good = s(&claims());
    accepted(v.verify_at(&ks, &good, NOW));
    assert_eq!(v.replay_len(), 1);
    assert_eq!(code_of(v.verify_at(&ks, &good, NOW)), C::Replayed);
}

#[test]
fn replayed_jti_compared_after_json_unescaping() {
    let ks = keystore();
    let mut v = verifier();
    accepted(v.verify_at(&ks, &s(&claims_for(ID, "abc")), NOW));
    // The same jti spelled with an escape is the same jti.
    let c = claims_for(ID, "abc").replace(r#""jti":"abc""#, r#""jti":"\u0061bc""#);
    assert!(c.contains(r#"\u0061bc"#));
    assert_eq!(code_of(v.verify_at(&ks, &s(&c), NOW)), C::Replayed);
}

#[test]
fn replay_cache_bound_never_admits_a_replay() {
    let ks = keystore();
    let mut small = Policy::default();
    small.replay_capacity = 4;
    // Expiries that advance: every fresh token is accepted, every replay refused.
    let mut v = verifier_with(small.clone());
    let advancing: Vec<String> = (0..20)
        .map(|i| {
            s(&claims_with(|m| {
                m.insert("jti".into(), format!("a{i}").into());
                m.insert("exp".into(), (T + 1 + i).into());
            }))
        })
        .collect();
    for t in &advancing {
        accepted(v.verify_at(&ks, t, NOW));
        assert!(v.replay_len() <= 4);
    }
    for t in &advancing {
        assert_eq!(code_of(v.verify_at(&ks, t, NOW)), C::Replayed);
    }
    // A flood expiring in the same second: whatever is accepted is never accepted twice.
    let mut v = verifier_with(small);
    let flood: Vec<String> = (0..20)
        .map(|i| s(&claims_for(ID, &format!("f{i}"))))
        .collect();
    let admitted: Vec<&String> = flood
        .iter()
        .filter(|t| v.verify_at(&ks, t, NOW).is_ok())
        .collect();
    assert!(admitted.len() >= 4, "at least a full cache is admitted");
    for t in admitted {
        assert_eq!(code_of(v.verify_at(&ks, t, NOW)), C::Replayed);
    }
}

#[test]
fn expiry_is_checked_before_replay() {
    let ks = keystore();
    let mut v = verifier();
    let t = s(&claims());
    accepted(v.verify_at(&ks, &t, NOW));
    // exp = T + 60: expired from now = T + 90 on.
    assert_eq!(code_of(v.verify_at(&ks, &t, NOW + 90.0)), C::Expired);
    assert_eq!(code_of(v.verify_at(&ks, &t, NOW + 89.0)), C::Replayed);
}

#[test]
fn a_new_connection_has_its_own_replay_cache() {
    // Uniqueness is per connection: the same EKM on a new verifier is a new cache.
    let t = s(&claims());
    accept(&t);
    accept(&t);
}

/// A refusal at the cache's bound says so (the servers count it), and a
/// replay's does not.
#[test]
fn a_refusal_at_the_replay_bound_is_told_from_a_replay() {
    let ks = keystore();
    let mut small = Policy::default();
    small.replay_capacity = 2;
    let mut v = verifier_with(small);
    let flood: Vec<String> = (0..6)
        .map(|i| s(&claims_for(ID, &format!("f{i}"))))
        .collect();
    let refusals: Vec<_> = flood
        .iter()
        .filter_map(|t| v.verify_at(&ks, t, NOW).err())
        .collect();
    assert!(!refusals.is_empty());
    assert!(refusals.iter().all(|r| r.at_replay_bound()), "{refusals:?}");
    let replay = v.verify_at(&ks, &flood[0], NOW).unwrap_err();
    assert_eq!(replay.code, C::Replayed);
    assert!(!replay.at_replay_bound());
}
