//! The offline enrolment bundle (docs/PROTOCOL.md §10.4): for a machine
//! that cannot reach the server when it is set up, everything `jwt-client
//! enroll` would have received, the root key included, in one file. It is
//! written 0600, and with `--to age1…` sealed with age ([`crate::sealed`]);
//! then age's authentication catches tampering. A plain bundle carries a
//! check that catches a damaged or edited file, not an attacker who can
//! write it: it is a key file, and is protected as one.
//!
//! ```text
//! # comment lines
//! {"bundle":1,"server":URL,"client_id":ID,"audience":AUD,"form":FORM,
//!  "ca":B64URL(DER) | "server_key":B64URL(SHA-256 of the SPKI),
//!  "root_key":B64URL,"check":B64URL(8 bytes)}
//! check = SHA-256("jose-binding bundle v1" | each field as u16 BE length | bytes)[..8]
//! ```

use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::protocol::b64;
use crate::protocol::client_id::ClientId;
use crate::protocol::invite::is_origin;
use crate::protocol::schedule::SoftwareRootKey;
use crate::protocol::token::Form;

/// The format's version.
const VERSION: u64 = 1;
const CHECK_DOMAIN: &[u8] = b"jose-binding bundle v1";
/// Longest bundle read: a CA certificate and a few short fields.
pub const MAX_BUNDLE: usize = 64 * 1024;

/// How the client recognises the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The DER of the CA certificate the server's chain is issued by.
    CaCertificate(Vec<u8>),
    /// SHA-256 of the server certificate's SubjectPublicKeyInfo.
    ServerKey([u8; 32]),
}

/// A client's whole configuration. The root key is zeroized on drop and
/// never printed.
#[derive(Clone)]
pub struct Bundle {
    /// `https://host[:port]`.
    pub server: String,
    /// The client's id.
    pub client_id: ClientId,
    /// The `aud` the server accepts.
    pub audience: String,
    /// The form to send.
    pub form: Form,
    /// How to recognise the server.
    pub trust: Trust,
    /// The client's root key.
    pub root_key: SoftwareRootKey,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("server", &self.server)
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("form", &self.form)
            .field("root_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Why a text is not a bundle. None quotes the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not a bundle's JSON object (or over [`MAX_BUNDLE`]).
    #[error("not an enrolment bundle (a file `jwt-server keys add NAME --bundle FILE` wrote)")]
    NotABundle,
    /// A bundle of another version.
    #[error("a bundle of another version than this jwt-client reads: upgrade it")]
    Version,
    /// A field is missing, unknown, or not what it must be.
    #[error("the bundle's {0} is malformed")]
    Malformed(&'static str),
    /// The check does not match: the file was damaged or edited.
    #[error("the bundle was damaged or edited (its check does not match): ask the operator for a new one")]
    Check,
}

impl BundleError {
    /// A stable code for logs and `--json`.
    pub const fn code(&self) -> &'static str {
        match self {
            BundleError::NotABundle => "bundle_not_a_bundle",
            BundleError::Version => "bundle_version",
            BundleError::Malformed(_) => "bundle_malformed",
            BundleError::Check => "bundle_check",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    /// Checked before, on the untyped value, to tell a version apart.
    #[serde(rename = "bundle")]
    _version: u64,
    server: String,
    client_id: String,
    audience: String,
    form: String,
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    server_key: Option<String>,
    root_key: Zeroizing<String>,
    check: String,
}

impl Bundle {
    /// The file's text; it holds the root key, so it is zeroized on drop.
    pub fn to_text(&self) -> Zeroizing<String> {
        let (trust_name, trust) = match &self.trust {
            Trust::CaCertificate(der) => ("ca", b64::encode(der)),
            Trust::ServerKey(d) => ("server_key", b64::encode(d)),
        };
        let key = self.root_key.to_b64url();
        let check = b64::encode(&self.check(&trust, &key));
        let head = format!(
            "# jose-binding enrolment bundle: client {} of {}\n\
             # It holds the client's root key: move it as you would the key, delete it once installed.\n\
             # Install it with: jwt-client enroll FILE\n",
            self.client_id, self.server
        );
        let fields = serde_json::json!({
            "bundle": VERSION,
            "server": self.server,
            "client_id": self.client_id.as_str(),
            "audience": self.audience,
            "form": self.form.as_str(),
            trust_name: trust,
        })
        .to_string();
        const JOINS: [&str; 3] = [",\"root_key\":\"", "\",\"check\":\"", "\"}\n"];
        let joins: usize = JOINS.iter().map(|j| j.len()).sum();
        let mut out = Zeroizing::new(String::with_capacity(
            head.len() + fields.len() - 1 + key.len() + check.len() + joins,
        ));
        out.push_str(&head);
        out.push_str(&fields[..fields.len() - 1]);
        out.push_str(JOINS[0]);
        out.push_str(&key);
        out.push_str(JOINS[1]);
        out.push_str(&check);
        out.push_str(JOINS[2]);
        out
    }

    /// Reads a bundle's text (comment lines ignored).
    pub fn parse(text: &str) -> Result<Bundle, BundleError> {
        if text.len() > MAX_BUNDLE {
            return Err(BundleError::NotABundle);
        }
        let json: Zeroizing<String> = Zeroizing::new(
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|_| BundleError::NotABundle)?;
        if value.get("bundle").and_then(serde_json::Value::as_u64) != Some(VERSION) {
            return Err(match value.get("bundle") {
                Some(_) => BundleError::Version,
                None => BundleError::NotABundle,
            });
        }
        drop(value);
        let w: Wire =
            serde_json::from_str(&json).map_err(|_| BundleError::Malformed("field set"))?;
        let (trust, trust_text) = match (&w.ca, &w.server_key) {
            (Some(ca), None) => (
                Trust::CaCertificate(b64::decode(ca).ok_or(BundleError::Malformed("ca"))?),
                ca,
            ),
            (None, Some(k)) => (
                Trust::ServerKey(
                    b64::decode(k)
                        .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
                        .ok_or(BundleError::Malformed("server_key"))?,
                ),
                k,
            ),
            _ => return Err(BundleError::Malformed("ca or server_key")),
        };
        let bundle = Bundle {
            server: w.server.clone(),
            client_id: ClientId::new(&w.client_id)
                .map_err(|_| BundleError::Malformed("client_id"))?,
            audience: w.audience.clone(),
            form: w.form.parse().map_err(|_| BundleError::Malformed("form"))?,
            trust,
            root_key: SoftwareRootKey::from_b64url(&w.root_key)
                .map_err(|_| BundleError::Malformed("root_key"))?,
        };
        let given = b64::decode(&w.check).ok_or(BundleError::Check)?;
        let want = bundle.check(trust_text, &w.root_key);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], &given[..])) {
            return Err(BundleError::Check);
        }
        if !is_origin(&bundle.server) {
            return Err(BundleError::Malformed("server"));
        }
        if bundle.audience.is_empty() || bundle.audience.len() > 255 {
            return Err(BundleError::Malformed("audience"));
        }
        Ok(bundle)
    }

