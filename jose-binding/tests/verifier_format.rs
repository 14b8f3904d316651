//! The §7 suite, the token's syntax and size: `malformed` (steps 1, 3, 4,
//! 10, 11: parts, base64url, JSON of headers and claims) and `too_large`
//! (steps 2, 4, 11).
//!
//! Every case asserts the exact `ErrorCode` at a fixed `now` on a fixed EKM;
//! the fixtures and token builders are in `support/`.

use jose_binding::b64;
use jose_binding::token::headers;
use jose_binding::token::seal;
use jose_binding::{ErrorCode, Form};
use serde_json::json;
use ErrorCode as C;

#[allow(dead_code)] // each verifier_*.rs uses part of it
mod support;
use support::*;

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
