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

use crate::jwa::{ContentEnc, MacAlg};
use crate::keys::LENIENT_B64URL;
use crate::time::{rfc3339, TimeClaim};

/// Deepest nesting shown (the protocol has one level; this tool shows more).
pub const MAX_LAYERS: usize = 4;
/// Longest text content echoed back, in characters.
const MAX_TEXT_SHOWN: usize = 4096;

/// Secrets the decoder may use. Lengths are free: generic JOSE keys are
/// not always 32 bytes.
#[derive(Default)]
pub struct DecodeKeys {
    pub sig: Option<Zeroizing<Vec<u8>>>,
    pub enc: Option<Zeroizing<Vec<u8>>>,
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
    Verified { alg: String, key_fp: String },
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
            Crypto::Verified { alg, key_fp } if kind == "JWE" => {
                format!("{alg}: decrypts with the key fp={key_fp}")
            }
            Crypto::Verified { alg, key_fp } => format!("{alg}: verifies with the key fp={key_fp}"),
            Crypto::Failed { alg, key_fp, why } => match key_fp {
                Some(fp) => format!("{alg}: FAILS with the key fp={fp}: {why}"),
                None => format!("{alg}: fails: {why}"),
            },
            Crypto::NoKey { alg, needs } => format!("{alg}: not checked, no key (give {needs})"),
            Crypto::Unsupported { why } => format!("not checked: {why}"),
            Crypto::Unsecured => "alg none: an unsecured JWS, nothing to verify".to_owned(),
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
    pub content: Content,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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

/// One layer's text split into parts, each decoded, and its header read:
/// everything about a layer that does not depend on keys.
struct RawLayer<'a> {
    pieces: Vec<&'a str>,
    kind: &'static str,
    parts: Vec<Part>,
    header: Header,
}

impl<'a> RawLayer<'a> {
    fn read(text: &'a str) -> RawLayer<'a> {
        let pieces: Vec<&str> = text.split('.').collect();
        let kind = match pieces.len() {
            3 => "JWS",
            5 => "JWE",
            _ => "unknown",
        };
        let names: &[&'static str] = match kind {
            "JWS" => &["header", "payload", "signature"],
            "JWE" => &["header", "encrypted_key", "iv", "ciphertext", "tag"],
            _ => &[],
        };
        let parts: Vec<Part> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let name = names
                    .get(i)
                    .copied()
                    .unwrap_or(if i == 0 { "header" } else { "part" });
                decode_part(name, p)
            })
            .collect();
        let header = match parts.first() {
            Some(p) => read_header(p),
            None => read_header(&decode_part("header", "")),
        };
        RawLayer {
            pieces,
            kind,
            parts,
            header,
        }
    }

    /// The layer's MAC or AEAD with these keys, and the content it gives.
    fn crypto(&self, keys: &DecodeKeys) -> Option<(Crypto, Option<Vec<u8>>)> {
        match self.kind {
            "JWS" => Some(jws(&self.pieces, &self.parts, &self.header, keys)),
            "JWE" => Some(jwe(&self.pieces, &self.parts, &self.header, keys)),
            _ => None,
        }
    }
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
    let server_syntax = StrictLayer::parse(text).err().map(ServerRefusal::from);
    let (crypto, content_bytes) = match raw.crypto(keys) {
        Some(c) => c,
        None => {
            notes.push(format!(
                "{} dot-separated part(s): a compact JWS has 3, a JWE 5{}",
                raw.pieces.len(),
                if text.trim_start().starts_with('{') {
                    " (JSON serialization is not supported)"
                } else if raw.pieces.len() < 3 {
                    " (truncated?)"
                } else {
                    ""
                }
            ));
            (
                Crypto::Unsupported {
                    why: "not a compact JWS or JWE".to_owned(),
                },
                None,
            )
        }
    };
    let mac = raw.header.str_member("alg").and_then(MacAlg::from_name);
    if let (Some(mac), Some(key), "JWS") = (mac, &keys.sig, raw.kind) {
        if key.len() < mac.min_key_len() {
            notes.push(format!(
                "the key is {} bytes; RFC 7518 §3.2 wants at least {} for this alg",
                key.len(),
                mac.min_key_len()
            ));
        }
    }
    let RawLayer {
        kind,
        parts,
        header,
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
    if header.str_member("zip").is_some() {
        notes.push("zip is set: the content is compressed; it is not inflated here".to_owned());
    }
    let cty = header.str_member("cty");
    let (content, next) = match content_bytes {
        None => (Content::Hidden, None),
        Some(bytes) => classify(&bytes, cty, now, &mut notes),
    };
    (
        LayerView {
            depth,
            kind,
            chars: text.len(),
            parts,
            header,
            forbidden_members,
            server_syntax,
            crypto,
            content,
            notes,
        },
        next,
    )
}

