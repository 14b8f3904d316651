//! The lenient decoder: shows what a token holds, layer by layer, even when
//! the server would refuse it, and says what is unusual about it.
//!
//! Nothing here decides whether the server accepts a token; that is
//! [`crate::verdict`], through the library's own verifier. This module
//! reads generic JOSE compact serialization (RFC 7515/7516): any header, HMAC
//! signatures (HS256/384/512), `dir` encryption with any of RFC 7518's six
//! content encryptions ([`crate::jwa`]), nesting.

use base64::Engine;
use jose_binding::token::{Layer as StrictLayer, FORBIDDEN_HEADERS};
use jose_binding::{json, Fingerprint, Rejection};
use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::keyring::KeyRing;
use crate::keys::LENIENT_B64URL;
use crate::lint::{self, Lint, Warning};
use crate::open;
use crate::time::{rfc3339, TimeClaim};

/// Deepest nesting shown (the protocol has one level; this tool shows more).
pub const MAX_LAYERS: usize = 4;
/// Signatures or recipients of a JSON serialization opened: each costs a
/// try of every fitting key.
pub const MAX_ENTRIES: usize = 16;
/// Longest text content echoed back, in characters.
const MAX_TEXT_SHOWN: usize = 4096;

/// What the decoder may open layers with. Lengths are free: generic JOSE
/// keys are not always 32 bytes.
#[derive(Default)]
pub struct DecodeKeys {
    /// Octets for HMAC (`--sig-key`, or derived).
    pub sig: Option<Zeroizing<Vec<u8>>>,
    /// Octets for `dir` and the AES key wraps (`--enc-key`, or derived).
    pub enc: Option<Zeroizing<Vec<u8>>>,
    /// `--key` files: PEM, JWK, JWK sets.
    pub ring: KeyRing,
    /// `--password-file`, for PBES2.
    pub password: Option<Zeroizing<Vec<u8>>>,
    /// `--payload`: the content of a detached JWS.
    pub detached_payload: Option<Vec<u8>>,
    /// PBKDF2 iterations computed so far in this run, against
    /// [`open::MAX_P2C_TOTAL`].
    pub pbkdf2_spent: std::cell::Cell<u64>,
    /// RSA private-key operations made so far, against
    /// [`open::MAX_PRIVATE_OPS`].
    pub private_ops: std::cell::Cell<u64>,
}

impl DecodeKeys {
    pub fn sig_fp(&self) -> Option<Fingerprint> {
        self.sig.as_ref().map(|k| Fingerprint::of("sig", k))
    }
    pub fn enc_fp(&self) -> Option<Fingerprint> {
        self.enc.as_ref().map(|k| Fingerprint::of("enc", k))
    }
}

/// The input as given and what was done to it before decoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cleaned {
    pub token: String,
    /// Changes made to the input (prefixes, quotes, whitespace removed).
    pub notes: Vec<String>,
}

/// Input that is not a token at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("no token: the input is empty")]
    Empty,
    #[error(
        "the input is not UTF-8 text (first invalid byte at offset {0}); a JOSE compact token is ASCII"
    )]
    NotUtf8(usize),
}

/// Accepts what people paste: surrounding whitespace, an `Authorization:`
/// header line, the `Bearer` scheme, JSON quotes, wrapped lines.
pub fn clean(raw: &[u8]) -> Result<Cleaned, InputError> {
    let text = std::str::from_utf8(raw).map_err(|e| InputError::NotUtf8(e.valid_up_to()))?;
    let mut notes = Vec::new();
    let mut t = text.trim();
    if let Some(rest) = strip_prefix_ci(t, "authorization:") {
        t = rest.trim_start();
        notes.push("removed the \"Authorization:\" header name".to_owned());
    }
    if let Some(rest) = strip_prefix_ci(t, "bearer ") {
        t = rest.trim_start();
        notes.push("removed the \"Bearer\" scheme".to_owned());
    }
    // A JSON serialization is kept as it is: whitespace inside its strings
    // (a kid, an unprotected header) is content.
    if t.starts_with('{') {
        return Ok(Cleaned {
            token: t.to_owned(),
            notes,
        });
    }
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t = t[1..t.len() - 1].trim();
        notes.push("removed surrounding double quotes".to_owned());
    }
    let spaces = t.chars().filter(|c| c.is_whitespace()).count();
    let token: String = if spaces > 0 {
        notes.push(format!(
            "removed {spaces} whitespace character(s) inside the token (wrapped lines?); \
             everything below is about the token without them"
        ));
        t.chars().filter(|c| !c.is_whitespace()).collect()
    } else {
        t.to_owned()
    };
    if token.is_empty() {
        return Err(InputError::Empty);
    }
    Ok(Cleaned { token, notes })
}

/// `s` without an ASCII `prefix` matched case-insensitively.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// One base64url part, decoded as leniently as possible.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub name: &'static str,
    /// Length of the encoded text.
    pub chars: usize,
    /// Decoded length; `None` when the text is not base64 at all.
    pub bytes: Option<usize>,
    /// What is non-canonical about the text (the server refuses any of it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<&'static str>,
    #[serde(skip)]
    pub decoded: Option<Vec<u8>>,
}

fn decode_part(name: &'static str, text: &str) -> Part {
    if let Some(bytes) = jose_binding::b64::decode(text) {
        return Part {
            name,
            chars: text.len(),
            bytes: Some(bytes.len()),
            problems: Vec::new(),
            decoded: Some(bytes),
        };
    }
    let mut problems = Vec::new();
    if text.contains('=') {
        problems.push("has = padding");
    }
    if text.contains(['+', '/']) {
        problems.push("uses the standard base64 alphabet (+ or /) instead of base64url (- and _)");
    }
    let normalized: String = text
        .chars()
        .filter(|&c| c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let decoded = LENIENT_B64URL.decode(normalized.as_bytes()).ok();
    match &decoded {
        Some(bytes) => {
            if jose_binding::b64::encode(bytes) != normalized {
                problems.push("has non-zero trailing bits (two encodings of the same bytes)");
            }
        }
        None => problems.push("is not base64url"),
    }
    Part {
        name,
        chars: text.len(),
        bytes: decoded.as_ref().map(Vec::len),
        problems,
        decoded,
    }
}

/// A protected header, read leniently.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    /// The members (for a repeated name, the last value, as most JSON
    /// libraries read it). `None` when the header is not a JSON object.
    pub json: Option<Map<String, Value>>,
    /// The decoded text, shown when the strict parser refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Why the strict parser (the server's) refuses the JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_error: Option<&'static str>,
}

