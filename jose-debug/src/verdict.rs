//! What the server would answer, computed by the server's own code:
//! [`ConnectionVerifier::verify_at`] when the connection (root key and EKM)
//! is known, [`verify_with_subkeys`] when only subkeys are.
//!
//! A missing key is replaced by a random one; a refusal at the step that
//! needed that key (`bad_signature` for the signing key, `decrypt_failed`
//! for the encryption key) then means "undetermined", while any refusal
//! before it is the server's real answer: every check up to step 8 runs
//! before a key is touched.

use std::sync::Arc;

use jose_binding::token::verify_with_subkeys;
use jose_binding::{
    ClientId, ConnectionVerifier, Ekm, ErrorCode, Form, Keystore, Policy, Rejection, SubKeys,
    Verified,
};
use jose_binding::{EncKey, SigKey};
use rand::RngCore;
use serde::Serialize;
use serde_json::{Map, Value};

/// A client id that is never a token's `kid` in practice: used when the
/// token names no valid client, so step 8 refuses it as the server would.
const NO_CLIENT: &str = "jose-debug.no-such-client";

/// The keys the verdict can use.
pub enum VerdictKeys<'a> {
    /// The server's situation: this client's root keys and the connection's EKM.
    Connection {
        ekm: &'a Ekm,
        keystore: &'a Keystore,
    },
    /// Subkeys given directly; either may be missing or not a 32-byte key.
    Subkeys {
        client_id: Option<&'a ClientId>,
        sig: Option<&'a [u8]>,
        enc: Option<&'a [u8]>,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accept,
    Reject,
    Undetermined,
}

/// The verdict, as printed and as `--json` gives it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The §7 code of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The server's sentence for a refusal; for an undetermined verdict, what is missing.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Which root key opened it (0 = current), when root keys were used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key_index: Option<usize>,
    /// The verified claims (accepted tokens only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Map<String, Value>>,
    /// Which library code computed it.
    pub computed_by: &'static str,
    /// Extra explanation (e.g. why a key could not be used).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn accepted(&self) -> bool {
        matches!(self.outcome, Outcome::Accept)
    }

    /// A verdict of `outcome` with nothing but its detail filled in.
    fn bare(outcome: Outcome, detail: String, computed_by: &'static str) -> Verdict {
        Verdict {
            outcome,
            code: None,
            detail,
            form: None,
            client_id: None,
            root_key_index: None,
            claims: None,
            computed_by,
            notes: Vec::new(),
        }
    }

    fn accept(v: Verified, computed_by: &'static str, with_index: bool) -> Verdict {
        Verdict {
            form: Some(v.form.as_str()),
            client_id: Some(v.client_id.as_str().to_owned()),
            root_key_index: with_index.then_some(v.key_index),
            claims: Some(v.claims.to_map()),
            ..Verdict::bare(
                Outcome::Accept,
                "every check of §7 passes".to_owned(),
                computed_by,
            )
        }
    }

    fn reject(r: Rejection, computed_by: &'static str) -> Verdict {
        Verdict {
            code: Some(r.code.as_str()),
            ..Verdict::bare(Outcome::Reject, r.detail.to_owned(), computed_by)
        }
    }

    fn undetermined(detail: String, computed_by: &'static str) -> Verdict {
        Verdict::bare(Outcome::Undetermined, detail, computed_by)
    }

    /// Input that never reaches the verifier: the HTTP layer refuses a
    /// token with bytes outside visible ASCII.
    pub fn not_text() -> Verdict {
        Verdict::reject(
            Rejection::new(ErrorCode::Malformed, "bearer token is not ASCII"),
            "jose-debug: the server's Authorization parsing refuses a token that is not ASCII text",
        )
    }
}

const BY_CONNECTION: &str = "jose_binding::ConnectionVerifier::verify_at";
const BY_SUBKEYS: &str = "jose_binding::token::verify_with_subkeys";

fn random_32() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

