//! Root keys inside a TPM 2.0 (feature `tpm`), through tss-esapi.
//!
//! The key `K` is a keyed-hash (HMAC-SHA256) object that is `fixedTPM` and
//! `fixedParent`: the TPM computes PRK = HMAC(K, EKM) and nothing, not even
//! this process, can read `K` back or duplicate it to another TPM. Only the
//! PRK and the per-connection subkeys exist in memory.
//!
//! - The key is loaded once per process and kept loaded; each connection costs
//!   one TPM2_HMAC command.
//! - By default that command runs in an HMAC session salted with the storage
//!   primary key, with parameter encryption both ways, so neither the EKM nor
//!   the PRK crosses the TPM bus in the clear. [`SessionMode::Password`]
//!   trades that for speed.
//! - After any TPM failure the state is dropped and rebuilt on the next call,
//!   so a TPM (or swtpm) that comes back is used again without a restart.
//!
//! A key can also demand more than being in this TPM ([`KeyPolicy`]): a
//! PIN (an authValue; wrong ones count toward the TPM's dictionary-attack
//! lockout), and a PCR policy (TPM2_PolicyPCR: usable only while chosen
//! PCRs hold the values they had at import, i.e. in this boot chain). Both
//! are satisfied inside the salted session, so the PIN never crosses the
//! bus; a PCR-bound key takes a policy session per use.
//!
//! Key files are `TSS2 PRIVATE KEY` PEM (the format of `tpm2_encodeobject`
//! and the OpenSSL TPM provider): a loadable key whose parent `0x40000001`
//! means "the storage primary of the owner hierarchy". That primary is
//! recreated from its template on load; the ECC P-256 storage template is
//! tried first (what our import uses), then tpm2-tools' default RSA-2048 one.

use std::convert::TryFrom;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use der::asn1::{ObjectIdentifier, OctetString};
use der::{DecodePem, EncodePem, Sequence};
use tss_esapi::attributes::{ObjectAttributes, ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::{PropertyTag, SessionType};
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, Digest, EccParameter, EccPoint, KeyedHashScheme, MaxBuffer, PcrSelectionList, PcrSlot,
    Private, Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters,
    RsaExponent, SensitiveData, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;
use zeroize::Zeroizing;

use crate::protocol::schedule::{Ekm, Fingerprint, Prk, RootKey, RootKeyError, SoftwareRootKey};

/// `id-loadablekey` of the TSS2 key file format.
const LOADABLE_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.10.1.3");
/// TPM_RH_OWNER: the parent is the owner hierarchy's storage primary.
pub const OWNER_PARENT: u32 = 0x4000_0001;
const PEM_LABEL: &str = "TSS2 PRIVATE KEY";

/// Where the TPM is, in tpm2-tools' TCTI syntax.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// How TPM2_HMAC is authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SessionMode {
    /// HMAC session salted with the storage primary; EKM and PRK are
    /// encrypted on the bus.
    #[default]
    Salted,
    /// Plain password session: faster, but the PRK crosses the bus in clear.
    Password,
}

impl FromStr for SessionMode {
    type Err = TpmError;
    fn from_str(s: &str) -> Result<Self, TpmError> {
        match s {
            "salted" | "hmac" => Ok(SessionMode::Salted),
            "password" => Ok(SessionMode::Password),
            other => Err(TpmError::Usage(format!(
                "unknown TPM session mode {other:?}: expected salted or password"
            ))),
        }
    }
}

/// Why a TPM key could not be read, written, imported or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The TPM or the TSS refused or failed a step: a bad TCTI, a TPM that
    /// cannot be opened, a primary, session or load that fails.
    #[error("TPM at {tcti}: {what}: {error}")]
    Tpm {
        /// The TCTI the TPM was reached by.
        tcti: String,
        /// The step that failed, in fixed words.
        what: &'static str,
        /// The TSS error.
        error: tss_esapi::Error,
    },
    /// The key file cannot be read or is not a loadable `TSS2 PRIVATE KEY`
    /// this crate can use (another key type, a policy, a parent other than
    /// [`OWNER_PARENT`]).
    #[error("TPM key file: {0}")]
    KeyFile(String),
    /// A setting given by the user is invalid (an unknown [`SessionMode`],
    /// a PCR selection, a PIN missing or given for a key without one).
    #[error("{0}")]
    Usage(String),
}

/// TPM_CC_PolicyPCR, as the key file's policy list names it.
const CC_POLICY_PCR: u32 = 0x0000_017F;
/// TPM_CC_PolicyAuthValue.
const CC_POLICY_AUTH_VALUE: u32 = 0x0000_016B;
/// Most PCRs one selection may name (one TPM2_PCR_Read returns 8).
pub const MAX_POLICY_PCRS: usize = 8;

/// A PCR selection in one bank, as tpm2-tools writes it: `sha256:0,2,4,7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSpec {
    bank: HashingAlgorithm,
    pcrs: Vec<u8>,
}