impl Header {
    fn str_member(&self, name: &str) -> Option<&str> {
        self.json.as_ref()?.get(name)?.as_str()
    }
}

/// Reads JSON as the server does, and failing that as a lenient library
/// would (so the user sees what is there).
fn lenient_object(bytes: &[u8]) -> (Option<Map<String, Value>>, Option<&'static str>) {
    match json::parse_object(bytes) {
        Ok(m) => (Some(m), None),
        Err(e) => {
            let lenient = match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            };
            (lenient, Some(e.detail()))
        }
    }
}

fn read_header(part: &Part) -> Header {
    let Some(bytes) = &part.decoded else {
        return Header {
            json: None,
            raw: None,
            strict_error: Some("header part is not base64url"),
        };
    };
    let (json, strict_error) = lenient_object(bytes);
    Header {
        json,
        raw: strict_error.map(|_| shown_text(bytes)),
        strict_error,
    }
}

/// UTF-8 text as is (cut at [`MAX_TEXT_SHOWN`]), anything else as escaped text.
fn shown_text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().take(MAX_TEXT_SHOWN).collect();
    if s.chars().count() > MAX_TEXT_SHOWN {
        out.push_str(" …(cut)");
    }
    out
}

/// The result of trying a layer's signature or encryption.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Crypto {
    /// The signature verifies / the ciphertext decrypts with the key given.
    Verified {
        alg: String,
        key_fp: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
    },
    /// It does not.
    Failed {
        alg: String,
        key_fp: Option<String>,
        why: String,
    },
    /// No key for this layer was given or derived.
    NoKey { alg: String, needs: &'static str },
    /// Not something this tool can check.
    Unsupported { why: String },
    /// `alg: none`: nothing to verify.
    Unsecured,
    /// Not computed because the token asks for something unsafe (a PBES2
    /// count above the cap, an `epk` off its curve).
    Refused { alg: String, why: String },
}

impl Crypto {
    pub fn is_verified(&self) -> bool {
        matches!(self, Crypto::Verified { .. })
    }

    /// One line about a layer's signature or encryption; `kind` (`JWS` or
    /// `JWE`) picks the verb. Here so that the text output and the
    /// `--generic` reasons say the same thing.
    pub fn describe(&self, kind: &str) -> String {
        match self {
            Crypto::Verified { alg, key_fp, kid } => {
                let verb = if kind == "JWE" {
                    "decrypts"
                } else {
                    "verifies"
                };
                // A public key is named by its RFC 7638 thumbprint, which
                // says so; a secret by this tool's fingerprint.
                let named = match key_fp.starts_with("thumbprint ") || key_fp.starts_with("from ") {
                    true => key_fp.clone(),
                    false => format!("fp={key_fp}"),
                };
                match kid {
                    Some(kid) => format!("{alg}: {verb} with the key kid {kid:?} ({named})"),
                    None => format!("{alg}: {verb} with the key {named}"),
                }
            }
            Crypto::Failed { alg, key_fp, why } => match key_fp {
                Some(fp) if fp.starts_with("thumbprint ") || fp.starts_with("from ") => {
                    format!("{alg}: FAILS with the key {fp}: {why}")
                }
                Some(fp) => format!("{alg}: FAILS with the key fp={fp}: {why}"),
                None => format!("{alg}: fails: {why}"),
            },
            Crypto::NoKey { alg, needs } => format!("{alg}: not checked, no key (give {needs})"),
            Crypto::Unsupported { why } => format!("not checked: {why}"),
            Crypto::Unsecured => "alg none: an unsecured JWS, nothing to verify".to_owned(),
            Crypto::Refused { alg, why } => format!("{alg}: refused: {why}"),
        }
    }
}

/// What a layer carries.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Another compact token: the next layer.
    Nested,
    /// A JSON object: the claims.
    Claims(Claims),
    /// Not opened (a JWE without its key).
    Hidden,
    Text {
        text: String,
    },
    Binary {
        bytes: usize,
        hex_prefix: String,
    },
}

/// A claims set, read leniently, with its times explained.
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    pub json: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_error: Option<&'static str>,
    pub times: Vec<TimeInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeInfo {
    pub claim: &'static str,
    pub value: f64,
    /// `None` when outside years 1–9999.
    pub rfc3339: Option<String>,
    pub relative: String,
}

/// One JWS or JWE layer (or something with another number of parts).
#[derive(Debug, Clone, Serialize)]
pub struct LayerView {
    /// 1 = outermost.
    pub depth: usize,
    /// `JWS`, `JWE`, or `unknown`.
    pub kind: &'static str,
    /// `compact`, `flattened` or `general` (JSON), or `json` when unreadable.
    pub serialization: &'static str,
    /// A JWS whose payload is its raw content (`b64: false`, RFC 7797).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unencoded_payload: bool,
    pub chars: usize,
    pub parts: Vec<Part>,
    pub header: Header,
    /// Members the protocol refuses outright (§7 step 5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forbidden_members: Vec<String>,
    /// The server's syntax checks (§7 steps 3–6) on this layer alone:
    /// `None` when they pass.
    pub server_syntax: Option<ServerRefusal>,
    pub crypto: Crypto,
    /// JSON serializations: each signature or recipient and what it gave.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<EntryView>,
    /// RFC 8725's mistakes found in this layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// What makes the layer invalid JOSE whatever the key: `crit`, `b64`
    /// and `zip` where they may not be, too many signatures or recipients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    pub content: Content,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One signature of a JWS, or one recipient of a JWE, in a JSON serialization.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    /// 1-based.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// A general JWS: this signature's protected header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected: Option<Map<String, Value>>,
    /// The unprotected `header` member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<Map<String, Value>>,
    pub crypto: Crypto,
}

/// A §7 code and its sentence.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRefusal {
    pub code: &'static str,
    pub detail: &'static str,
}

impl From<Rejection> for ServerRefusal {
    fn from(r: Rejection) -> Self {
        ServerRefusal {
            code: r.code.as_str(),
            detail: r.detail,
        }
    }
}

