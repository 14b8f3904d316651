//! The per-connection key schedule (PROTOCOL.md §3).
//!
//! ```text
//! EKM     = TLS-Exporter("EXPORTER-Channel-Binding", "", 32)
//! PRK     = HMAC-SHA256(K, EKM)
//! sig_key = HKDF-Expand(PRK, "jose-binding/v1 signing key"    || 0x00 || client_id, 32)
//! enc_key = HKDF-Expand(PRK, "jose-binding/v1 encryption key" || 0x00 || client_id, 32)
//! ```
//!
//! Only the PRK step touches the root key, so it is the one method of
//! [`RootKey`]; a TPM-held key implements it without ever exposing `K`.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::protocol::client_id::ClientId;

/// The exporter label of RFC 9266 (`tls-exporter` channel binding).
pub const EKM_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// Bytes of keying material exported per connection (§3).
pub const EKM_LEN: usize = 32;
const SIG_INFO: &[u8] = b"jose-binding/v1 signing key";
const ENC_INFO: &[u8] = b"jose-binding/v1 encryption key";

/// Shortest root key, in bytes (§1).
pub const ROOT_KEY_MIN: usize = 32;
/// Longest root key, in bytes (§1).
pub const ROOT_KEY_MAX: usize = 64;

/// A short public name for a secret: the first 8 bytes of SHA-256 over a
/// domain-separation prefix and the secret, in hex. Safe to log: it reveals
/// nothing usable about a 256-bit key, yet tells two keys apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    /// The fingerprint of `secret`; `kind` separates domains, so one
    /// value used as two kinds of key gets two unrelated fingerprints.
    pub fn of(kind: &str, secret: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"jose-binding/v1 fingerprint ");
        h.update(kind.as_bytes());
        h.update([0u8]);
        h.update(secret);
        let d = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d[..8]);
        Fingerprint(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

macro_rules! secret_32 {
    ($(#[$m:meta])* $name:ident, $kind:literal) => {
        $(#[$m])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps bytes already derived or exported; no check is made.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                $name(bytes)
            }
            /// The secret bytes; callers must not log them.
            pub fn expose(&self) -> &[u8; 32] {
                &self.0
            }
            /// A public name for the secret, safe to log.
            pub fn fingerprint(&self) -> Fingerprint {
                Fingerprint::of($kind, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(fp={})"), self.fingerprint())
            }
        }
    };
}

secret_32!(
    /// This connection's exported keying material.
    Ekm,
    "ekm"
);
secret_32!(
    /// HMAC-SHA256(K, EKM): the input of the HKDF-Expand steps.
    Prk,
    "prk"
);
/// HS256 key for this connection and client, with its HMAC state (the
/// hashed inner and outer pads) computed once per connection rather than per
/// token. The state lives in aws-lc, which wipes it when dropped
/// (`HMAC_CTX_cleanup`); the bytes are zeroized here.
#[derive(Clone)]
pub struct SigKey {
    bytes: Zeroizing<[u8; 32]>,
    mac: aws_lc_rs::hmac::Key,
}

impl SigKey {
    /// Takes the 32 derived bytes and computes the HMAC state once.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &bytes);
        SigKey {
            bytes: Zeroizing::new(bytes),
            mac,
        }
    }
    /// The secret bytes; callers must not log them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }
    /// A public name for the key, safe to log.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of("sig", &*self.bytes)
    }
    /// HMAC-SHA256 of `data` under this key.
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(&self.mac, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
    /// Whether `tag` is the HMAC-SHA256 of `data`, compared in constant time
    /// (aws-lc's `CRYPTO_memcmp`).
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        aws_lc_rs::hmac::verify(&self.mac, data, tag).is_ok()
    }
}

impl fmt::Debug for SigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigKey(fp={})", self.fingerprint())
    }
}

/// A256GCM key for this connection and client, with its AES key schedule
/// and GHASH key expanded once per connection. aws-lc wipes that state when
/// it is freed (`OPENSSL_free` cleanses); the bytes are zeroized here.
#[derive(Clone)]
pub struct EncKey {
    bytes: Zeroizing<[u8; 32]>,
    aead: std::sync::Arc<aws_lc_rs::aead::LessSafeKey>,
}

impl EncKey {
    /// Takes the 32 derived bytes and expands the AES-256-GCM key once.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
        // AES-256-GCM takes any 32-byte key: this cannot fail.
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is an AES-256 key"));
        EncKey {
            bytes: Zeroizing::new(bytes),
            aead: std::sync::Arc::new(LessSafeKey::new(key)),
        }
    }
    /// The secret bytes; callers must not log them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }
    /// A public name for the key, safe to log.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of("enc", &*self.bytes)
    }
    /// The expanded AES-256-GCM key.
    pub(crate) fn aead(&self) -> &aws_lc_rs::aead::LessSafeKey {
        &self.aead
    }
}

