//! t-of-n custody of root keys: split a client's root key into `n` shares,
//! any `t` of which rebuild it, each share encrypted to its holder's age key.
//!
//! # Scheme
//!
//! Shamir's secret sharing over GF(2^8), byte by byte: every byte of the
//! root key (32 to 64 bytes) is the constant term of its own random
//! polynomial of degree `t - 1`; share `i` (1 to `n`, `n` at most 255) holds
//! the value of every polynomial at `x = i`. Fewer than `t` shares say
//! nothing about the key; `t` or more rebuild it by Lagrange interpolation
//! at `x = 0`.
//!
//! The field arithmetic is [`vsss_rs::Gf256`] (vsss-rs 6, `split_bytes` /
//! `combine_bytes`). We chose it over `sharks` and its fork `blahaj`:
//!
//! - constant-time: vsss-rs computes GF(256) products and inverses without
//!   lookup tables, so timing and memory access do not depend on key bytes;
//!   sharks and blahaj use log/exp tables indexed by secret bytes;
//! - correctness: sharks 0.5 draws polynomial coefficients from 1..=255, a
//!   bias that leaks which value a byte is not; vsss-rs (after an external
//!   audit, whose finding it cites) and blahaj draw them uniformly over the
//!   field; vsss-rs also refuses zero and duplicate share identifiers;
//! - maintenance: vsss-rs is released regularly (6.0.1, edition 2024,
//!   builds on stable 1.95 with a small tree once its elliptic-curve and
//!   big-integer features are off); sharks has not been released since
//!   2021, and blahaj is a small fork hosted outside the usual forges;
//! - API: `Gf256::split_bytes(t, n, secret, rng)` shares a byte string of
//!   any length directly, each share being `[x, y_0, .., y_{L-1}]`.
//!
//! vsss-rs wants a `rand_core` 0.10 RNG; we give it the operating system's
//! (`getrandom::SysRng`), as the rest of the crate uses for keys. One
//! residue we cannot reach: vsss-rs does not wipe its polynomial buffer
//! (the last key byte and its coefficients) when `split_bytes` returns.
//!
//! # Commitment
//!
//! Shares are not self-checking: a corrupted or foreign share interpolates
//! to a wrong key without any error. Every share therefore carries
//!
//! ```text
//! commitment = HMAC-SHA256(key = root key,
//!                          "jose-binding/v1 custody commitment" || 0x00 || group id (16 bytes) || client id)
//! ```
//!
//! in hex, and [`combine`] refuses a rebuilt key whose commitment differs.
//! It reveals nothing usable about a random 256-bit key (nor does the
//! key fingerprint, the one `jwt-server keys list` prints, also recorded).
//!
//! # Encrypted share file (`<client>-<holder>.share`, what `split` writes)
//!
//! ```text
//! jose-binding custody share v1
//! # share 2 of 5 of client7's root key; any 3 rebuild it (jwt-server keys combine)
//! group: 5b0c3f0e9a7d4c21b8e6f1a2d3c4b5a6
//! client: client7
//! threshold: 3
//! shares: 5
//! index: 2
//! holder: bob
//! recipient: age1...
//! key-fingerprint: 0af84f62a04cabf6
//! commitment: <64 hex digits>
//!
//! -----BEGIN AGE ENCRYPTED FILE-----
//! <age v1 file encrypted to `recipient`, ASCII-armored>
//! -----END AGE ENCRYPTED FILE-----
//! ```
//!
//! The first line names format and version. Then the visible header, one
//! `name: value` per line (order free, each exactly once, unknown names
//! refused, `#` lines are comments and ignored), an empty line, and the
//! armored age file. `group` is 16 random bytes in hex, fresh for every
//! split: shares of two splits of the same key never mix. Share indexes are
//! 1 to `shares`, given to the holders in command-line order.
//!
//! The visible header lets a holder or operator see what a file is without
//! any key, but it is not trusted: age authenticates the ciphertext, not the
//! text around it. So the encrypted payload is the decrypted share below,
//! which repeats every header field, and decryption refuses a share whose
//! payload disagrees with its header (an altered index, group or threshold).
//! Anyone can encrypt to a public age key, so a share can still be forged;
//! a forged share only makes the rebuilt key fail the commitment check.
//!
//! # Decrypted share (the age payload; `keys share-decrypt` writes it)
//!
//! ```text
//! jose-binding custody share v1 decrypted
//! # DECRYPTED share ... keep it secret, delete it after the combine
//! group: ...            (the same nine fields as the header)
//! ...
//! value: <the share's y bytes, one per key byte, unpadded base64url>
//! ```
//!
//! A holder who will not bring an identity to the combine can decrypt on
//! their own machine and hand this file over a trusted channel; [`combine`]
//! accepts a mix of both kinds. Its `value` is the only secret; nothing in
//! this module prints it, and `Debug` shows metadata only.

