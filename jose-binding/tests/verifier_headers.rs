//! The §7 suite, the JOSE headers: `unsupported_header` (step 5),
//! `unsupported_alg` (step 6) and `bad_nesting` (steps 7, 10).
//!
//! Every case asserts the exact `ErrorCode` at a fixed `now` on a fixed EKM;
//! the fixtures and token builders are in `support/`.

use jose_binding::b64;
use jose_binding::token::headers;
use jose_binding::{ErrorCode, Form};
use ErrorCode as C;

#[allow(dead_code)] // each verifier_*.rs uses part of it
mod support;
use support::*;

// ---------------------------------------------------------------------------
// unsupported_header (step 5)
// ---------------------------------------------------------------------------

/// The member is refused in every layer: outer JWS (S, ES), outer JWE (SE),
/// inner JWE (ES), inner JWS (SE).
fn check_forbidden_member(member: &str) {
    let c = claims();
    let cases = [
        jws(&hdr_plus(&headers::jws(ID), member), c.as_bytes()),
        es(
            &hdr_plus(&headers::jws_nested(ID), member),
            &headers::jwe(ID),
            &c,
        ),
        es(
            &headers::jws_nested(ID),
            &hdr_plus(&headers::jwe(ID), member),
            &c,
        ),
        se(
            &hdr_plus(&headers::jwe_nested(ID), member),
            &headers::jws(ID),
            &c,
        ),
        se(
            &headers::jwe_nested(ID),
            &hdr_plus(&headers::jws(ID), member),
            &c,
        ),
    ];
    for (i, t) in cases.iter().enumerate() {
        assert_eq!(code(t), C::UnsupportedHeader, "{member} in case {i}");
    }
}