impl FromStr for PcrSpec {
    type Err = TpmError;
    fn from_str(s: &str) -> Result<Self, TpmError> {
        let bad = |why: &str| {
            TpmError::Usage(format!(
                "PCR policy {s:?}: {why} (e.g. sha256:0,2,4,7: a bank, then up to {MAX_POLICY_PCRS} PCRs of 0-23)"
            ))
        };
        let (bank, list) = s.split_once(':').ok_or_else(|| bad("no bank"))?;
        let bank = match bank.trim() {
            "sha1" => HashingAlgorithm::Sha1,
            "sha256" => HashingAlgorithm::Sha256,
            "sha384" => HashingAlgorithm::Sha384,
            _ => return Err(bad("the bank is sha1, sha256 or sha384")),
        };
        let mut pcrs = list
            .split(',')
            .map(|n| n.trim().parse::<u8>().ok().filter(|n| *n < 24))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad("a PCR is not a number from 0 to 23"))?;
        pcrs.sort_unstable();
        pcrs.dedup();
        if pcrs.is_empty() || pcrs.len() > MAX_POLICY_PCRS {
            return Err(bad("too many or no PCRs"));
        }
        Ok(PcrSpec { bank, pcrs })
    }
}

impl fmt::Display for PcrSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bank = match self.bank {
            HashingAlgorithm::Sha1 => "sha1",
            HashingAlgorithm::Sha384 => "sha384",
            _ => "sha256",
        };
        let list: Vec<String> = self.pcrs.iter().map(u8::to_string).collect();
        write!(f, "{bank}:{}", list.join(","))
    }
}

impl PcrSpec {
    fn selection(&self) -> tss_esapi::Result<PcrSelectionList> {
        let slots = self
            .pcrs
            .iter()
            .map(|&n| PcrSlot::try_from(1u32 << n))
            .collect::<tss_esapi::Result<Vec<_>>>()?;
        PcrSelectionList::builder()
            .with_selection(self.bank, &slots)
            .build()
    }

    fn alg_id(&self) -> u16 {
        match self.bank {
            HashingAlgorithm::Sha1 => 0x0004,
            HashingAlgorithm::Sha384 => 0x000C,
            _ => 0x000B,
        }
    }

    /// TPML_PCR_SELECTION with this one selection (3 bytes of bitmap).
    fn marshal(&self) -> Vec<u8> {
        let mut bitmap = [0u8; 3];
        for &n in &self.pcrs {
            bitmap[usize::from(n / 8)] |= 1 << (n % 8);
        }
        let mut out = Vec::with_capacity(10);
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&self.alg_id().to_be_bytes());
        out.push(3);
        out.extend_from_slice(&bitmap);
        out
    }

    fn unmarshal(b: &[u8]) -> Option<PcrSpec> {
        let (count, rest) = b.split_first_chunk::<4>()?;
        let (alg, rest) = rest.split_first_chunk::<2>()?;
        let (&size, bitmap) = rest.split_first()?;
        if u32::from_be_bytes(*count) != 1 || size != 3 || bitmap.len() != 3 {
            return None;
        }
        let bank = match u16::from_be_bytes(*alg) {
            0x0004 => HashingAlgorithm::Sha1,
            0x000B => HashingAlgorithm::Sha256,
            0x000C => HashingAlgorithm::Sha384,
            _ => return None,
        };
        let pcrs: Vec<u8> = (0..24u8)
            .filter(|n| bitmap[usize::from(n / 8)] & (1 << (n % 8)) != 0)
            .collect();
        (!pcrs.is_empty() && pcrs.len() <= MAX_POLICY_PCRS).then_some(PcrSpec { bank, pcrs })
    }
}

/// What the TPM demands before it uses a key, besides being the TPM that
/// holds it; recorded in the key file (the TSS2 format's `emptyAuth` and
/// policy list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPolicy {
    /// The key file does not say its auth is empty: ours set it for a key
    /// with a PIN (not `noDA`, so wrong ones count toward the TPM's
    /// dictionary-attack lockout); tpm2_encodeobject leaves it unset for
    /// every key, so such a key may or may not need one.
    pub pin: bool,
    /// TPM2_PolicyPCR: these PCRs, and the digest of the values they held
    /// at import (SHA-256 of their concatenation).
    pub pcrs: Option<(PcrSpec, Vec<u8>)>,
}

impl fmt::Display for KeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pin, &self.pcrs) {
            (false, None) => f.write_str("none"),
            (true, None) => f.write_str("PIN"),
            (false, Some((p, _))) => write!(f, "PCR {p}"),
            (true, Some((p, _))) => write!(f, "PIN + PCR {p}"),
        }
    }
}

