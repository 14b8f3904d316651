//! The protocol core: bytes and keys in, tokens, verdicts and error codes
//! out. No IO crate and no file: `scripts/test.sh` fails if this room's
//! build ever pulls in tokio, hyper, rustls, toml, age or vsss-rs. Where it
//! needs root keys it asks [`lookup::KeyLookup`], the port the key
//! providers ([`crate::keys`]) implement, so nothing here depends on them.

pub mod b64;
pub mod claims;
pub mod client_id;
pub mod error;
pub mod issuer;
pub mod json;
pub mod lookup;
pub mod replay;
pub mod schedule;
pub mod token;
pub mod verifier;
