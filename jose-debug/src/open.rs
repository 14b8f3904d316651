//! Opening a layer with the keys given: which keys fit the layer's `alg`,
//! which one its `kid` names, and the signature check or key unwrap that
//! decides. The algorithms are libraries' (josekit, OpenSSL, RustCrypto);
//! this module chooses among keys and says what it did.

use std::borrow::Cow;

use jose_binding::Fingerprint;
use josekit::jwe::{self as kjwe, JweContentEncryption, JweDecrypter, JweHeader};
use josekit::jws::{self as kjws, JwsVerifier};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Verifier};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::inspect::{Crypto, DecodeKeys};
use crate::jwa::{ContentEnc, MacAlg};
use crate::keyring::{KeyKind, RingKey};
use crate::lint::{Lint, Warning};

/// Largest PBES2 iteration count computed. RFC 7518 §4.8.1.2 leaves it
/// open; a token chooses it, so a cap keeps a pasted token from costing
/// minutes (1,000,000 is josekit's cap too).
pub const MAX_P2C: u64 = 1_000_000;
/// Fewer iterations than RFC 7518 §4.8.1.2's minimum.
pub const MIN_P2C: u64 = 1000;
/// PBKDF2 iterations one run computes at most, over every recipient and
/// password tried: eight keys at the largest count.
pub const MAX_P2C_TOTAL: u64 = 8 * MAX_P2C;
/// RSA private-key operations one run makes at most (each may cost tens of
/// milliseconds with a large key).
pub const MAX_PRIVATE_OPS: u64 = 64;
/// Keys tried on one signature or recipient: a key set of thousands must
/// not make one token cost minutes of private-key operations.
pub const MAX_TRIED: usize = 64;
/// Failures named one by one in a result; the rest are counted.
const MAX_FAILURES_SHOWN: usize = 4;

/// What a layer's `alg` needs of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A symmetric key; the JWS MAC or the JWE wrap.
    Oct,
    Rsa {
        private: bool,
    },
    Ec {
        crv: &'static str,
    },
    /// Ed25519 or Ed448.
    EdDsa,
    /// The curve of the token's `epk` (EC or OKP), private.
    Agreement,
    /// A password (PBES2), or an oct key holding one.
    Password,
}

impl Need {
    fn describe(self) -> String {
        match self {
            Need::Oct => "a symmetric (oct) key".to_owned(),
            Need::Rsa { private: false } => "an RSA key".to_owned(),
            Need::Rsa { private: true } => "an RSA private key".to_owned(),
            Need::Ec { crv } => format!("an EC {crv} key"),
            Need::EdDsa => "an OKP Ed25519 or Ed448 key".to_owned(),
            Need::Agreement => "a private key on the curve of the token's epk".to_owned(),
            Need::Password => "--password-file (or an oct key holding the password)".to_owned(),
        }
    }
}

fn jws_need(alg: &str) -> Option<Need> {
    Some(match alg {
        "HS256" | "HS384" | "HS512" => Need::Oct,
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => Need::Rsa { private: false },
        "ES256" => Need::Ec { crv: "P-256" },
        "ES384" => Need::Ec { crv: "P-384" },
        "ES512" => Need::Ec { crv: "P-521" },
        "ES256K" => Need::Ec { crv: "secp256k1" },
        "EdDSA" => Need::EdDsa,
        _ => return None,
    })
}

fn jwe_need(alg: &str) -> Option<Need> {
    Some(match alg {
        "dir" | "A128KW" | "A192KW" | "A256KW" | "A128GCMKW" | "A192GCMKW" | "A256GCMKW" => {
            Need::Oct
        }
        "RSA1_5" | "RSA-OAEP" | "RSA-OAEP-256" | "RSA-OAEP-384" | "RSA-OAEP-512" => {
            Need::Rsa { private: true }
        }
        "ECDH-ES" | "ECDH-ES+A128KW" | "ECDH-ES+A192KW" | "ECDH-ES+A256KW" => Need::Agreement,
        "PBES2-HS256+A128KW" | "PBES2-HS384+A192KW" | "PBES2-HS512+A256KW" => Need::Password,
        _ => return None,
    })
}

/// A key to try: octets from the command line, the PBES2 password, or a
/// key of the ring.
enum Candidate<'a> {
    Octets {
        option: &'static str,
        bytes: &'a [u8],
    },
    /// Never fingerprinted: a password's hash is a guessing oracle.
    Password(&'a [u8]),
    Ring(&'a RingKey),
}

impl Candidate<'_> {
    fn kid(&self) -> Option<&str> {
        match self {
            Candidate::Ring(k) => k.kid.as_deref(),
            _ => None,
        }
    }

    /// How the result names the key: a fingerprint, a thumbprint, or
    /// "password".
    fn fp(&self) -> String {
        match self {
            Candidate::Octets { option, bytes } => {
                let kind = if *option == "--sig-key" { "sig" } else { "enc" };
                Fingerprint::of(kind, bytes).to_string()
            }
            Candidate::Password(_) => "password".to_owned(),
            Candidate::Ring(k) => k.fp.clone(),
        }
    }

    fn label(&self) -> String {
        match self {
            Candidate::Octets { option, .. } => format!("{option} (fp={})", self.fp()),
            Candidate::Password(_) => "--password-file".to_owned(),
            Candidate::Ring(k) => k.label(),
        }
    }

    fn octets(&self) -> Option<Zeroizing<Vec<u8>>> {
        match self {
            Candidate::Octets { bytes, .. } | Candidate::Password(bytes) => {
                Some(Zeroizing::new(bytes.to_vec()))
            }
            Candidate::Ring(k) => k.octets(),
        }
    }
}

