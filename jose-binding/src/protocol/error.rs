//! Verification outcomes with stable codes (PROTOCOL.md §7).
//!
//! A [`Rejection`] is `Copy` and carries only `&'static str`, so the refusal
//! path never allocates and never captures a backtrace.

use std::fmt;

/// One table gives the enum, [`ErrorCode::ALL`], the wire strings and the
/// `WWW-Authenticate` challenges, so they cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $wire:literal,)+) => {
        /// The stable error codes of §7, in the order the checks run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)+
        }

        impl ErrorCode {
            /// Every code, for documentation and exhaustive tests.
            pub const ALL: [ErrorCode; [$($wire),+].len()] = [$(ErrorCode::$name),+];

            /// The wire code, exactly as in the §7 table.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $wire,)+
                }
            }

            /// The `WWW-Authenticate` value of a 401 with this code (§7):
            /// `Bearer error="invalid_token", error_description="<code>"`,
            /// except that a request without credentials gets no error
            /// parameters (RFC 6750 §3.1).
            pub const fn challenge(self) -> &'static str {
                if matches!(self, ErrorCode::MissingToken) {
                    return "Bearer realm=\"jose-binding\"";
                }
                match self {
                    $(ErrorCode::$name => concat!(
                        "Bearer error=\"invalid_token\", error_description=\"",
                        $wire,
                        "\""
                    ),)+
                }
            }
        }
    };
}

error_codes! {
    /// No `Authorization: Bearer` header.
    MissingToken = "missing_token",
    /// Bad syntax anywhere: `Bearer` without a token or two `Authorization`
    /// headers, not 3 or 5 parts, non-canonical base64url, an empty JWS
    /// payload, a non-empty JWE encrypted key, a header or claims set that
    /// is not a strict JSON object, `iat`/`exp` absent or not numbers, `nbf`
    /// not a number.
    Malformed = "malformed",
    /// The token is over 16384 characters, a decoded protected header over
    /// 1024 bytes, or the claims set over 8192 bytes.
    TooLarge = "too_large",
    /// A header has a forbidden member (`crit`, `zip`, `jku`, `jwk`, `x5*`,
    /// `b64`) or a `typ` other than exactly `JWT`.
    UnsupportedHeader = "unsupported_header",
    /// A JWS `alg` other than `HS256`, or a JWE `alg` other than `dir` or
    /// `enc` other than `A256GCM`.
    UnsupportedAlg = "unsupported_alg",
    /// The layers do not make one of the three forms: a bad `cty`, a JWE
    /// outside without `cty: JWT`, or an inner token of the wrong kind.
    BadNesting = "bad_nesting",
    /// A valid form that the server's [`Policy`](crate::Policy) does not accept.
    FormNotAllowed = "form_not_allowed",
    /// `kid` absent or not a known client, an inner `kid` that differs from
    /// the outer, or `iss` absent or not the `kid`.
    UnknownClient = "unknown_client",
    /// The connection is already pinned to another client.
    ClientMismatch = "client_mismatch",
    /// An HS256 MAC does not verify under this connection's subkeys: the
    /// outer layer's with none of the client's root keys, the inner layer's
    /// with the one that opened the outer.
    BadSignature = "bad_signature",
    /// An A256GCM layer does not open under this connection's subkeys: the
    /// outer with none of the client's root keys, the inner with the one
    /// that opened the outer.
    DecryptFailed = "decrypt_failed",
    /// `aud` absent, not a string, or not the server's audience.
    WrongAudience = "wrong_audience",
    /// `exp` is at or before now minus the skew.
    Expired = "expired",
    /// `iat` or `nbf` is after now plus the skew.
    NotYetValid = "not_yet_valid",
    /// `exp - iat` exceeds the server's maximum lifetime.
    TtlTooLong = "ttl_too_long",
    /// `jti` absent, not a string, empty, or over 64 bytes.
    BadJti = "bad_jti",
    /// This `jti` was already accepted on this connection, or the full
    /// replay cache cannot rule out that it was.
    Replayed = "replayed",
}

impl ErrorCode {
    /// Parses a wire code back (used by clients and the debug tool).
    pub fn from_code(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token: the code that decides the answer, and a fixed human
/// sentence saying which rule was broken. Neither ever contains token bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The §7 code: what the client and the access log see.
    pub code: ErrorCode,
    /// Which rule was broken, in fixed words (the 401 body's `message`).
    pub detail: &'static str,
}

impl Rejection {
    /// Whether this refused a token only because its connection's replay
    /// cache was full of entries expiring later (the cache at its bound).
    pub fn at_replay_bound(&self) -> bool {
        let full = crate::protocol::verifier::REPLAY_CACHE_FULL;
        self.code == full.code && self.detail == full.detail
    }

    /// A refusal with `code`; `detail` must be fixed text, never token bytes.
    pub const fn new(code: ErrorCode, detail: &'static str) -> Self {
        Rejection { code, detail }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for Rejection {}

/// Shorthand used throughout the verifier.
pub(crate) const fn reject(code: ErrorCode, detail: &'static str) -> Rejection {
    Rejection::new(code, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()));
            assert_eq!(ErrorCode::from_code(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::from_code("nope"), None);
    }
}
