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
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use vsss_rs::Gf256;
use zeroize::{Zeroize, Zeroizing};

use crate::client_id::{self, ClientId};
use crate::schedule::{RootKey, SoftwareRootKey, ROOT_KEY_MAX, ROOT_KEY_MIN};

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
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";

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
pub enum CustodyError {
    #[error("--threshold must be at least 2 (got {0}): a single share would be the key itself")]
    ThresholdTooLow(usize),
    #[error("--threshold {threshold} is more than the {shares} holder(s)")]
    ThresholdAboveShares { threshold: usize, shares: usize },
    #[error("at most {MAX_SHARES} holders (GF(256) has 255 share points), got {0}")]
    TooManyHolders(usize),
    #[error("holder {0} is named twice; holder names must be distinct")]
    DuplicateHolder(String),
    #[error("--holder {0}: expected NAME=age1..., NAME 1-64 characters of [A-Za-z0-9._-]")]
    BadHolder(String),
    #[error("--holder {name}: not an age X25519 public key (age1...): {problem}")]
    BadRecipient { name: String, problem: &'static str },
    #[error("splitting failed: {0}")]
    Split(String),
    #[error("encrypting the share for {holder} failed: {problem}")]
    Encrypt { holder: String, problem: String },
    #[error("{origin}: cannot read: {source}")]
    Io {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: larger than 64 KiB, not a share or identity file")]
    TooLarge { origin: String },
    #[error(
        "{origin}: not a jose-binding custody share (its first line must be {SHARE_MAGIC:?} or {PLAIN_MAGIC:?})"
    )]
    NotAShare { origin: String },
    #[error("{origin}: malformed share: {problem}")]
    Malformed { origin: String, problem: String },
    #[error("{origin}: {problem}")]
    BadIdentityFile { origin: String, problem: String },
    #[error("{origin} is encrypted to {recipient} (holder {holder}): give that holder's age identity with --identity, or a share they decrypted")]
    NeedIdentity {
        origin: String,
        holder: String,
        recipient: String,
    },
    #[error("{origin}: wrong identity: the share is encrypted to {recipient} (holder {holder}) and none of the given identities is that key")]
    WrongIdentity {
        origin: String,
        holder: String,
        recipient: String,
    },
    #[error("{origin}: corrupted: {problem}")]
    Corrupted { origin: String, problem: String },
    #[error("{origin}: the visible header says {field} {outer:?} but the encrypted share says {inner:?}: the header was altered")]
    HeaderMismatch {
        origin: String,
        field: &'static str,
        outer: String,
        inner: String,
    },
    #[error("no shares given")]
    NoShares,
    #[error("{origin} is a share of client {found}'s key, not of {want}'s")]
    OtherClient {
        origin: String,
        found: String,
        want: String,
    },
    #[error("{first} and {second} come from different splits (groups {first_group} and {second_group}); combine shares of one split only")]
    OtherGroup {
        first: String,
        second: String,
        first_group: String,
        second_group: String,
    },
    #[error(
        "{first} and {second} claim the same group but disagree on {field}: a share was altered"
    )]
    Disagree {
        first: String,
        second: String,
        field: &'static str,
    },
    #[error("{first} and {second} are both share #{index}; give each share once")]
    DuplicateIndex {
        first: String,
        second: String,
        index: u8,
    },
    #[error(
        "{got} share(s) given, but this split needs {need} of its {shares} to rebuild the key"
    )]
    BelowThreshold { got: usize, need: u8, shares: u8 },
    #[error("the rebuilt key does not match the commitment stored with the shares: a share is corrupted or was altered; nothing was written")]
    CommitmentMismatch,
}

/// A split's random identifier (16 bytes, hex in files).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId([u8; 16]);

