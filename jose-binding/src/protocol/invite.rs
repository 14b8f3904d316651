//! The enrolment invite: one line an operator pastes on a new client
//! (docs/PROTOCOL.md §10). It names the server and how to recognise it
//! (a SHA-256 pin), the client id, and the one-time secret the client
//! proves it holds with a bound token on its first connection.
//!
//! ```text
//! jb1.<base64url(body)>
//! body = version 1 | pin kind 1 | pin 32 | secret 32 | expires 8 (u64 BE)
//!      | id length 1 | client id | URL length 2 (u16 BE) | URL | check 4
//! check = SHA-256("jose-binding invite v1" | every byte before it)[..4]
//! ```
//!
//! The check catches a mistyped or truncated line before any connection;
//! it is not a MAC (anyone may compute it), and it need not be: the secret
//! is what the server checks.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::protocol::b64;
use crate::protocol::client_id::ClientId;

/// What every invite line starts with.
pub const PREFIX: &str = "jb1.";
/// The body's version byte.
const VERSION: u8 = 1;
/// What the check hashes before the body.
const CHECK_DOMAIN: &[u8] = b"jose-binding invite v1";
/// Longest server URL an invite carries.
pub const MAX_URL: usize = 2048;
/// Bytes of the one-time secret.
pub const SECRET_LEN: usize = 32;

/// How the client recognises the server on its first connection, instead
/// of a CA file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// SHA-256 of the DER of a certificate in the server's chain other
    /// than its own (the CA that issued it).
    CaCertificate([u8; 32]),
    /// SHA-256 of the DER SubjectPublicKeyInfo of the server's own
    /// certificate: for a server whose certificate is self-signed.
    ServerKey([u8; 32]),
}

impl Pin {
    fn kind(&self) -> u8 {
        match self {
            Pin::CaCertificate(_) => 1,
            Pin::ServerKey(_) => 2,
        }
    }

    /// The 32 bytes pinned.
    pub fn digest(&self) -> &[u8; 32] {
        match self {
            Pin::CaCertificate(d) | Pin::ServerKey(d) => d,
        }
    }
}

/// `CA sha256 a3ccb3a134ee73a6…`: what is pinned, and the digest's first
/// 8 bytes for comparing by eye (it is public).
impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pin::CaCertificate(_) => "CA sha256 ",
            Pin::ServerKey(_) => "server key sha256 ",
        })?;
        for b in &self.digest()[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// A parsed invite. Its secret is zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The server: `https://host[:port]`, nothing else.
    pub url: String,
    /// How to recognise it.
    pub pin: Pin,
    /// The id the client is enrolled under.
    pub client_id: ClientId,
    /// The one-time secret: the root key of the enrolment request.
    pub secret: Zeroizing<[u8; SECRET_LEN]>,
    /// When the invite stops being accepted, in Unix seconds.
    pub expires: u64,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("url", &self.url)
            .field("pin", &self.pin)
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// Why a line is not an invite. Each says what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// It does not start with `jb1.`.
    #[error("not an invite: an invite line starts with \"jb1.\"; copy the whole line the server printed")]
    Prefix,
    /// The rest is not canonical base64url.
    #[error("the invite has characters that do not belong in it: copy the line again, whole")]
    Encoding,
    /// The check does not match, or the line is too short to hold one.
    #[error("the invite is mistyped or cut short (its check does not match): copy the line again, whole")]
    Check,
    /// A body of a version this build does not know.
    #[error("the invite is of version {0}, which this jwt-client does not read: upgrade it")]
    Version(u8),
    /// The check matched but the fields do not add up (an encoder's bug).
    #[error("the invite's fields are malformed")]
    Malformed,
}

impl InviteError {
    /// A stable code for logs and `--json`.
    pub const fn code(&self) -> &'static str {
        match self {
            InviteError::Prefix => "invite_prefix",
            InviteError::Encoding => "invite_encoding",
            InviteError::Check => "invite_check",
            InviteError::Version(_) => "invite_version",
            InviteError::Malformed => "invite_malformed",
        }
    }
}

/// Why an invite cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadInviteUrl {
    /// Not `https://host[:port]` of printable ASCII within [`MAX_URL`].
    #[error("the advertised URL must be https://HOST[:PORT], without path, query or user info")]
    NotAnOrigin,
}

/// Whether `url` is what an invite may carry: `https://` and an authority
/// of printable ASCII, no path, query, fragment or user info.
pub fn is_origin(url: &str) -> bool {
    let Some(authority) = url.strip_prefix("https://") else {
        return false;
    };
    !authority.is_empty()
        && url.len() <= MAX_URL
        && authority
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\'))
}

impl Invite {
    /// An invite; the URL must pass [`is_origin`].
    pub fn new(
        url: &str,
        pin: Pin,
        client_id: ClientId,
        secret: Zeroizing<[u8; SECRET_LEN]>,
        expires: u64,
    ) -> Result<Invite, BadInviteUrl> {
        if !is_origin(url) {
            return Err(BadInviteUrl::NotAnOrigin);
        }
        Ok(Invite {
            url: url.to_owned(),
            pin,
            client_id,
            secret,
            expires,
        })
    }

