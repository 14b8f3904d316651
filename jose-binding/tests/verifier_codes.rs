//! One test per verification outcome of PROTOCOL.md §7: every case asserts the
//! exact `ErrorCode`, at a fixed `now` and on a fixed EKM.
//!
//! Tokens are built with the library's own `issuer::seal`, `token::sign_jws`
//! and `token::encrypt_jwe`, or byte by byte (with a raw HMAC) where a case
//! needs parts that those functions would never produce.

use std::sync::Arc;

use jose_binding::b64;
use jose_binding::issuer::seal;
use jose_binding::token::{encrypt_jwe, headers, sign_jws};
use jose_binding::{
    ClientId, ConnectionVerifier, Ekm, ErrorCode, Form, FormSet, Issuer, Keystore, Policy, SubKeys,
};
use serde_json::{json, Map, Value};
use ErrorCode as C;

#[allow(dead_code)] // the helpers for other files are not used here
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
            let ok = accepted(v.verify_at(&ks, &t, jose_binding::verifier::unix_now()));
            assert_eq!(ok.form, form);
            assert_eq!(ok.claims.to_map()["k"], "v");
            assert_eq!(ok.claims.to_map()["jti"].as_str().unwrap().len(), 22);
        }
    }
    assert_eq!(v.replay_len(), 9);
}

#[test]
fn a_new_connection_has_its_own_replay_cache() {
    // Uniqueness is per connection: the same EKM on a new verifier is a new cache.
    let t = s(&claims());
    accept(&t);
    accept(&t);
}

// ---------------------------------------------------------------------------
// malformed (steps 1, 3, 4, 10, 11)
// ---------------------------------------------------------------------------

#[test]
fn malformed_empty_token() {
    assert_eq!(code(""), C::Malformed);
}

#[test]
fn malformed_wrong_part_count() {
    let t = s(&claims());
    let p = parts(&t);
    for bad in [
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{}.{}", p[0], p[1]),
        format!("{t}.{}", p[2]),
        format!("{t}.{}.{}", p[2], p[2]),
        format!("{t}.{}.{}.{}", p[2], p[2], p[2]),
        ".....".to_owned(),
        "..".to_owned().repeat(10),
    ] {
        assert_eq!(code(&bad), C::Malformed, "{bad}");
    }
    let se_t = token(Form::SignedThenEncrypted, &claims());
    assert_eq!(code(&format!("{se_t}.")), C::Malformed);
    let pe = parts(&se_t);
    assert_eq!(code(&join(&pe[..4])), C::Malformed);
}

#[test]
fn malformed_padding() {
    // Payload of length 1 mod 3: its unpadded encoding is 2 mod 4, padded with "==".
    let claims = claims_len_mod3(1);
    let header_b64 = b64::encode(headers::jws(ID).as_bytes());
    let payload_b64 = b64::encode(claims.as_bytes());
    assert_eq!(payload_b64.len() % 4, 2);
    // Sanity: without padding the same construction is accepted.
    accept(&raw_jws(&header_b64, &payload_b64));
    // Padded payload, correctly MAC'd over the padded text.
    assert_eq!(
        code(&raw_jws(&header_b64, &format!("{payload_b64}=="))),
        C::Malformed
    );
    // Padded signature (43 chars + "="): the MAC itself is right.
    let t = s(&claims);
    assert_eq!(code(&format!("{t}=")), C::Malformed);
    // Padded header.
    let p = parts(&t);
    let padded_header = match p[0].len() % 4 {
        2 => format!("{}==", p[0]),
        _ => format!("{}=", p[0]),
    };
    assert_eq!(code(&replace_part(&t, 0, &padded_header)), C::Malformed);
    // Padded JWE tag (16 bytes: 22 chars + "==") and IV.
    let se_t = token(Form::SignedThenEncrypted, &claims);
    let pe = parts(&se_t);
    assert_eq!(
        code(&replace_part(&se_t, 4, &format!("{}==", pe[4]))),
        C::Malformed
    );
    assert_eq!(
        code(&replace_part(&se_t, 2, &format!("{}=", pe[2]))),
        C::Malformed
    );
}

#[test]
fn malformed_non_canonical_trailing_bits() {
    // The signature (32 bytes, 43 chars) has 2 unused bits: a lax decoder
    // would verify the MAC; a strict one refuses before touching a key.
    let t = s(&claims());
    let p = parts(&t);
    assert_eq!(
        code(&replace_part(&t, 2, &set_trailing_bit(&p[2]))),
        C::Malformed
    );

    // Payload with unused bits, correctly MAC'd over the non-canonical text.
    let claims = claims_len_mod3(2);
    let header_b64 = b64::encode(headers::jws(ID).as_bytes());
    let payload_b64 = set_trailing_bit(&b64::encode(claims.as_bytes()));
    assert_eq!(code(&raw_jws(&header_b64, &payload_b64)), C::Malformed);

    // JWE tag (16 bytes, 22 chars) with unused bits.
    let se_t = token(Form::SignedThenEncrypted, &claims);
    let pe = parts(&se_t);
    assert_eq!(
        code(&replace_part(&se_t, 4, &set_trailing_bit(&pe[4]))),
        C::Malformed
    );
    // Characters outside the base64url alphabet.
    assert_eq!(
        code(&replace_part(&t, 2, &format!("+{}", &p[2][1..]))),
        C::Malformed
    );
    assert_eq!(
        code(&replace_part(&t, 1, &format!("{} ", p[1]))),
        C::Malformed
    );
}

