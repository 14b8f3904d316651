//! NSS key log files (what `SSLKEYLOGFILE` makes rustls, NSS, OpenSSL and
//! browsers write) and the TLS 1.3 exporter of RFC 8446 §7.5.
//!
//! A TLS 1.3 connection's `EXPORTER_SECRET` line carries its
//! exporter_master_secret; from it this module computes the connection's EKM
//! exactly as the TLS stack does:
//!
//! ```text
//! EKM = HKDF-Expand-Label(Derive-Secret(exporter_secret, "EXPORTER-Channel-Binding", ""),
//!                         "exporter", Hash(""), 32)
//! ```
//!
//! with the hash of the connection's cipher suite: SHA-256 for a 32-byte
//! secret, SHA-384 for a 48-byte one (TLS_AES_256_GCM_SHA384).

use hkdf::Hkdf;
use jose_binding::Ekm;
use jose_binding::{EKM_LABEL, EKM_LEN};
use sha2::{Digest, Sha256, Sha384};
use zeroize::Zeroizing;

/// The key log label of a TLS 1.3 exporter_master_secret.
pub const EXPORTER_LABEL: &str = "EXPORTER_SECRET";

/// The hash of a TLS 1.3 cipher suite, known from the secret's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteHash {
    Sha256,
    Sha384,
}

impl SuiteHash {
    pub fn for_secret_len(len: usize) -> Option<SuiteHash> {
        match len {
            32 => Some(SuiteHash::Sha256),
            48 => Some(SuiteHash::Sha384),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            SuiteHash::Sha256 => "SHA-256",
            SuiteHash::Sha384 => "SHA-384",
        }
    }
}

/// The exporter secret cannot be used: wrong length for any TLS 1.3 suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an exporter secret is 32 (SHA-256) or 48 (SHA-384) bytes, got {0}")]
pub struct BadSecretLength(pub usize);

