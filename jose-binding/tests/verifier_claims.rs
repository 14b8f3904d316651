//! The §7 suite, the claims' audience and times: `wrong_audience` (step 12),
//! `expired`, `not_yet_valid` and `ttl_too_long` (step 13).
//!
//! Every case asserts the exact `ErrorCode` at a fixed `now` on a fixed EKM;
//! the fixtures and token builders are in `support/`.

use jose_binding::{ErrorCode, Policy};
use serde_json::json;
use ErrorCode as C;

#[allow(dead_code)] // each verifier_*.rs uses part of it
mod support;
use support::*;

// ---------------------------------------------------------------------------
// wrong_audience (step 12)
// ---------------------------------------------------------------------------

#[test]
fn wrong_audience_absent() {
    let c = claims_with(|m| {
        m.remove("aud");
    });
    for (form, t) in all_forms(&c) {
        assert_eq!(code(&t), C::WrongAudience, "{form}");
    }
}

#[test]
fn wrong_audience_array() {
    for aud in [
        json!(["localhost"]),
        json!(["localhost", "other"]),
        json!([]),
        json!(null),
        json!(1),
    ] {
        let c = claims_with(|m| {
            m.insert("aud".into(), aud.clone());
        });
        assert_eq!(code(&s(&c)), C::WrongAudience, "{aud}");
    }
}

#[test]
fn wrong_audience_other() {
    for aud in ["example.com", "LOCALHOST", "localhost ", "", "127.0.0.1"] {
        let c = claims_with(|m| {
            m.insert("aud".into(), aud.into());
        });
        for (form, t) in all_forms(&c) {
            assert_eq!(code(&t), C::WrongAudience, "{form}: {aud:?}");
        }
    }
    // A server configured for another audience.
    let mut p = Policy::default();
    p.audience = "api.example".into();
    let ks = keystore();
    assert_eq!(
        code_of(verifier_with(p.clone()).verify_at(&ks, &s(&claims()), NOW)),
        C::WrongAudience
    );
    let c = claims_with(|m| {
        m.insert("aud".into(), "api.example".into());
    });
    accepted(verifier_with(p).verify_at(&ks, &s(&c), NOW));
}

// ---------------------------------------------------------------------------
// expired, not_yet_valid, ttl_too_long (step 13)
// ---------------------------------------------------------------------------

#[test]
fn expired_at_the_exact_boundary() {
    // exp ≤ now − 30 is expired.
    let c = times(json!(T - 90), json!(T - 30));
    for (form, t) in all_forms(&c) {
        assert_eq!(code(&t), C::Expired, "{form}");
    }
    assert_eq!(code(&s(&times(json!(T - 200), json!(T - 100)))), C::Expired);
    assert_eq!(
        code(&s(&times(json!(T - 90), json!(1_699_999_970.0)))),
        C::Expired
    );
}

#[test]
fn not_expired_one_second_inside_the_skew() {
    let c = times(json!(T - 89), json!(T - 29));
    for (form, t) in all_forms(&c) {
        assert_eq!(accepted(verify(&t)).form, form);
    }
    accept(&s(&times(json!(T - 60), json!(1_699_999_970.5))));
}

#[test]
fn not_yet_valid_iat_in_the_future() {
    let c = times(json!(T + 31), json!(T + 91));
    for (form, t) in all_forms(&c) {
        assert_eq!(code(&t), C::NotYetValid, "{form}");
    }
    assert_eq!(
        code(&s(&times(json!(1_700_000_030.5), json!(T + 90)))),
        C::NotYetValid
    );
}

#[test]
fn not_yet_valid_iat_boundary_is_accepted() {
    let c = times(json!(T + 30), json!(T + 90));
    for (form, t) in all_forms(&c) {
        assert_eq!(accepted(verify(&t)).form, form);
    }
}

#[test]
fn not_yet_valid_nbf_in_the_future() {
    let c = claims_with(|m| {
        m.insert("nbf".into(), (T + 31).into());
    });
    for (form, t) in all_forms(&c) {
        assert_eq!(code(&t), C::NotYetValid, "{form}");
    }
    let c = claims_with(|m| {
        m.insert("nbf".into(), (T + 30).into());
    });
    accept(&s(&c));
}

#[test]
fn ttl_too_long() {
    let c = times(json!(T), json!(T + 301));
    for (form, t) in all_forms(&c) {
        assert_eq!(code(&t), C::TtlTooLong, "{form}");
    }
    assert_eq!(
        code(&s(&times(json!(T), json!(1_700_000_300.5)))),
        C::TtlTooLong
    );
    assert_eq!(
        code(&s(&times(json!(T - 20), json!(T + 3600)))),
        C::TtlTooLong
    );
}

#[test]
fn ttl_of_exactly_300_is_accepted() {
    let c = times(json!(T), json!(T + 300));
    for (form, t) in all_forms(&c) {
        assert_eq!(accepted(verify(&t)).form, form);
    }
}

#[test]
fn float_iat_and_exp_are_accepted() {
    let c = times(json!(1_700_000_000.5), json!(1_700_000_060.5));
    for (form, t) in all_forms(&c) {
        let v = accepted(verify(&t));
        assert_eq!(v.form, form);
        assert_eq!(v.claims.to_map()["iat"].as_f64(), Some(1_700_000_000.5));
        assert_eq!(v.claims.to_map()["exp"].as_f64(), Some(1_700_000_060.5));
    }
    accept(&s(&times(json!(1.7e9), json!(1.70000006e9))));
}

#[test]
fn custom_skew_and_ttl_are_honoured() {
    let mut p = Policy::default();
    p.skew_secs = 0;
    p.max_ttl_secs = 60;
    let ks = keystore();
    let r = |c: &str| verifier_with(p.clone()).verify_at(&ks, &s(c), NOW);
    assert_eq!(code_of(r(&times(json!(T - 60), json!(T)))), C::Expired);
    accepted(r(&times(json!(T - 59), json!(T + 1))));
    assert_eq!(
        code_of(r(&times(json!(T + 1), json!(T + 2)))),
        C::NotYetValid
    );
    assert_eq!(code_of(r(&times(json!(T), json!(T + 61)))), C::TtlTooLong);
}
