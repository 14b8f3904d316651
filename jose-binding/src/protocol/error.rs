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
    Malformed = "malformed",
    TooLarge = "too_large",
    UnsupportedHeader = "unsupported_header",
    UnsupportedAlg = "unsupported_alg",
    BadNesting = "bad_nesting",
    FormNotAllowed = "form_not_allowed",
    UnknownClient = "unknown_client",
    ClientMismatch = "client_mismatch",
    BadSignature = "bad_signature",
    DecryptFailed = "decrypt_failed",
    WrongAudience = "wrong_audience",
    Expired = "expired",
    NotYetValid = "not_yet_valid",
    TtlTooLong = "ttl_too_long",
    BadJti = "bad_jti",
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
    pub code: ErrorCode,
    pub detail: &'static str,
}

impl Rejection {
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