#[test]
fn malformed_empty_jws_payload() {
    let header_b64 = b64::encode(headers::jws(ID).as_bytes());
    assert_eq!(code(&raw_jws(&header_b64, "")), C::Malformed);
    assert_eq!(code(&jws(&headers::jws(ID), b"")), C::Malformed);
    // Also when the JWS is the inner layer of SE.
    let inner = jws(&headers::jws(ID), b"");
    assert_eq!(
        code(&jwe(&headers::jwe_nested(ID), inner.as_bytes())),
        C::Malformed
    );
}

#[test]
fn malformed_non_empty_jwe_encrypted_key() {
    // The AAD is the header only, so the AEAD would still open: the syntax
    // check must refuse it.
    let t = token(Form::SignedThenEncrypted, &claims());
    assert_eq!(code(&replace_part(&t, 1, "AAAA")), C::Malformed);
    assert_eq!(
        code(&replace_part(&t, 1, &b64::encode(&[0u8; 40]))),
        C::Malformed
    );
    // And in the inner JWE of ES.
    let p = parts(&jwe(&headers::jwe(ID), claims().as_bytes()));
    let mut q = p.clone();
    q[1] = "AAAA".into();
    let t = jws(&headers::jws_nested(ID), join(&q).as_bytes());
    assert_eq!(code(&t), C::Malformed);
}

#[test]
fn malformed_header_not_json() {
    for h in [
        "not json",
        "",
        r#"{"alg":"HS256","typ":"JWT","kid":"client1""#,
        r#"{"alg":"HS256","typ":"JWT","kid":"client1"} x"#,
        r#"{alg:"HS256"}"#,
    ] {
        assert_eq!(code(&jws(h, claims().as_bytes())), C::Malformed, "{h}");
    }
    // Invalid UTF-8 in the header.
    let header_b64 =
        b64::encode(b"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"client1\",\"x\":\"\xff\"}");
    assert_eq!(
        code(&raw_jws(&header_b64, &b64::encode(claims().as_bytes()))),
        C::Malformed
    );
    // A JWE header that is not JSON.
    assert_eq!(code(&jwe("nope", claims().as_bytes())), C::Malformed);
}

#[test]
fn malformed_header_json_array() {
    for h in [
        r#"["alg","HS256","typ","JWT"]"#,
        r#"[{"alg":"HS256","typ":"JWT","kid":"client1"}]"#,
        r#""JWT""#,
        "1",
        "null",
    ] {
        assert_eq!(code(&jws(h, claims().as_bytes())), C::Malformed, "{h}");
    }
}

#[test]
fn malformed_duplicate_header_member() {
    for h in [
        r#"{"alg":"HS256","alg":"none","typ":"JWT","kid":"client1"}"#,
        r#"{"alg":"none","alg":"HS256","typ":"JWT","kid":"client1"}"#,
        r#"{"alg":"HS256","typ":"JWT","kid":"client1","\u0061lg":"HS256"}"#,
        r#"{"alg":"HS256","typ":"JWT","kid":"client1","kid":"client1"}"#,
        r#"{"alg":"HS256","typ":"JWT","kid":"client1","x":{"y":1,"y":2}}"#,
    ] {
        assert_eq!(code(&jws(h, claims().as_bytes())), C::Malformed, "{h}");
    }
    let h =
        r#"{"alg":"dir","enc":"A256GCM","enc":"A256GCM","typ":"JWT","cty":"JWT","kid":"client1"}"#;
    let inner = s(&claims());
    assert_eq!(code(&jwe(h, inner.as_bytes())), C::Malformed);
    // In an inner header too.
    let inner_h = r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","typ":"JWT","kid":"client1"}"#;
    assert_eq!(
        code(&es(&headers::jws_nested(ID), inner_h, &claims())),
        C::Malformed
    );
}

