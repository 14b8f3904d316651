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
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Digest, EccParameter, EccPoint, KeyedHashScheme, MaxBuffer, Private, Public, PublicBuilder,
    PublicEccParametersBuilder, PublicKeyedHashParameters, RsaExponent, SensitiveData,
    SymmetricDefinition, SymmetricDefinitionObject,
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
    /// A setting given by the user is invalid (an unknown [`SessionMode`]).
    #[error("{0}")]
    Usage(String),
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
}

impl fmt::Debug for TpmKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TpmKeyFile(parent={:#x})", self.parent)
    }
}

/// TPMKey ::= SEQUENCE { type, emptyAuth [0] EXPLICIT BOOLEAN OPTIONAL,
/// parent INTEGER, pubkey OCTET STRING, privkey OCTET STRING }.
/// Keys with policies ([1]–[3]) are refused by the decoder: we cannot satisfy them.
#[derive(Sequence)]
struct Asn1Key {
    key_type: ObjectIdentifier,
    #[asn1(context_specific = "0", optional = "true")]
    empty_auth: Option<bool>,
    parent: u32,
    pubkey: OctetString,
    privkey: OctetString,
}

impl der::pem::PemLabel for Asn1Key {
    const PEM_LABEL: &'static str = PEM_LABEL;
}

impl TpmKeyFile {
    /// Parses `TSS2 PRIVATE KEY` PEM; refuses any key type but a loadable
    /// key, and keys with policies.
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
        Ok(TpmKeyFile {
            parent: k.parent,
            public,
            private,
        })
    }

    /// The key file's PEM text (with `emptyAuth`), as [`from_pem`](Self::from_pem) reads it.
    pub fn to_pem(&self) -> Result<String, TpmError> {
        let err = |e: &dyn fmt::Display| TpmError::KeyFile(e.to_string());
        let public = self.public.marshall().map_err(|e| err(&e))?;
        let k = Asn1Key {
            key_type: LOADABLE_KEY,
            empty_auth: Some(true),
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

/// The HMAC key template: fixed to this TPM and parent, usable for HMAC only,
/// no dictionary-attack counting (its auth is empty).
fn hmac_key_template() -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_no_da(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(
            KeyedHashScheme::HMAC_SHA_256,
        ))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// An open TPM with the key loaded.
struct Loaded {
    ctx: Context,
    key: KeyHandle,
    session: AuthSession,
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

/// A salted HMAC session with parameter encryption both ways.
fn salted_session(ctx: &mut Context, salt_key: KeyHandle) -> tss_esapi::Result<AuthSession> {
    let session = ctx
        .start_auth_session(
            Some(salt_key),
            None,
            None,
            SessionType::Hmac,
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
    fingerprint: Fingerprint,
    state: Mutex<Option<Loaded>>,
}

impl fmt::Debug for TpmRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TpmRootKey(tcti={}, mode={:?}, fp={})",
            self.tcti, self.mode, self.fingerprint
        )
    }
}

impl TpmRootKey {
    /// Opens the TPM and loads the key now, so a wrong TCTI, blob or parent
    /// is reported at start rather than on the first connection.
    pub fn open(tcti: &str, file: TpmKeyFile, mode: SessionMode) -> Result<Self, TpmError> {
        let key = TpmRootKey {
            tcti: tcti.to_owned(),
            mode,
            fingerprint: file.fingerprint(),
            file,
            state: Mutex::new(None),
        };
        let loaded = key.load()?;
        *key.lock() = Some(loaded);
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
                    let session = match self.mode {
                        SessionMode::Salted => salted_session(&mut ctx, parent),
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

    /// One TPM2_HMAC, retried a few times if the TPM says to retry.
    fn hmac(loaded: &mut Loaded, ekm: &Ekm) -> tss_esapi::Result<Digest> {
        let buffer = MaxBuffer::try_from(ekm.expose().to_vec())?;
        let mut attempt = 0;
        loop {
            let (key, session) = (loaded.key, loaded.session);
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
                other => return other,
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
        match Self::hmac(loaded, ekm) {
            Ok(d) => {
                let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(d.value().to_vec());
                let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    RootKeyError::Refused("TPM2_HMAC returned a digest that is not 32 bytes".into())
                })?;
                Ok(Prk::from_bytes(arr))
            }
            Err(error) => {
                // Drop the context: the next connection reconnects and reloads.
                *guard = None;
                let e = self.err("TPM2_HMAC failed")(error);
                Err(match error {
                    tss_esapi::Error::Tss2Error(rc)
                        if rc.kind() == Some(Tss2ResponseCodeKind::Lockout) =>
                    {
                        RootKeyError::Refused(format!(
                            "{e} (the TPM is in dictionary-attack lockout)"
                        ))
                    }
                    _ => RootKeyError::Unavailable(e.to_string()),
                })
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
    let mut ctx = open_context(tcti)?;
    let e = |what| tpm_err(tcti, what);
    let parent = primary(&mut ctx, PrimaryTemplate::EccSrk)
        .map_err(e("cannot create the storage primary"))?;
    let result = (|| {
        let session =
            salted_session(&mut ctx, parent).map_err(e("cannot start the salted session"))?;
        let sensitive = SensitiveData::try_from(key.expose().to_vec())
            .map_err(e("key too long for the TPM"))?;
        let template = hmac_key_template().map_err(e("bad key template"))?;
        let created = ctx
            .execute_with_session(Some(session), |c| {
                c.create(parent, template, None, Some(sensitive), None, None)
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
