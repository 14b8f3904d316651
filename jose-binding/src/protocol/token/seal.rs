//! Sealing: a compact JWS (HS256) and a compact dir/A256GCM JWE.

use aws_lc_rs::aead;

use crate::protocol::b64;
use crate::protocol::schedule::{EncKey, SigKey};

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
