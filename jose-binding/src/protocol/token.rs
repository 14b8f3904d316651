//! Compact JWS/JWE layers: parsing with the §7 syntax checks (steps 3–7),
//! and sealing/opening with the raw primitives.
//!
//! The verifier does not hand tokens to a general JOSE library: it needs
//! constant-time MAC comparison, a header allow-list and duplicate-member
//! refusal that josekit 0.10 does not give, and the vectors need a fixed IV.
//! josekit stays in the tests as an independent cross-check.

use std::sync::Arc;

use aws_lc_rs::aead;

use crate::b64;
use crate::error::{reject, ErrorCode, Rejection};
use crate::json;
use crate::schedule::{EncKey, SigKey, SubKeys};

/// Longest accepted token, in characters (step 2).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest accepted decoded protected header (step 4).
pub const MAX_HEADER_LEN: usize = 1024;
/// Largest accepted decoded claims set (step 11).
pub const MAX_CLAIMS_LEN: usize = 8 * 1024;

/// Header members that are refused outright (step 5): each either changes how
/// the token must be processed (`crit`, `zip`, `b64`) or names a key source
/// other than the connection (`jku`, `jwk`, `x5*`).
pub const FORBIDDEN_HEADERS: [&str; 9] = [
    "crit", "zip", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "b64",
];

/// The three token forms of §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    Signed,
    EncryptedThenSigned,
    SignedThenEncrypted,
}

impl Form {
    pub const ALL: [Form; 3] = [
        Form::Signed,
        Form::EncryptedThenSigned,
        Form::SignedThenEncrypted,
    ];

    /// The wire name, as in the echo route and configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Form::Signed => "signed",
            Form::EncryptedThenSigned => "encrypted-then-signed",
            Form::SignedThenEncrypted => "signed-then-encrypted",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Form::Signed => 1,
            Form::EncryptedThenSigned => 2,
            Form::SignedThenEncrypted => 4,
        }
    }
}

impl std::fmt::Display for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unknown form name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown form {0:?}: expected signed, encrypted-then-signed or signed-then-encrypted")]
pub struct UnknownForm(pub String);

impl std::str::FromStr for Form {
    type Err = UnknownForm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Form::ALL
            .into_iter()
            .find(|f| f.as_str() == s || short_name(*f) == s)
            .ok_or_else(|| UnknownForm(s.to_owned()))
    }
}

/// Short aliases accepted on command lines: S, ES, SE.
const fn short_name(f: Form) -> &'static str {
    match f {
        Form::Signed => "S",
        Form::EncryptedThenSigned => "ES",
        Form::SignedThenEncrypted => "SE",
    }
}

/// A set of forms (the server's policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormSet(u8);

impl FormSet {
    pub const ALL: FormSet = FormSet(7);
    pub const NONE: FormSet = FormSet(0);

    pub fn with(self, f: Form) -> FormSet {
        FormSet(self.0 | f.bit())
    }
    pub fn contains(self, f: Form) -> bool {
        self.0 & f.bit() != 0
    }
    pub fn iter(self) -> impl Iterator<Item = Form> {
        Form::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl FromIterator<Form> for FormSet {
    fn from_iter<I: IntoIterator<Item = Form>>(iter: I) -> Self {
        iter.into_iter().fold(FormSet::NONE, FormSet::with)
    }
}

/// JWS (3 parts) or JWE (5 parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jws,
    Jwe,
}

/// The `cty` member as §7 step 7 reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cty {
    Absent,
    /// Exactly the string `JWT`.
    Jwt,
    /// Anything else (another string, another type).
    Other,
}

/// The body of a layer, decoded but not yet opened.
#[derive(Debug)]
pub enum Body<'a> {
    Jws {
        /// `header.payload`, the bytes the MAC covers.
        signing_input: &'a str,
        payload: Vec<u8>,
        /// `None` when canonical base64url of another length than 32.
        signature: Option<[u8; 32]>,
    },
    Jwe {
        /// The encoded protected header, the AEAD's additional data.
        aad: &'a str,
        iv: Option<[u8; 12]>,
        ciphertext: Vec<u8>,
        tag: Option<[u8; 16]>,
    },
}

