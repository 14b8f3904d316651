//! The §7 suite, what is accepted: the default policy, one valid token per
//! form (and from the issuer), which forms a policy allows (step 7), and
//! header members in any order.
//!
//! Every case asserts the exact `ErrorCode` at a fixed `now` on a fixed EKM;
//! the fixtures and token builders are in `support/`.

use jose_binding::b64;
use jose_binding::{ClientId, ErrorCode, Form, FormSet, Issuer, Policy};
use serde_json::{json, Map, Value};
use ErrorCode as C;

#[allow(dead_code)] // each verifier_*.rs uses part of it
mod support;
use support::*;

// ---------------------------------------------------------------------------
// Policy defaults
// ---------------------------------------------------------------------------

#[test]
fn policy_default_values() {
    let p = Policy::default();
    assert_eq!(p.audience, "localhost");
    assert_eq!(p.skew_secs, 30);
    assert_eq!(p.max_ttl_secs, 300);
    assert_eq!(p.forms, FormSet::ALL);
    for f in Form::ALL {
        assert!(p.forms.contains(f));
    }
    assert!(p.replay_capacity > 0);
}

// ---------------------------------------------------------------------------
// Success, one per form
// ---------------------------------------------------------------------------

fn app_claims() -> String {
    claims_with(|m| {
        m.insert(
            "app".into(),
            json!({"role": "admin", "n": [1, 2.5, "x", null, true], "deep": {"a": {"b": "ü€😀"}}}),
        );
    })
}

fn check_success(form: Form) {
    let claims = app_claims();
    let mut v = verifier();
    assert!(v.pinned().is_none());
    let ok = accepted(v.verify_at(&keystore(), &token(form, &claims), NOW));
    assert_eq!(ok.form, form);
    assert_eq!(ok.client_id.as_str(), ID);
    assert_eq!(ok.key_index, 0);
    let want: Map<String, Value> = serde_json::from_str(&claims).unwrap();
    assert_eq!(ok.claims, want);
    assert_eq!(ok.claims.to_map()["app"]["deep"]["a"]["b"], "ü€😀");
    // The claims keep their order.
    assert_eq!(
        ok.claims.to_map().keys().collect::<Vec<_>>(),
        ["iss", "aud", "iat", "exp", "jti", "app"]
    );
    assert_eq!(v.pinned().map(ClientId::as_str), Some(ID));
    assert_eq!(v.replay_len(), 1);
}

#[test]
fn accepts_form_signed() {
    check_success(Form::Signed);
    // The exact §5 header shape.
    let t = s(&claims());
    let h = b64::decode(&parts(&t)[0]).unwrap();
    assert_eq!(h, br#"{"alg":"HS256","typ":"JWT","kid":"client1"}"#);
}

#[test]
fn accepts_form_encrypted_then_signed() {
    check_success(Form::EncryptedThenSigned);
}

#[test]
fn accepts_form_signed_then_encrypted() {
    check_success(Form::SignedThenEncrypted);
}

#[test]
fn accepts_tokens_from_the_issuer_for_every_form() {
    let issuer = Issuer::new(cid(ID), "localhost", keys());
    let mut v = verifier();
    let ks = keystore();
    for form in Form::ALL {
        for _ in 0..3 {
            let t = issuer.issue(form, &json!({"k": "v"})).unwrap();
            let ok = accepted(v.verify_at(&ks, &t, jose_binding::token::unix_now()));
            assert_eq!(ok.form, form);
            assert_eq!(ok.claims.to_map()["k"], "v");
            assert_eq!(ok.claims.to_map()["jti"].as_str().unwrap().len(), 22);
        }
    }
    assert_eq!(v.replay_len(), 9);
}

// ---------------------------------------------------------------------------
// form_not_allowed (step 7)
// ---------------------------------------------------------------------------

#[test]
fn form_not_allowed_by_policy() {
    let ks = keystore();
    let mut only_s = Policy::default();
    only_s.forms = [Form::Signed].into_iter().collect();
    let c = claims();
    accepted(verifier_with(only_s.clone()).verify_at(&ks, &s(&c), NOW));
    for form in [Form::EncryptedThenSigned, Form::SignedThenEncrypted] {
        let r = verifier_with(only_s.clone()).verify_at(&ks, &token(form, &c), NOW);
        assert_eq!(code_of(r), C::FormNotAllowed, "{form}");
    }
    let mut only_se = Policy::default();
    only_se.forms = FormSet::NONE.with(Form::SignedThenEncrypted);
    for form in [Form::Signed, Form::EncryptedThenSigned] {
        let r = verifier_with(only_se.clone()).verify_at(&ks, &token(form, &c), NOW);
        assert_eq!(code_of(r), C::FormNotAllowed, "{form}");
    }
    accepted(verifier_with(only_se).verify_at(&ks, &token(Form::SignedThenEncrypted, &c), NOW));
    let mut none = Policy::default();
    none.forms = FormSet::NONE;
    for form in Form::ALL {
        let r = verifier_with(none.clone()).verify_at(&ks, &token(form, &c), NOW);
        assert_eq!(code_of(r), C::FormNotAllowed, "{form}");
    }
}

// ---------------------------------------------------------------------------
// Header member order
// ---------------------------------------------------------------------------

#[test]
fn header_member_order_is_not_significant() {
    let c = claims();
    let jws_orders = [
        r#"{"kid":"client1","typ":"JWT","alg":"HS256"}"#,
        r#"{"typ":"JWT","alg":"HS256","kid":"client1"}"#,
    ];
    let jws_nested_orders = [
        r#"{"cty":"JWT","kid":"client1","alg":"HS256","typ":"JWT"}"#,
        r#"{"kid":"client1","typ":"JWT","cty":"JWT","alg":"HS256"}"#,
    ];
    let jwe_orders = [
        r#"{"kid":"client1","typ":"JWT","enc":"A256GCM","alg":"dir"}"#,
        r#"{"enc":"A256GCM","kid":"client1","alg":"dir","typ":"JWT"}"#,
    ];
    let jwe_nested_orders = [
        r#"{"cty":"JWT","kid":"client1","typ":"JWT","enc":"A256GCM","alg":"dir"}"#,
        r#"{"typ":"JWT","alg":"dir","cty":"JWT","kid":"client1","enc":"A256GCM"}"#,
    ];
    for h in jws_orders {
        let v = accepted(verify(&jws(h, c.as_bytes())));
        assert_eq!(v.form, Form::Signed);
    }
    for outer in jws_nested_orders {
        for inner in jwe_orders {
            let v = accepted(verify(&es(outer, inner, &c)));
            assert_eq!(v.form, Form::EncryptedThenSigned);
        }
    }
    for outer in jwe_nested_orders {
        for inner in jws_orders {
            let v = accepted(verify(&se(outer, inner, &c)));
            assert_eq!(v.form, Form::SignedThenEncrypted);
        }
    }
}
