//! The JWA algorithms (RFC 7518) this tool checks: the HMAC signatures of
//! a JWS (§3.2) and every content encryption a `dir` JWE can use (§5):
//! AES-GCM and AES-CBC with HMAC-SHA2. Tags are compared in constant time,
//! and the CBC MAC is checked before any byte is decrypted.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::{AesGcm, KeyInit, Nonce, Tag};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// A JWS MAC algorithm (RFC 7518 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlg {
    Hs256,
    Hs384,
    Hs512,
}

impl MacAlg {
    pub fn from_name(alg: &str) -> Option<MacAlg> {
        match alg {
            "HS256" => Some(MacAlg::Hs256),
            "HS384" => Some(MacAlg::Hs384),
            "HS512" => Some(MacAlg::Hs512),
            _ => None,
        }
    }

    /// The hash output size: RFC 7518 §3.2 asks for keys at least this long.
    pub fn min_key_len(self) -> usize {
        match self {
            MacAlg::Hs256 => 32,
            MacAlg::Hs384 => 48,
            MacAlg::Hs512 => 64,
        }
    }

    /// Whether `sig` is the MAC of `input` under `key`.
    pub fn verify(self, key: &[u8], input: &[u8], sig: &[u8]) -> bool {
        match self {
            MacAlg::Hs256 => mac_matches::<Hmac<Sha256>>(key, &[input], sig, false),
            MacAlg::Hs384 => mac_matches::<Hmac<Sha384>>(key, &[input], sig, false),
            MacAlg::Hs512 => mac_matches::<Hmac<Sha512>>(key, &[input], sig, false),
        }
    }
}

/// The MAC of the concatenated `input` compared with `tag` in constant
/// time: the whole output, or with `truncated` its first `tag.len()` bytes.
fn mac_matches<M: Mac + KeyInit>(key: &[u8], input: &[&[u8]], tag: &[u8], truncated: bool) -> bool {
    let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
        return false;
    };
    for part in input {
        mac.update(part);
    }
    if truncated {
        mac.verify_truncated_left(tag).is_ok()
    } else {
        mac.verify_slice(tag).is_ok()
    }
}

/// A JWE content encryption algorithm (RFC 7518 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEnc {
    A128CbcHs256,
    A192CbcHs384,
    A256CbcHs512,
    A128Gcm,
    A192Gcm,
    A256Gcm,
}

/// Why a JWE's content does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the key is {got} bytes; {enc} needs {want}")]
    KeyLength {
        enc: &'static str,
        got: usize,
        want: usize,
    },
    #[error("the IV is {got} bytes; {enc} needs {want}")]
    IvLength {
        enc: &'static str,
        got: usize,
        want: usize,
    },
    #[error("the tag is {got} bytes; {enc} needs {want}")]
    TagLength {
        enc: &'static str,
        got: usize,
        want: usize,
    },
    #[error(
        "the tag does not verify with this key: another key (another connection?) \
         or altered header, IV or ciphertext"
    )]
    Tag,
    #[error("the tag verifies but the plaintext's PKCS#7 padding is wrong (a faulty encryptor)")]
    Padding,
}

impl ContentEnc {
    pub const ALL: [ContentEnc; 6] = [
        ContentEnc::A128CbcHs256,
        ContentEnc::A192CbcHs384,
        ContentEnc::A256CbcHs512,
        ContentEnc::A128Gcm,
        ContentEnc::A192Gcm,
        ContentEnc::A256Gcm,
    ];

    pub fn from_name(enc: &str) -> Option<ContentEnc> {
        ContentEnc::ALL.into_iter().find(|e| e.name() == enc)
    }

