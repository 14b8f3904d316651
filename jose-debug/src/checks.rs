//! The result a decode exits with. Each layer's signature or decryption is
//! one check; then either plain JOSE's rules (`--generic`: the compact
//! format, `crit`, and the registered claims of a JSON claims set) or the
//! server's verdict. The worst outcome wins, so "the signature is wrong"
//! and "the signature is right, the token is expired" exit differently.

use jose_binding::ErrorCode;
use serde_json::Value;

use crate::inspect::{Claims, Content, Crypto, Decoded, LayerView};
use crate::report::{Checks, ClaimsCheck, CryptoCheck, LayerCheck, Mode, Status};
use crate::verdict::{Outcome, Verdict};

/// What plain JOSE checks claims against.
pub struct ClaimRules<'a> {
    pub now: f64,
    /// Leeway on `exp` and `nbf`, in seconds.
    pub skew_secs: f64,
    /// Checked only when given: a token's `aud` means nothing without it.
    pub audience: Option<&'a str>,
    /// Warnings reject the token (exit 3).
    pub strict: bool,
}

/// Plain JOSE (RFC 7515/7516/7519): every layer verifies or decrypts, is
/// well-formed, and a JSON claims set's exp, nbf (and aud, when asked) hold.
pub fn generic(d: &Decoded, rules: &ClaimRules<'_>) -> Checks {
    let last = d.layers.len();
    let mut layers: Vec<LayerCheck> = d
        .layers
        .iter()
        .map(|l| {
            let mut check = crypto_check(l);
            check.format = format_problems(l);
            strict_warnings(&mut check, rules.strict);
            if let Some(zip) = l.header.json.as_ref().and_then(|h| h.get("zip")) {
                check.unchecked.push(format!(
                    "zip {zip}: the content is compressed and is not inflated here, so it is not checked"
                ));
            }
            if l.depth == last {
                if let Content::Claims(c) = &l.content {
                    check.claims = Some(claims_check(c, rules));
                }
            }
            check.result = layer_result(&check);
            check
        })
        .collect();
    if d.truncated {
        if let Some(l) = layers.last_mut() {
            l.unchecked.push(format!(
                "nested deeper than {} layers: the inner ones are not opened",
                crate::inspect::MAX_LAYERS
            ));
            l.result = layer_result(l);
        }
    }
    let mut reasons = Vec::new();
    for l in &layers {
        layer_reasons(l, &mut reasons);
    }
    let result = layers
        .iter()
        .map(|l| l.result)
        .max()
        .unwrap_or(Status::Rejected);
    finish(Mode::Generic, layers, result, reasons)
}

/// This protocol: the server's verdict decides, and a refusal at the
/// signature or decryption step is a cryptographic failure. The layers'
/// own checks are shown, but a server that refuses a token before its
/// crypto (an `alg` it does not take) has not judged any key.
pub fn protocol(d: &Decoded, verdict: &Verdict, strict: bool) -> Checks {
    let layers: Vec<LayerCheck> = d
        .layers
        .iter()
        .map(|l| {
            let mut check = crypto_check(l);
            strict_warnings(&mut check, strict);
            check.result = layer_result(&check);
            check
        })
        .collect();
    let crypto_codes = [
        ErrorCode::BadSignature.as_str(),
        ErrorCode::DecryptFailed.as_str(),
    ];
    let (result, reason) = match verdict.outcome {
        Outcome::Accept => (Status::Valid, None),
        Outcome::Reject => (
            if verdict.code.is_some_and(|c| crypto_codes.contains(&c)) {
                Status::CryptoFailed
            } else {
                Status::Rejected
            },
            Some(format!(
                "the server would refuse it with `{}`: {}",
                verdict.code.unwrap_or("?"),
                verdict.detail
            )),
        ),
        Outcome::Undetermined => (
            Status::Incomplete,
            Some(format!("undetermined: {}", verdict.detail)),
        ),
    };
    let mut reasons: Vec<String> = reason.into_iter().collect();
    let mut result = result;
    for l in layers.iter().filter(|l| !l.format.is_empty()) {
        result = result.max(Status::Rejected);
        layer_reasons(l, &mut reasons);
    }
    finish(Mode::Protocol, layers, result, reasons)
}

/// Input that is not text has no layers: it is no JOSE object.
pub fn not_text(mode: Mode) -> Checks {
    finish(
        mode,
        Vec::new(),
        Status::Rejected,
        vec!["the input is not text, so not a compact JWS or JWE".to_owned()],
    )
}

