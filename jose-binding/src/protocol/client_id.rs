//! Client identifiers (PROTOCOL.md §1): 1–64 bytes of `[A-Za-z0-9._-]`.

use std::fmt;
use std::sync::Arc;

/// A validated client id. Cheap to clone: connections and logs share it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

/// Longest client id, in bytes (§1).
pub const CLIENT_ID_MAX: usize = 64;

/// The id is empty, too long, or has a byte outside `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client id must be 1-64 characters of [A-Za-z0-9._-]")]
pub struct InvalidClientId;

impl ClientId {
    /// Checks `s` against the §1 syntax; nothing else makes a `ClientId`,
    /// so every one in hand is valid.
    pub fn new(s: &str) -> Result<Self, InvalidClientId> {
        if is_valid(s) {
            Ok(ClientId(Arc::from(s)))
        } else {
            Err(InvalidClientId)
        }
    }

    /// The id's text: ASCII only, by construction.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The §1 syntax check, without allocating.
pub(crate) fn is_valid(s: &str) -> bool {
    (1..=CLIENT_ID_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", &*self.0)
    }
}

impl std::str::FromStr for ClientId {
    type Err = InvalidClientId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert!(ClientId::new("client1").is_ok());
        assert!(ClientId::new("a.b_c-D9").is_ok());
        assert!(ClientId::new(&"x".repeat(64)).is_ok());
        assert!(ClientId::new(&"x".repeat(65)).is_err());
        assert!(ClientId::new("").is_err());
        assert!(ClientId::new("a b").is_err());
        assert!(ClientId::new("é").is_err());
        assert!(ClientId::new("a/b").is_err());
    }
}