impl KeyPolicy {
    /// From a key file: `emptyAuth` (FALSE: a PIN; tpm2_encodeobject
    /// leaves it out for an empty one) and the policy list, which may be
    /// [PolicyPCR] or [PolicyPCR, PolicyAuthValue].
    fn from_asn1(empty_auth: Option<bool>, list: &[Asn1Policy]) -> Result<KeyPolicy, TpmError> {
        let bad = |why: String| TpmError::KeyFile(format!("the key's policy: {why}"));
        let pin = empty_auth == Some(false);
        let codes: Vec<u32> = list.iter().map(|p| p.command_code).collect();
        let pcrs = match codes.as_slice() {
            [] => None,
            [CC_POLICY_PCR] | [CC_POLICY_PCR, CC_POLICY_AUTH_VALUE] => {
                let b = list[0].command_policy.as_bytes();
                let (len, rest) = b
                    .split_first_chunk::<2>()
                    .ok_or_else(|| bad("PolicyPCR parameters are cut short".into()))?;
                let len = usize::from(u16::from_be_bytes(*len));
                let (digest, selection) = rest
                    .split_at_checked(len)
                    .ok_or_else(|| bad("PolicyPCR parameters are cut short".into()))?;
                let spec = PcrSpec::unmarshal(selection)
                    .ok_or_else(|| bad("PolicyPCR's PCR selection is not one this client reads".into()))?;
                Some((spec, digest.to_vec()))
            }
            other => {
                return Err(bad(format!(
                    "policy commands {other:#x?} are not supported (only PolicyPCR, then PolicyAuthValue)"
                )))
            }
        };
        if codes.len() == 2 && !pin {
            return Err(bad("PolicyAuthValue with an empty authValue".into()));
        }
        Ok(KeyPolicy { pin, pcrs })
    }

    fn to_asn1(&self) -> der::Result<Vec<Asn1Policy>> {
        let Some((spec, digest)) = &self.pcrs else {
            return Ok(Vec::new());
        };
        let mut params = Vec::with_capacity(2 + digest.len() + 10);
        params.extend_from_slice(&(digest.len() as u16).to_be_bytes());
        params.extend_from_slice(digest);
        params.extend_from_slice(&spec.marshal());
        let mut list = vec![Asn1Policy {
            command_code: CC_POLICY_PCR,
            command_policy: OctetString::new(params)?,
        }];
        if self.pin {
            list.push(Asn1Policy {
                command_code: CC_POLICY_AUTH_VALUE,
                command_policy: OctetString::new(Vec::new())?,
            });
        }
        Ok(list)
    }
}