impl fmt::Debug for EncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncKey(fp={})", self.fingerprint())
    }
}

/// The two subkeys a connection uses for one client.
#[derive(Clone, Debug)]
pub struct SubKeys {
    /// `sig_key`: the HS256 key of every JWS layer.
    pub sig: SigKey,
    /// `enc_key`: the A256GCM key of every JWE layer.
    pub enc: EncKey,
}

impl SubKeys {
    /// HKDF-Expand both subkeys from a PRK (§3).
    pub fn expand(prk: &Prk, client_id: &ClientId) -> SubKeys {
        // A 32-byte PRK is always a valid HKDF PRK and 32 bytes is far below
        // the 255*32 expand limit, so neither call can fail.
        let hk = Hkdf::<Sha256>::from_prk(prk.expose()).unwrap_or_else(|_| unreachable!());
        let mut sig = [0u8; 32];
        let mut enc = [0u8; 32];
        let id = client_id.as_str().as_bytes();
        hk.expand_multi_info(&[SIG_INFO, &[0], id], &mut sig)
            .unwrap_or_else(|_| unreachable!());
        hk.expand_multi_info(&[ENC_INFO, &[0], id], &mut enc)
            .unwrap_or_else(|_| unreachable!());
        let keys = SubKeys {
            sig: SigKey::from_bytes(sig),
            enc: EncKey::from_bytes(enc),
        };
        sig.zeroize();
        enc.zeroize();
        keys
    }

    /// The whole schedule for one connection: PRK from the root key, then expand.
    pub fn derive(
        root: &dyn RootKey,
        ekm: &Ekm,
        client_id: &ClientId,
    ) -> Result<SubKeys, RootKeyError> {
        let prk = root.prk(ekm)?;
        Ok(SubKeys::expand(&prk, client_id))
    }
}

/// Why a root key could not compute a PRK. Software keys never fail; a TPM
/// can be unreachable or refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootKeyError {
    /// The provider could not be reached or failed (a TPM that cannot be
    /// opened, or whose command failed); the text says why.
    #[error("root key provider unavailable: {0}")]
    Unavailable(String),
    /// The provider answered but gave no usable PRK (a TPM in
    /// dictionary-attack lockout, or a digest of the wrong size).
    #[error("root key provider refused: {0}")]
    Refused(String),
}

/// The one operation that needs the long-term secret `K`.
pub trait RootKey: Send + Sync + fmt::Debug {
    /// PRK = HMAC-SHA256(K, EKM).
    fn prk(&self, ekm: &Ekm) -> Result<Prk, RootKeyError>;
    /// A public name for `K`, for logs and `keys` listings.
    fn fingerprint(&self) -> Fingerprint;
    /// Where `K` is, for metrics: `software` unless the key says otherwise
    /// (`tpm`).
    fn kind(&self) -> &'static str {
        "software"
    }
}

/// A root key held in process memory (read from a file or the keystore).
/// The bytes are wiped when the last copy is dropped.
#[derive(Clone)]
pub struct SoftwareRootKey {
    bytes: Zeroizing<Vec<u8>>,
}

/// A root key of the wrong size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("root key must be {ROOT_KEY_MIN} to {ROOT_KEY_MAX} bytes, got {0}")]
pub struct RootKeyLength(pub usize);

impl SoftwareRootKey {
    /// Copies `bytes` into a wiped-on-drop buffer; refuses a length outside
    /// [`ROOT_KEY_MIN`]..=[`ROOT_KEY_MAX`].
    pub fn new(bytes: &[u8]) -> Result<Self, RootKeyLength> {
        if !(ROOT_KEY_MIN..=ROOT_KEY_MAX).contains(&bytes.len()) {
            return Err(RootKeyLength(bytes.len()));
        }
        Ok(SoftwareRootKey {
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// A fresh 32-byte key from the operating system's RNG.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut k = Zeroizing::new(vec![0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut k);
        SoftwareRootKey { bytes: k }
    }

    /// Parses the key file format: one line of unpadded base64url.
    pub fn from_b64url(text: &str) -> Result<Self, KeyFileError> {
        let bytes = Zeroizing::new(
            crate::protocol::b64::decode(text.trim()).ok_or(KeyFileError::Encoding)?,
        );
        SoftwareRootKey::new(&bytes).map_err(KeyFileError::Length)
    }

    /// Reads a root key file (one line of unpadded base64url).
    pub fn from_file(path: &std::path::Path) -> Result<Self, KeyFileError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(KeyFileError::Io)?);
        SoftwareRootKey::from_b64url(&text)
    }