    fn check(&self, trust: &str, key: &str) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(CHECK_DOMAIN);
        let form = self.form.as_str();
        for field in [
            self.server.as_str(),
            self.client_id.as_str(),
            self.audience.as_str(),
            form,
            trust,
            key,
        ] {
            h.update((field.len() as u16).to_be_bytes());
            h.update(field.as_bytes());
        }
        let mut out = [0u8; 8];
        out.copy_from_slice(&h.finalize()[..8]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(trust: Trust) -> Bundle {
        Bundle {
            server: "https://api.example:8443".into(),
            client_id: ClientId::new("client8").unwrap(),
            audience: "api.example".into(),
            form: Form::Signed,
            trust,
            root_key: SoftwareRootKey::new(&[7; 32]).unwrap(),
        }
    }

    #[test]
    fn a_bundle_reads_back_and_never_prints_its_key() {
        for trust in [
            Trust::CaCertificate(vec![0x30, 3, 1, 2, 3]),
            Trust::ServerKey([9; 32]),
        ] {
            let b = bundle(trust.clone());
            let text = b.to_text();
            assert_eq!(text.capacity(), text.len(), "never grew with the key in it");
            let back = Bundle::parse(&text).unwrap();
            assert!(!format!("{back:?}").contains(&*b.root_key.to_b64url()));
            assert_eq!(back.trust, trust);
            assert_eq!(back.root_key.expose(), b.root_key.expose());
            assert_eq!(
                (back.server, back.audience),
                (b.server.clone(), b.audience.clone())
            );
        }
    }

    #[test]
    fn an_edited_bundle_is_refused() {
        let text = bundle(Trust::ServerKey([9; 32])).to_text();
        let edits = [
            text.replace("api.example:8443", "evil.example:8443"),
            text.replace("\"signed\"", "\"encrypted-then-signed\""),
            text.replace("client8", "client9"),
        ];
        for edited in edits {
            assert_eq!(
                Bundle::parse(&edited).unwrap_err(),
                BundleError::Check,
                "{edited}"
            );
        }
        let key = bundle(Trust::ServerKey([9; 32])).root_key.to_b64url();
        let other = SoftwareRootKey::new(&[8; 32]).unwrap().to_b64url();
        assert_eq!(
            Bundle::parse(&text.replace(&*key, &other)).unwrap_err(),
            BundleError::Check
        );
        assert_eq!(
            Bundle::parse("jb1.AAAA").unwrap_err(),
            BundleError::NotABundle
        );
        assert_eq!(
            Bundle::parse(&text.replace("\"bundle\":1", "\"bundle\":2")).unwrap_err(),
            BundleError::Version
        );
        assert_eq!(
            Bundle::parse(&text.replace("\"check\"", "\"extra\":1,\"check\"")).unwrap_err(),
            BundleError::Malformed("field set")
        );
    }
}