impl GroupId {
    pub fn random() -> Self {
        use rand::RngCore;
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        GroupId(id)
    }

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

/// A share holder: a name (1-64 characters of `[A-Za-z0-9._-]`, used in
/// file names) and an age X25519 public key. Parses from `NAME=age1...`.
#[derive(Clone)]
pub struct Holder {
    name: String,
    recipient: age::x25519::Recipient,
}

impl Holder {
    pub fn new(name: &str, recipient: &str) -> Result<Self, CustodyError> {
        if !client_id::is_valid(name) {
            // Name only: a mistaken value may be a secret key; never echo it.
            let shown = if name.len() <= 64 && !name.contains("SECRET") {
                format!("name {name:?}")
            } else {
                "name".to_owned()
            };
            return Err(CustodyError::BadHolder(shown));
        }
        let recipient = age::x25519::Recipient::from_str(recipient.trim()).map_err(|problem| {
            CustodyError::BadRecipient {
                name: name.to_owned(),
                problem,
            }
        })?;
        Ok(Holder {
            name: name.to_owned(),
            recipient,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn recipient(&self) -> &age::x25519::Recipient {
        &self.recipient
    }
}

impl FromStr for Holder {
    type Err = CustodyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, recipient) = s
            .split_once('=')
            .ok_or_else(|| CustodyError::BadHolder("value has no '='".into()))?;
        Holder::new(name, recipient)
    }
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Holder({}={})", self.name, self.recipient)
    }
}

/// The public facts about one share: the visible header of a share file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMeta {
    pub group: GroupId,
    pub client: ClientId,
    pub threshold: u8,
    pub shares: u8,
    pub index: u8,
    pub holder: String,
    /// The holder's age public key, `age1...`.
    pub recipient: String,
    /// [`RootKey::fingerprint`] of the split key, 16 hex digits.
    pub key_fingerprint: String,
    pub commitment: [u8; 32],
}

impl ShareMeta {
    fn field(&self, name: &str) -> String {
        match name {
            "group" => self.group.to_string(),
            "client" => self.client.to_string(),
            "threshold" => self.threshold.to_string(),
            "shares" => self.shares.to_string(),
            "index" => self.index.to_string(),
            "holder" => self.holder.clone(),
            "recipient" => self.recipient.clone(),
            "key-fingerprint" => self.key_fingerprint.clone(),
            "commitment" => hex::encode(self.commitment),
            _ => String::new(),
        }
    }

    fn write_fields(&self, out: &mut String) {
        for name in FIELDS {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&self.field(name));
            out.push('\n');
        }
    }

    fn parse(fields: &Fields<'_>, origin: &str) -> Result<ShareMeta, CustodyError> {
        let bad = |problem: String| CustodyError::Malformed {
            origin: origin.to_owned(),
            problem,
        };
        let get = |name: &str| {
            fields
                .get(name)
                .ok_or_else(|| bad(format!("no {name} line")))
        };
        let number = |name: &str| -> Result<u8, CustodyError> {
            let v = get(name)?;
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("{name} is not a number 1-255")));
            }
            v.parse::<u8>()
                .map_err(|_| bad(format!("{name} is not a number 1-255")))
        };
        let hex_of = |name: &str, len: usize| -> Result<Vec<u8>, CustodyError> {
            let v = get(name)?;
            match hex::decode(v) {
                Ok(b) if b.len() == len && v.bytes().all(|c| !c.is_ascii_uppercase()) => Ok(b),
                _ => Err(bad(format!(
                    "{name} is not {} lowercase hex digits",
                    2 * len
                ))),
            }
        };
        let mut group = [0u8; 16];
        group.copy_from_slice(&hex_of("group", 16)?);
        let mut commitment = [0u8; 32];
        commitment.copy_from_slice(&hex_of("commitment", 32)?);
        let key_fingerprint = hex::encode(hex_of("key-fingerprint", 8)?);
        let client = ClientId::new(get("client")?)
            .map_err(|_| bad("client is not 1-64 characters of [A-Za-z0-9._-]".into()))?;
        let (threshold, shares, index) =
            (number("threshold")?, number("shares")?, number("index")?);
        if threshold < 2 || threshold > shares {
            return Err(bad(format!(
                "threshold {threshold} is not between 2 and shares ({shares})"
            )));
        }
        if index == 0 || index > shares {
            return Err(bad(format!(
                "index {index} is not between 1 and shares ({shares})"
            )));
        }
        let holder = get("holder")?;
        if !client_id::is_valid(holder) {
            return Err(bad("holder is not 1-64 characters of [A-Za-z0-9._-]".into()));
        }
        let recipient = age::x25519::Recipient::from_str(get("recipient")?)
            .map_err(|_| bad("recipient is not an age X25519 public key (age1...)".into()))?
            .to_string();
        Ok(ShareMeta {
            group: GroupId(group),
            client,
            threshold,
            shares,
            index,
            holder: holder.to_owned(),
            recipient,
            key_fingerprint,
            commitment,
        })
    }
}

