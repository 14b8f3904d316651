//! Canonical unpadded base64url (RFC 7515 §2): no `=`, no stray trailing bits.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Decodes strictly; `None` for anything non-canonical.
///
/// `URL_SAFE_NO_PAD` refuses padding and non-zero trailing bits, so every
/// byte string has exactly one accepted encoding.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// The text is not canonical unpadded base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonCanonical;

/// Decodes a part that must be exactly `N` bytes without allocating.
///
/// `Err(NonCanonical)` when the text is not canonical (a `malformed` token);
/// `Ok(None)` when it is canonical but of another length (a cryptographic
/// failure later, not a syntax error).
pub fn decode_fixed<const N: usize>(s: &str) -> Result<Option<[u8; N]>, NonCanonical> {
    if s.len() != encoded_len(N) {
        return match decode(s) {
            Some(_) => Ok(None),
            None => Err(NonCanonical),
        };
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
        Ok(n) if n == N => Ok(Some(out)),
        Ok(_) => Ok(None),
        Err(_) => Err(NonCanonical),
    }
}

/// Encodes unpadded, the one canonical form [`decode`] accepts.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends the encoding of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out)
}

/// Characters in the unpadded encoding of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_padding_and_trailing_bits() {
        assert_eq!(decode("QQ").as_deref(), Some(&b"A"[..]));
        assert!(decode("QQ==").is_none());
        assert!(decode("QR").is_none(), "trailing bits set");
        assert!(decode("Q").is_none());
        assert!(decode("QQ+/").is_none(), "standard alphabet");
        assert_eq!(decode("").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn decode_fixed_separates_syntax_from_length() {
        let enc = encode(&[7u8; 12]);
        assert_eq!(decode_fixed::<12>(&enc), Ok(Some([7u8; 12])));
        assert_eq!(decode_fixed::<16>(&enc), Ok(None));
        assert_eq!(decode_fixed::<12>(&encode(&[7u8; 13])), Ok(None));
        assert_eq!(decode_fixed::<1>("QR"), Err(NonCanonical));
        assert_eq!(decode_fixed::<12>("!!!!!!!!!!!!!!!!"), Err(NonCanonical));
    }
}