    /// The line to paste: it holds the secret, so it is zeroized on drop.
    pub fn line(&self) -> Zeroizing<String> {
        let id = self.client_id.as_str().as_bytes();
        let url = self.url.as_bytes();
        let mut body = Zeroizing::new(Vec::with_capacity(
            1 + 1 + 32 + 32 + 8 + 1 + id.len() + 2 + url.len() + 4,
        ));
        body.push(VERSION);
        body.push(self.pin.kind());
        body.extend_from_slice(self.pin.digest());
        body.extend_from_slice(&self.secret[..]);
        body.extend_from_slice(&self.expires.to_be_bytes());
        // Both fit: a client id is at most 64 bytes, the URL MAX_URL.
        body.push(id.len() as u8);
        body.extend_from_slice(id);
        body.extend_from_slice(&(url.len() as u16).to_be_bytes());
        body.extend_from_slice(url);
        let check = check(&body);
        body.extend_from_slice(&check);
        let mut line = Zeroizing::new(String::with_capacity(PREFIX.len() + body.len() * 4 / 3 + 4));
        line.push_str(PREFIX);
        b64::encode_into(&body, &mut line);
        line
    }

    /// Reads a pasted line (surrounding whitespace ignored).
    pub fn parse(line: &str) -> Result<Invite, InviteError> {
        let encoded = line
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(InviteError::Prefix)?;
        let body = Zeroizing::new(b64::decode(encoded).ok_or(InviteError::Encoding)?);
        let (fields, given) = body.split_last_chunk::<4>().ok_or(InviteError::Check)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &check(fields)[..],
            &given[..],
        )) {
            return Err(InviteError::Check);
        }
        let mut r = Reader(fields);
        let version = r.byte()?;
        if version != VERSION {
            return Err(InviteError::Version(version));
        }
        let kind = r.byte()?;
        let digest: [u8; 32] = r.array()?;
        let pin = match kind {
            1 => Pin::CaCertificate(digest),
            2 => Pin::ServerKey(digest),
            _ => return Err(InviteError::Malformed),
        };
        let secret = Zeroizing::new(r.array::<SECRET_LEN>()?);
        let expires = u64::from_be_bytes(r.array()?);
        let id_len = usize::from(r.byte()?);
        let id = std::str::from_utf8(r.take(id_len)?).map_err(|_| InviteError::Malformed)?;
        let client_id = ClientId::new(id).map_err(|_| InviteError::Malformed)?;
        let url_len = usize::from(u16::from_be_bytes(r.array()?));
        let url = std::str::from_utf8(r.take(url_len)?).map_err(|_| InviteError::Malformed)?;
        if !r.0.is_empty() {
            return Err(InviteError::Malformed);
        }
        Invite::new(url, pin, client_id, secret, expires).map_err(|_| InviteError::Malformed)
    }

    /// Whether the invite has expired at `now` (Unix seconds).
    pub fn expired_at(&self, now: u64) -> bool {
        now >= self.expires
    }
}

fn check(fields: &[u8]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(CHECK_DOMAIN)
        .chain_update(fields)
        .finalize();
    let mut out = [0u8; 4];
    out.copy_from_slice(&digest[..4]);
    out
}

/// The fields of a body, front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InviteError> {
        if self.0.len() < n {
            return Err(InviteError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, InviteError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], InviteError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/PROTOCOL.md §10's vector.
    fn vector() -> Invite {
        Invite::new(
            "https://api.example:8443",
            Pin::CaCertificate([0x11; 32]),
            ClientId::new("client1").unwrap(),
            Zeroizing::new(std::array::from_fn(|i| i as u8)),
            1_767_225_600,
        )
        .unwrap()
    }

    /// The one line of docs/PROTOCOL.md that is an invite.
    fn documented_line() -> &'static str {
        let docs = include_str!("../../../docs/PROTOCOL.md");
        let mut lines = docs
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(PREFIX));
        let line = lines.next().expect("PROTOCOL.md §10 shows the vector");
        assert_eq!(lines.next(), None, "one vector line");
        line
    }

    #[test]
    fn the_documented_vector_is_what_the_encoder_writes_and_reads_back() {
        assert_eq!(vector().line().as_str(), documented_line());
        assert_eq!(Invite::parse(documented_line()).unwrap(), vector());
    }

    #[test]
    fn every_one_character_typo_and_every_cut_is_refused() {
        let line = vector().line();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in PREFIX.len()..line.len() {
            for &c in alphabet {
                if line.as_bytes()[i] == c {
                    continue;
                }
                let mut typo = line.as_bytes().to_vec();
                typo[i] = c;
                let typo = String::from_utf8(typo).unwrap();
                let e = Invite::parse(&typo).unwrap_err();
                assert!(
                    matches!(e, InviteError::Check | InviteError::Encoding),
                    "{i}: {e:?}"
                );
            }
        }
        for end in 0..line.len() {
            assert!(Invite::parse(&line[..end]).is_err(), "cut at {end}");
        }
        assert!(Invite::parse(&format!("{}A", *line)).is_err());
        assert_eq!(Invite::parse("jb2.AAAA").unwrap_err(), InviteError::Prefix);
    }

    #[test]
    fn pasted_with_whitespace_it_reads_and_the_secret_never_prints() {
        let line = vector().line();
        let invite = Invite::parse(&format!("  {}\n", *line)).unwrap();
        let shown = format!("{invite:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("[0, 1, 2"), "{shown}");
        assert!(invite.expired_at(1_767_225_600));
        assert!(!invite.expired_at(1_767_225_599));
    }

    #[test]
    fn only_an_https_origin_is_carried() {
        for bad in [
            "http://api.example",
            "https://",
            "https://api.example/path",
            "https://user@api.example",
            "https://api.example?q",
            "https://api .example",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        assert!(is_origin("https://[::1]:8443"));
        let other_version = {
            let mut body = b64::decode(&vector().line()[PREFIX.len()..]).unwrap();
            body.truncate(body.len() - 4);
            body[0] = 2;
            let c = check(&body);
            body.extend_from_slice(&c);
            format!("{PREFIX}{}", b64::encode(&body))
        };
        assert_eq!(
            Invite::parse(&other_version).unwrap_err(),
            InviteError::Version(2)
        );
    }
}