/// Whether a key is of the type `need` takes (its kty and curve): RFC 7517
/// §4.5 lets keys of different types share a kid, so a kid is matched
/// among the keys of the type the alg takes.
fn type_fits(key: &RingKey, need: Need, epk_crv: Option<&str>) -> bool {
    // A public key cannot decrypt: it is no key for a JWE at all.
    let needs_private = matches!(need, Need::Rsa { private: true } | Need::Agreement);
    if needs_private && !key.kind.is_private() {
        return false;
    }
    match (need, &key.kind) {
        (Need::Oct | Need::Password, KeyKind::Oct { .. }) => true,
        (Need::Rsa { .. }, KeyKind::Rsa { .. }) => true,
        (Need::Ec { crv }, KeyKind::Ec { crv: has, .. }) => crv == has,
        (Need::EdDsa, KeyKind::Okp { crv, .. }) => crv == "Ed25519" || crv == "Ed448",
        (Need::Agreement, KeyKind::Ec { crv, .. } | KeyKind::Okp { crv, .. }) => {
            Some(crv.as_str()) == epk_crv
        }
        _ => false,
    }
}

/// Whether a key of the right type may be used for `alg`: the JWK's own
/// `alg`, `use` and `key_ops` (RFC 7517 §4). `Err` says why not.
fn allowed(key: &RingKey, alg: &str, enc: Option<&str>) -> Result<(), String> {
    if let Some(key_alg) = &key.alg {
        // A dir key is often labelled with the content encryption it is for.
        if key_alg != alg && !(alg == "dir" && Some(key_alg.as_str()) == enc) {
            return Err(format!("the key is for alg {key_alg:?}"));
        }
    }
    let want_use = if jws_need(alg).is_some() {
        "sig"
    } else {
        "enc"
    };
    if let Some(u) = &key.key_use {
        if u != want_use {
            return Err(format!("the key's use is {u:?}, not {want_use:?}"));
        }
    }
    let op = key_op(alg);
    if let Some(key_ops) = &key.key_ops {
        if !key_ops.iter().any(|o| o == op) {
            return Err(format!("the key's key_ops {key_ops:?} do not hold {op:?}"));
        }
    }
    Ok(())
}

/// The `key_ops` value (RFC 7517 §4.3) a key needs for `alg`, as josekit
/// checks it.
fn key_op(alg: &str) -> &'static str {
    match alg {
        _ if jws_need(alg).is_some() => "verify",
        "A128KW" | "A192KW" | "A256KW" => "unwrapKey",
        _ if alg.starts_with("ECDH-ES") || alg.starts_with("PBES2") => "deriveKey",
        _ => "decrypt",
    }
}

/// The keys worth trying. When the header's `kid` names keys of the ring,
/// only those are tried: another key that happens to verify must not
/// stand in for the one the token names.
struct Choice<'a> {
    tried: Vec<Candidate<'a>>,
    /// The kid names keys of the ring (only they are tried).
    kid_matched: bool,
    /// Fitting keys left out by [`MAX_TRIED`].
    left_out: usize,
    /// Keys given that do not fit, and why.
    unfit: Vec<String>,
    /// The keys the kid names that may not be used for the alg, and why.
    named_unfit: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn choose<'a>(
    keys: &'a DecodeKeys,
    option: &'static str,
    need: Need,
    alg: &str,
    kid: Option<&str>,
    enc: Option<&str>,
    epk_crv: Option<&str>,
) -> Choice<'a> {
    let typed: Vec<&RingKey> = keys
        .ring
        .keys
        .iter()
        .filter(|k| type_fits(k, need, epk_crv))
        .collect();
    let kid_matched = kid.is_some_and(|kid| typed.iter().any(|k| k.kid.as_deref() == Some(kid)));
    let mut fitting: Vec<Candidate<'a>> = Vec::new();
    // Keys without a kid stand aside when the kid names a key. --enc-key
    // is a key, not a password: PBES2 takes --password-file and oct keys.
    if let (Need::Password, Some(p), false) = (need, keys.password.as_deref(), kid_matched) {
        fitting.push(Candidate::Password(p.as_slice()));
    }
    let raw = match option {
        "--sig-key" => keys.sig.as_deref(),
        _ => keys.enc.as_deref(),
    };
    if let (Some(bytes), Need::Oct, false) = (raw, need, kid_matched) {
        fitting.push(Candidate::Octets {
            option,
            bytes: bytes.as_slice(),
        });
    }
    let mut unfit: Vec<String> = keys
        .ring
        .keys
        .iter()
        .filter(|k| !type_fits(k, need, epk_crv))
        .map(|k| match k.kind.is_private() {
            false if matches!(need, Need::Rsa { private: true } | Need::Agreement) => format!(
                "{}: it is {}, and a public key cannot decrypt: give the private key",
                k.label(),
                k.kind.describe()
            ),
            _ => format!("{}: it is {}", k.label(), k.kind.describe()),
        })
        .collect();
    let mut named_unfit = Vec::new();
    for k in typed {
        if kid_matched && k.kid.as_deref() != kid {
            continue;
        }
        match allowed(k, alg, enc) {
            Ok(()) => fitting.push(Candidate::Ring(k)),
            Err(why) if kid_matched => named_unfit.push(format!("{}: {why}", k.label())),
            Err(why) => unfit.push(format!("{}: {why}", k.label())),
        }
    }
    let left_out = fitting.len().saturating_sub(MAX_TRIED);
    fitting.truncate(MAX_TRIED);
    Choice {
        tried: fitting,
        kid_matched,
        left_out,
        unfit,
        named_unfit,
    }
}

