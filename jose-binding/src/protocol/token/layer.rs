//! One compact layer: its parts found in one pass, steps 3–6 on it, and its
//! body decoded (a JWS's payload and MAC, a JWE's IV, ciphertext and tag)
//! and opened.

use std::sync::Arc;

use aws_lc_rs::aead;

use super::*;
use crate::protocol::b64;
use crate::protocol::error::{reject, ErrorCode, Rejection};
use crate::protocol::schedule::{EncKey, SigKey, SubKeys};

/// JWS (3 parts) or JWE (5 parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A compact JWS: header, payload, signature.
    Jws,
    /// A compact JWE: header, encrypted key, IV, ciphertext, tag.
    Jwe,
}

/// The `cty` member as §7 step 7 reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cty {
    /// No `cty` member.
    Absent,
    /// Exactly the string `JWT`.
    Jwt,
    /// Anything else (another string, another type).
    Other,
}

/// The body of a layer, decoded but not yet opened.
#[derive(Debug)]
pub enum Body<'a> {
    /// A JWS body.
    Jws {
        /// `header.payload`, the bytes the MAC covers.
        signing_input: &'a str,
        /// The decoded payload (never empty): claims or a nested JWE.
        payload: Vec<u8>,
        /// `None` when canonical base64url of another length than 32.
        signature: Option<[u8; 32]>,
    },
    /// A JWE body (its encrypted-key part was empty, as `dir` requires).
    Jwe {
        /// The encoded protected header, the AEAD's additional data.
        aad: &'a str,
        /// `None` when canonical base64url of another length than 12.
        iv: Option<[u8; 12]>,
        /// The decoded ciphertext.
        ciphertext: Vec<u8>,
        /// `None` when canonical base64url of another length than 16.
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
    /// The header's `cty`, which with the kind decides the form (step 7).
    pub cty: Cty,
    /// The decoded, still unopened body.
    pub body: Body<'a>,
}

impl<'a> Layer<'a> {
    /// JWS or JWE, as the part count said.
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