fn finish(mode: Mode, layers: Vec<LayerCheck>, result: Status, reasons: Vec<String>) -> Checks {
    Checks {
        mode,
        result,
        exit_status: result.exit_code(),
        layers,
        reasons: if result == Status::Valid {
            Vec::new()
        } else {
            reasons
        },
    }
}

fn crypto_check(l: &LayerView) -> LayerCheck {
    let crypto = match l.crypto {
        Crypto::Verified { .. } => CryptoCheck::Verified,
        Crypto::Failed { .. } => CryptoCheck::Failed,
        Crypto::Unsecured => CryptoCheck::Unsecured,
        Crypto::Refused { .. } => CryptoCheck::Refused,
        Crypto::NoKey { .. } | Crypto::Unsupported { .. } => CryptoCheck::NotChecked,
    };
    LayerCheck {
        depth: l.depth,
        kind: l.kind,
        result: Status::Valid,
        crypto,
        crypto_detail: l.crypto.describe(l.kind),
        format: Vec::new(),
        unchecked: Vec::new(),
        claims: None,
        warnings: l.warnings.clone(),
    }
}

/// With --strict, each warning is a format problem: the token is rejected.
fn strict_warnings(check: &mut LayerCheck, strict: bool) {
    if strict {
        for w in &check.warnings {
            check
                .format
                .push(format!("--strict: {} ({})", w.message, w.code));
        }
    }
}

fn layer_result(c: &LayerCheck) -> Status {
    let crypto = match c.crypto {
        CryptoCheck::Verified => Status::Valid,
        CryptoCheck::NotChecked => Status::Incomplete,
        CryptoCheck::Refused => Status::Rejected,
        CryptoCheck::Failed | CryptoCheck::Unsecured => Status::CryptoFailed,
    };
    let format = if c.format.is_empty() {
        Status::Valid
    } else {
        Status::Rejected
    };
    let claims = match &c.claims {
        Some(cl) if !cl.failures.is_empty() => Status::Rejected,
        _ => Status::Valid,
    };
    let unchecked = if c.unchecked.is_empty() {
        Status::Valid
    } else {
        Status::Incomplete
    };
    crypto.max(format).max(claims).max(unchecked)
}

fn layer_reasons(l: &LayerCheck, out: &mut Vec<String>) {
    let at = format!("layer {} ({})", l.depth, l.kind);
    if l.crypto != CryptoCheck::Verified {
        out.push(format!("{at}: {}", l.crypto_detail));
    }
    for f in l.format.iter().chain(&l.unchecked) {
        out.push(format!("{at}: {f}"));
    }
    if let Some(c) = &l.claims {
        for f in &c.failures {
            out.push(format!("{at} claims: {f}"));
        }
    }
}

/// What RFC 7515/7516/7518 require of a compact layer, beyond its crypto.
fn format_problems(l: &LayerView) -> Vec<String> {
    let mut out = Vec::new();
    if l.kind == "unknown" {
        out.push(match l.serialization {
            "compact" => format!(
                "{} dot-separated parts: a compact JWS has 3, a JWE 5",
                l.parts.len()
            ),
            _ => "not a JWS or JWE JSON serialization".to_owned(),
        });
        return out;
    }
    // With b64 false (RFC 7797) the payload is the raw content.
    for p in l
        .parts
        .iter()
        .filter(|p| p.bytes.is_none() && !(l.unencoded_payload && p.name == "payload"))
    {
        out.push(format!("the {} part is not base64url", p.name));
    }
    let Some(header) = &l.header.json else {
        out.push("the protected header is not a JSON object".to_owned());
        return out;
    };
    // A JSON serialization may put alg and enc in an unprotected header:
    // each signature or recipient then says what its JOSE header holds.
    let member = |name: &str| header.get(name).and_then(Value::as_str);
    let everywhere = |name: &str| {
        member(name).is_some()
            || (!l.entries.is_empty()
                && l.entries.iter().all(|e| match name {
                    "alg" => e.alg.is_some(),
                    _ => e.enc.is_some(),
                }))
    };
    if !everywhere("alg") {
        out.push("the header has no alg".to_owned());
    }
    if l.kind == "JWE" && !everywhere("enc") {
        out.push("the header has no enc".to_owned());
    }
    // crit, b64 and zip, for every signature or recipient.
    out.extend(l.problems.iter().cloned());
    if l.kind == "JWE" && member("alg") == Some("dir") {
        if let Some(n) = l.parts.get(1).and_then(|p| p.bytes).filter(|n| *n > 0) {
            out.push(format!(
                "alg dir: the encrypted key part must be empty (RFC 7518 §4.5); it has {n} bytes"
            ));
        }
    }
    out
}

