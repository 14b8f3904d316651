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

#[cfg(feature = "net")]
pub mod admission;
pub mod b64;
pub mod claims;
#[cfg(feature = "net")]
pub mod client;
pub mod client_id;
#[cfg(feature = "custody")]
pub mod custody;
#[cfg(feature = "net")]
pub mod echo;
pub mod error;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "net")]
pub mod hop;
pub mod issuer;
pub mod json;
pub mod keystore;
#[cfg(feature = "net")]
pub mod layer;
pub mod private_file;
#[cfg(feature = "net")]
pub mod reload;
pub mod replay;
pub mod schedule;
#[cfg(feature = "net")]
pub mod server;
#[cfg(feature = "net")]
pub mod sidecar;
#[cfg(feature = "net")]
pub mod stamp;
#[cfg(feature = "net")]
pub mod throttle;
#[cfg(feature = "net")]
pub mod tls;
pub mod token;
#[cfg(feature = "tpm")]
pub mod tpm;
pub mod verifier;

pub use claims::Claims;
pub use client_id::ClientId;
pub use error::{ErrorCode, Rejection};
pub use issuer::Issuer;
pub use keystore::Keystore;
pub use schedule::{Ekm, Fingerprint, RootKey, SoftwareRootKey, SubKeys};
pub use token::{Form, FormSet};
pub use verifier::{ConnectionVerifier, Policy, Verified};