/// The whole token, outermost layer first.
#[derive(Debug, Clone, Serialize)]
pub struct Decoded {
    pub layers: Vec<LayerView>,
    /// `JWS > JWE > claims`.
    pub structure: String,
    /// The protocol form the layer structure matches, if any.
    pub form: Option<&'static str>,
    /// Nesting went deeper than [`MAX_LAYERS`]: the innermost layers are not opened.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Decoded {
    /// The innermost claims, when they could be read.
    pub fn claims(&self) -> Option<&Claims> {
        match &self.layers.last()?.content {
            Content::Claims(c) => Some(c),
            _ => None,
        }
    }

    pub fn outer_kid(&self) -> Option<&str> {
        self.layers.first()?.header.str_member("kid")
    }

    /// Every layer verified or decrypted.
    pub fn all_verified(&self) -> bool {
        !self.layers.is_empty() && self.layers.iter().all(|l| l.crypto.is_verified())
    }
}

/// Decodes `token` with whatever keys are given.
pub fn decode(token: &str, keys: &DecodeKeys, now: f64) -> Decoded {
    let mut layers = Vec::new();
    let mut text = token.to_owned();
    let mut truncated = false;
    loop {
        let depth = layers.len() + 1;
        let (view, inner) = decode_layer(&text, depth, keys, now);
        layers.push(view);
        match inner {
            Some(next) if depth < MAX_LAYERS => text = next,
            Some(_) => {
                if let Some(last) = layers.last_mut() {
                    last.notes.push(format!(
                        "content is another token; not decoded past {MAX_LAYERS} layers"
                    ));
                    last.content = Content::Text {
                        text: shown_text(text.as_bytes()),
                    };
                }
                truncated = true;
                break;
            }
            None => break,
        }
    }
    let structure = structure_of(&layers);
    let form = form_of_structure(&layers);
    Decoded {
        layers,
        structure,
        form,
        truncated,
    }
}

fn structure_of(layers: &[LayerView]) -> String {
    let mut s: Vec<&str> = layers.iter().map(|l| l.kind).collect();
    s.push(match layers.last().map(|l| (l.kind, &l.content)) {
        Some((_, Content::Claims(_))) => "claims",
        Some(("JWE", Content::Hidden)) => "(encrypted)",
        Some((_, Content::Hidden)) => "?",
        Some((_, Content::Text { .. })) => "text",
        Some((_, Content::Binary { .. })) => "bytes",
        Some((_, Content::Nested)) | None => "?",
    });
    s.join(" > ")
}

/// Which of §5's forms the layers look like (a description, not a check:
/// the verdict decides).
fn form_of_structure(layers: &[LayerView]) -> Option<&'static str> {
    let kinds: Vec<&str> = layers.iter().map(|l| l.kind).collect();
    let last_hidden = matches!(layers.last().map(|l| &l.content), Some(Content::Hidden));
    match kinds.as_slice() {
        ["JWS"] => Some("signed"),
        ["JWS", "JWE"] => Some("encrypted-then-signed"),
        ["JWE", "JWS"] => Some("signed-then-encrypted"),
        ["JWE"] if last_hidden => Some("signed-then-encrypted (if the plaintext is a JWS)"),
        _ => None,
    }
}

/// A signature (JWS) or a recipient (JWE) of a layer: compact has one,
/// the JSON general serialization any number.
struct Entry {
    /// JWS: this signature's protected header, as in the token (JWE: the
    /// layer's, shared).
    protected_b64: String,
    protected: Header,
    /// The entry's unprotected `header` member (JSON only).
    header: Option<Map<String, Value>>,
    /// JWS: the signature; JWE: the encrypted key.
    value: Part,
}

/// What the layer protects: the JWS payload, or the JWE's content parts.
// One per layer, never in a collection: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Body {
    Jws {
        /// As in the token (base64url, or raw with b64 false); `None` when
        /// detached.
        payload_text: Option<String>,
    },
    Jwe {
        unprotected: Option<Map<String, Value>>,
        aad_b64: Option<String>,
        iv: Part,
        ciphertext: Part,
        tag: Part,
    },
}

/// One layer split into its parts, each decoded, and its headers read:
/// everything about a layer that does not depend on keys.
struct RawLayer {
    kind: &'static str,
    serialization: &'static str,
    parts: Vec<Part>,
    entries: Vec<Entry>,
    body: Option<Body>,
    /// Why this is no JWS or JWE.
    not_jose: Option<String>,
}

impl RawLayer {
    fn read(text: &str) -> RawLayer {
        if text.trim_start().starts_with('{') {
            return read_json(text).unwrap_or_else(|why| RawLayer {
                kind: "unknown",
                serialization: "json",
                parts: Vec::new(),
                entries: Vec::new(),
                body: None,
                not_jose: Some(why),
            });
        }
        let pieces: Vec<&str> = text.split('.').collect();
        let part = |i: usize, name: &'static str| decode_part(name, pieces[i]);
        let header_part = decode_part("header", pieces[0]);
        let entry = |value: Part| Entry {
            protected_b64: pieces[0].to_owned(),
            protected: read_header(&header_part),
            header: None,
            value,
        };
        match pieces.len() {
            3 => {
                let signature = part(2, "signature");
                RawLayer {
                    kind: "JWS",
                    serialization: "compact",
                    parts: vec![header_part.clone(), part(1, "payload"), signature.clone()],
                    entries: vec![entry(signature)],
                    body: Some(Body::Jws {
                        payload_text: Some(pieces[1].to_owned()),
                    }),
                    not_jose: None,
                }
            }
            5 => {
                let (encrypted_key, iv, ciphertext, tag) = (
                    part(1, "encrypted_key"),
                    part(2, "iv"),
                    part(3, "ciphertext"),
                    part(4, "tag"),
                );
                RawLayer {
                    kind: "JWE",
                    serialization: "compact",
                    parts: vec![
                        header_part.clone(),
                        encrypted_key.clone(),
                        iv.clone(),
                        ciphertext.clone(),
                        tag.clone(),
                    ],
                    entries: vec![entry(encrypted_key)],
                    body: Some(Body::Jwe {
                        unprotected: None,
                        aad_b64: None,
                        iv,
                        ciphertext,
                        tag,
                    }),
                    not_jose: None,
                }
            }
            n => RawLayer {
                kind: "unknown",
                serialization: "compact",
                parts: pieces
                    .iter()
                    .enumerate()
                    .map(|(i, p)| decode_part(if i == 0 { "header" } else { "part" }, p))
                    .collect(),
                entries: vec![entry(decode_part("none", ""))],
                body: None,
                not_jose: Some(format!(
                    "{n} dot-separated part(s): a compact JWS has 3, a JWE 5{}",
                    if n < 3 { " (truncated?)" } else { "" }
                )),
            },
        }
    }