/// The dot-separated parts of one compact layer, found in one pass.
struct Parts<'a> {
    kind: Kind,
    parts: [&'a str; 5],
}

impl<'a> Parts<'a> {
    /// Step 3's part count: 3 parts make a JWS, 5 a JWE, anything else is
    /// malformed.
    fn split(token: &'a str) -> Result<Parts<'a>, Rejection> {
        let mut parts = [""; 5];
        let mut n = 0;
        for part in token.split('.') {
            if n == parts.len() {
                // A sixth part: more than any layer has; stop counting.
                n += 1;
                break;
            }
            parts[n] = part;
            n += 1;
        }
        let kind = match n {
            3 => Kind::Jws,
            5 => Kind::Jwe,
            _ => {
                return Err(reject(
                    ErrorCode::Malformed,
                    "not 3 (JWS) or 5 (JWE) dot-separated parts",
                ))
            }
        };
        Ok(Parts { kind, parts })
    }

    fn get(&self, i: usize) -> &'a str {
        self.parts[i]
    }
}

/// One JWS or JWE layer that passed steps 3–6.
#[derive(Debug)]
pub struct Layer<'a> {
    /// The header's `kid` when it is a string.
    kid: Option<Arc<str>>,
    pub cty: Cty,
    pub body: Body<'a>,
}

impl<'a> Layer<'a> {
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Jws { .. } => Kind::Jws,
            Body::Jwe { .. } => Kind::Jwe,
        }
    }

    /// `kid` when it is a string.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Steps 3–6 on one compact token (the caller applies step 2).
    pub fn parse(token: &'a str) -> Result<Layer<'a>, Rejection> {
        Layer::parse_with(token, None)
    }

    /// [`Layer::parse`], skipping the header's decode and analysis when
    /// `memo` holds the same header text: the result is the same, as the
    /// analysis depends on nothing else.
    pub fn parse_with(
        token: &'a str,
        memo: Option<&mut HeaderMemo>,
    ) -> Result<Layer<'a>, Rejection> {
        let parts = Parts::split(token)?;
        let (header_b64, kind) = (parts.get(0), parts.kind);
        if let Some((cty, kid)) = memo.as_deref().and_then(|m| m.get(header_b64, kind)) {
            let body = Layer::decode_body(token, &parts)?;
            return Ok(Layer { kid, cty, body });
        }
        let header = b64::decode(header_b64).ok_or(NON_CANONICAL)?;
        let body = Layer::decode_body(token, &parts)?;
        let (cty, kid) = analyse_header(&header, kind)?;
        let kid: Option<Arc<str>> = kid.map(Arc::from);
        if let Some(m) = memo {
            m.put(header_b64, kind, cty, kid.clone());
        }
        Ok(Layer { kid, cty, body })
    }

    fn decode_body(token: &'a str, parts: &Parts<'a>) -> Result<Body<'a>, Rejection> {
        match parts.kind {
            Kind::Jws => {
                let (payload_b64, sig_b64) = (parts.get(1), parts.get(2));
                let payload = b64::decode(payload_b64).ok_or(NON_CANONICAL)?;
                let signature = b64::decode_fixed::<32>(sig_b64).map_err(|_| NON_CANONICAL)?;
                if payload.is_empty() {
                    return Err(reject(ErrorCode::Malformed, "empty JWS payload"));
                }
                Ok(Body::Jws {
                    signing_input: &token[..parts.get(0).len() + 1 + payload_b64.len()],
                    payload,
                    signature,
                })
            }
            Kind::Jwe => {
                let ek_b64 = parts.get(1);
                let iv = b64::decode_fixed::<12>(parts.get(2)).map_err(|_| NON_CANONICAL)?;
                let ciphertext = b64::decode(parts.get(3)).ok_or(NON_CANONICAL)?;
                let tag = b64::decode_fixed::<16>(parts.get(4)).map_err(|_| NON_CANONICAL)?;
                if b64::decode(ek_b64).is_none() {
                    return Err(NON_CANONICAL);
                }
                if !ek_b64.is_empty() {
                    return Err(reject(
                        ErrorCode::Malformed,
                        "JWE encrypted-key part must be empty with alg dir",
                    ));
                }
                Ok(Body::Jwe {
                    aad: parts.get(0),
                    iv,
                    ciphertext,
                    tag,
                })
            }
        }
    }

    /// Opens the layer with one connection's subkeys (step 9): the JWS
    /// payload if its MAC verifies, or the JWE plaintext if it decrypts.
    pub fn open(&self, keys: &SubKeys) -> Option<std::borrow::Cow<'_, [u8]>> {
        use std::borrow::Cow;
        match &self.body {
            Body::Jws { payload, .. } => self
                .verify_mac(&keys.sig)
                .then_some(Cow::Borrowed(payload.as_slice())),
            Body::Jwe { .. } => self.decrypt(&keys.enc).map(Cow::Owned),
        }
    }

    /// The refusal when [`Layer::open`] fails: the code depends on the kind.
    pub fn open_failure(&self) -> Rejection {
        match self.kind() {
            Kind::Jws => reject(
                ErrorCode::BadSignature,
                "HS256 signature does not verify with this connection's key",
            ),
            Kind::Jwe => reject(
                ErrorCode::DecryptFailed,
                "A256GCM decryption fails with this connection's key",
            ),
        }
    }

    /// Checks the HS256 MAC in constant time (step 9).
    pub fn verify_mac(&self, key: &SigKey) -> bool {
        match &self.body {
            Body::Jws {
                signing_input,
                signature: Some(sig),
                ..
            } => key.verify(signing_input.as_bytes(), sig),
            _ => false,
        }
    }

    /// Opens A256GCM (step 9); `None` on any failure.
    pub fn decrypt(&self, key: &EncKey) -> Option<Vec<u8>> {
        match &self.body {
            Body::Jwe {
                aad,
                iv: Some(iv),
                ciphertext,
                tag: Some(tag),
            } => {
                let mut out = vec![0u8; ciphertext.len()];
                key.aead()
                    .open_separate_gather(
                        aead::Nonce::assume_unique_for_key(*iv),
                        aead::Aad::from(aad.as_bytes()),
                        ciphertext,
                        tag,
                        &mut out,
                    )
                    .ok()?;
                Some(out)
            }
            _ => None,
        }
    }
}

