//! The TLS 1.3 exporter of RFC 8446 §7.5, from an exporter_master_secret:
//! what a TLS stack computes for `export_keying_material`, for parties
//! that hold the secret but not the connection (a key log for jose-debug,
//! a TLS-terminating frontend that hands the secret on).
//!
//! ```text
//! EKM = HKDF-Expand-Label(Derive-Secret(exporter_secret, "EXPORTER-Channel-Binding", ""),
//!                         "exporter", Hash(""), 32)
//! ```
//!
//! with the hash of the connection's cipher suite.

use hkdf::Hkdf;
use sha2::{Digest, Sha256, Sha384};
use zeroize::Zeroizing;

use crate::protocol::schedule::{Ekm, EKM_LABEL, EKM_LEN};

/// The hash of a TLS 1.3 cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteHash {
    /// The `_SHA256` suites.
    Sha256,
    /// `TLS_AES_256_GCM_SHA384`.
    Sha384,
}

impl SuiteHash {
    /// The hash a secret of `len` bytes implies (32: SHA-256, 48: SHA-384).
    pub fn for_secret_len(len: usize) -> Option<SuiteHash> {
        match len {
            32 => Some(SuiteHash::Sha256),
            48 => Some(SuiteHash::Sha384),
            _ => None,
        }
    }

    /// The hash of a TLS 1.3 cipher suite by its IANA name (as HAProxy's
    /// `ssl_fc_cipher` and OpenSSL spell it); `None` for any other name.
    pub fn for_cipher(name: &str) -> Option<SuiteHash> {
        match name {
            "TLS_AES_128_GCM_SHA256"
            | "TLS_CHACHA20_POLY1305_SHA256"
            | "TLS_AES_128_CCM_SHA256"
            | "TLS_AES_128_CCM_8_SHA256" => Some(SuiteHash::Sha256),
            "TLS_AES_256_GCM_SHA384" => Some(SuiteHash::Sha384),
            _ => None,
        }
    }

    /// `SHA-256` or `SHA-384`.
    pub const fn name(self) -> &'static str {
        match self {
            SuiteHash::Sha256 => "SHA-256",
            SuiteHash::Sha384 => "SHA-384",
        }
    }

    /// The hash's output length, which an exporter secret has too.
    pub const fn output_len(self) -> usize {
        match self {
            SuiteHash::Sha256 => 32,
            SuiteHash::Sha384 => 48,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            SuiteHash::Sha256 => Sha256::digest(data).to_vec(),
            SuiteHash::Sha384 => Sha384::digest(data).to_vec(),
        }
    }

    /// RFC 8446 §7.1 HKDF-Expand-Label; `false` only for impossible sizes.
    fn expand_label(self, secret: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) -> bool {
        // struct { uint16 length; opaque label<7..255> = "tls13 " + Label; opaque context<0..255>; }
        let full_label_len = 6 + label.len();
        let (Ok(out_len), Ok(label_len), Ok(ctx_len)) = (
            u16::try_from(out.len()),
            u8::try_from(full_label_len),
            u8::try_from(context.len()),
        ) else {
            return false;
        };
        let mut info = Vec::with_capacity(4 + full_label_len + context.len());
        info.extend_from_slice(&out_len.to_be_bytes());
        info.push(label_len);
        info.extend_from_slice(b"tls13 ");
        info.extend_from_slice(label);
        info.push(ctx_len);
        info.extend_from_slice(context);
        match self {
            SuiteHash::Sha256 => {
                Hkdf::<Sha256>::from_prk(secret).is_ok_and(|hk| hk.expand(&info, out).is_ok())
            }
            SuiteHash::Sha384 => {
                Hkdf::<Sha384>::from_prk(secret).is_ok_and(|hk| hk.expand(&info, out).is_ok())
            }
        }
    }
}

/// The exporter secret does not fit the suite: a TLS 1.3 exporter secret
/// is as long as the suite's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an exporter secret is 32 (SHA-256) or 48 (SHA-384) bytes, got {0}")]
pub struct BadSecretLength(pub usize);

/// TLS-Exporter(label, context, out.len()) from a TLS 1.3
/// exporter_master_secret under `hash`.
pub fn tls13_exporter(
    hash: SuiteHash,
    exporter_secret: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), BadSecretLength> {
    let bad = BadSecretLength(exporter_secret.len());
    if exporter_secret.len() != hash.output_len() {
        return Err(bad);
    }
    // Derive-Secret(Secret, label, "") = HKDF-Expand-Label(Secret, label, Hash(""), Hash.length)
    let mut derived = Zeroizing::new(vec![0u8; hash.output_len()]);
    let ok = hash.expand_label(exporter_secret, label, &hash.digest(&[]), &mut derived)
        && hash.expand_label(&derived, b"exporter", &hash.digest(context), out);
    if ok {
        Ok(())
    } else {
        Err(bad)
    }
}

/// The protocol's EKM (RFC 9266 `tls-exporter`: 32 bytes, empty context)
/// from the connection's exporter secret under its suite's hash.
pub fn channel_binding_ekm(
    hash: SuiteHash,
    exporter_secret: &[u8],
) -> Result<Ekm, BadSecretLength> {
    let mut out = Zeroizing::new([0u8; EKM_LEN]);
    tls13_exporter(hash, exporter_secret, EKM_LABEL, &[], &mut out[..])?;
    Ok(Ekm::from_bytes(*out))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers computed independently with Python's hmac/hashlib
    // (HKDF-Expand-Label written out from RFC 8446 §7.1); the same values
    // are in docs/PROTOCOL.md.
    const SECRET_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const EKM_256: &str = "34a93b1dd3c2b63ebc1bced0d7d37ade4e53c057e4d368578a5bef73771e2a1b";
    const SECRET_384: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";
    const EKM_384: &str = "611c8f80782a86df99c005b09cafa11d5c3ef90ffcfbaa44cd1eda33d03ccdee";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn exporter_known_answers() {
        for (cipher, secret, ekm) in [
            ("TLS_AES_128_GCM_SHA256", SECRET_256, EKM_256),
            ("TLS_AES_256_GCM_SHA384", SECRET_384, EKM_384),
        ] {
            let hash = SuiteHash::for_cipher(cipher).unwrap();
            let got = channel_binding_ekm(hash, &unhex(secret)).unwrap();
            assert_eq!(hex(got.expose()), ekm, "{cipher}");
        }
    }

    #[test]
    fn a_secret_must_fit_its_suite() {
        let mut out = [0u8; 32];
        for (hash, len) in [
            (SuiteHash::Sha256, 48),
            (SuiteHash::Sha384, 32),
            (SuiteHash::Sha256, 31),
        ] {
            assert_eq!(
                tls13_exporter(hash, &vec![0u8; len], b"x", &[], &mut out),
                Err(BadSecretLength(len))
            );
        }
        assert_eq!(
            SuiteHash::for_cipher("TLS_AES_256_GCM_SHA384"),
            Some(SuiteHash::Sha384)
        );
        assert_eq!(SuiteHash::for_cipher("ECDHE-RSA-AES256-GCM-SHA384"), None);
        assert_eq!(SuiteHash::for_cipher("tls_aes_128_gcm_sha256"), None);
    }
}
