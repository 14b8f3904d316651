//! JOSE tokens bound to the TLS 1.3 connection they travel on.
//!
//! Both ends export the connection's keying material, mix it with a shared
//! root key and derive per-connection subkeys ([`schedule`]). Tokens made
//! with them ([`issuer`]) verify only on that connection ([`verifier`]).
//! The wire contract is docs/PROTOCOL.md.

#![forbid(unsafe_code)]

pub mod admission;
pub mod b64;
pub mod claims;
pub mod client;
pub mod client_id;
pub mod custody;
pub mod error;
pub mod issuer;
pub mod json;
pub mod keystore;
pub mod layer;
pub mod reload;
pub mod replay;
pub mod schedule;
pub mod server;
pub mod throttle;
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
