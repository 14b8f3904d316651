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
    /// The `--key` files' keys, named by kid and fingerprint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jose_keys: Vec<JoseKeyReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One key of `--key`.
#[derive(Debug, Clone, Serialize)]
pub struct JoseKeyReport {
    /// `FILE` or `FILE#N` (the Nth key of a set or PEM bundle).
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `RSA 2048 public`, `EC P-256 private`, `oct (symmetric)`.
    pub kind: String,
    /// `thumbprint X` (RFC 7638) for a public key; `from FILE#N` for a
    /// symmetric one (never a hash: it may be a password).
    pub fp: String,
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
            jose_keys: Vec::new(),
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

/// What was judged: the server's verdict, or plain JOSE (`--generic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Protocol,
    Generic,
}

/// The result of a decode, which is its exit status. Ordered from best to
/// worst: a token's result is the worst of its checks'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit 0: every check passed, and every check there was to make was made.
    Valid,
    /// Exit 4: nothing failed, but something could not be checked (no key
    /// for a layer, an algorithm this tool does not check).
    Incomplete,
    /// Exit 3: no cryptographic check failed, but a format, claim or
    /// protocol check did (expired, wrong `aud`, the server would refuse).
    Rejected,
    /// Exit 1: a signature or decryption check failed (`alg: none` too:
    /// nothing vouches for the content).
    CryptoFailed,
}

impl Status {
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Valid => crate::EXIT_VALID,
            Status::CryptoFailed => crate::EXIT_CRYPTO_FAILED,
            Status::Rejected => crate::EXIT_REJECTED,
            Status::Incomplete => crate::EXIT_INCOMPLETE,
        }
    }

    /// The name `--json` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::CryptoFailed => "crypto_failed",
            Status::Rejected => "rejected",
            Status::Incomplete => "incomplete",
        }
    }

    /// One sentence: what the status says.
    pub fn meaning(self, mode: Mode) -> &'static str {
        match (self, mode) {
            (Status::Valid, Mode::Protocol) => "the server would accept the token",
            (Status::Valid, Mode::Generic) => {
                "every layer verifies or decrypts, and the claims checked hold"
            }
            (Status::CryptoFailed, _) => "a signature or decryption check failed",
            (Status::Rejected, Mode::Protocol) => {
                "no cryptographic check failed, but the server would refuse the token"
            }
            (Status::Rejected, Mode::Generic) => {
                "no cryptographic check failed, but a format or claim check did"
            }
            (Status::Incomplete, _) => "nothing failed, but not everything could be checked",
        }
    }
}

/// What a layer's signature or decryption check came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CryptoCheck {
    Verified,
    Failed,
    /// `alg: none`.
    Unsecured,
    /// No key for it, or an algorithm this tool does not check.
    NotChecked,
    /// Not computed: the token asks for something unsafe.
    Refused,
}

/// One layer's checks.
#[derive(Debug, Clone, Serialize)]
pub struct LayerCheck {
    pub depth: usize,
    pub kind: &'static str,
    /// The worst of this layer's checks.
    pub result: Status,
    pub crypto: CryptoCheck,
    pub crypto_detail: String,
    /// What makes the layer not valid JOSE (generic mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub format: Vec<String>,
    /// Why a part of the layer could not be checked (generic mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unchecked: Vec<String>,
    /// The registered claims checked, when the layer carries a JSON claims
    /// set (generic mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<ClaimsCheck>,
    /// RFC 8725's mistakes in the layer (exit status 3 with --strict).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<crate::lint::Warning>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimsCheck {
    /// The claims that were checked (exp, nbf when present; aud with --audience).
    pub checked: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Every check made, per layer, and the result the exit status gives.
#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    pub mode: Mode,
    pub result: Status,
    pub exit_status: i32,
    pub layers: Vec<LayerCheck>,
    /// Why the result is not `valid`, one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
    pub checks: Checks,
    /// Whether `checks.result` is `valid` (exit status 0).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct_and_named_as_in_json() {
        let all = [
            Status::Valid,
            Status::Incomplete,
            Status::Rejected,
            Status::CryptoFailed,
        ];
        let codes: Vec<i32> = all.iter().map(|s| s.exit_code()).collect();
        assert_eq!(codes, [0, 4, 3, 1]);
        assert!(!codes.contains(&crate::EXIT_USAGE));
        for s in all {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        // Worse wins.
        assert_eq!(Status::Incomplete.max(Status::Rejected), Status::Rejected);
        assert_eq!(
            Status::Rejected.max(Status::CryptoFailed),
            Status::CryptoFailed
        );
    }
}