/// `name: value` lines of a header, each name once.
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    fn parse(
        lines: impl Iterator<Item = &'a str>,
        allowed: &[&str],
        origin: &str,
    ) -> Result<Self, CustodyError> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for line in lines {
            let line = line.trim_end_matches('\r');
            if line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once(": ") else {
                return Err(CustodyError::Malformed {
                    origin: origin.to_owned(),
                    problem: "a header line is not `name: value`".into(),
                });
            };
            if !allowed.contains(&name) {
                return Err(CustodyError::Malformed {
                    origin: origin.to_owned(),
                    // A name that long may be the secret value on a
                    // mangled line; say how long, not what.
                    problem: if name.chars().count() <= 32 {
                        format!("unknown field {name:?}")
                    } else {
                        format!(
                            "unknown field of {} characters (not shown)",
                            name.chars().count()
                        )
                    },
                });
            }
            if out.iter().any(|(n, _)| *n == name) {
                return Err(CustodyError::Malformed {
                    origin: origin.to_owned(),
                    problem: format!("field {name} appears twice"),
                });
            }
            out.push((name, value.trim()));
        }
        Ok(Fields(out))
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// A decrypted share: its metadata and the share value (secret).
#[derive(Clone)]
pub struct PlainShare {
    pub meta: ShareMeta,
    value: Zeroizing<Vec<u8>>,
    origin: String,
}

