//! NSS key log files (what `SSLKEYLOGFILE` makes rustls, NSS, OpenSSL and
//! browsers write).
//!
//! A TLS 1.3 connection's `EXPORTER_SECRET` line carries its
//! exporter_master_secret; the library's exporter
//! (`jose_binding::exporter`) computes the connection's EKM from it exactly
//! as the TLS stack does, with the hash the secret's length implies:
//! SHA-256 for 32 bytes, SHA-384 for 48 (TLS_AES_256_GCM_SHA384).

pub use jose_binding::exporter::{BadSecretLength, SuiteHash};
use jose_binding::Ekm;
use zeroize::Zeroizing;

/// The key log label of a TLS 1.3 exporter_master_secret.
pub const EXPORTER_LABEL: &str = "EXPORTER_SECRET";

/// The protocol's EKM from a key log's exporter secret, the hash told by
/// its length.
pub fn channel_binding_ekm(exporter_secret: &[u8]) -> Result<(Ekm, SuiteHash), BadSecretLength> {
    let hash = SuiteHash::for_secret_len(exporter_secret.len())
        .ok_or(BadSecretLength(exporter_secret.len()))?;
    let ekm = jose_binding::exporter::channel_binding_ekm(hash, exporter_secret)?;
    Ok((ekm, hash))
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

    // The exporter's known answers are the library's tests
    // (jose-binding/src/protocol/exporter.rs); these are the key log's.
    const SECRET_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const SECRET_384: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";
    const EKM_384: &str = "611c8f80782a86df99c005b09cafa11d5c3ef90ffcfbaa44cd1eda33d03ccdee";

    #[test]
    fn the_secrets_length_picks_the_hash() {
        let (_, h) = channel_binding_ekm(&hex::decode(SECRET_384).unwrap()).unwrap();
        assert_eq!(h, SuiteHash::Sha384);
        assert_eq!(
            channel_binding_ekm(&[0u8; 31]).unwrap_err(),
            BadSecretLength(31)
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