/// A PIN: 4 to 32 bytes (a TPM authValue is at most the name hash's size),
/// wiped on drop.
#[derive(Clone)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    /// The PIN as read from a file or a prompt: one line, its line end
    /// removed.
    pub fn new(text: &str) -> Result<Pin, TpmError> {
        let pin = text.strip_suffix('\n').unwrap_or(text);
        let pin = pin.strip_suffix('\r').unwrap_or(pin);
        if !(4..=32).contains(&pin.len()) || pin.ends_with('\0') {
            return Err(TpmError::Usage(
                "a TPM PIN is 4 to 32 bytes (one line)".into(),
            ));
        }
        Ok(Pin(Zeroizing::new(pin.as_bytes().to_vec())))
    }

    fn auth(&self) -> tss_esapi::Result<Auth> {
        Auth::try_from(self.0.to_vec())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// The key file: a loadable TPM key and the parent it belongs under.
#[derive(Clone)]
pub struct TpmKeyFile {
    /// The parent's handle; only [`OWNER_PARENT`] can be loaded.
    pub parent: u32,
    /// The key's TPM2B_PUBLIC area.
    pub public: Public,
    /// The key's TPM2B_PRIVATE blob, wrapped by the parent: useless off
    /// this TPM.
    pub private: Private,
    /// What using it demands besides this TPM.
    pub policy: KeyPolicy,
}

impl fmt::Debug for TpmKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TpmKeyFile(parent={:#x})", self.parent)
    }
}

/// TPMPolicy ::= SEQUENCE { commandCode [0] EXPLICIT INTEGER,
/// commandPolicy [1] EXPLICIT OCTET STRING }: one policy command and its
/// marshalled parameters (without the session handle).
#[derive(Sequence)]
struct Asn1Policy {
    #[asn1(context_specific = "0")]
    command_code: u32,
    #[asn1(context_specific = "1")]
    command_policy: OctetString,
}

/// TPMKey ::= SEQUENCE { type, emptyAuth [0] EXPLICIT BOOLEAN OPTIONAL,
/// policy [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL, parent INTEGER,
/// pubkey OCTET STRING, privkey OCTET STRING }. A secret ([2]) or an
/// authPolicy list ([3]) is refused by the decoder.
#[derive(Sequence)]
struct Asn1Key {
    key_type: ObjectIdentifier,
    #[asn1(context_specific = "0", optional = "true")]
    empty_auth: Option<bool>,
    #[asn1(context_specific = "1", optional = "true")]
    policy: Option<Vec<Asn1Policy>>,
    parent: u32,
    pubkey: OctetString,
    privkey: OctetString,
}

impl der::pem::PemLabel for Asn1Key {
    const PEM_LABEL: &'static str = PEM_LABEL;
}

impl TpmKeyFile {
    /// Parses `TSS2 PRIVATE KEY` PEM; refuses any key type but a loadable
    /// key, and policies other than PolicyPCR and PolicyAuthValue.
    pub fn from_pem(pem: &str) -> Result<Self, TpmError> {
        let bad = |e: &dyn fmt::Display| {
            TpmError::KeyFile(format!("not a loadable TSS2 PRIVATE KEY: {e}"))
        };
        let k = Asn1Key::from_pem(pem.trim()).map_err(|e| bad(&e))?;
        if k.key_type != LOADABLE_KEY {
            return Err(TpmError::KeyFile(format!(
                "key type {} is not a loadable key (2.23.133.10.1.3)",
                k.key_type
            )));
        }
        let public =
            Public::unmarshall(tpm2b(k.pubkey.as_bytes()).ok_or_else(|| bad(&"pubkey size"))?)
                .map_err(|e| bad(&e))?;
        let private = Private::try_from(
            tpm2b(k.privkey.as_bytes())
                .ok_or_else(|| bad(&"privkey size"))?
                .to_vec(),
        )
        .map_err(|e| bad(&e))?;
        let policy = KeyPolicy::from_asn1(k.empty_auth, k.policy.as_deref().unwrap_or(&[]))?;
        if policy.pcrs.is_none() && !public.object_attributes().user_with_auth() {
            return Err(TpmError::KeyFile(
                "the key needs a policy session, and the file records no policy this client can satisfy \
                 (tpm2_encodeobject does not write one): import the key with `jwt-client tpm import --pcr-policy`"
                    .into(),
            ));
        }
        Ok(TpmKeyFile {
            parent: k.parent,
            public,
            private,
            policy,
        })
    }

    /// The key file's PEM text (with `emptyAuth`), as [`from_pem`](Self::from_pem) reads it.
    pub fn to_pem(&self) -> Result<String, TpmError> {
        let err = |e: &dyn fmt::Display| TpmError::KeyFile(e.to_string());
        let public = self.public.marshall().map_err(|e| err(&e))?;
        let policy = self.policy.to_asn1().map_err(|e| err(&e))?;
        let k = Asn1Key {
            key_type: LOADABLE_KEY,
            empty_auth: Some(!self.policy.pin),
            policy: (!policy.is_empty()).then_some(policy),
            parent: self.parent,
            pubkey: OctetString::new(with_tpm2b(&public)).map_err(|e| err(&e))?,
            privkey: OctetString::new(with_tpm2b(self.private.value())).map_err(|e| err(&e))?,
        };
        k.to_pem(der::pem::LineEnding::LF).map_err(|e| err(&e))
    }

    /// Reads and parses the key file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, TpmError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TpmError::KeyFile(format!("{}: {e}", path.display())))?;
        TpmKeyFile::from_pem(&text)
    }

    /// A public name for the key: it identifies the TPM object, not `K`.
    pub fn fingerprint(&self) -> Fingerprint {
        let bytes = self.public.marshall().unwrap_or_default();
        Fingerprint::of("tpm-public", &bytes)
    }
}

/// The body of a TPM2B (2-byte big-endian size, then that many bytes).
fn tpm2b(b: &[u8]) -> Option<&[u8]> {
    let (len, rest) = b.split_at_checked(2)?;
    let n = u16::from_be_bytes([len[0], len[1]]) as usize;
    (rest.len() == n).then_some(rest)
}

fn with_tpm2b(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 2);
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
    out
}

/// Storage primary templates tried for parent `0x40000001`, in order.
#[derive(Debug, Clone, Copy)]
enum PrimaryTemplate {
    /// ECC NIST P-256 storage key, AES-128-CFB, unique zeroed (TCG provisioning guidance).
    EccSrk,
    /// `tpm2_createprimary`'s default: RSA-2048 storage key, AES-128-CFB.
    Tpm2ToolsRsa,
}

impl PrimaryTemplate {
    fn public(self) -> tss_esapi::Result<Public> {
        match self {
            PrimaryTemplate::EccSrk => {
                let attrs = ObjectAttributesBuilder::new()
                    .with_fixed_tpm(true)
                    .with_fixed_parent(true)
                    .with_sensitive_data_origin(true)
                    .with_user_with_auth(true)
                    .with_no_da(true)
                    .with_restricted(true)
                    .with_decrypt(true)
                    .build()?;
                let zero = EccParameter::try_from(vec![0u8; 32])?;
                PublicBuilder::new()
                    .with_public_algorithm(PublicAlgorithm::Ecc)
                    .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
                    .with_object_attributes(attrs)
                    .with_ecc_parameters(
                        PublicEccParametersBuilder::new_restricted_decryption_key(
                            SymmetricDefinitionObject::AES_128_CFB,
                            EccCurve::NistP256,
                        )
                        .build()?,
                    )
                    .with_ecc_unique_identifier(EccPoint::new(zero.clone(), zero))
                    .build()
            }
            PrimaryTemplate::Tpm2ToolsRsa => {
                tss_esapi::utils::create_restricted_decryption_rsa_public(
                    SymmetricDefinitionObject::AES_128_CFB,
                    RsaKeyBits::Rsa2048,
                    RsaExponent::default(),
                )
            }
        }
    }
}