impl PlainShare {
    /// The share's y bytes (one per key byte). Secret: never print them.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Where the share came from (a file name), for error messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn with_origin(mut self, origin: &str) -> Self {
        self.origin = origin.to_owned();
        self
    }

    /// The decrypted-share format (module doc). Holds the secret value.
    pub fn to_text(&self) -> Zeroizing<String> {
        let m = &self.meta;
        let mut out = String::with_capacity(1024);
        out.push_str(PLAIN_MAGIC);
        out.push('\n');
        out.push_str(&format!(
            "# DECRYPTED share {} of {} of {}'s root key (holder {}); any {} rebuild it.\n\
             # Keep it secret, hand it over a trusted channel, delete it after `jwt-server keys combine`.\n",
            m.index, m.shares, m.client, m.holder, m.threshold
        ));
        m.write_fields(&mut out);
        out.push_str("value: ");
        out.push_str(&Zeroizing::new(crate::b64::encode(&self.value)));
        out.push('\n');
        Zeroizing::new(out)
    }

    /// Parses the decrypted-share format.
    pub fn parse(text: &str, origin: &str) -> Result<PlainShare, CustodyError> {
        let mut lines = text.lines();
        if lines.next().map(|l| l.trim_end_matches('\r')) != Some(PLAIN_MAGIC) {
            return Err(CustodyError::NotAShare {
                origin: origin.to_owned(),
            });
        }
        let mut allowed = FIELDS.to_vec();
        allowed.push("value");
        let fields = Fields::parse(lines.filter(|l| !l.trim().is_empty()), &allowed, origin)?;
        let meta = ShareMeta::parse(&fields, origin)?;
        let bad = |problem: &str| CustodyError::Malformed {
            origin: origin.to_owned(),
            problem: problem.to_owned(),
        };
        let value = Zeroizing::new(
            crate::b64::decode(fields.get("value").ok_or_else(|| bad("no value line"))?)
                .ok_or_else(|| bad("value is not unpadded base64url"))?,
        );
        if !(ROOT_KEY_MIN..=ROOT_KEY_MAX).contains(&value.len()) {
            return Err(bad("value is not 32 to 64 bytes"));
        }
        Ok(PlainShare {
            meta,
            value,
            origin: origin.to_owned(),
        })
    }

    fn encrypt(&self, recipient: &age::x25519::Recipient) -> Result<EncryptedShare, CustodyError> {
        let fail = |problem: String| CustodyError::Encrypt {
            holder: self.meta.holder.clone(),
            problem,
        };
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .map_err(|e| fail(e.to_string()))?;
        let mut armored = Vec::with_capacity(2048);
        let armor = ArmoredWriter::wrap_output(&mut armored, Format::AsciiArmor)
            .map_err(|e| fail(e.to_string()))?;
        let mut writer = encryptor
            .wrap_output(armor)
            .map_err(|e| fail(e.to_string()))?;
        writer
            .write_all(self.to_text().as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        writer
            .finish()
            .and_then(|armor| armor.finish())
            .map_err(|e| fail(e.to_string()))?;
        let armored = String::from_utf8(armored).map_err(|e| fail(e.to_string()))?;
        Ok(EncryptedShare {
            meta: self.meta.clone(),
            armored: armored.trim().to_owned(),
            origin: self.origin.clone(),
        })
    }
}

impl fmt::Debug for PlainShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainShare")
            .field("meta", &self.meta)
            .field("value", &"<secret>")
            .field("origin", &self.origin)
            .finish()
    }
}

/// A share encrypted to its holder: the file `split` writes.
#[derive(Clone, Debug)]
pub struct EncryptedShare {
    pub meta: ShareMeta,
    armored: String,
    origin: String,
}

impl EncryptedShare {
    /// The share file (module doc). Safe to print and store: the value is encrypted.
    pub fn to_text(&self) -> String {
        let m = &self.meta;
        let mut out = String::with_capacity(2048);
        out.push_str(SHARE_MAGIC);
        out.push('\n');
        out.push_str(&format!(
            "# share {} of {} of {}'s root key, encrypted to {}; any {} rebuild it (jwt-server keys combine)\n",
            m.index, m.shares, m.client, m.holder, m.threshold
        ));
        m.write_fields(&mut out);
        out.push('\n');
        out.push_str(&self.armored);
        out.push('\n');
        out
    }