/// Protected headers that passed steps 4–6 on one connection, by their exact
/// encoded text and layer kind. A client sends the same few headers with
/// every token, and their analysis depends on nothing but the text and the
/// kind, so a repeat skips the base64 decode and the JSON parse. Holds at
/// most four headers (the two layers of a nested form, and room for a
/// rotation), replaced oldest first; only headers that passed are held.
#[derive(Debug, Default)]
pub struct HeaderMemo {
    entries: Vec<MemoEntry>,
    next: usize,
}

#[derive(Debug)]
struct MemoEntry {
    text: Box<str>,
    kind: Kind,
    cty: Cty,
    kid: Option<Arc<str>>,
}

impl HeaderMemo {
    const SLOTS: usize = 4;

    fn get(&self, text: &str, kind: Kind) -> Option<(Cty, Option<Arc<str>>)> {
        self.entries
            .iter()
            .find(|e| e.kind == kind && *e.text == *text)
            .map(|e| (e.cty, e.kid.clone()))
    }

    fn put(&mut self, text: &str, kind: Kind, cty: Cty, kid: Option<Arc<str>>) {
        let entry = MemoEntry {
            text: text.into(),
            kind,
            cty,
            kid,
        };
        if self.entries.len() < Self::SLOTS {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % Self::SLOTS;
        }
    }
}

const NON_CANONICAL: Rejection = reject(
    ErrorCode::Malformed,
    "a part is not canonical unpadded base64url",
);