#[test]
fn malformed_header_json_rules_as_for_claims() {
    // Nesting deeper than 32, lone surrogate escapes: same rules as the claims (step 11).
    let deep = hdr_plus(
        &headers::jws(ID),
        &format!(r#""x":{}1{}"#, "[".repeat(32), "]".repeat(32)),
    );
    assert_eq!(code(&jws(&deep, claims().as_bytes())), C::Malformed);
    let ok = hdr_plus(
        &headers::jws(ID),
        &format!(r#""x":{}1{}"#, "[".repeat(31), "]".repeat(31)),
    );
    accept(&jws(&ok, claims().as_bytes()));
    let surrogate = hdr_plus(&headers::jws(ID), r#""x":"\udfff""#);
    assert_eq!(code(&jws(&surrogate, claims().as_bytes())), C::Malformed);
    // The same in an inner header.
    let inner = hdr_plus(&headers::jwe(ID), r#""x":"\ud800""#);
    assert_eq!(
        code(&es(&headers::jws_nested(ID), &inner, &claims())),
        C::Malformed
    );
}

#[test]
fn malformed_es_inner_not_a_token() {
    for inner in [
        &b"hello"[..],
        claims().as_bytes(),
        b"a.b.c.d.e",
        b"\xff\xfe.a.b.c.d",
        b" ",
    ] {
        let t = jws(&headers::jws_nested(ID), inner);
        assert_eq!(code(&t), C::Malformed, "{}", String::from_utf8_lossy(inner));
    }
    // An inner JWE with surrounding whitespace is not a compact token.
    let inner = format!(" {}", jwe(&headers::jwe(ID), claims().as_bytes()));
    assert_eq!(
        code(&jws(&headers::jws_nested(ID), inner.as_bytes())),
        C::Malformed
    );
}

#[test]
fn malformed_se_inner_not_a_token() {
    for inner in [
        &b"hello"[..],
        claims().as_bytes(),
        b"a.b.c",
        b"\xff.\xff.\xff",
        b"",
    ] {
        let t = jwe(&headers::jwe_nested(ID), inner);
        assert_eq!(code(&t), C::Malformed, "{}", String::from_utf8_lossy(inner));
    }
}

#[test]
fn malformed_claims_not_json() {
    for c in [
        "not json",
        "[1,2]",
        r#""claims""#,
        "42",
        "null",
        r#"{"iss":"client1""#,
        &format!("{} x", claims()),
        &format!("{}{}", claims(), claims()),
    ] {
        for (form, t) in all_forms(c) {
            assert_eq!(code(&t), C::Malformed, "{form}: {c}");
        }
    }
}

#[test]
fn malformed_duplicate_claim() {
    let top = claims_raw(r#""aud":"localhost""#);
    let deep = claims_raw(r#""x":{"y":[1,{"z":1,"z":2}]}"#);
    let escaped = claims_raw(r#""\u0069ss":"client1""#);
    for c in [top, deep, escaped] {
        for (form, t) in all_forms(&c) {
            assert_eq!(code(&t), C::Malformed, "{form}: {c}");
        }
    }
    // Duplicates in a large object (more than 16 members).
    let mut m = String::new();
    for i in 0..40 {
        m.push_str(&format!("\"k{i}\":{i},"));
    }
    let big = claims_raw(&format!(r#""big":{{{m}"k7":0}}"#));
    assert_eq!(code(&s(&big)), C::Malformed);
}

#[test]
fn malformed_claims_nesting_deeper_than_32() {
    // The claims object is depth 1: 31 nested arrays inside reach depth 32.
    let ok = claims_raw(&format!(r#""x":{}1{}"#, "[".repeat(31), "]".repeat(31)));
    let deep = claims_raw(&format!(r#""x":{}1{}"#, "[".repeat(32), "]".repeat(32)));
    let deep_objects = claims_raw(&format!(
        r#""x":{}1{}"#,
        r#"{"a":"#.repeat(32),
        "}".repeat(32)
    ));
    let very_deep = claims_raw(&format!(r#""x":{}1{}"#, "[".repeat(500), "]".repeat(500)));
    for form in Form::ALL {
        accepted(verify(&token(form, &ok)));
        assert_eq!(code(&token(form, &deep)), C::Malformed, "{form}");
        assert_eq!(code(&token(form, &deep_objects)), C::Malformed, "{form}");
        assert_eq!(code(&token(form, &very_deep)), C::Malformed, "{form}");
    }
}

#[test]
fn malformed_iat_not_a_number() {
    for v in [
        json!("1700000000"),
        json!(null),
        json!(true),
        json!([T]),
        json!({"t": T}),
    ] {
        let c = claims_with(|m| {
            m.insert("iat".into(), v.clone());
        });
        assert_eq!(code(&s(&c)), C::Malformed, "{v}");
    }
    let c = claims_with(|m| {
        m.remove("iat");
    });
    assert_eq!(code(&s(&c)), C::Malformed);
}

#[test]
fn malformed_exp_absent() {
    let c = claims_with(|m| {
        m.remove("exp");
    });
    for (form, t) in all_forms(&c) {
        assert_eq!(code(&t), C::Malformed, "{form}");
    }
    let c = claims_with(|m| {
        m.insert("exp".into(), "1700000060".into());
    });
    assert_eq!(code(&s(&c)), C::Malformed);
}

#[test]
fn malformed_nbf_not_a_number() {
    for v in [json!("1700000000"), json!(null), json!(false)] {
        let c = claims_with(|m| {
            m.insert("nbf".into(), v.clone());
        });
        assert_eq!(code(&s(&c)), C::Malformed, "{v}");
    }
    // A numeric nbf in the past is fine; nbf is optional.
    let c = claims_with(|m| {
        m.insert("nbf".into(), (T - 10).into());
    });
    accept(&s(&c));
}

#[test]
fn malformed_lone_surrogate_in_claims() {
    for member in [
        r#""note":"\ud800""#,
        r#""note":"\udc00x""#,
        r#""note":"a\ud800\u0041""#,
        r#""\ud800":1"#,
    ] {
        let c = claims_raw(member);
        for (form, t) in all_forms(&c) {
            assert_eq!(code(&t), C::Malformed, "{form}: {member}");
        }
    }
    // A proper pair is fine.
    let ok = accept(&s(&claims_raw(r#""note":"\ud83d\ude00""#)));
    assert_eq!(ok.claims.to_map()["note"], "😀");
}

#[test]
fn malformed_invalid_utf8_in_claims() {
    let c = claims();
    let mut bytes = c.as_bytes()[..c.len() - 1].to_vec();
    bytes.extend_from_slice(b",\"note\":\"\xff\xfe\"}");
    let mut in_name = c.as_bytes()[..c.len() - 1].to_vec();
    in_name.extend_from_slice(b",\"\xc3\":1}");
    let mut overlong = c.as_bytes()[..c.len() - 1].to_vec();
    overlong.extend_from_slice(b",\"note\":\"\xc0\xaf\"}");
    for b in [bytes, in_name, overlong] {
        for form in Form::ALL {
            let t = seal(form, &cid(ID), &b, &keys(), IV);
            assert_eq!(code(&t), C::Malformed, "{form}");
        }
    }
}

// ---------------------------------------------------------------------------
// too_large (steps 2, 4, 11)
// ---------------------------------------------------------------------------

#[test]
fn too_large_token_over_16384_chars() {
    assert_eq!(code(&"a".repeat(16385)), C::TooLarge);
    assert_eq!(code(&".".repeat(16385)), C::TooLarge);
    // Exactly 16384 is not too large (here: malformed instead).
    assert_eq!(code(&"a".repeat(16384)), C::Malformed);
    // A validly signed token just over the limit.
    let t = s(&claims());
    let p = parts(&t);
    let pad = 16385 - t.len();
    let header = hdr_plus(&headers::jws(ID), &format!("\"p\":\"{}\"", "x".repeat(pad)));
    let big = raw_jws(&b64::encode(header.as_bytes()), &p[1]);
    assert!(big.len() > 16384);
    assert_eq!(code(&big), C::TooLarge);
}

#[test]
fn token_limit_counts_characters_not_bytes() {
    // 16384 two-byte characters: within the §7 step 2 limit, so step 3 decides.
    assert_eq!(code(&"é".repeat(16384)), C::Malformed);
    assert_eq!(code(&"é".repeat(16385)), C::TooLarge);
}

#[test]
fn too_large_header_over_1024_bytes() {
    let exact = |base: &str, len: usize| {
        let shell = hdr_plus(base, r#""p":"""#);
        let h = hdr_plus(
            base,
            &format!("\"p\":\"{}\"", "x".repeat(len - shell.len())),
        );
        assert_eq!(h.len(), len);
        h
    };
    // Outer JWS header.
    assert_eq!(
        code(&jws(&exact(&headers::jws(ID), 1025), claims().as_bytes())),
        C::TooLarge
    );
    accept(&jws(&exact(&headers::jws(ID), 1024), claims().as_bytes()));
    // Outer JWE header.
    let inner = s(&claims());
    assert_eq!(
        code(&jwe(
            &exact(&headers::jwe_nested(ID), 1025),
            inner.as_bytes()
        )),
        C::TooLarge
    );
    accept(&jwe(
        &exact(&headers::jwe_nested(ID), 1024),
        inner.as_bytes(),
    ));
    // Inner JWE header of ES.
    assert_eq!(
        code(&es(
            &headers::jws_nested(ID),
            &exact(&headers::jwe(ID), 1025),
            &claims()
        )),
        C::TooLarge
    );
    accept(&es(
        &headers::jws_nested(ID),
        &exact(&headers::jwe(ID), 1024),
        &claims(),
    ));
}

#[test]
fn too_large_claims_over_8192_bytes() {
    let big = claims_of_len(8193);
    let ok = claims_of_len(8192);
    for form in Form::ALL {
        assert_eq!(code(&token(form, &big)), C::TooLarge, "{form}");
        let v = accepted(verify(&token(form, &ok)));
        assert_eq!(v.form, form);
    }
}

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

// ---------------------------------------------------------------------------
// form_not_allowed (step 7)
// ---------------------------------------------------------------------------

#[test]
fn form_not_allowed_by_policy() {
    let ks = keystore();
    let only_s = Policy {
        forms: [Form::Signed].into_iter().collect(),
        ..Policy::default()
    };
    let c = claims();
    accepted(verifier_with(only_s.clone()).verify_at(&ks, &s(&c), NOW));
    for form in [Form::EncryptedThenSigned, Form::SignedThenEncrypted] {
        let r = verifier_with(only_s.clone()).verify_at(&ks, &token(form, &c), NOW);
        assert_eq!(code_of(r), C::FormNotAllowed, "{form}");
    }
    let only_se = Policy {
        forms: FormSet::NONE.with(Form::SignedThenEncrypted),
        ..Policy::default()
    };
    for form in [Form::Signed, Form::EncryptedThenSigned] {
        let r = verifier_with(only_se.clone()).verify_at(&ks, &token(form, &c), NOW);
        assert_eq!(code_of(r), C::FormNotAllowed, "{form}");
    }
    accepted(verifier_with(only_se).verify_at(&ks, &token(Form::SignedThenEncrypted, &c), NOW));
    let none = Policy {
        forms: FormSet::NONE,
        ..Policy::default()
    };
    for form in Form::ALL {
        let r = verifier_with(none.clone()).verify_at(&ks, &token(form, &c), NOW);
        assert_eq!(code_of(r), C::FormNotAllowed, "{form}");
    }
}

// ---------------------------------------------------------------------------
// unknown_client (steps 8, 10, 12)
// ---------------------------------------------------------------------------

#[test]
fn unknown_client_kid_absent() {
    let t = jws(r#"{"alg":"HS256","typ":"JWT"}"#, claims().as_bytes());
    assert_eq!(code(&t), C::UnknownClient);
    let t = se(
        r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","cty":"JWT"}"#,
        &headers::jws(ID),
        &claims(),
    );
    assert_eq!(code(&t), C::UnknownClient);
}

#[test]
fn unknown_client_kid_unknown() {
    for kid in ["nobody", "CLIENT1", "client1 ", "", "client"] {
        let h = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#);
        assert_eq!(
            code(&jws(&h, claims().as_bytes())),
            C::UnknownClient,
            "{kid:?}"
        );
    }
    // A well-formed token, correctly made for a client the server does not know.
    let stranger = keys_for(ROOT_STRANGER, EKM, "client3");
    for form in Form::ALL {
        let t = token_with_keys(form, "client3", &claims_for("client3", "j"), &stranger);
        assert_eq!(code(&t), C::UnknownClient, "{form}");
    }
}

#[test]
fn unknown_client_kid_not_a_string() {
    for kid in ["1", "null", r#"["client1"]"#, r#"{"id":"client1"}"#, "true"] {
        let h = format!(r#"{{"alg":"HS256","typ":"JWT","kid":{kid}}}"#);
        assert_eq!(
            code(&jws(&h, claims().as_bytes())),
            C::UnknownClient,
            "{kid}"
        );
    }
}

#[test]
fn unknown_client_inner_kid_different() {
    // Inner kid names another client that the keystore knows.
    let c = claims();
    assert_eq!(
        code(&es(&headers::jws_nested(ID), &headers::jwe(ID2), &c)),
        C::UnknownClient
    );
    assert_eq!(
        code(&se(&headers::jwe_nested(ID), &headers::jws(ID2), &c)),
        C::UnknownClient
    );
    // Inner kid absent or not a string.
    let inner = r#"{"alg":"dir","enc":"A256GCM","typ":"JWT"}"#;
    assert_eq!(
        code(&es(&headers::jws_nested(ID), inner, &c)),
        C::UnknownClient
    );
    let inner = r#"{"alg":"HS256","typ":"JWT","kid":1}"#;
    assert_eq!(
        code(&se(&headers::jwe_nested(ID), inner, &c)),
        C::UnknownClient
    );
}

#[test]
fn unknown_client_iss_absent() {
    let c = claims_with(|m| {
        m.remove("iss");
    });
    for (form, t) in all_forms(&c) {
        assert_eq!(code(&t), C::UnknownClient, "{form}");
    }
}

#[test]
fn unknown_client_iss_different_from_kid() {
    for iss in [
        json!(ID2),
        json!("CLIENT1"),
        json!(1),
        json!(null),
        json!([ID]),
    ] {
        let c = claims_with(|m| {
            m.insert("iss".into(), iss.clone());
        });
        for (form, t) in all_forms(&c) {
            assert_eq!(code(&t), C::UnknownClient, "{form}: {iss}");
        }
    }
}

// ---------------------------------------------------------------------------
// client_mismatch (step 8)
// ---------------------------------------------------------------------------

#[test]
fn client_mismatch_after_pinning() {
    let ks = keystore();
    let keys2 = keys_for(ROOT2, EKM, ID2);
    for form in Form::ALL {
        let mut v = verifier();
        accepted(v.verify_at(&ks, &token(form, &claims_for(ID, "a1")), NOW));
        assert_eq!(v.pinned().map(ClientId::as_str), Some(ID));
        let b = token_with_keys(form, ID2, &claims_for(ID2, "b1"), &keys2);
        // On its own connection, B's token is valid.
        accepted(verifier().verify_at(&ks, &b, NOW));
        assert_eq!(
            code_of(v.verify_at(&ks, &b, NOW)),
            C::ClientMismatch,
            "{form}"
        );
        // The connection stays bound to A and keeps accepting A.
        assert_eq!(v.pinned().map(ClientId::as_str), Some(ID));
        accepted(v.verify_at(&ks, &token(form, &claims_for(ID, "a2")), NOW));
    }
}

#[test]
fn client_mismatch_comes_before_the_signature_check() {
    let ks = keystore();
    let mut v = verifier();
    accepted(v.verify_at(&ks, &s(&claims()), NOW));
    // client2's token made with a wrong key: still client_mismatch (step 8 < 9).
    let wrong = keys_for(ROOT_STRANGER, EKM, ID2);
    let b = token_with_keys(Form::Signed, ID2, &claims_for(ID2, "b"), &wrong);
    assert_eq!(code_of(v.verify_at(&ks, &b, NOW)), C::ClientMismatch);
}

#[test]
fn a_refused_token_does_not_pin_the_connection() {
    let ks = keystore();
    let keys2 = keys_for(ROOT2, EKM, ID2);
    let mut v = verifier();
    let bad_aud = claims_with(|m| {
        m.insert("iss".into(), ID2.into());
        m.insert("aud".into(), "elsewhere".into());
    });
    let b = token_with_keys(Form::Signed, ID2, &bad_aud, &keys2);
    assert_eq!(code_of(v.verify_at(&ks, &b, NOW)), C::WrongAudience);
    assert!(v.pinned().is_none());
    accepted(v.verify_at(&ks, &s(&claims()), NOW));
    assert_eq!(v.pinned().map(ClientId::as_str), Some(ID));
}

// ---------------------------------------------------------------------------
// bad_signature (step 9)
// ---------------------------------------------------------------------------

#[test]
fn bad_signature_wrong_key() {
    let wrong = keys_for(ROOT_STRANGER, EKM, ID);
    for form in [Form::Signed, Form::EncryptedThenSigned] {
        let t = token_with_keys(form, ID, &claims(), &wrong);
        assert_eq!(code(&t), C::BadSignature, "{form}");
    }
    // client2's key used for a client1 token.
    let t = token_with_keys(Form::Signed, ID, &claims(), &keys_for(ROOT2, EKM, ID2));
    assert_eq!(code(&t), C::BadSignature);
    // Right root key, but subkeys derived for another client id.
    let t = token_with_keys(Form::Signed, ID, &claims(), &keys_for(ROOT, EKM, ID2));
    assert_eq!(code(&t), C::BadSignature);
}

#[test]
fn bad_signature_other_ekm() {
    let other = keys_for(ROOT, OTHER_EKM, ID);
    for form in [Form::Signed, Form::EncryptedThenSigned] {
        let t = token_with_keys(form, ID, &claims(), &other);
        assert_eq!(code(&t), C::BadSignature, "{form}");
    }
}

#[test]
fn bad_signature_tampered() {
    let t = s(&claims());
    // Tampered payload (a different, still well-formed claims set).
    let forged = claims_with(|m| {
        m.insert("admin".into(), true.into());
    });
    assert_eq!(
        code(&replace_part(&t, 1, &b64::encode(forged.as_bytes()))),
        C::BadSignature
    );
    // Tampered signature.
    assert_eq!(
        code(&replace_part(&t, 2, &flip_decoded(&parts(&t)[2], 31))),
        C::BadSignature
    );
    // Signature of the wrong length (canonical, 16 bytes), or empty.
    assert_eq!(
        code(&replace_part(&t, 2, &b64::encode(&[0u8; 16]))),
        C::BadSignature
    );
    assert_eq!(code(&replace_part(&t, 2, "")), C::BadSignature);
    // Header permuted after signing: the MAC covers the header text.
    let h2 = r#"{"kid":"client1","typ":"JWT","alg":"HS256"}"#;
    assert_eq!(
        code(&replace_part(&t, 0, &b64::encode(h2.as_bytes()))),
        C::BadSignature
    );
}

#[test]
fn bad_signature_inner_jws_of_se() {
    // Outer JWE opens; the inner JWS was signed with another key.
    let wrong = keys_for(ROOT_STRANGER, EKM, ID);
    let inner = sign_jws(&headers::jws(ID), claims().as_bytes(), &wrong.sig);
    assert_eq!(
        code(&jwe(&headers::jwe_nested(ID), inner.as_bytes())),
        C::BadSignature
    );
    let inner = sign_jws(
        &headers::jws(ID),
        claims().as_bytes(),
        &keys_for(ROOT, OTHER_EKM, ID).sig,
    );
    assert_eq!(
        code(&jwe(&headers::jwe_nested(ID), inner.as_bytes())),
        C::BadSignature
    );
}

// ---------------------------------------------------------------------------
// decrypt_failed (step 9)
// ---------------------------------------------------------------------------

#[test]
fn decrypt_failed_other_ekm() {
    let other = keys_for(ROOT, OTHER_EKM, ID);
    let t = token_with_keys(Form::SignedThenEncrypted, ID, &claims(), &other);
    assert_eq!(code(&t), C::DecryptFailed);
    let wrong = keys_for(ROOT_STRANGER, EKM, ID);
    let t = token_with_keys(Form::SignedThenEncrypted, ID, &claims(), &wrong);
    assert_eq!(code(&t), C::DecryptFailed);
}

#[test]
fn decrypt_failed_tampered_tag() {
    let t = token(Form::SignedThenEncrypted, &claims());
    let p = parts(&t);
    for byte in [0, 7, 15] {
        assert_eq!(
            code(&replace_part(&t, 4, &flip_decoded(&p[4], byte))),
            C::DecryptFailed
        );
    }
    // Tampered ciphertext and IV.
    assert_eq!(
        code(&replace_part(&t, 3, &flip_decoded(&p[3], 5))),
        C::DecryptFailed
    );
    assert_eq!(
        code(&replace_part(&t, 2, &flip_decoded(&p[2], 0))),
        C::DecryptFailed
    );
    // Header changed but still valid (members permuted): it is the AAD.
    let h2 = r#"{"kid":"client1","cty":"JWT","typ":"JWT","enc":"A256GCM","alg":"dir"}"#;
    assert_eq!(
        code(&replace_part(&t, 0, &b64::encode(h2.as_bytes()))),
        C::DecryptFailed
    );
    // Tag of the wrong length, or empty.
    assert_eq!(
        code(&replace_part(&t, 4, &b64::encode(&[0u8; 12]))),
        C::DecryptFailed
    );
    assert_eq!(code(&replace_part(&t, 4, "")), C::DecryptFailed);
}

#[test]
fn decrypt_failed_iv_wrong_length() {
    let t = token(Form::SignedThenEncrypted, &claims());
    for len in [0usize, 8, 11, 13, 16] {
        let iv = b64::encode(&vec![0x33u8; len]);
        assert_eq!(
            code(&replace_part(&t, 2, &iv)),
            C::DecryptFailed,
            "iv of {len} bytes"
        );
    }
}

#[test]
fn decrypt_failed_inner_jwe_of_es() {
    // Outer JWS verifies; the inner JWE was encrypted with another key.
    let wrong = keys_for(ROOT, OTHER_EKM, ID);
    let inner = encrypt_jwe(&headers::jwe(ID), claims().as_bytes(), &wrong.enc, IV);
    assert_eq!(
        code(&jws(&headers::jws_nested(ID), inner.as_bytes())),
        C::DecryptFailed
    );
    // Or its tag was altered before the outer signature was made.
    let inner = jwe(&headers::jwe(ID), claims().as_bytes());
    let p = parts(&inner);
    let bad = replace_part(&inner, 4, &flip_decoded(&p[4], 3));
    assert_eq!(
        code(&jws(&headers::jws_nested(ID), bad.as_bytes())),
        C::DecryptFailed
    );
}

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
    let p = Policy {
        audience: "api.example".into(),
        ..Policy::default()
    };
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
    let p = Policy {
        skew_secs: 0,
        max_ttl_secs: 60,
        ..Policy::default()
    };
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
    let small = Policy {
        replay_capacity: 4,
        ..Policy::default()
    };
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

// ---------------------------------------------------------------------------
// Header member order, rotation, cross-connection
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

fn rotation_keystore() -> Keystore {
    keystore_of(&[(ID, &[ROOT, ROOT_OLD]), (ID2, &[ROOT2])])
}

#[test]
fn rotation_old_key_is_accepted_with_key_index_1() {
    let ks = rotation_keystore();
    let old = keys_for(ROOT_OLD, EKM, ID);
    for form in Form::ALL {
        let t = token_with_keys(form, ID, &claims(), &old);
        let v = accepted(verifier().verify_at(&ks, &t, NOW));
        assert_eq!((v.form, v.key_index), (form, 1));
        let t = token(form, &claims());
        let v = accepted(verifier().verify_at(&ks, &t, NOW));
        assert_eq!((v.form, v.key_index), (form, 0));
    }
    // Both keys on one connection.
    let mut v = verifier();
    assert_eq!(
        accepted(v.verify_at(&ks, &s(&claims_for(ID, "x")), NOW)).key_index,
        0
    );
    let t = token_with_keys(Form::Signed, ID, &claims_for(ID, "y"), &old);
    assert_eq!(accepted(v.verify_at(&ks, &t, NOW)).key_index, 1);
}

#[test]
fn rotation_key_not_in_store_is_refused() {
    let ks = rotation_keystore();
    let stranger = keys_for(ROOT_STRANGER, EKM, ID);
    let want = [
        (Form::Signed, C::BadSignature),
        (Form::EncryptedThenSigned, C::BadSignature),
        (Form::SignedThenEncrypted, C::DecryptFailed),
    ];
    for (form, want) in want {
        let t = token_with_keys(form, ID, &claims(), &stranger);
        assert_eq!(code_of(verifier().verify_at(&ks, &t, NOW)), want, "{form}");
    }
}

#[test]
fn rotation_inner_layer_uses_the_key_that_opened_the_outer() {
    let ks = rotation_keystore();
    let new = keys();
    let old = keys_for(ROOT_OLD, EKM, ID);
    let c = claims();
    let es_mixed = |outer: &SubKeys, inner: &SubKeys| {
        let i = encrypt_jwe(&headers::jwe(ID), c.as_bytes(), &inner.enc, IV);
        sign_jws(&headers::jws_nested(ID), i.as_bytes(), &outer.sig)
    };
    let se_mixed = |outer: &SubKeys, inner: &SubKeys| {
        let i = sign_jws(&headers::jws(ID), c.as_bytes(), &inner.sig);
        encrypt_jwe(&headers::jwe_nested(ID), i.as_bytes(), &outer.enc, IV)
    };
    let r = |t: &str| verifier().verify_at(&ks, t, NOW);
    assert_eq!(code_of(r(&es_mixed(&old, &new))), C::DecryptFailed);
    assert_eq!(code_of(r(&es_mixed(&new, &old))), C::DecryptFailed);
    assert_eq!(code_of(r(&se_mixed(&old, &new))), C::BadSignature);
    assert_eq!(code_of(r(&se_mixed(&new, &old))), C::BadSignature);
    assert_eq!(accepted(r(&es_mixed(&old, &old))).key_index, 1);
    assert_eq!(accepted(r(&se_mixed(&old, &old))).key_index, 1);
    assert_eq!(accepted(r(&es_mixed(&new, &new))).key_index, 0);
    assert_eq!(accepted(r(&se_mixed(&new, &new))).key_index, 0);
}

#[test]
fn keystore_reload_replaces_the_clients_keys() {
    let before = keystore_of(&[(ID, &[ROOT])]);
    let after = keystore_of(&[(ID, &[ROOT_OLD])]);
    let mut v = verifier();
    accepted(v.verify_at(&before, &s(&claims_for(ID, "1")), NOW));
    // The connection must not keep using subkeys derived from the replaced key.
    let t = s(&claims_for(ID, "2"));
    assert_eq!(code_of(v.verify_at(&after, &t, NOW)), C::BadSignature);
    let t = token_with_keys(
        Form::Signed,
        ID,
        &claims_for(ID, "3"),
        &keys_for(ROOT_OLD, EKM, ID),
    );
    assert_eq!(accepted(v.verify_at(&after, &t, NOW)).key_index, 0);
}

#[test]
fn cross_connection_tokens_fail_at_step_9() {
    let ks = keystore();
    let c = claims();
    for (form, want) in [
        (Form::Signed, C::BadSignature),
        (Form::EncryptedThenSigned, C::BadSignature),
        (Form::SignedThenEncrypted, C::DecryptFailed),
    ] {
        let made_on_a = token(form, &c);
        // Accepted on connection A ...
        accepted(
            ConnectionVerifier::new(Ekm::from_bytes(EKM), Arc::new(Policy::default()))
                .verify_at(&ks, &made_on_a, NOW),
        );
        // ... refused on connection B.
        let mut on_b =
            ConnectionVerifier::new(Ekm::from_bytes(OTHER_EKM), Arc::new(Policy::default()));
        assert_eq!(
            code_of(on_b.verify_at(&ks, &made_on_a, NOW)),
            want,
            "{form}"
        );
        assert!(on_b.pinned().is_none());
        // And the reverse direction.
        let made_on_b = token_with_keys(form, ID, &c, &keys_for(ROOT, OTHER_EKM, ID));
        accepted(on_b.verify_at(&ks, &made_on_b, NOW));
        assert_eq!(code(&made_on_b), want, "{form}");
    }
}

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
    let p = Policy {
        forms: FormSet::NONE,
        ..Policy::default()
    };
    let r = verifier_with(p).verify_at(&keystore(), &jwe(h, claims().as_bytes()), NOW);
    assert_eq!(code_of(r), C::BadNesting);
}

#[test]
fn order_form_policy_before_kid() {
    let p = Policy {
        forms: [Form::Signed].into_iter().collect(),
        ..Policy::default()
    };
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