    pub fn name(self) -> &'static str {
        match self {
            ContentEnc::A128CbcHs256 => "A128CBC-HS256",
            ContentEnc::A192CbcHs384 => "A192CBC-HS384",
            ContentEnc::A256CbcHs512 => "A256CBC-HS512",
            ContentEnc::A128Gcm => "A128GCM",
            ContentEnc::A192Gcm => "A192GCM",
            ContentEnc::A256Gcm => "A256GCM",
        }
    }

    /// The key a `dir` JWE is encrypted with: for CBC-HS, the MAC key
    /// followed by the AES key (§5.2.2.1).
    pub fn key_len(self) -> usize {
        match self {
            ContentEnc::A128Gcm => 16,
            ContentEnc::A192Gcm => 24,
            ContentEnc::A256Gcm | ContentEnc::A128CbcHs256 => 32,
            ContentEnc::A192CbcHs384 => 48,
            ContentEnc::A256CbcHs512 => 64,
        }
    }

    pub fn iv_len(self) -> usize {
        match self {
            ContentEnc::A128Gcm | ContentEnc::A192Gcm | ContentEnc::A256Gcm => 12,
            _ => 16,
        }
    }

    pub fn tag_len(self) -> usize {
        match self {
            ContentEnc::A192CbcHs384 => 24,
            ContentEnc::A256CbcHs512 => 32,
            _ => 16,
        }
    }

    /// Authenticates and decrypts: the plaintext, or why not.
    pub fn open(
        self,
        key: &[u8],
        aad: &[u8],
        iv: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let enc = self.name();
        let check = |got: usize, want: usize| (got == want).then_some(()).ok_or((got, want));
        check(key.len(), self.key_len()).map_err(|(got, want)| OpenError::KeyLength {
            enc,
            got,
            want,
        })?;
        check(iv.len(), self.iv_len()).map_err(|(got, want)| OpenError::IvLength {
            enc,
            got,
            want,
        })?;
        check(tag.len(), self.tag_len()).map_err(|(got, want)| OpenError::TagLength {
            enc,
            got,
            want,
        })?;
        match self {
            ContentEnc::A128Gcm => gcm_open::<Aes128>(key, aad, iv, ciphertext, tag),
            ContentEnc::A192Gcm => gcm_open::<Aes192>(key, aad, iv, ciphertext, tag),
            ContentEnc::A256Gcm => gcm_open::<Aes256>(key, aad, iv, ciphertext, tag),
            ContentEnc::A128CbcHs256 => {
                cbc_hs_open::<Hmac<Sha256>, Aes128>(key, aad, iv, ciphertext, tag)
            }
            ContentEnc::A192CbcHs384 => {
                cbc_hs_open::<Hmac<Sha384>, Aes192>(key, aad, iv, ciphertext, tag)
            }
            ContentEnc::A256CbcHs512 => {
                cbc_hs_open::<Hmac<Sha512>, Aes256>(key, aad, iv, ciphertext, tag)
            }
        }
    }
}

/// AES-GCM with a 96-bit IV and a 128-bit tag (lengths checked by the caller).
fn gcm_open<C>(
    key: &[u8],
    aad: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, OpenError>
where
    AesGcm<C, U12>: KeyInit + AeadInPlace,
{
    let cipher = AesGcm::<C, U12>::new_from_slice(key).map_err(|_| OpenError::Tag)?;
    let mut buf = ciphertext.to_vec();
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(iv), aad, &mut buf, Tag::from_slice(tag))
        .map_err(|_| OpenError::Tag)?;
    Ok(buf)
}