    /// The protected header shown for the layer (the first signature's, for
    /// a general JWS).
    fn header(&self) -> Header {
        match self.entries.first() {
            Some(e) => e.protected.clone(),
            None => Header {
                json: None,
                raw: None,
                strict_error: Some("no protected header"),
            },
        }
    }

    /// The JOSE header of an entry: the union of its protected and
    /// unprotected members (RFC 7515 §7.2.1, RFC 7516 §7.2.1 want them
    /// disjoint; a repeated name is warned about once, and the first value
    /// kept: protected, then shared, then the entry's own).
    fn jose_header(&self, e: &Entry, warnings: &mut Vec<Warning>) -> Map<String, Value> {
        let mut h = e.protected.json.clone().unwrap_or_default();
        let shared = match &self.body {
            Some(Body::Jwe { unprotected, .. }) => unprotected.as_ref(),
            _ => None,
        };
        let mut repeated = Vec::new();
        for extra in [shared, e.header.as_ref()].into_iter().flatten() {
            for (k, v) in extra {
                if h.contains_key(k) {
                    repeated.push(format!("{k:?}"));
                } else {
                    h.insert(k.clone(), v.clone());
                }
            }
        }
        if !repeated.is_empty() {
            let total = repeated.len();
            repeated.truncate(8);
            let w = Warning::new(
                Lint::HeaderOverlap,
                format!(
                    "{}{} in more than one header: the protected and unprotected headers must \
                     not share a name (RFC 7515 §7.2.1, RFC 7516 §7.2.1); the first value is \
                     used (protected, then shared, then per recipient)",
                    repeated.join(", "),
                    if total > 8 {
                        format!(" and {} more", total - 8)
                    } else {
                        String::new()
                    }
                ),
            );
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        h
    }

    /// What RFC 7515 §4.1.11, RFC 7516 §4.1.3 and RFC 7797 §3, §6 require of
    /// `crit`, `zip` and `b64`, for every signature or recipient: they are
    /// read from the protected header only, and must agree.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |p: String| {
            if !out.contains(&p) {
                out.push(p);
            }
        };
        if self.entries.len() > MAX_ENTRIES {
            push(format!(
                "{} {}: more than {MAX_ENTRIES} are not opened",
                self.entries.len(),
                if self.kind == "JWS" {
                    "signatures"
                } else {
                    "recipients"
                }
            ));
        }
        let shared = match &self.body {
            Some(Body::Jwe { unprotected, .. }) => unprotected.as_ref(),
            _ => None,
        };
        let mut b64s = Vec::new();
        for e in &self.entries {
            for (what, h) in [("unprotected", shared), ("unprotected", e.header.as_ref())] {
                for name in ["crit", "b64", "zip"] {
                    if h.is_some_and(|h| h.contains_key(name)) {
                        push(format!(
                            "{name} is in an {what} header: it must be integrity protected"
                        ));
                    }
                }
            }
            let Some(p) = e.protected.json.as_ref() else {
                continue;
            };
            let b64 = p.get("b64");
            b64s.push(b64.cloned());
            match p.get("crit") {
                None => {
                    if b64.is_some() && self.kind == "JWS" {
                        push("b64 is set but not listed in crit (RFC 7797 §6)".to_owned());
                    }
                }
                Some(Value::Array(a)) if a.is_empty() => {
                    push("crit is an empty list, which RFC 7515 §4.1.11 forbids".to_owned())
                }
                Some(Value::Array(a)) => {
                    let understood = |v: &Value| v == "b64" && self.kind == "JWS";
                    if let Some(other) = a.iter().find(|v| !understood(v)) {
                        push(format!(
                            "crit lists {other}, an extension this tool does not implement, so \
                             RFC 7515 §4.1.11 requires refusing the token"
                        ));
                    }
                    for v in a.iter().filter_map(Value::as_str) {
                        if !p.contains_key(v) {
                            push(format!("crit lists {v:?}, which the header does not hold"));
                        }
                    }
                }
                Some(other) => push(format!("crit {other} is not a list of names")),
            }
            if b64.is_some_and(|b| !b.is_boolean()) {
                push("b64 is not true or false".to_owned());
            }
        }
        if b64s.windows(2).any(|w| w[0] != w[1]) {
            push("the signatures disagree on b64 (RFC 7797 §3 wants one value)".to_owned());
        }
        out
    }

    /// Whether the payload is unencoded (RFC 7797): read from the first
    /// signature's protected header; [`RawLayer::problems`] refuses
    /// signatures that disagree.
    fn raw_payload(&self) -> bool {
        self.kind == "JWS"
            && self
                .entries
                .first()
                .and_then(|e| e.protected.json.as_ref())
                .and_then(|h| h.get("b64"))
                == Some(&Value::Bool(false))
    }

    /// The layer's crypto with these keys: every entry tried (up to
    /// [`MAX_ENTRIES`]), the first that verifies or decrypts wins.
    fn open(&self, keys: &DecodeKeys) -> Option<LayerOpening> {
        let body = self.body.as_ref()?;
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        let mut content = None;
        for (i, e) in self.entries.iter().enumerate().take(MAX_ENTRIES) {
            let h = self.jose_header(e, &mut warnings);
            for w in lint::header_warnings(self.kind, &h) {
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            let opened = match body {
                Body::Jws { payload_text } => self.open_jws(e, &h, payload_text.as_deref(), keys),
                Body::Jwe {
                    aad_b64,
                    iv,
                    ciphertext,
                    tag,
                    ..
                } => {
                    let aad = match aad_b64 {
                        Some(a) => format!("{}.{a}", e.protected_b64),
                        None => e.protected_b64.clone(),
                    };
                    match (
                        &e.value.decoded,
                        &iv.decoded,
                        &ciphertext.decoded,
                        &tag.decoded,
                    ) {
                        (Some(ek), Some(iv), Some(ct), Some(tag)) => open::decrypt_jwe(
                            &open::EncryptedInput {
                                header: &h,
                                encrypted_key: ek,
                                iv,
                                ciphertext: ct,
                                tag,
                                aad: aad.as_bytes(),
                                private_ops: &keys.private_ops,
                            },
                            keys,
                        ),
                        _ => open::Opened::new(Crypto::Failed {
                            alg: format!(
                                "{}/{}",
                                h.get("alg").and_then(Value::as_str).unwrap_or(""),
                                h.get("enc").and_then(Value::as_str).unwrap_or("")
                            ),
                            key_fp: None,
                            why: "the encrypted key, IV, ciphertext or tag is not base64url"
                                .to_owned(),
                        }),
                    }
                }
            };
            for w in opened.warnings {
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            for n in opened.notes {
                if !notes.contains(&n) {
                    notes.push(n);
                }
            }
            // A JWS's content is its payload, whether or not it verifies.
            if content.is_none() && opened.crypto.is_verified() && self.kind == "JWE" {
                content = opened.content;
            }
            entries.push(EntryView {
                index: i + 1,
                alg: h.get("alg").and_then(Value::as_str).map(str::to_owned),
                enc: h.get("enc").and_then(Value::as_str).map(str::to_owned),
                kid: h.get("kid").and_then(Value::as_str).map(str::to_owned),
                protected: (self.kind == "JWS" && self.entries.len() > 1)
                    .then(|| e.protected.json.clone())
                    .flatten(),
                header: e.header.clone(),
                crypto: opened.crypto,
            });
        }
        if let Body::Jws { payload_text } = body {
            if content.is_none() {
                content = self.jws_payload(payload_text.as_deref(), keys);
            }
        }
        let crypto = match entries.iter().position(|e| e.crypto.is_verified()) {
            Some(i) => entries[i].crypto.clone(),
            None if entries.len() == 1 => entries[0].crypto.clone(),
            None => combined(&entries, self.kind),
        };
        Some(LayerOpening {
            crypto,
            content,
            entries,
            warnings,
            notes,
        })
    }

    /// The payload bytes: decoded unless b64 is false; the `--payload` file
    /// when the token has none.
    fn jws_payload(&self, payload_text: Option<&str>, keys: &DecodeKeys) -> Option<Vec<u8>> {
        match payload_text {
            None | Some("") if keys.detached_payload.is_some() => keys.detached_payload.clone(),
            None => None,
            Some(t) if self.raw_payload() => Some(t.as_bytes().to_vec()),
            Some(t) => decode_part("payload", t).decoded,
        }
    }

    fn open_jws(
        &self,
        e: &Entry,
        h: &Map<String, Value>,
        payload_text: Option<&str>,
        keys: &DecodeKeys,
    ) -> open::Opened {
        let raw = self.raw_payload();
        let detached = || {
            Warning::new(
                Lint::DetachedPayload,
                "the payload is detached (RFC 7515 Appendix F): the signature covers content \
                 that is not in the token; give it with --payload FILE"
                    .to_owned(),
            )
        };
        // The payload as signed, in bytes: unencoded content is signed as
        // it is, whatever it holds (RFC 7797 §3). An empty compact payload
        // is either empty content or detached content: --payload says which.
        let given: Option<Vec<u8>> = keys.detached_payload.as_ref().map(|p| match raw {
            true => p.clone(),
            false => jose_binding::b64::encode(p).into_bytes(),
        });
        let (payload, maybe_detached) = match (payload_text, given) {
            (None | Some(""), Some(p)) => (p, false),
            (Some(t), _) => (t.as_bytes().to_vec(), t.is_empty()),
            (None, None) => {
                let mut opened = open::Opened::new(Crypto::Unsupported {
                    why: "detached payload: give it with --payload FILE".to_owned(),
                });
                opened.warnings.push(detached());
                return opened;
            }
        };
        let mut signing_input = Vec::with_capacity(e.protected_b64.len() + 1 + payload.len());
        signing_input.extend_from_slice(e.protected_b64.as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(&payload);
        let mut opened = open::verify_jws(
            &open::SignedInput {
                header: h,
                signing_input: &signing_input,
                signature: e.value.decoded.as_deref(),
            },
            keys,
        );
        if maybe_detached && matches!(opened.crypto, Crypto::Failed { .. }) {
            opened.crypto = Crypto::Unsupported {
                why: "the signature does not cover an empty payload: the payload is probably \
                      detached; give it with --payload FILE"
                    .to_owned(),
            };
            opened.warnings.push(detached());
        }
        opened
    }
}

/// No entry of a JSON serialization opens: one result for them all, the
/// worst first (a failed check, a refusal, alg none, then what was not
/// checked).
fn combined(entries: &[EntryView], kind: &str) -> Crypto {
    let mut each: Vec<String> = entries
        .iter()
        .take(8)
        .map(|e| format!("#{} {}", e.index, e.crypto.describe(kind)))
        .collect();
    if entries.len() > 8 {
        each.push(format!("and {} more", entries.len() - 8));
    }
    let why = format!(
        "none of the {} {} opens: {}",
        entries.len(),
        if kind == "JWS" {
            "signatures"
        } else {
            "recipients"
        },
        each.join("; ")
    );
    let any = |f: fn(&Crypto) -> bool| entries.iter().any(|e| f(&e.crypto));
    let alg = "(several)".to_owned();
    if any(|c| matches!(c, Crypto::Failed { .. })) {
        Crypto::Failed {
            alg,
            key_fp: None,
            why,
        }
    } else if any(|c| matches!(c, Crypto::Refused { .. })) {
        Crypto::Refused { alg, why }
    } else if any(|c| matches!(c, Crypto::Unsecured)) {
        Crypto::Failed {
            alg,
            key_fp: None,
            why: format!("{why} (alg none vouches for nothing)"),
        }
    } else {
        Crypto::Unsupported { why }
    }
}

/// What opening a layer gave.
struct LayerOpening {
    crypto: Crypto,
    content: Option<Vec<u8>>,
    entries: Vec<EntryView>,
    warnings: Vec<Warning>,
    notes: Vec<String>,
}

fn str_member<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("the member {name} is not a string")),
    }
}