fn jws(
    pieces: &[&str],
    parts: &[Part],
    header: &Header,
    keys: &DecodeKeys,
) -> (Crypto, Option<Vec<u8>>) {
    let payload = parts.get(1).and_then(|p| p.decoded.clone());
    let alg = header.str_member("alg").unwrap_or("").to_owned();
    let crypto = match alg.as_str() {
        "" => Crypto::Unsupported {
            why: "the header has no alg (string)".to_owned(),
        },
        "none" => Crypto::Unsecured,
        "HS256" | "HS384" | "HS512" => match (&keys.sig, parts.get(2)) {
            (None, _) => Crypto::NoKey {
                alg,
                needs: "--sig-key, or --root-key with --ekm/--keylog",
            },
            (Some(key), Some(sig_part)) => {
                let fp = Fingerprint::of("sig", key).to_string();
                let input = format!("{}.{}", pieces[0], pieces.get(1).copied().unwrap_or(""));
                match &sig_part.decoded {
                    None => Crypto::Failed {
                        alg,
                        key_fp: Some(fp),
                        why: "the signature part is not base64url".to_owned(),
                    },
                    Some(sig) => match MacAlg::from_name(&alg)
                        .is_some_and(|m| m.verify(key, input.as_bytes(), sig))
                    {
                        true => Crypto::Verified { alg, key_fp: fp },
                        false => Crypto::Failed {
                            alg,
                            key_fp: Some(fp),
                            why: format!(
                                "the signature ({} bytes) does not verify with this key: \
                                 another key (another connection?) or altered content",
                                sig.len()
                            ),
                        },
                    },
                }
            }
            (Some(_), None) => Crypto::Unsupported {
                why: "no signature part".to_owned(),
            },
        },
        other => Crypto::Unsupported {
            why: format!("alg {other}: only HMAC (HS256, HS384, HS512) is verified here"),
        },
    };
    (crypto, payload)
}

fn jwe(
    pieces: &[&str],
    parts: &[Part],
    header: &Header,
    keys: &DecodeKeys,
) -> (Crypto, Option<Vec<u8>>) {
    let alg = header.str_member("alg").unwrap_or("");
    let enc_name = header.str_member("enc").unwrap_or("");
    let label = format!("{alg}/{enc_name}");
    let enc = match ContentEnc::from_name(enc_name) {
        Some(enc) if alg == "dir" => enc,
        _ => {
            return (
                Crypto::Unsupported {
                    why: format!(
                        "alg {alg:?} enc {enc_name:?}: only alg dir is decrypted here, with \
                         A128GCM, A192GCM, A256GCM, A128CBC-HS256, A192CBC-HS384 or A256CBC-HS512"
                    ),
                },
                None,
            )
        }
    };
    let Some(key) = &keys.enc else {
        return (
            Crypto::NoKey {
                alg: label,
                needs: "--enc-key, or --root-key with --ekm/--keylog",
            },
            None,
        );
    };
    let fp = Fingerprint::of("enc", key).to_string();
    let fail = |why: String| {
        (
            Crypto::Failed {
                alg: label.clone(),
                key_fp: Some(fp.clone()),
                why,
            },
            None,
        )
    };
    let (Some(iv), Some(ct), Some(tag)) = (
        parts[2].decoded.as_deref(),
        parts[3].decoded.as_deref(),
        parts[4].decoded.as_deref(),
    ) else {
        return fail("IV, ciphertext or tag is not base64url".to_owned());
    };
    match enc.open(key, pieces[0].as_bytes(), iv, ct, tag) {
        Ok(plain) => (
            Crypto::Verified {
                alg: label,
                key_fp: fp,
            },
            Some(plain),
        ),
        Err(e) => fail(e.to_string()),
    }
}

/// A token's outer layer, read once to try many keys on it: how a token's
/// connection is recognised among those of a key log.
pub struct OuterLayer<'a>(RawLayer<'a>);

impl<'a> OuterLayer<'a> {
    pub fn read(token: &'a str) -> OuterLayer<'a> {
        OuterLayer(RawLayer::read(token))
    }

    /// Whether the layer opens with these keys: its HMAC verifies, or it decrypts.
    pub fn opens(&self, sig: &[u8], enc: &[u8]) -> bool {
        let keys = DecodeKeys {
            sig: Some(Zeroizing::new(sig.to_vec())),
            enc: Some(Zeroizing::new(enc.to_vec())),
        };
        self.0
            .crypto(&keys)
            .is_some_and(|(crypto, _)| crypto.is_verified())
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