    /// The ASCII-armored age file.
    pub fn armored(&self) -> &str {
        &self.armored
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Parses a share file (module doc).
    pub fn parse(text: &str, origin: &str) -> Result<EncryptedShare, CustodyError> {
        let not_a_share = || CustodyError::NotAShare {
            origin: origin.to_owned(),
        };
        let (first, rest) = text.split_once('\n').ok_or_else(not_a_share)?;
        if first.trim_end_matches('\r') != SHARE_MAGIC {
            return Err(not_a_share());
        }
        let (header, body) = match rest.find("\n\n") {
            Some(at) => (&rest[..at], &rest[at + 2..]),
            None => {
                return Err(CustodyError::Malformed {
                    origin: origin.to_owned(),
                    problem: "no empty line between the header and the age file".into(),
                })
            }
        };
        let fields = Fields::parse(header.lines(), &FIELDS, origin)?;
        let meta = ShareMeta::parse(&fields, origin)?;
        let armored = body.trim();
        if !armored.starts_with(ARMOR_BEGIN) || !armored.ends_with(ARMOR_END) {
            return Err(CustodyError::Malformed {
                origin: origin.to_owned(),
                problem: format!("the header is not followed by an armored age file ({ARMOR_BEGIN} ... {ARMOR_END})"),
            });
        }
        Ok(EncryptedShare {
            meta,
            armored: armored.to_owned(),
            origin: origin.to_owned(),
        })
    }

    /// Decrypts with whichever of `identities` is the share's recipient, and
    /// checks the payload against the visible header.
    pub fn decrypt(
        &self,
        identities: &[age::x25519::Identity],
    ) -> Result<PlainShare, CustodyError> {
        let origin = &self.origin;
        if identities.is_empty() {
            return Err(CustodyError::NeedIdentity {
                origin: origin.clone(),
                holder: self.meta.holder.clone(),
                recipient: self.meta.recipient.clone(),
            });
        }
        let Some(identity) = identities
            .iter()
            .find(|i| i.to_public().to_string() == self.meta.recipient)
        else {
            return Err(CustodyError::WrongIdentity {
                origin: origin.clone(),
                holder: self.meta.holder.clone(),
                recipient: self.meta.recipient.clone(),
            });
        };
        let corrupted = |problem: String| CustodyError::Corrupted {
            origin: origin.clone(),
            problem,
        };
        let decryptor = age::Decryptor::new(ArmoredReader::new(self.armored.as_bytes()))
            .map_err(|e| corrupted(age_problem(&e)))?;
        let reader = decryptor
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => corrupted(format!(
                    "holder {}'s identity does not open the age header (its recipient stanza is damaged)",
                    self.meta.holder
                )),
                other => corrupted(age_problem(&other)),
            })?;
        let mut payload = Zeroizing::new(Vec::with_capacity(MAX_PAYLOAD_BYTES + 1));
        reader
            .take(MAX_PAYLOAD_BYTES as u64 + 1)
            .read_to_end(&mut payload)
            .map_err(|_| {
                corrupted("the encrypted share fails to authenticate (ciphertext damaged)".into())
            })?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(corrupted("the encrypted payload is too large".into()));
        }
        let text = std::str::from_utf8(&payload)
            .map_err(|_| corrupted("the decrypted share is not text".into()))?;
        let inner = PlainShare::parse(text, &format!("{origin} (decrypted)"))?;
        for name in FIELDS {
            let (outer, inner_v) = (self.meta.field(name), inner.meta.field(name));
            if outer != inner_v {
                return Err(CustodyError::HeaderMismatch {
                    origin: origin.clone(),
                    field: name,
                    outer,
                    inner: inner_v,
                });
            }
        }
        Ok(inner.with_origin(origin))
    }
}

/// One line on why age refused a file (age's own texts can span lines).
fn age_problem(e: &age::DecryptError) -> String {
    use age::DecryptError as E;
    match e {
        E::Io(io) => format!("the armored ciphertext does not decode ({io})"),
        E::InvalidHeader | E::UnknownFormat => "the age header is damaged".into(),
        E::InvalidMac => "the age header fails to authenticate (header damaged)".into(),
        E::DecryptionFailed | E::KeyDecryptionFailed => {
            "decryption fails (ciphertext damaged)".into()
        }
        other => {
            let text = other.to_string();
            text.lines()
                .next()
                .unwrap_or("age refused the file")
                .to_owned()
        }
    }
}

/// A share file of either kind.
#[derive(Debug)]
pub enum ShareFile {
    Encrypted(EncryptedShare),
    Plain(PlainShare),
}

impl ShareFile {
    pub fn parse(text: &str, origin: &str) -> Result<ShareFile, CustodyError> {
        match text.lines().next().map(|l| l.trim_end_matches('\r')) {
            Some(SHARE_MAGIC) => EncryptedShare::parse(text, origin).map(ShareFile::Encrypted),
            Some(PLAIN_MAGIC) => PlainShare::parse(text, origin).map(ShareFile::Plain),
            _ => Err(CustodyError::NotAShare {
                origin: origin.to_owned(),
            }),
        }
    }