use std::fmt;

mod encrypted;
mod scheme;
mod share;

pub use crate::keys::sealed::{parse_identities, read_identities};
pub use encrypted::{EncryptedShare, Holder};
pub use scheme::{combine, commitment, split, Rebuilt, Split};
pub use share::{PlainShare, ShareFile, ShareMeta};
// What the three share with each other, through `use super::*`.
use share::Fields;

/// First line of an encrypted share file.
pub const SHARE_MAGIC: &str = "jose-binding custody share v1";
/// First line of a decrypted share (the age payload).
pub const PLAIN_MAGIC: &str = "jose-binding custody share v1 decrypted";
const COMMITMENT_LABEL: &[u8] = b"jose-binding/v1 custody commitment";
/// GF(256) has 255 non-zero points to hand out.
pub const MAX_SHARES: usize = 255;
/// Longest share or identity file read (a share file is about 1.5 KiB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Longest decrypted payload accepted.
const MAX_PAYLOAD_BYTES: usize = 4096;
use crate::keys::sealed::{ARMOR_BEGIN, ARMOR_END};

const FIELDS: [&str; 9] = [
    "group",
    "client",
    "threshold",
    "shares",
    "index",
    "holder",
    "recipient",
    "key-fingerprint",
    "commitment",
];

/// What went wrong, naming the file (`origin`) and never secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CustodyError {
    /// [`split`] was asked for a threshold below 2.
    #[error("--threshold must be at least 2 (got {0}): a single share would be the key itself")]
    ThresholdTooLow(usize),
    /// [`split`] was asked for a threshold above the number of holders.
    #[error("--threshold {threshold} is more than the {shares} holder(s)")]
    ThresholdAboveShares {
        /// The threshold asked for.
        threshold: usize,
        /// The number of holders.
        shares: usize,
    },
    /// [`split`] was given more than [`MAX_SHARES`] holders.
    #[error("at most {MAX_SHARES} holders (GF(256) has 255 share points), got {0}")]
    TooManyHolders(usize),
    /// Two holders given to [`split`] have the same name.
    #[error("holder {0} is named twice; holder names must be distinct")]
    DuplicateHolder(String),
    /// A holder is not `NAME=age1...`, or its name is not 1-64 characters
    /// of `[A-Za-z0-9._-]`; the text shows the name only when it is short
    /// and does not look like an age secret key.
    #[error("--holder {0}: expected NAME=age1..., NAME 1-64 characters of [A-Za-z0-9._-]")]
    BadHolder(String),
    /// A holder's public key is not an age X25519 recipient.
    #[error("--holder {name}: not an age X25519 public key (age1...): {problem}")]
    BadRecipient {
        /// The holder's name.
        name: String,
        /// age's reason.
        problem: &'static str,
    },
    /// vsss-rs refused to split, or its shares did not have the expected
    /// layout or did not rebuild the key in the self-check.
    #[error("splitting failed: {0}")]
    Split(String),
    /// age could not encrypt a share to its holder.
    #[error("encrypting the share for {holder} failed: {problem}")]
    Encrypt {
        /// The holder's name.
        holder: String,
        /// age's reason.
        problem: String,
    },
    /// A share or identity file could not be opened or read.
    #[error("{origin}: cannot read: {source}")]
    Io {
        /// The file.
        origin: String,
        /// The error from the file system.
        source: std::io::Error,
    },
    /// A share or identity file is over [`MAX_FILE_BYTES`].
    #[error("{origin}: larger than 64 KiB, not a share or identity file")]
    TooLarge {
        /// The file.
        origin: String,
    },
    /// The first line is neither [`SHARE_MAGIC`] nor [`PLAIN_MAGIC`].
    #[error(
        "{origin}: not a jose-binding custody share (its first line must be {SHARE_MAGIC:?} or {PLAIN_MAGIC:?})"
    )]
    NotAShare {
        /// The file.
        origin: String,
    },
    /// A share breaks the file format: a missing, repeated, unknown or
    /// invalid field, a bad value, no armored age file, an index out of
    /// range, or points that do not interpolate.
    #[error("{origin}: malformed share: {problem}")]
    Malformed {
        /// The file.
        origin: String,
        /// What is wrong, never the share's value.
        problem: String,
    },
    /// An encrypted share was to be opened without any identity.
    #[error("{origin} is encrypted to {recipient} (holder {holder}): give that holder's age identity with --identity, or a share they decrypted")]
    NeedIdentity {
        /// The share file.
        origin: String,
        /// The holder the share is for.
        holder: String,
        /// The holder's age public key.
        recipient: String,
    },
    /// None of the given identities is the share's recipient.
    #[error("{origin}: wrong identity: the share is encrypted to {recipient} (holder {holder}) and none of the given identities is that key")]
    WrongIdentity {
        /// The share file.
        origin: String,
        /// The holder the share is for.
        holder: String,
        /// The holder's age public key.
        recipient: String,
    },
    /// The right identity was given but the age file does not decode,
    /// authenticate or decrypt, or its payload is too large or not text.
    #[error("{origin}: corrupted: {problem}")]
    Corrupted {
        /// The share file.
        origin: String,
        /// What failed, in one line.
        problem: String,
    },
    /// The decrypted share disagrees with the file's visible header: the
    /// header was altered.
    #[error("{origin}: the visible header says {field} {outer:?} but the encrypted share says {inner:?}: the header was altered")]
    HeaderMismatch {
        /// The share file.
        origin: String,
        /// The first field that differs.
        field: &'static str,
        /// Its value in the visible header.
        outer: String,
        /// Its value in the encrypted share.
        inner: String,
    },
    /// [`combine`] was given no share.
    #[error("no shares given")]
    NoShares,
    /// A share given to [`combine`] is of another client's key.
    #[error("{origin} is a share of client {found}'s key, not of {want}'s")]
    OtherClient {
        /// The share.
        origin: String,
        /// The client the share names.
        found: String,
        /// The client being rebuilt.
        want: String,
    },
    /// Shares given to [`combine`] come from different splits.
    #[error("{first} and {second} come from different splits (groups {first_group} and {second_group}); combine shares of one split only")]
    OtherGroup {
        /// The first share given.
        first: String,
        /// A share of another group.
        second: String,
        /// The first share's group.
        first_group: String,
        /// The other share's group.
        second_group: String,
    },
    /// Shares of one group disagree on threshold, share count, commitment,
    /// key fingerprint or key length.
    #[error(
        "{first} and {second} claim the same group but disagree on {field}: a share was altered"
    )]
    Disagree {
        /// The first share given.
        first: String,
        /// The share that disagrees with it.
        second: String,
        /// What they disagree on.
        field: &'static str,
    },
    /// Two shares given to [`combine`] have the same index.
    #[error("{first} and {second} are both share #{index}; give each share once")]
    DuplicateIndex {
        /// The earlier share.
        first: String,
        /// The later one.
        second: String,
        /// The index both have.
        index: u8,
    },
    /// Fewer shares than the split's threshold were given.
    #[error(
        "{got} share(s) given, but this split needs {need} of its {shares} to rebuild the key"
    )]
    BelowThreshold {
        /// Shares given.
        got: usize,
        /// The split's threshold.
        need: u8,
        /// Shares the split made.
        shares: u8,
    },
    /// The rebuilt key fails the commitment or fingerprint check: a share
    /// is corrupted, forged or altered.
    #[error("the rebuilt key does not match the commitment stored with the shares: a share is corrupted or was altered; nothing was written")]
    CommitmentMismatch,
}

