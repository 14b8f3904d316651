//! The §7 suite, who signed and with which key: `unknown_client` (steps 8,
//! 10, 12), `client_mismatch` (step 8), `bad_signature` and `decrypt_failed`
//! (step 9), key rotation, keystore reload and tokens from another connection.
//!
//! Every case asserts the exact `ErrorCode` at a fixed `now` on a fixed EKM;
//! the fixtures and token builders are in `support/`.

use std::sync::Arc;

use jose_binding::b64;
use jose_binding::token::{encrypt_jwe, headers, sign_jws};
use jose_binding::{ClientId, ConnectionVerifier, Ekm, ErrorCode, Form, Keystore, Policy, SubKeys};
use serde_json::json;
use ErrorCode as C;

#[allow(dead_code)] // each verifier_*.rs uses part of it
mod support;
use support::*;

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
// Header member order, rotation, cross-connection
// ---------------------------------------------------------------------------

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