    /// Reads and parses a share file; the text is wiped after parsing.
    pub fn read(path: &Path) -> Result<ShareFile, CustodyError> {
        let origin = path.display().to_string();
        let text = read_small(path, &origin)?;
        ShareFile::parse(&text, &origin)
    }

    pub fn meta(&self) -> &ShareMeta {
        match self {
            ShareFile::Encrypted(s) => &s.meta,
            ShareFile::Plain(s) => &s.meta,
        }
    }

    /// The decrypted share: decrypts an encrypted one, passes a plain one.
    pub fn open(&self, identities: &[age::x25519::Identity]) -> Result<PlainShare, CustodyError> {
        match self {
            ShareFile::Encrypted(s) => s.decrypt(identities),
            ShareFile::Plain(s) => Ok(s.clone()),
        }
    }
}

fn read_small(path: &Path, origin: &str) -> Result<Zeroizing<String>, CustodyError> {
    let io = |source| CustodyError::Io {
        origin: origin.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(8192));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(CustodyError::TooLarge {
            origin: origin.to_owned(),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| CustodyError::Malformed {
        origin: origin.to_owned(),
        problem: "not UTF-8 text".into(),
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Parses an age identity file as `age-keygen` writes it: `AGE-SECRET-KEY-1...`
/// lines, `#` comments and empty lines. Errors give line numbers, never text.
pub fn parse_identities(
    text: &str,
    origin: &str,
) -> Result<Vec<age::x25519::Identity>, CustodyError> {
    let bad = |problem: String| CustodyError::BadIdentityFile {
        origin: origin.to_owned(),
        problem,
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("AGE-PLUGIN-") {
            return Err(bad(format!(
                "line {}: plugin identities are not supported, only age X25519 keys",
                n + 1
            )));
        }
        if !line.starts_with("AGE-SECRET-KEY-1") {
            return Err(bad(format!(
                "line {} is not an age identity (AGE-SECRET-KEY-1...)",
                n + 1
            )));
        }
        let id = age::x25519::Identity::from_str(line)
            .map_err(|_| bad(format!("line {} is not a valid age X25519 identity", n + 1)))?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(bad("holds no age identity (AGE-SECRET-KEY-1...)".into()));
    }
    Ok(out)
}

/// Reads age identity files, all identities of each (see [`parse_identities`]).
pub fn read_identities(
    paths: &[impl AsRef<Path>],
) -> Result<Vec<age::x25519::Identity>, CustodyError> {
    let mut identities = Vec::new();
    for path in paths {
        let origin = path.as_ref().display().to_string();
        let text = read_small(path.as_ref(), &origin)?;
        identities.extend(parse_identities(&text, &origin)?);
    }
    Ok(identities)
}

/// HMAC-SHA256(key, label || 0x00 || group id || client id).
pub fn commitment(key: &SoftwareRootKey, group: &GroupId, client: &ClientId) -> [u8; 32] {
    commitment_mac(key, group, client)
        .finalize()
        .into_bytes()
        .into()
}

fn commitment_mac(key: &SoftwareRootKey, group: &GroupId, client: &ClientId) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(COMMITMENT_LABEL);
    mac.update(&[0]);
    mac.update(group.as_bytes());
    mac.update(client.as_str().as_bytes());
    mac
}

/// The result of [`split`]: one encrypted share per holder, in holder order
/// (share index = position + 1).
#[derive(Debug)]
pub struct Split {
    pub group: GroupId,
    pub threshold: u8,
    pub key_fingerprint: String,
    pub shares: Vec<EncryptedShare>,
}

/// Splits `key` into one share per holder, any `threshold` of which rebuild
/// it, each encrypted to its holder. Checks that the shares rebuild the key
/// before returning them.
pub fn split(
    client: &ClientId,
    key: &SoftwareRootKey,
    threshold: usize,
    holders: &[Holder],
) -> Result<Split, CustodyError> {
    let n = holders.len();
    if threshold < 2 {
        return Err(CustodyError::ThresholdTooLow(threshold));
    }
    if n > MAX_SHARES {
        return Err(CustodyError::TooManyHolders(n));
    }
    if threshold > n {
        return Err(CustodyError::ThresholdAboveShares {
            threshold,
            shares: n,
        });
    }
    for (i, h) in holders.iter().enumerate() {
        if holders[..i].iter().any(|o| o.name == h.name) {
            return Err(CustodyError::DuplicateHolder(h.name.clone()));
        }
    }
    // Both fit in u8: 2 <= threshold <= n <= 255.
    let (t8, n8) = (threshold as u8, n as u8);
    let group = GroupId::random();
    let key_fingerprint = RootKey::fingerprint(key).to_string();
    let commitment = commitment(key, &group, client);
    let raw = Zeroizing::new(
        Gf256::split_bytes(
            threshold,
            n,
            key.expose(),
            getrandom::rand_core::UnwrapErr(getrandom::SysRng),
        )
        .map_err(|e| CustodyError::Split(e.to_string()))?,
    );
    let mut plain = Vec::with_capacity(n);
    for (i, (share, holder)) in raw.iter().zip(holders).enumerate() {
        let index = (i + 1) as u8;
        if share.len() != key.expose().len() + 1 || share[0] != index {
            return Err(CustodyError::Split(
                "unexpected share layout from vsss-rs".into(),
            ));
        }
        plain.push(PlainShare {
            meta: ShareMeta {
                group,
                client: client.clone(),
                threshold: t8,
                shares: n8,
                index,
                holder: holder.name.clone(),
                recipient: holder.recipient.to_string(),
                key_fingerprint: key_fingerprint.clone(),
                commitment,
            },
            value: Zeroizing::new(share[1..].to_vec()),
            origin: format!("share #{index} ({})", holder.name),
        });
    }
    if plain.len() != n {
        return Err(CustodyError::Split(
            "vsss-rs returned too few shares".into(),
        ));
    }
    // Self-check: the first t and the last t shares rebuild the key.
    for subset in [&plain[..threshold], &plain[n - threshold..]] {
        let back = combine(client, subset)?;
        if back.key.expose() != key.expose() {
            return Err(CustodyError::Split(
                "the shares do not rebuild the key".into(),
            ));
        }
    }
    let shares = plain
        .iter()
        .zip(holders)
        .map(|(p, h)| p.encrypt(&h.recipient))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Split {
        group,
        threshold: t8,
        key_fingerprint,
        shares,
    })
}

/// A key rebuilt by [`combine`] and checked against the commitment.
#[derive(Debug)]
pub struct Rebuilt {
    pub key: SoftwareRootKey,
    pub group: GroupId,
    pub threshold: u8,
    pub shares: u8,
    /// The shares used: (index, holder), by index.
    pub used: Vec<(u8, String)>,
}

/// Rebuilds `client`'s key from decrypted shares: they must belong to one
/// split of that client's key, have distinct indexes and reach the
/// threshold; the rebuilt key must match the commitment. All given shares
/// are used, so any one that is corrupted is detected.
pub fn combine(client: &ClientId, shares: &[PlainShare]) -> Result<Rebuilt, CustodyError> {
    let first = shares.first().ok_or(CustodyError::NoShares)?;
    for s in shares {
        if s.meta.client != *client {
            return Err(CustodyError::OtherClient {
                origin: s.origin.clone(),
                found: s.meta.client.to_string(),
                want: client.to_string(),
            });
        }
    }
    for s in &shares[1..] {
        if s.meta.group != first.meta.group {
            return Err(CustodyError::OtherGroup {
                first: first.origin.clone(),
                second: s.origin.clone(),
                first_group: first.meta.group.to_string(),
                second_group: s.meta.group.to_string(),
            });
        }
        let disagree = |field| CustodyError::Disagree {
            first: first.origin.clone(),
            second: s.origin.clone(),
            field,
        };
        if s.meta.threshold != first.meta.threshold {
            return Err(disagree("threshold"));
        }
        if s.meta.shares != first.meta.shares {
            return Err(disagree("shares"));
        }
        if s.meta.commitment != first.meta.commitment {
            return Err(disagree("commitment"));
        }
        if s.meta.key_fingerprint != first.meta.key_fingerprint {
            return Err(disagree("key-fingerprint"));
        }
        if s.value.len() != first.value.len() {
            return Err(disagree("key length"));
        }
    }
    for (i, s) in shares.iter().enumerate() {
        if s.meta.index == 0 || s.meta.index > s.meta.shares {
            return Err(CustodyError::Malformed {
                origin: s.origin.clone(),
                problem: format!("index {} is out of range", s.meta.index),
            });
        }
        if let Some(prev) = shares[..i].iter().find(|p| p.meta.index == s.meta.index) {
            return Err(CustodyError::DuplicateIndex {
                first: prev.origin.clone(),
                second: s.origin.clone(),
                index: s.meta.index,
            });
        }
    }
    let (need, total) = (first.meta.threshold, first.meta.shares);
    if need < 2 || shares.len() < need as usize {
        return Err(CustodyError::BelowThreshold {
            got: shares.len(),
            need,
            shares: total,
        });
    }
    let mut points: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(Vec::with_capacity(shares.len()));
    for s in shares {
        let mut p = Vec::with_capacity(s.value.len() + 1);
        p.push(s.meta.index);
        p.extend_from_slice(&s.value);
        points.push(p);
    }
    let bytes =
        Zeroizing::new(
            Gf256::combine_bytes(&*points).map_err(|e| CustodyError::Malformed {
                origin: first.origin.clone(),
                problem: format!("cannot interpolate: {e}"),
            })?,
        );
    points.zeroize();
    let key = SoftwareRootKey::new(&bytes).map_err(|_| CustodyError::CommitmentMismatch)?;
    let mac = commitment_mac(&key, &first.meta.group, client);
    // verify_slice compares in constant time.
    if mac.verify_slice(&first.meta.commitment).is_err()
        || RootKey::fingerprint(&key).to_string() != first.meta.key_fingerprint
    {
        return Err(CustodyError::CommitmentMismatch);
    }
    let mut used: Vec<(u8, String)> = shares
        .iter()
        .map(|s| (s.meta.index, s.meta.holder.clone()))
        .collect();
    used.sort_unstable();
    Ok(Rebuilt {
        key,
        group: first.meta.group,
        threshold: need,
        shares: total,
        used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let value_b64 = crate::b64::encode(plain.value());
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

    #[test]
    fn identity_files() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let text = format!(
            "# created: 2026-01-01T00:00:00Z\n# public key: {}\n{}\n\n{}\n",
            a.to_public(),
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        let ids = parse_identities(&text, "ids.txt").unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].to_public().to_string(), b.to_public().to_string());
        let secretish = "AGE-SECRET-KEY-1SECRETSECRETSECRET";
        for (bad, want) in [
            ("# nothing\n".to_owned(), "holds no age identity"),
            (format!("{secretish}\n"), "line 1 is not a valid"),
            ("age1abc\n".to_owned(), "line 1 is not an age identity"),
            ("AGE-PLUGIN-YUBIKEY-1XYZ\n".to_owned(), "plugin identities"),
        ] {
            let err = parse_identities(&bad, "ids.txt").err().unwrap().to_string();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("SECRETSECRET"), "{err}");
        }
    }
}