/// A split's random identifier (16 bytes, hex in files).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId([u8; 16]);

impl GroupId {
    /// A fresh identifier from the operating system's RNG, for one split.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        GroupId(id)
    }

    /// The 16 bytes, as the commitment covers them.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::client_id::ClientId;
    use crate::protocol::schedule::SoftwareRootKey;
    use age::secrecy::ExposeSecret;

    fn holders(n: usize) -> (Vec<age::x25519::Identity>, Vec<Holder>) {
        let ids: Vec<_> = (0..n).map(|_| age::x25519::Identity::generate()).collect();
        let hs = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                format!("h{i}={}", id.to_public())
                    .parse::<Holder>()
                    .unwrap()
            })
            .collect();
        (ids, hs)
    }

    fn client() -> ClientId {
        ClientId::new("client7").unwrap()
    }

    fn open_all(split: &Split, ids: &[age::x25519::Identity]) -> Vec<PlainShare> {
        split
            .shares
            .iter()
            .map(|s| s.decrypt(ids).unwrap())
            .collect()
    }

    fn subsets(n: usize, t: usize) -> Vec<Vec<usize>> {
        (0u32..1 << n)
            .filter(|m| m.count_ones() as usize == t)
            .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
            .collect()
    }

    #[test]
    fn every_3_subset_of_5_rebuilds_the_key() {
        let key = SoftwareRootKey::generate();
        let (ids, hs) = holders(5);
        let split = split(&client(), &key, 3, &hs).unwrap();
        assert_eq!(split.shares.len(), 5);
        let plain = open_all(&split, &ids);
        let all = subsets(5, 3);
        assert_eq!(all.len(), 10);
        for subset in all {
            let chosen: Vec<PlainShare> = subset.iter().map(|&i| plain[i].clone()).collect();
            let back = combine(&client(), &chosen).unwrap();
            assert_eq!(back.key.expose(), key.expose(), "{subset:?}");
            assert_eq!(back.group, split.group);
            assert_eq!(back.used.len(), 3);
        }
        // More than t shares work too, in any order.
        let mut four: Vec<_> = plain[1..].to_vec();
        four.reverse();
        assert_eq!(
            combine(&client(), &four).unwrap().key.expose(),
            key.expose()
        );
    }

    #[test]
    fn keys_of_every_allowed_length_and_extreme_parameters() {
        for len in [32usize, 48, 64] {
            let bytes: Vec<u8> = (0..len as u8).collect();
            let key = SoftwareRootKey::new(&bytes).unwrap();
            let (ids, hs) = holders(2);
            let split = split(&client(), &key, 2, &hs).unwrap();
            let plain = open_all(&split, &ids);
            assert_eq!(plain[0].value().len(), len);
            assert_eq!(
                combine(&client(), &plain).unwrap().key.expose(),
                key.expose()
            );
        }
        // n = t = 255 without encryption cost in a loop: one identity for all.
        let id = age::x25519::Identity::generate();
        let hs: Vec<Holder> = (0..255)
            .map(|i| Holder::new(&format!("h{i}"), &id.to_public().to_string()).unwrap())
            .collect();
        let key = SoftwareRootKey::generate();
        let split = split(&client(), &key, 255, &hs).unwrap();
        let plain = open_all(&split, std::slice::from_ref(&id));
        assert_eq!(
            combine(&client(), &plain).unwrap().key.expose(),
            key.expose()
        );
        assert!(matches!(
            combine(&client(), &plain[1..]),
            Err(CustodyError::BelowThreshold {
                got: 254,
                need: 255,
                ..
            })
        ));
    }

    #[test]
    fn split_refuses_bad_parameters() {
        let key = SoftwareRootKey::generate();
        let (_, hs) = holders(3);
        assert!(matches!(
            split(&client(), &key, 1, &hs),
            Err(CustodyError::ThresholdTooLow(1))
        ));
        assert!(matches!(
            split(&client(), &key, 4, &hs),
            Err(CustodyError::ThresholdAboveShares {
                threshold: 4,
                shares: 3
            })
        ));
        let mut dup = hs.clone();
        dup[2] = Holder::new("h0", &hs[2].recipient().to_string()).unwrap();
        assert!(matches!(
            split(&client(), &key, 2, &dup),
            Err(CustodyError::DuplicateHolder(n)) if n == "h0"
        ));
        let many: Vec<Holder> = (0..256)
            .map(|i| Holder::new(&format!("h{i}"), &hs[0].recipient().to_string()).unwrap())
            .collect();
        assert!(matches!(
            split(&client(), &key, 2, &many),
            Err(CustodyError::TooManyHolders(256))
        ));
    }

    #[test]
    fn holder_syntax() {
        let r = age::x25519::Identity::generate().to_public().to_string();
        let h: Holder = format!("alice={r}").parse().unwrap();
        assert_eq!(h.name(), "alice");
        assert_eq!(h.recipient().to_string(), r);
        for bad in [
            format!("={r}"),
            format!("a b={r}"),
            format!("a/b={r}"),
            "alice".to_owned(),
            "alice=age1nope".to_owned(),
            "alice=AGE-SECRET-KEY-1XYZ".to_owned(),
        ] {
            assert!(bad.parse::<Holder>().is_err(), "{bad}");
        }
        // A secret key given by mistake is never echoed.
        let secret = age::x25519::Identity::generate().to_string();
        for bad in [
            secret.expose_secret().to_owned(),
            format!("alice={}", secret.expose_secret()),
            format!("{}=x", secret.expose_secret()),
        ] {
            let err = bad.parse::<Holder>().unwrap_err().to_string();
            assert!(!err.contains(&secret.expose_secret()[20..]), "{err}");
        }
    }

    #[test]
    fn below_threshold_refuses_and_a_forged_threshold_is_caught() {
        let key = SoftwareRootKey::generate();
        let (ids, hs) = holders(5);
        let split = split(&client(), &key, 3, &hs).unwrap();
        let plain = open_all(&split, &ids);
        let err = combine(&client(), &plain[..2]).unwrap_err();
        assert!(matches!(
            err,
            CustodyError::BelowThreshold {
                got: 2,
                need: 3,
                shares: 5
            }
        ));
        assert!(err.to_string().contains("needs 3 of its 5"), "{err}");
        // Lowering the threshold in two (decrypted) shares interpolates a
        // wrong key: the commitment catches it.
        let mut two = plain[..2].to_vec();
        for s in &mut two {
            s.meta.threshold = 2;
        }
        assert!(matches!(
            combine(&client(), &two),
            Err(CustodyError::CommitmentMismatch)
        ));
        assert!(matches!(
            combine(&client(), &[]),
            Err(CustodyError::NoShares)
        ));
    }

    #[test]
    fn mixed_groups_duplicates_and_other_clients_refuse() {
        let key = SoftwareRootKey::generate();
        let (ids, hs) = holders(5);
        let a = open_all(&split(&client(), &key, 3, &hs).unwrap(), &ids);
        let b = open_all(&split(&client(), &key, 3, &hs).unwrap(), &ids);
        let mixed = vec![a[0].clone(), a[1].clone(), b[2].clone()];
        let err = combine(&client(), &mixed).unwrap_err();
        assert!(matches!(err, CustodyError::OtherGroup { .. }), "{err}");
        assert!(err.to_string().contains("different splits"), "{err}");

        let dup = vec![a[0].clone(), a[1].clone(), a[1].clone()];
        assert!(matches!(
            combine(&client(), &dup),
            Err(CustodyError::DuplicateIndex { index: 2, .. })
        ));

        let other = ClientId::new("other").unwrap();
        assert!(matches!(
            combine(&other, &a[..3]),
            Err(CustodyError::OtherClient { .. })
        ));
    }

    #[test]
    fn a_flipped_bit_in_a_share_value_is_detected() {
        let key = SoftwareRootKey::generate();
        let (ids, hs) = holders(5);
        let split = split(&client(), &key, 3, &hs).unwrap();
        let plain = open_all(&split, &ids);
        for byte in [0usize, 17, 31] {
            for bit in [0u8, 7] {
                let mut bad = plain[..3].to_vec();
                bad[1].value[byte] ^= 1 << bit;
                assert!(matches!(
                    combine(&client(), &bad),
                    Err(CustodyError::CommitmentMismatch)
                ));
                // Also through the text form a holder would hand over.
                let text = bad[1].to_text();
                let reparsed = PlainShare::parse(&text, "bad.plain").unwrap();
                let set = vec![plain[0].clone(), reparsed, plain[2].clone()];
                assert!(matches!(
                    combine(&client(), &set),
                    Err(CustodyError::CommitmentMismatch)
                ));
            }
        }
        // A flipped index is caught too.
        let mut bad = plain[..3].to_vec();
        bad[0].meta.index = 4;
        assert!(matches!(
            combine(&client(), &bad),
            Err(CustodyError::CommitmentMismatch)
        ));
    }

    #[test]
    fn a_flipped_bit_in_the_armored_ciphertext_is_detected() {
        let key = SoftwareRootKey::generate();
        let (ids, hs) = holders(2);
        let split = split(&client(), &key, 2, &hs).unwrap();
        let text = split.shares[0].to_text();
        let begin = text.find(ARMOR_BEGIN).unwrap() + ARMOR_BEGIN.len() + 1;
        let end = text.find(ARMOR_END).unwrap();
        let mut flipped = 0;
        // Every character of the armored body, one bit each (skipping newlines).
        for pos in begin..end {
            if text.as_bytes()[pos] == b'\n' {
                continue;
            }
            for bit in [0u8, 5] {
                let mut bytes = text.clone().into_bytes();
                bytes[pos] ^= 1 << bit;
                let Ok(s) = String::from_utf8(bytes) else {
                    continue;
                };
                let file = ShareFile::parse(&s, "x.share").unwrap();
                let err = file.open(&ids).unwrap_err();
                assert!(
                    matches!(err, CustodyError::Corrupted { .. }),
                    "pos {pos} bit {bit}: {err}"
                );
                flipped += 1;
            }
        }
        assert!(flipped > 500, "{flipped}");
    }

    #[test]
    fn the_visible_header_is_bound_to_the_payload() {
        let key = SoftwareRootKey::generate();
        let (ids, hs) = holders(3);
        let split = split(&client(), &key, 2, &hs).unwrap();
        let text = split.shares[0].to_text();
        for (from, to) in [
            ("index: 1", "index: 3"),
            ("threshold: 2", "threshold: 3"),
            ("holder: h0", "holder: h2"),
        ] {
            let altered = text.replace(from, to);
            assert_ne!(altered, text);
            let err = ShareFile::parse(&altered, "a.share")
                .unwrap()
                .open(&ids)
                .unwrap_err();
            assert!(
                matches!(err, CustodyError::HeaderMismatch { .. }),
                "{from}: {err}"
            );
        }
        let group = split.group.to_string();
        let other = GroupId::random().to_string();
        let err = ShareFile::parse(&text.replace(&group, &other), "a.share")
            .unwrap()
            .open(&ids)
            .unwrap_err();
        assert!(matches!(
            err,
            CustodyError::HeaderMismatch { field: "group", .. }
        ));
    }

    #[test]
    fn wrong_or_missing_identity_refuses() {
        let key = SoftwareRootKey::generate();
        let (ids, hs) = holders(3);
        let split = split(&client(), &key, 2, &hs).unwrap();
        let stranger = age::x25519::Identity::generate();
        let err = split.shares[0]
            .decrypt(std::slice::from_ref(&stranger))
            .unwrap_err();
        assert!(matches!(err, CustodyError::WrongIdentity { .. }), "{err}");
        assert!(err.to_string().contains("wrong identity"), "{err}");
        // Bob's key does not open Alice's share.
        assert!(matches!(
            split.shares[0].decrypt(&ids[1..]),
            Err(CustodyError::WrongIdentity { .. })
        ));
        assert!(matches!(
            split.shares[0].decrypt(&[]),
            Err(CustodyError::NeedIdentity { .. })
        ));
        // A header that names Bob's key over Alice's ciphertext: Bob's identity
        // is tried and fails, which is corruption, not a wrong identity.
        let text = split.shares[0].to_text().replace(
            &hs[0].recipient().to_string(),
            &hs[1].recipient().to_string(),
        );
        let err = ShareFile::parse(&text, "x")
            .unwrap()
            .open(&ids)
            .unwrap_err();
        assert!(matches!(err, CustodyError::Corrupted { .. }), "{err}");
    }

    #[test]
    fn files_round_trip_and_never_show_the_value() {
        let key = SoftwareRootKey::generate();
        let (ids, hs) = holders(3);
        let split = split(&client(), &key, 2, &hs).unwrap();
        let text = split.shares[1].to_text();
        assert!(text.starts_with(SHARE_MAGIC));
        for needle in [
            "client: client7",
            "threshold: 2",
            "shares: 3",
            "index: 2",
            "holder: h1",
            "-----BEGIN AGE ENCRYPTED FILE-----",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
        let parsed = match ShareFile::parse(&text, "f").unwrap() {
            ShareFile::Encrypted(e) => e,
            ShareFile::Plain(_) => panic!("encrypted"),
        };
        assert_eq!(parsed.meta, split.shares[1].meta);
        let plain = parsed.decrypt(&ids).unwrap();
        let value_b64 = crate::protocol::b64::encode(plain.value());
        assert!(!text.contains(&value_b64));
        assert!(!format!("{plain:?}").contains(&value_b64));
        assert!(!format!("{split:?}").contains(&value_b64));
        let ptext = plain.to_text();
        assert!(ptext.starts_with(PLAIN_MAGIC));
        assert!(ptext.contains(&value_b64));
        let back = PlainShare::parse(&ptext, "p").unwrap();
        assert_eq!(back.meta, plain.meta);
        assert_eq!(back.value(), plain.value());
        assert!(matches!(
            ShareFile::parse(&ptext, "p").unwrap(),
            ShareFile::Plain(_)
        ));
        // Mixed kinds combine.
        let other = split.shares[0].decrypt(&ids).unwrap();
        assert_eq!(
            combine(&client(), &[other, back]).unwrap().key.expose(),
            key.expose()
        );
    }

    #[test]
    fn malformed_files_give_clear_errors() {
        let key = SoftwareRootKey::generate();
        let (_, hs) = holders(2);
        let split = split(&client(), &key, 2, &hs).unwrap();
        let text = split.shares[0].to_text();
        let cases: Vec<(String, &str)> = vec![
            ("hello\n".into(), "not a jose-binding custody share"),
            (text.replace("index: 1\n", ""), "no index line"),
            (text.replace("index: 1", "index: 0"), "index 0"),
            (
                text.replace("index: 1", "index: x"),
                "index is not a number",
            ),
            (text.replace("threshold: 2", "threshold: 1"), "threshold 1"),
            (
                text.replace("index: 1\n", "index: 1\nindex: 2\n"),
                "appears twice",
            ),
            (text.replace("index: 1\n", "colour: red\n"), "unknown field"),
            (
                text.replace("index: 1\n", &format!("{}: 1\n", key.to_b64url().as_str())),
                "unknown field of 43 characters (not shown)",
            ),
            (text.replace("index: 1\n", "index 1\n"), "not `name: value`"),
            (text.replace("client: client7", "client: a b"), "client is"),
            (
                text.replace(&split.group.to_string(), "abcd"),
                "group is not 32",
            ),
            (
                text.replace("\n\n-----BEGIN", "\n-----BEGIN"),
                "no empty line between the header",
            ),
            (
                text.replace("-----END AGE ENCRYPTED FILE-----", ""),
                "armored age file",
            ),
        ];
        for (bad, want) in cases {
            let err = ShareFile::parse(&bad, "s.share").unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(err.starts_with("s.share"), "{err}");
            assert!(!err.contains(&key.to_b64url()[..16]), "{err}");
        }
    }
}
