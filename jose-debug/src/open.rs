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
        private: bool,
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
            Need::Ec { crv, private } => {
                format!("an EC {crv} {}key", if private { "private " } else { "" })
            }
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
        "ES256" => Need::Ec {
            crv: "P-256",
            private: false,
        },
        "ES384" => Need::Ec {
            crv: "P-384",
            private: false,
        },
        "ES512" => Need::Ec {
            crv: "P-521",
            private: false,
        },
        "ES256K" => Need::Ec {
            crv: "secp256k1",
            private: false,
        },
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

/// A key to try: given on the command line as octets, or from the ring.
enum Candidate<'a> {
    Octets {
        option: &'static str,
        bytes: &'a [u8],
    },
    Ring(&'a RingKey),
}

impl Candidate<'_> {
    fn kid(&self) -> Option<&str> {
        match self {
            Candidate::Ring(k) => k.kid.as_deref(),
            Candidate::Octets { .. } => None,
        }
    }

    /// The fingerprint the output names the key by.
    fn fp(&self) -> String {
        match self {
            Candidate::Octets { option, bytes } => {
                let kind = if *option == "--sig-key" { "sig" } else { "enc" };
                Fingerprint::of(kind, bytes).to_string()
            }
            Candidate::Ring(k) => k.fp.trim_start_matches("fp=").to_owned(),
        }
    }

    fn label(&self) -> String {
        match self {
            Candidate::Octets { option, .. } => format!("{option} (fp={})", self.fp()),
            Candidate::Ring(k) => k.label(),
        }
    }

    fn octets(&self) -> Option<Zeroizing<Vec<u8>>> {
        match self {
            Candidate::Octets { bytes, .. } => Some(Zeroizing::new(bytes.to_vec())),
            Candidate::Ring(k) => k.octets(),
        }
    }
}

/// Whether a ring key can serve `need` for `alg`; `Err` says why not.
fn fits(
    key: &RingKey,
    need: Need,
    alg: &str,
    enc: Option<&str>,
    epk_crv: Option<&str>,
) -> Result<(), String> {
    if let Some(key_alg) = &key.alg {
        // A dir key is often labelled with the content encryption it is for.
        if key_alg != alg && !(alg == "dir" && Some(key_alg.as_str()) == enc) {
            return Err(format!("the key is for alg {key_alg}"));
        }
    }
    let ok = match (need, &key.kind) {
        (Need::Oct | Need::Password, KeyKind::Oct { .. }) => true,
        (Need::Rsa { private }, KeyKind::Rsa { private: has, .. }) => {
            if private && !has {
                return Err("an RSA public key cannot decrypt; give the private key".to_owned());
            }
            true
        }
        (Need::Ec { crv, private: _ }, KeyKind::Ec { crv: has, .. }) => crv == has,
        (Need::EdDsa, KeyKind::Okp { crv, .. }) => crv == "Ed25519" || crv == "Ed448",
        (Need::Agreement, KeyKind::Ec { crv, private } | KeyKind::Okp { crv, private }) => {
            if Some(crv.as_str()) != epk_crv {
                false
            } else if !private {
                return Err("a public key cannot decrypt; give the private key".to_owned());
            } else {
                true
            }
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("it is {}", key.kind.describe()))
    }
}

/// The keys worth trying, in order: those the `kid` names first. Also says
/// how they were chosen, and warns when the keys given do not fit the alg.
struct Choice<'a> {
    tried: Vec<Candidate<'a>>,
    /// The kid is in the set (only its keys are tried).
    kid_matched: bool,
    unfit: Vec<String>,
}