impl SuiteHash {
    const fn len(self) -> usize {
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

/// TLS-Exporter(label, context, out.len()) from a TLS 1.3 exporter_master_secret.
pub fn tls13_exporter(
    exporter_secret: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<SuiteHash, BadSecretLength> {
    let bad = BadSecretLength(exporter_secret.len());
    let hash = SuiteHash::for_secret_len(exporter_secret.len()).ok_or(bad)?;
    // Derive-Secret(Secret, label, "") = HKDF-Expand-Label(Secret, label, Hash(""), Hash.length)
    let mut derived = Zeroizing::new(vec![0u8; hash.len()]);
    let ok = hash.expand_label(exporter_secret, label, &hash.digest(&[]), &mut derived)
        && hash.expand_label(&derived, b"exporter", &hash.digest(context), out);
    if ok {
        Ok(hash)
    } else {
        Err(bad)
    }
}

/// The protocol's EKM (RFC 9266 `tls-exporter`, 32 bytes, empty context).
pub fn channel_binding_ekm(exporter_secret: &[u8]) -> Result<(Ekm, SuiteHash), BadSecretLength> {
    let mut out = Zeroizing::new([0u8; EKM_LEN]);
    let hash = tls13_exporter(exporter_secret, EKM_LABEL, &[], &mut out[..])?;
    Ok((Ekm::from_bytes(*out), hash))
}

/// One TLS 1.3 connection found in a key log.
#[derive(Debug, Clone)]
pub struct Connection {
    /// 1-based line of its `EXPORTER_SECRET` entry.
    pub line: usize,
    /// The ClientHello random that names the connection in the log.
    pub client_random: [u8; 32],
    pub hash: SuiteHash,
    pub ekm: Ekm,
}

impl Connection {
    pub fn client_random_hex(&self) -> String {
        hex::encode(self.client_random)
    }
}

/// A line that was not used, and why (never quotes secrets).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub line: usize,
    pub why: &'static str,
}

/// What a key log holds, as far as the binding is concerned.
#[derive(Debug, Clone, Default)]
pub struct KeyLog {
    /// TLS 1.3 connections with an exporter secret, in file order.
    pub connections: Vec<Connection>,
    /// Well-formed lines with other labels (handshake and traffic secrets,
    /// TLS 1.2 `CLIENT_RANDOM`): not needed here.
    pub other_lines: usize,
    /// TLS 1.2 master secrets: such connections have no TLS 1.3 exporter,
    /// and this protocol refuses TLS 1.2.
    pub tls12_lines: usize,
    /// Lines that could not be read.
    pub skipped: Vec<Skipped>,
}

/// Reads the text of an NSS key log. Never fails: unusable lines are
/// listed in [`KeyLog::skipped`].
pub fn parse(text: &str) -> KeyLog {
    let mut log = KeyLog::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut fields = l.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            log.skipped.push(Skipped {
                line,
                why: "not three fields: LABEL CLIENT_RANDOM SECRET",
            });
            continue;
        };
        let mut client_random = [0u8; 32];
        if hex::decode_to_slice(random, &mut client_random).is_err() {
            log.skipped.push(Skipped {
                line,
                why: "client random is not 64 hex digits",
            });
            continue;
        }
        if label != EXPORTER_LABEL {
            if label == "CLIENT_RANDOM" {
                log.tls12_lines += 1;
            }
            log.other_lines += 1;
            continue;
        }
        let Ok(secret) = hex::decode(secret).map(Zeroizing::new) else {
            log.skipped.push(Skipped {
                line,
                why: "exporter secret is not hex",
            });
            continue;
        };
        let Ok((ekm, hash)) = channel_binding_ekm(&secret) else {
            log.skipped.push(Skipped {
                line,
                why: "exporter secret is neither 32 (SHA-256) nor 48 (SHA-384) bytes",
            });
            continue;
        };
        if let Some(prev) = log
            .connections
            .iter()
            .find(|c| c.client_random == client_random)
        {
            if prev.ekm.expose() != ekm.expose() {
                log.skipped.push(Skipped {
                    line,
                    why: "a second, different exporter secret for a client random already seen",
                });
            }
            // The same secret twice (client and server logging to one file) is one connection.
            continue;
        }
        log.connections.push(Connection {
            line,
            client_random,
            hash,
            ekm,
        });
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers computed independently with Python's hmac/hashlib
    // (HKDF-Expand-Label written out from RFC 8446 §7.1).
    const SECRET_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const EKM_256: &str = "34a93b1dd3c2b63ebc1bced0d7d37ade4e53c057e4d368578a5bef73771e2a1b";
    const SECRET_384: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";
    const EKM_384: &str = "611c8f80782a86df99c005b09cafa11d5c3ef90ffcfbaa44cd1eda33d03ccdee";

    fn ekm_hex(secret_hex: &str) -> String {
        let secret = hex::decode(secret_hex).unwrap();
        let (ekm, _) = channel_binding_ekm(&secret).unwrap();
        hex::encode(ekm.expose())
    }

    #[test]
    fn exporter_known_answers() {
        assert_eq!(ekm_hex(SECRET_256), EKM_256);
        assert_eq!(ekm_hex(SECRET_384), EKM_384);
    }

    #[test]
    fn exporter_refuses_other_lengths() {
        let mut out = [0u8; 32];
        assert_eq!(
            tls13_exporter(&[0u8; 31], b"x", &[], &mut out),
            Err(BadSecretLength(31))
        );
        assert_eq!(
            tls13_exporter(&[0u8; 64], b"x", &[], &mut out),
            Err(BadSecretLength(64))
        );
    }

    #[test]
    fn parses_a_mixed_log() {
        let r1 = "11".repeat(32);
        let r2 = "22".repeat(32);
        let text = format!(
            "# SSL/TLS secrets log file\n\
             CLIENT_HANDSHAKE_TRAFFIC_SECRET {r1} {SECRET_384}\n\
             EXPORTER_SECRET {r1} {SECRET_384}\n\
             \n\
             CLIENT_RANDOM {r2} {SECRET_384}\n\
             EXPORTER_SECRET {r2} {SECRET_256}\n\
             EXPORTER_SECRET {r2} {SECRET_256}\n\
             EXPORTER_SECRET {r1} {SECRET_256}\n\
             EXPORTER_SECRET zz {SECRET_256}\n\
             EXPORTER_SECRET {r1}\n\
             EXPORTER_SECRET {r2} abcd\n"
        );
        let log = parse(&text);
        assert_eq!(log.connections.len(), 2);
        assert_eq!(log.connections[0].client_random_hex(), r1);
        assert_eq!(log.connections[0].hash, SuiteHash::Sha384);
        assert_eq!(log.connections[0].line, 3);
        assert_eq!(hex::encode(log.connections[0].ekm.expose()), EKM_384);
        assert_eq!(log.connections[1].hash, SuiteHash::Sha256);
        assert_eq!(log.other_lines, 2);
        assert_eq!(log.tls12_lines, 1);
        let lines: Vec<usize> = log.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [8, 9, 10, 11]);
        // Reasons never quote the secret.
        for s in &log.skipped {
            assert!(!s.why.contains("0001"));
        }
    }

    #[test]
    fn garbage_is_skipped_not_fatal() {
        let log = parse("\u{0}\u{1}x y z w\n\t\nEXPORTER_SECRET\n");
        assert!(log.connections.is_empty());
        assert_eq!(log.skipped.len(), 2);
    }
}
