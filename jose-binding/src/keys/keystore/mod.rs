//! The server's keystore: client id → root keys, current first, in memory,
//! behind the [`KeyLookup`] trait the verifier asks. With the
//! `keystore-file` feature it also reads and writes its TOML file:
//!
//! ```toml
//! [clients.client1]
//! keys = ["<base64url root key>", "<previous key, still accepted>"]
//! ```
//!
//! It also holds the pending enrolment invites (docs/PROTOCOL.md §10),
//! each a one-time secret under the id the client will get:
//!
//! ```toml
//! [invites.client7]
//! secret = "<base64url one-time secret>"
//! expires = 1767225600   # Unix seconds
//! url = "https://api.example:8443"
//! ```
//!
//! An invite's secret is never a root key of [`KeyLookup`]: only the
//! enrolment route looks invites up ([`Invites`]).
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
    kind_of, parse_toml, KeystoreError, KeystoreLock, Name, Position, SettingsError,
    TomlSyntaxError, MAX_KEYSTORE_BYTES, MAX_SHOWN_NAME,
};
/// The TOML tree [`parse_toml`] returns (toml_edit's).
#[cfg(feature = "keystore-file")]
pub use toml_edit;

use crate::protocol::lookup::{ClientKeys, KeyLookup};

/// An immutable keystore snapshot. Reloads build a new one.
#[derive(Debug, Default)]
pub struct Keystore {
    clients: BTreeMap<ClientId, Arc<ClientKeys>>,
    invites: BTreeMap<ClientId, PendingInvite>,
}

/// An invite not used yet: the client it enrols, its one-time secret (as
/// the one key of `client`), its expiry and the URL it advertised.
#[derive(Debug, Clone)]
pub struct PendingInvite {
    /// The id the client gets, and the secret as its one key: the form the
    /// verifier looks keys up in.
    pub client: Arc<ClientKeys>,
    /// When it stops being accepted, in Unix seconds.
    pub expires: u64,
    /// The server URL the invite line carries.
    pub url: String,
}

impl PendingInvite {
    /// The invite for client `id`; `url` is not checked here.
    fn new(id: ClientId, secret: SoftwareRootKey, expires: u64, url: &str) -> PendingInvite {
        PendingInvite {
            client: Arc::new(ClientKeys {
                id,
                keys: vec![secret],
            }),
            expires,
            url: url.to_owned(),
        }
    }

    /// The one-time secret.
    pub fn secret(&self) -> &SoftwareRootKey {
        &self.client.keys[0]
    }

    /// Whether it has expired at `now` (Unix seconds).
    pub fn expired_at(&self, now: u64) -> bool {
        now >= self.expires
    }
}

/// Why an enrolment cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolRefusal {
    /// No invite for that id (never made, revoked, or already used).
    #[error("no pending invite for this client (revoked, already used, or never made)")]
    NoInvite,
    /// The invite's secret is not the one the client proved (the invite
    /// was revoked and made anew meanwhile).
    #[error("the pending invite is not the one the client holds (it was replaced)")]
    Replaced,
    /// The invite has expired.
    #[error("the invite has expired")]
    Expired,
    /// A client of that id exists already.
    #[error("a client of this id exists already")]
    ClientExists,
}

impl EnrolRefusal {
    /// A stable code for logs.
    pub const fn code(&self) -> &'static str {
        match self {
            EnrolRefusal::NoInvite => "invite_unknown_or_revoked",
            EnrolRefusal::Replaced => "invite_replaced",
            EnrolRefusal::Expired => "invite_expired",
            EnrolRefusal::ClientExists => "invite_used_or_client_exists",
        }
    }
}

/// The keystore's pending invites as a [`KeyLookup`] at one instant: an
/// expired invite is not found, as a used or revoked one is not, so a
/// token cannot tell them apart.
#[derive(Debug, Clone, Copy)]
pub struct Invites<'a> {
    keystore: &'a Keystore,
    now: u64,
}

impl KeyLookup for Invites<'_> {
    fn client_keys(&self, kid: &str) -> Option<&Arc<ClientKeys>> {
        self.keystore
            .invites
            .get(kid)
            .filter(|i| !i.expired_at(self.now))
            .map(|i| &i.client)
    }
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

    /// Every pending invite, in client-id order.
    pub fn invites(&self) -> impl Iterator<Item = &PendingInvite> {
        self.invites.values()
    }

    /// The pending invite for client `id`.
    pub fn invite(&self, id: &str) -> Option<&PendingInvite> {
        self.invites.get(id)
    }

    /// The unexpired invites as the enrolment route's key lookup.
    pub fn pending_at(&self, now: u64) -> Invites<'_> {
        Invites {
            keystore: self,
            now,
        }
    }

    /// Records (or replaces) the invite for client `id`, who must not be a
    /// client yet; `url` must be an invite's origin
    /// ([`crate::invite::is_origin`]).
    pub fn set_invite(
        &mut self,
        id: ClientId,
        secret: SoftwareRootKey,
        expires: u64,
        url: &str,
    ) -> Result<(), SetInviteError> {
        if self.clients.contains_key(&id) {
            return Err(SetInviteError::ClientExists);
        }
        if !crate::protocol::invite::is_origin(url) {
            return Err(SetInviteError::Url);
        }
        let invite = PendingInvite::new(id.clone(), secret, expires, url);
        self.invites.insert(id, invite);
        Ok(())
    }

    /// Removes the invite for client `id`; `false` if there was none.
    pub fn remove_invite(&mut self, id: &str) -> bool {
        self.invites.remove(id).is_some()
    }

    /// Turns the invite whose secret is `proved` into client `id` with
    /// root key `key`, in one step: afterwards the invite is gone and the
    /// client exists, or, refused, nothing changed.
    pub fn enrol(
        &mut self,
        id: &ClientId,
        proved: &SoftwareRootKey,
        key: SoftwareRootKey,
        now: u64,
    ) -> Result<(), EnrolRefusal> {
        if self.clients.contains_key(id) {
            return Err(EnrolRefusal::ClientExists);
        }
        let invite = self.invites.get(id).ok_or(EnrolRefusal::NoInvite)?;
        let same = subtle::ConstantTimeEq::ct_eq(invite.secret().expose(), proved.expose());
        if !bool::from(same) {
            return Err(EnrolRefusal::Replaced);
        }
        if invite.expired_at(now) {
            return Err(EnrolRefusal::Expired);
        }
        self.invites.remove(id);
        self.set(id.clone(), vec![key]);
        Ok(())
    }
}

/// Why an invite cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetInviteError {
    /// The id is a client already: rotate its key instead.
    #[error("a client of this id exists already (use `keys rotate` for a new key)")]
    ClientExists,
    /// The URL is not `https://host[:port]`.
    #[error("the advertised URL must be https://HOST[:PORT], without path, query or user info")]
    Url,
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