/// One key that did not open the layer.
struct Miss {
    label: String,
    why: String,
    /// The check ran and said no; `false` when the key could not be used
    /// at all (a library refused it), which is no cryptographic failure.
    checked: bool,
}

/// What trying the keys gave, before it becomes a [`Crypto`].
struct Trial {
    /// Index into the tried keys of the one that worked, and its output.
    found: Option<(usize, Vec<u8>)>,
    misses: Vec<Miss>,
}

impl Trial {
    fn new() -> Trial {
        Trial {
            found: None,
            misses: Vec::new(),
        }
    }
}

/// A sentence on how the key was chosen, when there was a choice.
fn selection_note(
    choice: &Choice<'_>,
    trial: &Trial,
    kid: Option<&str>,
    ring_kids: &[&str],
) -> Option<String> {
    let winner = trial.found.as_ref().map(|(i, _)| choice.tried[*i].label());
    let result = match &winner {
        Some(w) => format!("{w} verifies"),
        None => "none verifies".to_owned(),
    };
    let left_out = match choice.left_out {
        0 => String::new(),
        n => format!(" ({n} more not tried: at most {MAX_TRIED} keys per signature or recipient)"),
    };
    match kid {
        _ if choice.kid_matched => None,
        Some(kid) if !ring_kids.is_empty() => {
            let mut kids: Vec<String> = ring_kids.iter().take(8).map(|k| format!("{k:?}")).collect();
            if ring_kids.len() > 8 {
                kids.push(format!("and {} more", ring_kids.len() - 8));
            }
            Some(format!(
                "kid {kid:?} is not in the set; it has {}; tried {} key(s) of a fitting type{left_out}: {result}",
                kids.join(", "),
                choice.tried.len()
            ))
        }
        Some(kid) if choice.tried.len() > 1 => Some(format!(
            "kid {kid:?} names none of the keys; tried {} key(s) of a fitting type{left_out}: {result}",
            choice.tried.len()
        )),
        None if choice.tried.len() > 1 => Some(format!(
            "the header has no kid; tried {} key(s) of a fitting type{left_out}: {result}",
            choice.tried.len()
        )),
        _ => None,
    }
}

/// A JWS signature, from any serialization.
pub struct SignedInput<'a> {
    /// The JOSE header (protected and unprotected members).
    pub header: &'a Map<String, Value>,
    /// ASCII(BASE64URL(protected)) || '.' || the payload as signed.
    pub signing_input: &'a [u8],
    pub signature: Option<&'a [u8]>,
}

/// The outcome of one layer: the crypto, notes for the reader, warnings.
pub struct Opened {
    pub crypto: Crypto,
    pub content: Option<Vec<u8>>,
    pub notes: Vec<String>,
    pub warnings: Vec<Warning>,
}