fn object_member(m: &Map<String, Value>, name: &str) -> Result<Option<Map<String, Value>>, String> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o.clone())),
        Some(_) => Err(format!("the member {name} is not a JSON object")),
    }
}

/// RFC 7515 §7.2 and RFC 7516 §7.2: the flattened and general JSON
/// serializations.
fn read_json(text: &str) -> Result<RawLayer, String> {
    let m = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("JSON, but not an object".to_owned()),
        Err(e) => return Err(format!("starts with {{ but is not JSON: {e}")),
    };
    let entry = |e: &Map<String, Value>,
                 value_name: &'static str,
                 protected: Option<&str>|
     -> Result<Entry, String> {
        let protected_b64 = match protected {
            Some(p) => p.to_owned(),
            None => str_member(e, "protected")?.unwrap_or("").to_owned(),
        };
        let protected = if protected_b64.is_empty() {
            Header {
                json: Some(Map::new()),
                raw: None,
                strict_error: None,
            }
        } else {
            read_header(&decode_part("protected", &protected_b64))
        };
        let value = decode_part(value_name, str_member(e, value_name)?.unwrap_or(""));
        Ok(Entry {
            protected_b64,
            protected,
            header: object_member(e, "header")?,
            value,
        })
    };
    if m.contains_key("ciphertext") {
        let protected = str_member(&m, "protected")?.unwrap_or("");
        let recipients: Vec<Map<String, Value>> = match m.get("recipients") {
            Some(Value::Array(r)) => r
                .iter()
                .map(|v| {
                    v.as_object()
                        .cloned()
                        .ok_or("a recipient is not an object".to_owned())
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("recipients is not an array".to_owned()),
            None => vec![m.clone()],
        };
        if recipients.is_empty() {
            return Err("the JWE has no recipients".to_owned());
        }
        let general = m.contains_key("recipients");
        let mut parts = vec![decode_part("protected", protected)];
        let mut entries = Vec::new();
        for (i, r) in recipients.iter().enumerate() {
            let e = entry(r, "encrypted_key", Some(protected))?;
            if i < MAX_ENTRIES {
                parts.push(e.value.clone());
            }
            entries.push(e);
        }
        let p = |name: &'static str| -> Result<Part, String> {
            Ok(decode_part(name, str_member(&m, name)?.unwrap_or("")))
        };
        let (iv, ciphertext, tag) = (p("iv")?, p("ciphertext")?, p("tag")?);
        parts.extend([iv.clone(), ciphertext.clone(), tag.clone()]);
        let aad_b64 = str_member(&m, "aad")?.map(str::to_owned);
        if aad_b64.is_some() {
            parts.push(p("aad")?);
        }
        return Ok(RawLayer {
            kind: "JWE",
            serialization: if general { "general" } else { "flattened" },
            parts,
            entries,
            body: Some(Body::Jwe {
                unprotected: object_member(&m, "unprotected")?,
                aad_b64,
                iv,
                ciphertext,
                tag,
            }),
            not_jose: None,
        });
    }
    let (signatures, general): (Vec<Map<String, Value>>, bool) = match m.get("signatures") {
        Some(Value::Array(s)) => (
            s.iter()
                .map(|v| {
                    v.as_object()
                        .cloned()
                        .ok_or("a signature is not an object".to_owned())
                })
                .collect::<Result<_, _>>()?,
            true,
        ),
        Some(_) => return Err("signatures is not an array".to_owned()),
        None if m.contains_key("signature") => (vec![m.clone()], false),
        None => {
            return Err(
                "a JSON object, but neither a JWS (payload and signature or signatures) nor a \
                 JWE (ciphertext) JSON serialization"
                    .to_owned(),
            )
        }
    };
    if signatures.is_empty() {
        return Err("the JWS has no signatures".to_owned());
    }
    let payload_text = str_member(&m, "payload")?.map(str::to_owned);
    let mut parts = vec![decode_part(
        "payload",
        payload_text.as_deref().unwrap_or(""),
    )];
    let mut entries = Vec::new();
    for (i, s) in signatures.iter().enumerate() {
        let e = entry(s, "signature", None)?;
        if i < MAX_ENTRIES {
            parts.push(decode_part("protected", &e.protected_b64));
            parts.push(e.value.clone());
        }
        entries.push(e);
    }
    Ok(RawLayer {
        kind: "JWS",
        serialization: if general { "general" } else { "flattened" },
        parts,
        entries,
        body: Some(Body::Jws { payload_text }),
        not_jose: None,
    })
}

