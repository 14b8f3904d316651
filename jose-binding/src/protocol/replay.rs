//! The per-connection `jti` replay cache (PROTOCOL.md §7 step 14).
//!
//! Bounded: it holds at most `capacity` entries, each a 64-bit keyed hash of
//! the `jti` (kept twice: in a hash set, and in its expiry second's group,
//! at most one group per live second). An entry lives
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

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// The `jti`s accepted on one connection, bounded in entries.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    /// Keyed per connection so an attacker cannot aim for hash collisions.
    hasher: RandomState,
    seen: HashSet<u64, BuildHasherDefault<PassThrough>>,
    /// The same entries grouped by expiry second, oldest first. A client's
    /// tokens arrive with non-decreasing expiry, so nearly every insert
    /// appends to the newest group, which stays in cache; the map has at
    /// most one key per live second.
    by_expiry: BTreeMap<i64, Vec<u64>>,
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
    /// Default entries per connection (28 bytes each, measured by
    /// `examples/replay_memory.rs`: about 220 KiB full).
    pub const DEFAULT_CAPACITY: usize = 8192;

    /// An empty cache of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            hasher: RandomState::new(),
            seen: HashSet::default(),
            by_expiry: BTreeMap::new(),
            floor: None,
        }
    }

    /// Entries held now, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The most entries it holds before evicting.
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
            if let Some(mut oldest) = self.by_expiry.first_entry() {
                let first_exp = *oldest.key();
                // Evicting would raise the floor to `first_exp`; if that already
                // covers this token it would be refused anyway, so keep the entry.
                if exp_s <= first_exp {
                    return Err(Replay::BelowFloor);
                }
                if let Some(evicted) = oldest.get_mut().pop() {
                    self.seen.remove(&evicted);
                }
                if oldest.get().is_empty() {
                    oldest.remove();
                }
                self.floor = Some(self.floor.map_or(first_exp, |f| f.max(first_exp)));
            }
        }
        self.seen.insert(h);
        match self.by_expiry.last_entry() {
            Some(mut newest) if *newest.key() == exp_s => newest.get_mut().push(h),
            _ => self.by_expiry.entry(exp_s).or_default().push(h),
        }
        Ok(())
    }

    fn purge(&mut self, horizon: f64) {
        while let Some(oldest) = self.by_expiry.first_entry() {
            // exp ≤ exp_s, so exp_s ≤ horizon implies the tokens are expired.
            if (*oldest.key() as f64) > horizon {
                break;
            }
            for h in oldest.remove() {
                self.seen.remove(&h);
            }
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

    /// The cache as first written, one ordered set of (expiry, hash) pairs;
    /// the grouped cache must accept and refuse exactly as it does.
    struct Reference {
        capacity: usize,
        seen: HashSet<u64>,
        by_expiry: std::collections::BTreeSet<(i64, u64)>,
        floor: Option<i64>,
    }

    impl Reference {
        fn check_and_insert(&mut self, h: u64, exp: f64, horizon: f64) -> bool {
            while let Some(&(e, x)) = self.by_expiry.first() {
                if (e as f64) > horizon {
                    break;
                }
                self.by_expiry.pop_first();
                self.seen.remove(&x);
            }
            let exp_s = exp_second(exp);
            if self.seen.contains(&h) || self.floor.is_some_and(|f| exp_s <= f) {
                return false;
            }
            if self.seen.len() >= self.capacity {
                if let Some(&(e, x)) = self.by_expiry.first() {
                    if exp_s <= e {
                        return false;
                    }
                    self.by_expiry.pop_first();
                    self.seen.remove(&x);
                    self.floor = Some(self.floor.map_or(e, |f| f.max(e)));
                }
            }
            self.seen.insert(h);
            self.by_expiry.insert((exp_s, h));
            true
        }
    }

    proptest::proptest! {
        /// Random streams of fresh tokens (out-of-order expiries) and exact
        /// replays of earlier ones under a moving clock: the same decisions
        /// as the reference, never over capacity, and a token is never
        /// accepted twice before it expires.
        #[test]
        fn agrees_with_the_reference_and_never_admits_a_replay(
            capacity in 1usize..24,
            ops in proptest::collection::vec(
                (proptest::option::of(0usize..64), 0i64..12, 0u8..4, proptest::bool::ANY),
                1..400,
            ),
        ) {
            let mut c = ReplayCache::new(capacity);
            let mut r = Reference {
                capacity,
                seen: HashSet::new(),
                by_expiry: Default::default(),
                floor: None,
            };
            let mut sent: Vec<(String, f64)> = Vec::new();
            let mut accepted: HashSet<String> = HashSet::new();
            let mut now = 100.0;
            for (replay, ahead, tick, fraction) in ops {
                now += f64::from(tick) * 0.5;
                let horizon = now - 3.0;
                let (jti, exp) = match replay {
                    Some(i) if !sent.is_empty() => sent[i % sent.len()].clone(),
                    _ => {
                        let exp = now + ahead as f64 + if fraction { 0.25 } else { 0.0 };
                        sent.push((format!("t{}", sent.len()), exp));
                        sent[sent.len() - 1].clone()
                    }
                };
                let ours = c.check_and_insert(&jti, exp, horizon).is_ok();
                let theirs = r.check_and_insert(c.hasher.hash_one(&jti), exp, horizon);
                proptest::prop_assert_eq!(ours, theirs);
                proptest::prop_assert!(c.len() <= capacity);
                if ours && exp > horizon {
                    proptest::prop_assert!(accepted.insert(jti.clone()), "{} accepted twice", jti);
                }
            }
        }
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