/// The HMAC key template: fixed to this TPM and parent, usable for HMAC
/// only. Without a PIN it is `noDA` (an empty auth has nothing to guess);
/// with one, failures count toward the lockout. With an `auth_policy` the
/// user role needs a policy session (`userWithAuth` clear).
fn hmac_key_template(auth_policy: Option<Digest>, pin: bool) -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(auth_policy.is_none())
        .with_sign_encrypt(true)
        .with_no_da(!pin)
        .build()?;
    let mut b = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(
            KeyedHashScheme::HMAC_SHA_256,
        ))
        .with_keyed_hash_unique_identifier(Digest::default());
    if let Some(d) = auth_policy {
        b = b.with_auth_policy(d);
    }
    b.build()
}

/// SHA-256 of the selected PCRs' current values, in selection order: the
/// pcrDigest of TPM2_PolicyPCR.
fn pcr_digest(ctx: &mut Context, spec: &PcrSpec) -> tss_esapi::Result<Vec<u8>> {
    use sha2::Digest as _;
    let selection = spec.selection()?;
    let (_, _, values) = ctx.execute_without_session(|c| c.pcr_read(selection))?;
    if values.value().len() != spec.pcrs.len() {
        return Err(tss_esapi::Error::WrapperError(
            tss_esapi::WrapperErrorKind::WrongValueFromTpm,
        ));
    }
    let mut h = sha2::Sha256::new();
    for v in values.value() {
        h.update(v.value());
    }
    Ok(h.finalize().to_vec())
}

/// Runs the key's policy commands in `session`: TPM2_PolicyPCR with the
/// recorded digest (the TPM refuses it when the PCRs hold other values),
/// then TPM2_PolicyAuthValue for a PIN.
fn apply_policy(
    ctx: &mut Context,
    session: PolicySession,
    policy: &KeyPolicy,
) -> tss_esapi::Result<()> {
    if let Some((spec, digest)) = &policy.pcrs {
        let (digest, selection) = (Digest::try_from(digest.clone())?, spec.selection()?);
        ctx.execute_without_session(|c| c.policy_pcr(session, digest, selection))?;
        if policy.pin {
            ctx.execute_without_session(|c| c.policy_auth_value(session))?;
        }
    }
    Ok(())
}

/// The policy digest `policy` gives, from a trial session.
fn trial_digest(ctx: &mut Context, policy: &KeyPolicy) -> tss_esapi::Result<Digest> {
    let trial = ctx
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Trial,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )?
        .ok_or(tss_esapi::Error::WrapperError(
            tss_esapi::WrapperErrorKind::WrongValueFromTpm,
        ))?;
    let session = PolicySession::try_from(trial)?;
    let digest = apply_policy(ctx, session, policy)
        .and_then(|()| ctx.execute_without_session(|c| c.policy_get_digest(session)));
    let _ = ctx.flush_context(ObjectHandle::from(tss_esapi::handles::SessionHandle::from(
        trial,
    )));
    digest
}

/// An open TPM with the key loaded.
struct Loaded {
    ctx: Context,
    key: KeyHandle,
    /// Salted (HMAC, or a policy session for a PCR-bound key) or password.
    session: AuthSession,
}

/// A TPM without a resource manager (swtpm, a raw /dev/tpm0) keeps
/// transient objects until they are flushed: the key and its session go
/// when the process lets go of them.
impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = self.ctx.flush_context(ObjectHandle::from(self.key));
        if !matches!(self.session, AuthSession::Password) {
            let _ = self.ctx.flush_context(ObjectHandle::from(
                tss_esapi::handles::SessionHandle::from(self.session),
            ));
        }
    }
}

/// Which TPM command of one use failed.
enum Failed {
    /// A policy command: the key's policy is not satisfied.
    Policy(tss_esapi::Error),
    /// TPM2_HMAC itself (a PIN is checked here).
    Hmac(tss_esapi::Error),
}

/// Wraps a TSS error with the TPM it came from and what was being done.
fn tpm_err<'a>(
    tcti: &'a str,
    what: &'static str,
) -> impl FnOnce(tss_esapi::Error) -> TpmError + 'a {
    move |error| TpmError::Tpm {
        tcti: tcti.to_owned(),
        what,
        error,
    }
}

fn open_context(tcti: &str) -> Result<Context, TpmError> {
    let conf = TctiNameConf::from_str(tcti).map_err(tpm_err(tcti, "bad TCTI"))?;
    Context::new(conf).map_err(tpm_err(tcti, "cannot open the TPM"))
}

