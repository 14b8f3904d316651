//! `jose-debug`: the token inspector for TLS-bound JOSE.
//!
//! - [`inspect`] decodes any compact JWS/JWE leniently, layer by layer;
//! - [`keylog`] reads NSS key logs and computes each connection's EKM;
//! - [`verdict`] asks the library's verifier what the server would answer;
//! - [`keyring`] reads `--key` files (PEM, JWK, JWK sets) and [`open`]
//!   picks the key a layer's `alg` and `kid` call for and checks it;
//! - [`jwa`] holds the HMAC and content-encryption algorithms;
//! - [`lint`] names RFC 8725's mistakes with stable codes;
//! - [`checks`] folds every check into the result the exit status gives;
//! - [`app`] ties them into the `decode` and `derive` subcommands, whose
//!   [`report`] [`render`] prints (or `--json` serializes).

#![forbid(unsafe_code)]

pub mod app;
pub mod checks;
pub mod cli;
pub mod inspect;
pub mod jwa;
pub mod keylog;
pub mod keyring;
pub mod keys;
pub mod lint;
pub mod open;
pub mod render;
pub mod report;
pub mod time;
pub mod verdict;

/// Exit status: every check made passed (see [`report::Status`]).
pub const EXIT_VALID: i32 = 0;
/// Exit status: a signature or decryption check failed.
pub const EXIT_CRYPTO_FAILED: i32 = 1;
/// Exit status: usage error (bad option, unreadable file).
pub const EXIT_USAGE: i32 = 2;
/// Exit status: no cryptographic check failed, but a format, claim or
/// protocol check did.
pub const EXIT_REJECTED: i32 = 3;
/// Exit status: nothing failed, but something could not be checked.
pub const EXIT_INCOMPLETE: i32 = 4;