/// Steps 4–6 on a decoded protected header of a layer of `kind`; gives the
/// header's `cty` and string `kid`, the only members read after step 6.
pub fn analyse_header(bytes: &[u8], kind: Kind) -> Result<(Cty, Option<String>), Rejection> {
    if bytes.len() > MAX_HEADER_LEN {
        return Err(reject(
            ErrorCode::TooLarge,
            "protected header is larger than 1024 bytes",
        ));
    }
    let h = json::parse_header(bytes, &FORBIDDEN_HEADERS)
        .map_err(|e| reject(ErrorCode::Malformed, e.detail()))?;
    if h.forbidden {
        return Err(reject(
            ErrorCode::UnsupportedHeader,
            "header has a member this protocol forbids (crit, zip, jku, jwk, x5u, x5c, x5t, x5t#S256, b64)",
        ));
    }
    if h.typ.as_str() != Some("JWT") {
        return Err(reject(
            ErrorCode::UnsupportedHeader,
            "header typ is absent or not exactly \"JWT\"",
        ));
    }
    match kind {
        Kind::Jws if h.alg.as_str() != Some("HS256") => {
            return Err(reject(
                ErrorCode::UnsupportedAlg,
                "JWS alg is not exactly HS256",
            ))
        }
        Kind::Jwe if h.alg.as_str() != Some("dir") => {
            return Err(reject(
                ErrorCode::UnsupportedAlg,
                "JWE alg is not exactly dir",
            ))
        }
        Kind::Jwe if h.enc.as_str() != Some("A256GCM") => {
            return Err(reject(
                ErrorCode::UnsupportedAlg,
                "JWE enc is not exactly A256GCM",
            ))
        }
        _ => {}
    }
    let cty = match &h.cty {
        json::Member::Absent => Cty::Absent,
        json::Member::Str(s) if s == "JWT" => Cty::Jwt,
        _ => Cty::Other,
    };
    Ok((cty, h.kid.as_str().map(str::to_owned)))
}

/// Produces a compact JWS over `payload` with the given header JSON.
pub fn sign_jws(header_json: &str, payload: &[u8], key: &SigKey) -> String {
    sign_jws_encoded(&b64::encode(header_json.as_bytes()), payload, key)
}

/// [`sign_jws`] with the header already base64url-encoded (an issuer encodes
/// its few headers once per connection).
pub fn sign_jws_encoded(header_b64: &str, payload: &[u8], key: &SigKey) -> String {
    let mut out = String::with_capacity(header_b64.len() + b64::encoded_len(payload.len()) + 45);
    out.push_str(header_b64);
    out.push('.');
    b64::encode_into(payload, &mut out);
    let tag = key.sign(out.as_bytes());
    out.push('.');
    b64::encode_into(tag.as_ref(), &mut out);
    out
}

/// Produces a compact dir/A256GCM JWE with the IV given. For reproducible
/// vectors and tests only (feature `test-vectors`): an IV must never repeat
/// under one key, which only a random IV ([`crate::Issuer::issue`]) ensures.
#[cfg(any(test, feature = "test-vectors"))]
pub fn encrypt_jwe(header_json: &str, plaintext: &[u8], key: &EncKey, iv: [u8; 12]) -> String {
    encrypt_jwe_encoded(&b64::encode(header_json.as_bytes()), plaintext, key, iv)
}

/// A compact dir/A256GCM JWE, the header already base64url-encoded; `iv`
/// must never repeat under one key.
pub(crate) fn encrypt_jwe_encoded(
    header_b64: &str,
    plaintext: &[u8],
    key: &EncKey,
    iv: [u8; 12],
) -> String {
    let mut buf = plaintext.to_vec();
    let tag = key
        .aead()
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(iv),
            aead::Aad::from(header_b64.as_bytes()),
            &mut buf,
        )
        .unwrap_or_else(|_| unreachable!("plaintext far below the A256GCM limit"));
    let mut out = String::with_capacity(header_b64.len() + b64::encoded_len(buf.len()) + 44);
    out.push_str(header_b64);
    out.push_str("..");
    b64::encode_into(&iv, &mut out);
    out.push('.');
    b64::encode_into(&buf, &mut out);
    out.push('.');
    b64::encode_into(tag.as_ref(), &mut out);
    out
}