/// Runs the server's checks on `token` at `now`.
pub fn verdict(token: &str, keys: VerdictKeys<'_>, policy: &Policy, now: f64) -> Verdict {
    match keys {
        VerdictKeys::Connection { ekm, keystore } => {
            let mut conn = ConnectionVerifier::new(ekm.clone(), Arc::new(policy.clone()));
            match conn.verify_at(keystore, token, now) {
                Ok(v) => Verdict::accept(v, BY_CONNECTION, true),
                Err(r) => Verdict::reject(r, BY_CONNECTION),
            }
        }
        VerdictKeys::Subkeys {
            client_id,
            sig,
            enc,
        } => by_subkeys(token, client_id, sig, enc, policy, now),
    }
}

fn by_subkeys(
    token: &str,
    client_id: Option<&ClientId>,
    sig: Option<&[u8]>,
    enc: Option<&[u8]>,
    policy: &Policy,
    now: f64,
) -> Verdict {
    let mut notes = Vec::new();
    let mut usable = |name: &str, key: Option<&[u8]>| -> Option<[u8; 32]> {
        let key = key?;
        match crate::keys::to_32(key) {
            Some(k) => Some(k),
            None => {
                notes.push(format!(
                    "{name} is {} bytes; the protocol's subkeys are 32, so it cannot be this \
                     connection's {name} and is not used for the verdict",
                    key.len()
                ));
                None
            }
        }
    };
    let sig32 = usable("sig_key", sig);
    let enc32 = usable("enc_key", enc);
    let subkeys = SubKeys {
        sig: SigKey::from_bytes(sig32.unwrap_or_else(random_32)),
        enc: EncKey::from_bytes(enc32.unwrap_or_else(random_32)),
    };
    let fallback;
    let id = match client_id {
        Some(id) => id,
        None => {
            fallback = token_kid(token)
                .and_then(|k| ClientId::new(&k).ok())
                .or_else(|| ClientId::new(NO_CLIENT).ok());
            match &fallback {
                Some(id) => id,
                None => return Verdict::undetermined("no client id".to_owned(), BY_SUBKEYS),
            }
        }
    };
    let mut v = match verify_with_subkeys(token, id, &subkeys, policy, now) {
        Ok(v) => Verdict::accept(v, BY_SUBKEYS, false),
        Err(r) if r.code == ErrorCode::BadSignature && sig32.is_none() => Verdict::undetermined(
            "every check before the signature passes; the signature needs the connection's \
             sig_key (--sig-key, or --root-key with --ekm/--keylog)"
                .to_owned(),
            BY_SUBKEYS,
        ),
        Err(r) if r.code == ErrorCode::DecryptFailed && enc32.is_none() => Verdict::undetermined(
            "every check before decryption passes; decryption needs the connection's \
             enc_key (--enc-key, or --root-key with --ekm/--keylog)"
                .to_owned(),
            BY_SUBKEYS,
        ),
        Err(r) => Verdict::reject(r, BY_SUBKEYS),
    };
    v.notes = notes;
    v
}

/// The outer header's `kid`, read leniently (only to pick a client id;
/// the verifier reads it again strictly).
fn token_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = jose_binding::b64::decode(header)?;
    let map = jose_binding::json::parse_object(&bytes).ok()?;
    map.get("kid")?.as_str().map(str::to_owned)
}

