//! The keystore's TOML file format (feature `keystore-file`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{ClientKeys, Keystore};
use crate::client_id::ClientId;
use crate::private_file::{write_private, Existing};
use crate::schedule::{KeyFileError, SoftwareRootKey};

/// Longest keystore file read (a keystore is a few KiB).
pub const MAX_KEYSTORE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("cannot read keystore {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("keystore is larger than 4 MiB")]
    TooLarge,
    #[error("keystore is not valid TOML at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("keystore: client id {0:?} is not 1-64 characters of [A-Za-z0-9._-]")]
    BadClientId(String),
    #[error("keystore: client {0} has no keys")]
    NoKeys(String),
    #[error("keystore: client {client}, key #{index}: {problem}")]
    BadKey {
        client: String,
        index: usize,
        problem: KeyFileError,
    },
    #[error("keystore: client {client} lists the same key twice (#{first} and #{second})")]
    DuplicateKey {
        client: String,
        first: usize,
        second: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    clients: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    keys: Vec<Zeroizing<String>>,
}

impl Keystore {
    pub fn parse(text: &str) -> Result<Keystore, KeystoreError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            KeystoreError::Syntax {
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        let mut clients = BTreeMap::new();
        for (name, entry) in file.clients {
            let id = ClientId::new(&name).map_err(|_| KeystoreError::BadClientId(name.clone()))?;
            if entry.keys.is_empty() {
                return Err(KeystoreError::NoKeys(name));
            }
            let mut keys: Vec<SoftwareRootKey> = Vec::with_capacity(entry.keys.len());
            for (index, text) in entry.keys.iter().enumerate() {
                let key = SoftwareRootKey::from_b64url(text).map_err(|problem| {
                    KeystoreError::BadKey {
                        client: name.clone(),
                        index,
                        problem,
                    }
                })?;
                if let Some(first) = keys.iter().position(|k| k.expose() == key.expose()) {
                    return Err(KeystoreError::DuplicateKey {
                        client: name,
                        first,
                        second: index,
                    });
                }
                keys.push(key);
            }
            clients.insert(id.clone(), Arc::new(ClientKeys { id, keys }));
        }
        Ok(Keystore { clients })
    }

    pub fn load(path: &Path) -> Result<Keystore, KeystoreError> {
        let io = |source| KeystoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_KEYSTORE_BYTES {
            return Err(KeystoreError::TooLarge);
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Keystore::parse(&text)
    }

    /// The file form, for `jwt-server keys`; holds key material.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let mut out =
            String::from("# jose-binding keystore: [clients.<id>] keys = [current, previous...]\n");
        for c in self.clients.values() {
            out.push_str(&format!("\n[clients.\"{}\"]\nkeys = [", c.id));
            for (i, k) in c.keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push('"');
                out.push_str(&k.to_b64url());
                out.push('"');
            }
            out.push_str("]\n");
        }
        Zeroizing::new(out)
    }
}

impl Keystore {
    /// Writes the keystore atomically: a 0600 temporary file in the same
    /// directory, fsync, rename over `path`. A reader never sees a half file.
    pub fn save_atomic(&self, path: &Path) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "keystore path has no file name",
            )
        })?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let result = (|| {
            write_private(&tmp, self.to_toml().as_bytes(), Existing::Refuse)?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    #[test]
    fn parses_and_round_trips() {
        let ks = Keystore::parse(&format!(
            "[clients.client1]\nkeys = [\"{K1}\", \"{K2}\"]\n[clients.\"b.2\"]\nkeys=[\"{K2}\"]\n"
        ))
        .unwrap();
        assert_eq!(ks.len(), 2);
        assert_eq!(ks.get("client1").unwrap().keys.len(), 2);
        let again = Keystore::parse(&ks.to_toml()).unwrap();
        assert_eq!(
            again.get("b.2").unwrap().keys[0].expose(),
            ks.get("b.2").unwrap().keys[0].expose()
        );
    }

    #[test]
    fn save_atomic_writes_0600_and_reloads() {
        let dir = std::env::temp_dir().join(format!("ks-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keystore.toml");
        let mut ks = Keystore::default();
        ks.set(
            ClientId::new("c1").unwrap(),
            vec![SoftwareRootKey::generate()],
        );
        ks.save_atomic(&path).unwrap();
        ks.save_atomic(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = Keystore::load(&path).unwrap();
        assert_eq!(
            back.get("c1").unwrap().keys[0].expose(),
            ks.get("c1").unwrap().keys[0].expose()
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_client_and_never_the_key() {
        let secretish = "SECRETSECRETSECRETSECRETSECRETSECRETSECRE";
        let cases = [
            (
                format!("[clients.c1]\nkeys = [\"{secretish}x\"]"),
                "client c1, key #0",
            ),
            (
                "[clients.c1]\nkeys = []".to_owned(),
                "client c1 has no keys",
            ),
            (
                format!("[clients.\"bad id\"]\nkeys = [\"{K1}\"]"),
                "\"bad id\"",
            ),
            (
                format!("[clients.c1]\nkeys = [\"{K1}\", \"{K1}\"]"),
                "same key twice",
            ),
            (
                "[clients.c1]\nkeys = [\"QUFB\"]".to_owned(),
                "32 to 64 bytes",
            ),
            (
                format!("[clients.c1]\nkeys = [\"{secretish}\" oops"),
                "line 2",
            ),
            (format!("[clients.c1]\nkeyz = [\"{K1}\"]"), "line 2"),
        ];
        for (text, want) in cases {
            let err = Keystore::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains("SECRET") && !err.contains(K1), "{err}");
        }
    }
}
