//! The client side: claims and tokens of each form (PROTOCOL.md §4–5).

use rand::RngCore;

use crate::protocol::b64;
use crate::protocol::client_id::ClientId;
use crate::protocol::schedule::SubKeys;
use crate::protocol::token::{encrypt_jwe_encoded, headers, sign_jws_encoded, Form};

/// Default token lifetime (§4).
pub const DEFAULT_TTL_SECS: u64 = 60;

/// Claims the issuer sets itself; an application claim may not use these names.
pub const REGISTERED: [&str; 5] = ["iss", "aud", "iat", "exp", "jti"];

/// Why application claims could not make a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The application's claims name one of [`REGISTERED`] at the top level.
    #[error("claim {0:?} is set by the issuer and may not be given by the application")]
    Reserved(String),
    /// The application's claims serialize to something other than an object
    /// or `null`.
    #[error("claims must be a JSON object")]
    NotObject,
    /// serde_json could not serialize the application's claims (a map with
    /// non-string keys, a failing `Serialize` impl); the text is serde_json's.
    #[error("claims cannot be written as JSON: {0}")]
    Serialize(String),
}

/// Issues tokens for one client on one connection.
#[derive(Debug)]
pub struct Issuer {
    client_id: ClientId,
    audience: String,
    keys: SubKeys,
    ttl_secs: u64,
    headers: EncodedHeaders,
}

impl Issuer {
    /// An issuer for `client_id` on the connection `keys` were derived for,
    /// with `aud` set to `audience` and the default lifetime.
    pub fn new(client_id: ClientId, audience: impl Into<String>, keys: SubKeys) -> Self {
        Issuer {
            audience: audience.into(),
            headers: EncodedHeaders::for_kid(client_id.as_str()),
            client_id,
            keys,
            ttl_secs: DEFAULT_TTL_SECS,
        }
    }

    /// Sets `exp - iat` of its tokens (default [`DEFAULT_TTL_SECS`]); a
    /// server refuses more than its maximum (300 s by default).
    pub fn with_ttl(mut self, ttl_secs: u64) -> Self {
        self.ttl_secs = ttl_secs;
        self
    }

    /// The client tokens are issued for (`iss` and `kid`).
    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// This connection's subkeys, for crafting tokens by hand (tests, debugging).
    pub fn subkeys(&self) -> &SubKeys {
        &self.keys
    }

    /// A fresh token (new `jti`, `iat`, `exp`, IV) of `form` over
    /// `app_claims`: anything that serializes to a JSON object (a struct, a
    /// map, a `serde_json::Value`), or to `null` for no application claims.
    pub fn issue<C>(&self, form: Form, app_claims: &C) -> Result<String, IssueError>
    where
        C: serde::Serialize + ?Sized,
    {
        let now = crate::protocol::verifier::unix_now().floor() as i64;
        let mut rng = rand::thread_rng();
        let mut jti = [0u8; 16];
        rng.fill_bytes(&mut jti);
        let mut iv = [0u8; 12];
        rng.fill_bytes(&mut iv);
        let claims = self.claims(app_claims, now, &b64::encode(&jti))?;
        Ok(self.headers.seal(form, &claims, &self.keys, iv))
    }

    /// The claims set: registered claims first, then the application's
    /// members as serde_json writes them, so the bytes are those serde_json
    /// gives for the whole map, without building one per token.
    pub fn claims<C>(&self, app_claims: &C, iat: i64, jti: &str) -> Result<Vec<u8>, IssueError>
    where
        C: serde::Serialize + ?Sized,
    {
        let mut out = Vec::with_capacity(192 + self.audience.len());
        member(&mut out, "iss", self.client_id.as_str());
        member(&mut out, "aud", &self.audience);
        member(&mut out, "iat", iat);
        member(&mut out, "exp", iat + self.ttl_secs as i64);
        member(&mut out, "jti", jti);
        // The application's object is written in place after them, checked,
        // and its opening brace becomes the comma that joins the two; its
        // closing brace closes the whole.
        let start = out.len();
        serde_json::to_writer(&mut out, app_claims)
            .map_err(|e| IssueError::Serialize(e.to_string()))?;
        if app_members(&out[start..])?.is_empty() {
            out.truncate(start);
            out.push(b'}');
        } else {
            out[start] = b',';
        }
        Ok(out)
    }
}

