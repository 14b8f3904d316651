//! RFC 8725's mistakes, found in a layer: warnings with stable codes that
//! scripts can match, and that change the exit status only with `--strict`.

use serde::Serialize;
use serde_json::{Map, Value};

/// Each mistake this tool points out. The codes are stable: add, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lint {
    AlgNone,
    HmacKeyShort,
    RsaKeySmall,
    Rsa1_5,
    AlgKeyMismatch,
    Crit,
    Zip,
    P2cTooLarge,
    P2cLow,
    EpkInvalid,
    Jku,
    X5u,
    EmbeddedJwk,
    DetachedPayload,
    UnencodedPayload,
    HeaderOverlap,
}

impl Lint {
    pub const ALL: [Lint; 16] = [
        Lint::AlgNone,
        Lint::HmacKeyShort,
        Lint::RsaKeySmall,
        Lint::Rsa1_5,
        Lint::AlgKeyMismatch,
        Lint::Crit,
        Lint::Zip,
        Lint::P2cTooLarge,
        Lint::P2cLow,
        Lint::EpkInvalid,
        Lint::Jku,
        Lint::X5u,
        Lint::EmbeddedJwk,
        Lint::DetachedPayload,
        Lint::UnencodedPayload,
        Lint::HeaderOverlap,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            Lint::AlgNone => "alg-none",
            Lint::HmacKeyShort => "hmac-key-short",
            Lint::RsaKeySmall => "rsa-key-small",
            Lint::Rsa1_5 => "rsa1_5",
            Lint::AlgKeyMismatch => "alg-key-mismatch",
            Lint::Crit => "crit",
            Lint::Zip => "zip",
            Lint::P2cTooLarge => "p2c-too-large",
            Lint::P2cLow => "p2c-low",
            Lint::EpkInvalid => "epk-invalid",
            Lint::Jku => "jku",
            Lint::X5u => "x5u",
            Lint::EmbeddedJwk => "embedded-jwk",
            Lint::DetachedPayload => "detached-payload",
            Lint::UnencodedPayload => "b64-false",
            Lint::HeaderOverlap => "header-overlap",
        }
    }
}

/// One warning about a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
}

impl Warning {
    pub fn new(lint: Lint, message: String) -> Warning {
        Warning {
            code: lint.code(),
            message,
        }
    }
}

/// The warnings a header gives on its own, before any key.
pub fn header_warnings(kind: &str, h: &Map<String, Value>) -> Vec<Warning> {
    let mut w = Vec::new();
    if kind == "JWS" && h.get("alg").and_then(Value::as_str) == Some("none") {
        w.push(Warning::new(
            Lint::AlgNone,
            "alg none: an unsecured JWS, anyone can write it; a verifier must never accept it \
             where a signature is expected (RFC 8725 §3.1)"
                .to_owned(),
        ));
    }
    if let Some(crit) = h.get("crit") {
        w.push(Warning::new(
            Lint::Crit,
            format!(
                "crit {crit}: a recipient that does not understand every extension listed must \
                 refuse the token (RFC 7515 §4.1.11); of the extensions, this tool understands b64"
            ),
        ));
    }
    if let Some(zip) = h.get("zip") {
        w.push(Warning::new(
            Lint::Zip,
            format!(
                "zip {zip}: compressed content leaks its length and so its secrets to an \
                 attacker who can add text (RFC 8725 §3.6); it is not inflated here"
            ),
        ));
    }
    for (member, lint, what) in [
        ("jku", Lint::Jku, "a URL to fetch the key set from"),
        ("x5u", Lint::X5u, "a URL to fetch a certificate from"),
        (
            "jwk",
            Lint::EmbeddedJwk,
            "the key to verify it with, inside the token",
        ),
    ] {
        if h.contains_key(member) {
            w.push(Warning::new(
                lint,
                format!(
                    "{member} is set: {what}. Reported, never followed (this tool stays \
                     offline); a verifier that trusts it lets the token choose its own key \
                     (RFC 8725 §3.10)"
                ),
            ));
        }
    }
    if kind == "JWS" && h.get("b64") == Some(&Value::Bool(false)) {
        w.push(Warning::new(
            Lint::UnencodedPayload,
            "b64 false (RFC 7797): the payload is signed as raw bytes, not base64url; a verifier \
             that ignores b64 reads it wrong"
                .to_owned(),
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_stable() {
        let codes: std::collections::BTreeSet<&str> = Lint::ALL.iter().map(|l| l.code()).collect();
        assert_eq!(codes.len(), Lint::ALL.len());
        assert_eq!(Lint::AlgNone.code(), "alg-none");
        assert_eq!(Lint::AlgKeyMismatch.code(), "alg-key-mismatch");
    }

    #[test]
    fn headers_warn_once_each() {
        let h: Map<String, Value> = serde_json::from_str(
            r#"{"alg":"none","crit":["exp"],"zip":"DEF","jku":"https://x","x5u":"https://y","jwk":{},"b64":false}"#,
        )
        .unwrap();
        let codes: Vec<&str> = header_warnings("JWS", &h).iter().map(|w| w.code).collect();
        assert_eq!(
            codes,
            [
                "alg-none",
                "crit",
                "zip",
                "jku",
                "x5u",
                "embedded-jwk",
                "b64-false"
            ]
        );
        assert!(header_warnings("JWE", &Map::new()).is_empty());
    }
}
