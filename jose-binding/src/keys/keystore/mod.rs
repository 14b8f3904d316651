//! The server's keystore: client id → root keys, current first, in memory,
//! behind the [`KeyLookup`] trait the verifier asks. With the
//! `keystore-file` feature it also reads and writes its TOML file:
//!
//! ```toml
//! [clients.client1]
//! keys = ["<base64url root key>", "<previous key, still accepted>"]
//! ```
//!
//! Errors say where (line, column, field) and what, never the key
//! material: no message of the TOML parser is passed on, since those quote
//! values and names from the file ([`KeystoreError`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::protocol::client_id::ClientId;
use crate::protocol::schedule::SoftwareRootKey;

#[cfg(feature = "keystore-file")]
mod file;
#[cfg(feature = "keystore-file")]
pub use file::{
    kind_of, parse_toml, KeystoreError, Name, Position, SettingsError, TomlSyntaxError,
    MAX_KEYSTORE_BYTES, MAX_SHOWN_NAME,
};
/// The TOML tree [`parse_toml`] returns (toml_edit's).
#[cfg(feature = "keystore-file")]
pub use toml_edit;

use crate::protocol::lookup::{ClientKeys, KeyLookup};

/// An immutable keystore snapshot. Reloads build a new one.
#[derive(Debug, Default)]
pub struct Keystore {
    clients: BTreeMap<ClientId, Arc<ClientKeys>>,
}

impl KeyLookup for Keystore {
    fn client_keys(&self, kid: &str) -> Option<&Arc<ClientKeys>> {
        self.get(kid)
    }
}

impl Keystore {
    /// Client `id`'s keys, current first.
    pub fn get(&self, id: &str) -> Option<&Arc<ClientKeys>> {
        // BTreeMap<ClientId, _> looks up by &str through Borrow.
        self.clients.get(id)
    }

    /// Every client, in client-id order.
    pub fn clients(&self) -> impl Iterator<Item = &Arc<ClientKeys>> {
        self.clients.values()
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether there is no client.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Replaces a client's keys (current first), creating it if new.
    pub fn set(&mut self, id: ClientId, keys: Vec<SoftwareRootKey>) {
        self.clients
            .insert(id.clone(), Arc::new(ClientKeys { id, keys }));
    }

    /// Removes client `id` and all its keys; `false` if there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        self.clients.remove(id).is_some()
    }
}

/// The current keystore, swapped whole on reload; requests take a snapshot.
#[derive(Debug, Clone, Default)]
pub struct KeystoreHandle(Arc<RwLock<Arc<Keystore>>>);

impl KeystoreHandle {
    /// A handle whose first snapshot is `ks`.
    pub fn new(ks: Keystore) -> Self {
        KeystoreHandle(Arc::new(RwLock::new(Arc::new(ks))))
    }

    /// The current keystore. It stays whole for the caller however many
    /// replacements follow; a poisoned lock still gives the last one set.
    pub fn snapshot(&self) -> Arc<Keystore> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `ks` current for every later [`snapshot`](Self::snapshot);
    /// snapshots already taken keep the old one.
    pub fn replace(&self, ks: Keystore) {
        let ks = Arc::new(ks);
        match self.0.write() {
            Ok(mut g) => *g = ks,
            Err(poisoned) => *poisoned.into_inner() = ks,
        }
    }
}

impl std::borrow::Borrow<str> for ClientId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}
