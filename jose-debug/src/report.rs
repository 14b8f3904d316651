//! The reports the subcommands return: what `--json` serializes and the
//! text output prints. They live apart from the code that builds them so
//! that rendering depends on the report alone.

use serde::Serialize;

use crate::inspect::Decoded;
use crate::keylog;
use crate::verdict::Verdict;

/// One run of §3, as printed: fingerprints always, values on request.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub client_id: String,
    /// Position of the root key in the client's list (0 = current).
    pub root_key_index: usize,
    pub root_key_fp: String,
    pub root_key_bytes: usize,
    /// The connection (client_random, hex) when the EKM came from a key log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub ekm_fp: String,
    pub prk_fp: String,
    pub sig_key_fp: String,
    pub enc_key_fp: String,
    /// Only with --show-secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<ScheduleSecrets>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleSecrets {
    pub ekm_hex: String,
    pub prk_hex: String,
    pub sig_key_hex: String,
    pub enc_key_hex: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeylogReport {
    pub file: String,
    /// TLS 1.3 connections with an exporter secret, in file order.
    pub connections: Vec<ConnectionReport>,
    pub other_lines: usize,
    pub tls12_lines: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<keylog::Skipped>,
    /// The connection the token was made on (client_random), if found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// 1-based position among the connections.
    pub index: usize,
    pub line: usize,
    pub client_random: String,
    pub hash: &'static str,
    pub ekm_fp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ekm_hex: Option<String>,
    /// Whether this connection's keys open the token (decode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_token: Option<bool>,
    /// Which root key opened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key_index: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub chars: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Set when the input is not a token at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeysReport {
    /// `none`, `explicit` (--sig-key/--enc-key) or `derived` (root key + EKM).
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_keys_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id_from: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig_key_fp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enc_key_fp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig_key_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enc_key_hex: Option<String>,
    /// The derivations used (one per root key for --ekm; the matching
    /// connection's for --keylog).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl KeysReport {
    /// No keys: the starting point the other sources fill in.
    pub(crate) fn none() -> KeysReport {
        KeysReport {
            source: "none",
            root_keys_from: None,
            client_id: None,
            client_id_from: None,
            sig_key_fp: None,
            enc_key_fp: None,
            sig_key_hex: None,
            enc_key_hex: None,
            schedules: Vec::new(),
            notes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub audience: String,
    pub forms: Vec<&'static str>,
    pub skew_secs: u64,
    pub max_ttl_secs: u64,
    pub now: f64,
    pub now_rfc3339: Option<String>,
    /// Whether --now was given.
    pub now_given: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenericReport {
    pub valid: bool,
    pub reasons: Vec<String>,
}

/// What `jose-debug decode` found.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeReport {
    pub input: InputReport,
    pub keys: KeysReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keylog: Option<KeylogReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Decoded>,
    pub verdict: Verdict,
    pub policy: PolicyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericReport>,
    /// What the exit status says: 0 when true.
    pub valid: bool,
}

/// What `jose-debug derive` computed.
#[derive(Debug, Clone, Serialize)]
pub struct DeriveReport {
    pub client_id: String,
    pub root_keys_from: String,
    pub schedules: Vec<Schedule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keylog: Option<KeylogReport>,
}
