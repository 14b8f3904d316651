//! `jose-debug`: the token inspector for TLS-bound JOSE.
//!
//! - [`inspect`] decodes any compact JWS/JWE leniently, layer by layer;
//! - [`keylog`] reads NSS key logs and computes each connection's EKM;
//! - [`verdict`] asks the library's verifier what the server would answer;
//! - [`app`] ties them into the `decode` and `derive` subcommands, whose
//!   [`report`] [`render`] prints (or `--json` serializes).

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod inspect;
pub mod keylog;
pub mod keys;
pub mod render;
pub mod report;
pub mod time;
pub mod verdict;

/// Exit status: the token is valid.
pub const EXIT_VALID: i32 = 0;
/// Exit status: the token is not valid, or could not be shown valid.
pub const EXIT_INVALID: i32 = 1;
/// Exit status: usage error (bad option, unreadable file).
pub const EXIT_USAGE: i32 = 2;