/// Appends `"name":value` to a JSON object being written, opening it first.
fn member(out: &mut Vec<u8>, name: &str, value: impl serde::Serialize) {
    out.push(if out.is_empty() { b'{' } else { b',' });
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, name);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// The members of an object serde_json wrote (compact), without its
/// braces; `null` has none. Refuses anything but an object, and an object
/// naming a claim the issuer sets. serde_json never escapes a letter, so a
/// registered name appears as its plain bytes whenever it is a key.
fn app_members(json: &[u8]) -> Result<&[u8], IssueError> {
    if json == b"null" {
        return Ok(b"");
    }
    let inner = json
        .strip_prefix(b"{")
        .and_then(|j| j.strip_suffix(b"}"))
        .ok_or(IssueError::NotObject)?;
    let (mut depth, mut in_string, mut escaped, mut key_next) = (0usize, false, false, true);
    let mut key_start = 0;
    for (i, &b) in inner.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    if depth == 0 && key_next {
                        key_next = false;
                        let key = &inner[key_start..i];
                        if let Some(name) = REGISTERED.iter().find(|n| n.as_bytes() == key) {
                            return Err(IssueError::Reserved((*name).to_owned()));
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                key_start = i + 1;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => key_next = true,
            _ => {}
        }
    }
    Ok(inner)
}

/// Wraps a serialized claims set in `form` with the IV given: for
/// reproducible vectors and tests only (feature `test-vectors`);
/// [`Issuer::issue`] draws the IV at random, as it must never repeat.
#[cfg(any(test, feature = "test-vectors"))]
pub fn seal(form: Form, kid: &ClientId, claims: &[u8], keys: &SubKeys, iv: [u8; 12]) -> String {
    EncodedHeaders::for_kid(kid.as_str()).seal(form, claims, keys, iv)
}

/// The four protected headers of §5 for one `kid`, base64url-encoded.
#[derive(Debug, Clone)]
struct EncodedHeaders {
    jws: String,
    jws_nested: String,
    jwe: String,
    jwe_nested: String,
}

impl EncodedHeaders {
    fn for_kid(kid: &str) -> Self {
        let enc = |h: String| b64::encode(h.as_bytes());
        EncodedHeaders {
            jws: enc(headers::jws(kid)),
            jws_nested: enc(headers::jws_nested(kid)),
            jwe: enc(headers::jwe(kid)),
            jwe_nested: enc(headers::jwe_nested(kid)),
        }
    }

