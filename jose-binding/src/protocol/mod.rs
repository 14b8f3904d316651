//! The protocol core: bytes and keys in, tokens, verdicts and error codes
//! out. No IO crate and no file: `scripts/test.sh` fails if this room's
//! build ever pulls in tokio, hyper, rustls, toml, age or vsss-rs. Where it
//! needs root keys it asks [`lookup::KeyLookup`], the port the key
//! providers ([`crate::keys`]) implement, so nothing here depends on them.

pub mod b64;
pub mod bundle;
pub(crate) mod claims;
pub(crate) mod client_id;
pub(crate) mod error;
pub(crate) mod exporter;
pub mod invite;
pub(crate) mod issuer;
pub mod json;
pub(crate) mod lookup;
pub(crate) mod replay;
pub(crate) mod schedule;
pub(crate) mod token;
pub(crate) mod verifier;
