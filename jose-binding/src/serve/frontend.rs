//! Frontend mode: behind a frontend that terminates TLS (HAProxy), which
//! hands each request its client connection's TLS 1.3 exporter secret and
//! cipher suite, or the EKM itself, in headers it sets
//! ([`EXPORTER_SECRET_HEADER`], [`TLS_CIPHER_HEADER`], [`EKM_HEADER`]).
//!
//! The binding state the server keeps per TLS connection (the pinned
//! client, the replay cache) is kept here per *client* connection, named by
//! its EKM, in a bounded table: a frontend may carry requests of many
//! client connections on one backend connection, and one client
//! connection's over several, so the backend connection counts for
//! nothing. Entries expire after being idle for longer than any token
//! accepted on them can live (`max_ttl_secs` plus twice `skew_secs`, at least the idle
//! timeout), so a dropped entry never reopens a replay. When the table is
//! full, the least recently used entry without an accepted token makes
//! room; entries with one are never pushed out by ones without.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName};

use crate::protocol::exporter::{channel_binding_ekm, SuiteHash};
use crate::protocol::schedule::Ekm;
use crate::serve::layer::{Binding, ConnectionBinding};

/// The client connection's exporter_master_secret, hex (HAProxy:
/// `%[ssl_fc_exporter_secret]`).
pub const EXPORTER_SECRET_HEADER: HeaderName =
    HeaderName::from_static("x-jose-binding-exporter-secret");
/// The client connection's cipher suite by its IANA name (HAProxy:
/// `%[ssl_fc_cipher]`); it picks the exporter's hash.
pub const TLS_CIPHER_HEADER: HeaderName = HeaderName::from_static("x-jose-binding-tls-cipher");
/// The client connection's 32-byte EKM, hex, from a frontend that computes
/// it itself.
pub const EKM_HEADER: HeaderName = HeaderName::from_static("x-jose-binding-ekm");

/// Why a request's binding headers name no client connection. Each is a
/// deployment error (the frontend sets these headers on every request),
/// answered 500 `not_bound` on a protected path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unbound {
    /// No binding header.
    Missing,
    /// A binding header more than once, or both kinds at once.
    Ambiguous,
    /// Not hex, or the wrong length for the suite or for an EKM.
    Malformed,
    /// A cipher suite that is not one of TLS 1.3's.
    UnknownCipher,
    /// The table is full of connections with an accepted token.
    TableFull,
}

impl Unbound {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Unbound::Missing => "binding_header_missing",
            Unbound::Ambiguous => "binding_header_ambiguous",
            Unbound::Malformed => "binding_header_malformed",
            Unbound::UnknownCipher => "binding_cipher_unknown",
            Unbound::TableFull => "frontend_table_full",
        }
    }
}

/// Takes the binding headers out of `headers` (always, whatever they say:
/// neither the application nor an upstream may see them) and returns the
/// EKM they name.
pub(crate) fn take_ekm(headers: &mut HeaderMap) -> Result<Ekm, Unbound> {
    let take = |headers: &mut HeaderMap, name: &HeaderName| -> Result<Option<Vec<u8>>, Unbound> {
        let mut values = match headers.entry(name) {
            http::header::Entry::Occupied(e) => e.remove_entry_mult().1,
            http::header::Entry::Vacant(_) => return Ok(None),
        };
        let first = values.next().map(|v| v.as_bytes().to_vec());
        if values.next().is_some() {
            return Err(Unbound::Ambiguous);
        }
        Ok(first)
    };
    let secret = take(headers, &EXPORTER_SECRET_HEADER);
    let cipher = take(headers, &TLS_CIPHER_HEADER);
    let ekm = take(headers, &EKM_HEADER);
    match (secret?, cipher?, ekm?) {
        (Some(secret), Some(cipher), None) => {
            let hash = std::str::from_utf8(&cipher)
                .ok()
                .and_then(SuiteHash::for_cipher)
                .ok_or(Unbound::UnknownCipher)?;
            let secret = zeroize::Zeroizing::new(unhex(&secret).ok_or(Unbound::Malformed)?);
            channel_binding_ekm(hash, &secret).map_err(|_| Unbound::Malformed)
        }
        (None, None, Some(ekm)) => {
            let bytes = zeroize::Zeroizing::new(unhex(&ekm).ok_or(Unbound::Malformed)?);
            let arr: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| Unbound::Malformed)?;
            Ok(Ekm::from_bytes(arr))
        }
        (None, None, None) => Err(Unbound::Missing),
        _ => Err(Unbound::Ambiguous),
    }
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 2 * 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The binding state of each client connection, by a SHA-256 of its EKM
/// (all 256 bits: two connections never share an entry).
#[derive(Debug)]
pub(crate) struct Connections {
    binding: Binding,
    capacity: usize,
    /// An entry idle this long is dropped; no token accepted on it can
    /// still be valid by then.
    expiry: Duration,
    table: Mutex<HashMap<[u8; 32], Entry>>,
}