/// A salted session (HMAC, or policy) with parameter encryption both ways.
fn salted_session(
    ctx: &mut Context,
    salt_key: KeyHandle,
    kind: SessionType,
) -> tss_esapi::Result<AuthSession> {
    let session = ctx
        .start_auth_session(
            Some(salt_key),
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )?
        .ok_or(tss_esapi::Error::WrapperError(
            tss_esapi::WrapperErrorKind::WrongValueFromTpm,
        ))?;
    let (attrs, mask) = SessionAttributesBuilder::new()
        .with_decrypt(true)
        .with_encrypt(true)
        .with_continue_session(true)
        .build();
    ctx.tr_sess_set_attributes(session, attrs, mask)?;
    Ok(session)
}

/// Recreates the storage primary for `parent` and returns it with the
/// template that produced it, or loads nothing for a persistent parent.
fn primary(ctx: &mut Context, template: PrimaryTemplate) -> tss_esapi::Result<KeyHandle> {
    let public = template.public()?;
    let r = ctx.execute_with_nullauth_session(|c| {
        c.create_primary(Hierarchy::Owner, public, None, None, None, None)
    })?;
    Ok(r.key_handle)
}

fn flush(ctx: &mut Context, h: KeyHandle) {
    let _ = ctx.flush_context(ObjectHandle::from(h));
}

/// A root key that lives in a TPM.
pub struct TpmRootKey {
    tcti: String,
    mode: SessionMode,
    file: TpmKeyFile,
    pin: Option<Pin>,
    fingerprint: Fingerprint,
    state: Mutex<Option<Loaded>>,
}

impl fmt::Debug for TpmRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TpmRootKey(tcti={}, mode={:?}, policy={}, fp={})",
            self.tcti, self.mode, self.file.policy, self.fingerprint
        )
    }
}

impl TpmRootKey {
    /// Opens the TPM and loads the key now, so a wrong TCTI, blob or parent
    /// is reported at start rather than on the first connection.
    pub fn open(tcti: &str, file: TpmKeyFile, mode: SessionMode) -> Result<Self, TpmError> {
        TpmRootKey::open_with_pin(tcti, file, mode, None)
    }

    /// [`open`](Self::open) for a key that needs a PIN (and refusing one
    /// for a key that has none). A key with a PIN or a PCR policy needs
    /// [`SessionMode::Salted`]: the PIN must not cross the bus in clear,
    /// and a policy needs a policy session.
    pub fn open_with_pin(
        tcti: &str,
        file: TpmKeyFile,
        mode: SessionMode,
        pin: Option<Pin>,
    ) -> Result<Self, TpmError> {
        if pin.is_some() && !file.policy.pin {
            return Err(TpmError::Usage(
                "this TPM key has no PIN (its key file says its auth is empty); do not give one"
                    .into(),
            ));
        }
        let guarded = file.policy.pin || file.policy.pcrs.is_some();
        if guarded && mode == SessionMode::Password {
            return Err(TpmError::Usage(format!(
                "a key with a policy ({}) needs the salted session: a password session would send the PIN in clear, and cannot satisfy a PCR policy",
                file.policy
            )));
        }
        let key = TpmRootKey {
            tcti: tcti.to_owned(),
            mode,
            fingerprint: file.fingerprint(),
            file,
            pin,
            state: Mutex::new(None),
        };
        let loaded = key.load()?;
        *key.lock() = Some(loaded);
        // A key file that does not say its auth is empty (ours with a PIN,
        // and every tpm2_encodeobject file) opened without a PIN: one HMAC
        // now says whether it needs one, so a service fails at start, once,
        // rather than counting a failure toward the lockout per connection.
        if key.file.policy.pin && key.pin.is_none() {
            key.prk(&Ekm::from_bytes([0; 32]))
                .map_err(|e| TpmError::Usage(e.to_string()))?;
        }
        Ok(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Loaded>> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn err(&self, what: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError + '_ {
        tpm_err(&self.tcti, what)
    }

    /// The open TPM with the key loaded, loading it first if it is not.
    fn loaded<'g>(&self, state: &'g mut Option<Loaded>) -> Result<&'g mut Loaded, TpmError> {
        let loaded = match state.take() {
            Some(l) => l,
            None => self.load()?,
        };
        Ok(state.insert(loaded))
    }

    fn load(&self) -> Result<Loaded, TpmError> {
        let mut ctx = open_context(&self.tcti)?;
        if self.file.parent != OWNER_PARENT {
            return Err(TpmError::KeyFile(format!(
                "parent {:#x} is not supported; only 0x40000001 (owner storage primary)",
                self.file.parent
            )));
        }
        let mut last = None;
        for template in [PrimaryTemplate::EccSrk, PrimaryTemplate::Tpm2ToolsRsa] {
            let parent = primary(&mut ctx, template)
                .map_err(self.err("cannot create the storage primary"))?;
            let loaded = ctx.execute_with_nullauth_session(|c| {
                c.load(parent, self.file.private.clone(), self.file.public.clone())
            });
            match loaded {
                Ok(key) => {
                    if let Some(pin) = &self.pin {
                        let set = pin
                            .auth()
                            .and_then(|auth| ctx.tr_set_auth(key.into(), auth));
                        if let Err(e) = set {
                            flush(&mut ctx, parent);
                            return Err(self.err("cannot set the key's PIN")(e));
                        }
                    }
                    let kind = match self.file.policy.pcrs {
                        Some(_) => SessionType::Policy,
                        None => SessionType::Hmac,
                    };
                    let session = match self.mode {
                        SessionMode::Salted => salted_session(&mut ctx, parent, kind),
                        SessionMode::Password => Ok(AuthSession::Password),
                    };
                    flush(&mut ctx, parent);
                    let session = session.map_err(self.err("cannot start the salted session"))?;
                    return Ok(Loaded { ctx, key, session });
                }
                Err(e) => {
                    flush(&mut ctx, parent);
                    last = Some(e);
                }
            }
        }
        let error = last.unwrap_or(tss_esapi::Error::WrapperError(
            tss_esapi::WrapperErrorKind::WrongValueFromTpm,
        ));
        Err(self.err(
            "cannot load the key under the owner storage primary (wrong TPM, or a key made for another parent)",
        )(error))
    }

