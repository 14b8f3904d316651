//! JOSE tokens bound to the TLS 1.3 connection they travel on.
//!
//! Both ends export the connection's keying material, mix it with a shared
//! root key and derive per-connection subkeys ([`schedule`]). Tokens made
//! with them ([`issuer`]) verify only on that connection ([`verifier`]).
//! The wire contract is docs/PROTOCOL.md.
//!
//! The default build is that core alone, with no IO crate. Features add
//! `keystore-file` (the TOML keystore), `net` (TLS 1.3, HTTP and tower
//! glue: [`layer`], [`server`], [`client`]), `gateway` (a reverse proxy
//! behind the layer), `custody` and `tpm`;
//! docs/ARCHITECTURE.md says which file holds what.

#![forbid(unsafe_code)]

// The rooms, in the order dependencies point: proxy -> serve -> keys ->
// protocol. docs/ARCHITECTURE.md draws them.
mod keys;
mod protocol;
#[cfg(feature = "net")]
mod proxy;
#[cfg(feature = "net")]
mod serve;

pub use protocol::{
    b64, claims, client_id, error, issuer, json, lookup, replay, schedule, token, verifier,
};

#[cfg(feature = "custody")]
pub use keys::custody;
#[cfg(feature = "tpm")]
pub use keys::tpm;
pub use keys::{keystore, private_file};

#[cfg(feature = "net")]
pub use serve::{admission, client, echo, layer, reload, server, stamp, throttle, tls};

#[cfg(feature = "gateway")]
pub use proxy::gateway;
#[cfg(feature = "net")]
pub use proxy::{hop, sidecar};

pub use claims::Claims;
pub use client_id::ClientId;
pub use error::{ErrorCode, Rejection};
pub use issuer::Issuer;
pub use keystore::Keystore;
pub use schedule::{Ekm, Fingerprint, RootKey, SoftwareRootKey, SubKeys};
pub use token::{Form, FormSet};
pub use verifier::{ConnectionVerifier, Policy, Verified};