/// Decodes one layer; returns the next layer's text when the content is a
/// nested token.
fn decode_layer(
    text: &str,
    depth: usize,
    keys: &DecodeKeys,
    now: f64,
) -> (LayerView, Option<String>) {
    let raw = RawLayer::read(text);
    let mut notes = Vec::new();
    let server_syntax = match raw.serialization {
        "compact" => StrictLayer::parse(text).err().map(ServerRefusal::from),
        _ => Some(ServerRefusal {
            code: jose_binding::ErrorCode::Malformed.as_str(),
            detail: "a JSON serialization: the protocol carries compact tokens only",
        }),
    };
    let header = raw.header();
    let opening = raw.open(keys);
    let (crypto, content_bytes, entries, warnings) = match opening {
        Some(o) => {
            notes.extend(o.notes);
            (o.crypto, o.content, o.entries, o.warnings)
        }
        None => {
            if let Some(why) = &raw.not_jose {
                notes.push(why.clone());
            }
            (
                Crypto::Unsupported {
                    why: "not a JWS or JWE".to_owned(),
                },
                None,
                Vec::new(),
                Vec::new(),
            )
        }
    };
    let problems = raw.problems();
    let unencoded_payload = raw.raw_payload();
    let RawLayer {
        kind,
        serialization,
        parts,
        ..
    } = raw;
    let forbidden_members = header
        .json
        .as_ref()
        .map(|m| {
            FORBIDDEN_HEADERS
                .iter()
                .filter(|h| m.contains_key(**h))
                .map(|h| (*h).to_owned())
                .collect()
        })
        .unwrap_or_default();
    let cty = header.str_member("cty");
    let (content, next) = match content_bytes {
        None => (Content::Hidden, None),
        // zip in any header (an unprotected one is also refused).
        Some(bytes) if kind == "JWE" && warnings.iter().any(|w| w.code == Lint::Zip.code()) => {
            // Never inflated: a small token can hold a decompression bomb.
            notes.push(
                "the content is compressed (zip); it is not inflated here, so it is shown as bytes"
                    .to_owned(),
            );
            (
                Content::Binary {
                    bytes: bytes.len(),
                    hex_prefix: hex::encode(&bytes[..bytes.len().min(32)]),
                },
                None,
            )
        }
        Some(bytes) => classify(&bytes, cty, now, &mut notes),
    };
    (
        LayerView {
            depth,
            kind,
            serialization,
            unencoded_payload,
            chars: text.len(),
            parts,
            header,
            forbidden_members,
            server_syntax,
            crypto,
            entries: if serialization == "compact" {
                Vec::new()
            } else {
                entries
            },
            warnings,
            problems,
            content,
            notes,
        },
        next,
    )
}