    /// One TPM2_HMAC, after the key's policy commands when it has a PCR
    /// policy; retried a few times if the TPM says to retry.
    fn hmac(loaded: &mut Loaded, ekm: &Ekm, policy: &KeyPolicy) -> Result<Digest, Failed> {
        let buffer = MaxBuffer::try_from(ekm.expose().to_vec()).map_err(Failed::Hmac)?;
        let mut attempt = 0;
        loop {
            let (key, session) = (loaded.key, loaded.session);
            if policy.pcrs.is_some() {
                let ps = PolicySession::try_from(session).map_err(Failed::Policy)?;
                loaded
                    .ctx
                    .execute_without_session(|c| c.policy_restart(ps))
                    .map_err(Failed::Policy)?;
                apply_policy(&mut loaded.ctx, ps, policy).map_err(Failed::Policy)?;
            }
            let r = loaded.ctx.execute_with_session(Some(session), |c| {
                c.hmac(key.into(), buffer.clone(), HashingAlgorithm::Sha256)
            });
            match r {
                Err(tss_esapi::Error::Tss2Error(rc))
                    if attempt < 3
                        && matches!(
                            rc.kind(),
                            Some(
                                Tss2ResponseCodeKind::Retry
                                    | Tss2ResponseCodeKind::Yielded
                                    | Tss2ResponseCodeKind::Testing
                            )
                        ) =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10 << attempt));
                }
                other => return other.map_err(Failed::Hmac),
            }
        }
    }

    /// What a failed use means, in words a user can act on.
    fn explain(&self, mut loaded: Option<&mut Loaded>, failed: Failed) -> RootKeyError {
        let kind = |e: &tss_esapi::Error| match e {
            tss_esapi::Error::Tss2Error(rc) => rc.kind(),
            _ => None,
        };
        let mut property = |tag| {
            loaded
                .as_deref_mut()
                .and_then(|l| l.ctx.get_tpm_property(tag).ok().flatten())
        };
        match failed {
            Failed::Hmac(e) if kind(&e) == Some(Tss2ResponseCodeKind::Lockout) => {
                let interval = property(PropertyTag::LockoutInterval);
                RootKeyError::Refused(format!(
                    "the TPM is in dictionary-attack lockout after too many wrong PINs: it refuses PIN-protected keys until it forgives one failure{} or the lockout authorization clears it (tpm2_dictionarylockout --clear-lockout)",
                    interval.map_or(String::new(), |s| format!(" every {s} s"))
                ))
            }
            Failed::Hmac(e)
                if matches!(
                    kind(&e),
                    Some(Tss2ResponseCodeKind::AuthFail | Tss2ResponseCodeKind::BadAuth)
                ) && self.file.policy.pin =>
            {
                if self.pin.is_none() {
                    return RootKeyError::Refused(
                        "this TPM key needs its PIN: give it with --tpm-pin-file FILE (or JWT_TPM_PIN_FILE), or at the prompt".into(),
                    );
                }
                let max = property(PropertyTag::MaxAuthFail);
                let count = property(PropertyTag::LockoutCounter);
                let left = match (max, count) {
                    (Some(m), Some(c)) => format!("; {} more before lockout", m.saturating_sub(c)),
                    _ => String::new(),
                };
                RootKeyError::Refused(format!(
                    "wrong TPM PIN for this key (each wrong PIN counts toward the TPM's dictionary-attack lockout{left})"
                ))
            }
            Failed::Policy(e) => match &self.file.policy.pcrs {
                Some((spec, _))
                    if matches!(
                        kind(&e),
                        Some(Tss2ResponseCodeKind::Value | Tss2ResponseCodeKind::PolicyFail)
                    ) =>
                {
                    RootKeyError::Refused(format!(
                        "the key's PCR policy failed: PCRs {spec} no longer hold the values they had when the key was imported (another boot chain, or a measured component changed); it works again only in that state, or re-import the key (docs/TPM.md)"
                    ))
                }
                _ => RootKeyError::Unavailable(self.err("a policy command failed")(e).to_string()),
            },
            Failed::Hmac(e) => {
                RootKeyError::Unavailable(self.err("TPM2_HMAC failed")(e).to_string())
            }
        }
    }

    /// ReadPublic of the loaded key: what the TPM says the object is.
    pub fn read_public_attributes(&self) -> Result<ObjectAttributes, TpmError> {
        let mut guard = self.lock();
        let loaded = self.loaded(&mut guard)?;
        let key = loaded.key;
        let (public, _, _) = loaded
            .ctx
            .execute_without_session(|c| c.read_public(key))
            .map_err(self.err("ReadPublic failed"))?;
        Ok(public.object_attributes())
    }
}