/// The exact headers of §5, members in the order the table shows them.
pub mod headers {
    /// Form S, and the inner JWS of form SE.
    pub fn jws(kid: &str) -> String {
        format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#)
    }
    /// The outer JWS of form ES.
    pub fn jws_nested(kid: &str) -> String {
        format!(r#"{{"alg":"HS256","typ":"JWT","cty":"JWT","kid":"{kid}"}}"#)
    }
    /// The inner JWE of form ES.
    pub fn jwe(kid: &str) -> String {
        format!(r#"{{"alg":"dir","enc":"A256GCM","typ":"JWT","kid":"{kid}"}}"#)
    }
    /// The outer JWE of form SE.
    pub fn jwe_nested(kid: &str) -> String {
        format!(r#"{{"alg":"dir","enc":"A256GCM","typ":"JWT","cty":"JWT","kid":"{kid}"}}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_names() {
        for f in Form::ALL {
            assert_eq!(f.as_str().parse::<Form>(), Ok(f));
        }
        assert_eq!("ES".parse::<Form>(), Ok(Form::EncryptedThenSigned));
        assert!("jwt".parse::<Form>().is_err());
        let set: FormSet = [Form::Signed].into_iter().collect();
        assert!(set.contains(Form::Signed) && !set.contains(Form::SignedThenEncrypted));
    }

    #[test]
    fn jws_round_trip_and_tamper() {
        let key = SigKey::from_bytes([9; 32]);
        let t = sign_jws(&headers::jws("c"), b"{}", &key);
        let layer = Layer::parse(&t).unwrap();
        assert!(layer.verify_mac(&key));
        assert!(!layer.verify_mac(&SigKey::from_bytes([8; 32])));
    }

    #[test]
    fn jwe_round_trip_and_tamper() {
        let key = EncKey::from_bytes([9; 32]);
        let t = encrypt_jwe(&headers::jwe("c"), b"hello", &key, [1; 12]);
        let layer = Layer::parse(&t).unwrap();
        assert_eq!(layer.decrypt(&key).as_deref(), Some(&b"hello"[..]));
        assert!(layer.decrypt(&EncKey::from_bytes([8; 32])).is_none());
    }

    /// With a memo, parsing gives exactly what it gives without one, in
    /// any order of good and bad tokens sharing headers; the memo stays at
    /// four headers and never holds one that failed.
    #[test]
    fn header_memo_changes_no_result() {
        let sig = SigKey::from_bytes([9; 32]);
        let enc = EncKey::from_bytes([9; 32]);
        let b = |json: &str| b64::encode(json.as_bytes());
        let good = sign_jws(&headers::jws("c"), b"{}", &sig);
        let h = good.split('.').next().unwrap().to_owned();
        let jwe_h = b(&headers::jwe("c"));
        let zip = b(r#"{"alg":"HS256","typ":"JWT","kid":"c","zip":"DEF"}"#);
        let mut tokens = vec![
            good.clone(),
            format!("{h}.e30.AAAA"),
            format!("{h}.e30="),
            format!("{h}..{}", b64::encode(&[0; 32])),
            format!("{h}.e30.{}", b64::encode(&[0; 31])),
            format!("{h}.e30.{}.x.y", b64::encode(&[0; 32])),
            // The same header text in a JWE and then in a JWS.
            encrypt_jwe(&headers::jwe("c"), b"x", &enc, [1; 12]),
            format!("{jwe_h}.e30.{}", b64::encode(&[0; 32])),
            format!("{zip}.e30.{}", b64::encode(&[0; 32])),
            format!("{h}x.e30.{}", b64::encode(&[0; 32])),
        ];
        for kid in ["d", "e", "f", "g", "h"] {
            tokens.push(sign_jws(&headers::jws(kid), b"{}", &sig));
        }
        let mut memo = HeaderMemo::default();
        for round in 0..3 {
            for t in &tokens {
                let plain = format!("{:?}", Layer::parse(t));
                let memoized = format!("{:?}", Layer::parse_with(t, Some(&mut memo)));
                assert_eq!(plain, memoized, "round {round}: {t}");
                assert!(memo.entries.len() <= HeaderMemo::SLOTS);
                assert!(memo.entries.iter().all(|e| *e.text != *zip));
            }
        }
    }
}
