//! The §7 suite, the order of the checks: when several steps would fail, the
//! first one decides the code; and the codes' names on the wire.
//!
//! Every case asserts the exact `ErrorCode` at a fixed `now` on a fixed EKM;
//! the fixtures and token builders are in `support/`.

use jose_binding::b64;
use jose_binding::token::{encrypt_jwe, headers, sign_jws};
use jose_binding::{ErrorCode, Form, FormSet, Policy};
use serde_json::json;
use ErrorCode as C;

#[allow(dead_code)] // each verifier_*.rs uses part of it
mod support;
use support::*;

// ---------------------------------------------------------------------------
// Check order: the first failing step decides
// ---------------------------------------------------------------------------

#[test]
fn order_alg_none_before_unknown_kid() {
    let h = r#"{"alg":"none","typ":"JWT","kid":"nobody"}"#;
    let t = format!(
        "{}.{}.",
        b64::encode(h.as_bytes()),
        b64::encode(claims().as_bytes())
    );
    assert_eq!(code(&t), C::UnsupportedAlg);
}

#[test]
fn order_zip_before_bad_signature() {
    let wrong = keys_for(ROOT_STRANGER, EKM, ID);
    let t = sign_jws(
        &hdr_plus(&headers::jws(ID), r#""zip":"DEF""#),
        claims().as_bytes(),
        &wrong.sig,
    );
    assert_eq!(code(&t), C::UnsupportedHeader);
}

#[test]
fn order_size_before_syntax() {
    // Step 2 before 3: a long token of garbage is too_large, not malformed.
    assert_eq!(code(&"!".repeat(20000)), C::TooLarge);
}

#[test]
fn order_syntax_before_header() {
    // Step 3 before 4/5/6: a padded signature on a token with zip and alg none.
    let h = r#"{"alg":"none","typ":"JWT","kid":"client1","zip":"DEF"}"#;
    let t = format!("{}=", jws(h, claims().as_bytes()));
    assert_eq!(code(&t), C::Malformed);
    // An oversized header with an empty payload: malformed (step 3) first.
    let big = hdr_plus(
        &headers::jws(ID),
        &format!("\"p\":\"{}\"", "x".repeat(2000)),
    );
    assert_eq!(
        code(&raw_jws(&b64::encode(big.as_bytes()), "")),
        C::Malformed
    );
}

#[test]
fn order_header_size_before_forbidden_members() {
    let big = hdr_plus(
        &headers::jws(ID),
        &format!("\"zip\":\"DEF\",\"p\":\"{}\"", "x".repeat(2000)),
    );
    assert_eq!(code(&jws(&big, claims().as_bytes())), C::TooLarge);
}

#[test]
fn order_typ_before_alg() {
    let h = r#"{"alg":"none","kid":"client1"}"#;
    assert_eq!(code(&jws(h, claims().as_bytes())), C::UnsupportedHeader);
}

#[test]
fn order_alg_before_nesting() {
    let h = r#"{"alg":"HS512","typ":"JWT","cty":"jwt","kid":"client1"}"#;
    assert_eq!(code(&jws(h, claims().as_bytes())), C::UnsupportedAlg);
}

#[test]
fn order_nesting_before_form_policy_and_kid() {
    let h = r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","kid":"nobody"}"#;
    assert_eq!(code(&jwe(h, claims().as_bytes())), C::BadNesting);
    let mut p = Policy::default();
    p.forms = FormSet::NONE;
    let r = verifier_with(p).verify_at(&keystore(), &jwe(h, claims().as_bytes()), NOW);
    assert_eq!(code_of(r), C::BadNesting);
}

#[test]
fn order_form_policy_before_kid() {
    let mut p = Policy::default();
    p.forms = [Form::Signed].into_iter().collect();
    let h = r#"{"alg":"HS256","typ":"JWT","cty":"JWT","kid":"nobody"}"#;
    let t = jws(
        h,
        jwe(&headers::jwe("nobody"), claims().as_bytes()).as_bytes(),
    );
    assert_eq!(
        code_of(verifier_with(p).verify_at(&keystore(), &t, NOW)),
        C::FormNotAllowed
    );
}

#[test]
fn order_kid_before_signature() {
    let stranger = keys_for(ROOT_STRANGER, OTHER_EKM, "nobody");
    let t = token_with_keys(Form::Signed, "nobody", &claims(), &stranger);
    assert_eq!(code(&t), C::UnknownClient);
}

#[test]
fn order_signature_before_inner_layer_and_claims() {
    let wrong = keys_for(ROOT_STRANGER, EKM, ID);
    // Bad outer signature over garbage claims.
    assert_eq!(
        code(&sign_jws(&headers::jws(ID), b"not json", &wrong.sig)),
        C::BadSignature
    );
    // Bad outer signature over an inner that is not a token.
    assert_eq!(
        code(&sign_jws(&headers::jws_nested(ID), b"hello", &wrong.sig)),
        C::BadSignature
    );
    // Failed outer decryption over an inner that is not a token.
    let t = encrypt_jwe(&headers::jwe_nested(ID), b"hello", &wrong.enc, IV);
    assert_eq!(code(&t), C::DecryptFailed);
}

#[test]
fn order_inner_kind_before_inner_kid() {
    // ES whose inner is a JWS for another kid: bad_nesting wins.
    let inner = jws(&headers::jws(ID2), claims().as_bytes());
    assert_eq!(
        code(&jws(&headers::jws_nested(ID), inner.as_bytes())),
        C::BadNesting
    );
}

#[test]
fn order_inner_kid_before_inner_open() {
    // Inner kid differs and the inner layer would not open anyway.
    let wrong = keys_for(ROOT_STRANGER, EKM, ID);
    let inner = encrypt_jwe(&headers::jwe(ID2), claims().as_bytes(), &wrong.enc, IV);
    assert_eq!(
        code(&jws(&headers::jws_nested(ID), inner.as_bytes())),
        C::UnknownClient
    );
}

#[test]
fn order_claims_size_before_syntax() {
    let mut big = "x".repeat(9000);
    big.insert(0, '{');
    assert_eq!(code(&s(&big)), C::TooLarge);
}

#[test]
fn order_claims_syntax_before_iss_and_aud() {
    let c = claims_with(|m| {
        m.remove("iss");
        m.insert("aud".into(), "elsewhere".into());
        m.insert("iat".into(), "soon".into());
    });
    assert_eq!(code(&s(&c)), C::Malformed);
}

#[test]
fn order_iss_before_aud() {
    let c = claims_with(|m| {
        m.insert("iss".into(), ID2.into());
        m.insert("aud".into(), "elsewhere".into());
    });
    assert_eq!(code(&s(&c)), C::UnknownClient);
}

#[test]
fn order_aud_before_time() {
    let c = claims_with(|m| {
        m.insert("aud".into(), "elsewhere".into());
        m.insert("iat".into(), (T - 1000).into());
        m.insert("exp".into(), (T - 900).into());
    });
    assert_eq!(code(&s(&c)), C::WrongAudience);
}

#[test]
fn order_expired_before_not_yet_valid_before_ttl() {
    // Expired and iat in the future at once: expired.
    assert_eq!(code(&s(&times(json!(T + 100), json!(T - 100)))), C::Expired);
    // Not yet valid and too long at once: not_yet_valid.
    assert_eq!(
        code(&s(&times(json!(T + 100), json!(T + 1000)))),
        C::NotYetValid
    );
    let c = claims_with(|m| {
        m.insert("nbf".into(), (T + 100).into());
        m.insert("exp".into(), (T + 1000).into());
    });
    assert_eq!(code(&s(&c)), C::NotYetValid);
}

#[test]
fn order_time_before_jti() {
    let c = claims_with(|m| {
        m.insert("exp".into(), (T + 1000).into());
        m.remove("jti");
    });
    assert_eq!(code(&s(&c)), C::TtlTooLong);
    let c = claims_with(|m| {
        m.insert("exp".into(), (T - 100).into());
        m.insert("jti".into(), "".into());
    });
    assert_eq!(code(&s(&c)), C::Expired);
}

#[test]
fn rejection_codes_round_trip_on_the_wire() {
    for c in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_code(c.as_str()), Some(c));
    }
    let r = verify("a.b").unwrap_err();
    assert_eq!(r.to_string().split(':').next(), Some("malformed"));
}
