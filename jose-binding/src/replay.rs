//! The per-connection `jti` replay cache (PROTOCOL.md §7 step 14).
//!
//! Bounded: it holds at most `capacity` entries of 16 bytes of payload each
//! (a 64-bit keyed hash of the `jti`, and the token's expiry second). An entry lives
//! until its token could no longer pass the expiry check (`exp ≤ now − skew`),
//! after which a replay is refused as `expired` anyway.
//!
//! When the cache is full, a token expiring later than the oldest entry
//! evicts it and raises a *floor* to the evicted expiry; from then on any
//! token whose `exp` is at or below the floor is refused as `replayed`,
//! because it might be one that was evicted. A token expiring no later than
//! the oldest entry of a full cache is refused the same way, without
//! evicting anything. So the bound never lets a replay through. A client that issues
//! fresh tokens never meets the floor unless it sends more than `capacity`
//! tokens expiring in the same second on one connection.

use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Default entries per connection (about 77 bytes each, measured: ~620 KiB full).
pub const DEFAULT_CAPACITY: usize = 8192;

#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    /// Keyed per connection so an attacker cannot aim for hash collisions.
    hasher: RandomState,
    seen: HashSet<u64, BuildHasherDefault<PassThrough>>,
    by_expiry: BTreeSet<(i64, u64)>,
    floor: Option<i64>,
}

/// Why a `jti` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// This `jti` was accepted before on this connection.
    Seen,
    /// At or below the eviction floor: possibly an evicted `jti`.
    BelowFloor,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            hasher: RandomState::new(),
            seen: HashSet::default(),
            by_expiry: BTreeSet::new(),
            floor: None,
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records `jti` (expiring at `exp`) unless it is, or may be, a replay.
    /// Entries whose `exp ≤ horizon` are dropped first; the verifier passes
    /// `now − skew`, the point below which tokens fail the expiry check.
    pub fn check_and_insert(&mut self, jti: &str, exp: f64, horizon: f64) -> Result<(), Replay> {
        self.purge(horizon);
        let h = self.hasher.hash_one(jti);
        if self.seen.contains(&h) {
            return Err(Replay::Seen);
        }
        let exp_s = exp_second(exp);
        if self.floor.is_some_and(|f| exp_s <= f) {
            return Err(Replay::BelowFloor);
        }
        if self.seen.len() >= self.capacity {
            if let Some(&(first_exp, first_hash)) = self.by_expiry.first() {
                // Evicting would raise the floor to `first_exp`; if that already
                // covers this token it would be refused anyway, so keep the entry.
                if exp_s <= first_exp {
                    return Err(Replay::BelowFloor);
                }
                self.by_expiry.pop_first();
                self.seen.remove(&first_hash);
                self.floor = Some(self.floor.map_or(first_exp, |f| f.max(first_exp)));
            }
        }
        self.seen.insert(h);
        self.by_expiry.insert((exp_s, h));
        Ok(())
    }

    fn purge(&mut self, horizon: f64) {
        while let Some(&(exp_s, h)) = self.by_expiry.first() {
            // exp ≤ exp_s, so exp_s ≤ horizon implies the token is expired.
            if (exp_s as f64) > horizon {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&h);
        }
    }
}

/// The set's keys are already keyed SipHash outputs, uniformly distributed
/// and unknown to a client: hashing them a second time buys nothing.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The whole second at or after `exp`, saturating (NumericDate may be any
/// JSON number; out-of-range values saturate and stay ordered).
fn exp_second(exp: f64) -> i64 {
    exp.ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_seen_jti_and_forgets_expired_ones() {
        let mut c = ReplayCache::new(10);
        assert_eq!(c.check_and_insert("a", 100.0, 0.0), Ok(()));
        assert_eq!(c.check_and_insert("a", 100.0, 0.0), Err(Replay::Seen));
        assert_eq!(c.check_and_insert("b", 101.0, 0.0), Ok(()));
        assert_eq!(c.len(), 2);
        // Horizon past a's expiry: a is gone, b stays.
        assert_eq!(c.check_and_insert("c", 200.0, 100.0), Ok(()));
        assert_eq!(c.len(), 2);
        assert_eq!(c.check_and_insert("b", 101.0, 100.0), Err(Replay::Seen));
    }

    #[test]
    fn stays_bounded_under_a_flood_and_never_admits_an_evicted_jti() {
        let cap = 64;
        let mut c = ReplayCache::new(cap);
        // A flood of unique jtis, all expiring in the same second.
        let mut accepted = Vec::new();
        for i in 0..10_000 {
            let jti = format!("j{i}");
            if c.check_and_insert(&jti, 500.0, 0.0).is_ok() {
                accepted.push(jti);
            }
            assert!(c.len() <= cap);
        }
        assert_eq!(
            accepted.len(),
            cap,
            "a full cache admits nothing expiring as early as its oldest entry"
        );
        for jti in &accepted {
            assert!(
                c.check_and_insert(jti, 500.0, 0.0).is_err(),
                "{jti} replayed"
            );
        }
        // Fresh tokens expiring later are still accepted.
        assert_eq!(c.check_and_insert("later", 501.0, 0.0), Ok(()));
        assert!(c.len() <= cap);
    }

    #[test]
    fn steady_rate_beyond_capacity_is_accepted_when_expiries_advance() {
        let mut c = ReplayCache::new(100);
        // 10 tokens per second for 60 s, TTL 60 s: 600 live tokens > capacity.
        for i in 0..600 {
            let now = (i / 10) as f64;
            let jti = format!("t{i}");
            assert_eq!(
                c.check_and_insert(&jti, now + 60.0, now - 30.0),
                Ok(()),
                "{i}"
            );
            assert!(c.len() <= 100);
        }
    }
}