/// A token's outer layer, read once to try many keys on it: how a token's
/// connection is recognised among those of a key log.
pub struct OuterLayer(RawLayer);

impl OuterLayer {
    pub fn read(token: &str) -> OuterLayer {
        OuterLayer(RawLayer::read(token))
    }

    /// Whether the layer opens with these keys: its HMAC verifies, or it
    /// decrypts. Only a compact layer can be this protocol's, and only it
    /// is tried: a key log may hold thousands of connections.
    pub fn opens(&self, sig: &[u8], enc: &[u8]) -> bool {
        if self.0.serialization != "compact" {
            return false;
        }
        let keys = DecodeKeys {
            sig: Some(Zeroizing::new(sig.to_vec())),
            enc: Some(Zeroizing::new(enc.to_vec())),
            ..DecodeKeys::default()
        };
        self.0.open(&keys).is_some_and(|o| o.crypto.is_verified())
    }
}

/// Looks like a compact token: base64url characters and 2 or 4 dots, with
/// a first part that decodes to something starting with `{`.
fn looks_like_token(s: &str) -> bool {
    let dots = s.bytes().filter(|&b| b == b'.').count();
    if !(dots == 2 || dots == 4) {
        return false;
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b'+' | b'/'))
    {
        return false;
    }
    let first = s.split('.').next().unwrap_or("");
    decode_part("header", first)
        .decoded
        .is_some_and(|h| h.trim_ascii_start().first() == Some(&b'{'))
}