fn choose<'a>(
    keys: &'a DecodeKeys,
    option: &'static str,
    need: Need,
    alg: &str,
    kid: Option<&str>,
    enc: Option<&str>,
    epk_crv: Option<&str>,
) -> Choice<'a> {
    let raw = match option {
        "--sig-key" => keys.sig.as_deref(),
        _ => keys.enc.as_deref(),
    };
    let mut fitting: Vec<Candidate<'a>> = Vec::new();
    if let (Some(bytes), Need::Oct | Need::Password) = (raw, need) {
        fitting.push(Candidate::Octets {
            option,
            bytes: bytes.as_slice(),
        });
    }
    let mut unfit = Vec::new();
    for k in &keys.ring.keys {
        match fits(k, need, alg, enc, epk_crv) {
            Ok(()) => fitting.push(Candidate::Ring(k)),
            Err(why) => unfit.push(format!("{}: {why}", k.label())),
        }
    }
    let named: Vec<usize> = match kid {
        Some(kid) => fitting
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kid() == Some(kid))
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    };
    let kid_matched = !named.is_empty();
    let tried = if kid_matched {
        let mut named_keys = Vec::new();
        for (i, c) in fitting.into_iter().enumerate() {
            if named.contains(&i) {
                named_keys.push(c);
            }
        }
        named_keys
    } else {
        fitting
    };
    Choice {
        tried,
        kid_matched,
        unfit,
    }
}