    fn seal(&self, form: Form, claims: &[u8], keys: &SubKeys, iv: [u8; 12]) -> String {
        match form {
            Form::Signed => sign_jws_encoded(&self.jws, claims, &keys.sig),
            Form::EncryptedThenSigned => {
                let inner = encrypt_jwe_encoded(&self.jwe, claims, &keys.enc, iv);
                sign_jws_encoded(&self.jws_nested, inner.as_bytes(), &keys.sig)
            }
            Form::SignedThenEncrypted => {
                let inner = sign_jws_encoded(&self.jws, claims, &keys.sig);
                encrypt_jwe_encoded(&self.jwe_nested, inner.as_bytes(), &keys.enc, iv)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::schedule::{EncKey, SigKey};
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn keys() -> SubKeys {
        SubKeys {
            sig: SigKey::from_bytes([1; 32]),
            enc: EncKey::from_bytes([2; 32]),
        }
    }

    /// Claims from any Serialize type: a struct, null; a non-object or a
    /// registered name is refused.
    #[test]
    fn claims_from_any_serializable_object() {
        #[derive(serde::Serialize)]
        struct App<'a> {
            role: &'a str,
        }
        let issuer = Issuer::new(ClientId::new("c").unwrap(), "aud", keys());
        let got = issuer.claims(&App { role: "ops" }, 10, "j").unwrap();
        assert_eq!(
            got,
            br#"{"iss":"c","aud":"aud","iat":10,"exp":70,"jti":"j","role":"ops"}"#
        );
        let bare = br#"{"iss":"c","aud":"aud","iat":10,"exp":70,"jti":"j"}"#;
        assert_eq!(issuer.claims(&(), 10, "j").unwrap(), bare);
        assert_eq!(issuer.claims(&Map::new(), 10, "j").unwrap(), bare);
        assert_eq!(
            issuer.claims(&serde_json::json!({"exp": 1}), 10, "j"),
            Err(IssueError::Reserved("exp".into()))
        );
        assert_eq!(issuer.claims(&[1, 2], 10, "j"), Err(IssueError::NotObject));
        assert_eq!(issuer.claims("text", 10, "j"), Err(IssueError::NotObject));
    }

    proptest! {
        /// Any object's members pass as serde_json wrote them, and one
        /// naming a registered claim at its top level is refused, whatever
        /// the keys and values hold (quotes, escapes, commas, braces,
        /// registered names nested deeper).
        #[test]
        fn app_members_refuses_exactly_the_registered_keys(
            entries in proptest::collection::vec(
                (
                    "iss|aud|iat|exp|jti|role|\\PC{0,6}|[\"\\\\,{}:\\[\\]]{1,4}",
                    "\\PC{0,12}|[\"\\\\,{}:\\[\\]]{1,6}",
                    any::<bool>(),
                ),
                0..6,
            ),
        ) {
            let mut m = Map::new();
            for (k, v, nest) in entries {
                let v = if nest {
                    serde_json::json!({"iss": v.clone(), "a": [v]})
                } else {
                    Value::String(v)
                };
                m.insert(k, v);
            }
            let bytes = serde_json::to_vec(&m).unwrap();
            let reserved = REGISTERED.iter().find(|n| m.contains_key(**n));
            match (app_members(&bytes), reserved) {
                // Several may be present: the first met is the one named.
                (Err(IssueError::Reserved(n)), Some(_)) => {
                    prop_assert!(m.contains_key(&n) && REGISTERED.contains(&n.as_str()))
                }
                (Ok(inner), None) => prop_assert_eq!(inner, &bytes[1..bytes.len() - 1]),
                (got, want) => prop_assert!(false, "{:?} for reserved {:?}", got, want),
            }
        }

        /// The claims set is exactly what serde_json writes for the same
        /// members in the same order, whatever the audience needs escaped.
        #[test]
        fn claims_are_serde_json_bytes(
            aud in "\\PC{0,40}|[\"\\\\\u{0}-\u{1f}\u{7f}\u{2028}]{1,8}",
            role in "\\PC{0,20}",
            iat in 0i64..=i64::from(u32::MAX),
            ttl in 1u64..100_000,
            jti in "[A-Za-z0-9_-]{22}",
        ) {
            let id = ClientId::new("client-1.a_b").unwrap();
            let issuer = Issuer::new(id.clone(), aud.clone(), keys()).with_ttl(ttl);
            let app = serde_json::json!({"role": role, "n": [1, {"x": null}]});
            let got = issuer.claims(&app, iat, &jti).unwrap();
            let mut m = Map::new();
            m.insert("iss".into(), id.as_str().into());
            m.insert("aud".into(), aud.into());
            m.insert("iat".into(), iat.into());
            m.insert("exp".into(), (iat + ttl as i64).into());
            m.insert("jti".into(), jti.into());
            m.extend(app.as_object().unwrap().clone());
            prop_assert_eq!(got, serde_json::to_vec(&Value::Object(m)).unwrap());
        }
    }
}
