//! The core's port for root keys: the verifier asks [`KeyLookup`], and a
//! key provider answers ([`crate::keys::keystore::Keystore`], or your own).

use std::sync::Arc;

use crate::protocol::client_id::ClientId;
use crate::protocol::schedule::SoftwareRootKey;

/// One client's root keys; `keys[0]` is current, the rest are accepted.
#[derive(Debug)]
pub struct ClientKeys {
    /// The client these keys belong to.
    pub id: ClientId,
    /// Current key first; every key is tried at step 9.
    pub keys: Vec<SoftwareRootKey>,
}

/// Where the verifier finds a client's root keys. [`Keystore`](crate::Keystore) is the one
/// this crate ships; another source (a secrets service, say) implements
/// this.
pub trait KeyLookup {
    /// The keys of client `kid`, current first. The verifier keeps the
    /// subkeys it derived for as long as it gets the same `Arc` back, so a
    /// source returns a new `Arc` exactly when a client's keys change.
    fn client_keys(&self, kid: &str) -> Option<&Arc<ClientKeys>>;
}