/// RFC 7519 §4.1: exp and nbf with the leeway, aud against --audience;
/// a time claim that is not a number fails.
fn claims_check(c: &Claims, rules: &ClaimRules<'_>) -> ClaimsCheck {
    let mut checked = Vec::new();
    let mut failures: Vec<String> = c.notes.clone();
    for t in &c.times {
        match t.claim {
            "exp" => {
                checked.push("exp");
                if t.value <= rules.now - rules.skew_secs {
                    failures.push(format!("exp: {}", t.relative));
                }
            }
            "nbf" => {
                checked.push("nbf");
                if t.value > rules.now + rules.skew_secs {
                    failures.push(format!("nbf: {}", t.relative));
                }
            }
            _ => {}
        }
    }
    if let Some(want) = rules.audience {
        checked.push("aud");
        let names = |v: &Value| v.as_str() == Some(want);
        match c.json.get("aud") {
            None => failures.push(format!("aud: missing; --audience expects {want:?}")),
            Some(Value::String(s)) if s == want => {}
            Some(Value::Array(a)) if a.iter().all(Value::is_string) && a.iter().any(names) => {}
            Some(v @ (Value::String(_) | Value::Array(_))) => {
                failures.push(format!("aud: {v} does not name {want:?}"))
            }
            Some(v) => failures.push(format!("aud: {v} is neither a string nor strings")),
        }
    }
    ClaimsCheck { checked, failures }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{self, DecodeKeys};
    use jose_binding::token::{encrypt_jwe, headers, sign_jws};
    use jose_binding::{EncKey, SigKey};
    use zeroize::Zeroizing;

    const NOW: f64 = 1_767_225_600.0;

    fn rules(audience: Option<&str>) -> ClaimRules<'_> {
        ClaimRules {
            now: NOW,
            skew_secs: 30.0,
            audience,
            strict: false,
        }
    }

    fn keys(sig: Option<[u8; 32]>, enc: Option<[u8; 32]>) -> DecodeKeys {
        DecodeKeys {
            sig: sig.map(|k| Zeroizing::new(k.to_vec())),
            enc: enc.map(|k| Zeroizing::new(k.to_vec())),
            ..DecodeKeys::default()
        }
    }

    fn signed(header: &str, payload: &[u8]) -> String {
        sign_jws(header, payload, &SigKey::from_bytes([3; 32]))
    }

    fn check(token: &str, k: &DecodeKeys, aud: Option<&str>) -> Checks {
        generic(&inspect::decode(token, k, NOW), &rules(aud))
    }

    #[test]
    fn any_payload_is_valid_when_the_signature_verifies() {
        let k = keys(Some([3; 32]), None);
        for payload in [&b"plain text"[..], b"[1,2]", b"\xff\x00binary", b""] {
            let c = check(&signed(r#"{"alg":"HS256"}"#, payload), &k, None);
            assert_eq!(c.result, Status::Valid, "{c:?}");
            assert!(c.layers[0].claims.is_none());
        }
        let c = check(
            &signed(r#"{"alg":"HS256"}"#, b"text"),
            &keys(Some([4; 32]), None),
            None,
        );
        assert_eq!((c.result, c.exit_status), (Status::CryptoFailed, 1));
        let c = check(
            &signed(r#"{"alg":"HS256"}"#, b"text"),
            &DecodeKeys::default(),
            None,
        );
        assert_eq!((c.result, c.exit_status), (Status::Incomplete, 4));
    }

    #[test]
    fn claims_are_checked_only_in_a_claims_set_and_after_the_crypto() {
        let k = keys(Some([3; 32]), None);
        let t = |claims: &str| signed(r#"{"alg":"HS256"}"#, claims.as_bytes());
        let c = check(&t(r#"{"exp":1767225660,"nbf":1767225600}"#), &k, None);
        assert_eq!(c.result, Status::Valid);
        assert_eq!(c.layers[0].claims.as_ref().unwrap().checked, ["nbf", "exp"]);
        // Within the 30 s leeway: still valid.
        let c = check(&t(r#"{"exp":1767225580,"nbf":1767225620}"#), &k, None);
        assert_eq!(c.result, Status::Valid, "{:?}", c.reasons);
        for (claims, why) in [
            (r#"{"exp":1767225500}"#, "exp: expired"),
            (r#"{"nbf":1767225700}"#, "nbf:"),
            (r#"{"exp":"soon"}"#, "exp is not a number"),
        ] {
            let c = check(&t(claims), &k, None);
            assert_eq!((c.result, c.exit_status), (Status::Rejected, 3), "{claims}");
            assert!(c.reasons[0].contains(why), "{:?}", c.reasons);
        }
        // An expired token under the wrong key: the crypto failure is what it exits with.
        let c = check(&t(r#"{"exp":1}"#), &keys(Some([4; 32]), None), None);
        assert_eq!(c.result, Status::CryptoFailed);
        // aud only when asked for.
        let tok = t(r#"{"aud":["a","b"]}"#);
        assert_eq!(check(&tok, &k, None).result, Status::Valid);
        assert_eq!(check(&tok, &k, Some("b")).result, Status::Valid);
        let c = check(&tok, &k, Some("c"));
        assert!(
            c.reasons[0].contains("does not name \"c\""),
            "{:?}",
            c.reasons
        );
        assert_eq!(check(&t("{}"), &k, Some("a")).result, Status::Rejected);
        assert_eq!(
            check(&t(r#"{"aud":7}"#), &k, Some("a")).result,
            Status::Rejected
        );
    }

    #[test]
    fn format_and_what_cannot_be_checked() {
        let k = keys(Some([3; 32]), Some([5; 32]));
        // b64 (RFC 7797) is understood: warned about, not refused.
        let crit = signed(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, b"x");
        let c = check(&crit, &k, None);
        assert_eq!(c.result, Status::Valid, "{:?}", c.reasons);
        let codes: Vec<&str> = c.layers[0].warnings.iter().map(|w| w.code).collect();
        assert_eq!(codes, ["crit", "b64-false"]);
        let crit = signed(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, b"x");
        let c = check(&crit, &k, None);
        assert_eq!(c.result, Status::Rejected);
        assert!(c.layers[0].format[0].starts_with("crit"));
        assert_eq!(check("a.b", &k, None).result, Status::Rejected);
        let c = check("e30.e30.AAAA", &k, None);
        assert_eq!(c.result, Status::Rejected);
        assert_eq!(c.layers[0].format, ["the header has no alg"]);
        // A signature that is not base64url fails its check and the format's.
        let c = check("eyJhbGciOiJIUzI1NiJ9.e30.!!", &k, None);
        assert_eq!(c.result, Status::CryptoFailed);
        assert_eq!(c.layers[0].format, ["the signature part is not base64url"]);
        // alg none verifies nothing.
        assert_eq!(
            check("eyJhbGciOiJub25lIn0.e30.", &k, None).result,
            Status::CryptoFailed
        );
        // An algorithm this tool does not check.
        let rs = "eyJhbGciOiJSUzI1NiJ9.e30.AAAA";
        assert_eq!(check(rs, &k, None).result, Status::Incomplete);
        // A JWE opened, then a nested JWS whose key is missing.
        let inner = signed(r#"{"alg":"HS256"}"#, b"{}");
        let jwe = encrypt_jwe(
            &headers::jwe_nested("c"),
            inner.as_bytes(),
            &EncKey::from_bytes([5; 32]),
            [1; 12],
        );
        let c = check(&jwe, &keys(None, Some([5; 32])), None);
        assert_eq!(c.layers[0].result, Status::Valid);
        assert_eq!(c.layers[1].result, Status::Incomplete);
        assert_eq!(c.result, Status::Incomplete);
        assert_eq!(check(&jwe, &k, None).result, Status::Valid);
    }

    #[test]
    fn protocol_mode_maps_the_verdict() {
        let d = inspect::decode(
            &signed(&headers::jws("c"), b"{}"),
            &DecodeKeys::default(),
            NOW,
        );
        let v = |outcome, code| Verdict {
            outcome,
            code,
            ..Verdict::not_text()
        };
        for (verdict, want) in [
            (v(Outcome::Accept, None), Status::Valid),
            (
                v(Outcome::Reject, Some("bad_signature")),
                Status::CryptoFailed,
            ),
            (
                v(Outcome::Reject, Some("decrypt_failed")),
                Status::CryptoFailed,
            ),
            (v(Outcome::Reject, Some("expired")), Status::Rejected),
            (v(Outcome::Undetermined, None), Status::Incomplete),
        ] {
            let c = protocol(&d, &verdict, false);
            assert_eq!(c.result, want, "{verdict:?}");
            assert_eq!(c.mode, Mode::Protocol);
        }
        let c = not_text(Mode::Generic);
        assert_eq!((c.result, c.exit_status), (Status::Rejected, 3));
    }
}