/// What trying the keys gave, before it becomes a [`Crypto`].
struct Trial {
    /// Index into the tried keys of the one that worked, and its output.
    found: Option<(usize, Vec<u8>)>,
    /// Each key that did not work, and why.
    failures: Vec<(String, String)>,
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
    match kid {
        _ if choice.kid_matched => None,
        Some(kid) if !ring_kids.is_empty() => Some(format!(
            "kid {kid:?} is not in the set; it has {}; tried {} key(s) of a fitting type: {result}",
            ring_kids.join(", "),
            choice.tried.len()
        )),
        Some(kid) if choice.tried.len() > 1 => Some(format!(
            "kid {kid:?} names none of the keys; tried {} key(s) of a fitting type: {result}",
            choice.tried.len()
        )),
        None if choice.tried.len() > 1 => Some(format!(
            "the header has no kid; tried {} key(s) of a fitting type: {result}",
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
    fn new(crypto: Crypto) -> Opened {
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
    let mut out = Opened::new(Crypto::Unsecured);
    if choice.tried.is_empty() {
        mismatch_warning(&alg, need, &choice, &mut out);
        out.crypto = Crypto::NoKey {
            alg,
            needs: needs_for(need, "--sig-key"),
        };
        return out;
    }
    let Some(signature) = input.signature else {
        out.crypto = Crypto::Failed {
            alg,
            key_fp: None,
            why: "the signature part is not base64url".to_owned(),
        };
        return out;
    };
    let mut trial = Trial {
        found: None,
        failures: Vec::new(),
    };
    for (i, c) in choice.tried.iter().enumerate() {
        key_warnings(c, &alg, &mut out.warnings);
        match verify_one(&alg, c, input.signing_input, signature) {
            Ok(()) => {
                trial.found = Some((i, Vec::new()));
                break;
            }
            Err(why) => trial.failures.push((c.label(), why)),
        }
    }
    finish(&alg, "verifies", choice, trial, kid, keys, out)
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
            let why = match trial.failures.as_slice() {
                [(_, why)] => why.clone(),
                many => format!(
                    "none of the {} keys {verb}: {}",
                    many.len(),
                    many.iter()
                        .map(|(label, why)| format!("{label}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
            Crypto::Failed {
                alg: alg.to_owned(),
                key_fp: match choice.tried.as_slice() {
                    [one] => Some(one.fp()),
                    _ => None,
                },
                why,
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
    if choice.unfit.is_empty() {
        return;
    }
    out.warnings.push(Warning::new(
        Lint::AlgKeyMismatch,
        format!(
            "alg {alg} needs {}, and no key given is one ({}); not tried: a verifier that \
             lets the token's alg choose how a key is used can be fooled into, say, an HMAC \
             keyed with a public key (RFC 8725 §2.1, §3.1)",
            need.describe(),
            choice.unfit.join("; ")
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

fn verify_one(alg: &str, c: &Candidate<'_>, input: &[u8], sig: &[u8]) -> Result<(), String> {
    let bad = || {
        "the signature does not verify with this key: another key, or altered content".to_owned()
    };
    if let Some(mac) = MacAlg::from_name(alg) {
        let key = c.octets().ok_or("the key has no octets")?;
        return mac.verify(&key, input, sig).then_some(()).ok_or_else(bad);
    }
    let Candidate::Ring(key) = c else {
        return Err("not a key for this alg".to_owned());
    };
    if alg.starts_with("RS") || alg.starts_with("PS") {
        return verify_rsa(alg, key, input, sig)?
            .then_some(())
            .ok_or_else(bad);
    }
    let verifier: Box<dyn JwsVerifier> = match alg {
        "ES256" => Box::new(kjws::ES256.verifier_from_jwk(&key.jwk).map_err(lib)?),
        "ES384" => Box::new(kjws::ES384.verifier_from_jwk(&key.jwk).map_err(lib)?),
        "ES512" => Box::new(kjws::ES512.verifier_from_jwk(&key.jwk).map_err(lib)?),
        "ES256K" => Box::new(kjws::ES256K.verifier_from_jwk(&key.jwk).map_err(lib)?),
        "EdDSA" => Box::new(kjws::EdDSA.verifier_from_jwk(&key.jwk).map_err(lib)?),
        _ => return Err(format!("alg {alg} is not verified here")),
    };
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
    Ok(v.verify_oneshot(sig, input).unwrap_or(false))
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
}

/// Unwraps the content key with every fitting key until the content opens.
pub fn decrypt_jwe(input: &EncryptedInput<'_>, keys: &DecodeKeys) -> Opened {
    let h = input.header;
    let alg = str_of(h, "alg").unwrap_or("").to_owned();
    let enc_name = str_of(h, "enc").unwrap_or("");
    let kid = str_of(h, "kid");
    let label = format!("{alg}/{enc_name}");
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
    let mut choice = choose(
        keys,
        "--enc-key",
        need,
        &alg,
        kid,
        Some(enc_name),
        epk_crv.as_deref(),
    );
    let password = keys.password.as_deref().map(|p| Candidate::Octets {
        option: "--password-file",
        bytes: p.as_slice(),
    });
    if let (Need::Password, Some(p)) = (need, password) {
        choice.tried.insert(0, p);
    }
    if choice.tried.is_empty() {
        mismatch_warning(&alg, need, &choice, &mut out);
        out.crypto = Crypto::NoKey {
            alg: label,
            needs: needs_for(need, "--enc-key"),
        };
        return out;
    }
    let mut trial = Trial {
        found: None,
        failures: Vec::new(),
    };
    for (i, c) in choice.tried.iter().enumerate() {
        key_warnings(c, &alg, &mut out.warnings);
        let opened = content_key(&alg, enc, c, input).and_then(|cek| {
            enc.open(&cek, input.aad, input.iv, input.ciphertext, input.tag)
                .map_err(|e| e.to_string())
        });
        match opened {
            Ok(plain) => {
                trial.found = Some((i, plain));
                break;
            }
            Err(why) => trial.failures.push((c.label(), why)),
        }
    }
    finish(&label, "decrypts", choice, trial, kid, keys, out)
}

/// The content encryption key, unwrapped (or agreed) by josekit.
fn content_key(
    alg: &str,
    enc: ContentEnc,
    c: &Candidate<'_>,
    input: &EncryptedInput<'_>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    if alg == "dir" {
        if !input.encrypted_key.is_empty() {
            return Err("alg dir has an encrypted key; RFC 7516 §4.1.1 wants it empty".to_owned());
        }
        return c.octets().ok_or_else(|| "the key has no octets".to_owned());
    }
    let decrypter: Box<dyn JweDecrypter> = match (alg, c) {
        (_, Candidate::Octets { bytes, .. }) => octet_decrypter(alg, bytes)?,
        (_, Candidate::Ring(k)) if matches!(k.kind, KeyKind::Oct { .. }) => {
            let bytes = k.octets().ok_or("the key has no octets")?;
            octet_decrypter(alg, &bytes)?
        }
        // Reading RSA1_5 tokens is the point: they are opened and warned about.
        #[allow(deprecated)]
        ("RSA1_5", Candidate::Ring(k)) => {
            Box::new(kjwe::RSA1_5.decrypter_from_jwk(&k.jwk).map_err(lib)?)
        }
        ("RSA-OAEP", Candidate::Ring(k)) => {
            Box::new(kjwe::RSA_OAEP.decrypter_from_jwk(&k.jwk).map_err(lib)?)
        }
        ("RSA-OAEP-256", Candidate::Ring(k)) => {
            Box::new(kjwe::RSA_OAEP_256.decrypter_from_jwk(&k.jwk).map_err(lib)?)
        }
        ("RSA-OAEP-384", Candidate::Ring(k)) => {
            Box::new(kjwe::RSA_OAEP_384.decrypter_from_jwk(&k.jwk).map_err(lib)?)
        }
        ("RSA-OAEP-512", Candidate::Ring(k)) => {
            Box::new(kjwe::RSA_OAEP_512.decrypter_from_jwk(&k.jwk).map_err(lib)?)
        }
        ("ECDH-ES", Candidate::Ring(k)) => {
            Box::new(kjwe::ECDH_ES.decrypter_from_jwk(&k.jwk).map_err(lib)?)
        }
        ("ECDH-ES+A128KW", Candidate::Ring(k)) => Box::new(
            kjwe::ECDH_ES_A128KW
                .decrypter_from_jwk(&k.jwk)
                .map_err(lib)?,
        ),
        ("ECDH-ES+A192KW", Candidate::Ring(k)) => Box::new(
            kjwe::ECDH_ES_A192KW
                .decrypter_from_jwk(&k.jwk)
                .map_err(lib)?,
        ),
        ("ECDH-ES+A256KW", Candidate::Ring(k)) => Box::new(
            kjwe::ECDH_ES_A256KW
                .decrypter_from_jwk(&k.jwk)
                .map_err(lib)?,
        ),
        _ => return Err(format!("alg {alg} is not decrypted with this key")),
    };
    let header = JweHeader::from_map(input.header.clone()).map_err(lib)?;
    let encrypted_key = (!input.encrypted_key.is_empty()).then_some(input.encrypted_key);
    let cek: Cow<'_, [u8]> = decrypter
        .decrypt(encrypted_key, josekit_enc(enc), &header)
        .map_err(|e| {
            let s = e.to_string();
            format!(
                "the key does not unwrap the content key: {}",
                s.lines().next().unwrap_or("")
            )
        })?;
    Ok(Zeroizing::new(cek.into_owned()))
}

fn octet_decrypter(alg: &str, key: &[u8]) -> Result<Box<dyn JweDecrypter>, String> {
    Ok(match alg {
        "A128KW" => Box::new(kjwe::A128KW.decrypter_from_bytes(key).map_err(lib)?),
        "A192KW" => Box::new(kjwe::A192KW.decrypter_from_bytes(key).map_err(lib)?),
        "A256KW" => Box::new(kjwe::A256KW.decrypter_from_bytes(key).map_err(lib)?),
        "A128GCMKW" => Box::new(kjwe::A128GCMKW.decrypter_from_bytes(key).map_err(lib)?),
        "A192GCMKW" => Box::new(kjwe::A192GCMKW.decrypter_from_bytes(key).map_err(lib)?),
        "A256GCMKW" => Box::new(kjwe::A256GCMKW.decrypter_from_bytes(key).map_err(lib)?),
        "PBES2-HS256+A128KW" => Box::new(
            kjwe::PBES2_HS256_A128KW
                .decrypter_from_bytes(key)
                .map_err(lib)?,
        ),
        "PBES2-HS384+A192KW" => Box::new(
            kjwe::PBES2_HS384_A192KW
                .decrypter_from_bytes(key)
                .map_err(lib)?,
        ),
        "PBES2-HS512+A256KW" => Box::new(
            kjwe::PBES2_HS512_A256KW
                .decrypter_from_bytes(key)
                .map_err(lib)?,
        ),
        _ => return Err(format!("alg {alg} does not take a symmetric key")),
    })
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

/// RFC 7518 §4.8.1.2: refuses a count above [`MAX_P2C`] before computing
/// anything; warns below [`MIN_P2C`].
fn check_p2c(h: &Map<String, Value>) -> Result<Option<Warning>, Warning> {
    let Some(p2c) = h.get("p2c").and_then(Value::as_u64) else {
        return Err(Warning::new(
            Lint::P2cTooLarge,
            "p2c is missing or not a positive integer".to_owned(),
        ));
    };
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
        use base64::Engine;
        let v = s(n).ok_or_else(|| format!("epk has no {n}"))?;
        crate::keys::LENIENT_B64URL
            .decode(v.as_bytes())
            .map_err(|_| format!("epk's {n} is not base64url"))
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
        assert!(check_p2c(&map(json!({"p2c": "4096"}))).is_err());
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