#[derive(Debug)]
struct Entry {
    conn: ConnectionBinding,
    last: Instant,
}

impl Connections {
    /// A table of at most `capacity` client connections whose entries
    /// expire after `idle` of silence, or after the longest life a token
    /// accepted on them can have, whichever is longer.
    pub(crate) fn new(binding: Binding, capacity: usize, idle: Duration) -> Arc<Self> {
        let p = &binding.policy;
        let token_life = Duration::from_secs(p.max_ttl_secs.saturating_add(2 * p.skew_secs));
        Arc::new(Connections {
            binding,
            capacity: capacity.max(1),
            expiry: idle.max(token_life),
            table: Mutex::new(HashMap::new()),
        })
    }

    /// The binding of the client connection `ekm` names, made if new.
    pub(crate) fn get(&self, ekm: Ekm) -> Result<ConnectionBinding, Unbound> {
        self.get_at(ekm, Instant::now())
    }

    fn get_at(&self, ekm: Ekm, now: Instant) -> Result<ConnectionBinding, Unbound> {
        let key: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::new_with_prefix(b"jose-binding frontend table\0")
                .chain_update(ekm.expose())
                .finalize()
                .into()
        };
        let mut t = match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(e) = t.get_mut(&key) {
            e.last = now;
            return Ok(e.conn.clone());
        }
        if t.len() >= self.capacity {
            let expiry = self.expiry;
            t.retain(|_, e| now.saturating_duration_since(e.last) < expiry);
        }
        if t.len() >= self.capacity {
            let victim = t
                .iter()
                .filter(|(_, e)| !e.conn.has_accepted_token())
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| *k)
                .ok_or(Unbound::TableFull)?;
            t.remove(&victim);
        }
        let conn = self.binding.connection(ekm);
        t.insert(
            key,
            Entry {
                conn: conn.clone(),
                last: now,
            },
        );
        Ok(conn)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::keystore::KeystoreHandle;
    use crate::{Keystore, Policy};

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append((*n).clone(), v.parse().unwrap());
        }
        h
    }

    const SECRET: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const EKM_256: &str = "34a93b1dd3c2b63ebc1bced0d7d37ade4e53c057e4d368578a5bef73771e2a1b";

    #[test]
    fn the_secret_and_cipher_or_the_ekm_name_the_connection() {
        let mut h = headers(&[
            (&EXPORTER_SECRET_HEADER, SECRET),
            (&TLS_CIPHER_HEADER, "TLS_AES_128_GCM_SHA256"),
            (&http::header::HOST, "x"),
        ]);
        let from_secret = take_ekm(&mut h).unwrap();
        assert_eq!(h.len(), 1, "the binding headers are gone, the rest stay");
        let mut h = headers(&[(&EKM_HEADER, EKM_256)]);
        let given = take_ekm(&mut h).unwrap();
        assert_eq!(from_secret.expose(), given.expose());
        assert!(h.is_empty());
    }

    #[test]
    fn anything_else_is_unbound_and_the_headers_go_anyway() {
        let cipher = (&TLS_CIPHER_HEADER, "TLS_AES_128_GCM_SHA256");
        for (pairs, want) in [
            (vec![], Unbound::Missing),
            (vec![(&EXPORTER_SECRET_HEADER, SECRET)], Unbound::Ambiguous),
            (vec![cipher], Unbound::Ambiguous),
            (
                vec![
                    (&EXPORTER_SECRET_HEADER, SECRET),
                    (&EXPORTER_SECRET_HEADER, SECRET),
                    cipher,
                ],
                Unbound::Ambiguous,
            ),
            (
                vec![(&EKM_HEADER, EKM_256), (&EKM_HEADER, EKM_256)],
                Unbound::Ambiguous,
            ),
            (
                vec![
                    (&EXPORTER_SECRET_HEADER, SECRET),
                    cipher,
                    (&EKM_HEADER, EKM_256),
                ],
                Unbound::Ambiguous,
            ),
            (
                vec![(&EXPORTER_SECRET_HEADER, "zz"), cipher],
                Unbound::Malformed,
            ),
            (
                vec![
                    (&EXPORTER_SECRET_HEADER, SECRET),
                    (&TLS_CIPHER_HEADER, "TLS_AES_256_GCM_SHA384"),
                ],
                Unbound::Malformed,
            ),
            (
                vec![
                    (&EXPORTER_SECRET_HEADER, SECRET),
                    (&TLS_CIPHER_HEADER, "ECDHE-RSA-AES128-GCM-SHA256"),
                ],
                Unbound::UnknownCipher,
            ),
            (vec![(&EKM_HEADER, &EKM_256[..62])], Unbound::Malformed),
        ] {
            let mut h = headers(&pairs);
            assert_eq!(take_ekm(&mut h).unwrap_err(), want, "{pairs:?}");
            assert!(h.is_empty(), "{pairs:?}: binding headers left");
        }
    }

    fn table(capacity: usize) -> Arc<Connections> {
        let binding = Binding::new(KeystoreHandle::new(Keystore::default()), Policy::default());
        Connections::new(binding, capacity, Duration::from_secs(60))
    }

    fn ekm(n: u8) -> Ekm {
        Ekm::from_bytes([n; 32])
    }

    #[test]
    fn one_entry_per_client_connection_and_the_same_one_again() {
        let t = table(4);
        let a = t.get(ekm(1)).unwrap();
        let again = t.get(ekm(1)).unwrap();
        assert!(a.same_connection(&again));
        assert!(!a.same_connection(&t.get(ekm(2)).unwrap()));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_full_table_drops_the_oldest_without_a_token_never_one_with() {
        let t = table(2);
        let t0 = Instant::now();
        let first = t.get_at(ekm(1), t0).unwrap();
        first.mark_accepted_for_test();
        let _second = t.get_at(ekm(2), t0 + Duration::from_secs(1)).unwrap();
        // ekm(2) has no token: it makes room.
        let third = t.get_at(ekm(3), t0 + Duration::from_secs(2)).unwrap();
        third.mark_accepted_for_test();
        assert!(first.same_connection(&t.get_at(ekm(1), t0 + Duration::from_secs(3)).unwrap()));
        // Both left have a token: a newcomer is refused, not let in.
        assert_eq!(
            t.get_at(ekm(4), t0 + Duration::from_secs(4)).unwrap_err(),
            Unbound::TableFull
        );
        // Once idle past the expiry (longer than any token lives), they go.
        let later = t0 + Duration::from_secs(4 + 60 + 300 + 60);
        assert!(t.get_at(ekm(4), later).is_ok());
        assert_eq!(t.len(), 1);
    }
}
