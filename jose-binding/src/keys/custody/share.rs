//! The share-file format: the visible header, the decrypted share, and
//! reading either kind from a file.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::protocol::client_id::{self, ClientId};
use crate::protocol::schedule::{ROOT_KEY_MAX, ROOT_KEY_MIN};

use super::*;

/// The public facts about one share: the visible header of a share file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMeta {
    /// The split this share belongs to.
    pub group: GroupId,
    /// Whose root key was split.
    pub client: ClientId,
    /// Shares needed to rebuild the key (2 to `shares`).
    pub threshold: u8,
    /// Shares the split made (at most 255).
    pub shares: u8,
    /// This share's point, 1 to `shares`.
    pub index: u8,
    /// The holder's name.
    pub holder: String,
    /// The holder's age public key, `age1...`.
    pub recipient: String,
    /// [`RootKey::fingerprint`](crate::RootKey::fingerprint) of the split key, 16 hex digits.
    pub key_fingerprint: String,
    /// HMAC-SHA256 commitment to the key ([`commitment`]), checked by
    /// [`combine`].
    pub commitment: [u8; 32],
}

impl ShareMeta {
    pub(super) fn field(&self, name: &str) -> String {
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

    pub(super) fn write_fields(&self, out: &mut String) {
        for name in FIELDS {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&self.field(name));
            out.push('\n');
        }
    }

    pub(super) fn parse(fields: &Fields<'_>, origin: &str) -> Result<ShareMeta, CustodyError> {
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
pub(super) struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    pub(super) fn parse(
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
    /// The share's metadata, as the decrypted payload states it.
    pub meta: ShareMeta,
    pub(super) value: Zeroizing<Vec<u8>>,
    pub(super) origin: String,
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

    /// The same share, naming `origin` in later errors.
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
        out.push_str(&Zeroizing::new(crate::protocol::b64::encode(&self.value)));
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
            crate::protocol::b64::decode(fields.get("value").ok_or_else(|| bad("no value line"))?)
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

    pub(super) fn encrypt(
        &self,
        recipient: &age::x25519::Recipient,
    ) -> Result<EncryptedShare, CustodyError> {
        let fail = |problem: String| CustodyError::Encrypt {
            holder: self.meta.holder.clone(),
            problem,
        };
        let armored = crate::keys::sealed::seal(recipient, self.to_text().as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        Ok(EncryptedShare {
            meta: self.meta.clone(),
            armored,
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

/// A share file of either kind.
#[derive(Debug)]
pub enum ShareFile {
    /// A share file as `split` writes it.
    Encrypted(EncryptedShare),
    /// A share its holder already decrypted.
    Plain(PlainShare),
}

impl ShareFile {
    /// Parses either kind, told apart by the first line.
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

    /// The share's metadata; for an encrypted share, its unverified
    /// visible header.
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

pub(super) fn read_small(path: &Path, origin: &str) -> Result<Zeroizing<String>, CustodyError> {
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