impl Opened {
    pub fn new(crypto: Crypto) -> Opened {
        Opened {
            crypto,
            content: None,
            notes: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

fn str_of<'a>(h: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    h.get(name).and_then(Value::as_str)
}

/// No key was tried: the layer says what it needs, and warns when the keys
/// given were of the wrong type or the kid named keys that do not fit.
fn no_fitting_key(
    alg: String,
    need: Need,
    option: &'static str,
    choice: &Choice<'_>,
    kid: Option<&str>,
) -> Opened {
    let mut out = Opened::new(Crypto::NoKey {
        alg: alg.clone(),
        needs: needs_for(need, option),
    });
    mismatch_warning(&alg, need, choice, &mut out);
    if choice.kid_matched {
        // The token names its key, and that key may not be used this way:
        // a failure, never a reason to try another key.
        out.crypto = Crypto::Failed {
            why: format!(
                "kid {:?} names key(s) that may not be used with {alg}: {}",
                kid.unwrap_or(""),
                choice.named_unfit.join("; ")
            ),
            alg,
            key_fp: None,
        };
    }
    out
}

/// Verifies a signature with every fitting key until one verifies.
pub fn verify_jws(input: &SignedInput<'_>, keys: &DecodeKeys) -> Opened {
    let alg = str_of(input.header, "alg").unwrap_or("").to_owned();
    let kid = str_of(input.header, "kid");
    match alg.as_str() {
        "" => {
            return Opened::new(Crypto::Unsupported {
                why: "the header has no alg (string)".to_owned(),
            })
        }
        "none" => return Opened::new(Crypto::Unsecured),
        _ => {}
    }
    // Every registered JWS algorithm is known here: any other name is a
    // token no conforming verifier accepts (RFC 7515 §4.1.1).
    let Some(need) = jws_need(&alg) else {
        return Opened::new(Crypto::Refused {
            why: format!("alg {alg:?} is not a JWS algorithm of RFC 7518 or RFC 8037"),
            alg,
        });
    };
    let choice = choose(keys, "--sig-key", need, &alg, kid, None, None);
    if choice.tried.is_empty() {
        return no_fitting_key(alg, need, "--sig-key", &choice, kid);
    }
    let Some(signature) = input.signature else {
        return Opened::new(Crypto::Failed {
            alg,
            key_fp: None,
            why: "the signature part is not base64url".to_owned(),
        });
    };
    // The crypto is set by finish(); this is only its start.
    let mut out = Opened::new(Crypto::Unsecured);
    let mut trial = Trial::new();
    for (i, c) in choice.tried.iter().enumerate() {
        key_warnings(c, &alg, &mut out.warnings);
        match verify_one(&alg, c, input.signing_input, signature) {
            Ok(()) => {
                trial.found = Some((i, Vec::new()));
                break;
            }
            Err(miss) => trial.misses.push(miss.named(c.label())),
        }
    }
    finish(&alg, "verifies", choice, trial, kid, keys, out)
}

/// Why one key did not work, before it is named.
enum KeyMiss {
    /// The check ran and failed.
    Failed(String),
    /// The key could not be used (a library refused it).
    Unusable(String),
}

impl KeyMiss {
    fn named(self, label: String) -> Miss {
        match self {
            KeyMiss::Failed(why) => Miss {
                label,
                why,
                checked: true,
            },
            KeyMiss::Unusable(why) => Miss {
                label,
                why,
                checked: false,
            },
        }
    }
}

/// Turns a trial into the layer's crypto and notes.
fn finish(
    alg: &str,
    verb: &str,
    choice: Choice<'_>,
    trial: Trial,
    kid: Option<&str>,
    keys: &DecodeKeys,
    mut out: Opened,
) -> Opened {
    if let Some(n) = selection_note(&choice, &trial, kid, &keys.ring.kids()) {
        out.notes.push(n);
    }
    out.crypto = match &trial.found {
        Some((i, _)) => Crypto::Verified {
            alg: alg.to_owned(),
            key_fp: choice.tried[*i].fp(),
            kid: choice.tried[*i].kid().map(str::to_owned),
        },
        None => {
            let why = match trial.misses.as_slice() {
                [one] => one.why.clone(),
                many => {
                    let mut each: Vec<String> = many
                        .iter()
                        .take(MAX_FAILURES_SHOWN)
                        .map(|m| format!("{}: {}", m.label, m.why))
                        .collect();
                    if many.len() > MAX_FAILURES_SHOWN {
                        each.push(format!("and {} more", many.len() - MAX_FAILURES_SHOWN));
                    }
                    format!(
                        "none of the {} keys {verb}: {}",
                        many.len(),
                        each.join("; ")
                    )
                }
            };
            if trial.misses.iter().any(|m| m.checked) {
                Crypto::Failed {
                    alg: alg.to_owned(),
                    key_fp: match choice.tried.as_slice() {
                        [one] => Some(one.fp()),
                        _ => None,
                    },
                    why,
                }
            } else {
                Crypto::Unsupported {
                    why: format!("{alg}: no key given could be used: {why}"),
                }
            }
        }
    };
    out.content = trial.found.map(|(_, c)| c);
    out
}

fn needs_for(need: Need, option: &'static str) -> &'static str {
    match (need, option) {
        (Need::Oct, "--sig-key") => {
            "--key with an oct JWK, --sig-key, or --root-key with --ekm/--keylog"
        }
        (Need::Oct, _) => "--key with an oct JWK, --enc-key, or --root-key with --ekm/--keylog",
        (Need::Password, _) => "--password-file",
        (Need::Rsa { private: true }, _) => "--key with the RSA private key",
        (Need::Agreement, _) => "--key with the private key of the epk's curve",
        _ => "--key with the signer's public key (PEM, certificate, JWK or JWKS)",
    }
}

/// Keys were given, but none of a type the alg takes: the shape of an
/// algorithm-confusion attack (RFC 8725 §2.1), or the wrong key file.
fn mismatch_warning(alg: &str, need: Need, choice: &Choice<'_>, out: &mut Opened) {
    let all: Vec<&str> = choice
        .named_unfit
        .iter()
        .chain(&choice.unfit)
        .map(String::as_str)
        .collect();
    if all.is_empty() {
        return;
    }
    let mut unfit: Vec<&str> = all.iter().copied().take(MAX_FAILURES_SHOWN).collect();
    let more = format!("and {} more", all.len().saturating_sub(MAX_FAILURES_SHOWN));
    if all.len() > MAX_FAILURES_SHOWN {
        unfit.push(&more);
    }
    out.warnings.push(Warning::new(
        Lint::AlgKeyMismatch,
        format!(
            "alg {alg} needs {}, and no key given may be used so ({}); not tried: a verifier that \
             lets the token's alg choose how a key is used can be fooled into, say, an HMAC \
             keyed with a public key (RFC 8725 §2.1, §3.1)",
            need.describe(),
            unfit.join("; ")
        ),
    ));
}

/// Warnings about the key itself, for the alg it is used with.
fn key_warnings(c: &Candidate<'_>, alg: &str, warnings: &mut Vec<Warning>) {
    let push = |w: &mut Vec<Warning>, warning: Warning| {
        if !w.iter().any(|x| x.code == warning.code) {
            w.push(warning);
        }
    };
    if let Some(mac) = MacAlg::from_name(alg) {
        if let Some(k) = c.octets() {
            if k.len() < mac.min_key_len() {
                push(
                    warnings,
                    Warning::new(
                        Lint::HmacKeyShort,
                        format!(
                            "the {alg} key is {} bytes; RFC 7518 §3.2 requires at least {} \
                             (the hash's size): a short key can be guessed offline from one token",
                            k.len(),
                            mac.min_key_len()
                        ),
                    ),
                );
            }
        }
    }
    if let Candidate::Ring(RingKey {
        kind: KeyKind::Rsa { bits, .. },
        ..
    }) = c
    {
        if *bits < 2048 {
            push(
                warnings,
                Warning::new(
                    Lint::RsaKeySmall,
                    format!(
                        "the RSA key has {bits} bits; RFC 7518 §3.3 and §4.2 require 2048 or more"
                    ),
                ),
            );
        }
    }
}

fn verify_one(alg: &str, c: &Candidate<'_>, input: &[u8], sig: &[u8]) -> Result<(), KeyMiss> {
    let bad = || {
        KeyMiss::Failed(
            "the signature does not verify with this key: another key, or altered content"
                .to_owned(),
        )
    };
    if let Some(mac) = MacAlg::from_name(alg) {
        let key = c
            .octets()
            .ok_or_else(|| KeyMiss::Unusable("the key has no octets".to_owned()))?;
        return mac.verify(&key, input, sig).then_some(()).ok_or_else(bad);
    }
    let Candidate::Ring(key) = c else {
        return Err(KeyMiss::Unusable("not a key for this alg".to_owned()));
    };
    if alg.starts_with("RS") || alg.starts_with("PS") {
        return match verify_rsa(alg, key, input, sig) {
            Ok(true) => Ok(()),
            Ok(false) => Err(bad()),
            Err(why) => Err(KeyMiss::Unusable(why)),
        };
    }
    let verifier: Result<Box<dyn JwsVerifier>, josekit::JoseError> = match alg {
        "EdDSA" => kjws::EdDSA
            .verifier_from_jwk(&key.jwk)
            .map(|v| Box::new(v) as _),
        _ => {
            let ecdsa = match alg {
                "ES256" => kjws::ES256,
                "ES384" => kjws::ES384,
                "ES512" => kjws::ES512,
                "ES256K" => kjws::ES256K,
                _ => return Err(KeyMiss::Unusable(format!("alg {alg} is not verified here"))),
            };
            ecdsa.verifier_from_jwk(&key.jwk).map(|v| Box::new(v) as _)
        }
    };
    let verifier = verifier.map_err(|e| KeyMiss::Unusable(lib(e)))?;
    verifier.verify(input, sig).map_err(|_| bad())
}

/// josekit's error, without its source chain (which may quote input).
fn lib(e: josekit::JoseError) -> String {
    let s = e.to_string();
    format!("cannot use the key: {}", s.lines().next().unwrap_or(""))
}

/// RSASSA-PKCS1-v1_5 and PSS through OpenSSL directly: josekit refuses RSA
/// keys under 2048 bits outright, and a debugger must verify what it warns
/// about.
fn verify_rsa(alg: &str, key: &RingKey, input: &[u8], sig: &[u8]) -> Result<bool, String> {
    let component = |name: &str| -> Result<BigNum, String> {
        let v = key
            .jwk
            .parameter(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the RSA key has no {name}"))?;
        let bytes = crate::keys::LENIENT_B64URL
            .decode(v.as_bytes())
            .map_err(|_| format!("the RSA key's {name} is not base64url"))?;
        BigNum::from_slice(&bytes).map_err(|e| e.to_string())
    };
    use base64::Engine;
    let rsa =
        Rsa::from_public_components(component("n")?, component("e")?).map_err(|e| e.to_string())?;
    let pkey = PKey::from_rsa(rsa).map_err(|e| e.to_string())?;
    let md = match &alg[2..] {
        "256" => MessageDigest::sha256(),
        "384" => MessageDigest::sha384(),
        _ => MessageDigest::sha512(),
    };
    let mut v = Verifier::new(md, &pkey).map_err(|e| e.to_string())?;
    if alg.starts_with("PS") {
        v.set_rsa_padding(Padding::PKCS1_PSS)
            .and_then(|_| v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH))
            .and_then(|_| v.set_rsa_mgf1_md(md))
            .map_err(|e| e.to_string())?;
    }
    // A signature of the wrong length is a failed check; an error is
    // OpenSSL refusing the key or the padding.
    if sig.len() != pkey.size() {
        return Ok(false);
    }
    v.verify_oneshot(sig, input)
        .map_err(|e| format!("OpenSSL will not use the key: {e}"))
}

/// A JWE's parts, from any serialization, for one recipient.
pub struct EncryptedInput<'a> {
    /// The JOSE header: protected, shared unprotected and the recipient's.
    pub header: &'a Map<String, Value>,
    pub encrypted_key: &'a [u8],
    pub iv: &'a [u8],
    pub ciphertext: &'a [u8],
    pub tag: &'a [u8],
    /// ASCII(BASE64URL(protected)), with '.' || BASE64URL(aad) when there is one.
    pub aad: &'a [u8],
    /// RSA private-key operations made so far in this run.
    pub private_ops: &'a std::cell::Cell<u64>,
}

/// Unwraps the content key with every fitting key until the content opens.
pub fn decrypt_jwe(input: &EncryptedInput<'_>, keys: &DecodeKeys) -> Opened {
    let h = input.header;
    let alg = str_of(h, "alg").unwrap_or("").to_owned();
    let enc_name = str_of(h, "enc").unwrap_or("");
    let kid = str_of(h, "kid");
    let label = format!("{alg}/{enc_name}");
    // The crypto is set on every path below; this is only its start.
    let mut out = Opened::new(Crypto::Unsecured);
    let (Some(need), Some(enc)) = (jwe_need(&alg), ContentEnc::from_name(enc_name)) else {
        out.crypto = Crypto::Refused {
            alg: label,
            why: format!(
                "alg {alg:?} enc {enc_name:?}: not a JWE algorithm and content encryption of \
                 RFC 7518 (enc: A128GCM, A192GCM, A256GCM, A128CBC-HS256, A192CBC-HS384, A256CBC-HS512)"
            ),
        };
        return out;
    };
    if alg == "RSA1_5" {
        out.warnings.push(Warning::new(
            Lint::Rsa1_5,
            "alg RSA1_5 (RSAES-PKCS1-v1_5) is open to padding-oracle attacks on any server \
             that decrypts it (RFC 8725 §3.2); use RSA-OAEP-256"
                .to_owned(),
        ));
    }
    let mut epk_crv = None;
    if need == Need::Agreement {
        match check_epk(h) {
            Ok(crv) => epk_crv = Some(crv),
            Err(why) => {
                out.warnings
                    .push(Warning::new(Lint::EpkInvalid, why.clone()));
                out.crypto = Crypto::Refused { alg: label, why };
                return out;
            }
        }
    }
    if let Err(why) = check_key_agreement_members(&alg, h) {
        out.crypto = Crypto::Refused { alg: label, why };
        return out;
    }
    if need == Need::Password {
        match check_p2c(h) {
            Ok(Some(w)) => out.warnings.push(w),
            Ok(None) => {}
            Err(w) => {
                out.crypto = Crypto::Refused {
                    alg: label,
                    why: w.message.clone(),
                };
                out.warnings.push(w);
                return out;
            }
        }
    }
    if let Err(why) = check_encrypted_key(&alg, h, input.encrypted_key) {
        out.crypto = Crypto::Refused { alg: label, why };
        return out;
    }
    let choice = choose(
        keys,
        "--enc-key",
        need,
        &alg,
        kid,
        Some(enc_name),
        epk_crv.as_deref(),
    );
    if choice.tried.is_empty() {
        let mut none = no_fitting_key(label, need, "--enc-key", &choice, kid);
        none.warnings.splice(0..0, out.warnings);
        return none;
    }
    let p2c = h.get("p2c").and_then(Value::as_u64).unwrap_or(0);
    let mut trial = Trial::new();
    for (i, c) in choice.tried.iter().enumerate() {
        key_warnings(c, &alg, &mut out.warnings);
        if need == Need::Password {
            let spent = keys.pbkdf2_spent.get();
            if spent + p2c > MAX_P2C_TOTAL {
                trial.misses.push(Miss {
                    label: c.label(),
                    why: format!(
                        "not tried: this run has computed {spent} PBKDF2 iterations, and \
                         {MAX_P2C_TOTAL} is the cap"
                    ),
                    checked: false,
                });
                continue;
            }
            keys.pbkdf2_spent.set(spent + p2c);
        }
        let opened = content_key(&alg, enc, c, input).and_then(|cek| {
            enc.open(&cek, input.aad, input.iv, input.ciphertext, input.tag)
                .map_err(|e| KeyMiss::Failed(e.to_string()))
        });
        match opened {
            Ok(plain) => {
                trial.found = Some((i, plain));
                break;
            }
            Err(miss) => trial.misses.push(miss.named(c.label())),
        }
    }
    finish(&label, "decrypts", choice, trial, kid, keys, out)
}

/// What RFC 7516 and 7518 require of the encrypted key before any key is
/// tried (josekit slices it without checking).
fn check_encrypted_key(alg: &str, h: &Map<String, Value>, ek: &[u8]) -> Result<(), String> {
    let wrapped = alg.ends_with("KW") && !alg.ends_with("GCMKW");
    if (alg == "dir" || alg == "ECDH-ES") && !ek.is_empty() {
        return Err(format!(
            "alg {alg} has an encrypted key of {} bytes; RFC 7516 §5.1 wants it empty",
            ek.len()
        ));
    }
    if wrapped && (ek.len() < 24 || !ek.len().is_multiple_of(8)) {
        return Err(format!(
            "the encrypted key is {} bytes; an AES key wrap (RFC 3394) of a content key is a \
             multiple of 8 bytes, 24 or more",
            ek.len()
        ));
    }
    if alg.ends_with("GCMKW") {
        let len = |name: &str| {
            h.get(name)
                .and_then(Value::as_str)
                .and_then(jose_binding::b64::decode)
                .map(|b| b.len())
        };
        if len("iv") != Some(12) || len("tag") != Some(16) {
            return Err(
                "an AES-GCM key wrap needs the header members iv (96 bits) and tag (128 bits), \
                 in base64url (RFC 7518 §4.7.1)"
                    .to_owned(),
            );
        }
    }
    if (alg.starts_with("RSA") || alg.starts_with("A1") || alg.starts_with("A2")) && ek.is_empty() {
        return Err(format!("alg {alg} needs an encrypted key; it is empty"));
    }
    Ok(())
}

/// The content encryption key, unwrapped (or agreed) by josekit.
fn content_key(
    alg: &str,
    enc: ContentEnc,
    c: &Candidate<'_>,
    input: &EncryptedInput<'_>,
) -> Result<Zeroizing<Vec<u8>>, KeyMiss> {
    let unusable = |e: josekit::JoseError| KeyMiss::Unusable(lib(e));
    let no_octets = || KeyMiss::Unusable("the key has no octets".to_owned());
    if alg == "dir" {
        return c.octets().ok_or_else(no_octets);
    }
    let decrypter: Box<dyn JweDecrypter> = match (alg, c) {
        (_, Candidate::Octets { bytes, .. } | Candidate::Password(bytes)) => {
            octet_decrypter(alg, bytes)?
        }
        (_, Candidate::Ring(k)) if matches!(k.kind, KeyKind::Oct { .. }) => {
            let bytes = k.octets().ok_or_else(no_octets)?;
            octet_decrypter(alg, &bytes)?
        }
        (_, Candidate::Ring(k)) if alg.starts_with("RSA") => {
            // RFC 8017 §7.1.2, §7.2.2: the ciphertext is as long as the
            // modulus. Anything else costs no private-key operation.
            if let KeyKind::Rsa { bits, .. } = k.kind {
                if input.encrypted_key.len() != bits.div_ceil(8) {
                    return Err(KeyMiss::Failed(format!(
                        "the encrypted key is {} bytes; this key's modulus is {}",
                        input.encrypted_key.len(),
                        bits.div_ceil(8)
                    )));
                }
            }
            let done = input.private_ops.get();
            if done >= MAX_PRIVATE_OPS {
                return Err(KeyMiss::Unusable(format!(
                    "not tried: this run has made {MAX_PRIVATE_OPS} RSA private-key operations, the cap"
                )));
            }
            input.private_ops.set(done + 1);
            let rsa = match alg {
                // Reading RSA1_5 tokens is the point: they are opened and warned about.
                #[allow(deprecated)]
                "RSA1_5" => kjwe::RSA1_5,
                "RSA-OAEP" => kjwe::RSA_OAEP,
                "RSA-OAEP-256" => kjwe::RSA_OAEP_256,
                "RSA-OAEP-384" => kjwe::RSA_OAEP_384,
                _ => kjwe::RSA_OAEP_512,
            };
            Box::new(rsa.decrypter_from_jwk(&k.jwk).map_err(unusable)?)
        }
        (_, Candidate::Ring(k)) if alg.starts_with("ECDH-ES") => {
            let ecdh = match alg {
                "ECDH-ES" => kjwe::ECDH_ES,
                "ECDH-ES+A128KW" => kjwe::ECDH_ES_A128KW,
                "ECDH-ES+A192KW" => kjwe::ECDH_ES_A192KW,
                _ => kjwe::ECDH_ES_A256KW,
            };
            Box::new(ecdh.decrypter_from_jwk(&k.jwk).map_err(unusable)?)
        }
        _ => {
            return Err(KeyMiss::Unusable(format!(
                "alg {alg} is not decrypted with this key"
            )))
        }
    };
    let header = JweHeader::from_map(input.header.clone()).map_err(unusable)?;
    let encrypted_key = (!input.encrypted_key.is_empty()).then_some(input.encrypted_key);
    let cek: Cow<'_, [u8]> = decrypter
        .decrypt(encrypted_key, josekit_enc(enc), &header)
        .map_err(|e| {
            let s = e.to_string();
            KeyMiss::Failed(format!(
                "the key does not unwrap the content key: {}",
                s.lines().next().unwrap_or("")
            ))
        })?;
    Ok(Zeroizing::new(cek.into_owned()))
}

fn octet_decrypter(alg: &str, key: &[u8]) -> Result<Box<dyn JweDecrypter>, KeyMiss> {
    let lib = |e: josekit::JoseError| KeyMiss::Unusable(lib(e));
    let aeskw = |a: kjwe::alg::aeskw::AeskwJweAlgorithm| -> Result<Box<dyn JweDecrypter>, KeyMiss> {
        Ok(Box::new(a.decrypter_from_bytes(key).map_err(lib)?))
    };
    let gcmkw =
        |a: kjwe::alg::aesgcmkw::AesgcmkwJweAlgorithm| -> Result<Box<dyn JweDecrypter>, KeyMiss> {
            Ok(Box::new(a.decrypter_from_bytes(key).map_err(lib)?))
        };
    let pbes2 = |a: kjwe::alg::pbes2_hmac_aeskw::Pbes2HmacAeskwJweAlgorithm| -> Result<Box<dyn JweDecrypter>, KeyMiss> {
        Ok(Box::new(a.decrypter_from_bytes(key).map_err(lib)?))
    };
    match alg {
        "A128KW" => aeskw(kjwe::A128KW),
        "A192KW" => aeskw(kjwe::A192KW),
        "A256KW" => aeskw(kjwe::A256KW),
        "A128GCMKW" => gcmkw(kjwe::A128GCMKW),
        "A192GCMKW" => gcmkw(kjwe::A192GCMKW),
        "A256GCMKW" => gcmkw(kjwe::A256GCMKW),
        "PBES2-HS256+A128KW" => pbes2(kjwe::PBES2_HS256_A128KW),
        "PBES2-HS384+A192KW" => pbes2(kjwe::PBES2_HS384_A192KW),
        "PBES2-HS512+A256KW" => pbes2(kjwe::PBES2_HS512_A256KW),
        _ => Err(KeyMiss::Unusable(format!(
            "alg {alg} does not take a symmetric key"
        ))),
    }
}

fn josekit_enc(enc: ContentEnc) -> &'static dyn JweContentEncryption {
    use josekit::jwe::enc as e;
    match enc {
        ContentEnc::A128Gcm => &e::A128GCM,
        ContentEnc::A192Gcm => &e::A192GCM,
        ContentEnc::A256Gcm => &e::A256GCM,
        ContentEnc::A128CbcHs256 => &e::A128CBC_HS256,
        ContentEnc::A192CbcHs384 => &e::A192CBC_HS384,
        ContentEnc::A256CbcHs512 => &e::A256CBC_HS512,
    }
}

/// The header members PBES2 and ECDH-ES read, in the form RFC 7518 §4.6.1
/// and §4.8.1 give them: a malformed one is the token's fault (exit 3),
/// not a key's.
fn check_key_agreement_members(alg: &str, h: &Map<String, Value>) -> Result<(), String> {
    let b64 = |name: &str| -> Result<Option<Vec<u8>>, String> {
        match h.get(name) {
            None => Ok(None),
            Some(Value::String(v)) => jose_binding::b64::decode(v)
                .map(Some)
                .ok_or_else(|| format!("{name} is not canonical base64url")),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    if alg.starts_with("PBES2") {
        match b64("p2s")? {
            Some(salt) if salt.len() >= 8 => {}
            Some(salt) => {
                return Err(format!(
                    "p2s is {} bytes; RFC 7518 §4.8.1.1 wants 8 or more",
                    salt.len()
                ))
            }
            None => return Err("PBES2 needs a p2s (salt) header member".to_owned()),
        }
        if h.get("p2c").and_then(Value::as_u64).is_none_or(|c| c < 1) {
            return Err("p2c is missing or not a positive integer".to_owned());
        }
    }
    if alg.starts_with("ECDH-ES") {
        b64("apu")?;
        b64("apv")?;
    }
    Ok(())
}

/// RFC 7518 §4.8.1.2: refuses a count above [`MAX_P2C`] before computing
/// anything; warns below [`MIN_P2C`].
fn check_p2c(h: &Map<String, Value>) -> Result<Option<Warning>, Warning> {
    let p2c = h.get("p2c").and_then(Value::as_u64).unwrap_or(0);
    if p2c > MAX_P2C {
        return Err(Warning::new(
            Lint::P2cTooLarge,
            format!(
                "p2c {p2c} is above this tool's cap of {MAX_P2C} iterations: refused, not \
                 computed (a token that chooses its own cost is a denial-of-service lever)"
            ),
        ));
    }
    Ok((p2c < MIN_P2C).then(|| {
        Warning::new(
            Lint::P2cLow,
            format!("p2c {p2c} is below RFC 7518 §4.8.1.2's minimum of {MIN_P2C}"),
        )
    }))
}

/// The `epk` of ECDH-ES: its curve, once its point is checked to be on it
/// (RFC 8725 §3.4: an invalid-curve point leaks the private key).
fn check_epk(h: &Map<String, Value>) -> Result<String, String> {
    let epk = match h.get("epk") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err("epk is not a JSON object".to_owned()),
        None => return Err("ECDH-ES needs an epk header member; there is none".to_owned()),
    };
    let s = |n: &str| epk.get(n).and_then(Value::as_str);
    let crv = s("crv").ok_or("epk has no crv")?.to_owned();
    let coord = |n: &str| -> Result<Vec<u8>, String> {
        let v = s(n).ok_or_else(|| format!("epk has no {n}"))?;
        jose_binding::b64::decode(v).ok_or_else(|| format!("epk's {n} is not canonical base64url"))
    };
    match (s("kty"), crv.as_str()) {
        (Some("EC"), "P-256" | "P-384" | "P-521" | "secp256k1") => {
            let nid = match crv.as_str() {
                "P-256" => openssl::nid::Nid::X9_62_PRIME256V1,
                "P-384" => openssl::nid::Nid::SECP384R1,
                "P-521" => openssl::nid::Nid::SECP521R1,
                _ => openssl::nid::Nid::SECP256K1,
            };
            let group = openssl::ec::EcGroup::from_curve_name(nid).map_err(|e| e.to_string())?;
            let len = (group.degree() as usize).div_ceil(8);
            let (x, y) = (coord("x")?, coord("y")?);
            if x.len() != len || y.len() != len {
                return Err(format!(
                    "epk's coordinates are {} and {} bytes; {crv} needs {len}: refused",
                    x.len(),
                    y.len()
                ));
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let mut ctx = openssl::bn::BigNumContext::new().map_err(|e| e.to_string())?;
            openssl::ec::EcPoint::from_bytes(&group, &point, &mut ctx).map_err(|_| {
                format!(
                    "epk is not a point on {crv}: refused, not computed (an invalid-curve \
                     point makes the recipient leak its private key, RFC 8725 §3.4)"
                )
            })?;
            Ok(crv)
        }
        (Some("OKP"), "X25519" | "X448") => {
            let want = if crv == "X25519" { 32 } else { 56 };
            let x = coord("x")?;
            if x.len() != want {
                return Err(format!(
                    "epk's x is {} bytes; {crv} needs {want}: refused",
                    x.len()
                ));
            }
            Ok(crv)
        }
        (kty, _) => Err(format!(
            "epk is kty {} crv {crv}: not a key agreement curve of RFC 7518 or 8037",
            kty.unwrap_or("?")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!(),
        }
    }

    #[test]
    fn p2c_is_capped_and_floored() {
        assert!(check_p2c(&map(json!({"p2c": 4096}))).unwrap().is_none());
        assert_eq!(
            check_p2c(&map(json!({"p2c": 10}))).unwrap().unwrap().code,
            Lint::P2cLow.code()
        );
        assert!(check_p2c(&map(json!({"p2c": MAX_P2C + 1}))).is_err());
        // A p2c that is no positive integer is the header check's to refuse.
        let pbes2 = |h: Value| check_key_agreement_members("PBES2-HS256+A128KW", &map(h));
        assert!(pbes2(json!({"p2c": "4096", "p2s": "AAAAAAAAAAA"})).is_err());
        assert!(pbes2(json!({"p2c": 0, "p2s": "AAAAAAAAAAA"})).is_err());
        assert!(pbes2(json!({"p2c": 1, "p2s": "AAAA"})).is_err());
        assert!(pbes2(json!({"p2c": 1, "p2s": "AAAAAAAAAAA"})).is_ok());
    }

    #[test]
    fn epk_off_its_curve_is_refused() {
        // RFC 7520 §5.4's epk, on P-384.
        let good = json!({"epk": {"kty":"EC","crv":"P-384",
            "x":"uBo4kHPw6kbjx5l0xowrd_oYzBmaz-GKFZu4xAFFkbYiWgutEK6iuEDsQ6wNdNg3",
            "y":"sp3p5SGhZVC2faXumI-e9JU2Mo8KpoYrFDr5yPNVtW4PgEwZOyQTA-JdaY8tb7E0"}});
        assert_eq!(check_epk(&map(good.clone())).unwrap(), "P-384");
        let mut bad = good;
        bad["epk"]["y"] = json!("sp3p5SGhZVC2faXumI-e9JU2Mo8KpoYrFDr5yPNVtW4PgEwZOyQTA-JdaY8tb7E1");
        assert!(check_epk(&map(bad)).unwrap_err().contains("not a point"));
        assert!(check_epk(&map(json!({}))).is_err());
        assert!(check_epk(&map(
            json!({"epk": {"kty":"OKP","crv":"X25519","x":"AAAA"}})
        ))
        .is_err());
    }
}