impl RootKey for TpmRootKey {
    fn prk(&self, ekm: &Ekm) -> Result<Prk, RootKeyError> {
        let mut guard = self.lock();
        let loaded = self
            .loaded(&mut guard)
            .map_err(|e| RootKeyError::Unavailable(e.to_string()))?;
        match Self::hmac(loaded, ekm, &self.file.policy) {
            Ok(d) => {
                let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(d.value().to_vec());
                let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    RootKeyError::Refused("TPM2_HMAC returned a digest that is not 32 bytes".into())
                })?;
                Ok(Prk::from_bytes(arr))
            }
            Err(failed) => {
                let e = self.explain(guard.as_mut(), failed);
                // Drop the context: the next connection reconnects and reloads.
                *guard = None;
                Err(e)
            }
        }
    }

    fn kind(&self) -> &'static str {
        "tpm"
    }

    fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// Puts an existing root key into the TPM: TPM2_Create under the owner
/// storage primary with the key as sensitive data, inside a salted session
/// with command-parameter encryption, so the key does not cross the bus in
/// the clear (a plaintext TPM2_Import duplicate would). The result is
/// `fixedTPM | fixedParent`: it cannot be read back or duplicated.
pub fn import(tcti: &str, key: &SoftwareRootKey) -> Result<TpmKeyFile, TpmError> {
    import_with(tcti, key, None, None)
}

/// [`import`] under a policy: a `pin` (the authValue, sent only inside the
/// salted session), and `pcrs` (TPM2_PolicyPCR on the values they hold
/// now). A policy cannot be changed later: the TPM binds it into the
/// object.
pub fn import_with(
    tcti: &str,
    key: &SoftwareRootKey,
    pin: Option<&Pin>,
    pcrs: Option<&PcrSpec>,
) -> Result<TpmKeyFile, TpmError> {
    let mut ctx = open_context(tcti)?;
    let e = |what| tpm_err(tcti, what);
    let parent = primary(&mut ctx, PrimaryTemplate::EccSrk)
        .map_err(e("cannot create the storage primary"))?;
    let result = (|| {
        let pcrs = match pcrs {
            Some(spec) => Some((
                spec.clone(),
                pcr_digest(&mut ctx, spec).map_err(e("cannot read the PCRs"))?,
            )),
            None => None,
        };
        let policy = KeyPolicy {
            pin: pin.is_some(),
            pcrs,
        };
        let auth_policy = match &policy.pcrs {
            Some(_) => Some(
                trial_digest(&mut ctx, &policy).map_err(e("cannot compute the policy digest"))?,
            ),
            None => None,
        };
        let auth = pin.map(Pin::auth).transpose().map_err(e("bad PIN"))?;
        let session = salted_session(&mut ctx, parent, SessionType::Hmac)
            .map_err(e("cannot start the salted session"))?;
        let sensitive = SensitiveData::try_from(key.expose().to_vec())
            .map_err(e("key too long for the TPM"))?;
        let template = hmac_key_template(auth_policy, policy.pin).map_err(e("bad key template"))?;
        let created = ctx
            .execute_with_session(Some(session), |c| {
                c.create(parent, template, auth, Some(sensitive), None, None)
            })
            .map_err(e("TPM2_Create failed"));
        let _ = ctx.flush_context(ObjectHandle::from(tss_esapi::handles::SessionHandle::from(
            session,
        )));
        let created = created?;
        Ok(TpmKeyFile {
            parent: OWNER_PARENT,
            public: created.out_public,
            private: created.out_private,
            policy,
        })
    })();
    flush(&mut ctx, parent);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm2b_framing() {
        assert_eq!(tpm2b(&[0, 2, 9, 9]), Some(&[9u8, 9][..]));
        assert_eq!(tpm2b(&[0, 3, 9, 9]), None);
        assert_eq!(tpm2b(&[0]), None);
        assert_eq!(with_tpm2b(&[1, 2]), vec![0, 2, 1, 2]);
    }

    #[test]
    fn garbage_key_files_are_errors() {
        assert!(TpmKeyFile::from_pem("").is_err());
        assert!(TpmKeyFile::from_pem(
            "-----BEGIN TSS2 PRIVATE KEY-----\nAAAA\n-----END TSS2 PRIVATE KEY-----\n"
        )
        .is_err());
        assert!(TpmKeyFile::from_pem(
            "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }
}