#[test]
fn unsupported_header_crit() {
    check_forbidden_member(r#""crit":["exp"]"#);
    check_forbidden_member(r#""crit":[]"#);
}

#[test]
fn unsupported_header_zip() {
    check_forbidden_member(r#""zip":"DEF""#);
}

#[test]
fn unsupported_header_jku() {
    check_forbidden_member(r#""jku":"https://attacker.example/jwks.json""#);
}

#[test]
fn unsupported_header_jwk() {
    check_forbidden_member(r#""jwk":{"kty":"oct","k":"AAAA"}"#);
}

#[test]
fn unsupported_header_x5u() {
    check_forbidden_member(r#""x5u":"https://attacker.example/cert.pem""#);
}

#[test]
fn unsupported_header_x5c() {
    check_forbidden_member(r#""x5c":["MIIB"]"#);
}

#[test]
fn unsupported_header_x5t() {
    check_forbidden_member(r#""x5t":"AAAA""#);
}

#[test]
fn unsupported_header_x5t_s256() {
    check_forbidden_member(r#""x5t#S256":"AAAA""#);
}

#[test]
fn unsupported_header_b64() {
    check_forbidden_member(r#""b64":false"#);
    check_forbidden_member(r#""b64":true"#);
}

#[test]
fn forbidden_member_with_null_value_is_still_present() {
    check_forbidden_member(r#""zip":null"#);
}

#[test]
fn unsupported_header_typ_absent() {
    let t = jws(r#"{"alg":"HS256","kid":"client1"}"#, claims().as_bytes());
    assert_eq!(code(&t), C::UnsupportedHeader);
    let t = se(
        r#"{"alg":"dir","enc":"A256GCM","cty":"JWT","kid":"client1"}"#,
        &headers::jws(ID),
        &claims(),
    );
    assert_eq!(code(&t), C::UnsupportedHeader);
    // Inner JWE of ES without typ.
    let t = es(
        &headers::jws_nested(ID),
        r#"{"alg":"dir","enc":"A256GCM","kid":"client1"}"#,
        &claims(),
    );
    assert_eq!(code(&t), C::UnsupportedHeader);
}

#[test]
fn unsupported_header_typ_lowercase_jwt() {
    let t = jws(
        r#"{"alg":"HS256","typ":"jwt","kid":"client1"}"#,
        claims().as_bytes(),
    );
    assert_eq!(code(&t), C::UnsupportedHeader);
    let t = jws(
        r#"{"alg":"HS256","typ":"application/jwt","kid":"client1"}"#,
        claims().as_bytes(),
    );
    assert_eq!(code(&t), C::UnsupportedHeader);
}

#[test]
fn unsupported_header_typ_jws() {
    let t = jws(
        r#"{"alg":"HS256","typ":"JWS","kid":"client1"}"#,
        claims().as_bytes(),
    );
    assert_eq!(code(&t), C::UnsupportedHeader);
    for typ in [r#""JWT ""#, "1", "null", r#"["JWT"]"#, r#""JOSE""#] {
        let t = jws(
            &format!(r#"{{"alg":"HS256","typ":{typ},"kid":"client1"}}"#),
            claims().as_bytes(),
        );
        assert_eq!(code(&t), C::UnsupportedHeader, "{typ}");
    }
}

#[test]
fn unknown_header_members_are_ignored() {
    let t = jws(
        &hdr_plus(&headers::jws(ID), r#""foo":"bar","x5":"y","CRIT":1"#),
        claims().as_bytes(),
    );
    accept(&t);
}

// ---------------------------------------------------------------------------
// unsupported_alg (step 6)
// ---------------------------------------------------------------------------

#[test]
fn unsupported_alg_none() {
    let h = r#"{"alg":"none","typ":"JWT","kid":"client1"}"#;
    let unsecured = format!(
        "{}.{}.",
        b64::encode(h.as_bytes()),
        b64::encode(claims().as_bytes())
    );
    assert_eq!(code(&unsecured), C::UnsupportedAlg);
    // Even with a valid HMAC over it.
    assert_eq!(code(&jws(h, claims().as_bytes())), C::UnsupportedAlg);
    for alg in ["None", "NONE"] {
        let h = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"client1"}}"#);
        assert_eq!(
            code(&jws(&h, claims().as_bytes())),
            C::UnsupportedAlg,
            "{alg}"
        );
    }
}

#[test]
fn unsupported_alg_hs512() {
    for alg in [
        r#""HS512""#,
        r#""HS384""#,
        r#""hs256""#,
        r#""HS256 ""#,
        r#""RS256""#,
        r#""dir""#,
    ] {
        let h = format!(r#"{{"alg":{alg},"typ":"JWT","kid":"client1"}}"#);
        assert_eq!(
            code(&jws(&h, claims().as_bytes())),
            C::UnsupportedAlg,
            "{alg}"
        );
    }
}

#[test]
fn unsupported_alg_absent() {
    let t = jws(r#"{"typ":"JWT","kid":"client1"}"#, claims().as_bytes());
    assert_eq!(code(&t), C::UnsupportedAlg);
    for alg in ["null", "256", r#"["HS256"]"#] {
        let h = format!(r#"{{"alg":{alg},"typ":"JWT","kid":"client1"}}"#);
        assert_eq!(
            code(&jws(&h, claims().as_bytes())),
            C::UnsupportedAlg,
            "{alg}"
        );
    }
    // JWE without alg.
    let t = se(
        r#"{"enc":"A256GCM","typ":"JWT","cty":"JWT","kid":"client1"}"#,
        &headers::jws(ID),
        &claims(),
    );
    assert_eq!(code(&t), C::UnsupportedAlg);
}

#[test]
fn unsupported_alg_jwe_a256kw() {
    for alg in ["A256KW", "DIR", "RSA-OAEP", "HS256"] {
        let h =
            format!(r#"{{"alg":"{alg}","enc":"A256GCM","typ":"JWT","cty":"JWT","kid":"client1"}}"#);
        assert_eq!(
            code(&se(&h, &headers::jws(ID), &claims())),
            C::UnsupportedAlg,
            "{alg}"
        );
    }
}

#[test]
fn unsupported_alg_jwe_enc_a128gcm() {
    for enc in [
        r#""A128GCM""#,
        r#""A256CBC-HS512""#,
        r#""a256gcm""#,
        "null",
        "256",
    ] {
        let h = format!(r#"{{"alg":"dir","enc":{enc},"typ":"JWT","cty":"JWT","kid":"client1"}}"#);
        assert_eq!(
            code(&se(&h, &headers::jws(ID), &claims())),
            C::UnsupportedAlg,
            "{enc}"
        );
    }
}

#[test]
fn unsupported_alg_jwe_enc_absent() {
    let h = r#"{"alg":"dir","typ":"JWT","cty":"JWT","kid":"client1"}"#;
    assert_eq!(
        code(&se(h, &headers::jws(ID), &claims())),
        C::UnsupportedAlg
    );
}

#[test]
fn unsupported_alg_in_inner_layer() {
    // ES whose inner JWE has enc A128GCM.
    let inner = r#"{"alg":"dir","enc":"A128GCM","typ":"JWT","kid":"client1"}"#;
    assert_eq!(
        code(&es(&headers::jws_nested(ID), inner, &claims())),
        C::UnsupportedAlg
    );
    // ES whose inner JWE has alg A256KW.
    let inner = r#"{"alg":"A256KW","enc":"A256GCM","typ":"JWT","kid":"client1"}"#;
    assert_eq!(
        code(&es(&headers::jws_nested(ID), inner, &claims())),
        C::UnsupportedAlg
    );
    // SE whose inner JWS is alg none (unsigned).
    let h = r#"{"alg":"none","typ":"JWT","kid":"client1"}"#;
    let unsigned = format!(
        "{}.{}.",
        b64::encode(h.as_bytes()),
        b64::encode(claims().as_bytes())
    );
    assert_eq!(
        code(&jwe(&headers::jwe_nested(ID), unsigned.as_bytes())),
        C::UnsupportedAlg
    );
    // SE whose inner JWS is HS512.
    let h = r#"{"alg":"HS512","typ":"JWT","kid":"client1"}"#;
    assert_eq!(
        code(&se(&headers::jwe_nested(ID), h, &claims())),
        C::UnsupportedAlg
    );
}

// ---------------------------------------------------------------------------
// bad_nesting (steps 7, 10)
// ---------------------------------------------------------------------------

#[test]
fn bad_nesting_jwe_without_cty() {
    // A JWE carrying claims directly.
    assert_eq!(
        code(&jwe(&headers::jwe(ID), claims().as_bytes())),
        C::BadNesting
    );
    // A JWE carrying a signed token but not saying so.
    assert_eq!(
        code(&jwe(&headers::jwe(ID), s(&claims()).as_bytes())),
        C::BadNesting
    );
}

#[test]
fn bad_nesting_jws_cty_lowercase_jwt() {
    let h = r#"{"alg":"HS256","typ":"JWT","cty":"jwt","kid":"client1"}"#;
    let inner = jwe(&headers::jwe(ID), claims().as_bytes());
    assert_eq!(code(&jws(h, inner.as_bytes())), C::BadNesting);
    assert_eq!(code(&jws(h, claims().as_bytes())), C::BadNesting);
    // Same on a JWE.
    let h = r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","cty":"jwt","kid":"client1"}"#;
    assert_eq!(code(&se(h, &headers::jws(ID), &claims())), C::BadNesting);
}

#[test]
fn bad_nesting_cty_application_jwt() {
    let inner = jwe(&headers::jwe(ID), claims().as_bytes());
    for cty in [
        r#""application/jwt""#,
        r#""JWT ""#,
        r#""JSON""#,
        "null",
        "1",
        r#"["JWT"]"#,
    ] {
        let h = format!(r#"{{"alg":"HS256","typ":"JWT","cty":{cty},"kid":"client1"}}"#);
        assert_eq!(code(&jws(&h, inner.as_bytes())), C::BadNesting, "{cty}");
    }
    let h = r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","cty":"application/jwt","kid":"client1"}"#;
    assert_eq!(code(&se(h, &headers::jws(ID), &claims())), C::BadNesting);
}

#[test]
fn bad_nesting_es_inner_is_jws() {
    let inner = s(&claims());
    assert_eq!(
        code(&jws(&headers::jws_nested(ID), inner.as_bytes())),
        C::BadNesting
    );
    // An ES inside an ES.
    let es_t = token(Form::EncryptedThenSigned, &claims());
    assert_eq!(
        code(&jws(&headers::jws_nested(ID), es_t.as_bytes())),
        C::BadNesting
    );
}

#[test]
fn bad_nesting_se_inner_is_jwe() {
    let inner = jwe(&headers::jwe(ID), claims().as_bytes());
    assert_eq!(
        code(&jwe(&headers::jwe_nested(ID), inner.as_bytes())),
        C::BadNesting
    );
    // An SE inside an SE.
    let se_t = token(Form::SignedThenEncrypted, &claims());
    assert_eq!(
        code(&jwe(&headers::jwe_nested(ID), se_t.as_bytes())),
        C::BadNesting
    );
}

#[test]
fn bad_nesting_inner_carrying_cty() {
    let inner_jwe = r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","cty":"JWT","kid":"client1"}"#;
    assert_eq!(
        code(&es(&headers::jws_nested(ID), inner_jwe, &claims())),
        C::BadNesting
    );
    let inner_jwe = r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","cty":"json","kid":"client1"}"#;
    assert_eq!(
        code(&es(&headers::jws_nested(ID), inner_jwe, &claims())),
        C::BadNesting
    );
    let inner_jws = r#"{"alg":"HS256","typ":"JWT","cty":"JWT","kid":"client1"}"#;
    assert_eq!(
        code(&se(&headers::jwe_nested(ID), inner_jws, &claims())),
        C::BadNesting
    );
}