/// Parses a `--forms` list entry.
pub fn parse_form(s: &str) -> Result<Form, String> {
    s.parse::<Form>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jose_binding::token::seal;
    use jose_binding::token::sign_jws;

    const NOW: f64 = 1_767_225_600.0;

    use jose_binding::SoftwareRootKey;

    fn setup() -> (ClientId, SoftwareRootKey, Ekm, SubKeys) {
        let id = ClientId::new("client1").unwrap();
        let root = SoftwareRootKey::new(&[7u8; 32]).unwrap();
        let ekm = Ekm::from_bytes([8u8; 32]);
        let keys = SubKeys::derive(&root, &ekm, &id).unwrap();
        (id, root, ekm, keys)
    }

    fn claims(exp: i64) -> Vec<u8> {
        format!(r#"{{"iss":"client1","aud":"localhost","iat":1767225600,"exp":{exp},"jti":"abc"}}"#)
            .into_bytes()
    }

    #[test]
    fn both_paths_agree_with_the_server() {
        let (id, root, ekm, keys) = setup();
        let policy = Policy::default();
        let other = SubKeys::derive(&root, &Ekm::from_bytes([9u8; 32]), &id).unwrap();
        let mut keystore = Keystore::default();
        keystore.set(id.clone(), vec![root.clone()]);
        for form in Form::ALL {
            for (exp, want) in [(1_767_225_660, None), (1_767_225_000, Some("expired"))] {
                for (k, want_k) in [(&keys, want), (&other, Some("x"))] {
                    let t = seal(form, &id, &claims(exp), k, [1; 12]);
                    let a = verdict(
                        &t,
                        VerdictKeys::Connection {
                            ekm: &ekm,
                            keystore: &keystore,
                        },
                        &policy,
                        NOW,
                    );
                    let b = verdict(
                        &t,
                        VerdictKeys::Subkeys {
                            client_id: None,
                            sig: Some(keys.sig.expose()),
                            enc: Some(keys.enc.expose()),
                        },
                        &policy,
                        NOW,
                    );
                    assert_eq!(a.code, b.code, "{form} {exp}");
                    assert_eq!(a.accepted(), want_k.is_none());
                    if want_k == Some("expired") {
                        assert_eq!(a.code, Some("expired"));
                    }
                    if a.accepted() {
                        assert_eq!(a.form, Some(form.as_str()));
                        assert_eq!(a.root_key_index, Some(0));
                        assert_eq!(b.client_id.as_deref(), Some("client1"));
                    }
                }
            }
        }
    }

    #[test]
    fn missing_keys_make_it_undetermined_only_where_they_are_needed() {
        let (id, _, _, keys) = setup();
        let policy = Policy::default();
        let good = claims(1_767_225_660);
        let none = |t: &str| {
            verdict(
                t,
                VerdictKeys::Subkeys {
                    client_id: None,
                    sig: None,
                    enc: None,
                },
                &policy,
                NOW,
            )
        };
        // Well-formed: the answer needs a key.
        for form in Form::ALL {
            let v = none(&seal(form, &id, &good, &keys, [1; 12]));
            assert!(matches!(v.outcome, Outcome::Undetermined), "{form}");
        }
        // Refused before any key: the real answer.
        let t = sign_jws(
            r#"{"alg":"HS512","typ":"JWT","kid":"client1"}"#,
            &good,
            &keys.sig,
        );
        assert_eq!(none(&t).code, Some("unsupported_alg"));
        let t = sign_jws(r#"{"alg":"HS256","typ":"JWT"}"#, &good, &keys.sig);
        assert_eq!(none(&t).code, Some("unknown_client"));
        assert_eq!(none("a.b").code, Some("malformed"));
        // ES with only the sig key: the outer signature verifies, the inner JWE needs enc.
        let es = seal(Form::EncryptedThenSigned, &id, &good, &keys, [1; 12]);
        let v = verdict(
            &es,
            VerdictKeys::Subkeys {
                client_id: Some(&id),
                sig: Some(keys.sig.expose()),
                enc: None,
            },
            &policy,
            NOW,
        );
        assert!(matches!(v.outcome, Outcome::Undetermined));
        assert!(v.detail.contains("enc_key"));
        // A 64-byte key is not a protocol key: noted, not used.
        let v = verdict(
            &es,
            VerdictKeys::Subkeys {
                client_id: Some(&id),
                sig: Some(&[1u8; 64]),
                enc: Some(keys.enc.expose()),
            },
            &policy,
            NOW,
        );
        assert!(matches!(v.outcome, Outcome::Undetermined));
        assert!(v.notes[0].contains("64 bytes"));
    }

    #[test]
    fn wrong_client_id_is_unknown_client() {
        let (id, _, _, keys) = setup();
        let t = seal(Form::Signed, &id, &claims(1_767_225_660), &keys, [1; 12]);
        let other = ClientId::new("client2").unwrap();
        let v = verdict(
            &t,
            VerdictKeys::Subkeys {
                client_id: Some(&other),
                sig: Some(keys.sig.expose()),
                enc: Some(keys.enc.expose()),
            },
            &Policy::default(),
            NOW,
        );
        assert_eq!(v.code, Some("unknown_client"));
    }
}