    /// The key in base64url; the caller decides where it may go.
    pub fn to_b64url(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::protocol::b64::encode(&self.bytes))
    }

    /// The key file's text, the line [`SoftwareRootKey::from_file`] reads.
    /// Sized up front so no reallocation leaves a copy behind.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(
            crate::protocol::b64::encoded_len(self.bytes.len()) + 1,
        ));
        crate::protocol::b64::encode_into(&self.bytes, &mut text);
        text.push('\n');
        text
    }

    /// The raw bytes, for moving the key into a TPM.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

/// A root key file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read (absent, unreadable, not UTF-8).
    #[error("cannot read key file: {0}")]
    Io(std::io::Error),
    /// The text, trimmed, is not canonical unpadded base64url.
    #[error("key file is not one line of unpadded base64url")]
    Encoding,
    /// The decoded key is not 32 to 64 bytes.
    #[error(transparent)]
    Length(RootKeyLength),
}

impl fmt::Debug for SoftwareRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoftwareRootKey(fp={})", RootKey::fingerprint(self))
    }
}

impl SoftwareRootKey {
    /// The PRK step; infallible for a key in memory.
    pub fn compute_prk(&self, ekm: &Ekm) -> Prk {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(ekm.expose());
        let mut out: [u8; 32] = mac.finalize().into_bytes().into();
        let prk = Prk(out);
        out.zeroize();
        prk
    }
}

impl RootKey for SoftwareRootKey {
    fn prk(&self, ekm: &Ekm) -> Result<Prk, RootKeyError> {
        Ok(self.compute_prk(ekm))
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of("root", &self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_key_length_bounds() {
        assert!(SoftwareRootKey::new(&[0u8; 31]).is_err());
        assert!(SoftwareRootKey::new(&[0u8; 32]).is_ok());
        assert!(SoftwareRootKey::new(&[0u8; 64]).is_ok());
        assert_eq!(
            SoftwareRootKey::new(&[0u8; 65]).unwrap_err(),
            RootKeyLength(65)
        );
    }

    #[test]
    fn key_file_text_is_one_line_that_reads_back() {
        for len in [32, 33, 64] {
            let k = SoftwareRootKey::new(&vec![0x5A; len]).unwrap();
            let text = k.to_key_file();
            assert_eq!(&*text, &format!("{}\n", &*k.to_b64url()));
            assert_eq!(text.capacity(), text.len(), "sized up front");
            let back = SoftwareRootKey::from_b64url(&text).unwrap();
            assert_eq!(back.expose(), k.expose());
        }
    }

    #[test]
    fn debug_never_prints_bytes() {
        let k = SoftwareRootKey::new(&[0xAB; 32]).unwrap();
        let s = format!("{k:?}");
        assert!(!s.to_lowercase().contains("abab"), "{s}");
        assert!(s.contains("fp="));
        let sub = SubKeys::expand(&Prk::from_bytes([0xCD; 32]), &ClientId::new("c").unwrap());
        let s = format!("{sub:?}");
        assert!(!s.to_lowercase().contains("cdcd"), "{s}");
    }

    #[test]
    fn prk_is_hkdf_extract_with_k_as_salt() {
        let k = SoftwareRootKey::new(&[1u8; 40]).unwrap();
        let ekm = Ekm::from_bytes([2u8; 32]);
        let (prk, _) = Hkdf::<Sha256>::extract(Some(&[1u8; 40]), &[2u8; 32]);
        assert_eq!(k.prk(&ekm).unwrap().expose()[..], prk[..]);
    }

    #[test]
    fn subkeys_depend_on_client_id_and_ekm() {
        let k = SoftwareRootKey::new(&[1u8; 32]).unwrap();
        let a = ClientId::new("a").unwrap();
        let b = ClientId::new("b").unwrap();
        let e1 = Ekm::from_bytes([1; 32]);
        let e2 = Ekm::from_bytes([2; 32]);
        let ka = SubKeys::derive(&k, &e1, &a).unwrap();
        assert_ne!(ka.sig.expose(), ka.enc.expose());
        assert_ne!(
            ka.sig.expose(),
            SubKeys::derive(&k, &e1, &b).unwrap().sig.expose()
        );
        assert_ne!(
            ka.sig.expose(),
            SubKeys::derive(&k, &e2, &a).unwrap().sig.expose()
        );
    }
}
