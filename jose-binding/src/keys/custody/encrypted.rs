//! Shares encrypted to their holders with age: holders and their
//! recipients, the armored encrypted share, and age identities.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use age::armor::ArmoredReader;
use zeroize::Zeroizing;

use crate::protocol::client_id::{self};

use super::*;

/// A share holder: a name (1-64 characters of `[A-Za-z0-9._-]`, used in
/// file names) and an age X25519 public key. Parses from `NAME=age1...`.
#[derive(Clone)]
pub struct Holder {
    pub(super) name: String,
    pub(super) recipient: age::x25519::Recipient,
}

impl Holder {
    /// A holder named `name` with the age public key `recipient`; an
    /// invalid name is not echoed when it may be a secret key.
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

    /// The holder's name, as in the share's file name and header.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The age public key the holder's share is encrypted to.
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

/// A share encrypted to its holder: the file `split` writes.
#[derive(Clone, Debug)]
pub struct EncryptedShare {
    /// The visible header; not trusted until [`decrypt`](Self::decrypt)
    /// checks it against the encrypted copy.
    pub meta: ShareMeta,
    pub(super) armored: String,
    pub(super) origin: String,
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

    /// Where the share came from (a file name), for error messages.
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
            .map_err(|e| corrupted(crate::keys::sealed::age_problem(&e)))?;
        let reader = decryptor
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => corrupted(format!(
                    "holder {}'s identity does not open the age header (its recipient stanza is damaged)",
                    self.meta.holder
                )),
                other => corrupted(crate::keys::sealed::age_problem(&other)),
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