fn classify(
    bytes: &[u8],
    cty: Option<&str>,
    now: f64,
    notes: &mut Vec<String>,
) -> (Content, Option<String>) {
    let says_nested = cty.is_some_and(|c| {
        c.eq_ignore_ascii_case("JWT") || c.eq_ignore_ascii_case("application/jwt")
    });
    if let Ok(s) = std::str::from_utf8(bytes) {
        if looks_like_token(s.trim()) {
            if cty.is_none() {
                notes.push("the content is a nested token although there is no cty".to_owned());
            }
            return (Content::Nested, Some(s.trim().to_owned()));
        }
    }
    if says_nested {
        notes.push("cty says the content is a JWT, but it is not a compact token".to_owned());
    }
    if bytes.is_empty() {
        return (
            Content::Text {
                text: String::new(),
            },
            None,
        );
    }
    let (json, strict_error) = lenient_object(bytes);
    if let Some(json) = json {
        let mut claim_notes = Vec::new();
        let times = TimeClaim::ALL
            .into_iter()
            .filter_map(|c| {
                let v = json.get(c.name())?;
                match v.as_f64() {
                    Some(value) => Some(TimeInfo {
                        claim: c.name(),
                        value,
                        rfc3339: rfc3339(value),
                        relative: c.relative(value, now),
                    }),
                    None => {
                        claim_notes.push(format!("{} is not a number", c.name()));
                        None
                    }
                }
            })
            .collect();
        return (
            Content::Claims(Claims {
                raw: strict_error.map(|_| shown_text(bytes)),
                json,
                strict_error,
                times,
                notes: claim_notes,
            }),
            None,
        );
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => {
            if let Some(why) = strict_error {
                notes.push(format!(
                    "the content is not a JSON object (plain JOSE allows any content; \
                     this protocol needs a claims set): {why}"
                ));
            }
            (
                Content::Text {
                    text: shown_text(bytes),
                },
                None,
            )
        }
        Err(_) => (
            Content::Binary {
                bytes: bytes.len(),
                hex_prefix: hex::encode(&bytes[..bytes.len().min(32)]),
            },
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jose_binding::token::{encrypt_jwe, headers, sign_jws};
    use jose_binding::{EncKey, SigKey};

    const NOW: f64 = 1_767_225_600.0;

    fn keys(sig: [u8; 32], enc: [u8; 32]) -> DecodeKeys {
        DecodeKeys {
            sig: Some(Zeroizing::new(sig.to_vec())),
            enc: Some(Zeroizing::new(enc.to_vec())),
            ..DecodeKeys::default()
        }
    }

    #[test]
    fn cleans_pasted_input() {
        let c = clean(b"  Authorization: Bearer \"abc.\n def.ghi\"\n").unwrap();
        assert_eq!(c.token, "abc.def.ghi");
        assert_eq!(c.notes.len(), 4, "{:?}", c.notes);
        assert_eq!(clean(b" \n"), Err(InputError::Empty));
        assert_eq!(clean(b"ab\xffcd"), Err(InputError::NotUtf8(2)));
        assert_eq!(clean(b"bearer x").unwrap().token, "x");
        let json = "Bearer {\n  \"header\": {\"kid\": \"a b\"}\n}";
        assert_eq!(clean(json.as_bytes()).unwrap().token, &json[7..]);
        let emoji = "\u{1F600}.\u{1F600}.\u{1F600}";
        assert_eq!(clean(emoji.as_bytes()).unwrap().token, emoji);
        assert_eq!(
            clean("Authorizatio\u{e9}".as_bytes()).unwrap().notes.len(),
            0
        );
    }

    #[test]
    fn parts_report_what_is_not_canonical() {
        assert!(decode_part("p", "QQ").problems.is_empty());
        let p = decode_part("p", "QQ==");
        assert_eq!(p.decoded.as_deref(), Some(&b"A"[..]));
        assert_eq!(p.problems, ["has = padding"]);
        let p = decode_part("p", "QR");
        assert_eq!(p.decoded.as_deref(), Some(&b"A"[..]));
        assert!(p.problems[0].contains("trailing bits"));
        let p = decode_part("p", "+/8");
        assert_eq!(p.decoded.as_deref(), Some(&[0xfb, 0xff][..]));
        assert!(p.problems[0].contains("standard"));
        let p = decode_part("p", "Q");
        assert!(p.decoded.is_none() && p.problems == ["is not base64url"]);
    }

    #[test]
    fn decodes_every_form_with_and_without_keys() {
        let (s, e) = ([1u8; 32], [2u8; 32]);
        let claims =
            br#"{"iss":"c","aud":"localhost","iat":1767225600,"exp":1767225660,"jti":"j"}"#;
        let sig = SigKey::from_bytes(s);
        let enc = EncKey::from_bytes(e);
        let jws_t = sign_jws(&headers::jws("c"), claims, &sig);
        let es = sign_jws(
            &headers::jws_nested("c"),
            encrypt_jwe(&headers::jwe("c"), claims, &enc, [3; 12]).as_bytes(),
            &sig,
        );
        let se = encrypt_jwe(&headers::jwe_nested("c"), jws_t.as_bytes(), &enc, [4; 12]);
        for (t, structure, form) in [
            (&jws_t, "JWS > claims", "signed"),
            (&es, "JWS > JWE > claims", "encrypted-then-signed"),
            (&se, "JWE > JWS > claims", "signed-then-encrypted"),
        ] {
            let d = decode(t, &keys(s, e), NOW);
            assert_eq!(d.structure, structure);
            assert_eq!(d.form, Some(form));
            assert!(d.all_verified(), "{d:#?}");
            let c = d.claims().unwrap();
            assert_eq!(c.json["jti"], "j");
            assert_eq!(c.times.len(), 2);
            assert_eq!(c.times[1].relative, "expires in 1 min");
            assert_eq!(c.times[0].rfc3339.as_deref(), Some("2026-01-01T00:00:00Z"));
            assert!(d.layers.iter().all(|l| l.server_syntax.is_none()));
            assert_eq!(d.outer_kid(), Some("c"));
            assert!(OuterLayer::read(t).opens(&s, &e));
            assert!(!OuterLayer::read(t).opens(&[9; 32], &[9; 32]));
        }
        // Without keys: JWS payloads are visible, JWE contents are not.
        let d = decode(&es, &DecodeKeys::default(), NOW);
        assert_eq!(d.structure, "JWS > JWE > (encrypted)");
        assert!(matches!(d.layers[0].crypto, Crypto::NoKey { .. }));
        let jwe_parts: Vec<Option<usize>> = d.layers[1].parts.iter().map(|p| p.bytes).collect();
        assert_eq!(
            jwe_parts[1..],
            [Some(0), Some(12), Some(claims.len()), Some(16)]
        );
        let d = decode(&se, &keys([9; 32], [9; 32]), NOW);
        assert!(matches!(d.layers[0].crypto, Crypto::Failed { .. }));
        assert!(matches!(d.layers[0].content, Content::Hidden));
    }

    #[test]
    fn shows_what_the_server_refuses() {
        let key = [5u8; 32];
        let sig = SigKey::from_bytes(key);
        let t = sign_jws(
            r#"{"alg":"HS256","alg":"none","typ":"JWT","kid":"c","zip":"DEF"}"#,
            br#"{"a":1,"a":2}"#,
            &sig,
        );
        let d = decode(&t, &keys(key, key), NOW);
        let l = &d.layers[0];
        assert_eq!(
            l.header.strict_error,
            Some("a JSON member name is repeated")
        );
        assert!(l
            .header
            .raw
            .as_deref()
            .unwrap()
            .contains("\"alg\":\"none\""));
        assert_eq!(
            l.header.str_member("alg"),
            Some("none"),
            "last value wins leniently"
        );
        assert_eq!(l.forbidden_members, ["zip"]);
        assert_eq!(l.server_syntax.as_ref().unwrap().code, "malformed");
        assert!(matches!(l.crypto, Crypto::Unsecured));
        let c = d.claims().unwrap();
        assert_eq!(c.strict_error, Some("a JSON member name is repeated"));
        assert_eq!(c.json["a"], 2);
    }

    #[test]
    fn never_panics_on_junk() {
        for junk in [
            "",
            ".",
            "....",
            "a.b.c",
            "a..b..c",
            "....x",
            "eyJ9.e30.",
            "e30.e30.e30",
            "e30....",
            "{\"payload\":\"x\"}",
            "{\"payload\":\"x\",\"signatures\":[]}",
            "{\"payload\":1,\"signatures\":[{\"protected\":7}]}",
            "{\"ciphertext\":\"\",\"recipients\":[{}]}",
            "{\"ciphertext\":\"AA\",\"protected\":\"e30\",\"unprotected\":{\"alg\":\"dir\",\"enc\":\"A128GCM\"},\"iv\":\"\",\"tag\":\"\"}",
            "{\"signature\":\"\",\"protected\":\"eyJhbGciOiJIUzI1NiJ9\",\"header\":{\"alg\":\"none\"}}",
            "[1,2]",
            "{",
            "\u{1F600}.\u{1F600}.\u{1F600}",
            "e30.e30.e30.e30.e30",
            "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAA.AAAA.AAAA",
        ] {
            let d = decode(junk, &keys([1; 32], [1; 32]), NOW);
            assert_eq!(d.layers.len(), 1, "{junk}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let key = SigKey::from_bytes([1; 32]);
        let mut t = sign_jws(&headers::jws("c"), b"{}", &key);
        for _ in 0..6 {
            t = sign_jws(&headers::jws_nested("c"), t.as_bytes(), &key);
        }
        let d = decode(&t, &DecodeKeys::default(), NOW);
        assert_eq!(d.layers.len(), MAX_LAYERS);
        assert!(d.truncated);
        assert!(d.layers[MAX_LAYERS - 1].notes[0].contains("not decoded past"));
    }
}