/// AES-CBC-HMAC-SHA2 (RFC 7518 §5.2.2.2): the MAC over
/// AAD || IV || ciphertext || AAD length in bits (64-bit big-endian),
/// truncated to the tag's length, is checked before decrypting.
fn cbc_hs_open<M, C>(
    key: &[u8],
    aad: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, OpenError>
where
    M: Mac + KeyInit,
    cbc::Decryptor<C>: KeyIvInit + BlockDecryptMut,
    C: aes_gcm::aes::cipher::BlockDecryptMut + aes_gcm::aes::cipher::BlockCipher,
{
    let (mac_key, enc_key) = key.split_at(key.len() / 2);
    let al = (aad.len() as u64).wrapping_mul(8).to_be_bytes();
    if !mac_matches::<M>(mac_key, &[aad, iv, ciphertext, &al], tag, true) {
        return Err(OpenError::Tag);
    }
    let decryptor =
        cbc::Decryptor::<C>::new_from_slices(enc_key, iv).map_err(|_| OpenError::Tag)?;
    let mut buf = ciphertext.to_vec();
    let len = decryptor
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| OpenError::Padding)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flipped(v: &[u8], i: usize) -> Vec<u8> {
        let mut v = v.to_vec();
        v[i] ^= 1;
        v
    }

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// RFC 7518 Appendix B: P, IV, A are the same for the three test cases.
    const P: &str = "A cipher system must not be required to be secret, and it must be \
                     able to fall into the hands of the enemy without inconvenience";
    const IV: &str = "1a f3 8c 2d c2 b9 6f fd d8 66 94 09 23 41 bc 04";
    const A: &str = "The second principle of Auguste Kerckhoffs";

    /// One test case of RFC 7518 Appendix B: enc, K, E, T.
    type Case = (ContentEnc, Vec<u8>, Vec<u8>, Vec<u8>);

    /// RFC 7518 Appendix B.1, B.2 and B.3.
    fn appendix_b() -> Vec<Case> {
        let k = (0u8..64).collect::<Vec<u8>>();
        vec![
            (
                ContentEnc::A128CbcHs256,
                k[..32].to_vec(),
                hex("c8 0e df a3 2d df 39 d5 ef 00 c0 b4 68 83 42 79
                     a2 e4 6a 1b 80 49 f7 92 f7 6b fe 54 b9 03 a9 c9
                     a9 4a c9 b4 7a d2 65 5c 5f 10 f9 ae f7 14 27 e2
                     fc 6f 9b 3f 39 9a 22 14 89 f1 63 62 c7 03 23 36
                     09 d4 5a c6 98 64 e3 32 1c f8 29 35 ac 40 96 c8
                     6e 13 33 14 c5 40 19 e8 ca 79 80 df a4 b9 cf 1b
                     38 4c 48 6f 3a 54 c5 10 78 15 8e e5 d7 9d e5 9f
                     bd 34 d8 48 b3 d6 95 50 a6 76 46 34 44 27 ad e5
                     4b 88 51 ff b5 98 f7 f8 00 74 b9 47 3c 82 e2 db"),
                hex("65 2c 3f a3 6b 0a 7c 5b 32 19 fa b3 a3 0b c1 c4"),
            ),
            (
                ContentEnc::A192CbcHs384,
                k[..48].to_vec(),
                hex("ea 65 da 6b 59 e6 1e db 41 9b e6 2d 19 71 2a e5
                     d3 03 ee b5 00 52 d0 df d6 69 7f 77 22 4c 8e db
                     00 0d 27 9b dc 14 c1 07 26 54 bd 30 94 42 30 c6
                     57 be d4 ca 0c 9f 4a 84 66 f2 2b 22 6d 17 46 21
                     4b f8 cf c2 40 0a dd 9f 51 26 e4 79 66 3f c9 0b
                     3b ed 78 7a 2f 0f fc bf 39 04 be 2a 64 1d 5c 21
                     05 bf e5 91 ba e2 3b 1d 74 49 e5 32 ee f6 0a 9a
                     c8 bb 6c 6b 01 d3 5d 49 78 7b cd 57 ef 48 49 27
                     f2 80 ad c9 1a c0 c4 e7 9c 7b 11 ef c6 00 54 e3"),
                hex("84 90 ac 0e 58 94 9b fe 51 87 5d 73 3f 93 ac 20
                     75 16 80 39 cc c7 33 d7"),
            ),
            (
                ContentEnc::A256CbcHs512,
                k,
                hex("4a ff aa ad b7 8c 31 c5 da 4b 1b 59 0d 10 ff bd
                     3d d8 d5 d3 02 42 35 26 91 2d a0 37 ec bc c7 bd
                     82 2c 30 1d d6 7c 37 3b cc b5 84 ad 3e 92 79 c2
                     e6 d1 2a 13 74 b7 7f 07 75 53 df 82 94 10 44 6b
                     36 eb d9 70 66 29 6a e6 42 7e a7 5c 2e 08 46 a1
                     1a 09 cc f5 37 0d c8 0b fe cb ad 28 c7 3f 09 b3
                     a3 b7 5e 66 2a 25 94 41 0a e4 96 b2 e2 e6 60 9e
                     31 e6 e0 2c c8 37 f0 53 d2 1f 37 ff 4f 51 95 0b
                     be 26 38 d0 9d d7 a4 93 09 30 80 6d 07 03 b1 f6"),
                hex("4d d3 b4 c0 88 a7 f4 5c 21 68 39 64 5b 20 12 bf
                     2e 62 69 a8 c5 6a 81 6d bc 1b 26 77 61 95 5b c5"),
            ),
        ]
    }

    #[test]
    fn rfc7518_appendix_b_decrypts_and_refuses_any_flipped_byte() {
        let iv = hex(IV);
        for (enc, k, e, t) in appendix_b() {
            let plain = enc.open(&k, A.as_bytes(), &iv, &e, &t).unwrap();
            assert_eq!(plain, P.as_bytes(), "{}", enc.name());
            // One bit anywhere the MAC covers, or in the MAC key: refused
            // before decryption.
            let a = A.as_bytes();
            for (key, aad, iv, e, t) in [
                (&k, a, &iv, &e, &flipped(&t, 0)),
                (&k, a, &iv, &flipped(&e, e.len() - 1), &t),
                (&k, a, &flipped(&iv, 3), &e, &t),
                (&k, &a[..20], &iv, &e, &t),
                (&flipped(&k, 0), a, &iv, &e, &t),
            ] {
                assert_eq!(enc.open(key, aad, iv, e, t), Err(OpenError::Tag));
            }
            // The MAC key right and the AES key wrong: the MAC verifies, the
            // plaintext is garbage, and its padding says so.
            let bad = flipped(&k, k.len() - 1);
            assert_eq!(enc.open(&bad, a, &iv, &e, &t), Err(OpenError::Padding));
            // Lengths are checked first, with the numbers in the message.
            let short = enc.open(&k[1..], A.as_bytes(), &iv, &e, &t).unwrap_err();
            assert!(matches!(short, OpenError::KeyLength { .. }), "{short}");
            assert!(enc.open(&k, A.as_bytes(), &iv, &e, &t[1..]).is_err());
        }
    }

    #[test]
    fn every_gcm_size_round_trips_against_the_aead_crate() {
        for enc in [
            ContentEnc::A128Gcm,
            ContentEnc::A192Gcm,
            ContentEnc::A256Gcm,
        ] {
            let key = vec![7u8; enc.key_len()];
            let iv = [9u8; 12];
            let mut buf = b"plain".to_vec();
            let tag = match enc {
                ContentEnc::A128Gcm => AesGcm::<Aes128, U12>::new_from_slice(&key)
                    .unwrap()
                    .encrypt_in_place_detached(Nonce::from_slice(&iv), b"aad", &mut buf),
                ContentEnc::A192Gcm => AesGcm::<Aes192, U12>::new_from_slice(&key)
                    .unwrap()
                    .encrypt_in_place_detached(Nonce::from_slice(&iv), b"aad", &mut buf),
                _ => AesGcm::<Aes256, U12>::new_from_slice(&key)
                    .unwrap()
                    .encrypt_in_place_detached(Nonce::from_slice(&iv), b"aad", &mut buf),
            }
            .unwrap();
            assert_eq!(enc.open(&key, b"aad", &iv, &buf, &tag).unwrap(), b"plain");
            assert_eq!(enc.open(&key, b"aaD", &iv, &buf, &tag), Err(OpenError::Tag));
            assert!(matches!(
                enc.open(&key, b"aad", &[0; 16], &buf, &tag),
                Err(OpenError::IvLength { want: 12, .. })
            ));
        }
    }

    #[test]
    fn names_and_sizes_follow_rfc7518() {
        for enc in ContentEnc::ALL {
            assert_eq!(ContentEnc::from_name(enc.name()), Some(enc));
        }
        assert_eq!(ContentEnc::from_name("A256gcm"), None);
        let sizes: Vec<_> = ContentEnc::ALL
            .iter()
            .map(|e| (e.key_len(), e.iv_len(), e.tag_len()))
            .collect();
        assert_eq!(
            sizes,
            [
                (32, 16, 16),
                (48, 16, 24),
                (64, 16, 32),
                (16, 12, 16),
                (24, 12, 16),
                (32, 12, 16)
            ]
        );
        assert_eq!(MacAlg::from_name("HS384"), Some(MacAlg::Hs384));
        assert_eq!(MacAlg::from_name("hs256"), None);
    }
}
