//! Verification outcomes with stable codes (PROTOCOL.md §7).
//!
//! A [`Rejection`] is `Copy` and carries only `&'static str`, so the refusal
//! path never allocates and never captures a backtrace.

use std::fmt;

/// The stable error codes of §7, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    MissingToken,
    Malformed,
    TooLarge,
    UnsupportedHeader,
    UnsupportedAlg,
    BadNesting,
    FormNotAllowed,
    UnknownClient,
    ClientMismatch,
    BadSignature,
    DecryptFailed,
    WrongAudience,
    Expired,
    NotYetValid,
    TtlTooLong,
    BadJti,
    Replayed,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::MissingToken,
        ErrorCode::Malformed,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedHeader,
        ErrorCode::UnsupportedAlg,
        ErrorCode::BadNesting,
        ErrorCode::FormNotAllowed,
        ErrorCode::UnknownClient,
        ErrorCode::ClientMismatch,
        ErrorCode::BadSignature,
        ErrorCode::DecryptFailed,
        ErrorCode::WrongAudience,
        ErrorCode::Expired,
        ErrorCode::NotYetValid,
        ErrorCode::TtlTooLong,
        ErrorCode::BadJti,
        ErrorCode::Replayed,
    ];

    /// The wire code, exactly as in the §7 table.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingToken => "missing_token",
            ErrorCode::Malformed => "malformed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedHeader => "unsupported_header",
            ErrorCode::UnsupportedAlg => "unsupported_alg",
            ErrorCode::BadNesting => "bad_nesting",
            ErrorCode::FormNotAllowed => "form_not_allowed",
            ErrorCode::UnknownClient => "unknown_client",
            ErrorCode::ClientMismatch => "client_mismatch",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::DecryptFailed => "decrypt_failed",
            ErrorCode::WrongAudience => "wrong_audience",
            ErrorCode::Expired => "expired",
            ErrorCode::NotYetValid => "not_yet_valid",
            ErrorCode::TtlTooLong => "ttl_too_long",
            ErrorCode::BadJti => "bad_jti",
            ErrorCode::Replayed => "replayed",
        }
    }

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
